"""``ObjectiveConfig``: which pretraining objective, and its knobs (torch-free, for the CLI's --help).

``neurofm.models.objectives.build_objective`` turns it into a module; the names are the keys of
``neurofm.models.objectives.OBJECTIVES`` (a test checks that the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OBJECTIVE_NAMES = ("mae", "tokens", "next")
TARGETS = ("scaled", "patch_norm")


@dataclass
class ObjectiveConfig:
    """A masked pretraining objective over (channel, time-patch) tokens.

    Attributes:
        name: mae (masked patch reconstruction, as CBraMod / REVE), tokens (masked prediction of a
            frozen RVQ tokenizer's codes, as LaBraM / NeuroRVQ) or next (next-patch prediction of those
            codes with attention causal in time, as MEG-GPT).
        mask_ratio: share of each window's real (channel, patch) tokens that are masked (not used by next).
        target: mae: the patch in the backbone's input units (µV / 10, "scaled") or normalised to zero
            mean and unit variance per patch ("patch_norm", MAE's norm_pix_loss).
        spectral_weight: mae: weight of an L1 between log |rfft| of prediction and target (0: MSE only).
        tokenizer: tokens, next: a tokenizer folder written by save_pretrained (or a hub id).
        n_q: tokens, next: the first n_q levels of each frame are predicted (default: all of the tokenizer's).
    """

    name: Literal["mae", "tokens", "next"] = "mae"
    mask_ratio: float = 0.5
    target: Literal["scaled", "patch_norm"] = "scaled"
    spectral_weight: float = 0.0
    tokenizer: str | None = None
    n_q: int | None = None

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVE_NAMES:
            raise ValueError(f"objective name={self.name!r} must be one of {OBJECTIVE_NAMES}")
        if self.target not in TARGETS:
            raise ValueError(f"target={self.target!r} must be one of {TARGETS}")
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"mask_ratio={self.mask_ratio} must be in (0, 1)")
        if self.spectral_weight < 0:
            raise ValueError(f"spectral_weight={self.spectral_weight} must be >= 0")
        if self.n_q is not None and self.n_q < 1:
            raise ValueError(f"n_q={self.n_q} must be >= 1 or null (all levels)")
