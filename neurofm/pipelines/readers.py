"""File readers: one recording file on disk → an MNE Raw, plus continuous targets when the release has them.

``source.reader`` in a files manifest picks the entry of ``READERS``: ``mne`` (the default) is
``mne.io.read_raw`` for every format MNE reads (EDF, BDF, FIF, BrainVision, EEGLAB, ...);
``seed_vig`` reads SEED-VIG's MATLAB ``Raw_Data/<name>.mat`` and its ``perclos_labels/<name>.mat``.
Every reader raises an error naming the file (and the variable or field) it could not use.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import mne
import numpy as np

from . import events as ev


@dataclass
class Recording:
    """What a reader returns: the signal, and the regression targets when the file set has them."""

    raw: mne.io.BaseRaw
    targets: ev.Targets | None = None


# ---------------------------------------------------------------- mne
_TRUNCATED = ("does not match the file size", "file is truncated", "truncated")


def read_mne(path: Path, read_kwargs: dict[str, Any]) -> Recording:
    """``mne.io.read_raw`` that refuses empty and truncated files instead of guessing their length."""
    if path.stat().st_size == 0:
        raise ValueError("file is empty (0 bytes)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = mne.io.read_raw(path, preload=True, verbose="warning", **read_kwargs)
    if not raw.ch_names or raw.n_times == 0:  # e.g. a Sleep-EDF hypnogram
        raise ValueError(f"the file holds no signal ({len(raw.ch_names)} channels, {raw.n_times} samples): "
                         "annotations only?")
    for w in caught:
        if any(t in str(w.message) for t in _TRUNCATED):
            raise ValueError(f"truncated file: {w.message}")
    return Recording(raw)


# ---------------------------------------------------------------- MATLAB helpers
def load_mat(path: Path) -> dict[str, Any]:
    """A MATLAB v5 file as plain Python values (structs → dicts, cell arrays → lists)."""
    from scipy.io import loadmat

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return loadmat(path, simplify_cells=True)
    except NotImplementedError as err:  # scipy's answer to an HDF5-based v7.3 file
        raise ValueError(f"{path}: MATLAB v7.3 (HDF5) files are not read here ({err})") from None
    except (ValueError, TypeError, OSError) as err:
        raise ValueError(f"{path}: not a readable MATLAB file ({err})") from None


def mat_variable(mat: dict[str, Any], name: str, path: Path) -> Any:
    if name not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise KeyError(f"{path}: no variable {name!r} (variables: {found})")
    return mat[name]


def struct_field(struct: Any, name: str, where: str) -> Any:
    """Field ``name`` of a MATLAB struct loaded with ``simplify_cells`` (a dict)."""
    if not isinstance(struct, dict):
        raise TypeError(f"{where} is not a struct (got {type(struct).__name__})")
    if name not in struct:
        raise KeyError(f"{where} has no field {name!r} (fields: {sorted(struct)})")
    return struct[name]


# ---------------------------------------------------------------- SEED-VIG
# The release gives one PERCLOS value per consecutive 8 s of each experiment (885 per ~2 h drive;
# Zheng & Lu 2017, doi:10.1088/1741-2552/aa5a98).
PERCLOS_WINDOW_S = 8.0
PERCLOS_DIR = "perclos_labels"  # beside Raw_Data/, one file of the same name per experiment
MICROVOLT = 1e-6  # SEED-VIG stores µV; MNE holds EEG in V


def _channels_by_samples(data: Any, n_chans: int, where: str) -> np.ndarray:
    """``EEG.data`` as (C, T) float; the release stores (T, C), a transposed copy is accepted."""
    x = np.asarray(data, dtype=float)
    if x.ndim != 2 or n_chans not in x.shape:
        raise ValueError(f"{where}: shape {x.shape} is not (samples, {n_chans} channels named in EEG.chn)")
    return x.T if x.shape[1] == n_chans else x  # (C, T)


def _seed_vig_raw(path: Path) -> mne.io.RawArray:
    eeg = mat_variable(load_mat(path), "EEG", path)
    names = [str(c).strip() for c in np.atleast_1d(struct_field(eeg, "chn", f"{path}: EEG"))]
    sfreq = float(struct_field(eeg, "sample_rate", f"{path}: EEG"))
    data = _channels_by_samples(struct_field(eeg, "data", f"{path}: EEG"), len(names), f"{path}: EEG.data")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{path}: EEG.data holds NaN or infinite values")
    info = mne.create_info(names, sfreq, "eeg")
    return mne.io.RawArray(data * MICROVOLT, info, verbose="error")


def _perclos_targets(path: Path, duration_s: float) -> ev.Targets:
    """One target span of ``PERCLOS_WINDOW_S`` per PERCLOS value, from the recording's first sample."""
    value = np.asarray(mat_variable(load_mat(path), "perclos", path), dtype=float).ravel()
    n_expected = int(round(duration_s / PERCLOS_WINDOW_S))
    if len(value) != n_expected:
        raise ValueError(f"{path}: perclos has {len(value)} values, but the {duration_s:.1f} s recording holds "
                         f"{n_expected} windows of {PERCLOS_WINDOW_S:g} s")
    bad = np.flatnonzero(~((value >= 0) & (value <= 1)))
    if bad.size:
        raise ValueError(f"{path}: perclos[{bad[0]}] = {value[bad[0]]} is not a proportion in [0, 1] "
                         f"({bad.size} such value(s))")
    onset = np.arange(len(value)) * PERCLOS_WINDOW_S
    return ev.Targets(onset, np.full(len(value), PERCLOS_WINDOW_S), value)


def read_seed_vig(path: Path, read_kwargs: dict[str, Any]) -> Recording:
    """SEED-VIG ``Raw_Data/<name>.mat`` (``EEG.data`` samples × 17 in µV, ``EEG.chn``, ``EEG.sample_rate``)
    with the PERCLOS of ``perclos_labels/<name>.mat`` as targets."""
    if read_kwargs:
        raise ValueError(f"source.read_kwargs {sorted(read_kwargs)}: the seed_vig reader takes none")
    raw = _seed_vig_raw(path)
    labels = path.parent.parent / PERCLOS_DIR / path.name
    if not labels.is_file():
        raise FileNotFoundError(f"{path}: no PERCLOS file {labels}")
    return Recording(raw, _perclos_targets(labels, raw.n_times / raw.info["sfreq"]))


READERS: dict[str, Callable[[Path, dict[str, Any]], Recording]] = {
    "mne": read_mne,
    "seed_vig": read_seed_vig,
}
