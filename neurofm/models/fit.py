"""``pretrain``: self-supervised pretraining of a backbone on prepared shards; a hub folder at the end.

Typed arguments (dataclasses) so that ``neurofm pretrain --config configs/pretrain/tiny_mae.yaml``
(jsonargparse) reads the same YAML a Python caller would write. Writes under ``out``:

    checkpoints/last.ckpt   Lightning checkpoint, every trainer.checkpoint_every_n_steps and at the end
                            (``resume: true`` or ``ckpt_path: last`` continues from it)
    logs/                   CSV metrics (or wandb, offline unless a key is configured)
    backbone/               save_pretrained: config.json, model.safetensors, README.md (model card with
                            the training data: datasets, preprocessing hash, manifest hashes, steps, configs)

The backbone folder is exported from ``last.ckpt`` (``neurofm export`` does the same for any
checkpoint), so what is saved is exactly what a resumed run would continue from.

torch and Lightning are imported inside the functions: the CLI builds ``--help`` from these
dataclasses without importing them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..training import (CHECKPOINTS, LAST, OptimConfig, ShardDataConfig, TrainerConfig, build_datamodule,
                        build_trainer, check_sfreq, data_provenance, resume_path)
from .config import BackboneConfig, resolve_backbone_config
from .objective_config import ObjectiveConfig

__all__ = ["ObjectiveConfig", "OptimConfig", "PretrainResult", "ShardDataConfig", "TrainerConfig", "pretrain"]


@dataclass
class PretrainResult:
    out: Path
    hub_dir: Path  # save_pretrained folder of the backbone
    last_checkpoint: Path
    steps: int
    metrics: dict[str, float]  # the trainer's last logged values
    seconds: float


def pretrain(
    data: ShardDataConfig | None = None,
    model: str | BackboneConfig | dict[str, Any] = "tiny",
    objective: ObjectiveConfig | None = None,
    optim: OptimConfig | None = None,
    trainer: TrainerConfig | None = None,
    out: str = "runs/pretrain/tiny_mae",
    resume: bool = False,
    ckpt_path: str | None = None,
) -> PretrainResult:
    """Pretrain a backbone with a masked objective; save checkpoints and a hub folder.

    Args:
        data: prepared shards, subjects, batch size, crop length.
        model: a backbone preset name (tiny, small, base, large) or a full BackboneConfig.
        objective: mae or tokens, the mask ratio and the objective's knobs.
        optim: AdamW and its warm-up + cosine schedule.
        trainer: steps, devices, nodes, strategy, precision, validation, logging.
        out: output folder (checkpoints/, logs/, backbone/).
        resume: continue from out/checkpoints/last.ckpt (or a newer SLURM hpc checkpoint) when one exists.
        ckpt_path: continue from this checkpoint ("last": out/checkpoints/last.ckpt), which must exist.
    """
    import lightning as L

    from ..checkpointing import save_final_checkpoint
    from .export import export_checkpoint

    data, objective = data or ShardDataConfig(), objective or ObjectiveConfig()
    optim, trainer = optim or OptimConfig(), trainer or TrainerConfig()
    config, out_dir, t0 = resolve_backbone_config(model), Path(out), time.perf_counter()
    L.seed_everything(trainer.seed, workers=True, verbose=False)
    dm = build_datamodule(data)
    check_sfreq(dm.indexes, config.sfreq, "the backbone")
    module = build_pretrain_module(config, objective, optim, trainer, data, data_provenance(dm))
    start_from = resume_path(trainer, out_dir, resume, ckpt_path)
    pl_trainer = build_trainer(trainer, out_dir, resuming=start_from is not None)
    last = out_dir / CHECKPOINTS / LAST
    # weights_only: resuming unpickles nothing but tensors and plain containers
    pl_trainer.fit(module, datamodule=dm, ckpt_path=start_from, weights_only=True)
    save_final_checkpoint(pl_trainer, last)  # LastCheckpoint saved a run that reached its end
    metrics = {k: float(v) for k, v in pl_trainer.logged_metrics.items()}
    hub_dir = out_dir / "backbone"
    if pl_trainer.is_global_zero:
        export_checkpoint(last, hub_dir, extra_info={"final_metrics": metrics})
    return PretrainResult(out=out_dir, hub_dir=hub_dir, last_checkpoint=last, steps=pl_trainer.global_step,
                          metrics=metrics, seconds=time.perf_counter() - t0)


def build_pretrain_module(config: BackboneConfig, objective: ObjectiveConfig, optim: OptimConfig,
                          trainer: TrainerConfig, data: ShardDataConfig, provenance: list[dict[str, Any]],
                          tokenizer: Any = None):
    """Backbone + objective (+ its tokenizer) → ``PretrainModule``, with the card's training_info."""
    from .backbone import NeuroTransformer
    from .objectives import build_objective
    from .pretrain import PretrainModule

    backbone = NeuroTransformer(config)
    obj = build_objective(objective, backbone, tokenizer)
    info = {"data": provenance, "objective": {**asdict(objective), **obj.provenance()},
            "data_config": asdict(data), "optim": asdict(optim), "trainer": asdict(trainer)}
    return PretrainModule(backbone, obj, lr=optim.lr, weight_decay=optim.weight_decay, betas=optim.betas,
                          warmup_steps=optim.warmup_steps, max_steps=trainer.max_steps,
                          min_lr_ratio=optim.min_lr_ratio, crop_samples=data.crop_samples, seed=trainer.seed,
                          training_info=info)
