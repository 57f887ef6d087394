"""Seeded multi-subject synthetic M/EEG that looks like EEG: the project's embedded default dataset.

MOABB's ``FakeDataset`` is white noise, so a tokenizer or a pretraining run learns nothing from it.
This generator builds each recording from a small physiological model::

    sources  ~64 background sources with 1/f (aperiodic) activity; narrow-band rhythms (occipital
             alpha, sensorimotor mu and beta, midline theta, frontal delta, sleep spindles) and evoked
             waveforms (N1/P2, P300, SSVEP) at named sites under 10-05 electrodes; eye blinks
    mixing   a smooth distance decay ``(depth / d) ** 2`` from each source to each sensor (volume
             conduction: neighbouring channels correlate); MEG gradiometers take its derivative
    sensors  per-channel gains, white sensor noise, line noise, an occasional flat or noisy channel

Positions come from MNE's ``colin27_1005`` template (``standard_1005`` is deprecated in MNE 1.13).
Amplitudes are in µV at the scalp point right above a source until :class:`_SensorArray` turns them
into volts (EEG), tesla (magnetometers) or tesla per metre (gradiometers), like real MNE data.

Each paradigm turns per-trial *latents* (ERD depth, P300 amplitude, SSVEP amplitude, state power)
into effects on those sources; :func:`trial_latents` returns them without rendering signals, and
:func:`oracle_score` classifies them (regression paradigms: regresses the target on them)
leave-one-subject-out: the ceiling a decoder could reach::

    cfg = SyntheticConfig(paradigm="motor_imagery", n_subjects=9, montage="eeg22")
    raw = generate_raw(cfg, subject=0, session=0, run=1)  # RawArray in volts, trials annotated
    lat = trial_latents(cfg, 0, 0, 1)                      # the same trials, and their latents
    oracle_score(cfg).balanced_accuracy                    # the leave-one-subject-out ceiling

Every random draw comes from ``SeedSequence(seed, spawn_key=(subject, session, run, stream))``
(:class:`_Stream`), so a recording is a pure function of ``(cfg, subject, session, run)``, and the
same subject (same physiology) appears under every paradigm and montage of a given seed.
``subject`` is a 0-based index; the recording's subject label is ``f"{subject + 1:02d}"``.
"""

from __future__ import annotations

import enum
import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Literal

import mne
import numpy as np
import scipy.fft
import scipy.signal

TEMPLATE_MONTAGE = "colin27_1005"

Paradigm = Literal["motor_imagery", "erp", "ssvep", "resting", "sleep", "vigilance", "seizure"]
MontageName = Literal["eeg64", "eeg32", "eeg22", "meg"]

# BioSemi 64 (10-10 subset), BioSemi 32, and the 22 electrodes of BCI Competition IV 2a.
EEG_MONTAGES: dict[str, tuple[str, ...]] = {
    "eeg64": (
        "Fp1", "AF7", "AF3", "F1", "F3", "F5", "F7", "FT7", "FC5", "FC3", "FC1", "C1", "C3", "C5",
        "T7", "TP7", "CP5", "CP3", "CP1", "P1", "P3", "P5", "P7", "P9", "PO7", "PO3", "O1", "Iz",
        "Oz", "POz", "Pz", "CPz", "Fpz", "Fp2", "AF8", "AF4", "AFz", "Fz", "F2", "F4", "F6", "F8",
        "FT8", "FC6", "FC4", "FC2", "FCz", "Cz", "C2", "C4", "C6", "T8", "TP8", "CP6", "CP4", "CP2",
        "P2", "P4", "P6", "P8", "P10", "PO8", "PO4", "O2",
    ),
    "eeg32": (
        "Fp1", "AF3", "F7", "F3", "FC1", "FC5", "T7", "C3", "CP1", "CP5", "P7", "P3", "Pz", "PO3",
        "O1", "Oz", "O2", "PO4", "P4", "P8", "CP6", "CP2", "C4", "T8", "FC6", "FC2", "F4", "F8",
        "AF4", "Fp2", "Fz", "Cz",
    ),
    "eeg22": (
        "Fz", "FC3", "FC1", "FCz", "FC2", "FC4", "C5", "C3", "C1", "Cz", "C2", "C4", "C6", "CP3",
        "CP1", "CPz", "CP2", "CP4", "P1", "Pz", "P2", "POz",
    ),
}
# SEED-VIG's 17 channels: 12 temporal and 5 posterior (Zheng & Lu 2017).
SEED_VIG_MONTAGE = ("FT7", "FT8", "T7", "T8", "TP7", "TP8", "CP1", "CP2", "P1", "Pz", "P2", "PO3", "POz",
                    "PO4", "O1", "Oz", "O2")
MEG_LAYOUT = "Vectorview-all"  # 102 sites x (1 magnetometer + 2 planar gradiometers), Neuromag names
MEG_RADIUS_M = 0.12  # helmet sphere around the head centre
GRAD_BASELINE_M = 0.0168  # Neuromag planar gradiometer baseline
# Physical units per µV-equivalent at the scalp; chosen so that spontaneous activity gives
# magnetometer RMS ~2.5e-13 T and gradiometer RMS ~5e-12 T/m, typical of Neuromag recordings.
UNIT_PER_UV: dict[str, float] = {"eeg": 1e-6, "mag": 3e-14, "grad": 3e-14 / GRAD_BASELINE_M}

MI_CLASSES = ("left_hand", "right_hand", "feet", "tongue")
SLEEP_STAGES = ("W", "N1", "N2", "N3", "REM")
# State epochs: AASM sleep scoring uses 30 s; SEED-VIG gives one PERCLOS value per 8 s.
SEC_PER_EPOCH = {"resting": 10.0, "sleep": 30.0, "vigilance": 8.0}


