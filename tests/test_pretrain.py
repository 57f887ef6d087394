"""Pretraining a backbone: masking, both objectives, resume, export, the CLI and SLURM (CPU, tiny presets)."""

from __future__ import annotations

import csv
import math
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from neurofm.cli import main as cli_main
from neurofm.hub import CheckpointMismatchError
from neurofm.models.backbone import NeuroTransformer
from neurofm.models.config import BackboneConfig
from neurofm.models.export import backbone_from_checkpoint, export_checkpoint, read_checkpoint
from neurofm.models.fit import ObjectiveConfig, OptimConfig, PretrainResult, ShardDataConfig, TrainerConfig, pretrain
from neurofm.models.objective_config import OBJECTIVE_NAMES
from neurofm.models.objectives import OBJECTIVES, build_objective, random_token_mask
from neurofm.models.pretrain import PretrainModule
from neurofm.pipelines.loader import Batch, iter_samples
from neurofm.throughput import peak_bf16_flops
from neurofm.tokenizers.rvq import RVQConfig, RVQTokenizer
from neurofm.training import adamw_param_groups, build_trainer
from shardkit import RecordingSpec, make_dataset

ROOT = Path(__file__).resolve().parents[1]
STEPS = 50  # tokens on tiny_mi
MAE_STEPS = 200  # ~5 s: masked reconstruction learns slower than code prediction
# ~6 k parameters, 10 frames/s at 200 Hz (hop 4 x 5 = 20 samples): 10 frames per 1 s patch, as tiny's
# frames_per_patch; 2 levels of K = 16 codes.
MICRO_RVQ = dict(name="micro", channels=(4, 8, 8), strides=(4, 5), dilations=(1,), latent_dim=8, n_q=2,
                 codebook_size=16, stem_kernels=(5, 25), stft_windows=(16, 64))


def losses(out: Path, name: str = "train/loss") -> dict[int, float]:
    """step -> value of every logged training step (log_every_n_steps=1)."""
    rows = csv.DictReader((out / "logs" / "metrics.csv").open())
    return {int(r["step"]): float(r[name]) for r in rows if r.get(name)}


def trainer_cfg(**kw) -> TrainerConfig:
    return TrainerConfig(**{"accelerator": "cpu", "progress_bar": False, "log_every_n_steps": 1, **kw})


def make_batch(x: torch.Tensor, chan_mask: torch.Tensor, sfreq: float = 200.0) -> Batch:
    b, c, _ = x.shape
    pos = torch.randn(b, c, 3) * 0.05
    return Batch(x=x, chan_mask=chan_mask, pos=pos, pos_known=chan_mask.clone(), label=torch.full((b,), -1),
                 subject=["01"] * b, dataset=["d"] * b, key=[str(i) for i in range(b)],
                 ch_names=[[f"E{j}" for j in range(c)]] * b, ch_types=[["eeg"] * c] * b, sfreq=sfreq)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two OpenMP
    threads waiting on each other made the MAE run 7x slower (88 s vs 13 s) under load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------------
# data and a tokenizer

@pytest.fixture(scope="module")
def micro_tokenizer(tiny_mi_index: Path, tmp_path_factory) -> Path:
    """A tokenizer whose codebooks were k-means-initialised on real windows (one forward in train
    mode, as the first training step does): codes spread over the codebook, deterministic from then on."""
    torch.manual_seed(0)
    tok = RVQTokenizer(RVQConfig(**MICRO_RVQ))
    x = torch.from_numpy(np.stack([s.x for s in iter_samples(tiny_mi_index)][:16])).float()  # (16, 22, 400)
    tok.train()
    tok(x)
    folder = tmp_path_factory.mktemp("tok") / "micro"
    tok.eval().save_pretrained(folder)
    return folder


def shared_signal(spec: RecordingSpec, window: int, n_times: int) -> np.ndarray:
    """Every channel: one mix of sinusoids at 3, 6, 10 and 15 Hz (random amplitudes and phases, ~12 µV
    RMS at 200 Hz) + 3 µV of its own noise: a masked patch is predictable from the other channels at
    the same time (NMSE floor ~0.06), and a held-out subject's windows span the same waveforms.
    On tiny_mi the tiny backbone stays at NMSE ~1.0 (the zero predictor) for the first few hundred
    steps: its channels share too little for a short test (docs/pretraining.md)."""
    rng = np.random.default_rng([int(spec.subject), window])
    t = np.arange(n_times) / 200.0
    s = sum(rng.uniform(4, 12) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in (3, 6, 10, 15))
    return (s[None, :] + 3.0 * rng.standard_normal((spec.n_chans, n_times))).astype(np.float32)


