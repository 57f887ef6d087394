"""A prepared dataset's labelled windows as arrays, with what identifies them (for the harness).

Downstream datasets are small (BCI: thousands of windows) and have one montage, so the harness
works on ``(N, C, T)`` arrays in memory. ``data_hash`` identifies exactly what was evaluated: the
index's shard checksums and preprocessing hash (results from different data never mix on a
leaderboard).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
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
    y: np.ndarray  # (N,) int64 label ids
    subject: np.ndarray  # (N,) str
    session: np.ndarray  # (N,) str
    key: np.ndarray  # (N,) str, the shard keys
    classes: tuple[str, ...]
    ch_names: tuple[str, ...]
    pos: np.ndarray  # (C, 3) metres, NaN unknown
    sfreq: float
    data_hash: str  # sha256 over the index's preprocessing hash and shard checksums
    index_path: str

    @property
    def subjects(self) -> list[str]:
        return sorted(set(self.subject.tolist()), key=_natural)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def take(self, idx: np.ndarray) -> EvalData:
        """The windows ``idx`` (a copy of the arrays)."""
        return EvalData(dataset=self.dataset, x=self.x[idx], y=self.y[idx], subject=self.subject[idx],
                        session=self.session[idx], key=self.key[idx], classes=self.classes,
                        ch_names=self.ch_names, pos=self.pos, sfreq=self.sfreq, data_hash=self.data_hash,
                        index_path=self.index_path)

    def __len__(self) -> int:
        return len(self.y)


def _natural(s: str) -> tuple:
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def index_hash(index: ShardIndex) -> str:
    payload = {"preproc_hash": index.preproc_hash, "shards": sorted((s.sha256, s.n_samples) for s in index.shards)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def load_eval_data(index_path: str | Path) -> EvalData:
    """Every labelled window of a prepared dataset (unlabelled ones are skipped); one montage required."""
    index = load_index(index_path)
    classes = tuple(index.raw.get("classes") or ())
    if not classes:
        raise EvalDataError(f"{index.path}: the dataset has no classes (a pretraining set?); "
                            "the harness needs labelled windows")
    xs, ys, subjects, sessions, keys = [], [], [], [], []
    ch_names, pos = None, None
    for s in iter_samples(index):
        if s.label < 0:
            continue
        if ch_names is None:
            ch_names, pos = tuple(s.ch_names), s.pos
        elif tuple(s.ch_names) != ch_names:
            raise EvalDataError(f"{index.path}: window {s.key} has channels {s.ch_names[:4]}... unlike the first "
                                f"window's {list(ch_names[:4])}...; evaluate one montage at a time (select its "
                                "subjects) or re-prepare with a fixed channel list")
        xs.append(s.x)
        ys.append(s.label)
        subjects.append(s.subject)
        sessions.append(str(s.meta.get("session", "0")))
        keys.append(s.key)
    if not xs:
        raise EvalDataError(f"{index.path}: no labelled windows")
    return EvalData(dataset=index.dataset, x=np.stack(xs), y=np.asarray(ys, np.int64), subject=np.asarray(subjects),
                    session=np.asarray(sessions), key=np.asarray(keys), classes=classes, ch_names=ch_names,
                    pos=pos, sfreq=index.sfreq, data_hash=index_hash(index), index_path=str(index.path))
