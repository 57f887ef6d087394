"""What every M/EEG tokenizer offers: ``encode(x) -> codes``, ``decode(codes) -> x``, a bitrate.

Signals are preprocessed windows as the loader serves them: ``x`` (batch, channels, samples) in µV
(fT for MEG) at ``sfreq``. Codes are integers ``(batch, channels, n_q, frames)``: ``n_q`` levels
(RVQ codebooks, or 1 for a scalar quantiser) per frame per channel. ``bits_per_second`` is per
channel and counts everything a decoder needs, so tokenizers compare at equal bitrate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor


@dataclass
class TokenizerOutput:
    """The result of a full forward pass (training and evaluation)."""

    codes: Tensor  # (B, C, n_q, F) int64
    recon: Tensor  # (B, C, T), same units as the input
    losses: dict[str, Tensor] = field(default_factory=dict)  # every term, unweighted, plus "total"
    usage: list[Tensor] = field(default_factory=list)  # per level: (K,) code counts in this batch


class TokenizerInputError(ValueError):
    """Input a tokenizer cannot take (wrong channel count, NaNs, too short)."""


def check_signal(x: Tensor, *, min_samples: int, n_chans: int | None = None, name: str = "x") -> None:
    """Raise ``TokenizerInputError`` naming the problem; shared by every tokenizer."""
    if x.ndim != 3:
        raise TokenizerInputError(f"{name} must be (batch, channels, samples), got shape {tuple(x.shape)}")
    if n_chans is not None and x.shape[1] != n_chans:
        raise TokenizerInputError(f"{name} has {x.shape[1]} channels; this tokenizer was built for {n_chans}")
    if x.shape[2] < min_samples:
        raise TokenizerInputError(f"{name} has {x.shape[2]} samples; at least {min_samples} are needed")
    if not torch.isfinite(x).all():
        raise TokenizerInputError(f"{name} contains NaN or infinite values")


class Tokenizer:
    """Interface mixin: subclasses are ``nn.Module``s implementing these four members."""

    sfreq: float
    n_q: int  # levels per frame
    codebook_size: int  # K: codes are in [0, K)

    def encode(self, x: Tensor, n_q: int | None = None) -> Tensor:  # (B, C, T) -> (B, C, n_q, F)
        raise NotImplementedError

    def decode(self, codes: Tensor, n_samples: int | None = None) -> Tensor:  # (B, C, n_q, F) -> (B, C, T)
        raise NotImplementedError

    def bits_per_second(self, n_q: int | None = None) -> float:
        """Per channel, using the first ``n_q`` levels (all when None)."""
        raise NotImplementedError


TOKENIZERS: dict[str, Callable[..., Tokenizer]] = {}


def register_tokenizer(name: str) -> Callable:
    """Register a preset factory (``tiny``, ``base``, ``mulaw``...) listed by the CLI and the report."""

    def deco(fn: Callable[..., Tokenizer]) -> Callable[..., Tokenizer]:
        if name in TOKENIZERS:
            raise ValueError(f"tokenizer preset {name!r} registered twice")
        TOKENIZERS[name] = fn
        return fn

    return deco


def build_tokenizer(name: str, **overrides) -> Tokenizer:
    if name not in TOKENIZERS:
        raise KeyError(f"unknown tokenizer {name!r}; registered: {sorted(TOKENIZERS)}")
    return TOKENIZERS[name](**overrides)


__all__ = ["TokenizerOutput", "Tokenizer", "TokenizerInputError", "check_signal",
                     "register_tokenizer", "build_tokenizer", "TOKENIZERS"]