@pytest.fixture(scope="module")
def shared_index(tmp_path_factory) -> Path:
    recordings = tuple(RecordingSpec(f"0{i}", 12, n_windows=30) for i in (1, 2, 3))
    return make_dataset(tmp_path_factory.mktemp("shared"), recordings, sfreq=200.0, n_times=400,
                        window_fn=shared_signal)


def run_pretrain(index: Path, out: Path, objective: ObjectiveConfig, steps: int = STEPS, batch_size: int = 4,
                 **kw) -> PretrainResult:
    data = ShardDataConfig(index_paths=[str(index)], batch_size=batch_size, val_subjects=["03"], shuffle_buffer=20)
    return pretrain(data=data, model="tiny", objective=objective, optim=OptimConfig(lr=3e-3, warmup_steps=5),
                    trainer=trainer_cfg(max_steps=steps, **kw), out=str(out))


@pytest.fixture(scope="module")
def mae_run(shared_index: Path, tmp_path_factory) -> PretrainResult:
    return run_pretrain(shared_index, tmp_path_factory.mktemp("mae"), ObjectiveConfig(name="mae"), steps=MAE_STEPS,
                        batch_size=8, val_check_interval=50)


@pytest.fixture(scope="module")
def tokens_run(tiny_mi_index: Path, micro_tokenizer: Path, tmp_path_factory) -> PretrainResult:
    return run_pretrain(tiny_mi_index, tmp_path_factory.mktemp("tokens"),
                        ObjectiveConfig(name="tokens", tokenizer=str(micro_tokenizer)))


@pytest.fixture(scope="module")
def next_run(tiny_mi_index: Path, micro_tokenizer: Path, tmp_path_factory) -> PretrainResult:
    return run_pretrain(tiny_mi_index, tmp_path_factory.mktemp("next"), ObjectiveConfig(name="next", tokenizer=str(micro_tokenizer)))


# --------------------------------------------------------------------------------------------------
# masking

def test_random_token_mask_draws_the_ratio_of_real_tokens_only() -> None:
    chan_mask = torch.tensor([[True] * 6 + [False] * 2, [True, False, True, False, False, False, False, False],
                              [True] + [False] * 7])  # (3, 8): padded / bad channels are False
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        mask = random_token_mask(chan_mask, 3, 0.5, gen)  # (3, 8, 3)
        assert not (mask & ~chan_mask[:, :, None]).any()
        assert mask.sum((1, 2)).tolist() == [9, 3, 2]  # round(0.5 * 18), round(0.5 * 6), round(0.5 * 3)
    assert random_token_mask(chan_mask[2:], 1, 0.3, gen).sum() == 1  # at least one token


def _micro_tokenizer_module() -> RVQTokenizer:
    torch.manual_seed(0)
    return RVQTokenizer(RVQConfig(**MICRO_RVQ, kmeans_init=False)).eval()


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
@pytest.mark.parametrize("name", sorted(set(OBJECTIVES) - {"next"}))
def test_objectives_score_only_real_tokens_and_ignore_padding(name: str) -> None:
    torch.manual_seed(0)
    backbone = NeuroTransformer("tiny")
    objective = build_objective(ObjectiveConfig(name=name), backbone, tokenizer=_micro_tokenizer_module())
    module = PretrainModule(backbone, objective, crop_samples=400)
    seen: list[torch.Tensor] = []
    features = backbone.forward_features

    def spy(x, pos, chan_mask, pos_known, token_mask):
        seen.append(token_mask)
        return features(x, pos, chan_mask, pos_known, token_mask)

    backbone.forward_features = spy
    x = torch.randn(2, 4, 600) * 10
    chan_mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    x[1, 2:] = float("nan")  # padded or bad channels may hold anything: they must never be read
    loss = module.training_step(make_batch(x, chan_mask), 0)
    assert torch.isfinite(loss)
    (token_mask,) = seen
    assert token_mask.shape == (2, 4, 2)  # a random 400-sample crop: 2 patches
    assert not (token_mask & ~chan_mask[:, :, None]).any() and token_mask.sum() == 4 + 2


