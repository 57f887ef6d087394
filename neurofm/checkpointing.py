"""``last.ckpt`` of a training run, saved where Lightning's restart logic expects it.

Lightning's periodic checkpoints are written at a batch's end (``on_train_batch_end``), before the
validation that may follow and before the loop advances the logger's step counter; a resumed loop
makes up for that counter itself. A checkpoint written once the loop is over (after ``Trainer.fit``
returns, or by ``ModelCheckpoint(save_last=True)`` in ``on_train_end``, which Lightning 2.6 does
when no periodic save happened) was taken after the counter moved on, so when the last step was
also a validation step, a run resumed from it logged every step one too high (7, 8, ... after 6).

``LastCheckpoint`` therefore also saves at the batch where the run ends, reaching ``max_steps`` or
stopped by ``max_time`` (Lightning's ``Timer`` asks to stop at that batch's end; checkpoint
callbacks run after every other callback), and never in ``on_train_end``. ``save_final_checkpoint``
saves after ``fit`` only a run that ended elsewhere (a stop requested during validation). The
decisions use trainer state only, the same on every rank: ``save_checkpoint`` waits for all ranks.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """``out/checkpoints/last.ckpt`` every ``every_n_steps`` steps and at the batch that ends the run."""

    def __init__(self, dirpath: str | Path, every_n_steps: int | None = None) -> None:
        # no version counter: a resumed run finds last.ckpt on disk and would write last-v1.ckpt, which
        # the resume never reads
        super().__init__(dirpath=str(dirpath), save_last=True, save_top_k=0, every_n_train_steps=every_n_steps,
                         enable_version_counter=False)
        self.every_n_steps = every_n_steps
        self.saved_step: int | None = None  # the global step last.ckpt holds, when written at a run's end

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)  # the periodic save
        step = trainer.global_step
        if not (trainer.should_stop or 0 < trainer.max_steps <= step):
            return
        if not (self.every_n_steps and step % self.every_n_steps == 0):
            trainer.save_checkpoint(str(Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"),
                                    weights_only=False)
        self.saved_step = step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Nothing: the state after the loop is the one that resumes a step too high (module doc)."""


def save_final_checkpoint(trainer: L.Trainer, path: str | Path) -> None:
    """After ``fit``: save the run's state unless ``LastCheckpoint`` saved this very step. (A
    run resumed at ``max_steps`` trains nothing and re-saves the state it restored, counters unchanged.)"""
    final = next((c for c in trainer.callbacks if isinstance(c, LastCheckpoint)), None)
    if final is None or final.saved_step != trainer.global_step:
        trainer.save_checkpoint(str(path), weights_only=False)
