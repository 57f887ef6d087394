"""A prepared dataset's labelled windows as arrays, with what identifies them (for the harness).

Downstream datasets are small (BCI: thousands of windows) and have one montage, so the harness
works on ``(N, C, T)`` arrays in memory. ``data_hash`` identifies exactly what was evaluated: the
index's shard checksums and preprocessing hash (results from different data never mix on a
leaderboard).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..pipelines.loader import ShardIndex, iter_samples, load_index


class EvalDataError(ValueError):
    """A prepared dataset that cannot be evaluated as asked (no labels, mixed montages, ...)."""


@dataclass(frozen=True)
class EvalData:
    """Labelled windows of one prepared dataset. Arrays are aligned on the first axis (N windows)."""

    dataset: str
    x: np.ndarray  # (N, C, T) float32, µV
    y: np.ndarray  # (N,) int64 label ids (classification) or float64 targets (regression)
    subject: np.ndarray  # (N,) str
    session: np.ndarray  # (N,) str
    run: np.ndarray  # (N,) str, the recording's run within its session (index.json / window metadata "run")
    key: np.ndarray  # (N,) str, the shard keys
    classes: tuple[str, ...]
    ch_names: tuple[str, ...]
    pos: np.ndarray  # (C, 3) metres, NaN unknown
    sfreq: float
    data_hash: str  # sha256 over the index's preprocessing hash and shard checksums
    index_path: str
    task: str = "classification"  # "regression" (classes is () then) or "seizure" (index.json "task"; tasks.py)
    onset: np.ndarray | None = None  # (N,) float s, each window's start in its recording (window .json "onset")

    @property
    def subjects(self) -> list[str]:
        return sorted(set(self.subject.tolist()), key=natural_key)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def take(self, idx: np.ndarray) -> EvalData:
        """The windows ``idx`` (a copy of the arrays)."""
        return replace(self, x=self.x[idx], y=self.y[idx], subject=self.subject[idx], session=self.session[idx],
                       run=self.run[idx], key=self.key[idx], onset=None if self.onset is None else self.onset[idx])

    @property
    def recording(self) -> np.ndarray:
        """(N,) str, the recording of each window (subject, session and run identify it)."""
        return np.array([f"{a}/{b}/{c}" for a, b, c in zip(self.subject, self.session, self.run)], dtype=str)

    @property
    def window_s(self) -> float:
        return self.x.shape[-1] / self.sfreq

    def __len__(self) -> int:
        return len(self.y)


def natural_key(s: str) -> tuple:
    """Sort key for subject, session and run ids: numbers by value ("2" before "10"), then names."""
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def index_hash(index: ShardIndex) -> str:
    payload = {"preproc_hash": index.preproc_hash, "shards": sorted((s.sha256, s.n_samples) for s in index.shards)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def load_eval_data(index_path: str | Path, classes: Sequence[str] | None = None) -> EvalData:
    """Every labelled window of a prepared dataset (unlabelled ones are skipped); one montage required.

    ``classes``: keep only the windows of these classes, relabelled 0..len(classes)-1 in this order
    (as MOABB paradigms pick events: left vs right hand out of a four-class set). The selection is
    part of the dataset's name (``physionet_s001_imagery[both_fists+feet]``), so its results never
    mix with those of the full class set.
    """
    index = load_index(index_path)
    task = index.raw.get("task", "classification")
    all_classes = tuple(index.raw.get("classes") or ())
    if task == "regression":
        if classes is not None:
            raise EvalDataError(f"{index.path}: a regression dataset (continuous targets) has no classes to "
                                f"select; got classes={list(classes)}")
        target_of = _window_target
    elif not all_classes:
        raise EvalDataError(f"{index.path}: the dataset has no classes (a pretraining set?); "
                            "the harness needs labelled windows")
    else:
        keep = _class_map(all_classes, classes, index.path)  # label id in the index -> label id here
        target_of = lambda s: keep.get(s.label)  # noqa: E731 - None: unlabelled (-1) or a class not selected
    xs, ys, subjects, sessions, runs, keys, onsets = [], [], [], [], [], [], []
    ch_names, pos = None, None
    for s in iter_samples(index):
        y = target_of(s)
        if y is None:
            continue
        if ch_names is None:
            ch_names, pos = tuple(s.ch_names), s.pos
        elif tuple(s.ch_names) != ch_names:
            raise EvalDataError(f"{index.path}: window {s.key} has channels {s.ch_names[:4]}... unlike the first "
                                f"window's {list(ch_names[:4])}...; evaluate one montage at a time (select its "
                                "subjects) or re-prepare with a fixed channel list")
        xs.append(s.x)
        ys.append(y)
        subjects.append(s.subject)
        sessions.append(str(s.meta.get("session", "0")))
        runs.append(str(s.meta.get("run", "0")))  # prepare writes "run" into every window's .json
        keys.append(s.key)
        onsets.append(float(s.meta.get("onset", np.nan)))
    if not xs:
        what = "windows with a target" if task == "regression" else "labelled windows"
        raise EvalDataError(f"{index.path}: no {what}" + (f" of classes {list(classes)}" if classes else ""))
    dataset = index.dataset if classes is None else f"{index.dataset}[{'+'.join(classes)}]"
    regression = task == "regression"
    return EvalData(dataset=dataset, x=np.stack(xs), y=np.asarray(ys, np.float64 if regression else np.int64),
                    subject=np.asarray(subjects), session=np.asarray(sessions), run=np.asarray(runs),
                    key=np.asarray(keys), classes=() if regression else tuple(classes or all_classes),
                    ch_names=ch_names, pos=pos, sfreq=index.sfreq, data_hash=index_hash(index),
                    index_path=str(index.path), task=task, onset=np.asarray(onsets))


def _window_target(sample) -> float | None:
    """A regression window's target from its .json (``target``; None or NaN: no target, skipped)."""
    value = sample.meta.get("target")
    return float(value) if value is not None and np.isfinite(value) else None


def _class_map(all_classes: tuple[str, ...], classes: Sequence[str] | None, where: Path) -> dict[int, int]:
    if classes is None:
        return {i: i for i in range(len(all_classes))}
    unknown = [c for c in classes if c not in all_classes]
    if unknown or len(set(classes)) != len(classes) or len(classes) < 2:
        raise EvalDataError(f"{where}: classes {list(classes)} must be >= 2 distinct classes of the dataset's "
                            f"{list(all_classes)}" + (f" (unknown: {unknown})" if unknown else ""))
    return {all_classes.index(c): i for i, c in enumerate(classes)}
