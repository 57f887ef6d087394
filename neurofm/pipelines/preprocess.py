"""MNE preprocessing of one recording: a configurable, hashed chain of steps.

The defaults follow the large EEG foundation-model corpora (LaBraM, CBraMod): data channels only,
average reference, 0.1–75 Hz band-pass, line-noise notch, 200 Hz, µV, robust clipping, flat/noisy
channel detection. Every step is a registered function ``(raw, cfg, report) -> raw``; the order is
data (``PreprocessConfig.steps``), and the whole config is hashed into every shard.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Literal

import mne
import numpy as np

PIPELINE_VERSION = 1  # bump when a step's maths changes: it is part of the hash

# Units a shard carries per channel type (multiply SI by the factor).
UNIT_SCALE: dict[str, tuple[float, str]] = {
    "eeg": (1e6, "µV"), "seeg": (1e6, "µV"), "ecog": (1e6, "µV"), "eog": (1e6, "µV"),
    "mag": (1e15, "fT"), "grad": (1e13, "fT/cm"),
}


@dataclass
class PreprocessConfig:
    """Every knob of the preprocessing chain; a manifest's ``preprocessing:`` overrides fields."""

    steps: tuple[str, ...] = (
        "pick", "check_finite", "resample_down", "notch", "bandpass", "detect_bad", "reference",
        "resample_up",
    )
    ch_types: tuple[str, ...] = ("eeg", "mag", "grad")  # what ``pick`` keeps
    reference: Literal["average", "none"] = "average"
    l_freq: float | None = 0.1
    h_freq: float | None = 75.0
    filter_method: Literal["fir", "iir"] = "iir"  # zero-phase 4th-order Butterworth (see docs)
    line_freq: float | Literal["auto"] | None = "auto"  # auto: the larger of the 50/60 Hz peaks
    sfreq: float = 200.0
    clip_sigma: float | None = 20.0  # clip at ±k robust SDs per channel (None: no clipping)
    flat_uv: float = 0.05  # a channel whose SD is below this (µV) is flat
    noisy_z: float = 5.0  # robust z of log-SD above which a channel is noisy
    max_plausible_uv: float = 500.0  # median EEG RMS above this is implausible (wrong units)
    rescale: Literal["warn", "auto", "error"] = "warn"  # what to do about implausible amplitude

    def __post_init__(self) -> None:
        self.steps = tuple(self.steps)
        self.ch_types = tuple(self.ch_types)
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown:
            raise ValueError(f"preprocessing.steps: unknown step(s) {unknown}; known: {sorted(STEPS)}")
        if self.sfreq <= 0:
            raise ValueError(f"preprocessing.sfreq must be > 0, got {self.sfreq}")
        if self.l_freq and self.h_freq and self.l_freq >= self.h_freq:
            raise ValueError(f"preprocessing: l_freq={self.l_freq} must be below h_freq={self.h_freq}")

    @classmethod
    def from_overrides(cls, overrides: dict) -> PreprocessConfig:
        names = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise ValueError(f"preprocessing: unknown field(s) {bad}; known: {sorted(names)}")
        return cls(**overrides)

    def to_dict(self) -> dict:
        return {**asdict(self), "steps": list(self.steps), "ch_types": list(self.ch_types),
                "version": PIPELINE_VERSION}

    def hash(self) -> str:
        """sha256 of the canonical JSON of the whole config (first 16 hex digits)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class PreprocessReport:
    """What preprocessing did to one recording (stored in the part marker and report.json)."""

    sfreq_in: float = 0.0
    n_chans_in: int = 0
    dropped_types: dict[str, int] = field(default_factory=dict)
    line_freq: float | None = None
    notch_freqs: list[float] = field(default_factory=list)
    band: tuple[float | None, float | None] = (None, None)
    bad_channels: list[str] = field(default_factory=list)
    median_rms_uv: float | None = None
    amplitude_warning: str | None = None
    rescaled_by: float = 1.0
    clipped_fraction: float = 0.0


Step = Callable[[mne.io.BaseRaw, PreprocessConfig, PreprocessReport], mne.io.BaseRaw]
STEPS: dict[str, Step] = {}


def register_step(name: str) -> Callable[[Step], Step]:
    def deco(fn: Step) -> Step:
        STEPS[name] = fn
        return fn

    return deco


class PreprocessError(ValueError):
    """A recording that cannot be used (no data channels, NaNs, zero length...)."""


@register_step("pick")
def _pick(raw, cfg, report):
    types = raw.get_channel_types()
    keep = [i for i, t in enumerate(types) if t in cfg.ch_types]
    for t in types:
        if t not in cfg.ch_types:
            report.dropped_types[t] = report.dropped_types.get(t, 0) + 1
    if not keep:
        raise PreprocessError(
            f"no data channels of types {list(cfg.ch_types)} (found {sorted(set(types))})")
    if raw.n_times < 2:
        raise PreprocessError(f"recording has {raw.n_times} samples (zero length)")
    return raw.pick(keep)


@register_step("check_finite")
def _check_finite(raw, cfg, report):
    data = raw.get_data()
    bad = ~np.isfinite(data).all(axis=1)
    if bad.any():
        names = [raw.ch_names[i] for i in np.flatnonzero(bad)]
        raise PreprocessError(f"non-finite values (NaN/inf) in {len(names)} channel(s): {names[:8]}")
    return raw


def _nyquist_band(cfg: PreprocessConfig, sfreq: float) -> tuple[float | None, float | None]:
    """The band actually applied: h_freq is capped below the Nyquist of the slower of in/out rates."""
    nyq = min(sfreq, cfg.sfreq) / 2
    h = cfg.h_freq if cfg.h_freq is None or cfg.h_freq < 0.9 * nyq else round(0.9 * nyq, 3)
    return cfg.l_freq, h


@register_step("resample_down")
def _resample_down(raw, cfg, report):
    # Downsampling first makes every later filter cheaper; resample() low-passes (anti-aliasing).
    if raw.info["sfreq"] > cfg.sfreq:
        raw.resample(cfg.sfreq, npad="auto")
    return raw


@register_step("resample_up")
def _resample_up(raw, cfg, report):
    if raw.info["sfreq"] < cfg.sfreq:
        raw.resample(cfg.sfreq, npad="auto")
    return raw


def detect_line_freq(raw: mne.io.BaseRaw) -> float | None:
    """50 or 60 Hz, whichever shows the larger narrow-band peak over its neighbours (or None)."""
    sfreq = raw.info["sfreq"]
    candidates = [f for f in (50.0, 60.0) if f < sfreq / 2 - 2]
    if not candidates or raw.n_times < sfreq * 4:  # under 4 s: too little data to tell
        return None
    n = min(raw.n_times, int(sfreq * 60))
    psd, freqs = mne.time_frequency.psd_array_welch(
        raw.get_data(stop=n), sfreq, fmin=40, fmax=min(70, sfreq / 2), n_fft=int(sfreq * 2), verbose=False)
    spec = np.median(psd, axis=0)

    def peak(f: float) -> float:
        at = spec[np.abs(freqs - f) <= 0.5].max()
        around = spec[(np.abs(freqs - f) > 2) & (np.abs(freqs - f) < 5)]
        return float(at / np.median(around)) if around.size else 0.0

    ratios = {f: peak(f) for f in candidates}
    best = max(ratios, key=ratios.get)
    return best if ratios[best] > 3.0 else None


@register_step("notch")
def _notch(raw, cfg, report):
    line = detect_line_freq(raw) if cfg.line_freq == "auto" else cfg.line_freq
    report.line_freq = line
    if not line:
        return raw
    _, h = _nyquist_band(cfg, raw.info["sfreq"])
    top = min(raw.info["sfreq"] / 2 - 1, h if h else np.inf)
    # Harmonics above the low-pass edge are removed by the band-pass already.
    freqs = [f for f in np.arange(line, top + 1e-6, line)]
    if freqs:
        raw.notch_filter(freqs, method=cfg.filter_method if cfg.filter_method == "iir" else "fir",
                         iir_params=dict(order=2, ftype="butter", output="sos")
                         if cfg.filter_method == "iir" else None, verbose=False)
    report.notch_freqs = [float(f) for f in freqs]
    return raw


@register_step("bandpass")
def _bandpass(raw, cfg, report):
    l, h = _nyquist_band(cfg, raw.info["sfreq"])
    report.band = (l, h)
    if l is None and h is None:
        return raw
    iir = dict(order=4, ftype="butter", output="sos") if cfg.filter_method == "iir" else None
    raw.filter(l, h, method=cfg.filter_method, iir_params=iir, verbose=False)
    return raw


def _robust_z(values: np.ndarray) -> np.ndarray:
    med = np.median(values)
    mad = np.median(np.abs(values - med)) * 1.4826 + 1e-12
    return (values - med) / mad


@register_step("detect_bad")
def _detect_bad(raw, cfg, report):
    data = raw.get_data()
    bads: list[str] = []
    for ctype in sorted(set(raw.get_channel_types())):
        idx = np.array([i for i, t in enumerate(raw.get_channel_types()) if t == ctype])
        scale = UNIT_SCALE.get(ctype, (1.0, ""))[0]
        x = data[idx] * scale  # (C, T)
        # Robust SD (MAD) per channel: sparse, large events such as blinks do not make a
        # frontal channel "noisy"; a channel that is noisy all the time still stands out.
        sd = np.median(np.abs(x - np.median(x, axis=1, keepdims=True)), axis=1) * 1.4826
        flat = sd < cfg.flat_uv
        noisy = np.zeros_like(flat)
        if len(idx) >= 4:
            noisy = _robust_z(np.log(sd + 1e-12)) > cfg.noisy_z
        bads += [raw.ch_names[i] for i in idx[flat | noisy]]
    raw.info["bads"] = sorted(set(raw.info["bads"]) | set(bads))
    report.bad_channels = list(raw.info["bads"])
    return raw


@register_step("reference")
def _reference(raw, cfg, report):
    if cfg.reference == "average" and "eeg" in raw.get_channel_types():
        raw.set_eeg_reference("average", projection=False, verbose=False)  # bads excluded by MNE
    return raw


def run_steps(raw: mne.io.BaseRaw, cfg: PreprocessConfig) -> tuple[mne.io.BaseRaw, PreprocessReport]:
    """Apply ``cfg.steps`` in order to a loaded raw (modified in place)."""
    report = PreprocessReport(sfreq_in=float(raw.info["sfreq"]), n_chans_in=len(raw.ch_names))
    for name in cfg.steps:
        raw = STEPS[name](raw, cfg, report)
    return raw, report


def to_array(raw: mne.io.BaseRaw, cfg: PreprocessConfig, report: PreprocessReport) -> np.ndarray:
    """Scale to shard units (µV / fT / fT/cm), check plausibility, robust-clip: (n_chans, n_times)."""
    types = raw.get_channel_types()
    scale = np.array([UNIT_SCALE.get(t, (1.0, ""))[0] for t in types])[:, None]
    data = (raw.get_data() * scale).astype(np.float32)  # (C, T)
    _check_amplitude(data, types, raw.ch_names, cfg, report)
    if cfg.clip_sigma:
        data = _robust_clip(data, cfg.clip_sigma, report)
    return data


def _check_amplitude(data, types, names, cfg, report) -> None:
    eeg = np.array([t == "eeg" and n not in report.bad_channels for t, n in zip(types, names)])
    if not eeg.any():
        return
    rms = float(np.median(np.sqrt(np.mean(data[eeg].astype(np.float64) ** 2, axis=1))))
    report.median_rms_uv = rms
    if rms <= cfg.max_plausible_uv:
        return
    msg = (f"median EEG RMS is {rms:.0f} µV after filtering, above the plausible "
           f"{cfg.max_plausible_uv:.0f} µV: the file's units are probably wrong")
    if cfg.rescale == "error":
        raise PreprocessError(msg)
    if cfg.rescale == "auto":
        factor = 10.0 ** -np.ceil(np.log10(rms / cfg.max_plausible_uv))
        data[eeg] *= factor
        report.rescaled_by = float(factor)
        msg += f"; rescaled EEG by {factor:g}"
    report.amplitude_warning = msg


def _robust_clip(data: np.ndarray, k: float, report: PreprocessReport) -> np.ndarray:
    med = np.median(data, axis=1, keepdims=True)
    mad = np.median(np.abs(data - med), axis=1, keepdims=True) * 1.4826 + 1e-6
    lo, hi = med - k * mad, med + k * mad
    report.clipped_fraction = float(np.mean((data < lo) | (data > hi)))
    return np.clip(data, lo, hi)
