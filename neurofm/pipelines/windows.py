"""Cutting a preprocessed recording into windows: fixed-length (pretraining) or event-locked."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .events import Events


@dataclass(frozen=True)
class Window:
    start: int  # first sample
    onset: float  # seconds from the start of the recording
    label: str | None = None
    target: float | None = None  # regression: the continuous target at the window's middle


def _overlaps(start: float, stop: float, spans: list[tuple[float, float]]) -> bool:
    return any(a < stop and start < a + d for a, d in spans)


def fixed_windows(n_times: int, sfreq: float, length_s: float, stride_s: float | None = None,
                  bad_spans: list[tuple[float, float]] | None = None) -> list[Window]:
    """Non-overlapping (or strided) windows; those touching a ``bad_spans`` (onset, duration) are skipped."""
    n, step = round(length_s * sfreq), round((stride_s or length_s) * sfreq)
    starts = range(0, n_times - n + 1, step)
    spans = bad_spans or []
    return [Window(s, s / sfreq) for s in starts if not _overlaps(s / sfreq, (s + n) / sfreq, spans)]


def event_windows(events: Events, label_map: dict[str, str], sfreq: float, n_times: int,
                  length_s: float, tmin: float = 0.0) -> tuple[list[Window], int]:
    """One window per event whose description is in ``label_map``; returns (windows, n_out_of_range)."""
    n = round(length_s * sfreq)
    out, skipped = [], 0
    for onset, desc in zip(events.onset, events.description):
        if desc not in label_map:
            continue
        start = int(round((onset + tmin) * sfreq))
        if start < 0 or start + n > n_times:
            skipped += 1
            continue
        out.append(Window(start, start / sfreq, label_map[desc]))
    return out, skipped


def bad_spans(events: Events) -> list[tuple[float, float]]:
    """Spans annotated bad (MNE's ``BAD_*``/``EDGE`` convention)."""
    return [(float(o), float(d)) for o, d, s in zip(events.onset, events.duration, events.description)
            if s.upper().startswith(("BAD", "EDGE"))]


def cut(data: np.ndarray, windows: list[Window], n: int) -> np.ndarray:
    """(C, T) → (W, C, n)."""
    return np.stack([data[:, w.start:w.start + n] for w in windows]) if windows else np.zeros((0, data.shape[0], n), data.dtype)
