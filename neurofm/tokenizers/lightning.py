"""``TokenizerModule``: trains any tokenizer whose ``forward`` returns a ``TokenizerOutput``.

Batches are the loader's :class:`~neurofm.pipelines.loader.Batch`. A per-channel tokenizer (no
fixed ``n_chans``) sees only real, good channels (``chan_mask``) as independent rows, at most
``max_rows`` of them per step drawn at random: the windows of one batch hold far more channels than
a step needs, and channels of one window are strongly correlated. Logged: every loss term, and per
quantiser level the share of the codebook used in the batch and the code perplexity; validation
adds the normalised MSE at several numbers of levels. Validation values are means over every rank's
batches (``EpochMeans``), weighted by the rows (or windows) each batch scores.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from ..pipelines.loader import Batch
from ..training import EpochMeans, warmup_cosine
from .base import TokenizerOutput


def code_stats(counts: Tensor) -> tuple[float, float]:
    """(share of the K codes used, perplexity exp(H)) of one level's code counts (K,)."""
    total = counts.sum()
    if total == 0:
        return 0.0, 0.0
    p = counts.float() / total
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return float((counts > 0).float().mean()), float(entropy.exp())


def nmse(x: Tensor, y: Tensor) -> Tensor:
    """sum (x - y)^2 / sum x^2 over everything: 1.0 is the zero predictor."""
    return (x - y).square().sum() / x.square().sum().clamp_min(1e-12)


class TokenizerModule(L.LightningModule):
    """AdamW with warm-up + cosine; gradient clipping is the Trainer's (``gradient_clip_val``)."""

    def __init__(self, tokenizer: nn.Module, *, lr: float = 1e-3, weight_decay: float = 1e-2,
                 betas: tuple[float, float] = (0.9, 0.99), warmup_steps: int = 100, max_steps: int = 1000,
                 min_lr_ratio: float = 0.1, max_rows: int | None = 256, crop_samples: int | None = None,
                 eval_levels: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.lr, self.weight_decay, self.betas = lr, weight_decay, tuple(betas)
        self.warmup_steps, self.max_steps, self.min_lr_ratio = warmup_steps, max_steps, min_lr_ratio
        self.max_rows, self.crop_samples = max_rows, crop_samples
        n_q = tokenizer.n_q
        self.eval_levels = tuple(eval_levels) if eval_levels else tuple(sorted({1, max(1, n_q // 2), n_q}))
        self.save_hyperparameters(ignore=["tokenizer"])

    # -------------------------------------------------------------------------------------- data
    def _inputs(self, batch: Batch, train: bool) -> tuple[Tensor, Tensor | None]:
        """(x, mask) for the tokenizer: rows (N, 1, T) for a per-channel one, else (B, C, T) + mask."""
        if batch.sfreq != self.tokenizer.sfreq:
            raise ValueError(f"batch at {batch.sfreq:g} Hz, tokenizer built for {self.tokenizer.sfreq:g} Hz")
        x = batch.x
        if train and self.crop_samples and x.shape[-1] > self.crop_samples:
            start = int(torch.randint(0, x.shape[-1] - self.crop_samples + 1, ()))
            x = x[..., start:start + self.crop_samples]  # (B, C, crop)
        if getattr(self.tokenizer.config, "n_chans", None) is not None:
            return x, batch.chan_mask
        rows = x[batch.chan_mask]  # (N, T): real, good channels only
        if train and self.max_rows and rows.shape[0] > self.max_rows:
            rows = rows[torch.randperm(rows.shape[0], device=rows.device)[: self.max_rows]]
        return rows[:, None, :], None  # (N, 1, T)

    # ---------------------------------------------------------------------------------- training
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x, mask = self._inputs(batch, train=True)
        out: TokenizerOutput = self.tokenizer(x, mask)
        for name, value in self._output_values(out, train=True).items():
            self.log(f"train/{name}", value, prog_bar=name == "total", batch_size=x.shape[0])
        return out.losses["total"]

    @staticmethod
    def _output_values(out: TokenizerOutput, train: bool) -> dict[str, Tensor | float]:
        """Every loss term, and per quantiser level the share of the codebook used and the code perplexity."""
        values: dict[str, Tensor | float] = {name: value.detach() for name, value in out.losses.items()}
        for level, counts in enumerate(out.usage):
            if train and not counts.any():
                continue  # a level that quantiser dropout skipped this step: no statistics
            values[f"usage_l{level}"], values[f"perplexity_l{level}"] = code_stats(counts)
        return values

    # -------------------------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        self._val = EpochMeans()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, mask = self._inputs(batch, train=False)
        out: TokenizerOutput = self.tokenizer(x, mask)
        values = self._output_values(out, train=False)
        keep = mask[..., None] if mask is not None else torch.ones_like(x[..., :1], dtype=torch.bool)
        target = x * keep
        values["nmse"] = nmse(target, out.recon * keep)
        if mask is None:  # prefixes of the codes: the bitrates one model serves
            codes = self.tokenizer.encode(x)  # (N, 1, n_q, F)
            for k in self.eval_levels:
                values[f"nmse_q{k}"] = nmse(target, self.tokenizer.decode(codes[:, :, :k], n_samples=x.shape[-1]))
        self._val.add(values, x.shape[0])

    def on_validation_epoch_end(self) -> None:
        self._val.log_to(self, "val", prog_bar="total")

    # -------------------------------------------------------------------------------- optimiser
    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.tokenizer.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)

        def schedule(step: int) -> float:
            return warmup_cosine(step, warmup_steps=self.warmup_steps, max_steps=self.max_steps,
                                 min_lr_ratio=self.min_lr_ratio)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
