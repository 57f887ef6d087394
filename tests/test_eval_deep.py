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
    with pytest.raises(ValueError, match="only adapt=scratch"):
        build_model("labram", adapt="finetune")
    with pytest.raises(ValueError, match="adapt must be 'scratch'"):
        build_model("csp_lda", adapt="linear")
    with pytest.raises(RuntimeError, match="never downloads"):
        deep.NETS["reve"][0](None, 2, {})
