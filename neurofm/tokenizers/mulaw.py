"""The baseline tokenizer: μ-law scalar quantisation, optionally of a decimated signal.

Each channel is treated alone: an anti-alias low-pass and keeping every ``decimate``-th sample, then
μ-law companding (ITU-T G.711's law with a free μ) of the value clipped to ``±max_abs_uv`` and a
uniform ``bits``-bit quantiser on the companded value. The decoder inverts the law and upsamples.
Nothing is sent per window (no scale, no offset), so the bitrate is exactly
``sfreq / decimate × bits`` per channel::

    tok = MuLawTokenizer(sfreq=200.0, bits=4, decimate=2)      # 400 bits/s per channel
    codes = tok.encode(x)                                       # (B, C, 1, ceil(T / 2)) in [0, 16)
    recon = tok.decode(codes, n_samples=x.shape[-1])            # (B, C, T)
    tok = mulaw_at_bitrate(500.0, sfreq=200.0)                  # the best at <= 500 bits/s (rule below)

Resampling is FFT-based: the encoder zeroes the spectrum above the new Nyquist frequency (an ideal
low-pass over the window) before striding, the decoder zero-pads the spectrum (band-limited sinc
interpolation). On PhysioNet EEG (subject 1, runs 1–10, 200 Hz; 16 bits, so resampling alone) the
FFT pair lost NMSE 0.048 / 0.110 / 0.158 at decimate 2 / 3 / 4 — the power above the new Nyquist
frequency — against 0.070 / 0.136 / 0.187 for straight lines between the kept samples
(``upsample="linear"``, kept for that comparison) and 0.053 / 0.116 / 0.165 for torchaudio's
windowed-sinc ``resample`` down and up.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Tokenizer, TokenizerInputError, TokenizerOutput, check_signal, register_tokenizer

# Defaults measured on PhysioNet EEG (subject 1, runs 1–10, 200 Hz, µV): over clip ranges
# {25, 50, 100, 200, 400} µV and μ in {0, 4, 16, 64, 255}, (50 µV, μ=16) gave the highest PCC at every
# bit depth from 4 to 8 and was within 0.006 of the best at 2–3 bits (docs/benchmarks.md). 50 µV is
# about 6 standard deviations of that EEG; preprocessing already clips at 20 robust SDs.
DEFAULT_MAX_ABS_UV = 50.0
DEFAULT_MU = 16.0
MAX_BITS = 16  # codes stay exact in float32 arithmetic (24-bit mantissa) with room to spare
MAX_DECIMATE = 16
# mulaw_at_bitrate's fixed rule predicts NMSE = quantisation noise + the power lost above the new
# Nyquist frequency, both measured on that EEG (PhysioNet subject 1, runs 1–10, 200 Hz, 50 µV, μ=16).
# Quantisation: NMSE 0.273 / 0.071 / 0.0173 / 0.0043 at 2 / 3 / 4 / 5 bits, i.e. 6 dB (x1/4) per bit
# from 0.0173 at 4 bits (the model is within 5% from 2 to 8 bits; 1 bit is capped at NMSE 1).
QUANT_NMSE_AT_4_BITS = 0.0173
# Fraction of the power above a cut-off (Hz) after the ideal low-pass: decimate 8..2 at 200 Hz, and
# 0 at 75 Hz, where preprocessing already low-passed (PreprocessConfig.h_freq).
LOWPASS_LOSS_HZ = (12.5, 14.29, 16.67, 20.0, 25.0, 33.33, 50.0, 75.0)
LOWPASS_LOSS = (0.300, 0.270, 0.239, 0.206, 0.165, 0.115, 0.050, 0.0)


# --------------------------------------------------------------------------------------------------
# companding and resampling (pure functions, shared with tests)


def mulaw_compress(x: Tensor, mu: float) -> Tensor:
    """[-1, 1] -> [-1, 1]: sign(x) ln(1 + μ|x|) / ln(1 + μ); identity for μ = 0 (uniform quantiser)."""
    if mu == 0:
        return x
    return torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)


def mulaw_expand(y: Tensor, mu: float) -> Tensor:
    """Inverse of :func:`mulaw_compress`: sign(y) ((1 + μ)^|y| − 1) / μ."""
    if mu == 0:
        return y
    return torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu


def fft_decimate(x: Tensor, decimate: int) -> Tensor:
    """(..., T) with T % decimate == 0 -> (..., T // decimate): ideal low-pass, then every d-th sample."""
    if decimate == 1:
        return x
    spec = torch.fft.rfft(x)  # (..., T // 2 + 1)
    spec[..., x.shape[-1] // (2 * decimate) + 1:] = 0  # above the new Nyquist frequency
    return torch.fft.irfft(spec, n=x.shape[-1])[..., ::decimate]


def fft_upsample(y: Tensor, factor: int) -> Tensor:
    """(..., F) -> (..., F * factor): band-limited interpolation by zero-padding the spectrum."""
    if factor == 1:
        return y
    n_frames = y.shape[-1]
    spec = torch.fft.rfft(y)  # (..., F // 2 + 1)
    if n_frames % 2 == 0:
        spec[..., -1] = spec[..., -1] / 2  # the Nyquist bin stands for both ±f in the longer signal
    n = n_frames * factor
    padded = torch.zeros(*spec.shape[:-1], n // 2 + 1, dtype=spec.dtype, device=spec.device)
    padded[..., : spec.shape[-1]] = spec
    return torch.fft.irfft(padded, n=n) * factor


def linear_upsample(y: Tensor, factor: int) -> Tensor:
    """(B, C, F) -> (B, C, F * factor): straight lines between the kept samples (at 0, d, 2d, ...)."""
    if factor == 1:
        return y
    lines = F.interpolate(y, size=(y.shape[-1] - 1) * factor + 1, mode="linear", align_corners=True)
    return F.pad(lines, (0, factor - 1), mode="replicate")  # hold the last sample to the end


# --------------------------------------------------------------------------------------------------
# the tokenizer


class MuLawTokenizer(nn.Module, Tokenizer):
    """μ-law scalar quantiser at ``sfreq / decimate × bits`` bits/s per channel (see module docstring).

    Args:
        sfreq: sampling rate of the input (Hz).
        bits: bits per kept sample; codes are in [0, 2**bits).
        decimate: keep every ``decimate``-th sample after an ideal anti-alias low-pass.
        max_abs_uv: clip range (µV, or the input's unit): values beyond ±max_abs_uv saturate.
        mu: companding strength; 0 gives a uniform quantiser.
        upsample: decoder interpolation, "fft" (band-limited) or "linear".
    """

    def __init__(self, sfreq: float = 200.0, bits: int = 8, decimate: int = 1,
                 max_abs_uv: float = DEFAULT_MAX_ABS_UV, mu: float = DEFAULT_MU,
                 upsample: Literal["fft", "linear"] = "fft") -> None:
        super().__init__()
        if sfreq <= 0 or max_abs_uv <= 0 or mu < 0:
            raise ValueError(f"{sfreq=} and {max_abs_uv=} must be > 0 and {mu=} >= 0")
        if not 1 <= bits <= MAX_BITS or not 1 <= decimate <= MAX_DECIMATE:
            raise ValueError(f"{bits=} must be in [1, {MAX_BITS}] and {decimate=} in [1, {MAX_DECIMATE}]")
        if upsample not in ("fft", "linear"):
            raise ValueError(f"{upsample=} must be 'fft' or 'linear'")
        self.sfreq, self.bits, self.decimate = float(sfreq), int(bits), int(decimate)
        self.max_abs_uv, self.mu, self.upsample = float(max_abs_uv), float(mu), upsample
        self.n_q = 1
        self.codebook_size = 2 ** self.bits

    def extra_repr(self) -> str:
        return (f"sfreq={self.sfreq:g}, bits={self.bits}, decimate={self.decimate}, "
                f"max_abs_uv={self.max_abs_uv:g}, mu={self.mu:g}, upsample={self.upsample!r}")

    @property
    def name(self) -> str:
        """Short label for tables: ``mulaw 4b/2`` is 4 bits at every 2nd sample."""
        return f"mulaw {self.bits}b/{self.decimate}"

    def bits_per_second(self, n_q: int | None = None) -> float:
        self._check_n_q(n_q)
        return self.sfreq / self.decimate * self.bits

    def n_frames(self, n_samples: int) -> int:
        return math.ceil(n_samples / self.decimate)

    def encode(self, x: Tensor, n_q: int | None = None) -> Tensor:  # (B, C, T) -> (B, C, 1, ceil(T/d))
        self._check_n_q(n_q)
        check_signal(x, min_samples=self.decimate)
        pad = self.n_frames(x.shape[-1]) * self.decimate - x.shape[-1]
        x = F.pad(x.float(), (0, pad), mode="reflect") if pad else x.float()  # (B, C, F * d)
        kept = fft_decimate(x, self.decimate)  # (B, C, F)
        y = mulaw_compress(kept.clamp(-self.max_abs_uv, self.max_abs_uv) / self.max_abs_uv, self.mu)
        # Mid-rise uniform quantiser on [-1, 1]: K bins of width 2/K, reconstructed at their centres.
        codes = torch.floor((y + 1) / 2 * self.codebook_size).clamp(0, self.codebook_size - 1)
        return codes.long().unsqueeze(2)  # (B, C, 1, F)

    def decode(self, codes: Tensor, n_samples: int | None = None) -> Tensor:  # (B, C, 1, F) -> (B, C, T)
        if codes.ndim != 4 or codes.shape[2] != 1:
            raise TokenizerInputError(f"codes must be (batch, channels, 1, frames), got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise TokenizerInputError(f"codes must be in [0, {self.codebook_size})")
        full = codes.shape[-1] * self.decimate
        if n_samples is not None and not full - self.decimate < n_samples <= full:
            raise TokenizerInputError(f"{n_samples=} cannot come from {codes.shape[-1]} frames at {self.decimate=}")
        y = (2 * codes[:, :, 0].float() + 1) / self.codebook_size - 1  # (B, C, F), bin centres
        kept = mulaw_expand(y, self.mu) * self.max_abs_uv
        up = fft_upsample(kept, self.decimate) if self.upsample == "fft" else linear_upsample(kept, self.decimate)
        return up[..., : n_samples or full]  # (B, C, T)

    def forward(self, x: Tensor) -> TokenizerOutput:
        codes = self.encode(x)
        counts = torch.bincount(codes.flatten(), minlength=self.codebook_size)
        return TokenizerOutput(codes=codes, recon=self.decode(codes, x.shape[-1]), usage=[counts])

    def _check_n_q(self, n_q: int | None) -> None:
        if n_q not in (None, 1):
            raise ValueError(f"a scalar quantiser has one level; got {n_q=}")


# --------------------------------------------------------------------------------------------------
# choosing the operating point


def mulaw_candidates(bps: float, sfreq: float, max_decimate: int = 8) -> list[tuple[int, int]]:
    """Every (bits, decimate) reaching the most bits at ``<= bps`` for its decimation, least d first."""
    out = []
    for d in range(1, max_decimate + 1):
        bits = min(MAX_BITS, math.floor(bps * d / sfreq + 1e-9))
        if bits >= 1:
            out.append((bits, d))
    return out


def mulaw_at_bitrate(bps: float, sfreq: float, *, calibration: Tensor | None = None,
                     max_abs_uv: float = DEFAULT_MAX_ABS_UV, mu: float = DEFAULT_MU) -> MuLawTokenizer:
    """The μ-law tokenizer with the best expected quality at ``<= bps`` bits/s per channel.

    For each decimation d (1..8) the candidate takes all the bits the budget allows
    (``floor(bps · d / sfreq)``). Without ``calibration`` the candidate with the lowest predicted
    NMSE wins, predicted = quantisation noise (0.0173 at 4 bits, x4 per bit fewer, at most 1) + the
    fraction of EEG power above ``sfreq / (2 d)`` (measured, :data:`LOWPASS_LOSS`). At 200 Hz it
    picks (bits/decimate) 4/4 at 200 bits/s, 3/2 at 300, 4/2 at 400, 6/2 at 600, 4/1 at 800. With
    ``calibration`` windows (B, C, T) — training data, never the data the baseline is scored on —
    the candidate with the lowest measured NMSE on them wins instead.
    """
    candidates = mulaw_candidates(bps, sfreq)
    if not candidates:
        raise ValueError(f"{bps=} is below one bit per sample at the lowest rate tried ({sfreq / 8:g} Hz)")
    if calibration is not None:
        return min((MuLawTokenizer(sfreq, b, d, max_abs_uv, mu) for b, d in candidates),
                   key=lambda tok: _calibration_nmse(tok, calibration))
    bits, d = min(candidates, key=lambda bd: predicted_nmse(bd[0], sfreq / (2 * bd[1])))
    return MuLawTokenizer(sfreq, bits, d, max_abs_uv, mu)


def predicted_nmse(bits: int, cutoff_hz: float) -> float:
    """The fixed rule's NMSE model: quantisation noise at ``bits`` + EEG power above ``cutoff_hz``."""
    quant = min(1.0, QUANT_NMSE_AT_4_BITS * 4.0 ** (4 - bits))
    return quant + float(np.interp(cutoff_hz, LOWPASS_LOSS_HZ, LOWPASS_LOSS))


def _calibration_nmse(tok: MuLawTokenizer, x: Tensor) -> float:
    with torch.inference_mode():
        recon = tok.decode(tok.encode(x), x.shape[-1])
    return float((x - recon).double().pow(2).sum() / x.double().pow(2).sum())


@register_tokenizer("mulaw")
def mulaw(sfreq: float = 200.0, bits: int = 8, decimate: int = 1, max_abs_uv: float = DEFAULT_MAX_ABS_UV,
          mu: float = DEFAULT_MU) -> MuLawTokenizer:
    """8-bit μ-law at every sample: 1600 bits/s per channel at 200 Hz."""
    return MuLawTokenizer(sfreq, bits, decimate, max_abs_uv, mu)


@register_tokenizer("mulaw_tiny")
def mulaw_tiny(sfreq: float = 200.0) -> MuLawTokenizer:
    """4-bit μ-law of every 2nd sample: 400 bits/s per channel at 200 Hz (the quick test preset)."""
    return MuLawTokenizer(sfreq, bits=4, decimate=2)


__all__ = ["MuLawTokenizer", "mulaw_at_bitrate", "mulaw_candidates", "mulaw_compress", "mulaw_expand",
           "fft_decimate", "fft_upsample", "linear_upsample", "DEFAULT_MAX_ABS_UV", "DEFAULT_MU"]
