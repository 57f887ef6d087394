"""``fit_tokenizer``: train a tokenizer on prepared shards and save it as a hub folder.

Typed arguments (dataclasses) so that ``neurofm tokenizer fit --config configs/tokenizer/tiny.yaml``
(jsonargparse) reads the same YAML a Python caller would write. Writes under ``out``:

    checkpoints/last.ckpt   Lightning checkpoint (``resume: true`` continues from it)
    logs/                   CSV metrics (or wandb, offline unless a key is configured)
    tokenizer/              save_pretrained: config.json, model.safetensors, README.md (model card)

torch and Lightning are imported inside the functions: the CLI builds ``--help`` from these
dataclasses without importing them.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import RVQConfig


@dataclass
class TokenizerDataConfig:
    """Which prepared shards train and validate the tokenizer.

    Attributes:
        index_paths: prepared datasets (index.json or their folders); all must share one sfreq.
        val_subjects: subjects held out for validation, bare ("01") or qualified ("physionet_s001_heldout/1").
        subjects: train only on these subjects (all when null).
        exclude_subjects: never use these subjects (e.g. a downstream test subject).
        batch_size: windows per step (each holds many channels; see max_rows).
        eval_batch_size: windows per validation batch (default: batch_size).
        num_workers: DataLoader worker processes.
        shuffle_buffer: samples in the shuffle buffer.
        train_batches_per_epoch: batches per epoch (default: one pass over the training windows).
        max_rows: channels (rows) per step for a per-channel tokenizer, drawn at random from the batch.
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
    max_rows: int | None = 256
    crop_samples: int | None = None
    seed: int = 0