# ------------------------------------------------------------------------------------------ config
@dataclass
class SyntheticConfig:
    """What to generate. Plain values only, so a manifest's ``generator:`` mapping builds it."""

    paradigm: Paradigm = "motor_imagery"
    n_subjects: int = 9
    n_sessions: int = 1
    n_runs: int = 2
    # Per run and class. ERP: the number of targets (non-targets: ``erp_nontarget_ratio`` times as
    # many). Resting/sleep: the number of state epochs (10 s resting, 30 s sleep) per class.
    # Vigilance (no classes): the number of 8 s epochs per run, each with its own drowsiness value.
    # Seizure: the number of seizures per run (background fills the time between them).
    trials_per_class: int = 20
    montage: MontageName | list[str] = "eeg64"  # a named set, or 10-05 electrode names
    sfreq: float = 250.0
    effect_size: float = 1.0  # scales every class-separating effect; 0 = no class information
    line_freq: float = 50.0  # 0 = no line noise
    seed: int = 0
    mi_classes: list[str] = field(default_factory=lambda: ["left_hand", "right_hand", "feet"])
    ssvep_freqs: list[float] = field(default_factory=lambda: [8.0, 10.0, 12.0, 15.0])
    erp_nontarget_ratio: int = 5  # target probability 1 / (1 + ratio): 1/6, an oddball design
    lapse_prob: float = 0.05  # task paradigms: share of trials where the subject did not respond
    artifacts: bool = True  # eye blinks, line noise and bad channels; sensor noise stays
    bad_channel_prob: float = 0.25  # chance that a run has one flat or very noisy channel

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __post_init__(self) -> None:
        _check_choice("paradigm", self.paradigm, PARADIGMS)
        for name in ("n_subjects", "n_sessions", "n_runs", "trials_per_class", "erp_nontarget_ratio"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("seed", self.seed, minimum=0)
        _check_number("sfreq", self.sfreq, minimum=64.0)  # rhythms reach 30 Hz, spindles 15 Hz
        for name in ("effect_size", "line_freq"):
            _check_number(name, getattr(self, name), minimum=0.0)
        for name in ("lapse_prob", "bad_channel_prob"):
            _check_number(name, getattr(self, name), minimum=0.0, maximum=1.0)
        if not isinstance(self.artifacts, bool):
            raise ValueError(f"artifacts={self.artifacts!r} must be true or false")
        self.montage = _check_montage(self.montage)
        self.mi_classes = _check_classes("mi_classes", self.mi_classes, MI_CLASSES)
        self.ssvep_freqs = _check_freqs("ssvep_freqs", self.ssvep_freqs, self.sfreq)

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> SyntheticConfig:
        """A named preset (``tiny``, ``bnci2014_001_like``, ...) with fields overridden."""
        if name not in cls.PRESETS:
            raise ValueError(f"preset {name!r} is not one of {sorted(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **overrides})

    def classes(self) -> list[str]:
        """Class names (annotation descriptions) in a stable order."""
        return PARADIGMS[self.paradigm].classes(self)

    def subjects(self) -> list[int]:
        """0-based subject indices."""
        return list(range(self.n_subjects))

    def ch_names(self) -> list[str]:
        return list(_sensor_array(_montage_key(self.montage)).ch_names)


SyntheticConfig.PRESETS.update({
    "tiny": dict(n_subjects=2, n_runs=1, trials_per_class=4, montage="eeg22", sfreq=128.0),
    "bnci2014_001_like": dict(montage="eeg22", n_sessions=2, n_runs=6, trials_per_class=12,
                              mi_classes=list(MI_CLASSES)),
    "p300_like": dict(paradigm="erp", montage="eeg32"),
    "ssvep_like": dict(paradigm="ssvep", montage="eeg32"),
    "resting_like": dict(paradigm="resting", n_runs=1, trials_per_class=6),
    "sleep_like": dict(paradigm="sleep", montage=["Fpz", "Cz", "Pz", "Oz"], sfreq=100.0,
                       n_runs=1),
    "meg_tiny": dict(montage="meg", n_subjects=2, n_runs=1, trials_per_class=4, sfreq=200.0),
})


def _check_choice(name: str, value: Any, choices: Sequence[str] | dict) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {sorted(choices)}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")


def _check_number(name: str, value: Any, minimum: float, maximum: float = math.inf) -> None:
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not minimum <= value <= maximum:
        raise ValueError(f"{name}={value!r} must be a finite number in [{minimum}, {maximum}]")


def _check_montage(montage: Any) -> str | list[str]:
    if isinstance(montage, str):
        _check_choice("montage", montage, [*EEG_MONTAGES, "meg"])
        return montage
    names = [str(n) for n in montage] if isinstance(montage, Sequence) else []
    canonical = {n.lower(): n for n in _template_positions()}
    unknown = [n for n in names if n.lower() not in canonical]
    if not names or unknown:
        raise ValueError(f"montage: {unknown or 'an empty list'} are not {TEMPLATE_MONTAGE} "
                         f"electrode names; give a list of 10-05 names or one of "
                         f"{[*EEG_MONTAGES, 'meg']}")
    out = [canonical[n.lower()] for n in names]
    if len(set(out)) != len(out):
        raise ValueError(f"montage: duplicate electrode names in {names}")
    return out


def _check_classes(name: str, values: Sequence[str], allowed: Sequence[str]) -> list[str]:
    values = list(values)
    if len(values) < 2 or len(set(values)) != len(values) or not set(values) <= set(allowed):
        raise ValueError(f"{name}={values!r} must be at least 2 distinct names from {list(allowed)}")
    return values


def _check_freqs(name: str, freqs: Sequence[float], sfreq: float) -> list[float]:
    freqs = [float(f) for f in freqs]
    if len(freqs) < 2 or len(set(freqs)) != len(freqs) or not all(1 <= f < sfreq / 2 for f in freqs):
        raise ValueError(f"{name}={freqs!r} must be at least 2 distinct frequencies in "
                         f"[1, sfreq/2={sfreq / 2}) Hz")
    return freqs


# ------------------------------------------------------------------------------------ randomness
class _Stream(enum.IntEnum):
    """Independent random streams, so that e.g. the latents never depend on the montage."""

    PHYSIOLOGY = 0  # per subject
    SENSORS = 1  # per subject and session (cap placement: gains, noise levels)
    TIMELINE = 2  # per run: trial order, timing, latents, blink times
    RENDER = 3  # per run: the source time courses
    NOISE = 4  # per run: sensor and line noise
    BAD = 5  # per run: which channel is bad


def _rng(seed: int, stream: _Stream, subject: int, session: int = 0, run: int = 0) -> np.random.Generator:
    seq = np.random.SeedSequence(seed, spawn_key=(subject, session, run, int(stream)))
    return np.random.Generator(np.random.SFC64(seq))  # ~2x faster than PCG64 for bulk draws


def _check_recording(cfg: SyntheticConfig, subject: int, session: int, run: int) -> None:
    for name, value, n in (("subject", subject, cfg.n_subjects), ("session", session, cfg.n_sessions),
                           ("run", run, cfg.n_runs)):
        _check_int(name, value, minimum=0)
        if value >= n:
            raise ValueError(f"{name}={value} is out of range: the config has n_{name}s={n} (0-based)")


# ------------------------------------------------------------------------------------- physiology
@dataclass(frozen=True)
class Band:
    """One rhythm of one subject."""

    peak_hz: float
    amplitude_uv: float  # RMS at the scalp point above the source, at baseline gain 1


@dataclass(frozen=True)
class SubjectPhysiology:
    """One subject's brain and habits; drawn from the PHYSIOLOGY stream of (seed, subject)."""

    aperiodic_exponent: float  # PSD of the background ∝ 1 / f**exponent
    background_uv: float  # scalp RMS of the aperiodic background
    bands: dict[str, Band]  # alpha, mu, beta, theta, delta, spindle
    responsiveness: float  # how strongly this subject expresses class effects (x effect_size)
    p300_uv: float
    p300_latency_s: float
    n1_uv: float
    ssvep_uv: float
    ssvep_latency_s: float
    blink_rate_hz: float
    blink_uv: float
    sensor_noise_uv: float
    line_uv: float
    site_jitter_m: dict[str, np.ndarray]  # (3,) per named site: anatomy differs between subjects


@functools.lru_cache(maxsize=256)
def subject_physiology(seed: int, subject: int) -> SubjectPhysiology:
    rng = _rng(seed, _Stream.PHYSIOLOGY, subject)
    alpha_hz = float(np.clip(rng.normal(10.0, 0.8), 8.0, 12.0))
    bands = {
        "alpha": Band(alpha_hz, rng.uniform(6.0, 14.0)),
        "mu": Band(float(np.clip(alpha_hz + rng.normal(0.5, 0.5), 8.5, 12.5)), rng.uniform(5.0, 10.0)),
        "beta": Band(rng.uniform(18.0, 24.0), rng.uniform(2.0, 4.0)),
        "theta": Band(rng.uniform(5.5, 7.0), rng.uniform(3.0, 5.0)),
        "delta": Band(rng.uniform(0.8, 1.6), rng.uniform(10.0, 16.0)),
        "spindle": Band(rng.uniform(12.0, 14.5), rng.uniform(8.0, 14.0)),
    }
    return SubjectPhysiology(
        aperiodic_exponent=rng.uniform(1.0, 1.6), background_uv=rng.uniform(12.0, 20.0),
        bands=bands, responsiveness=rng.uniform(0.5, 1.3),
        p300_uv=rng.uniform(8.0, 14.0), p300_latency_s=rng.uniform(0.28, 0.38), n1_uv=rng.uniform(2, 5),
        ssvep_uv=rng.uniform(3.0, 6.0), ssvep_latency_s=rng.uniform(0.08, 0.14),
        blink_rate_hz=rng.uniform(0.15, 0.4), blink_uv=rng.uniform(100.0, 200.0),
        sensor_noise_uv=rng.uniform(0.5, 1.5), line_uv=rng.uniform(0.5, 3.0),
        site_jitter_m={s: rng.normal(0.0, 0.004, 3) for s in SITES},
    )


# ------------------------------------------------------------------------------------- geometry
@functools.lru_cache(maxsize=1)
def _template_positions() -> dict[str, np.ndarray]:
    """10-05 label -> (3,) position in metres, MNE head frame, as ``set_montage`` writes it."""
    montage = mne.channels.make_standard_montage(TEMPLATE_MONTAGE)
    info = mne.create_info(montage.ch_names, sfreq=1.0, ch_types="eeg")
    info.set_montage(montage)
    return {ch["ch_name"]: ch["loc"][:3].copy() for ch in info["chs"]}


@functools.lru_cache(maxsize=1)
def _head_sphere() -> tuple[np.ndarray, float]:
    """Least-squares sphere through the template electrodes: centre (3,), radius (m)."""
    pos = np.array(list(_template_positions().values()))  # (n, 3)
    design = np.c_[2 * pos, np.ones(len(pos))]
    sol = np.linalg.lstsq(design, (pos**2).sum(1), rcond=None)[0]
    return sol[:3], float(np.sqrt(sol[3] + sol[:3] @ sol[:3]))


@dataclass(frozen=True)
class _Site:
    anchor: str  # the 10-05 electrode above the source
    depth_m: float  # below that electrode, towards the head centre


# Named source sites; deeper sites spread wider over the scalp.
SITES: dict[str, _Site] = {
    "occ_left": _Site("O1", 0.03), "occ_right": _Site("O2", 0.03), "visual": _Site("Oz", 0.03),
    "sm_left": _Site("C3", 0.025), "sm_right": _Site("C4", 0.025), "sm_central": _Site("Cz", 0.03),
    "parietal": _Site("Pz", 0.04), "central": _Site("Cz", 0.035), "midline": _Site("FCz", 0.045),
    "frontal_deep": _Site("Fz", 0.05),
}
BACKGROUND_DEPTH_M = 0.03
EYE_OFFSET_M = np.array([0.0, 0.0, -0.035])  # the eyes lie ~3.5 cm below Fp1/Fp2
BLINK_DECAY_POWER = 1.5  # the corneo-retinal dipole's field falls off slower than (depth/d)^2 here


def _below(anchor: str, depth: float) -> np.ndarray:
    """The point ``depth`` metres below electrode ``anchor``, towards the head centre."""
    centre, _ = _head_sphere()
    pos = _template_positions()[anchor]
    return pos - depth * (pos - centre) / np.linalg.norm(pos - centre)


@functools.lru_cache(maxsize=1)
def _background_sources() -> np.ndarray:
    """(64, 3) background source positions: under the 64 electrodes of ``eeg64``."""
    return np.array([_below(n, BACKGROUND_DEPTH_M) for n in EEG_MONTAGES["eeg64"]])


def _site_position(phys: SubjectPhysiology, site: str) -> np.ndarray:
    return _below(SITES[site].anchor, SITES[site].depth_m) + phys.site_jitter_m[site]


# ---------------------------------------------------------------------------------------- sensors
@dataclass(frozen=True)
class _SensorArray:
    """Sensor names, types and geometry, and how a source reaches each sensor."""

    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...]
    pos: np.ndarray  # (n_ch, 3) metres, head frame
    normal: np.ndarray  # (n_ch, 3) radial unit vector
    grad_dir: np.ndarray  # (n_ch, 3) unit gradient direction for gradiometers, zeros otherwise

    @property
    def unit(self) -> np.ndarray:
        """(n_ch,) physical unit per µV-equivalent (V, T or T/m)."""
        return np.array([UNIT_PER_UV[t] for t in self.ch_types])

    def gain(self, src: np.ndarray, ref_m: np.ndarray, power: float = 2.0) -> np.ndarray:
        """(n_ch, n_src) gains ``(ref/d)**power``; gradiometers see its derivative x baseline."""
        diff = self.pos[:, None, :] - src[None, :, :]  # (n_ch, n_src, 3)
        dist = np.maximum(np.linalg.norm(diff, axis=-1), 0.5 * ref_m)  # (n_ch, n_src)
        gain = (ref_m / dist) ** power
        # d/du (ref/d)^p = -p (ref/d)^p (diff . u) / d^2, times the baseline: a field difference.
        slope = -power * gain * np.einsum("csk,ck->cs", diff, self.grad_dir) / dist**2
        is_grad = np.array([t == "grad" for t in self.ch_types])[:, None]
        return np.where(is_grad, slope * GRAD_BASELINE_M, gain)


def _montage_key(montage: str | list[str]) -> tuple[str, ...] | str:
    if montage == "meg":
        return "meg"
    return EEG_MONTAGES[montage] if isinstance(montage, str) else tuple(montage)


@functools.lru_cache(maxsize=32)
def _sensor_array(key: tuple[str, ...] | str) -> _SensorArray:
    return _meg_array() if key == "meg" else _eeg_array(key)


def _eeg_array(names: tuple[str, ...]) -> _SensorArray:
    centre, _ = _head_sphere()
    pos = np.array([_template_positions()[n] for n in names])  # (n_ch, 3)
    normal = (pos - centre) / np.linalg.norm(pos - centre, axis=1, keepdims=True)
    return _SensorArray(names, ("eeg",) * len(names), pos, normal, np.zeros_like(pos))


def _tangents(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit tangent vectors (n, 3) each, orthogonal to ``normal`` and to each other."""
    east = np.cross([0.0, 0.0, 1.0], normal)
    east[np.linalg.norm(east, axis=1) < 1e-6] = [1.0, 0.0, 0.0]  # at the vertex
    east /= np.linalg.norm(east, axis=1, keepdims=True)
    return east, np.cross(normal, east)


def _meg_array() -> _SensorArray:
    """Neuromag-like helmet: the Vectorview layout's 2-D sites lifted onto a 0.12 m sphere."""
    layout = mne.channels.read_layout(MEG_LAYOUT)
    names = [n.replace(" ", "") for n in layout.names]  # "MEG 0113" -> "MEG0113"
    xy = layout.pos[:, :2] + layout.pos[:, 2:4] / 2  # (306, 2) box centres
    site = np.array([n[:-1] for n in names])
    centres = {s: xy[site == s].mean(0) for s in np.unique(site)}
    xy = np.array([centres[s] for s in site])
    xy = xy - xy.mean(0)
    polar = 1.9 * np.linalg.norm(xy, axis=1) / np.linalg.norm(xy, axis=1).max()  # rad from vertex
    azimuth = np.arctan2(xy[:, 1], xy[:, 0])  # layout: +x right, +y nose
    normal = np.c_[np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)]
    east, north = _tangents(normal)
    kind = np.array([n[-1] for n in names])  # 1 magnetometer, 2 and 3 planar gradiometers
    grad_dir = np.where((kind == "2")[:, None], east, np.where((kind == "3")[:, None], north, 0.0))
    types = tuple("mag" if k == "1" else "grad" for k in kind)
    centre, _ = _head_sphere()
    return _SensorArray(tuple(names), types, centre + MEG_RADIUS_M * normal, normal, grad_dir)


@functools.lru_cache(maxsize=1)
def _background_norm() -> float:
    """RMS over the eeg64 reference sensors of the unit-variance background (for calibration)."""
    ref = _sensor_array(EEG_MONTAGES["eeg64"])
    src = _background_sources()
    gain = ref.gain(src, np.full(len(src), BACKGROUND_DEPTH_M))  # (64, 64)
    return float(np.sqrt((gain**2).sum(1).mean()))


@functools.lru_cache(maxsize=32)
def _info_template(key: tuple[str, ...] | str, sfreq: float) -> mne.Info:
    sensors = _sensor_array(key)
    info = mne.create_info(list(sensors.ch_names), sfreq, list(sensors.ch_types))
    if key == "meg":
        _set_meg_locs(info, sensors)
    else:
        info.set_montage(mne.channels.make_standard_montage(TEMPLATE_MONTAGE))
    return info


def _set_meg_locs(info: mne.Info, sensors: _SensorArray) -> None:
    """Device frame = head frame here; loc = position, then the coil's ex, ey, ez axes."""
    east, north = _tangents(sensors.normal)
    for ch, pos, ez, gx, e, n in zip(info["chs"], sensors.pos, sensors.normal, sensors.grad_dir,
                                    east, north):
        ex = gx if np.any(gx) else e
        ch["loc"][:] = np.r_[pos, ex, np.cross(ez, ex), ez]
    info["dev_head_t"] = mne.transforms.Transform("meg", "head")  # identity


# ---------------------------------------------------------------------------------------- latents
@dataclass
class RunLatents:
    """What the generator decided for one run before rendering any signal."""

    subject: int
    session: int
    run: int
    labels: list[str]  # (n_trials,) class names, in time order
    onsets: np.ndarray  # (n_trials,) s from the first sample
    durations: np.ndarray  # (n_trials,) s
    features: np.ndarray  # (n_trials, n_features) the per-trial generating effect amplitudes
    feature_names: tuple[str, ...]
    blink_onsets: np.ndarray  # (n_blinks,) s
    duration_s: float  # recording length
    target_name: str | None = None  # regression paradigms: the feature that is each trial's target

    @property
    def targets(self) -> np.ndarray | None:
        """(n_trials,) the continuous target of each trial (regression paradigms), else None."""
        if self.target_name is None:
            return None
        return self.features[:, self.feature_names.index(self.target_name)]

    def y(self, classes: Sequence[str]) -> np.ndarray:
        """(n_trials,) integer labels in the order of ``classes``."""
        index = {c: i for i, c in enumerate(classes)}
        return np.array([index[lab] for lab in self.labels], dtype=int)


@dataclass
class _Timeline:
    labels: list[str]
    onsets: np.ndarray  # (n_trials,) s
    durations: np.ndarray  # (n_trials,) s
    duration_s: float


def trial_latents(cfg: SyntheticConfig, subject: int, session: int = 0, run: int = 0) -> RunLatents:
    """The run's trials and their generating features; no signal is rendered (cheap)."""
    _check_recording(cfg, subject, session, run)
    paradigm = PARADIGMS[cfg.paradigm]
    phys = subject_physiology(cfg.seed, subject)
    rng = _rng(cfg.seed, _Stream.TIMELINE, subject, session, run)
    tl = paradigm.timeline(cfg, rng)
    features, names = paradigm.features(cfg, phys, np.array(tl.labels), rng)
    blinks = _blink_onsets(cfg, phys, tl, paradigm.blink_gain(cfg, phys, np.array(tl.labels)), rng)
    counts = _count_in_windows(blinks, tl.onsets, tl.onsets + tl.durations)
    return RunLatents(subject, session, run, tl.labels, tl.onsets, tl.durations,
                      np.c_[features, counts], (*names, "blink_count"), blinks, tl.duration_s,
                      paradigm.target)


def _blink_onsets(cfg: SyntheticConfig, phys: SubjectPhysiology, tl: _Timeline,
                  trial_gain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson blinks, thinned inside each trial by ``trial_gain`` (eyes closed, sleep)."""
    n = rng.poisson(phys.blink_rate_hz * tl.duration_s)
    times = np.sort(rng.uniform(0.5, tl.duration_s - 0.5, n))
    keep_u = rng.random(n)
    if not cfg.artifacts:
        return np.zeros(0)
    trial = np.searchsorted(tl.onsets, times, side="right") - 1  # the trial that started last
    inside = (trial >= 0) & (times < tl.onsets[trial] + tl.durations[trial])
    gain = np.where(inside, trial_gain[np.maximum(trial, 0)], 1.0)
    return times[keep_u < np.clip(gain, 0.0, 1.0)]


def _count_in_windows(times: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    return np.searchsorted(times, stops) - np.searchsorted(times, starts)  # (n_trials,)


def _shuffled(classes: Sequence[str], counts: Sequence[int], rng: np.random.Generator) -> list[str]:
    return [str(c) for c in rng.permutation(np.repeat(list(classes), counts))]


def _trials_timeline(labels: list[str], rng: np.random.Generator, *, pre_s: float, trial_s: float,
                     gap_s: float, jitter_s: float, lead_s: float = 2.0) -> _Timeline:
    """Cued trials: ``pre_s`` (fixation) | ``trial_s`` annotated | ``gap_s`` + U(0, jitter_s)."""
    period = pre_s + trial_s + gap_s + rng.uniform(0.0, jitter_s, len(labels))  # (n_trials,)
    starts = lead_s + np.r_[0.0, np.cumsum(period)[:-1]]
    return _Timeline(labels, starts + pre_s, np.full(len(labels), trial_s),
                     lead_s + float(period.sum()) + lead_s)


def _bouts_timeline(classes: Sequence[str], per_class: int, epoch_s: float, max_bout: int,
                    rng: np.random.Generator) -> _Timeline:
    """Back-to-back state epochs in bouts of 1..max_bout epochs of one class, bouts shuffled."""
    bouts = []
    for c in classes:
        sizes = []
        while sum(sizes) < per_class:
            sizes.append(min(int(rng.integers(1, max_bout + 1)), per_class - sum(sizes)))
        bouts += [[c] * k for k in sizes]
    labels = [c for i in rng.permutation(len(bouts)) for c in bouts[i]]
    n = len(labels)
    return _Timeline(labels, epoch_s * np.arange(n), np.full(n, epoch_s), epoch_s * n)


def _contrast(profiles: dict[str, dict[str, float]], labels: np.ndarray, columns: Sequence[str],
              strength: float) -> np.ndarray:
    """(n_trials, k) class profile values scaled about their mean over classes by ``strength``:
    0 makes every class identical, 1 gives the table, > 1 exaggerates it."""
    table = np.array([[profiles[c][k] for k in columns] for c in profiles])  # (n_classes, k)
    values = np.array([[profiles[lab][k] for k in columns] for lab in labels])  # (n_trials, k)
    return table.mean(0) + strength * (values - table.mean(0))


# -------------------------------------------------------------------------------------- paradigms
@dataclass
class _Effects:
    """What a paradigm does to the sources of one run."""

    envelopes: dict[str, np.ndarray] = field(default_factory=dict)  # rhythm -> (n_times,) gain
    evoked: dict[str, np.ndarray] = field(default_factory=dict)  # site -> (n_times,) µV


@dataclass
class _RenderContext:
    cfg: SyntheticConfig
    phys: SubjectPhysiology
    latents: RunLatents
    n_times: int
    rng: np.random.Generator

    @property
    def sfreq(self) -> float:
        return self.cfg.sfreq


class _ParadigmBase:
    """One paradigm: classes, timeline, per-trial latents and their effect on the sources.

    ``target``: for a regression paradigm, the name of the feature that is each trial's continuous
    target (the paradigm then has no classes); None for classification paradigms.
    """

    target: str | None = None

    def classes(self, cfg: SyntheticConfig) -> list[str]:
        raise NotImplementedError

    def timeline(self, cfg: SyntheticConfig, rng: np.random.Generator) -> _Timeline:
        raise NotImplementedError

    def features(self, cfg: SyntheticConfig, phys: SubjectPhysiology, labels: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...]]:
        raise NotImplementedError

    def blink_gain(self, cfg: SyntheticConfig, phys: SubjectPhysiology, labels: np.ndarray) -> np.ndarray:
        return np.ones(len(labels))  # (n_trials,) blink-rate multiplier inside each trial

    def effects(self, ctx: _RenderContext) -> _Effects:
        raise NotImplementedError


PARADIGMS: dict[str, _ParadigmBase] = {}


def _register(name: str):
    def add(cls: type[_ParadigmBase]) -> type[_ParadigmBase]:
        PARADIGMS[name] = cls()
        return cls
    return add


def _attended(cfg: SyntheticConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.random(n) >= cfg.lapse_prob  # (n_trials,) False: a lapse, no class effect


# Share of mu/beta power lost over each sensorimotor site at effect_size 1 for a responsiveness-1
# subject (Pfurtscheller & Lopes da Silva 1999: contralateral hand ERD, midline foot ERD, and a
# surrounding ERS); negative = power increase.
MI_ERD: dict[str, dict[str, float]] = {
    "left_hand": {"sm_right": 0.6, "sm_left": 0.15},
    "right_hand": {"sm_left": 0.6, "sm_right": 0.15},
    "feet": {"sm_central": 0.6, "sm_left": -0.15, "sm_right": -0.15},
    "tongue": {"sm_left": 0.35, "sm_right": 0.35, "sm_central": -0.2},
}
MI_SITES = ("sm_left", "sm_right", "sm_central")
MI_ERD_DELAY_S = 0.5  # ERD starts ~0.5 s after the cue


@_register("motor_imagery")
class _MotorImagery(_ParadigmBase):
    def classes(self, cfg: SyntheticConfig) -> list[str]:
        return list(cfg.mi_classes)

    def timeline(self, cfg: SyntheticConfig, rng: np.random.Generator) -> _Timeline:
        labels = _shuffled(cfg.mi_classes, [cfg.trials_per_class] * len(cfg.mi_classes), rng)
        # BCI Competition IV 2a timing: fixation 2 s, cue + imagery 4 s, break 1.5-2.5 s.
        return _trials_timeline(labels, rng, pre_s=2.0, trial_s=4.0, gap_s=1.5, jitter_s=1.0)

    def features(self, cfg: SyntheticConfig, phys: SubjectPhysiology, labels: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...]]:
        depth = np.array([[MI_ERD[lab].get(s, 0.0) for s in MI_SITES] for lab in labels])  # (n, 3)
        depth = depth * cfg.effect_size * phys.responsiveness * _attended(cfg, len(labels), rng)[:, None]
        # Trial-to-trial spontaneous power fluctuation, the same for every class.
        log_power = np.log(np.clip(1.0 - depth, 0.05, None)) + rng.normal(0.0, 0.3, depth.shape)
        return log_power, tuple(f"log_power_{s}" for s in MI_SITES)

    def effects(self, ctx: _RenderContext) -> _Effects:
        lat = ctx.latents
        out = _Effects()
        for j, site in enumerate(MI_SITES):
            gain = np.exp(lat.features[:, j] / 2)  # (n_trials,) amplitude = sqrt(power)
            env = _window_envelope(ctx.n_times, ctx.sfreq, lat.onsets + MI_ERD_DELAY_S,
                                   lat.onsets + lat.durations, gain, ramp_s=0.5)
            side = site.removeprefix("sm_")
            out.envelopes[f"mu_{side}"] = out.envelopes[f"beta_{side}"] = env
        return out


@_register("erp")
class _Erp(_ParadigmBase):
    TRIAL_S = 0.8

    def classes(self, cfg: SyntheticConfig) -> list[str]:
        return ["target", "nontarget"]

    def timeline(self, cfg: SyntheticConfig, rng: np.random.Generator) -> _Timeline:
        n = cfg.trials_per_class
        labels = _shuffled(self.classes(cfg), [n, n * cfg.erp_nontarget_ratio], rng)
        # An oddball with a 1.0-1.2 s SOA: epochs do not overlap.
        return _trials_timeline(labels, rng, pre_s=0.0, trial_s=self.TRIAL_S, gap_s=0.2, jitter_s=0.2)

    def features(self, cfg: SyntheticConfig, phys: SubjectPhysiology, labels: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...]]:
        target = (labels == "target") & _attended(cfg, len(labels), rng)
        # Non-targets evoke a small P3 too (30 %); targets add the class effect.
        gain = 0.3 + cfg.effect_size * phys.responsiveness * target
        log_amp = np.log(phys.p300_uv * gain) + rng.normal(0.0, 0.3, len(labels))
        latency = phys.p300_latency_s + rng.normal(0.0, 0.03, len(labels))
        # Log amplitude: the target/non-target ratio, not the difference, is common to subjects.
        return np.c_[log_amp, latency], ("log_p300_uv", "p300_latency_s")

    def effects(self, ctx: _RenderContext) -> _Effects:
        lat, n, fs = ctx.latents, ctx.n_times, ctx.sfreq
        amp = np.exp(lat.features[:, 0])  # (n_trials,) µV
        p300 = _gaussian_events(n, fs, lat.onsets + lat.features[:, 1], amp, 0.1)
        ones = np.ones(len(lat.onsets))
        n1p2 = (_gaussian_events(n, fs, lat.onsets + 0.10, -ctx.phys.n1_uv * ones, 0.025)
                + _gaussian_events(n, fs, lat.onsets + 0.19, 0.7 * ctx.phys.n1_uv * ones, 0.035))
        return _Effects(evoked={"parietal": p300, "central": n1p2})


SSVEP_HARMONICS = ((1, 1.0), (2, 0.4), (3, 0.15))  # (multiple of the stimulus frequency, amplitude)
SSVEP_UNATTENDED = 0.25  # response to a stimulus in view but not attended, x the attended one


@_register("ssvep")
class _Ssvep(_ParadigmBase):
    def classes(self, cfg: SyntheticConfig) -> list[str]:
        return [f"ssvep_{f:.1f}hz" for f in cfg.ssvep_freqs]

    def timeline(self, cfg: SyntheticConfig, rng: np.random.Generator) -> _Timeline:
        classes = self.classes(cfg)
        labels = _shuffled(classes, [cfg.trials_per_class] * len(classes), rng)
        return _trials_timeline(labels, rng, pre_s=1.0, trial_s=4.0, gap_s=1.0, jitter_s=0.5)

    def features(self, cfg: SyntheticConfig, phys: SubjectPhysiology, labels: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...]]:
        onehot = labels[:, None] == np.array(self.classes(cfg))[None, :]  # (n_trials, n_freqs)
        attended = onehot & _attended(cfg, len(labels), rng)[:, None]
        # Every stimulus flickers on screen; attention enhances the attended one. The response
        # weakens with frequency (roughly 1/sqrt(f) over 6-20 Hz).
        base = phys.ssvep_uv * np.sqrt(10.0 / np.array(cfg.ssvep_freqs))  # (n_freqs,)
        gain = SSVEP_UNATTENDED + cfg.effect_size * phys.responsiveness * attended
        log_amp = np.log(base * gain) + rng.normal(0.0, 0.25, gain.shape)
        return log_amp, tuple(f"log_ssvep_uv_{f:.1f}hz" for f in cfg.ssvep_freqs)

    def effects(self, ctx: _RenderContext) -> _Effects:
        lat, fs = ctx.latents, ctx.sfreq
        wave = np.zeros(ctx.n_times)
        amplitudes = np.exp(lat.features[:, : len(ctx.cfg.ssvep_freqs)])  # (n_trials, n_freqs) µV
        for onset, dur, amps in zip(lat.onsets, lat.durations, amplitudes):
            i0, i1 = int(round(onset * fs)), int(round((onset + dur) * fs))
            t = np.arange(i1 - i0) / fs - ctx.phys.ssvep_latency_s  # (n_trial_times,)
            taper = np.clip(np.minimum(t + ctx.phys.ssvep_latency_s, dur - t) / 0.2, 0.0, 1.0)
            for f, a in zip(ctx.cfg.ssvep_freqs, amps):
                for h, rel in SSVEP_HARMONICS:
                    if h * f < fs / 2:
                        wave[i0:i1] += a * rel * math.sqrt(2) * taper * np.sin(2 * np.pi * h * f * t)
        return _Effects(evoked={"visual": wave})


# Eyes-closed alpha power ~3x eyes-open (Berger effect); eyes closed: no blinks.
RESTING: dict[str, dict[str, float]] = {
    "eyes_open": {"log_alpha_power": 0.0, "blink": 1.0},
    "eyes_closed": {"log_alpha_power": math.log(3.0), "blink": 0.0},
}


@_register("resting")
class _Resting(_ParadigmBase):
    def classes(self, cfg: SyntheticConfig) -> list[str]:
        return list(RESTING)

    def timeline(self, cfg: SyntheticConfig, rng: np.random.Generator) -> _Timeline:
        return _bouts_timeline(self.classes(cfg), cfg.trials_per_class, SEC_PER_EPOCH["resting"], 3, rng)

    def features(self, cfg: SyntheticConfig, phys: SubjectPhysiology, labels: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...]]:
        # In log power, so that any contrast keeps the power positive.
        log_power = _contrast(RESTING, labels, ["log_alpha_power"], cfg.effect_size * phys.responsiveness)
        return log_power + rng.normal(0.0, 0.25, log_power.shape), ("log_alpha_power",)

    def blink_gain(self, cfg: SyntheticConfig, phys: SubjectPhysiology, labels: np.ndarray) -> np.ndarray:
        return _contrast(RESTING, labels, ["blink"], cfg.effect_size * phys.responsiveness)[:, 0]

    def effects(self, ctx: _RenderContext) -> _Effects:
        lat = ctx.latents
        env = _window_envelope(ctx.n_times, ctx.sfreq, lat.onsets, lat.onsets + lat.durations,
                               np.exp(lat.features[:, 0] / 2), ramp_s=1.0)
        return _Effects(envelopes={"alpha_left": env, "alpha_right": env})


# Amplitude gain of each band per stage (AASM: W alpha, N1 theta, N2 spindles, N3 slow waves > 75 µV
# peak-to-peak, REM theta with low alpha; 0.02 = absent), and the blink rate.
SLEEP_GAINS: dict[str, dict[str, float]] = {
    "W": {"alpha": 1.0, "beta": 1.2, "theta": 0.5, "delta": 0.3, "spindle": 0.02, "blink": 1.0},
    "N1": {"alpha": 0.35, "beta": 0.7, "theta": 1.3, "delta": 0.7, "spindle": 0.1, "blink": 0.2},
    "N2": {"alpha": 0.2, "beta": 0.5, "theta": 1.0, "delta": 1.5, "spindle": 1.0, "blink": 0.0},
    "N3": {"alpha": 0.15, "beta": 0.4, "theta": 1.0, "delta": 4.0, "spindle": 0.4, "blink": 0.0},
    "REM": {"alpha": 0.4, "beta": 0.7, "theta": 1.2, "delta": 0.6, "spindle": 0.02, "blink": 0.0},
}
SLEEP_LOG_GAINS = {stage: {b: math.log(g) for b, g in gains.items() if b != "blink"}
                   for stage, gains in SLEEP_GAINS.items()}
SLEEP_BANDS = ("alpha", "beta", "theta", "delta", "spindle")
SLEEP_RHYTHMS = {"alpha": ("alpha_left", "alpha_right", "mu_left", "mu_right", "mu_central"),
                 "beta": ("beta_left", "beta_right", "beta_central"), "theta": ("theta_midline",),
                 "delta": ("delta_frontal",), "spindle": ("spindle_central",)}
SPINDLES_PER_S = 0.1  # ~6 per minute at spindle gain 1


@_register("sleep")
class _Sleep(_ParadigmBase):
    def classes(self, cfg: SyntheticConfig) -> list[str]:
        return list(SLEEP_STAGES)

    def timeline(self, cfg: SyntheticConfig, rng: np.random.Generator) -> _Timeline:
        return _bouts_timeline(SLEEP_STAGES, cfg.trials_per_class, SEC_PER_EPOCH["sleep"], 6, rng)

    def features(self, cfg: SyntheticConfig, phys: SubjectPhysiology, labels: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...]]:
        # Stages are defined by their EEG signatures, so every subject shows them fully: the
        # contrast is effect_size alone (no per-subject responsiveness).
        log_gains = _contrast(SLEEP_LOG_GAINS, labels, SLEEP_BANDS, cfg.effect_size)
        log_gains = log_gains + rng.normal(0.0, 0.2, log_gains.shape)  # (n_epochs, n_bands)
        return log_gains, tuple(f"log_{b}_gain" for b in SLEEP_BANDS)

    def blink_gain(self, cfg: SyntheticConfig, phys: SubjectPhysiology, labels: np.ndarray) -> np.ndarray:
        return _contrast(SLEEP_GAINS, labels, ["blink"], cfg.effect_size)[:, 0]

    def effects(self, ctx: _RenderContext) -> _Effects:
        lat = ctx.latents
        out = _Effects()
        for j, band in enumerate(SLEEP_BANDS):
            env = _window_envelope(ctx.n_times, ctx.sfreq, lat.onsets, lat.onsets + lat.durations,
                                   np.exp(lat.features[:, j]), ramp_s=2.0)
            if band == "spindle":
                env = env * _spindle_bursts(ctx)
            out.envelopes.update({name: env for name in SLEEP_RHYTHMS[band]})
        return out


def _spindle_bursts(ctx: _RenderContext) -> np.ndarray:
    """(n_times,) envelope of 0.5-1.5 s Hann-shaped bursts at Poisson times, peak 1."""
    duration = ctx.n_times / ctx.sfreq
    times = ctx.rng.uniform(0.0, duration, ctx.rng.poisson(SPINDLES_PER_S * duration))
    out = np.zeros(ctx.n_times)
    for t0, length in zip(times, ctx.rng.uniform(0.5, 1.5, len(times))):
        i0, n = int(t0 * ctx.sfreq), int(length * ctx.sfreq)
        seg = np.hanning(n)[: ctx.n_times - i0]
        out[i0:i0 + len(seg)] = np.maximum(out[i0:i0 + len(seg)], seg)
    return out * math.sqrt(2)  # RMS inside a burst ~ the band amplitude


# Drowsiness d in [0, 1], PERCLOS-like (0 alert, 1 eyes mostly closed). As vigilance falls, posterior
# alpha rises first and then saturates, and frontal-midline theta rises late (Jap et al. 2009,
# doi:10.1016/j.eswa.2007.12.043; SEED-VIG's PERCLOS correlates with both). Log power gains at d = 1
# for effect_size 1 and a responsiveness-1 subject:
VIGILANCE_LOG_ALPHA = math.log(4.0)  # reached at d = VIGILANCE_ALPHA_SATURATION, flat after
VIGILANCE_ALPHA_SATURATION = 0.6
VIGILANCE_LOG_THETA = math.log(4.0)  # ∝ d**2: theta appears only in deep drowsiness
VIGILANCE_STEP = 0.08  # s.d. of the per-epoch random walk around the run's alert-to-drowsy trend


def drowsiness_walk(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) drowsiness over a run: a trend from alert (U(0, 0.3)) to drowsy (U(0.6, 1)), as drivers
    tire (SEED-VIG's PERCLOS spans most of its range within one drive), plus a random walk; folded
    into [0, 1] and smoothed over 3 epochs."""
    start, end = rng.uniform(0.0, 0.3), rng.uniform(0.6, 1.0)
    d = np.linspace(start, end, n) + np.cumsum(rng.normal(0.0, VIGILANCE_STEP, n))
    d = np.abs(d)  # reflect at 0 ...
    d = np.where(d > 1.0, 2.0 - d, d)  # ... and at 1
    return np.clip(_moving_average(np.clip(d, 0.0, 1.0), 3), 0.0, 1.0)


@_register("vigilance")
class _Vigilance(_ParadigmBase):
    """A regression paradigm: back-to-back 8 s epochs, each with a drowsiness value (its target)."""

    target = "drowsiness"

    def classes(self, cfg: SyntheticConfig) -> list[str]:
        return []

    def timeline(self, cfg: SyntheticConfig, rng: np.random.Generator) -> _Timeline:
        n, epoch_s = cfg.trials_per_class, SEC_PER_EPOCH["vigilance"]
        return _Timeline(["vigilance"] * n, epoch_s * np.arange(n), np.full(n, epoch_s), epoch_s * n)

    def features(self, cfg: SyntheticConfig, phys: SubjectPhysiology, labels: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...]]:
        d = drowsiness_walk(len(labels), rng)  # (n_epochs,)
        # Like sleep stages, drowsiness is defined by its EEG signature: no per-subject responsiveness.
        k = cfg.effect_size
        log_alpha = k * VIGILANCE_LOG_ALPHA * np.minimum(d / VIGILANCE_ALPHA_SATURATION, 1.0)
        log_theta = k * VIGILANCE_LOG_THETA * d**2
        noise = rng.normal(0.0, 0.2, (len(labels), 2))  # epoch-to-epoch power fluctuation
        return np.c_[d, log_alpha + noise[:, 0], log_theta + noise[:, 1]], (
            "drowsiness", "log_alpha_power", "log_theta_power")

    def effects(self, ctx: _RenderContext) -> _Effects:
        lat = ctx.latents
        on, off = lat.onsets, lat.onsets + lat.durations

        def envelope(column: int, baseline: float) -> np.ndarray:
            gain = baseline * np.exp(lat.features[:, column] / 2)  # amplitude = sqrt(power)
            return _window_envelope(ctx.n_times, ctx.sfreq, on, off, gain, ramp_s=2.0)

        alpha = envelope(1, RHYTHMS["alpha_left"].baseline)
        return _Effects(envelopes={"alpha_left": alpha, "alpha_right": alpha,
                                   "theta_midline": envelope(2, RHYTHMS["theta_midline"].baseline)})


# Seizures (CHB-MIT-like scalp EEG): 20-80 s of rhythmic 3-8 Hz high-amplitude discharges that
# start at a focus and spread to a neighbouring site, slowing as they evolve (a typical ictal
# pattern); background fills 2-6 min between seizures. Both spans are annotated, so fixed windows
# are labelled "seizure" or "background" by their middle.
SEIZURE_S = (20.0, 80.0)  # seizure duration, uniform
SEIZURE_GAP_S = (120.0, 360.0)  # background between seizures (and before the first, after the last)
SEIZURE_HZ = (3.0, 8.0)  # discharge frequency at onset, uniform; it slows to 0.6x by the offset
SEIZURE_UV = 80.0  # discharge amplitude at the focus at effect_size 1 (background ~15-30 µV)
SEIZURE_FOCI = {"sm_left": "midline", "sm_right": "midline", "occ_left": "parietal",  # focus -> spread site
                "occ_right": "parietal", "frontal_deep": "central"}
SEIZURE_SPREAD_S = (3.0, 10.0)  # delay before the discharge reaches the spread site
SEIZURE_SPREAD_GAIN = 0.6  # its amplitude there, x the focus


@_register("seizure")
class _Seizure(_ParadigmBase):
    def classes(self, cfg: SyntheticConfig) -> list[str]:
        return ["background", "seizure"]

    def timeline(self, cfg: SyntheticConfig, rng: np.random.Generator) -> _Timeline:
        n = cfg.trials_per_class
        seizures = rng.uniform(*SEIZURE_S, n)
        gaps = rng.uniform(*SEIZURE_GAP_S, n + 1)
        durations = np.empty(2 * n + 1)  # background, seizure, background, ..., background
        durations[0::2], durations[1::2] = gaps, seizures
        durations = np.round(durations, 3)  # whole ms: abutting spans stay abutting in MNE's µs onsets
        onsets = np.r_[0.0, np.cumsum(durations)[:-1]]
        labels = ["background", "seizure"] * n + ["background"]
        return _Timeline(labels, onsets, durations, float(durations.sum()))

    def features(self, cfg: SyntheticConfig, phys: SubjectPhysiology, labels: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...]]:
        n = len(labels)
        ictal = (labels == "seizure") & (cfg.effect_size > 0)  # effect_size 0: no discharge to describe
        amp = cfg.effect_size * SEIZURE_UV * rng.lognormal(0.0, 0.2, n) * ictal  # (n,) 0 in background
        freq = rng.uniform(*SEIZURE_HZ, n) * ictal
        focus = rng.integers(0, len(SEIZURE_FOCI), n) * ictal
        spread = rng.uniform(*SEIZURE_SPREAD_S, n) * ictal
        return np.c_[amp, freq, focus, spread], ("seizure_uv", "seizure_hz", "seizure_focus", "spread_delay_s")

    def effects(self, ctx: _RenderContext) -> _Effects:
        lat, fs = ctx.latents, ctx.sfreq
        foci = list(SEIZURE_FOCI)
        out = _Effects()
        for on, dur, (amp, freq, focus, delay) in zip(lat.onsets, lat.durations, lat.features[:, :4]):
            if amp <= 0:
                continue
            site = foci[int(focus)]
            for where, lag, gain in ((site, 0.0, 1.0), (SEIZURE_FOCI[site], delay, SEIZURE_SPREAD_GAIN)):
                wave = out.evoked.setdefault(where, np.zeros(ctx.n_times))
                i0, i1 = int(round((on + lag) * fs)), int(round((on + dur) * fs))
                wave[i0:i1] += gain * amp * _discharge(i1 - i0, fs, freq)
        return out


