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

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..training import (CHECKPOINTS, LAST, OptimConfig, ShardDataConfig, TrainerConfig, build_datamodule,
                        build_trainer, check_sfreq, data_provenance, resume_path)
from .config import RVQConfig

__all__ = ["FitResult", "OptimConfig", "TokenizerDataConfig", "TrainerConfig", "fit_tokenizer",
           "resolve_model_config"]


@dataclass
class TokenizerDataConfig(ShardDataConfig):
    """Which prepared shards train and validate the tokenizer: ``ShardDataConfig``'s fields, plus ``max_rows``.

    Attributes:
        max_rows: channels (rows) per step for a per-channel tokenizer, drawn at random from the batch
            (a step's batch_size windows each hold many channels).
    """

    max_rows: int | None = 256


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
        resume: continue from out/checkpoints/last.ckpt (or a newer SLURM hpc checkpoint) when one exists.
    """
    import lightning as L

    from ..checkpointing import save_final_checkpoint

    data, optim, trainer = data or TokenizerDataConfig(), optim or OptimConfig(), trainer or TrainerConfig()
    config, out_dir, t0 = resolve_model_config(model), Path(out), time.perf_counter()
    L.seed_everything(trainer.seed, workers=True, verbose=False)
    dm = build_datamodule(data)
    check_sfreq(dm.indexes, config.sfreq, "the tokenizer")
    module = _module(config, data, optim, trainer)
    start_from = resume_path(trainer, out_dir, resume)
    pl_trainer = build_trainer(trainer, out_dir, resuming=start_from is not None)
    last = out_dir / CHECKPOINTS / LAST
    # weights_only: resuming unpickles nothing but tensors and plain containers
    pl_trainer.fit(module, datamodule=dm, ckpt_path=start_from, weights_only=True)
    save_final_checkpoint(pl_trainer, last)  # LastCheckpoint saved a run that reached its end
    metrics = {k: float(v) for k, v in pl_trainer.logged_metrics.items()}
    tokenizer, hub_dir = module.tokenizer, out_dir / "tokenizer"
    tokenizer.training_info = {"data": data_provenance(dm), "steps": pl_trainer.global_step,
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
