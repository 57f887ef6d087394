"""Events of a recording (onset, duration, description), from wherever the format keeps them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import mne
import numpy as np


@dataclass
class Events:
    """Onsets and durations in seconds from the first sample of the recording."""

    onset: np.ndarray = field(default_factory=lambda: np.zeros(0))
    duration: np.ndarray = field(default_factory=lambda: np.zeros(0))
    description: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.description)

    def counts(self) -> dict[str, int]:
        names, n = np.unique(np.asarray(self.description, dtype=str), return_counts=True)
        return {str(a): int(b) for a, b in zip(names, n)}


@dataclass
class Targets:
    """A continuous target over spans of a recording (regression: SEED-VIG's PERCLOS per 8 s).

    Onsets and durations in seconds from the first sample, like :class:`Events`; ``value`` is the
    target over each span (float, NaN where unknown).
    """

    onset: np.ndarray  # (n_spans,)
    duration: np.ndarray  # (n_spans,)
    value: np.ndarray  # (n_spans,)

    def __post_init__(self) -> None:
        if not len(self.onset) == len(self.duration) == len(self.value):
            raise ValueError(f"targets: {len(self.onset)} onsets, {len(self.duration)} durations and "
                             f"{len(self.value)} values differ in length")

    def at(self, t: float) -> float | None:
        """The value of the span covering time ``t`` (s), or None (no span, or NaN)."""
        inside = np.flatnonzero((self.onset <= t) & (t < self.onset + self.duration))
        if not inside.size or not np.isfinite(self.value[inside[0]]):
            return None
        return float(self.value[inside[0]])


def from_annotations(raw: mne.io.BaseRaw, path: Path | None = None) -> Events:
    """The raw's annotations, with onsets made relative to its first sample."""
    ann = raw.annotations
    if len(ann) == 0:
        return Events()
    idx = raw.time_as_index(ann.onset, use_rounding=True, origin=ann.orig_time)
    return Events(idx / raw.info["sfreq"], np.asarray(ann.duration, float), [str(d) for d in ann.description])


def from_wfdb(raw: mne.io.BaseRaw, path: Path | None = None) -> Events:
    """PhysioNet EEGMMIDB keeps events in ``<file>.edf.event`` WFDB annotations (``T1 duration: 4.1``)."""
    import wfdb

    if path is None or not Path(f"{path}.event").is_file():
        raise FileNotFoundError(f"{path}: no WFDB event file {path}.event beside it")
    ann = wfdb.rdann(str(path), "event")
    desc, dur = [], []
    for note in ann.aux_note:
        parts = note.strip().rstrip("\x00").split()
        desc.append(parts[0] if parts else "")
        dur.append(float(parts[-1]) if len(parts) >= 3 and parts[1] == "duration:" else 0.0)
    return Events(np.asarray(ann.sample, float) / float(ann.fs), np.asarray(dur), desc)


def from_stim(raw: mne.io.BaseRaw, event_id: dict[str, int]) -> Events:
    """Events coded on a stim channel (MOABB's convention), named through ``event_id``."""
    if not any(t == "stim" for t in raw.get_channel_types()):
        return Events()
    ev = mne.find_events(raw, shortest_event=0, verbose=False)
    names = {v: k for k, v in event_id.items()}
    keep = [i for i, code in enumerate(ev[:, 2]) if code in names]
    onset = (ev[keep, 0] - raw.first_samp) / raw.info["sfreq"]
    return Events(onset, np.zeros(len(keep)), [names[c] for c in ev[keep, 2]])


def from_chb_summary(raw: mne.io.BaseRaw, path: Path | None = None) -> Events:
    """CHB-MIT: ``seizure`` spans from ``chbNN-summary.txt`` (``chbmit.py``) and ``background`` between them,
    so that every fixed window is labelled by the span covering its middle."""
    from .chbmit import seizure_spans

    if path is None:
        raise ValueError("CHB-MIT seizure times are read beside the recording file: it needs a path")
    duration = raw.n_times / raw.info["sfreq"]
    seizures = sorted(seizure_spans(Path(path), duration))
    edges = [0.0, *(t for span in seizures for t in span), duration]  # background, seizure, background, ...
    spans = [(a, b, "background" if i % 2 == 0 else "seizure") for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]
    spans = [s for s in spans if s[1] > s[0]]  # a seizure at the very start or end leaves no background there
    return Events(np.array([a for a, _, _ in spans]), np.array([b - a for a, b, _ in spans]), [d for _, _, d in spans])


READERS: dict[str, Callable[[mne.io.BaseRaw, Path | None], Events]] = {
    "annotations": from_annotations,
    "wfdb": from_wfdb,
    "chb_summary": from_chb_summary,
    "none": lambda raw, path=None: Events(),
}