def _discharge(n: int, sfreq: float, freq_hz: float) -> np.ndarray:
    """(n,) a spike-and-wave-like train at ``freq_hz`` slowing to 0.6x, waxing over 5 s, waning over 3 s."""
    t = np.arange(n) / sfreq
    inst = freq_hz * (1.0 - 0.4 * t / max(t[-1], 1e-9)) if n else t  # instantaneous frequency
    phase = 2 * np.pi * np.cumsum(inst) / sfreq
    wave = np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)  # sharp, asymmetric
    ramp = np.minimum(np.minimum(t / 5.0, (t[-1] - t) / 3.0 if n else t), 1.0)
    return wave / 1.2 * np.clip(ramp, 0.0, 1.0)


# -------------------------------------------------------------------------------- signal helpers
def _window_envelope(n_times: int, sfreq: float, starts: np.ndarray, stops: np.ndarray,
                     gains: np.ndarray, ramp_s: float) -> np.ndarray:
    """(n_times,) 1 outside the windows, ``gains[i]`` inside window i, smoothed over ``ramp_s``."""
    env = np.ones(n_times)
    for a, b, g in zip(np.round(starts * sfreq).astype(int), np.round(stops * sfreq).astype(int), gains):
        env[max(a, 0):max(b, 0)] = g
    return _moving_average(env, max(int(ramp_s * sfreq), 1))


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    padded = np.pad(x, (width // 2, width - width // 2), mode="edge")
    csum = np.cumsum(np.r_[0.0, padded])
    return (csum[width:] - csum[:-width])[: len(x)] / width


def _gaussian_events(n_times: int, sfreq: float, times: np.ndarray, amps: np.ndarray,
                     width_s: float) -> np.ndarray:
    """(n_times,) sum of Gaussian bumps (s.d. ``width_s``) of peak ``amps`` centred at ``times``."""
    half = int(4 * width_s * sfreq)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / (width_s * sfreq)) ** 2)
    return scipy.signal.oaconvolve(_impulses(n_times, sfreq, times, amps), kernel, mode="same")


