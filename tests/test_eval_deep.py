"""Deep models in the harness: braindecode nets from scratch, our backbone probed and fine-tuned (tiny, CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.eval import deep
from neurofm.eval.data import load_eval_data
from neurofm.eval.deep import DeepModel, TrainSettings, fit_probe, probe_proba
from neurofm.eval.harness import run_benchmark
from neurofm.eval.models import build_model
from neurofm.eval.splits import make_folds
from test_eval_harness import mi_index  # noqa: F401 - the prepared synthetic MI fixture

FAST = {"max_epochs": 3, "fewshot_epochs": 3, "patience": 2, "batch_size": 16}


def test_braindecode_net_from_scratch_writes_rows(mi_index: Path, tmp_path: Path) -> None:  # noqa: F811
    summary = run_benchmark("eegnet", mi_index, "cross_session", seeds=(0,), out=tmp_path, progress=False,
                            model_options={"settings": FAST})
    assert summary.n_done == 4
    row = summary.rows[0]
    assert row["model"] == "eegnet" and row["adapt"] == "scratch" and row["config"]["train"]["max_epochs"] == 3
    assert 0 <= row["metrics"]["balanced_accuracy"] <= 1


def test_best_validation_epoch_is_restored(mi_index: Path) -> None:  # noqa: F811
    data = load_eval_data(mi_index)
    fold = make_folds(data, "loso", seeds=(0,))[0]
    model = build_model("shallow", settings={**FAST, "max_epochs": 4, "patience": 10})
    model.fit(data.take(fold.train), data.take(fold.val), seed=0)
    assert model.log["epochs"] >= 3 and np.isfinite(model.log["best_val_loss"])
    val = data.take(fold.val)
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model.net.eval()(torch.from_numpy(model._norm(val.x))),
                                                 torch.from_numpy(val.y))
    assert float(loss) == pytest.approx(model.log["best_val_loss"], rel=1e-4)  # the weights in use are the best epoch's


def test_linear_probe_on_our_backbone_caches_features(mi_index: Path, tmp_path: Path) -> None:  # noqa: F811
    deep._FEATURES.clear()
    summary = run_benchmark("neurofm", mi_index, "loso", adapt="linear", seeds=(0,), out=tmp_path, progress=False,
                            model_options={"preset": "tiny"})
    data = load_eval_data(mi_index)
    assert summary.n_done == 4 and len(deep._FEATURES) == len(data)  # each window's features computed once
    assert summary.rows[0]["weights_sha256"] and summary.rows[0]["adapt"] == "linear"
    again = run_benchmark("neurofm", mi_index, "loso", adapt="linear", seeds=(0,), out=tmp_path, progress=False,
                          model_options={"preset": "tiny"})
    assert again.n_done == 0 and again.n_skipped == 4  # a rerun resumes (weights are known only after fitting)


def test_finetune_and_two_stage_run(mi_index: Path) -> None:  # noqa: F811
    data = load_eval_data(mi_index)
    fold = make_folds(data, "fewshot", seeds=(0,), ks=(2,))[0]
    model = DeepModel("neurofm", "finetune", {"preset": "tiny"},
                      TrainSettings(**FAST, two_stage_epochs=1, layer_decay=0.75))
    model.fit(data.take(fold.train), None, seed=0)
    proba = model.predict_proba(data.x[fold.test])
    assert proba.shape == (fold.test.size, 2) and np.allclose(proba.sum(1), 1, atol=1e-5)


def test_probes_choose_their_penalty_on_validation() -> None:
    rng = np.random.default_rng(0)
    f = rng.normal(size=(60, 5))
    y = (f[:, 0] > 0).astype(int)
    for kind in ("logreg", "ridge"):
        probe = fit_probe(kind, f[:40], y[:40], (f[40:], y[40:]), seed=0)
        proba = probe_proba(probe, f[40:], 2)
        assert (proba.argmax(1) == y[40:]).mean() > 0.9


def test_unsupported_combinations_are_clear() -> None:
    with pytest.raises(ValueError, match="needs pretrained weights"):
        build_model("labram", adapt="finetune")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        build_model("labram", adapt="finetune", weights="braindecode/labram-pretrained")
    with pytest.raises(ValueError, match="adapt must be 'scratch'"):
        build_model("csp_lda", adapt="linear")


def _saved_eegnet(data, folder: Path, **changes) -> dict[str, torch.Tensor]:
    """A "pretrained" EEGNet for ``data``'s montage saved as model.safetensors; its state dict."""
    import safetensors.torch

    net = deep.NETS["eegnet"][0](data, 2, {})
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for key, value in changes.items():
        if value is None:
            del state[key]
        else:
            state[key] = value
    folder.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(state, str(folder / "model.safetensors"))
    return state


