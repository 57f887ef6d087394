"""``PretrainModule``: self-supervised pretraining of a ``NeuroTransformer`` with a masked objective.

Batches are the loader's :class:`~neurofm.pipelines.loader.Batch`. Each window is cut to a whole
number of patches (a random crop of ``crop_samples`` in training, the start in validation) and
its non-real channels are zeroed; the objective (``neurofm.models.objectives``) masks tokens and
returns its loss terms. Logged per step: every loss term, the objective's metrics (token accuracy),
the learning rate, and throughput (``neurofm.throughput``: samples/s, tokens/s, MFU on GPU).

Every random draw of a step (crop offset, token mask) comes from a generator seeded by
``(seed, epoch, batch index, rank)``, not from the global RNG: a run resumed from a checkpoint
draws what the uninterrupted run drew, and validation masks are the same at every check.

The checkpoint's hyper-parameters hold the backbone config as a plain dict (``hparams["backbone"]``)
and the model card's ``training_info``, so ``neurofm export`` rebuilds the backbone from a checkpoint
read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from ..pipelines.loader import Batch
from ..training import EpochMeans, adamw_with_schedule
from .backbone import NeuroTransformer
from .objectives import MaskedObjective

_TRAIN, _VAL = 0, 1  # salts of the per-batch generator


class PretrainModule(L.LightningModule):
    """AdamW (no decay on biases, norms, embeddings, the mask token) with warm-up + cosine;
    gradient clipping is the Trainer's (``gradient_clip_val``).

    The backbone's pooling and head are frozen: pretraining scores tokens, never pools (frozen
    parameters also keep DDP from waiting for gradients that never come).
    """

    def __init__(self, backbone: NeuroTransformer, objective: MaskedObjective, *, lr: float = 1e-3,
                 weight_decay: float = 1e-2, betas: tuple[float, float] = (0.9, 0.99), warmup_steps: int = 100,
                 max_steps: int = 1000, min_lr_ratio: float = 0.1, crop_samples: int | None = None, seed: int = 0,
                 training_info: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.backbone, self.objective = backbone, objective
        for frozen in (backbone.pool, backbone.head):
            if frozen is not None:
                frozen.requires_grad_(False)
        self.optim = dict(lr=lr, weight_decay=weight_decay, betas=tuple(betas), warmup_steps=warmup_steps,
                          max_steps=max_steps, min_lr_ratio=min_lr_ratio)
        self.crop_samples, self.seed = crop_samples, seed
        self._val = EpochMeans()  # see on_validation_epoch_start
        patch = backbone.config.patch_size
        if crop_samples is not None and (crop_samples < patch or crop_samples % patch):
            raise ValueError(f"crop_samples={crop_samples} must be a positive multiple of the patch size {patch}")
        # plain data only: the checkpoint must load with torch.load(weights_only=True)
        self.save_hyperparameters({"backbone": backbone.config.to_dict(), "objective": objective.name,
                                   "training_info": training_info or {}})

    # -------------------------------------------------------------------------------------- data
    def n_samples(self, n_times: int) -> int:
        """Samples of a window of ``n_times`` that the backbone reads: ``crop_samples`` or whole patches."""
        patch = self.backbone.config.patch_size
        n = self.crop_samples or n_times // patch * patch
        if n < patch or n > n_times:
            raise ValueError(f"windows of {n_times} samples cannot give {max(n, patch)} samples of whole "
                             f"{patch}-sample patches (crop_samples={self.crop_samples})")
        return n

    def _generator(self, device: torch.device, *keys: int) -> torch.Generator:
        """A generator seeded by ``(seed, *keys, rank)``."""
        entropy = np.random.SeedSequence([self.seed, *keys, self.global_rank]).generate_state(1, np.uint64)[0]
        return torch.Generator(device=device).manual_seed(int(entropy >> 1))  # a non-negative int64

    def _inputs(self, batch: Batch, generator: torch.Generator, train: bool) -> Batch:
        """The window cut to whole patches; non-real channels zeroed (a bad channel may hold NaN,
        which attention would spread: 0 weight x NaN = NaN)."""
        if batch.sfreq != self.backbone.config.sfreq:
            raise ValueError(f"batch at {batch.sfreq:g} Hz, backbone built for {self.backbone.config.sfreq:g} Hz")
        n_times = batch.x.shape[-1]
        n = self.n_samples(n_times)
        start = 0
        if train and n < n_times:
            start = int(torch.randint(0, n_times - n + 1, (), device=generator.device, generator=generator))
        x = batch.x[..., start:start + n]  # (B, C, n)
        x = torch.where(batch.chan_mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        return replace(batch, x=x)

    def tokens_in_batch(self, batch: Batch) -> Tensor:
        """Real (channel, patch) tokens the backbone reads (throughput counts these)."""
        return batch.chan_mask.sum() * self.backbone.n_patches(self.n_samples(batch.x.shape[-1]))

    # ---------------------------------------------------------------------------------- training
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        generator = self._generator(batch.x.device, _TRAIN, self.current_epoch, batch_idx)
        out = self.objective(self.backbone, self._inputs(batch, generator, train=True), generator)
        for name, value in {"loss": out.loss, **out.terms, **out.metrics}.items():
            self.log(f"train/{name}", value.detach(), prog_bar=name == "loss", batch_size=len(batch))
        return out.loss

    # -------------------------------------------------------------------------------- validation
    # Window-weighted means over every rank's batches (``EpochMeans``: ranks may get different numbers
    # of eval batches, possibly none), the same on every rank.
    def on_validation_epoch_start(self) -> None:
        self._val = EpochMeans()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        generator = self._generator(batch.x.device, _VAL, batch_idx)  # the same masks at every validation
        out = self.objective(self.backbone, self._inputs(batch, generator, train=False), generator)
        self._val.add({"loss": out.loss, **out.terms, **out.metrics}, len(batch))

    def on_validation_epoch_end(self) -> None:
        self._val.log_to(self, "val", prog_bar="loss")

    # -------------------------------------------------------------------------------- optimiser
    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_with_schedule(self, **self.optim)