def _impulses(n_times: int, sfreq: float, times: np.ndarray, amps: np.ndarray) -> np.ndarray:
    train = np.zeros(n_times)
    idx = np.round(np.asarray(times) * sfreq).astype(int)
    ok = (idx >= 0) & (idx < n_times)
    np.add.at(train, idx[ok], np.broadcast_to(amps, idx.shape)[ok])
    return train


@dataclass(frozen=True)
class _FftGrid:
    """Frequency grid of a signal of ``n_times`` samples, shaped at a fast FFT length and cropped
    (n_times = 120929 has a large prime factor: 5x slower than the 121500 used instead)."""

    n_times: int
    sfreq: float

    @functools.cached_property
    def n_fft(self) -> int:
        return scipy.fft.next_fast_len(self.n_times, real=True)

    @functools.cached_property
    def freqs(self) -> np.ndarray:
        return np.fft.rfftfreq(self.n_fft, 1.0 / self.sfreq).astype(np.float32)  # (n_freqs,)


def _shaped_noise(rng: np.random.Generator, grid: _FftGrid, response: np.ndarray, n_proc: int) -> np.ndarray:
    """(n_proc, n_times) float32 Gaussian noise with amplitude spectrum ``response`` ((n_freqs,) or
    (n_proc, n_freqs)), each row at unit variance.

    Random phases under the given amplitudes: a sum of many sinusoids with independent phases, so a
    Gaussian process (central limit theorem) with that spectrum; one uniform draw per bin is ~4x
    cheaper than two normals. Shaping costs O(n log n) for any spectrum (1/f, a narrow band).
    """
    response = np.broadcast_to(response, (n_proc, len(grid.freqs))).astype(np.float32)
    variance = 2.0 * (response**2).sum(-1, keepdims=True) / grid.n_fft**2  # of the irfft output
    response = response / np.sqrt(np.maximum(variance, 1e-30))
    phase = rng.random(response.shape, dtype=np.float32) * np.float32(2 * np.pi)
    spec = np.empty(response.shape, dtype=np.complex64)  # (n_proc, n_freqs)
    spec.real, spec.imag = response * np.cos(phase), response * np.sin(phase)
    return scipy.fft.irfft(spec, n=grid.n_fft, axis=-1)[:, : grid.n_times]  # (n_proc, n_times)


