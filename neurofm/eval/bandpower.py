"""Per-channel log band power: the standard spectral features of vigilance and state decoding.

Welch's PSD (2 s Hann segments, half overlap: 0.5 Hz bins) of each window and channel, integrated over
the classical bands and log-transformed (power is log-normal across windows and subjects, so a linear
model on log power fits multiplicative effects such as "alpha ×4 when drowsy"). ``power="relative"``
takes each band's log share of the channel's total instead (a channel's gain cancels), ``"both"`` both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.signal import welch
from sklearn.base import BaseEstimator, TransformerMixin

# Hz, [low, high): the classical EEG bands (gamma stops below 50 Hz mains).
BANDS: dict[str, tuple[float, float]] = {"delta": (1.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0),
                                         "beta": (13.0, 30.0), "gamma": (30.0, 45.0)}
SEGMENT_S = 2.0  # Welch segment: 0.5 Hz resolution, 7 segments in an 8 s window at half overlap
POWER_FLOOR_UV2 = 1e-6  # µV²: a flat channel's log power stays finite (EEG band power is ~1-100 µV²)


def usable_bands(sfreq: float, bands: dict[str, tuple[float, float]] = BANDS) -> dict[str, tuple[float, float]]:
    """The bands that start below Nyquist, cut at it (no gamma below 60 Hz sampling)."""
    nyquist = sfreq / 2
    usable = {name: (lo, min(hi, nyquist)) for name, (lo, hi) in bands.items() if lo < nyquist}
    if not usable:
        raise ValueError(f"{sfreq=}: no band of {bands} lies below Nyquist")
    return usable


def band_log_power(x: np.ndarray, sfreq: float, bands: dict[str, tuple[float, float]] = BANDS) -> np.ndarray:
    """(N, C, T) µV → (N, C, B) natural-log band power in µV²."""
    nperseg = min(x.shape[-1], int(round(SEGMENT_S * sfreq)))
    freqs, psd = welch(x.astype(np.float64), fs=sfreq, nperseg=nperseg, axis=-1)  # (F,), (N, C, F) µV²/Hz
    df = freqs[1] - freqs[0]
    power = [psd[..., (freqs >= lo) & (freqs < hi)].sum(-1) * df for lo, hi in usable_bands(sfreq, bands).values()]
    return np.log(np.maximum(np.stack(power, -1), POWER_FLOOR_UV2))  # (N, C, B)


def _relative(log_power: np.ndarray) -> np.ndarray:
    """(N, C, B) → (N, C, B) log of each band's share of the channel's power over all bands: a channel's
    gain (electrode impedance, a session's cap) cancels."""
    return log_power - np.log(np.exp(log_power).sum(-1, keepdims=True))


# What a window's features are, from its (N, C, B) log band power; each gives (N, C, B') channel-major.
POWER_FEATURES: dict[str, Any] = {
    "absolute": lambda lp: lp,
    "relative": _relative,
    "both": lambda lp: np.concatenate([lp, _relative(lp)], -1),
}


def log_bandpower(x: np.ndarray, sfreq: float, bands: dict[str, tuple[float, float]] = BANDS,
                  power: str = "absolute") -> np.ndarray:
    """(N, C, T) µV → (N, C · B') log band power features, channel-major (C0 delta, C0 theta, ...)."""
    if power not in POWER_FEATURES:
        raise ValueError(f"power={power!r} is not one of {sorted(POWER_FEATURES)}")
    return POWER_FEATURES[power](band_log_power(x, sfreq, bands)).reshape(len(x), -1)  # (N, C, B') -> (N, C·B')


class LogBandPower(TransformerMixin, BaseEstimator):
    """sklearn transformer around :func:`log_bandpower` (stateless: nothing is fitted)."""

    def __init__(self, sfreq: float, bands: dict[str, tuple[float, float]] = BANDS, power: str = "absolute") -> None:
        self.sfreq, self.bands, self.power = sfreq, bands, power

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> LogBandPower:
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return log_bandpower(x, self.sfreq, self.bands, self.power)