def test_next_token_objective_is_causal_and_ignores_padding() -> None:
    torch.manual_seed(0)
    backbone = NeuroTransformer("tiny")
    objective = build_objective(ObjectiveConfig(name="next"), backbone, tokenizer=_micro_tokenizer_module())
    module = PretrainModule(backbone, objective, crop_samples=400)
    calls: list[dict] = []
    features = backbone.forward_features

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return features(*args, **kwargs)

    backbone.forward_features = spy
    x = torch.randn(2, 4, 600) * 10
    chan_mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    x[1, 2:] = float("nan")
    assert torch.isfinite(module.training_step(make_batch(x, chan_mask), 0))
    assert calls == [{"causal": True}]
    with pytest.raises(ValueError, match="at least 2 patches"):
        objective(backbone, make_batch(torch.randn(2, 4, 200) * 10, chan_mask), torch.Generator().manual_seed(0))


def test_registry_and_config_names_agree() -> None:
    literal = typing.get_args(typing.get_type_hints(ObjectiveConfig)["name"])
    assert set(OBJECTIVES) == set(OBJECTIVE_NAMES) == set(literal)


def test_tokenizer_frame_rate_must_match_frames_per_patch() -> None:
    tok = RVQTokenizer(RVQConfig(**{**MICRO_RVQ, "strides": (4, 10)}, kmeans_init=False))  # 5 frames/s
    with pytest.raises(ValueError, match=r"5 frames/s x patch 1 s = 5 frames per patch.*frames_per_patch is 10"):
        build_objective(ObjectiveConfig(name="tokens"), NeuroTransformer("tiny"), tokenizer=tok)
    with pytest.raises(ValueError, match="needs objective.tokenizer"):
        build_objective(ObjectiveConfig(name="tokens"), NeuroTransformer("tiny"))