def _slow_noise(rng: np.random.Generator, n_proc: int, n_times: int, sfreq: float,
                cutoff_hz: float = 0.15) -> np.ndarray:
    """(n_proc, n_times) unit-variance noise below ~``cutoff_hz``, made at 2 Hz and interpolated."""
    step = 0.5  # s
    coarse = _FftGrid(int(n_times / sfreq / step) + 2, 1 / step)
    low = _shaped_noise(rng, coarse, np.exp(-0.5 * (coarse.freqs / cutoff_hz) ** 2), n_proc)
    t = np.arange(n_times) / sfreq / step  # in coarse samples
    return np.stack([np.interp(t, np.arange(coarse.n_times), row) for row in low])


def _aperiodic_response(freqs: np.ndarray, exponent: float, knee_hz: float = 0.5) -> np.ndarray:
    """Amplitude spectrum of 1/f**exponent power, flattened below ``knee_hz``, no DC."""
    response = (freqs**2 + knee_hz**2) ** (-exponent / 4)
    response[0] = 0.0  # no DC offset
    return response


# ------------------------------------------------------------------------------------- rendering
@dataclass(frozen=True)
class _Rhythm:
    site: str
    band: str
    bandwidth_hz: float  # s.d. of the Gaussian spectral peak
    baseline: float  # amplitude gain where the paradigm says nothing


