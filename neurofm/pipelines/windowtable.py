"""Window tables: where every window of a local shard lies, so a batch is read with one copy per window.

A shard holds one recording (``shards.py``), so its windows share everything but their key, label
and position in the file. ``prepare`` writes, next to each ``<rec>-000000.tar``, a sidecar
``<rec>-000000.windows.json`` (format ``neurofm-windows/1``, docs/shard-format.md) with:

- the recording's fields once (channel names/types/positions, bad channels, subject, dataset, sfreq);
- the ``.npy`` header that every window shares, and per window its key, ``label_id``, the offset of
  its ``.npy`` member and the offset/length of its ``.json`` member.

The loader then needs no tar header, no JSON and no per-window object beyond a two-slot reference:
a batch is ``B`` slices of the memory-mapped shard copied into one array. The tar stays a plain
WebDataset shard; the sidecar is an accelerator that is checked before use (shard size, and every
window's ``.npy`` header bytes at its offset) and rebuilt from the tar in memory when it is missing,
stale or does not match. A shard whose windows do not share one recording layout gets no table
and is read sample by sample as before.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .tario import grouped_members, is_ustar, map_file, names_local_tar, npy_layout

TABLE_FORMAT = "neurofm-windows/1"
TABLE_SUFFIX = ".windows.json"
_FLOAT32 = np.dtype(np.float32)
_RECORDING_KEYS = ("ch_names", "ch_types", "ch_pos", "bad_channels", "subject", "dataset", "sfreq")


def table_path(shard: str | Path) -> Path:
    """``shards/x-000000.tar`` → ``shards/x-000000.windows.json``."""
    return Path(table_name(str(shard)))


def table_name(shard: str) -> str:
    """:func:`table_path` as a string (a loader asks for every shard's: no ``Path`` objects)."""
    return shard.removesuffix(".tar") + TABLE_SUFFIX


def positions(ch_pos: Any, n_chans: int, where: str) -> np.ndarray:
    """``ch_pos`` from a window's JSON as (n_chans, 3) float32 metres, NaN where unknown."""
    if ch_pos is None:
        return np.full((n_chans, 3), np.nan, dtype=np.float32)
    try:
        pos = np.asarray(ch_pos, dtype=np.float32)  # JSON null -> NaN
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: ch_pos is not a list of [x, y, z] numbers ({err})") from err
    if pos.size == 0:
        pos = pos.reshape(0, 3)
    if pos.shape != (n_chans, 3):
        raise ValueError(f"{where}: ch_pos has shape {pos.shape}, expected ({n_chans}, 3)")
    return pos


def recording_fields(meta: dict[str, Any], n_chans: int, where: str) -> dict[str, Any]:
    """The per-recording fields of a window (validated): the ``Sample`` fields that are not per window."""
    ch_names = list(meta.get("ch_names") or [])
    if len(ch_names) != n_chans:
        raise ValueError(f"{where}: {len(ch_names)} ch_names for {n_chans} channels")
    return dict(
        ch_names=ch_names,
        ch_types=list(meta.get("ch_types") or ["eeg"] * n_chans),
        pos=positions(meta.get("ch_pos"), n_chans, where),
        bad_channels=list(meta.get("bad_channels") or []),
        subject=str(meta.get("subject", "")),
        dataset=str(meta.get("dataset", "")),
        sfreq=float(meta["sfreq"]),
    )


@dataclass(eq=False)
class WindowTable:
    """The windows of one local shard (see the module doc). ``view`` is set once the shard is mapped."""

    url: str
    shard_bytes: int
    n_chans: int
    n_times: int
    npy_prefix: bytes  # the .npy magic + header every window's member starts with
    npy_starts: list[int]  # byte offset of each window's .npy member
    json_spans: list[tuple[int, int]]  # (offset, length) of each window's .json member
    keys: list[str]
    labels: list[int]  # label_id, -1 for unlabelled windows
    recording: dict[str, Any]  # the raw per-recording JSON values (_RECORDING_KEYS)
    fields: dict[str, Any] = field(init=False)  # `recording_fields` of them
    view: memoryview | None = field(default=None, repr=False)
    _flat: list[np.ndarray] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.fields = recording_fields(self.recording, self.n_chans, f"window table of {self.url}")
        pos = self.fields["pos"]
        known = np.isfinite(pos).all(axis=1)  # (C,)
        bad = set(self.fields["bad_channels"])
        good = np.array([n not in bad for n in self.fields["ch_names"]], dtype=bool)  # (C,)
        # (C, 6): x, y, z (0 where unknown), 1 (a real channel, not padding), good, position known;
        # a batch gathers these rows per window in one call
        self.channel_rows = np.concatenate([np.where(known[:, None], pos, 0.0), np.ones((self.n_chans, 1)),
                                            good[:, None], known[:, None]], axis=1, dtype=np.float32)
        self.data_offsets = [s + len(self.npy_prefix) for s in self.npy_starts]
        self.subject, self.dataset = self.fields["subject"], self.fields["dataset"]
        self.sfreq = self.fields["sfreq"]

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def npy_size(self) -> int:
        return len(self.npy_prefix) + self.n_chans * self.n_times * _FLOAT32.itemsize

    def data(self, i: int) -> np.ndarray:
        """Window ``i`` as a read-only (n_chans, n_times) view of the mapped shard (no copy)."""
        return self.flat_windows()[i].reshape(self.n_chans, self.n_times)

    def flat_windows(self) -> list[np.ndarray]:
        """Every window as a read-only (n_chans * n_times,) view of the mapped shard, made once
        (a batch then copies each window without a ``frombuffer`` call: ~0.5 µs a window)."""
        if self._flat is None:
            count = self.n_chans * self.n_times
            self._flat = [np.frombuffer(self.view, _FLOAT32, count, offset) for offset in self.data_offsets]
        return self._flat

    def to_json(self, shard_sha256: str | None = None) -> dict[str, Any]:
        return {"format": TABLE_FORMAT, "shard_bytes": self.shard_bytes, "shard_sha256": shard_sha256,
                "n_chans": self.n_chans, "n_times": self.n_times,
                "npy_prefix": self.npy_prefix.decode("latin1"), "recording": self.recording,
                "windows": {"key": self.keys, "label_id": self.labels, "npy": self.npy_starts,
                            "json": [list(s) for s in self.json_spans]}}

    @classmethod
    def from_json(cls, obj: dict[str, Any], url: str) -> WindowTable:
        if obj.get("format") != TABLE_FORMAT:
            raise ValueError(f"format {obj.get('format')!r}, expected {TABLE_FORMAT!r}")
        w = obj["windows"]
        if not len(w["key"]) == len(w["label_id"]) == len(w["npy"]) == len(w["json"]):
            raise ValueError("per-window lists of different lengths")
        return cls(url=url, shard_bytes=int(obj["shard_bytes"]), n_chans=int(obj["n_chans"]),
                   n_times=int(obj["n_times"]), npy_prefix=obj["npy_prefix"].encode("latin1"),
                   npy_starts=[int(s) for s in w["npy"]], json_spans=[(int(a), int(b)) for a, b in w["json"]],
                   keys=[str(k) for k in w["key"]], labels=[int(v) for v in w["label_id"]],
                   recording={k: obj["recording"].get(k) for k in _RECORDING_KEYS})

    def mismatch(self, view: memoryview) -> str | None:
        """Why this table does not describe the shard in ``view``; None when it does."""
        if len(view) != self.shard_bytes:
            return f"the shard has {len(view)} bytes, the table says {self.shard_bytes}"
        size, prefix, raw = self.npy_size, self.npy_prefix, view.obj  # slicing the mmap gives bytes: fast to compare
        for i, start in enumerate(self.npy_starts):
            if start + size > len(view) or raw[start:start + len(prefix)] != prefix:
                return f"window {i} ({self.keys[i]}): no .npy header of the table's shape at byte {start}"
        if any(a < 0 or a + n > len(view) for a, n in self.json_spans):
            return "a .json member lies outside the shard"
        return None


class WindowRef:
    """One window of a :class:`WindowTable`: what the pipeline carries until the batch is read."""

    __slots__ = ("table", "i")

    def __init__(self, table: WindowTable, i: int) -> None:
        self.table, self.i = table, i

    @property
    def key(self) -> str:
        return self.table.keys[self.i]

    @property
    def url(self) -> str:
        return self.table.url

    @property
    def subject(self) -> str:
        return self.table.subject

    @property
    def dataset(self) -> str:
        return self.table.dataset

    @property
    def label(self) -> int:
        return self.table.labels[self.i]

    def members(self) -> dict[str, Any]:
        """The window as webdataset gives it: ``__key__``, ``__url__``, ``npy`` (a view) and ``json`` bytes."""
        t, i = self.table, self.i
        start, (js, jn) = t.npy_starts[i], t.json_spans[i]
        return {"__key__": t.keys[i], "__url__": t.url, "npy": t.view[start:start + t.npy_size],
                "json": bytes(t.view[js:js + jn])}

    def __repr__(self) -> str:
        return f"WindowRef({self.key!r} in {self.url!r})"


# --------------------------------------------------------------------------------------------------
# building, writing and opening tables


def build_table(url: str, view: memoryview) -> WindowTable | None:
    """Scan a mapped shard; None when its windows do not share one float32 shape and one recording."""
    keys, labels, starts, spans = [], [], [], []
    prefix, shape, recording = None, None, None
    for key, group in grouped_members(view, url):
        npy, js = group.get("npy"), group.get("json")
        if npy is None or js is None:
            return None
        layout = npy_layout(view[npy.start:npy.start + npy.size])
        if layout is None or layout[0] != _FLOAT32 or len(layout[1]) != 2:
            return None
        dtype, this_shape, data_offset = layout
        if npy.size != data_offset + int(np.prod(this_shape)) * dtype.itemsize:
            return None
        meta = json.loads(bytes(view[js.start:js.start + js.size]))
        if not isinstance(meta, dict):
            return None
        this_prefix = bytes(view[npy.start:npy.start + data_offset])
        this_recording = {k: meta.get(k) for k in _RECORDING_KEYS}
        if prefix is None:
            prefix, shape, recording = this_prefix, this_shape, this_recording
        elif (this_prefix, this_shape) != (prefix, shape) or this_recording != recording:
            return None
        label = meta.get("label_id")
        keys.append(key)
        labels.append(-1 if label is None else int(label))
        starts.append(npy.start)
        spans.append((js.start, js.size))
    if prefix is None:
        return None
    return WindowTable(url=url, shard_bytes=len(view), n_chans=shape[0], n_times=shape[1], npy_prefix=prefix,
                       npy_starts=starts, json_spans=spans, keys=keys, labels=labels, recording=recording)


def write_table(shard: str | Path, shard_sha256: str | None = None) -> Path | None:
    """Write the sidecar of a finished shard (atomically); None when the shard gets no table."""
    from .shards import write_json_atomic  # shards imports this module

    table = build_table(str(shard), map_file(str(shard)))
    if table is None:
        return None
    path = table_path(shard)
    # no fsync: a table torn by a crash fails its check on reading and the shard is scanned instead
    write_json_atomic(path, table.to_json(shard_sha256), durable=False, indent=None)
    return path


def _read_sidecar(url: str, view: memoryview) -> WindowTable | None:
    path = table_path(url)
    try:
        text = path.read_bytes()
    except OSError:  # no sidecar (or not a readable file): the shard is scanned instead
        return None
    try:
        table = WindowTable.from_json(json.loads(text), url)
        problem = table.mismatch(view)
    except (ValueError, KeyError, TypeError) as err:
        problem = f"unreadable ({type(err).__name__}: {err})"
    if problem is None:
        return table
    warnings.warn(f"{path}: {problem}; reading the windows from the shard itself instead", stacklevel=3)
    return None


@lru_cache(maxsize=128)
def _open(url: str, size: int, mtime_ns: int) -> WindowTable | None:
    view = map_file(url)  # an OSError is not cached: it may pass (too many open files)
    if not is_ustar(view):
        return None
    table = _read_sidecar(url, view) or build_table(url, view)
    if table is not None:
        table.view = view
    return table


def open_table(url: str) -> WindowTable | None:
    """The table of a local neurofm tar, mapped (cached per process while the file is unchanged).

    None for anything else (a remote url, another kind of file, a file that cannot be read): such
    shards go to webdataset, which raises its own error naming the url.
    """
    if not names_local_tar(url):
        return None
    try:
        st = os.stat(url)
        return _open(url, st.st_size, st.st_mtime_ns)
    except OSError:
        return None  # webdataset raises its own error, naming the url


def clear_table_cache() -> None:
    """Forget every opened table (benchmarks time a cold start with it)."""
    _open.cache_clear()
