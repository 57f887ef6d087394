"""Training a tokenizer end to end: manifest → prepare → fit → hub folder → reconstruction quality."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from neurofm.cli import main as cli_main
from neurofm.pipelines.loader import Batch, iter_samples
from neurofm.pipelines.prepare import prepare
from neurofm.tokenizers.fit import OptimConfig, TokenizerDataConfig, TrainerConfig, fit_tokenizer, resolve_model_config
from neurofm.tokenizers.lightning import TokenizerModule
from neurofm.tokenizers.rvq import RVQConfig, RVQTokenizer
from neurofm.training import build_logger

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = "03"
STEPS = 500  # ~30-45 s on 2 CPU cores

# Synthetic resting state in fixed 2 s windows at the preprocessing default of 200 Hz: 3 subjects
# × 40 s; subject 03 is held out.
REST = {
    "name": "tiny_rest",
    "paradigm": "resting",
    "source": {"kind": "synthetic", "generator": {
        "paradigm": "resting", "n_subjects": 3, "n_runs": 1, "trials_per_class": 2,
        "montage": "eeg22", "sfreq": 200.0, "seed": 5}},
    "labels": {"eyes_open": "eyes_open", "eyes_closed": "eyes_closed"},
    "windows": {"mode": "fixed", "length_s": 2.0},
    "license": "BSD-3-Clause", "citation": "synthetic", "url": "none",
}


@pytest.fixture(scope="module")
def rest_index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rest")
    (root / "m.yaml").write_text(yaml.safe_dump(REST))
    summary = prepare(str(root / "m.yaml"), str(root / "shards"), progress=False)
    assert summary.n_failed == 0
    return root / "shards" / "index.json"


def held_out_windows(index: Path) -> np.ndarray:
    return np.stack([s.x for s in iter_samples(index, subjects=[HELD_OUT])]).astype(np.float64)  # (W, C, T)


def nmse(x: np.ndarray, y: np.ndarray) -> float:
    return float(((x - y) ** 2).sum() / (x ** 2).sum())


@pytest.fixture(scope="module")
def fitted(rest_index: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit")
    data = TokenizerDataConfig(index_paths=[str(rest_index)], val_subjects=[HELD_OUT], batch_size=4,
                               max_rows=32, crop_samples=200)
    trainer = TrainerConfig(max_steps=STEPS, accelerator="cpu", val_check_interval=STEPS, limit_val_batches=2,
                            progress_bar=False, log_every_n_steps=50)
    return fit_tokenizer(data=data, model="tiny", optim=OptimConfig(lr=2e-3, warmup_steps=30),
                         trainer=trainer, out=str(out))


def test_tiny_tokenizer_beats_zero_and_mean_predictors(fitted, rest_index: Path) -> None:
    tok = RVQTokenizer.from_pretrained(fitted.hub_dir)
    x = held_out_windows(rest_index)
    with torch.no_grad():
        y = tok.decode(tok.encode(torch.from_numpy(x).float()), n_samples=x.shape[-1]).double().numpy()
    zero, mean = 1.0, nmse(x, np.broadcast_to(x.mean(-1, keepdims=True), x.shape))
    got = nmse(x, y)
    assert got < 0.5 * min(zero, mean), f"NMSE {got:.3f} on the held-out subject; mean predictor {mean:.3f}"
    assert fitted.steps == STEPS and fitted.metrics["val/nmse"] < 0.6


def test_fit_writes_checkpoint_and_a_card_naming_the_data(fitted, rest_index: Path) -> None:
    assert fitted.last_checkpoint.is_file()
    assert {p.name for p in fitted.hub_dir.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    card = (fitted.hub_dir / "README.md").read_text()
    preproc_hash = yaml.safe_load(rest_index.read_text())["preproc_hash"]
    assert "tiny_rest" in card and preproc_hash in card and "train+validation" in card
    assert (fitted.out / "logs" / "metrics.csv").read_text().count("train/usage_l0") == 1


def test_resume_continues_from_last_checkpoint(fitted, rest_index: Path) -> None:
    data = TokenizerDataConfig(index_paths=[str(rest_index)], batch_size=2, max_rows=8, crop_samples=100)
    trainer = TrainerConfig(max_steps=STEPS + 10, accelerator="cpu", progress_bar=False)
    result = fit_tokenizer(data=data, model="tiny", trainer=trainer, out=str(fitted.out), resume=True)
    assert result.steps == STEPS + 10


def test_cli_fit_from_a_yaml_config(rest_index: Path, tmp_path: Path) -> None:
    config = {
        "data": {"index_paths": [str(rest_index)], "batch_size": 2, "max_rows": 8, "crop_samples": 100},
        "model": "tiny",
        "trainer": {"max_steps": 4, "accelerator": "cpu", "progress_bar": False, "log_every_n_steps": 1},
        "out": str(tmp_path / "run"),
    }
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(config))
    res = subprocess.run([sys.executable, "-m", "neurofm.cli", "tokenizer", "fit", "--config",
                          str(tmp_path / "fit.yaml")], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "WANDB_MODE": "disabled"})
    assert res.returncode == 0, res.stderr[-3000:]
    tok = RVQTokenizer.from_pretrained(tmp_path / "run" / "tokenizer")
    assert tok.config == RVQConfig.from_name("tiny")
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "tokenizer").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_parse_and_name_shipped_manifests(path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli_main(["tokenizer", "fit", "--config", str(path), "--print_config"])
    assert exit_.value.code in (0, None)
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert isinstance(resolve_model_config(cfg["model"]), RVQConfig)
    for index in cfg["data"]["index_paths"]:
        name = Path(index).parent.name  # runs/shards/<manifest name>/index.json
        assert (ROOT / "data_manifests" / f"{name}.yaml").is_file(), f"{path.name}: no manifest for {index}"


def test_wandb_is_offline_without_a_key_and_csv_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    assert isinstance(build_logger(TrainerConfig(), tmp_path), CSVLogger)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc login
    logger = build_logger(TrainerConfig(wandb=True, wandb_project="p"), tmp_path / "run_a")  # no run starts here
    assert isinstance(logger, WandbLogger) and os.environ["WANDB_MODE"] == "offline"
    assert (logger._project, logger._name) == ("p", "run_a")  # the run is named after its out folder
    assert build_logger(TrainerConfig(wandb=True, wandb_name="mine"), tmp_path / "run_a")._name == "mine"


def _batch(x: torch.Tensor, chan_mask: torch.Tensor, sfreq: float = 200.0) -> Batch:
    b, c, _ = x.shape
    return Batch(x=x, chan_mask=chan_mask, pos=torch.zeros(b, c, 3), pos_known=chan_mask.clone(),
                 label=torch.full((b,), -1), subject=["01"] * b, dataset=["d"] * b, key=[str(i) for i in range(b)],
                 ch_names=[[f"E{j}" for j in range(c)]] * b, ch_types=[["eeg"] * c] * b, sfreq=sfreq)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
@pytest.mark.parametrize("n_chans", [None, 3], ids=["per_channel_rows", "fixed_montage_mask"])
def test_module_trains_only_on_real_good_channels(n_chans: int | None) -> None:
    torch.manual_seed(0)
    tok = RVQTokenizer(RVQConfig(name="micro", channels=(4, 8, 8), dilations=(1,), latent_dim=8, n_q=2,
                                 codebook_size=16, stem_kernels=(5,), n_chans=n_chans))
    module = TokenizerModule(tok, max_rows=4, crop_samples=200)
    x = torch.randn(2, 3, 400) * 10
    x[1, 2] = float("nan")  # a padded or bad channel may hold anything: it must never be read
    mask = torch.tensor([[True, True, True], [True, False, False]])
    seen = []
    tok.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    loss = module.training_step(_batch(x, mask), 0)
    assert torch.isfinite(loss)
    assert seen == ([(4, 1, 200)] if n_chans is None else [(2, 3, 200)])  # rows capped at max_rows; crop
    with pytest.raises(ValueError, match="250 Hz"):
        module.training_step(_batch(x, mask, sfreq=250.0), 0)


def test_wrong_sampling_rate_is_a_clear_error(rest_index: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expects 250 Hz"):
        fit_tokenizer(data=TokenizerDataConfig(index_paths=[str(rest_index)]),
                      model=RVQConfig.from_name("tiny", sfreq=250.0), out=str(tmp_path))
