"""How well a tokenizer reconstructs M/EEG: waveform, spectrum, codebook use and speed.

Every waveform score is computed per (window, channel) pair over time, then only the pairs whose
channel is real and good (``Batch.chan_mask``) and whose original is not flat are kept::

    acc = ReconstructionAccumulator(sfreq=200.0)
    for batch in batches:
        codes = tok.encode(batch.x)                       # (B, C, n_q, F)
        acc.add(batch.x, tok.decode(codes, batch.x.shape[-1]), batch.chan_mask)
    metrics = acc.summary()                               # ReconstructionMetrics (means over pairs)

    usage = CodeUsage(n_q=tok.n_q, codebook_size=tok.codebook_size)
    usage.add(codes, batch.chan_mask)
    usage.levels()                                        # [LevelUsage(fraction_used, perplexity), ...]

Definitions (x: original, x̂: reconstruction, both (T,) for one pair):

- NMSE = ‖x − x̂‖² / ‖x‖²: 0 for a perfect copy, 1 for x̂ = 0.
- Pearson r of x and x̂ (torchmetrics ``pearson_corrcoef``).
- SI-SDR in dB (Le Roux et al. 2019, "SDR – half-baked or well done?"; torchmetrics
  ``scale_invariant_signal_distortion_ratio`` with ``zero_mean=True``).
- relative band-power error |P̂_b − P_b| / P_b per band b, band powers integrated from Welch PSDs
  (scipy ``welch``, Hann window, 50% overlap). A band above the Nyquist frequency is NaN.
- code usage: the fraction of the K codes of a level used at least once; perplexity exp(H) of the
  level's code histogram (K when all codes are equally frequent, 1 when one code is used).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.signal import welch
from torch import Tensor
from torchmetrics.functional import pearson_corrcoef
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

# Clinical EEG bands (Hz), lower edge inclusive, upper exclusive. Gamma stops at 75 Hz, the default
# low-pass of neurofm preprocessing (PreprocessConfig.h_freq).
BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, 75.0),
}
WELCH_SEGMENT_S = 2.0  # 0.5 Hz resolution: at least 6 bins in the narrowest band (delta, 3 Hz)
FLAT_ENERGY = 1e-12  # a pair whose original has less energy (unit²·samples) than this is not scored


# --------------------------------------------------------------------------------------------------
# per-pair scores


def nmse(x: Tensor, recon: Tensor) -> Tensor:
    """(..., T), (..., T) -> (...): ‖x − x̂‖² / ‖x‖² per pair (inf when x is all zeros)."""
    err = (x - recon).double().pow(2).sum(-1)
    return (err / x.double().pow(2).sum(-1)).float()


def pearson_r(x: Tensor, recon: Tensor) -> Tensor:
    """(..., T), (..., T) -> (...): Pearson correlation over time per pair."""
    lead = x.shape[:-1]
    # torchmetrics correlates the columns of (N, d) inputs: time goes first
    xs = x.reshape(-1, x.shape[-1]).T.double()  # (T, P)
    rs = recon.reshape(-1, x.shape[-1]).T.double()  # (T, P)
    if xs.shape[1] == 1:  # (T, 1) is treated as one vector of T values: same result, other shape
        xs, rs = xs[:, 0], rs[:, 0]
    return pearson_corrcoef(rs, xs).reshape(lead).float()


def si_sdr_db(x: Tensor, recon: Tensor) -> Tensor:
    """(..., T), (..., T) -> (...): scale-invariant SDR in dB, means removed first."""
    return scale_invariant_signal_distortion_ratio(recon.double(), x.double(), zero_mean=True).float()


def welch_psd(x: np.ndarray, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    """(..., T) -> freqs (n_freqs,), psd (..., n_freqs) in unit²/Hz (Hann, 50% overlap, 2 s segments)."""
    nperseg = min(x.shape[-1], int(round(WELCH_SEGMENT_S * sfreq)))
    return welch(x, fs=sfreq, nperseg=nperseg, axis=-1)


def band_powers(freqs: np.ndarray, psd: np.ndarray, bands: dict[str, tuple[float, float]] = BANDS
                ) -> dict[str, np.ndarray]:
    """Power per band (..., ) integrated from a PSD (..., n_freqs); NaN for a band with no bin."""
    df = freqs[1] - freqs[0]
    out = {}
    for name, (lo, hi) in bands.items():
        sel = (freqs >= lo) & (freqs < hi)
        out[name] = psd[..., sel].sum(-1) * df if sel.any() else np.full(psd.shape[:-1], np.nan)
    return out


def band_power_error(x: Tensor, recon: Tensor, sfreq: float, bands: dict[str, tuple[float, float]] = BANDS
                     ) -> dict[str, Tensor]:
    """(..., T), (..., T) -> band -> (...): relative band-power error |P̂ − P| / P per pair."""
    freqs, psd = welch_psd(x.double().cpu().numpy(), sfreq)
    _, psd_rec = welch_psd(recon.double().cpu().numpy(), sfreq)
    return _band_errors(freqs, psd, psd_rec, bands)


def _band_errors(freqs: np.ndarray, psd: np.ndarray, psd_rec: np.ndarray, bands: dict[str, tuple[float, float]]
                 ) -> dict[str, Tensor]:
    p, p_rec = band_powers(freqs, psd, bands), band_powers(freqs, psd_rec, bands)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {b: torch.from_numpy(np.abs(p_rec[b] - p[b]) / p[b]).float() for b in bands}


# --------------------------------------------------------------------------------------------------
# aggregation


@dataclass(frozen=True)
class ReconstructionMetrics:
    """Means over the scored (window, channel) pairs; medians where heavy tails are common."""

    n_pairs: int  # (window, channel) pairs scored
    n_excluded: int  # pairs left out: padded, bad (chan_mask False) or flat originals
    nmse: float
    nmse_median: float
    pcc: float
    pcc_median: float
    si_sdr_db: float
    band_power_error: dict[str, float]  # band -> mean relative error (NaN above Nyquist)


@dataclass
class ReconstructionAccumulator:
    """Collects per-pair scores over batches; :meth:`summary` gives :class:`ReconstructionMetrics`.

    It also sums the Welch PSDs of originals and reconstructions (:meth:`mean_psd`, for plots).
    """

    sfreq: float
    bands: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(BANDS))
    scores: dict[str, list[Tensor]] = field(default_factory=dict)  # name -> [(n_valid,), ...]
    n_excluded: int = 0
    freqs: np.ndarray | None = None  # (n_freqs,) of the first batch; later batches must match
    psd_sums: tuple[np.ndarray, np.ndarray] | None = None  # original, reconstruction: (n_freqs,) each
    n_psd: int = 0  # pairs summed into psd_sums

    def add(self, x: Tensor, recon: Tensor, chan_mask: Tensor | None = None) -> None:
        """``x``, ``recon`` (B, C, T); ``chan_mask`` (B, C) bool, True = real and good (all when None)."""
        if x.shape != recon.shape:
            raise ValueError(f"original {tuple(x.shape)} and reconstruction {tuple(recon.shape)} differ in shape")
        x, recon = x.detach().cpu(), recon.detach().cpu()
        valid = valid_pairs(x, chan_mask)  # (B, C)
        self.n_excluded += int((~valid).sum())
        xv, rv = x[valid], recon[valid]  # (P, T)
        if xv.shape[0] == 0:
            return
        freqs, psd = welch_psd(xv.double().numpy(), self.sfreq)  # (n_freqs,), (P, n_freqs)
        _, psd_rec = welch_psd(rv.double().numpy(), self.sfreq)
        self._add_psd(freqs, psd, psd_rec)
        pair_scores = {"nmse": nmse(xv, rv), "pcc": pearson_r(xv, rv), "si_sdr_db": si_sdr_db(xv, rv)}
        pair_scores.update({f"band_{b}": e for b, e in _band_errors(freqs, psd, psd_rec, self.bands).items()})
        for name, value in pair_scores.items():
            self.scores.setdefault(name, []).append(value)

    def _add_psd(self, freqs: np.ndarray, psd: np.ndarray, psd_rec: np.ndarray) -> None:
        if self.freqs is None:
            self.freqs, self.psd_sums = freqs, (np.zeros_like(freqs), np.zeros_like(freqs))
        elif not np.array_equal(freqs, self.freqs):
            return  # another window length: its spectrum has other bins (scores still count)
        self.psd_sums = (self.psd_sums[0] + psd.sum(0), self.psd_sums[1] + psd_rec.sum(0))
        self.n_psd += psd.shape[0]

    def mean_psd(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """freqs (n_freqs,), mean PSD of the originals and of the reconstructions (n_freqs,) each."""
        if self.freqs is None:
            raise ValueError("no (window, channel) pair was scored")
        return self.freqs, self.psd_sums[0] / self.n_psd, self.psd_sums[1] / self.n_psd

    def summary(self) -> ReconstructionMetrics:
        if not self.scores:
            raise ValueError("no (window, channel) pair was scored: every channel was masked or flat")
        s = {name: torch.cat(values).double() for name, values in self.scores.items()}
        return ReconstructionMetrics(
            n_pairs=int(s["nmse"].numel()), n_excluded=self.n_excluded,
            nmse=_mean(s["nmse"]), nmse_median=float(s["nmse"].median()),
            pcc=_mean(s["pcc"]), pcc_median=float(s["pcc"].median()),
            si_sdr_db=_mean(s["si_sdr_db"]),
            band_power_error={b: _mean(s[f"band_{b}"]) for b in self.bands},
        )


def valid_pairs(x: Tensor, chan_mask: Tensor | None) -> Tensor:
    """(B, C, T), (B, C) -> (B, C) bool: masked-in pairs whose original is not flat."""
    valid = x.double().pow(2).sum(-1) > FLAT_ENERGY  # (B, C)
    return valid if chan_mask is None else valid & chan_mask.to(valid.device, torch.bool)


def _mean(v: Tensor) -> float:
    """Mean of the finite values (NaN when there is none: e.g. a band above Nyquist)."""
    finite = v[torch.isfinite(v)]
    return float(finite.mean()) if finite.numel() else math.nan


# --------------------------------------------------------------------------------------------------
# codes


@dataclass(frozen=True)
class LevelUsage:
    """How one quantiser level used its K codes."""

    level: int  # 0-based
    fraction_used: float  # codes used at least once / K
    perplexity: float  # exp(entropy) of the code histogram, in [1, K]
    codebook_size: int


def perplexity(counts: Tensor) -> float:
    """exp(H) of a histogram (K,): K for uniform counts, 1 for a single code; NaN when empty."""
    total = counts.sum()
    if total <= 0:
        return math.nan
    p = counts.double() / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@dataclass
class CodeUsage:
    """Code histograms per level, accumulated over batches (masked channels left out)."""

    n_q: int
    codebook_size: int
    counts: Tensor = field(init=False)  # (n_q, K) int64

    def __post_init__(self) -> None:
        self.counts = torch.zeros(self.n_q, self.codebook_size, dtype=torch.long)

    def add(self, codes: Tensor, chan_mask: Tensor | None = None) -> None:
        """``codes`` (B, C, n_q', F) with n_q' <= n_q; ``chan_mask`` (B, C) bool."""
        if codes.ndim != 4 or codes.shape[2] > self.n_q:
            raise ValueError(f"codes must be (batch, channels, <= {self.n_q} levels, frames), got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes outside [0, {self.codebook_size}): min {int(codes.min())}, max {int(codes.max())}")
        codes = codes.detach().cpu()
        pairs = codes[chan_mask.cpu().bool()] if chan_mask is not None else codes.flatten(0, 1)  # (P, n_q', F)
        per_level = pairs.transpose(0, 1).reshape(codes.shape[2], -1)  # (n_q', P * F)
        for level, values in enumerate(per_level):
            self.counts[level] += torch.bincount(values.long(), minlength=self.codebook_size)

    def levels(self, n_q: int | None = None) -> list[LevelUsage]:
        """Usage of the first ``n_q`` levels (all when None)."""
        return [LevelUsage(level=q, fraction_used=float((c > 0).double().mean()), perplexity=perplexity(c),
                           codebook_size=self.codebook_size)
                for q, c in enumerate(self.counts[: n_q or self.n_q])]


# --------------------------------------------------------------------------------------------------
# speed


@dataclass
class Stopwatch:
    """Wall-clock seconds and items accumulated over calls: ``out = watch.time(lambda: f(x), n)``."""

    seconds: float = 0.0
    items: int = 0

    def time(self, fn: Callable[[], Tensor], n_items: int) -> Tensor:
        """Run ``fn``, add its wall time and ``n_items``; returns what ``fn`` returned."""
        start = time.perf_counter()
        out = fn()
        if isinstance(out, Tensor) and out.is_cuda:
            torch.cuda.synchronize(out.device)  # CUDA kernels run asynchronously
        self.seconds += time.perf_counter() - start
        self.items += n_items
        return out

    @property
    def rate(self) -> float:
        """Items per second (NaN before anything was timed)."""
        return self.items / self.seconds if self.seconds > 0 else math.nan


__all__ = ["BANDS", "ReconstructionMetrics", "ReconstructionAccumulator", "LevelUsage", "CodeUsage",
           "Stopwatch", "nmse", "pearson_r", "si_sdr_db", "band_power_error", "band_powers", "welch_psd",
           "perplexity", "valid_pairs"]