RHYTHMS: dict[str, _Rhythm] = {
    "alpha_left": _Rhythm("occ_left", "alpha", 0.8, 1.0),
    "alpha_right": _Rhythm("occ_right", "alpha", 0.8, 1.0),
    "mu_left": _Rhythm("sm_left", "mu", 0.8, 1.0),
    "mu_right": _Rhythm("sm_right", "mu", 0.8, 1.0),
    "mu_central": _Rhythm("sm_central", "mu", 0.8, 0.8),
    "beta_left": _Rhythm("sm_left", "beta", 2.5, 1.0),
    "beta_right": _Rhythm("sm_right", "beta", 2.5, 1.0),
    "beta_central": _Rhythm("sm_central", "beta", 2.5, 0.8),
    "theta_midline": _Rhythm("midline", "theta", 1.0, 0.6),
    "delta_frontal": _Rhythm("frontal_deep", "delta", 0.5, 0.3),
    "spindle_central": _Rhythm("central", "spindle", 0.7, 0.0),
}
BACKGROUND_BATCH = 16  # sources shaped at once: bounds memory on long (sleep) recordings
SLOW_MODULATION = 0.3  # s.d. of the log-amplitude waxing and waning of every rhythm (< 0.3 Hz)


def _brain_signal(ctx: _RenderContext, sensors: _SensorArray) -> np.ndarray:
    """(n_ch, n_times) float32 µV-equivalent: background, rhythms, evoked waves and blinks."""
    effects = PARADIGMS[ctx.cfg.paradigm].effects(ctx)
    data = _background(ctx, sensors)
    parts = [_rhythms(ctx, sensors, effects.envelopes), _evoked(ctx, sensors, effects.evoked),
             _blinks(ctx, sensors)]  # [((n_ch, k), (k, n_times)), ...]
    gain = np.concatenate([g for g, _ in parts], axis=1).astype(np.float32)  # (n_ch, n_waves)
    waves = np.concatenate([w for _, w in parts], axis=0).astype(np.float32)  # (n_waves, n_times)
    data += gain @ waves  # one pass over the output for all named sources
    return data


