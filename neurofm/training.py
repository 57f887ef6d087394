"""Training plumbing shared by every training command (``tokenizer fit``, ``pretrain``).

Typed configs (the YAML sections ``data``, ``optim``, ``trainer``) and the one place where they
become Lightning objects: the data module, AdamW with its warm-up + cosine schedule, the logger,
the callbacks, the plugins and the ``Trainer``. Writes under a run folder ``out``::

    checkpoints/last.ckpt   every ``checkpoint_every_n_steps`` and at the end (+ step=N.ckpt kept on request)
    logs/                   CSV metrics (or wandb, offline unless a key is configured)

torch and Lightning are imported inside the functions: the CLI builds ``--help`` from these
dataclasses without importing them. ``ThroughputMonitor`` (samples/s, tokens/s, MFU) lives in
``neurofm.throughput`` and is re-exported here.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import lightning as L
    from torch import nn

    from .pipelines.loader import ShardDataModule

CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"


@dataclass
class ShardDataConfig:
    """Which prepared shards train and validate, and how they are batched.

    Attributes:
        index_paths: prepared datasets (index.json or their folders); all must share one sfreq.
        val_subjects: subjects held out for validation, bare ("01") or qualified ("physionet_s001_heldout/1").
        subjects: train only on these subjects (all when null).
        exclude_subjects: never use these subjects (e.g. a downstream test subject).
        batch_size: windows per step and device.
        eval_batch_size: windows per validation batch (default: batch_size).
        num_workers: DataLoader worker processes, for streamed shards (local prepared shards are
            read in the training process: their batches do not depend on it).
        shuffle_buffer: windows mixed at a time (local shards: a block of whole shards, at least
            16 of them or all there are, permuted; streamed shards: webdataset's shuffle buffer).
        train_batches_per_epoch: batches per epoch (default: one pass over the training windows).
        crop_samples: train on random crops of this many samples (whole windows when null).
        seed: seed of the shard and sample order.
    """

    index_paths: list[str] = field(default_factory=lambda: ["runs/shards/synthetic_pretrain/index.json"])
    val_subjects: list[str] | None = None
    subjects: list[str] | None = None
    exclude_subjects: list[str] | None = None
    batch_size: int = 8
    eval_batch_size: int | None = None
    num_workers: int = 0
    shuffle_buffer: int = 200
    train_batches_per_epoch: int | None = None
    crop_samples: int | None = None
    seed: int = 0


@dataclass
class OptimConfig:
    """AdamW with a linear warm-up and a cosine decay.

    Attributes:
        lr: peak learning rate.
        weight_decay: AdamW weight decay (pretraining: not on biases, norms, embeddings, learned tokens).
        betas: AdamW betas.
        warmup_steps: linear warm-up steps.
        min_lr_ratio: the cosine schedule ends at lr * min_lr_ratio.
    """

    lr: float = 1e-3
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1


@dataclass
class TrainerConfig:
    """The subset of ``lightning.Trainer`` arguments a run needs.

    Attributes:
        max_steps: optimiser steps.
        max_time: also stop (and save) after this wall time, "DD:HH:MM:SS" (e.g. a SLURM slot); null: no limit.
            The learning-rate schedule still runs over ``max_steps``.
        accelerator: cpu, gpu, auto...
        devices: devices per node (or "auto"); under SLURM, --ntasks-per-node.
        num_nodes: nodes (under SLURM, --nodes).
        strategy: auto (one device, or DDP when there are several), ddp, or fsdp (sharded weights).
        precision: 32-true, bf16-mixed, 16-mixed.
        accumulate_grad_batches: batches whose gradients add up to one optimiser step.
        val_check_interval: validate every this many steps (null: at each epoch's end).
        limit_val_batches: validation batches per check (a count, or a fraction).
        log_every_n_steps: logging interval.
        gradient_clip_val: clip the gradient norm at this value (null: no clipping).
        checkpoint_every_n_steps: write checkpoints/last.ckpt this often.
        keep_checkpoints: also keep step-numbered checkpoints (step=NNNNNNN.ckpt) written at that
            interval: 0 none, k the latest k, -1 all.
        slurm_requeue: under SLURM, on the --signal (SIGUSR1) save an hpc checkpoint and requeue the job.
        progress_bar: show a (rich) progress bar.
        wandb: log to Weights & Biases (offline when no API key is configured); CSV otherwise.
        wandb_project: the W&B project.
        wandb_name: the W&B run's name (default: the name of the ``out`` folder).
        default_root_dir: Lightning's root folder (default: out); SLURM hpc checkpoints go here.
        seed: seed of the weights and of every random draw of the training step.
    """

    max_steps: int = 1000
    max_time: str | None = None
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    precision: str = "32-true"
    accumulate_grad_batches: int = 1
    val_check_interval: int | None = None
    limit_val_batches: int | float = 1.0
    log_every_n_steps: int = 10
    gradient_clip_val: float | None = 1.0
    checkpoint_every_n_steps: int = 500
    keep_checkpoints: int = 0
    slurm_requeue: bool = True
    progress_bar: bool = True
    wandb: bool = False
    wandb_project: str = "neurofm"
    wandb_name: str | None = None
    default_root_dir: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_steps < 1:  # Lightning's -1 (no limit) would leave the learning-rate schedule no length
            from .pipelines.errors import TrainingSettingsError

            raise TrainingSettingsError(f"trainer.max_steps={self.max_steps} must be >= 1 (the warm-up + cosine "
                                        "schedule runs over it; use trainer.max_time to stop on time)")


# --------------------------------------------------------------------------------------------------
# validation means over ranks


class EpochMeans:
    """Weighted means of named values over one validation epoch and over every rank.

    The eval loader splits shards over ranks, so ranks see different numbers of batches, possibly
    none, and a rank without batches knows no names: Lightning's ``sync_dist`` would wait for a rank
    that never logged, and without it only rank 0's share is logged. Each rank ``add``s its batches
    (weight: the windows or rows a value is a mean over); ``compute``, called by every rank at the
    epoch's end, gathers every rank's sums once and returns the same means on each. On one process
    it is the plain weighted mean.
    """

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}  # name -> sum of value x weight (a tensor stays on its device)
        self.weights: dict[str, float] = {}

    def add(self, values: Mapping[str, Any], weight: float) -> None:
        for name, value in values.items():
            value = value.detach().float() if hasattr(value, "detach") else float(value)
            self.sums[name] = self.sums.get(name, 0.0) + value * weight
            self.weights[name] = self.weights.get(name, 0.0) + weight

    def compute(self) -> dict[str, float]:
        local = ({name: float(v) for name, v in self.sums.items()}, dict(self.weights))
        return merge_means(_gather_from_ranks(local))

    def log_to(self, module: L.LightningModule, prefix: str, prog_bar: str | None = None) -> None:
        """Log every mean as ``prefix/name``; every rank must call it. The values are already the same
        on every rank: ``sync_dist`` with ``max`` leaves them unchanged, gives every rank the same
        ``callback_metrics``, and keeps Lightning from warning that epoch values are not reduced."""
        for name, value in self.compute().items():
            module.log(f"{prefix}/{name}", value, prog_bar=name == prog_bar, sync_dist=True, reduce_fx="max")


def merge_means(parts: list[tuple[dict[str, float], dict[str, float]]]) -> dict[str, float]:
    """``(sums, weights)`` of each rank → weighted means, in the order names first appear."""
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for rank_sums, rank_weights in parts:
        for name, value in rank_sums.items():
            sums[name] = sums.get(name, 0.0) + value
            weights[name] = weights.get(name, 0.0) + rank_weights[name]
    return {name: sums[name] / weights[name] for name in sums if weights[name] > 0}


def _gather_from_ranks(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` outside a distributed run)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


# --------------------------------------------------------------------------------------------------
# optimiser


def warmup_cosine(step: int, *, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """LR multiplier: linear warm-up to 1, then cosine down to ``min_lr_ratio`` at ``max_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def adamw_param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: decayed matrices, and undecayed biases, norms, embeddings and learned tokens.

    Decay pulls a weight towards 0: right for the matrices of linear maps, wrong for gains of norms
    (towards 1), biases, lookup tables and learned vectors such as a mask token (GPT-2 / timm
    ``param_groups_weight_decay``). A parameter counts as "not a matrix" when it has fewer than 2
    dimensions or belongs to an ``nn.Embedding``. Frozen parameters are left out.
    """
    from torch import nn

    embeddings = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or id(p) in embeddings else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw_with_schedule(module: nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float],
                        warmup_steps: int, max_steps: int, min_lr_ratio: float) -> dict[str, Any]:
    """What ``LightningModule.configure_optimizers`` returns: AdamW + a per-step warm-up + cosine."""
    import functools

    import torch

    opt = torch.optim.AdamW(adamw_param_groups(module, weight_decay), lr=lr, betas=tuple(betas))
    # a partial, not a closure: LambdaLR's state_dict then holds plain data (weights_only loading)
    schedule = functools.partial(warmup_cosine, warmup_steps=warmup_steps, max_steps=max_steps,
                                 min_lr_ratio=min_lr_ratio)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# --------------------------------------------------------------------------------------------------
# data


def build_datamodule(data: ShardDataConfig) -> ShardDataModule:
    from .pipelines.loader import ShardDataModule

    class _ResumableShardDataModule(ShardDataModule):
        # ShardLoader counts its own epochs from 0 in a fresh process, and Lightning never hands it
        # the epoch (it calls set_epoch only on a DataLoader's sampler): a resumed run would draw
        # the streams of the run's first epochs again. This starts the loader at the trainer's
        # (restored) epoch, before its first iter() (where workers take their copy of the pipeline).
        def train_dataloader(self):
            loader = super().train_dataloader()
            if self.trainer is not None:
                loader.set_epoch(self.trainer.current_epoch)
            return loader

    try:
        return _ResumableShardDataModule(
            data.index_paths, batch_size=data.batch_size, eval_batch_size=data.eval_batch_size,
            num_workers=data.num_workers, shuffle_buffer=data.shuffle_buffer, seed=data.seed,
            subjects=data.subjects, exclude_subjects=data.exclude_subjects, val_subjects=data.val_subjects,
            train_batches_per_epoch=data.train_batches_per_epoch,
        )
    except ValueError as err:  # unknown subjects, mixed sfreq, a malformed index.json...
        from .pipelines.errors import TrainingSettingsError

        raise TrainingSettingsError(f"data: {err}") from err


def check_sfreq(indexes: list[Any], sfreq: float, what: str = "the model") -> None:
    """Every prepared dataset must be at ``sfreq``; the error names the others and the fix."""
    wrong = {str(ix.path): ix.sfreq for ix in indexes if ix.sfreq != sfreq}
    if wrong:
        from .pipelines.errors import TrainingSettingsError

        raise TrainingSettingsError(f"{what} expects {sfreq:g} Hz but these prepared datasets are not: {wrong} "
                                    f"(set model.sfreq, or prepare with preprocessing.sfreq: {sfreq:g})")


def _windows_and_subjects(index: Any, subject_filter: Any) -> tuple[int, str]:
    if subject_filter is None:
        return 0, ""
    shards = index.select_shards(subject_filter.subjects, subject_filter.exclude_subjects, strict=False)
    return sum(s.n_samples for s in shards), ",".join(sorted({s.subject for s in shards}))


def data_provenance(dm: Any) -> list[dict[str, Any]]:
    """What the model card lists for each prepared dataset: what trained, what only validated."""
    rows = []
    for ix in dm.indexes:
        n_train, train_subjects = _windows_and_subjects(ix, dm.train_filter)
        n_val, val_subjects = _windows_and_subjects(ix, dm.val_filter)
        role = "+".join(r for r, n in (("train", n_train), ("validation", n_val)) if n) or "unused"
        rows.append({"dataset": ix.dataset, "role": role, "train_windows": n_train, "train_subjects": train_subjects,
                     "val_windows": n_val, "val_subjects": val_subjects, "preproc_hash": ix.preproc_hash,
                     "manifest_sha256": ix.raw.get("manifest_sha256"), "index": str(ix.path)})
    return rows


# --------------------------------------------------------------------------------------------------
# trainer


def build_logger(trainer_cfg: TrainerConfig, out: Path, resuming: bool = False):
    """CSV in ``out/logs/metrics.csv``, or W&B. A resumed run keeps what was logged before it:
    Lightning's CSV logger deletes an existing metrics.csv, so the earlier one is moved to
    ``metrics.<k>.csv`` (k = 0, 1, ... in order); a W&B run goes on under the same run id."""
    from lightning.pytorch.loggers import CSVLogger, WandbLogger
    from lightning.pytorch.utilities import rank_zero_only

    rank_zero = rank_zero_only.rank == 0  # from the launcher's env (RANK, SLURM_PROCID...): others never write
    if not trainer_cfg.wandb:
        metrics = out / "logs" / "metrics.csv"
        if resuming and rank_zero and metrics.is_file():
            k = next(k for k in itertools.count() if not (metrics.parent / f"metrics.{k}.csv").exists())
            metrics.rename(metrics.parent / f"metrics.{k}.csv")
        return CSVLogger(str(out), name="logs", version="")
    if not os.environ.get("WANDB_API_KEY") and not (Path.home() / ".netrc").exists():
        os.environ.setdefault("WANDB_MODE", "offline")  # never block on a login prompt
    run_id = _wandb_run_id(out) if rank_zero else None
    return WandbLogger(project=trainer_cfg.wandb_project, name=trainer_cfg.wandb_name or out.resolve().name,
                       save_dir=str(out), id=run_id, resume="allow")


def _wandb_run_id(out: Path) -> str:
    """One W&B run per output folder, across resumes and SLURM requeues."""
    import uuid

    path = out / "wandb_run_id"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(uuid.uuid4().hex[:12])
    return path.read_text().strip()


def build_callbacks(trainer_cfg: TrainerConfig, out: Path) -> list:
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar

    from .checkpointing import LastCheckpoint
    from .throughput import ThroughputMonitor

    every = trainer_cfg.checkpoint_every_n_steps
    callbacks = [LastCheckpoint(out / CHECKPOINTS, every), LearningRateMonitor(logging_interval="step"),
                 ThroughputMonitor()]
    if trainer_cfg.keep_checkpoints:
        # "step" is always a monitor candidate: the k highest steps are the latest k checkpoints
        callbacks.append(ModelCheckpoint(dirpath=str(out / CHECKPOINTS), filename="step={step:07d}",
                                         auto_insert_metric_name=False, monitor="step", mode="max",
                                         save_top_k=trainer_cfg.keep_checkpoints, every_n_train_steps=every))
    if trainer_cfg.progress_bar:
        callbacks.append(RichProgressBar())
    return callbacks


def build_plugins(trainer_cfg: TrainerConfig) -> list:
    """Under SLURM (detected as Lightning does: ``SLURM_NTASKS`` set, not an interactive job), the
    SLURM environment with ``auto_requeue`` as configured. Lightning would add one itself, always
    requeueing; naming it makes ``slurm_requeue: false`` possible (a job that must not resubmit)."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    if SLURMEnvironment.detect():
        return [SLURMEnvironment(auto_requeue=trainer_cfg.slurm_requeue)]
    return []


def build_trainer(trainer_cfg: TrainerConfig, out: Path, resuming: bool = False) -> L.Trainer:
    """The ``Trainer``; settings Lightning refuses (FSDP on CPU, a GPU that is not there, a malformed
    ``max_time``) raise ``TrainingSettingsError`` naming the ``trainer.*`` fields."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from .pipelines.errors import TrainingSettingsError

    logger, callbacks, plugins = build_logger(trainer_cfg, out, resuming), build_callbacks(trainer_cfg, out), \
        build_plugins(trainer_cfg)
    try:
        return L.Trainer(
            max_steps=trainer_cfg.max_steps, max_time=trainer_cfg.max_time, accelerator=trainer_cfg.accelerator,
            devices=trainer_cfg.devices, num_nodes=trainer_cfg.num_nodes, strategy=trainer_cfg.strategy,
            precision=trainer_cfg.precision, accumulate_grad_batches=trainer_cfg.accumulate_grad_batches,
            gradient_clip_val=trainer_cfg.gradient_clip_val, val_check_interval=trainer_cfg.val_check_interval,
            limit_val_batches=trainer_cfg.limit_val_batches,
            # a step interval counts across epochs (our epochs are short, fixed numbers of batches)
            check_val_every_n_epoch=None if trainer_cfg.val_check_interval else 1,
            log_every_n_steps=trainer_cfg.log_every_n_steps, logger=logger, callbacks=callbacks, plugins=plugins,
            enable_progress_bar=trainer_cfg.progress_bar,
            default_root_dir=trainer_cfg.default_root_dir or str(out), num_sanity_val_steps=0,
        )
    except (MisconfigurationException, ValueError) as err:
        fields = ", ".join(f"trainer.{k}={getattr(trainer_cfg, k)!r}"
                           for k in ("accelerator", "devices", "num_nodes", "strategy", "precision", "max_time"))
        raise TrainingSettingsError(f"Lightning cannot run these trainer settings ({fields}): {err}") from err


def resume_path(trainer_cfg: TrainerConfig, out: Path, resume: bool, ckpt_path: str | None = None) -> str | None:
    """The checkpoint ``Trainer.fit`` resumes from.

    ``ckpt_path``: a file, or ``"last"`` for ``out/checkpoints/last.ckpt`` (an error when absent).
    ``resume``: the newest of ``last.ckpt`` and the SLURM hpc checkpoints (``hpc_ckpt_N.ckpt``, written
    on the requeue signal) when one exists, else a fresh start, so that one command both starts a
    run and continues it after a requeue or a crash.
    """
    last = out / CHECKPOINTS / LAST
    if ckpt_path is not None:
        path = last if ckpt_path == "last" else Path(ckpt_path)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from at {path}")
        return str(path)
    if not resume:
        return None
    root = Path(trainer_cfg.default_root_dir or out)
    candidates = [p for p in (last, *root.glob("hpc_ckpt_*.ckpt")) if p.is_file()]
    return str(max(candidates, key=lambda p: p.stat().st_mtime)) if candidates else None


def __getattr__(name: str) -> Any:
    # ThroughputMonitor subclasses a Lightning Callback: imported on use, so `import neurofm.training`
    # (and the CLI's --help) stays free of torch.
    if name == "ThroughputMonitor":
        from .throughput import ThroughputMonitor

        return ThroughputMonitor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