def test_braindecode_weights_load_strictly_except_the_head(mi_index: Path, tmp_path: Path) -> None:  # noqa: F811
    from neurofm.hub import CheckpointMismatchError

    data = load_eval_data(mi_index)
    torch.manual_seed(1)
    saved = _saved_eegnet(data, tmp_path / "good")
    torch.manual_seed(2)  # a different random init: everything but the head must come from the file
    net = deep.NETS["eegnet"][0](data, 3, {"weights": str(tmp_path / "good")})
    for key, value in net.state_dict().items():
        if key.startswith("final_layer."):
            assert key not in saved or value.shape != saved[key].shape or not torch.equal(value, saved[key])
        else:
            assert torch.equal(value, saved[key]), key
    a_key = next(k for k in saved if not k.startswith("final_layer.") and k.endswith("weight"))
    _saved_eegnet(data, tmp_path / "missing", **{a_key: None})
    with pytest.raises(CheckpointMismatchError, match=f"missing from the file: {a_key}"):
        deep.NETS["eegnet"][0](data, 2, {"weights": str(tmp_path / "missing")})
    _saved_eegnet(data, tmp_path / "extra", **{"blocks.extra.weight": torch.zeros(3)})
    with pytest.raises(CheckpointMismatchError, match="not in the network: blocks.extra.weight"):
        deep.NETS["eegnet"][0](data, 2, {"weights": str(tmp_path / "extra")})
    _saved_eegnet(data, tmp_path / "shape", **{a_key: torch.zeros(1, 1)})
    with pytest.raises(CheckpointMismatchError, match=f"shape in the file vs the network: {a_key}"):
        deep.NETS["eegnet"][0](data, 2, {"weights": str(tmp_path / "shape")})


def test_braindecode_linear_probe_and_finetune_from_local_weights(mi_index: Path, tmp_path: Path) -> None:  # noqa: F811
    data = load_eval_data(mi_index)
    _saved_eegnet(data, tmp_path / "w")
    options = {"weights": str(tmp_path / "w"), "settings": FAST}
    linear = run_benchmark("eegnet", mi_index, "loso", adapt="linear", seeds=(0,), out=tmp_path / "r",
                           progress=False, model_options=options)
    row = linear.rows[0]
    assert linear.n_done == 4 and row["adapt"] == "linear" and row["model"] == f"eegnet:{tmp_path / 'w'}"
    assert row["weights_sha256"] and 0 <= row["metrics"]["balanced_accuracy"] <= 1
    fold = make_folds(data, "loso", seeds=(0,))[0]
    model = build_model("eegnet", adapt="finetune", **options)
    model.fit(data.take(fold.train), data.take(fold.val), seed=0)
    assert model.predict_proba(data.x[fold.test]).shape == (fold.test.size, 2)


def test_reve_builds_offline_from_a_prefetched_position_bank(mi_index: Path, tmp_path: Path,  # noqa: F811
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import mne

    monkeypatch.setenv("REVE_POSITIONS_PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=f"never downloads.*{tmp_path / 'reve_positions.json'}"):
        deep.NETS["reve"][0](None, 2, {})
    pos = mne.channels.make_standard_montage("colin27_1005").get_positions()["ch_pos"]
    (tmp_path / "reve_positions.json").write_text(json.dumps({n: [float(v) for v in p] for n, p in pos.items()}))
    data = load_eval_data(mi_index)
    net = deep.NETS["reve"][0](data, 2, {"embed_dim": 32, "depth": 1, "heads": 2, "head_dim": 16})
    assert net(torch.from_numpy(data.x[:2].astype(np.float32))).shape == (2, 2)
