"""Tiny prepared datasets in the ``neurofm-shards/1`` format (docs/shard-format.md), for tests.

Written with plain ``webdataset.TarWriter`` so loader tests do not depend on ``neurofm prepare``::

    index = make_dataset(tmp_path / "mi")           # 3 subjects with 8, 12 and 5 channels
    x = expected_window(DEFAULT_RECORDINGS[0], 3)   # what window 3 of subject "01" holds
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import webdataset as wds

FORMAT = "neurofm-shards/1"
CLASSES = ["left_hand", "right_hand"]
NAMES = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8", "T7", "T8", "P7", "P8"]
# Names that are not 10-05 labels get null positions in real shards ("X1" aux inputs).
UNKNOWN_NAMES = ["X1", "X2"]


@dataclass(frozen=True)
class RecordingSpec:
    """One synthetic recording; channel ``i`` is ``NAMES[i]``, then ``UNKNOWN_NAMES`` appended."""

    subject: str
    n_chans: int
    n_windows: int = 20
    session: str = "0"
    run: str = "1"
    labelled: bool = True
    bad_channels: tuple[str, ...] = ()
    n_unknown: int = 0  # of the n_chans, how many have no position (the last ones)

    @property
    def ch_names(self) -> list[str]:
        n_known = self.n_chans - self.n_unknown
        return NAMES[:n_known] + UNKNOWN_NAMES[: self.n_unknown]


# Mixed montages: 8, 12 and 5 channels; one bad channel, one unplaced channel, one unlabelled subject.
DEFAULT_RECORDINGS = (
    RecordingSpec("01", 8, bad_channels=("C3",)),
    RecordingSpec("02", 12, n_unknown=1),
    RecordingSpec("03", 5, labelled=False),
)


def sanitize(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", part)


def recording_id(dataset: str, spec: RecordingSpec) -> str:
    return "_".join(sanitize(p) for p in (dataset, spec.subject, spec.session, spec.run))


def sample_key(dataset: str, spec: RecordingSpec, window: int) -> str:
    parts = "/".join(sanitize(p) for p in (dataset, spec.subject, spec.session, spec.run))
    return f"{parts}/{window:06d}"


def expected_window(spec: RecordingSpec, window: int, n_times: int = 64) -> np.ndarray:
    """The (n_chans, n_times) float32 array stored for ``window`` of ``spec``."""
    seed = [int(sanitize(spec.subject).encode().hex(), 16) % 2**32, int(spec.session), int(spec.run), window]
    return np.random.default_rng(seed).standard_normal((spec.n_chans, n_times)).astype(np.float32)


WindowFn = Callable[[RecordingSpec, int, int], np.ndarray]


def expected_pos(spec: RecordingSpec) -> list[list[float | None]]:
    """Positions in metres: deterministic per name, null for unplaced channels."""
    pos: list[list[float | None]] = []
    for name in spec.ch_names:
        if name in UNKNOWN_NAMES:
            pos.append([None, None, None])
        else:
            i = NAMES.index(name)
            pos.append([0.01 * (i + 1), -0.02 * i, 0.05])
    return pos


def _label(spec: RecordingSpec, window: int) -> tuple[str | None, int | None]:
    if not spec.labelled:
        return None, None
    return CLASSES[window % 2], window % 2


def _write_recording(root: Path, dataset: str, spec: RecordingSpec, sfreq: float, n_times: int,
                     shard_size: int, window_fn: WindowFn) -> list[dict]:
    rec = recording_id(dataset, spec)
    entries = []
    for shard_no, start in enumerate(range(0, spec.n_windows, shard_size)):
        rel = f"shards/{rec}-{shard_no:06d}.tar"
        windows = range(start, min(start + shard_size, spec.n_windows))
        with wds.TarWriter(str(root / rel)) as sink:
            for w in windows:
                label, label_id = _label(spec, w)
                meta = {"dataset": dataset, "subject": spec.subject, "session": spec.session,
                        "run": spec.run, "window": w, "ch_names": spec.ch_names,
                        "ch_types": ["eeg"] * spec.n_chans, "ch_pos": expected_pos(spec),
                        "sfreq": sfreq, "n_times": n_times, "onset": w * n_times / sfreq,
                        "label": label, "label_id": label_id,
                        "bad_channels": list(spec.bad_channels), "preproc_hash": "test"}
                sink.write({"__key__": sample_key(dataset, spec, w),
                            "npy": window_fn(spec, w, n_times), "json": meta})
        entries.append({"url": rel, "n_samples": len(windows),
                        "sha256": hashlib.sha256((root / rel).read_bytes()).hexdigest(),
                        "recording": rec, "subject": spec.subject, "session": spec.session,
                        "run": spec.run, "n_chans": spec.n_chans})
    return entries


def make_dataset(
    root: Path,
    recordings: Sequence[RecordingSpec] = DEFAULT_RECORDINGS,
    *,
    dataset: str = "synthetic_mi",
    sfreq: float = 100.0,
    n_times: int = 64,
    shard_size: int = 10,
    window_fn: WindowFn = expected_window,
) -> Path:
    """Write shards and ``index.json`` under ``root``; returns the index path.

    ``window_fn(spec, window, n_times)`` gives each window's (n_chans, n_times) float32 signal
    (default: independent standard normal samples, ``expected_window``)."""
    root = Path(root)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    shards = [e for spec in recordings
              for e in _write_recording(root, dataset, spec, sfreq, n_times, shard_size, window_fn)]
    channel_sets: dict[tuple[str, ...], int] = {}
    for spec in recordings:
        channel_sets[tuple(spec.ch_names)] = channel_sets.get(tuple(spec.ch_names), 0) + 1
    index = {
        "format": FORMAT, "dataset": dataset, "paradigm": "motor_imagery",
        "manifest_sha256": "0" * 64, "preproc_hash": "test", "preproc": {},
        "classes": CLASSES, "sfreq": sfreq, "n_samples": sum(e["n_samples"] for e in shards),
        "subjects": sorted({spec.subject for spec in recordings}),
        "channel_sets": [{"ch_names": list(k), "n_recordings": n} for k, n in channel_sets.items()],
        "shards": shards, "part": None,
    }
    path = root / "index.json"
    path.write_text(json.dumps(index, indent=1))
    return path


# 3 subjects × 2 runs × 2 classes × 3 trials of 2 s synthetic motor imagery (a few seconds to prepare).
TINY_MI_MANIFEST = {
    "name": "tiny_mi",
    "paradigm": "motor_imagery",
    "source": {"kind": "synthetic", "generator": {
        "paradigm": "motor_imagery", "n_subjects": 3, "n_runs": 2, "trials_per_class": 3,
        "montage": "eeg22", "sfreq": 128.0, "seed": 3, "mi_classes": ["left_hand", "right_hand"]}},
    "labels": {"left_hand": "left_hand", "right_hand": "right_hand"},
    "windows": {"mode": "events", "length_s": 2.0},
    "license": "BSD-3-Clause", "citation": "synthetic", "url": "none",
}
