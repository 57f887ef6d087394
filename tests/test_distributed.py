"""Training on several processes (DDP over gloo on CPU): validation means over every rank, one
export, one report line, and settings Lightning refuses as plain errors."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from neurofm.cli import main as cli_main
from neurofm.models.backbone import NeuroTransformer
from neurofm.pipelines.errors import TrainingSettingsError
from neurofm.training import EpochMeans, ShardDataConfig, TrainerConfig, build_datamodule, build_trainer, merge_means

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------
# EpochMeans

def test_merge_means_weights_each_rank_and_keeps_names_only_one_rank_saw() -> None:
    parts = [({"loss": 2.0 * 3, "acc": 0.5 * 3}, {"loss": 3.0, "acc": 3.0}),
             ({}, {}),  # a rank whose shard split gave it no batch
             ({"loss": 6.0 * 1, "extra": 1.0}, {"loss": 1.0, "extra": 2.0})]
    assert merge_means(parts) == {"loss": (6.0 + 6.0) / 4, "acc": 0.5, "extra": 0.5}
    assert merge_means([({}, {})]) == {}


def test_epoch_means_on_one_process_are_weighted_means_of_tensors_and_floats() -> None:
    means = EpochMeans()
    means.add({"loss": torch.tensor(1.0), "usage": 0.25}, 2)
    means.add({"loss": torch.tensor(4.0, requires_grad=True), "usage": 1.0}, 1)
    assert means.compute() == pytest.approx({"loss": 2.0, "usage": 0.5})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_ranks(rank: int, port: int, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))  # a lost peer fails the test instead of hanging it
    try:
        means = EpochMeans()
        if rank == 0:  # rank 1 gets no batch at all, as a short eval split gives the last rank
            means.add({"loss": torch.tensor(1.0)}, 3)
            means.add({"loss": torch.tensor(3.0)}, 1)
        results[rank] = means.compute()
    finally:
        dist.destroy_process_group()


def test_epoch_means_over_two_gloo_ranks_are_the_pooled_mean_on_both() -> None:
    """Rank 1 has no batch: it must still take part (sync_dist would wait on it forever) and get the
    same means as rank 0, which are the mean over all windows (not rank 0's share alone)."""
    with mp.Manager() as manager:
        results = manager.dict()
        mp.start_processes(_two_ranks, args=(_free_port(), results), nprocs=2, start_method="fork")
        assert dict(results) == {0: {"loss": 1.5}, 1: {"loss": 1.5}}


# --------------------------------------------------------------------------------------------------
# settings Lightning refuses, data that does not fit: errors that name the fields

@pytest.mark.parametrize("settings, message", [
    ({"devices": 2, "strategy": "fsdp"}, r"trainer.strategy='fsdp'.*requires a GPU"),
    ({"max_time": "1 day"}, r"trainer.max_time='1 day'"),
])
def test_settings_lightning_refuses_are_settings_errors_naming_the_fields(settings: dict, message: str,
                                                                          tmp_path: Path) -> None:
    with pytest.raises(TrainingSettingsError, match=message):
        build_trainer(TrainerConfig(accelerator="cpu", progress_bar=False, **settings), tmp_path)


def test_max_steps_must_be_positive() -> None:
    with pytest.raises(TrainingSettingsError, match=r"max_steps=-1 must be >= 1"):
        TrainerConfig(max_steps=-1)


def test_unknown_validation_subject_is_a_settings_error(tiny_mi_index: Path) -> None:
    with pytest.raises(TrainingSettingsError, match=r"^data: subjects \['other/9'\] have no shard"):
        build_datamodule(ShardDataConfig(index_paths=[str(tiny_mi_index)], val_subjects=["other/9"]))


@pytest.mark.parametrize("args, message", [
    (("--trainer.strategy", "fsdp", "--trainer.devices", "2"), "trainer.strategy='fsdp'"),
    (("--data.val_subjects", "[nobody]"), "data: subjects ['nobody'] have no shard"),
])
def test_cli_prints_settings_errors_without_a_traceback(args: tuple[str, ...], message: str, tiny_mi_index: Path,
                                                        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli_main(["pretrain", "--data.index_paths", f"[{tiny_mi_index}]", "--trainer.accelerator", "cpu", *args,
                  "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and message in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------------
# the pretrain command on two processes

def test_pretrain_runs_under_ddp_on_two_cpu_processes(tiny_mi_index: Path, tmp_path: Path) -> None:
    """Lightning launches the second rank by running the command again; both ranks train 6 steps in
    lockstep, validation covers subject 03's windows over both ranks (the shard split may leave one
    rank none), rank 0 alone writes the backbone and prints the report."""
    out = tmp_path / "run"
    config = {"data": {"index_paths": [str(tiny_mi_index)], "val_subjects": ["03"], "batch_size": 2},
              "model": {"name": "micro", "dim": 16, "depth": 1, "heads": 2},
              "trainer": {"max_steps": 6, "accelerator": "cpu", "devices": 2, "strategy": "ddp",
                          "val_check_interval": 3, "progress_bar": False, "log_every_n_steps": 1},
              "out": str(out)}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    done = subprocess.run([sys.executable, "-m", "neurofm.cli", "pretrain", "--config", str(tmp_path / "p.yaml")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in done.stderr  # two processes ran
    assert done.stdout.count("backbone saved to") == 1, done.stdout
    assert "sync_dist" not in done.stderr  # validation means are reduced by us, not left to rank 0
    rows = list(csv.DictReader((out / "logs" / "metrics.csv").open()))
    val_steps = [int(r["step"]) for r in rows if r.get("val/loss")]
    assert val_steps == [2, 5]
    assert max(int(r["step"]) for r in rows if r.get("train/loss")) == 5
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 6
    assert NeuroTransformer.from_pretrained(out / "backbone").config.dim == 16


def test_tokenizer_fit_runs_under_ddp_and_validates_over_both_ranks(tiny_mi_index: Path, tmp_path: Path) -> None:
    """The RVQ tokenizer's validation (losses, code usage, NMSE per number of levels) is reduced over
    both ranks the same way; rank 0 alone saves the tokenizer and reports."""
    out = tmp_path / "tok"
    micro = dict(name="micro", channels=[4, 8, 8], strides=[4, 5], dilations=[1], latent_dim=8, n_q=2,
                 codebook_size=16, stem_kernels=[5, 25], stft_windows=[16, 64], sfreq=200.0)
    config = {"data": {"index_paths": [str(tiny_mi_index)], "val_subjects": ["03"], "batch_size": 2, "max_rows": 16},
              "model": micro,
              "trainer": {"max_steps": 4, "accelerator": "cpu", "devices": 2, "strategy": "ddp",
                          "val_check_interval": 4, "progress_bar": False, "log_every_n_steps": 1},
              "out": str(out)}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    done = subprocess.run([sys.executable, "-m", "neurofm.cli", "tokenizer", "fit", "--config", str(tmp_path / "t.yaml")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in done.stderr and "sync_dist" not in done.stderr
    assert done.stdout.count("tokenizer saved to") == 1, done.stdout
    val = [r for r in csv.DictReader((out / "logs" / "metrics.csv").open()) if r.get("val/nmse")]
    assert len(val) == 1 and {"val/total", "val/usage_l1", "val/nmse_q1", "val/nmse_q2"} <= set(val[0])
    assert (out / "tokenizer" / "model.safetensors").is_file()