def _site_gain(phys: SubjectPhysiology, sensors: _SensorArray, site: str) -> np.ndarray:
    """(n_ch, 1) gain from one named site."""
    return sensors.gain(_site_position(phys, site)[None, :], np.array([SITES[site].depth_m]))


def _evoked(ctx: _RenderContext, sensors: _SensorArray,
            evoked: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    gains = [_site_gain(ctx.phys, sensors, site) for site in evoked]
    if not gains:
        return np.zeros((len(sensors.ch_names), 0)), np.zeros((0, ctx.n_times))
    return np.concatenate(gains, axis=1), np.stack(list(evoked.values()))


def _background(ctx: _RenderContext, sensors: _SensorArray) -> np.ndarray:
    """(n_ch, n_times) float32 aperiodic background mixed from the sources under the scalp."""
    src = _background_sources()  # (n_src, 3)
    gain = sensors.gain(src, np.full(len(src), BACKGROUND_DEPTH_M))  # (n_ch, n_src)
    gain *= ctx.phys.background_uv / _background_norm()
    if gain.shape[0] < gain.shape[1]:
        # All background sources share one spectrum, so G @ x (x: n_src i.i.d. processes) has the
        # distribution of (U S) @ z, z: n_ch i.i.d. processes (G = U S V^T and V^T x is i.i.d.):
        # a 4-channel sleep montage shapes 4 processes instead of 64.
        u, sv, _ = np.linalg.svd(gain, full_matrices=False)
        gain = u * sv  # (n_ch, n_ch)
    grid = _FftGrid(ctx.n_times, ctx.sfreq)
    response = _aperiodic_response(grid.freqs, ctx.phys.aperiodic_exponent)
    data = np.zeros((len(sensors.ch_names), ctx.n_times), dtype=np.float32)
    for b in range(0, gain.shape[1], BACKGROUND_BATCH):
        block = gain[:, b:b + BACKGROUND_BATCH].astype(np.float32)  # (n_ch, n_batch)
        data += block @ _shaped_noise(ctx.rng, grid, response, block.shape[1])
    return data


def _rhythms(ctx: _RenderContext, sensors: _SensorArray,
             envelopes: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    names = list(RHYTHMS)
    grid = _FftGrid(ctx.n_times, ctx.sfreq)
    bands = [ctx.phys.bands[RHYTHMS[n].band] for n in names]
    response = np.stack([np.exp(-0.5 * ((grid.freqs - b.peak_hz) / RHYTHMS[n].bandwidth_hz) ** 2)
                         for n, b in zip(names, bands)])  # (n_rhythms, n_freqs)
    waves = _shaped_noise(ctx.rng, grid, response, len(names))  # (n_rhythms, n_times)
    slow = _slow_noise(ctx.rng, len(names), ctx.n_times, ctx.sfreq)
    waves *= np.exp(SLOW_MODULATION * slow - SLOW_MODULATION**2)  # mean amplitude gain ~1
    for i, (name, band) in enumerate(zip(names, bands)):
        waves[i] *= band.amplitude_uv * envelopes.get(name, RHYTHMS[name].baseline)
    gain = np.concatenate([_site_gain(ctx.phys, sensors, RHYTHMS[n].site) for n in names], axis=1)
    return gain, waves  # (n_ch, n_rhythms), (n_rhythms, n_times)


def _blinks(ctx: _RenderContext, sensors: _SensorArray) -> tuple[np.ndarray, np.ndarray]:
    """Blinks: ~0.4 s positive waves, largest at Fp1/Fp2, from both eyes; (n_ch, 1), (1, n_times)."""
    onsets = ctx.latents.blink_onsets
    amps = ctx.phys.blink_uv * ctx.rng.lognormal(0.0, 0.2, len(onsets))
    t = np.arange(int(0.6 * ctx.sfreq)) / ctx.sfreq
    shape = (t / 0.12) ** 3 * np.exp(3 * (1 - t / 0.12))  # gamma-like, peak 1 at 120 ms
    wave = scipy.signal.oaconvolve(_impulses(ctx.n_times, ctx.sfreq, onsets, amps), shape)[: ctx.n_times]
    eyes = np.array([_template_positions()[n] + EYE_OFFSET_M for n in ("Fp1", "Fp2")])  # (2, 3)
    ref = np.full(2, np.linalg.norm(EYE_OFFSET_M))
    gain = sensors.gain(eyes, ref, BLINK_DECAY_POWER).mean(1, keepdims=True)  # (n_ch, 1)
    return gain, wave[None, :]


# ------------------------------------------------------------------------------ sensor artefacts
@dataclass(frozen=True)
class _Cap:
    """One subject's cap in one session: per-channel gain, noise level and line pickup."""

    gain: np.ndarray  # (n_ch,)
    noise_uv: np.ndarray  # (n_ch,)
    line_uv: np.ndarray  # (n_ch,)
    line_phase: np.ndarray  # (n_ch,)


def _cap(cfg: SyntheticConfig, phys: SubjectPhysiology, subject: int, session: int, n_ch: int) -> _Cap:
    rng = _rng(cfg.seed, _Stream.SENSORS, subject, session)
    return _Cap(gain=np.clip(rng.normal(1.0, 0.08, n_ch), 0.7, 1.3),
                noise_uv=phys.sensor_noise_uv * rng.uniform(0.7, 1.5, n_ch),
                line_uv=phys.line_uv * rng.lognormal(0.0, 0.5, n_ch),
                line_phase=rng.uniform(0.0, 2 * np.pi, n_ch))


LINE_HARMONICS = ((1, 1.0), (3, 0.2))  # mains pickup is mostly the fundamental and odd harmonics
NOISY_CHANNEL_UV = 80.0  # broadband noise of a channel with a loose electrode


def bad_channels(cfg: SyntheticConfig, subject: int, session: int = 0, run: int = 0) -> dict[str, str]:
    """Ground truth: channel name -> "flat" or "noisy" for the run (usually empty)."""
    _check_recording(cfg, subject, session, run)
    rng = _rng(cfg.seed, _Stream.BAD, subject, session, run)
    names = cfg.ch_names()
    draw, idx, flat = rng.random(), int(rng.integers(len(names))), rng.random() < 0.5
    if not cfg.artifacts or draw >= cfg.bad_channel_prob:
        return {}
    return {names[idx]: "flat" if flat else "noisy"}


def _sensor_effects(cfg: SyntheticConfig, data: np.ndarray, cap: _Cap, bads: dict[str, str],
                    ch_names: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    """Gains, white noise, line noise, then bad channels; in place on (n_ch, n_times) float32 µV."""
    data *= cap.gain[:, None].astype(np.float32)
    noise = rng.standard_normal(data.shape, dtype=np.float32)
    noise *= cap.noise_uv[:, None].astype(np.float32)
    data += noise
    if cfg.artifacts:
        amps, basis = _line_noise(cfg, cap, data.shape[1])
        data += amps @ basis  # (n_ch, 2 n_harmonics) @ (2 n_harmonics, n_times)
    for name, kind in bads.items():
        i = list(ch_names).index(name)
        if kind == "flat":  # a disconnected electrode: amplifier noise only
            data[i] = 0.05 * rng.standard_normal(data.shape[1])
        else:
            data[i] += NOISY_CHANNEL_UV * rng.standard_normal(data.shape[1])
    return data


def _line_noise(cfg: SyntheticConfig, cap: _Cap, n_times: int) -> tuple[np.ndarray, np.ndarray]:
    """Mains pickup as amplitudes (n_ch, 2h) and sin/cos basis (2h, n_times), float32.

    a sin(wt + phi) = a cos(phi) sin(wt) + a sin(phi) cos(wt): one matrix product for all channels.
    """
    t = np.arange(n_times) / cfg.sfreq
    amps, basis = [np.zeros((len(cap.gain), 0))], [np.zeros((0, n_times))]
    for h, rel in LINE_HARMONICS:
        if 0 < h * cfg.line_freq < cfg.sfreq / 2:
            a, phi = rel * math.sqrt(2) * cap.line_uv, h * cap.line_phase
            amps.append(np.c_[a * np.cos(phi), a * np.sin(phi)])
            omega_t = 2 * np.pi * h * cfg.line_freq * t
            basis.append(np.stack([np.sin(omega_t), np.cos(omega_t)]))
    return (np.concatenate(amps, axis=1).astype(np.float32),
            np.concatenate(basis, axis=0).astype(np.float32))


# ------------------------------------------------------------------------------------ public API
def generate_raw(cfg: SyntheticConfig, subject: int, session: int = 0, run: int = 0) -> mne.io.RawArray:
    """One recording: deterministic in ``(cfg, subject, session, run)``; ``subject`` is 0-based.

    Annotations are the trials (description = class name, duration = trial length). Data are in
    volts (EEG) or tesla, tesla/metre (MEG). Bad channels are not marked in ``info["bads"]``
    (a pipeline must find them); the ground truth is in ``info["description"]`` (JSON) and
    :func:`bad_channels`.
    """
    latents = trial_latents(cfg, subject, session, run)
    phys = subject_physiology(cfg.seed, subject)
    key = _montage_key(cfg.montage)
    sensors = _sensor_array(key)
    n_times = int(round(latents.duration_s * cfg.sfreq))
    ctx = _RenderContext(cfg, phys, latents, n_times, _rng(cfg.seed, _Stream.RENDER, subject, session, run))
    data = _brain_signal(ctx, sensors)  # (n_ch, n_times) µV-equivalent
    bads = bad_channels(cfg, subject, session, run)
    cap = _cap(cfg, phys, subject, session, len(sensors.ch_names))
    noise_rng = _rng(cfg.seed, _Stream.NOISE, subject, session, run)
    data = _sensor_effects(cfg, data, cap, bads, sensors.ch_names, noise_rng)
    data = np.multiply(data, sensors.unit[:, None], dtype=np.float64)  # -> V, T, T/m
    return _to_raw(cfg, data, _info_template(key, float(cfg.sfreq)).copy(), latents, bads)


def _to_raw(cfg: SyntheticConfig, data: np.ndarray, info: mne.Info, latents: RunLatents,
            bads: dict[str, str]) -> mne.io.RawArray:
    s, se, r = latents.subject, latents.session, latents.run
    info["line_freq"] = cfg.line_freq or None
    info["description"] = json.dumps({
        "generator": "neurofm.pipelines.synthetic", "paradigm": cfg.paradigm, "seed": cfg.seed,
        "subject": f"{s + 1:02d}", "session": se, "run": r, "effect_size": cfg.effect_size,
        "bad_channels": bads})
    info["subject_info"] = {"id": s + 1, "his_id": f"sub-{s + 1:02d}"}
    raw = mne.io.RawArray(data, info, verbose=False)
    # A fixed, fake acquisition date: one week per subject, one day per session, one hour per run.
    start = datetime(2020, 1, 6, 9, tzinfo=timezone.utc) + timedelta(weeks=s, days=se, hours=r)
    raw.set_meas_date(start)
    raw.set_annotations(mne.Annotations(latents.onsets, latents.durations, latents.labels,
                                        orig_time=start))
    return raw


@dataclass
class OracleResult:
    """Decoding the generating features: the ceiling a benchmark on this config can reach."""

    balanced_accuracy: float  # mean over held-out subjects
    chance: float  # 1 / n_classes: balanced accuracy of any constant guess
    per_subject: dict[int, float]
    n_trials: int
    feature_names: tuple[str, ...]
    classifier: str = "standardize + shrinkage LDA (uniform priors), leave-one-subject-out"
    metric: ClassVar[str] = "balanced_accuracy"  # what ``per_subject`` holds (the task's primary metric)


@dataclass
class RegressionOracleResult:
    """Regressing the target on the features it generates (regression paradigms): the R² ceiling."""

    r2: float  # mean over held-out subjects (the harness scores R² per test subject, then averages)
    pearson: float  # mean over held-out subjects
    per_subject: dict[int, float]  # R²
    per_subject_pearson: dict[int, float]
    n_trials: int
    feature_names: tuple[str, ...]  # the predictors (every generating feature but the target)
    target: str
    regressor: str = ("standardize → cubic polynomial features → standardize → ridge (leave-one-out penalty), "
                      "leave-one-subject-out")
    metric: ClassVar[str] = "r2"


def oracle_score(cfg: SyntheticConfig, subjects: list[int] | None = None) -> OracleResult | RegressionOracleResult:
    """Leave-one-subject-out decoding of the true per-trial latents: balanced accuracy of LDA
    (classification paradigms), or R² of a cubic ridge regression of the target (regression paradigms)."""
    subjects = cfg.subjects() if subjects is None else list(subjects)
    if len(subjects) < 2:
        raise ValueError(f"subjects={subjects}: leave-one-subject-out needs at least 2 subjects")
    runs = [trial_latents(cfg, s, se, r) for s in subjects
            for se in range(cfg.n_sessions) for r in range(cfg.n_runs)]
    if PARADIGMS[cfg.paradigm].target is not None:
        return _regression_oracle(runs, subjects)
    classes = cfg.classes()
    x = np.concatenate([lat.features for lat in runs])  # (n_trials, n_features)
    y = np.concatenate([lat.y(classes) for lat in runs])  # (n_trials,)
    groups = np.concatenate([np.full(len(lat.labels), lat.subject) for lat in runs])
    scores = {s: _fold_score(x, y, groups == s, len(classes)) for s in subjects}
    return OracleResult(float(np.mean(list(scores.values()))), 1.0 / len(classes), scores, len(y),
                        runs[0].feature_names)


def _fold_score(x: np.ndarray, y: np.ndarray, test: np.ndarray, n_classes: int) -> float:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    informative = x[~test].std(0) > 1e-12  # drop constant features (blink counts without blinks)
    if not informative.any():
        return 1.0 / n_classes
    uniform = np.full(n_classes, 1 / n_classes)  # priors for balanced accuracy (ERP is 1:5)
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto", priors=uniform)
    model = make_pipeline(StandardScaler(), lda).fit(x[~test][:, informative], y[~test])
    return float(balanced_accuracy_score(y[test], model.predict(x[test][:, informative])))


ORACLE_DEGREE = 3  # drowsiness → log alpha saturates at d = 0.6 and log theta grows as d²: the inverse is curved


def _regression_oracle(runs: list[RunLatents], subjects: list[int]) -> RegressionOracleResult:
    """Regress each trial's target on the run's other generating features (not the target itself)."""
    target = runs[0].target_name
    column = runs[0].feature_names.index(target)
    features = np.concatenate([lat.features for lat in runs])  # (n_trials, n_features)
    x, y = np.delete(features, column, axis=1), features[:, column]  # (n_trials, n_features - 1), (n_trials,)
    groups = np.concatenate([np.full(len(lat.labels), lat.subject) for lat in runs])
    folds = {s: _regression_fold(x, y, groups == s) for s in subjects}  # subject -> (R², Pearson)
    r2, pearson = ({s: v[i] for s, v in folds.items()} for i in (0, 1))
    return RegressionOracleResult(float(np.mean(list(r2.values()))), float(np.nanmean(list(pearson.values()))),
                                  r2, pearson, len(y), tuple(np.delete(runs[0].feature_names, column)), target)


def _regression_fold(x: np.ndarray, y: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    informative = x[~test].std(0) > 1e-12  # drop constant features (blink counts without blinks)
    if not informative.any():  # nothing to regress on: predict the training mean
        predicted = np.full(int(test.sum()), y[~test].mean())
    else:
        model = make_pipeline(StandardScaler(), PolynomialFeatures(ORACLE_DEGREE), StandardScaler(),
                              RidgeCV(alphas=np.logspace(-3, 3, 13)))
        predicted = model.fit(x[~test][:, informative], y[~test]).predict(x[test][:, informative])
    pearson = np.corrcoef(predicted, y[test])[0, 1] if predicted.std() > 0 and y[test].std() > 0 else np.nan
    return float(r2_score(y[test], predicted)), float(pearson)
