"""Event-based seizure scoring in the SzCORE style (Dan et al., 2024, "SzCORE"; the ``timescoring`` package).

Predicted and annotated seizures are events ``(onset_s, offset_s)``. Before matching, predicted
events closer than ``min_gap_s`` are merged and longer than ``max_duration_s`` are split. A
reference event counts as detected when a predicted event overlaps it once the reference is
extended by ``onset_tolerance_s`` before its onset and ``offset_tolerance_s`` after its offset; a
predicted event that overlaps no extended reference event is a false positive. Defaults are SzCORE's:
30 s before, 60 s after, merge below 90 s, split above 5 min.

:func:`score_windows` turns per-window decisions of several recordings into events and scores
them together: counts are summed over the recordings before the ratios are taken (a recording
without seizures adds its false positives and its duration, not an undefined sensitivity).
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
    n_predicted: int  # after merging and splitting
    n_detected: int  # reference events overlapped by a predicted event
    n_false_positive: int  # predicted events overlapping no (extended) reference event
    duration_s: float

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


def score_events(reference: list[Event], predicted: list[Event], duration_s: float, *,
                 onset_tolerance_s: float = 30.0, offset_tolerance_s: float = 60.0, min_gap_s: float = 90.0,
                 max_duration_s: float = 300.0) -> SeizureScore:
    predicted = merge_and_split(predicted, min_gap_s, max_duration_s)
    extended = [(on - onset_tolerance_s, off + offset_tolerance_s) for on, off in reference]

    def overlaps(a: Event, b: Event) -> bool:
        return a[0] < b[1] and b[0] < a[1]

    detected = sum(any(overlaps(ref, p) for p in predicted) for ref in extended)
    true_pred = sum(any(overlaps(ref, p) for ref in extended) for p in predicted)
    return _from_counts(len(reference), len(predicted), detected, len(predicted) - true_pred, duration_s,
                        empty_precision=float("nan"))


def _from_counts(n_reference: int, n_predicted: int, n_detected: int, n_false_positive: int, duration_s: float,
                 empty_precision: float) -> SeizureScore:
    sens = n_detected / n_reference if n_reference else float("nan")
    prec = (n_predicted - n_false_positive) / n_predicted if n_predicted else empty_precision
    if not n_reference:
        f1 = float("nan")  # nothing to detect: F1 is undefined (false positives still count)
    else:
        f1 = 2 * sens * prec / (sens + prec) if n_predicted and sens + prec > 0 else 0.0
    return SeizureScore(sens, prec, f1, n_false_positive / duration_s * 86400.0, n_reference, n_predicted,
                        n_detected, n_false_positive, duration_s)


def events_from_windows(onset: np.ndarray, positive: np.ndarray, length_s: float) -> list[Event]:
    """Windows ``(onset, onset + length_s)`` of one recording marked ``positive`` → events; windows that
    touch or overlap join (a skipped window, e.g. a bad span, splits an event)."""
    order = np.argsort(onset, kind="stable")
    events: list[list[float]] = []
    for t in np.asarray(onset, float)[order][np.asarray(positive, bool)[order]]:
        if events and t <= events[-1][1] + 1e-6:
            events[-1][1] = max(events[-1][1], t + length_s)
        else:
            events.append([t, t + length_s])
    return [(a, b) for a, b in events]


def covered_duration(onset: np.ndarray, length_s: float) -> float:
    """Seconds covered by windows ``(onset, onset + length_s)`` (overlapping windows count once)."""
    return float(sum(b - a for a, b in events_from_windows(onset, np.ones(len(onset), bool), length_s)))


def score_windows(recording: np.ndarray, onset: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray,
                  length_s: float, **tolerances: float) -> SeizureScore:
    """Event scores over several recordings from per-window truth and decisions (N,) each.

    Per recording, consecutive seizure windows of ``y_true`` are the reference events and those of
    ``y_pred`` the predicted ones (:func:`score_events`); the counts are summed over recordings and the
    false positives divided by the total covered duration. A fold with no predicted event has
    precision 0 (as sklearn's ``zero_division=0``), so that a silent model's row stays finite and ranks
    last by F1.
    """
    scores = []
    for rec in dict.fromkeys(np.asarray(recording).tolist()):
        mine = np.asarray(recording) == rec
        t = np.asarray(onset, float)[mine]
        scores.append(score_events(events_from_windows(t, np.asarray(y_true)[mine], length_s),
                                   events_from_windows(t, np.asarray(y_pred)[mine], length_s),
                                   covered_duration(t, length_s), **tolerances))
    return _from_counts(sum(s.n_reference for s in scores), sum(s.n_predicted for s in scores),
                        sum(s.n_detected for s in scores), sum(s.n_false_positive for s in scores),
                        sum(s.duration_s for s in scores), empty_precision=0.0)