def test_no_weight_decay_on_biases_norms_embeddings_and_the_mask_token() -> None:
    backbone = NeuroTransformer(BackboneConfig(input="codes", pooling="attention"))  # embeddings, a pool
    # the objective only brings its decoder (built for a patch-input backbone) into the module here
    module = PretrainModule(backbone, build_objective(ObjectiveConfig(), NeuroTransformer("tiny")))
    decay, no_decay = adamw_param_groups(module, 0.05)
    names = {id(p): n for n, p in module.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    undecayed = {names[id(p)] for p in no_decay["params"]}
    assert "backbone.mask_token" in undecayed and "backbone.embed.levels.0.weight" in undecayed
    assert "backbone.blocks.0.norm1.weight" in undecayed and "objective.decoder.bias" in undecayed
    assert "backbone.blocks.0.attn.qkv.weight" in decayed and "objective.decoder.weight" in decayed
    assert not any(n.startswith("backbone.pool.") for n in decayed | undecayed)  # frozen: pretraining never pools


# --------------------------------------------------------------------------------------------------
# training

def _first_last(values: dict[int, float], n: int = 10) -> tuple[float, float]:
    v = [values[k] for k in sorted(values)]
    return float(np.mean(v[:n])), float(np.mean(v[-n:]))


def test_mae_loss_decreases_below_the_zero_predictor(mae_run: PretrainResult) -> None:
    first, last = _first_last(losses(mae_run.out))
    nmse_first, nmse_last = _first_last(losses(mae_run.out, "train/nmse"))
    print(f"mae loss {first:.3f} -> {last:.3f}, nmse {nmse_first:.3f} -> {nmse_last:.3f}, "
          f"val nmse {mae_run.metrics['val/nmse']:.3f}")
    assert mae_run.steps == MAE_STEPS and last < 0.8 * first
    assert nmse_last < 0.85 and mae_run.metrics["val/nmse"] < 0.85  # 1.0: predicting zeros
    assert {"val/loss", "val/mse", "val/spectral", "train/spectral"} <= set(mae_run.metrics)


def test_tokens_loss_decreases_below_the_code_frequencies(tokens_run: PretrainResult) -> None:
    first, last = _first_last(losses(tokens_run.out))
    print(f"tokens loss {first:.3f} -> {last:.3f}")
    assert tokens_run.steps == STEPS and last < 0.8 * first
    # the micro tokenizer's codes on tiny_mi have a marginal entropy of ~2.6 nats per level (log 16 = 2.77):
    # predicting their frequencies alone would stop there
    assert last < 2.2
    acc = losses(tokens_run.out, "train/acc")
    assert _first_last(acc)[1] > _first_last(acc)[0] + 0.1
    assert {"train/acc_l0", "train/acc_l1", "val/ce", "val/acc"} <= set(tokens_run.metrics)


def test_next_token_loss_decreases(next_run: PretrainResult) -> None:
    first, last = _first_last(losses(next_run.out))
    print(f"next-token loss {first:.3f} -> {last:.3f}")
    assert next_run.steps == STEPS and last < 0.8 * first and last < 2.4
    assert {"val/ce", "val/acc", "train/acc_l0"} <= set(next_run.metrics)


def test_throughput_is_logged(tokens_run: PretrainResult) -> None:
    m = tokens_run.metrics
    assert m["perf/samples_per_s"] > 0 and m["perf/tflops"] > 0
    # tiny_mi: 22 channels (fewer where preprocessing marked some bad) x 2 patches per window
    assert 0.8 * 44 * m["perf/samples_per_s"] < m["perf/tokens_per_s"] <= 44 * m["perf/samples_per_s"] * (1 + 1e-6)
    assert "perf/mfu" not in m  # GPU only


def test_peak_flops_table() -> None:
    assert peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_bf16_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_bf16_flops("NVIDIA H200") == 989e12 and peak_bf16_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert math.isnan(peak_bf16_flops("Some Future GPU"))


@pytest.mark.parametrize("name", ["mae", "tokens"])
def test_bf16_mixed_precision_trains_on_cpu(name: str, tiny_mi_index: Path, micro_tokenizer: Path,
                                            tmp_path: Path) -> None:
    """The autocast path a GPU run takes (bf16-mixed), on CPU: it trains and validates to finite values
    for both objectives (the tokens objective encodes with its frozen tokenizer outside autocast)."""
    objective = ObjectiveConfig(name=name, tokenizer=str(micro_tokenizer) if name == "tokens" else None)
    result = run_pretrain(tiny_mi_index, tmp_path, objective, steps=6, precision="bf16-mixed", val_check_interval=3)
    assert result.steps == 6 and all(math.isfinite(v) for v in losses(result.out).values())
    assert math.isfinite(losses(result.out, "val/loss")[5])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_mfu_is_logged_on_gpu(tiny_mi_index: Path, tmp_path: Path) -> None:
    result = run_pretrain(tiny_mi_index, tmp_path, ObjectiveConfig(), steps=30, accelerator="gpu", precision="bf16-mixed",
                          log_every_n_steps=10)
    assert "perf/mfu" in result.metrics  # NaN on a GPU missing from PEAK_BF16_FLOPS


# --------------------------------------------------------------------------------------------------
# resume

@pytest.fixture(scope="module")
def fixed_batch_index(tmp_path_factory) -> Path:
    """One training shard of exactly one batch (4 windows; shuffle_buffer 0): every step sees the same
    windows, whatever the epoch, so a resumed run must reproduce the uninterrupted one step for step.
    (The loader's stream after a resume is the loader's business; this checks weights, optimiser,
    schedule, step counter and the per-step random draws.)"""
    recordings = (RecordingSpec("01", 8, n_windows=4, bad_channels=("C3",)), RecordingSpec("02", 5, n_windows=4))
    return make_dataset(tmp_path_factory.mktemp("fixed"), recordings, sfreq=200.0, n_times=600, shard_size=4)


def _resume_run(index: Path, out: Path, steps: int, trainer_kw: dict | None = None, **kw) -> PretrainResult:
    data = ShardDataConfig(index_paths=[str(index)], batch_size=4, val_subjects=["02"], shuffle_buffer=0,
                           train_batches_per_epoch=3, crop_samples=400)
    trainer_kw = {"checkpoint_every_n_steps": 4, "keep_checkpoints": -1, **(trainer_kw or {})}
    return pretrain(data=data, model="tiny", objective=ObjectiveConfig(), optim=OptimConfig(lr=3e-3, warmup_steps=2),
                    trainer=trainer_cfg(max_steps=steps, **trainer_kw), out=str(out), **kw)


def test_resume_continues_at_the_same_step_with_the_same_loss(fixed_batch_index: Path, tmp_path: Path) -> None:
    straight = _resume_run(fixed_batch_index, tmp_path / "a", 8)
    mid = tmp_path / "a" / "checkpoints" / "step=0000004.ckpt"  # mid-epoch (3 batches per epoch)
    assert mid.is_file() and read_checkpoint(mid)["global_step"] == 4
    resumed = _resume_run(fixed_batch_index, tmp_path / "b", 8, ckpt_path=str(mid))
    a, b = losses(straight.out), losses(resumed.out)
    assert min(b) == 4 and resumed.steps == straight.steps == 8
    np.testing.assert_allclose([b[s] for s in range(4, 8)], [a[s] for s in range(4, 8)], rtol=1e-5)
    # resume: true picks up out/checkpoints/last.ckpt and goes on from step 8
    more = _resume_run(fixed_batch_index, tmp_path / "a", 10, resume=True)
    assert more.steps == 10 and min(losses(more.out)) == 8
    earlier = list(csv.DictReader((more.out / "logs" / "metrics.0.csv").open()))  # kept, not overwritten
    assert {int(r["step"]) for r in earlier if r.get("train/loss")} == set(range(8))


@pytest.mark.parametrize("every", [4, 500], ids=["periodic-save-at-the-end", "final-save-only"])
def test_a_run_resumed_after_validating_at_its_last_step_logs_the_next_steps(every: int, fixed_batch_index: Path,
                                                                             tmp_path: Path) -> None:
    """Step 4 is the last step and a validation step; a checkpoint taken after fit returned made the
    resumed run log steps 5, 6 and validate at 6 (Lightning advances its counter again on restart)."""
    kw = {"val_check_interval": 2, "checkpoint_every_n_steps": every, "keep_checkpoints": 0}
    _resume_run(fixed_batch_index, tmp_path, 4, trainer_kw=kw)
    more = _resume_run(fixed_batch_index, tmp_path, 6, trainer_kw=kw, resume=True)
    assert more.steps == 6 and sorted(losses(more.out)) == [4, 5]
    assert sorted(losses(more.out, "val/loss")) == [5]
    assert read_checkpoint(more.last_checkpoint)["global_step"] == 6


def test_a_run_stopped_early_resumes_at_its_next_step(fixed_batch_index: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop asked for at a batch's end, as trainer.max_time's Timer asks, at a validation step: the
    checkpoint is taken at that batch, and the resumed run logs steps 4, 5 with no step left out."""
    from lightning.pytorch.callbacks import Callback

    import neurofm.training

    class StopAtStep4(Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            trainer.should_stop = trainer.global_step >= 4

    build = neurofm.training.build_callbacks
    monkeypatch.setattr(neurofm.training, "build_callbacks", lambda cfg, out: [*build(cfg, out), StopAtStep4()])
    kw = {"val_check_interval": 2, "checkpoint_every_n_steps": 500, "keep_checkpoints": 0}  # step 4 validates
    stopped = _resume_run(fixed_batch_index, tmp_path, 8, trainer_kw=kw)
    assert stopped.steps == 4 and read_checkpoint(stopped.last_checkpoint)["global_step"] == 4
    monkeypatch.setattr(neurofm.training, "build_callbacks", build)
    more = _resume_run(fixed_batch_index, tmp_path, 6, trainer_kw=kw, resume=True)
    assert sorted(losses(more.out)) == [4, 5] and sorted(losses(more.out, "val/loss")) == [5]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]  # no last-v1.ckpt


def test_explicit_ckpt_path_must_exist(fixed_batch_index: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        _resume_run(fixed_batch_index, tmp_path, 2, ckpt_path="last")


# --------------------------------------------------------------------------------------------------
# export

def test_export_gives_the_same_backbone(tokens_run: PretrainResult, tiny_mi_index: Path, tmp_path: Path) -> None:
    """The checkpoint also holds the frozen tokenizer and the code head: not part of the backbone."""
    code = _cli("export", str(tokens_run.last_checkpoint), "--to", str(tmp_path / "hub"))
    assert code == 0
    loaded = NeuroTransformer.from_pretrained(tmp_path / "hub")
    ckpt = torch.load(tokens_run.last_checkpoint, map_location="cpu", weights_only=True)
    assert any(k.startswith("objective.tokenizer.") for k in ckpt["state_dict"])
    reference = NeuroTransformer(BackboneConfig.from_dict(ckpt["hyper_parameters"]["backbone"]))
    reference.load_state_dict({k[len("backbone."):]: v for k, v in ckpt["state_dict"].items()
                               if k.startswith("backbone.")})
    x, pos = torch.randn(2, 5, 400) * 10, torch.randn(2, 5, 3) * 0.05
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_features(x, pos), reference.eval().forward_features(x, pos),
                                   rtol=0, atol=0)
    card = (tmp_path / "hub" / "README.md").read_text()
    preproc_hash = yaml.safe_load(tiny_mi_index.read_text())["preproc_hash"]
    assert "tiny_mi" in card and preproc_hash in card and '"steps": 50' in card and '"name": "tokens"' in card
    # pretrain itself wrote the same folder from last.ckpt
    written = (tmp_path / "hub" / "model.safetensors").read_bytes()
    assert (tokens_run.hub_dir / "model.safetensors").read_bytes() == written


def test_export_of_a_checkpoint_with_a_missing_or_unknown_key_fails(mae_run: PretrainResult, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    ckpt = torch.load(mae_run.last_checkpoint, map_location="cpu", weights_only=True)
    del ckpt["state_dict"]["backbone.blocks.1.attn.qkv.weight"]
    torch.save(ckpt, tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1 of \d+\).*blocks\.1\.attn\.qkv\.weight"):
        export_checkpoint(tmp_path / "missing.ckpt", tmp_path / "out")
    assert _cli("export", str(tmp_path / "missing.ckpt"), "--to", str(tmp_path / "out")) == 2
    assert "blocks.1.attn.qkv.weight" in capsys.readouterr().err
    ckpt = read_checkpoint(mae_run.last_checkpoint)
    ckpt["state_dict"]["backbone.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys \(1\).*extra\.weight"):
        backbone_from_checkpoint(ckpt)
    assert not (tmp_path / "out").exists()


def test_export_refuses_pickled_objects(tmp_path: Path) -> None:
    torch.save({"state_dict": {}, "hyper_parameters": {"backbone": BackboneConfig()}}, tmp_path / "obj.ckpt")
    with pytest.raises(CheckpointMismatchError, match="weights_only"):
        read_checkpoint(tmp_path / "obj.ckpt")


# --------------------------------------------------------------------------------------------------
# command line and cluster

def _cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_:
        cli_main(list(args))
    return exit_.value.code


def test_cli_pretrain_from_a_yaml_config(tiny_mi_index: Path, tmp_path: Path) -> None:
    config = {"data": {"index_paths": [str(tiny_mi_index)], "batch_size": 2},
              "model": {"name": "micro", "dim": 16, "depth": 1, "heads": 2},
              "trainer": {"max_steps": 3, "accelerator": "cpu", "progress_bar": False, "log_every_n_steps": 1},
              "out": str(tmp_path / "run")}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(config))
    assert _cli("pretrain", "--config", str(tmp_path / "p.yaml")) == 0
    assert NeuroTransformer.from_pretrained(tmp_path / "run" / "backbone").config.dim == 16
    more = ("--trainer.max_steps", "4", "--ckpt_path", "last")
    assert _cli("pretrain", "--config", str(tmp_path / "p.yaml"), *more) == 0
    assert min(losses(tmp_path / "run")) == 3


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "pretrain").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_print_and_name_shipped_manifests(path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _cli("pretrain", "--config", str(path), "--print_config") in (0, None)
    cfg = yaml.safe_load(capsys.readouterr().out)
    preset, objective, *_variant = path.stem.split("_")  # <preset>_<objective>[_<data>].yaml
    assert cfg["objective"]["name"] == objective and cfg["model"] == preset
    assert ObjectiveConfig(**cfg["objective"]) and TrainerConfig(**cfg["trainer"])
    for index in cfg["data"]["index_paths"]:
        name = Path(index).parent.name  # runs/shards/<manifest name>/index.json
        assert (ROOT / "data_manifests" / f"{name}.yaml").is_file(), f"{path.name}: no manifest for {index}"


def test_help(capsys: pytest.CaptureFixture) -> None:
    for command in ("pretrain", "export"):
        assert _cli(command, "--help") == 0
        assert "usage:" in capsys.readouterr().out


SLURM_ENV = {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "1", "SLURM_JOB_NAME": "pretrain",
             "SLURM_JOB_ID": "123", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
             "SLURM_NODELIST": "node1"}


@pytest.mark.parametrize("requeue", [True, False])
def test_slurm_environment_is_added_under_slurm(requeue: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    for name, value in SLURM_ENV.items():
        monkeypatch.setenv(name, value)
    trainer = build_trainer(trainer_cfg(slurm_requeue=requeue), tmp_path)
    env = trainer._accelerator_connector.cluster_environment
    assert isinstance(env, SLURMEnvironment) and env.auto_requeue is requeue


def test_no_slurm_environment_outside_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    for name in SLURM_ENV:
        monkeypatch.delenv(name, raising=False)
    trainer = build_trainer(trainer_cfg(), tmp_path)
    assert not isinstance(trainer._accelerator_connector.cluster_environment, SLURMEnvironment)
