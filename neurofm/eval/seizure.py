"""Event-based seizure scoring in the SzCORE style (Dan et al., 2024, "SzCORE"; the ``timescoring`` package).

Predicted and annotated seizures are events ``(onset_s, offset_s)``. Before matching, predicted
events closer than ``min_gap_s`` are merged and longer than ``max_duration_s`` are split. A
reference event counts as detected when a predicted event overlaps it once the reference is
extended by ``onset_tolerance_s`` before its onset and ``offset_tolerance_s`` after its offset; a
predicted event that overlaps no extended reference event is a false positive. Defaults are SzCORE's:
30 s before, 60 s after, merge below 90 s, split above 5 min.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Event = tuple[float, float]


@dataclass(frozen=True)
class SeizureScore:
    sensitivity: float  # detected reference events / reference events
    precision: float  # true predicted events / predicted events
    f1: float
    fp_per_24h: float  # false predicted events per 24 h of recording
    n_reference: int
    n_predicted: int

    def as_metrics(self) -> dict[str, float]:
        return {"sz_sensitivity": self.sensitivity, "sz_precision": self.precision, "sz_f1": self.f1,
                "sz_fp_per_24h": self.fp_per_24h}


def merge_and_split(events: list[Event], min_gap_s: float = 90.0, max_duration_s: float = 300.0) -> list[Event]:
    merged: list[list[float]] = []
    for onset, offset in sorted(events):
        if offset < onset:
            raise ValueError(f"event ({onset}, {offset}) ends before it starts")
        if merged and onset - merged[-1][1] < min_gap_s:
            merged[-1][1] = max(merged[-1][1], offset)
        else:
            merged.append([onset, offset])
    out: list[Event] = []
    for onset, offset in merged:
        while offset - onset > max_duration_s:
            out.append((onset, onset + max_duration_s))
            onset += max_duration_s
        out.append((onset, offset))
    return out


def events_from_mask(mask: np.ndarray, step_s: float) -> list[Event]:
    """Consecutive positive windows (one every ``step_s`` seconds, each ``step_s`` long) → events."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(int)))
    return [(float(a * step_s), float(b * step_s)) for a, b in zip(edges[::2], edges[1::2])]


def score_events(reference: list[Event], predicted: list[Event], duration_s: float, *,
                 onset_tolerance_s: float = 30.0, offset_tolerance_s: float = 60.0, min_gap_s: float = 90.0,
                 max_duration_s: float = 300.0) -> SeizureScore:
    predicted = merge_and_split(predicted, min_gap_s, max_duration_s)
    extended = [(on - onset_tolerance_s, off + offset_tolerance_s) for on, off in reference]

    def overlaps(a: Event, b: Event) -> bool:
        return a[0] < b[1] and b[0] < a[1]

    detected = sum(any(overlaps(ref, p) for p in predicted) for ref in extended)
    true_pred = sum(any(overlaps(ref, p) for ref in extended) for p in predicted)
    sens = detected / len(reference) if reference else float("nan")
    prec = true_pred / len(predicted) if predicted else float("nan")
    if not reference:
        f1 = float("nan")  # nothing to detect: F1 is undefined (false positives still count)
    else:
        f1 = 2 * sens * prec / (sens + prec) if predicted and sens + prec > 0 else 0.0
    return SeizureScore(sens, prec, f1, (len(predicted) - true_pred) / duration_s * 86400.0, len(reference),
                        len(predicted))