@dataclass
class OptimConfig:
    """AdamW with a linear warm-up and a cosine decay.

    Attributes:
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
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
    """The subset of ``lightning.Trainer`` arguments a tokenizer run needs.

    Attributes:
        max_steps: optimiser steps.
        accelerator: cpu, gpu, auto...
        devices: number of devices (or "auto").
        precision: 32-true, bf16-mixed, 16-mixed.
        val_check_interval: validate every this many steps (null: at each epoch's end).
        limit_val_batches: validation batches per check (a count, or a fraction).
        log_every_n_steps: logging interval.
        gradient_clip_val: clip the gradient norm at this value (null: no clipping).
        checkpoint_every_n_steps: write checkpoints/last.ckpt this often.
        progress_bar: show a (rich) progress bar.
        wandb: log to Weights & Biases (offline when no API key is configured); CSV otherwise.
        wandb_project: the W&B project.
        default_root_dir: Lightning's root folder (default: out).
        seed: seed of the weights, the channel draws and the crops.
    """

    max_steps: int = 1000
    accelerator: str = "auto"
    devices: int | str = 1
    precision: str = "32-true"
    val_check_interval: int | None = None
    limit_val_batches: int | float = 1.0
    log_every_n_steps: int = 10
    gradient_clip_val: float | None = 1.0
    checkpoint_every_n_steps: int = 500
    progress_bar: bool = True
    wandb: bool = False
    wandb_project: str = "neurofm"
    default_root_dir: str | None = None
    seed: int = 0


@dataclass
class FitResult:
    out: Path
    hub_dir: Path  # save_pretrained folder
    last_checkpoint: Path
    steps: int
    metrics: dict[str, float]  # the trainer's last logged values
    seconds: float


def resolve_model_config(model: str | RVQConfig) -> RVQConfig:
    """A preset name (``tiny``, ``rvq_tiny``) or a full config."""
    if isinstance(model, RVQConfig):
        return model
    if isinstance(model, dict):
        return RVQConfig.from_dict(model)
    return RVQConfig.from_name(model.removeprefix("rvq_"))


def _windows_and_subjects(index: Any, subject_filter: Any) -> tuple[int, str]:
    if subject_filter is None:
        return 0, ""
    shards = index.select_shards(subject_filter.subjects, subject_filter.exclude_subjects, strict=False)
    return sum(s.n_samples for s in shards), ",".join(sorted({s.subject for s in shards}))


def _data_provenance(dm: Any) -> list[dict[str, Any]]:
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


def _logger(trainer_cfg: TrainerConfig, out: Path):
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    if not trainer_cfg.wandb:
        return CSVLogger(str(out), name="logs", version="")
    if not os.environ.get("WANDB_API_KEY") and not (Path.home() / ".netrc").exists():
        os.environ.setdefault("WANDB_MODE", "offline")  # never block on a login prompt
    return WandbLogger(project=trainer_cfg.wandb_project, save_dir=str(out))


def _callbacks(trainer_cfg: TrainerConfig, out: Path) -> list:
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar

    callbacks = [ModelCheckpoint(dirpath=str(out / "checkpoints"), save_last=True, save_top_k=0,
                                 every_n_train_steps=trainer_cfg.checkpoint_every_n_steps),
                 LearningRateMonitor(logging_interval="step")]
    if trainer_cfg.progress_bar:
        callbacks.append(RichProgressBar())
    return callbacks


def _trainer(trainer_cfg: TrainerConfig, out: Path):
    import lightning as L

    return L.Trainer(
        max_steps=trainer_cfg.max_steps, accelerator=trainer_cfg.accelerator, devices=trainer_cfg.devices,
        precision=trainer_cfg.precision, gradient_clip_val=trainer_cfg.gradient_clip_val,
        val_check_interval=trainer_cfg.val_check_interval, limit_val_batches=trainer_cfg.limit_val_batches,
        # a step interval counts across epochs (our epochs are short, fixed numbers of batches)
        check_val_every_n_epoch=None if trainer_cfg.val_check_interval else 1,
        log_every_n_steps=trainer_cfg.log_every_n_steps, logger=_logger(trainer_cfg, out),
        callbacks=_callbacks(trainer_cfg, out), enable_progress_bar=trainer_cfg.progress_bar,
        default_root_dir=trainer_cfg.default_root_dir or str(out), num_sanity_val_steps=0,
    )


def _datamodule(data: TokenizerDataConfig):
    from ..pipelines.loader import ShardDataModule

    return ShardDataModule(
        data.index_paths, batch_size=data.batch_size, eval_batch_size=data.eval_batch_size,
        num_workers=data.num_workers, shuffle_buffer=data.shuffle_buffer, seed=data.seed,
        subjects=data.subjects, exclude_subjects=data.exclude_subjects, val_subjects=data.val_subjects,
        train_batches_per_epoch=data.train_batches_per_epoch,
    )


def fit_tokenizer(
    data: TokenizerDataConfig | None = None,
    model: str | RVQConfig = "tiny",
    optim: OptimConfig | None = None,
    trainer: TrainerConfig | None = None,
    out: str = "runs/tokenizer/tiny",
    resume: bool = False,
) -> FitResult:
    """Train an RVQ tokenizer on prepared shards; save checkpoints and a hub folder.

    Args:
        data: prepared shards, subjects, batch size.
        model: an RVQ preset name (tiny, base) or a full RVQConfig.
        optim: AdamW and its warm-up + cosine schedule.
        trainer: steps, device, precision, validation, logging.
        out: output folder (checkpoints/, logs/, tokenizer/).
        resume: continue from out/checkpoints/last.ckpt when it exists.
    """
    import lightning as L

    data, optim, trainer = data or TokenizerDataConfig(), optim or OptimConfig(), trainer or TrainerConfig()
    config, out_dir, t0 = resolve_model_config(model), Path(out), time.perf_counter()
    L.seed_everything(trainer.seed, workers=True, verbose=False)
    dm = _datamodule(data)
    _check_sfreq(dm.indexes, config.sfreq)
    module = _module(config, data, optim, trainer)
    pl_trainer = _trainer(trainer, out_dir)
    last = out_dir / "checkpoints" / "last.ckpt"
    pl_trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume and last.exists() else None)
    pl_trainer.save_checkpoint(str(last))  # also when max_steps is not a multiple of the interval
    metrics = {k: float(v) for k, v in pl_trainer.logged_metrics.items()}
    tokenizer, hub_dir = module.tokenizer, out_dir / "tokenizer"
    tokenizer.training_info = {"data": _data_provenance(dm), "steps": pl_trainer.global_step,
                               "data_config": asdict(data), "optim": asdict(optim), "trainer": asdict(trainer),
                               "final_metrics": metrics}
    if pl_trainer.is_global_zero:
        tokenizer.save_pretrained(hub_dir)
    return FitResult(out=out_dir, hub_dir=hub_dir, last_checkpoint=last, steps=pl_trainer.global_step,
                     metrics=metrics, seconds=time.perf_counter() - t0)


def _module(config: RVQConfig, data: TokenizerDataConfig, optim: OptimConfig, trainer: TrainerConfig):
    from .lightning import TokenizerModule
    from .rvq import RVQTokenizer

    return TokenizerModule(RVQTokenizer(config), lr=optim.lr, weight_decay=optim.weight_decay, betas=optim.betas,
                           warmup_steps=optim.warmup_steps, max_steps=trainer.max_steps,
                           min_lr_ratio=optim.min_lr_ratio, max_rows=data.max_rows, crop_samples=data.crop_samples)


def _check_sfreq(indexes: list[Any], sfreq: float) -> None:
    wrong = {str(ix.path): ix.sfreq for ix in indexes if ix.sfreq != sfreq}
    if wrong:
        raise ValueError(f"the tokenizer expects {sfreq:g} Hz but these prepared datasets are not: {wrong} "
                         f"(set model.sfreq, or prepare with preprocessing.sfreq: {sfreq:g})")
