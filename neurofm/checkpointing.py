"""The last checkpoint of a training run, saved where Lightning's restart logic expects it.

Lightning's periodic checkpoints are written at a batch's end (``on_train_batch_end``), before the
validation that may follow and before the loop advances the logger's step counter; a resumed loop
makes up for that counter itself. A checkpoint written after ``Trainer.fit`` returns was taken after
the counter moved on, so when the last step was also a validation step, a run resumed from it logged
every step one too high (steps 7, 8, ... after 6). ``FinalStepCheckpoint`` therefore saves the
run's last step (``max_steps``) from ``on_train_batch_end`` too, and ``save_final_checkpoint`` saves
after ``fit`` only a run that stopped early (``max_time``, a signal), whose state nothing else saved.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback


class FinalStepCheckpoint(Callback):
    """Write ``path`` at the batch that reaches ``max_steps``, unless the every-``every_n_steps``
    checkpoint (``ModelCheckpoint(save_last=True)``) writes it at that step anyway."""

    def __init__(self, path: str | Path, every_n_steps: int | None = None) -> None:
        self.path, self.every_n_steps = Path(path), every_n_steps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        step = trainer.global_step
        periodic = bool(self.every_n_steps) and step % self.every_n_steps == 0
        if 0 < trainer.max_steps <= step and not periodic:
            trainer.save_checkpoint(str(self.path), weights_only=False)


def save_final_checkpoint(trainer: L.Trainer, path: str | Path) -> None:
    """After ``fit``: save the state of a run that stopped before ``max_steps`` (or never saved)."""
    if trainer.global_step < trainer.max_steps or not Path(path).is_file():
        trainer.save_checkpoint(str(path), weights_only=False)
