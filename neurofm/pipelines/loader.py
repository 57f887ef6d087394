"""Prepared datasets (``neurofm-shards/1``, see ``docs/shard-format.md``) to batches for training.

One or more ``index.json`` files become a :class:`ShardDataModule`; subjects are chosen per shard
(a shard never mixes recordings), so leave-one-subject-out folds need no re-sharding::

    dm = ShardDataModule(["prepared/bnci2014_001"], batch_size=64, num_workers=4,
                         val_subjects=["09"], test_subjects=["09"], seed=0)
    trainer.fit(model, datamodule=dm)        # batches are `Batch`, see below

Train loader: an endless stream of shards drawn with replacement (``resampled``), cut to exactly
``n_batches`` per epoch on *every* rank, so DDP ranks never wait on each other at the end of an epoch.
Eval loaders: every selected sample exactly once across all ranks and workers, in index order when
there is one rank and at most one worker.

When every selected shard is local with a window table (what ``prepare`` writes), both loaders
are table streams (``tablestream.py``): batches are chosen as index arrays and read in the process
that iterates them, and train epoch k depends only on ``(seed, k, rank)``. Otherwise (streamed
shards) they are webdataset pipelines, described below.

Randomness comes only from ``seed``: shard draws and the sample shuffle buffer take their generator
from ``(seed, epoch, rank, worker)``, so a seed and a number of workers give the same batches run
after run, and epochs differ from each other. (In a webdataset pipeline each worker draws its own
stream, so 0 and 2 workers give different, equally valid, sequences.)

Notes on webdataset 1.0.x that shaped this file:

- ``wds.WebDataset(resampled=True, seed=...)`` does not pass ``seed`` to its ``ResampledShards``,
  which then seeds itself from pid, time and ``os.urandom``: the stream is not reproducible. Its
  epoch counter also lives in the worker, so re-created (non-persistent) workers restart it at 0.
  The train pipeline is therefore built from ``wds.DataPipeline`` with a seeded shard sampler whose
  epoch is set from the main process.
- ``.shuffle(n)`` without ``rng`` seeds from pid and time, and ``utils.make_seed`` hashes its
  arguments with ``hash()`` (salted per process for ``str``); we derive seeds with numpy instead.
- ``wds.split_by_node`` looks the rank up inside each DataLoader worker (env ``RANK``/``WORLD_SIZE``,
  else ``torch.distributed`` if initialised in that process). Under ``spawn`` workers, or launchers
  that do not export ``RANK``, every rank would read rank 0 and load the same shards; the rank is
  therefore resolved once in the main process and handed to the pipeline.
"""

from __future__ import annotations

import json
import os
import random
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import chain, islice, repeat
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
import numpy as np
import torch
import webdataset as wds

from .buffers import BufferPool, CopyThreads
from .seeding import derive_seed
from .tablestream import EvalTableStream, TableBatch, TrainTableStream, has_table
from .tario import decode_npy, is_streamed, tar_samples
from .windowtable import WindowRef, WindowTable, open_table, recording_fields

FORMAT = "neurofm-shards/1"
INDEX_NAME = "index.json"
# Samples buffered before the shuffle buffer starts yielding (webdataset's default).
_SHUFFLE_INITIAL = 100
# Rejected samples in a row after which a stream stops with an error (see `guarded_select`).
_MAX_REJECTED_IN_A_ROW = 10_000
# Shard draws per pass of the resampled stream; an epoch is cut by `with_epoch`, long before this.
_ENDLESS = 2**62
_END = object()  # end of an iterator, for next(it, _END)

PathLike = str | Path
SubjectSpec = Sequence[str] | None


# --------------------------------------------------------------------------------------------------
# index.json


@dataclass(frozen=True)
class ShardInfo:
    """One shard of a prepared dataset; ``url`` is already resolved against the index folder."""

    url: str
    n_samples: int
    subject: str
    dataset: str
    recording: str = ""
    session: str | None = None
    run: str | None = None
    n_chans: int | None = None
    sha256: str | None = None

    def matches(self, specs: Iterable[str]) -> bool:
        """True when a spec names this shard's subject, bare (``"01"``) or qualified (``"ds/01"``)."""
        return _subject_matches(self.dataset, self.subject, specs)


@dataclass(frozen=True)
class ShardIndex:
    """A parsed ``index.json`` (format ``neurofm-shards/1``)."""

    path: Path
    dataset: str
    sfreq: float
    n_samples: int
    subjects: list[str]
    shards: list[ShardInfo]
    classes: list[str] = field(default_factory=list)
    paradigm: str | None = None
    preproc_hash: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the whole file, for provenance

    def select_shards(
        self, subjects: SubjectSpec = None, exclude_subjects: SubjectSpec = None, *, strict: bool = True
    ) -> list[ShardInfo]:
        """Shards of ``subjects`` (all when None) minus ``exclude_subjects``, in index order.

        With ``strict``, a subject named in ``subjects`` that has no shard here is an error (a typo
        would otherwise silently train on nothing).
        """
        subjects, exclude_subjects = _tuple(subjects), _tuple(exclude_subjects)
        if strict and subjects is not None:
            _check_known(subjects, [self])
        return [
            s for s in self.shards
            if (subjects is None or s.matches(subjects)) and not s.matches(exclude_subjects or ())
        ]

    def select(
        self, subjects: SubjectSpec = None, exclude_subjects: SubjectSpec = None, *, strict: bool = True
    ) -> list[str]:
        """Shard urls of :meth:`select_shards`."""
        return [s.url for s in self.select_shards(subjects, exclude_subjects, strict=strict)]


def _subject_matches(dataset: str, subject: str, specs: Iterable[str]) -> bool:
    return any(spec == subject or spec == f"{dataset}/{subject}" for spec in specs)


def _check_known(subjects: Sequence[str], indexes: Sequence[ShardIndex]) -> None:
    shards = [s for index in indexes for s in index.shards]
    unknown = [spec for spec in subjects if not any(s.matches([spec]) for s in shards)]
    if unknown:
        known = sorted({f"{s.dataset}/{s.subject}" for s in shards})
        where = ", ".join(str(index.path) for index in indexes)
        raise ValueError(f"subjects {unknown} have no shard in {where}; known subjects: {known}")


def resolve_url(url: str, root: Path) -> str:
    """A shard url relative to the index folder becomes absolute; absolute paths and URLs stay.

    ``root`` should already be resolved (callers resolve it once per index: ``Path.resolve`` costs
    an ``lstat`` per path component, ~50 µs per shard); a url with ``..`` is resolved in full.
    """
    if is_streamed(url) or os.path.isabs(url):
        return url
    if ".." in url.replace(os.sep, "/").split("/"):
        return str((root / url).resolve())
    return os.path.normpath(os.path.join(root, url))


def _index_file(path: PathLike) -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = path / INDEX_NAME
        if not candidate.is_file():
            parts = sorted(p.name for p in path.glob("index.part-*.json"))
            hint = f" (found {parts}: combine them with `neurofm index merge`)" if parts else ""
            raise FileNotFoundError(f"no {INDEX_NAME} in prepared-dataset folder {path}{hint}")
        return candidate
    if not path.is_file():
        raise FileNotFoundError(f"prepared-dataset index not found: {path}")
    return path


def _require(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in obj:
        raise ValueError(f"{where}: missing field '{name}'")
    value = obj[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{where}: field '{name}' has type {type(value).__name__}, expected {kind}")
    return value


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _parse_shard(entry: Any, i: int, dataset: str, root: Path, where: str) -> ShardInfo:
    where = f"{where}: shards[{i}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is {type(entry).__name__}, expected an object")
    n_chans = entry.get("n_chans")
    return ShardInfo(
        url=resolve_url(_require(entry, "url", str, where), root),
        n_samples=_require(entry, "n_samples", int, where),
        subject=str(_require(entry, "subject", (str, int), where)),
        dataset=dataset,
        recording=str(entry.get("recording", "")),
        session=_optional_str(entry.get("session")),
        run=_optional_str(entry.get("run")),
        n_chans=None if n_chans is None else int(n_chans),
        sha256=entry.get("sha256"),
    )


def read_index_json(path: PathLike, expected_format: str, hint: str = "") -> tuple[Path, dict[str, Any]]:
    """(file, parsed object) of an ``index.json`` (or the one in a folder) whose ``format`` is ``expected_format``."""
    file = _index_file(path)
    where = str(file)
    try:
        raw = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{where}: not valid JSON ({err})") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: top level is {type(raw).__name__}, expected an object")
    fmt = _require(raw, "format", str, where)
    if fmt != expected_format:
        raise ValueError(f"{where}: field 'format' is {fmt!r}, this reader understands {expected_format!r}{hint}")
    return file, raw


def load_index(path: PathLike) -> ShardIndex:
    """Read ``index.json`` (or the one inside a prepared-dataset folder).

    Raises ``FileNotFoundError`` naming the path, or ``ValueError`` naming the file and the field.
    """
    file, raw = read_index_json(path, FORMAT)
    where = str(file)
    dataset = _require(raw, "dataset", str, where)
    entries = _require(raw, "shards", list, where)
    root = file.parent.resolve()
    shards = [_parse_shard(e, i, dataset, root, where) for i, e in enumerate(entries)]
    return ShardIndex(
        path=file,
        dataset=dataset,
        sfreq=float(_require(raw, "sfreq", (int, float), where)),
        n_samples=int(raw.get("n_samples", sum(s.n_samples for s in shards))),
        subjects=[str(s) for s in raw.get("subjects") or sorted({s.subject for s in shards})],
        shards=shards,
        classes=list(raw.get("classes") or []),
        paradigm=raw.get("paradigm"),
        preproc_hash=raw.get("preproc_hash"),
        raw=raw,
    )


def _as_indexes(paths: PathLike | ShardIndex | Sequence[PathLike | ShardIndex]) -> list[ShardIndex]:
    if isinstance(paths, (str, Path, ShardIndex)):
        paths = [paths]
    indexes = [p if isinstance(p, ShardIndex) else load_index(p) for p in paths]
    if not indexes:
        raise ValueError("no prepared dataset given")
    return indexes


def select_shards(
    indexes: Sequence[ShardIndex], subjects: SubjectSpec = None, exclude_subjects: SubjectSpec = None
) -> list[ShardInfo]:
    """Shards of several indexes; a subject in ``subjects`` must exist in at least one of them."""
    subjects = _tuple(subjects)
    if subjects is not None:
        _check_known(subjects, indexes)
    return [s for index in indexes for s in index.select_shards(subjects, exclude_subjects, strict=False)]


# --------------------------------------------------------------------------------------------------
# one sample


@dataclass
class Sample:
    """One decoded window. ``x``: (n_chans, n_times) float32; ``pos``: (n_chans, 3), NaN if unknown."""

    key: str
    x: np.ndarray
    ch_names: list[str]
    ch_types: list[str]
    pos: np.ndarray
    bad_channels: list[str]
    label: int  # label_id, -1 for unlabelled windows
    subject: str
    dataset: str
    sfreq: float
    url: str
    # The whole .json member. Its lists are shared by the windows of one recording (see
    # `_MetaCache`): treat them as read-only (the fields above are the sample's own copies).
    meta: dict[str, Any] = field(repr=False)


_FLOAT32 = np.dtype(np.float32)


class _MetaCache:
    """``json.loads`` of a window's .json, parsing the part shared by a recording's windows once.

    A recording's windows differ only in ``_VARYING``: the text around those values (the "template",
    holding ch_names, ch_pos, ...) is the cache key, and only the values are parsed per window.
    Parsing ~3 kB of names and positions took ~55 µs a window, more than reading its data.
    Exact: a template is cached only when a full parse agrees with the piecewise one, and the
    template has no nested object (so the keys found in it are top-level keys).
    """

    _VARYING = ("window", "onset", "label", "label_id")
    _OPTIONAL = ("target",)  # varies per window where present (regression datasets)
    _MAX_TEMPLATES = 256  # one per recording in flight; cleared when full
    _SPACE = " \t\n\r"

    def __init__(self) -> None:
        self.templates: dict[str, tuple[dict[str, Any], dict[str, Any]] | None] = {}
        self._scan = json.JSONDecoder().scan_once

    def _value_start(self, text: str, key: str) -> int:
        """Where the value of ``"key":`` starts in ``text`` (-1 if absent); str.find, not a regex (5x faster)."""
        needle = f'"{key}"'
        at = text.rfind(needle)  # neurofm writes these keys last: rfind stops early
        while at >= 0:
            pos = at + len(needle)
            while pos < len(text) and text[pos] in self._SPACE:
                pos += 1
            if pos < len(text) and text[pos] == ":":  # a key, not a string value such as a channel name
                pos += 1
                while pos < len(text) and text[pos] in self._SPACE:
                    pos += 1
                return pos
            at = text.rfind(needle, 0, at)
        return -1

    def _split(self, text: str) -> tuple[str, dict[str, Any]] | None:
        """(template, values): ``text`` with the ``_VARYING`` values cut out, and those values."""
        spans = []
        for key in (*self._VARYING, *self._OPTIONAL):
            start = self._value_start(text, key)
            if start < 0 and key in self._OPTIONAL:
                continue
            if start < 0:
                return None
            try:
                value, end = self._scan(text, start)
            except StopIteration:
                return None
            spans.append((start, end, key, value))
        spans.sort()
        pieces, pos = [], 0
        for start, end, _, _ in spans:
            if start < pos:  # overlapping: one value holds another key
                return None
            pieces.append(text[pos:start])
            pos = end
        pieces.append(text[pos:])
        return "\0".join(pieces), {key: value for _, _, key, value in spans}  # \0 never occurs in JSON text

    def parse(self, raw: bytes | str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(meta, derived) where ``derived`` holds per-recording values computed once (or None)."""
        try:
            text = raw.decode() if isinstance(raw, (bytes, bytearray)) else raw
        except UnicodeDecodeError:
            return json.loads(raw), None
        split = self._split(text)
        if split is None:
            return json.loads(text), None
        template, values = split
        entry = self.templates.get(template, False)
        if entry is None:  # known not to be cacheable
            return json.loads(text), None
        if entry is not False:
            const, derived = entry
            return {**const, **values}, derived
        meta = json.loads(text)
        cacheable = (isinstance(meta, dict) and template.count("{") == 1
                     and all(k in meta and meta[k] == v and type(meta[k]) is type(v) for k, v in values.items()))
        if len(self.templates) >= self._MAX_TEMPLATES:
            self.templates.clear()
        if not cacheable:
            self.templates[template] = None
            return meta, None
        self.templates[template] = (meta, {})
        return dict(meta), self.templates[template][1]  # a copy: the cached dict stays as parsed


_META = _MetaCache()


def _own_copies(fields_: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.copy() if isinstance(v, (list, np.ndarray)) else v) for k, v in fields_.items()}


def decode_sample(raw: dict[str, Any]) -> Sample:
    """A webdataset sample (``__key__``, ``npy``, ``json`` bytes) to a :class:`Sample`.

    ``.npy`` is read like ``np.load(allow_pickle=False)``: a shard can never run code on the reader.
    Members other than ``.npy``/``.json`` are ignored, never decoded.
    """
    key = raw.get("__key__", "?")
    for member in ("npy", "json"):
        if member not in raw:
            raise ValueError(f"sample {key} in {raw.get('__url__', '?')}: missing member .{member} (has {sorted(raw)})")
    x = decode_npy(raw["npy"])
    if x.dtype != _FLOAT32 or x.ndim != 2:
        raise ValueError(f"sample {key} in {raw.get('__url__', '?')}: .npy is {x.dtype} {x.shape}, "
                         "expected float32 (n_chans, n_times)")
    meta, derived = _META.parse(raw["json"])
    if derived is None or derived.get("n_chans") != x.shape[0]:
        fields_ = recording_fields(meta, x.shape[0], f"sample {key} in {raw.get('__url__', '?')}")
        if derived is not None:  # first window of a recording: kept for the next ones
            derived.update(_own_copies(fields_), n_chans=x.shape[0])
    else:
        fields_ = _own_copies({k: v for k, v in derived.items() if k != "n_chans"})
    label = meta.get("label_id")
    return Sample(key=key, x=x, label=-1 if label is None else int(label), url=str(raw.get("__url__", "")),
                  meta=meta, **fields_)


@dataclass(frozen=True)
class SubjectFilter:
    """Sample-level safety net behind the shard-level subject selection (picklable for workers)."""

    subjects: tuple[str, ...] | None = None
    exclude_subjects: tuple[str, ...] = ()

    def __call__(self, sample: Sample | WindowRef) -> bool:
        keep = self.subjects is None or _subject_matches(sample.dataset, sample.subject, self.subjects)
        return keep and not _subject_matches(sample.dataset, sample.subject, self.exclude_subjects)


Window = Sample | WindowRef  # what flows through a pipeline until the batch is read


class _Guard:
    """``keep`` with a safety net: a rejected window means index.json and the shard disagree.

    Rejections are warned about, and a long run of them is an error: an endless train stream whose
    shards hold none of the selected subjects would otherwise spin without ever yielding a batch.
    """

    def __init__(self, keep: Callable[[Any], bool]) -> None:
        self.keep, self.rejected = keep, 0

    def __call__(self, item: Sample | WindowRef, n: int = 1) -> bool:
        """Whether ``item`` (standing for ``n`` windows of one recording) is kept."""
        if self.keep(item):
            self.rejected = 0
            return True
        if self.rejected == 0:
            warnings.warn(f"skipping sample {item.key} in {item.url}: its subject {item.subject!r} is "
                          "not selected although index.json lists its shard under a selected subject",
                          stacklevel=3)
        self.rejected += n
        if self.rejected >= _MAX_REJECTED_IN_A_ROW:
            raise ValueError(f"{self.rejected} samples in a row rejected by {self.keep} (last: {item.key} in "
                             f"{item.url}); index.json does not match the shards' metadata")
        return False


def shard_windows(src: Iterable[dict[str, Any]], keep: Callable[[Any], bool] = SubjectFilter()) -> Iterator[Window]:
    """Pipeline stage: ``{"url": ...}`` → the windows ``keep`` accepts.

    A local shard with a window table (``windowtable.py``) gives :class:`WindowRef` objects, read
    only when batched; any other shard gives decoded :class:`Sample` objects. The subject filter is
    a safety net behind the shard-level selection, applied once per table (a shard is one recording).
    """
    guard = _Guard(keep)
    # chain.from_iterable: windows pass through C iterators, not a generator frame each (~0.4 µs)
    return chain.from_iterable(_windows_of(shard, guard) for shard in src)


def _windows_of(shard: dict[str, Any], guard: _Guard) -> Iterator[Window]:
    table = open_table(shard["url"])
    if table is None:
        return (s for s in map(decode_sample, tar_samples([shard])) if guard(s))
    if guard(WindowRef(table, 0), len(table)):
        return map(WindowRef, repeat(table, len(table)), range(len(table)))
    return iter(())


def as_sample(item: Window) -> Sample:
    """A :class:`Sample` (the data copied out of the shard) for either kind of window."""
    return decode_sample(item.members()) if isinstance(item, WindowRef) else item


# --------------------------------------------------------------------------------------------------
# batches


@dataclass
class Batch:
    """Windows of mixed montages padded to the batch's largest channel count ``C``.

    ``chan_mask`` is True for a real channel that is not bad (bad channels are masked when the
    collate has ``mask_bad_channels=True``). A channel without a known position stays in
    ``chan_mask`` (its signal is real; a model can still use its name) but has ``pos_known`` False
    and ``pos`` 0. Padded channels: ``x`` 0, ``pos`` 0, both masks False.
    """

    x: torch.Tensor  # (B, C, T) float32
    chan_mask: torch.Tensor  # (B, C) bool
    pos: torch.Tensor  # (B, C, 3) float32, metres, MNE head frame
    pos_known: torch.Tensor  # (B, C) bool
    label: torch.Tensor  # (B,) long, -1 = unlabelled
    subject: list[str]
    dataset: list[str]
    key: list[str]
    ch_names: list[list[str]]  # unpadded, per window
    ch_types: list[list[str]]
    sfreq: float

    def __len__(self) -> int:
        return self.x.shape[0]

    def _map_tensors(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        tensors = {k: fn(getattr(self, k)) for k in ("x", "chan_mask", "pos", "pos_known", "label")}
        return Batch(**{**self.__dict__, **tensors})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Tensors moved to ``device`` (Lightning calls this through ``transfer_batch_to_device``)."""
        return self._map_tensors(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Called by ``DataLoader(pin_memory=True)``."""
        return self._map_tensors(lambda t: t.pin_memory())


def _check_uniform(items: Iterable[Any], name: str, get: Callable[[Any], Any]) -> Any:
    """The one value of ``get`` over ``items`` (samples or window tables); an error naming them if several."""
    items = list(items)
    values = {get(s) for s in items}
    if len(values) > 1:
        names = {getattr(s, "key", None) or getattr(s, "url", "?"): get(s) for s in items}
        raise ValueError(f"cannot batch windows with different {name}: {names}")
    return values.pop()


def collate_samples(samples: Sequence[Sample], mask_bad_channels: bool = True) -> Batch:
    """Pad ``samples`` to the largest channel count; all must share ``n_times`` and ``sfreq``."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    n_times = _check_uniform(samples, "n_times", lambda s: s.x.shape[1])
    sfreq = _check_uniform(samples, "sfreq", lambda s: s.sfreq)
    counts = np.array([s.x.shape[0] for s in samples])  # (B,)
    n_batch, n_chans = len(samples), int(counts.max())
    x = np.empty((n_batch, n_chans, n_times), np.float32)  # (B, C, T); np.zeros would write it twice
    pos = np.zeros((n_batch, n_chans, 3), np.float32)  # (B, C, 3)
    for i, s in enumerate(samples):  # only the copies are per sample; the masks are whole-batch
        x[i, : counts[i]] = s.x
        x[i, counts[i]:] = 0.0  # padding
        pos[i, : counts[i]] = s.pos
    chan_mask = np.arange(n_chans)[None, :] < counts[:, None]  # (B, C): real channels
    pos_known = chan_mask & np.isfinite(pos).all(axis=2)  # (B, C)
    pos[~pos_known] = 0.0
    if mask_bad_channels:
        for i, s in enumerate(samples):
            if s.bad_channels:
                bad = set(s.bad_channels)
                chan_mask[i, : counts[i]] = [name not in bad for name in s.ch_names]
    return Batch(
        x=torch.from_numpy(x),
        chan_mask=torch.from_numpy(chan_mask),
        pos=torch.from_numpy(pos),
        pos_known=torch.from_numpy(pos_known),
        label=torch.tensor([s.label for s in samples], dtype=torch.long),
        subject=[s.subject for s in samples],
        dataset=[s.dataset for s in samples],
        key=[s.key for s in samples],
        ch_names=[s.ch_names for s in samples],
        ch_types=[s.ch_types for s in samples],
        sfreq=float(sfreq),
    )


# Recycled batch arrays of `collate_windows` (one pool per process: each DataLoader worker has its own).
_BATCH_BUFFERS = BufferPool()
# Threads that copy a batch's windows out of the mapped shards (`read_table_batch`).
_COPY_THREADS = CopyThreads()


def collate_windows(items: Sequence[Window], mask_bad_channels: bool = True) -> Batch:
    """:func:`collate_samples` for pipeline items: window references are read straight into the batch
    (:func:`read_table_batch`). Gives the same :class:`Batch` as ``collate_samples`` of the decoded
    samples (test)."""
    if not items or set(map(type, items)) != {WindowRef}:
        return collate_samples([as_sample(item) for item in items], mask_bad_channels)
    of = [r.table for r in items]
    tables = list(dict.fromkeys(of))  # the batch's recordings, in order of appearance
    which = {t: k for k, t in enumerate(tables)}
    t = np.fromiter((which[table] for table in of), np.intp, len(of))  # (B,)
    w = np.fromiter((r.i for r in items), np.intp, len(items))  # (B,)
    return read_table_batch(TableBatch(tables, t, w), mask_bad_channels)


def read_table_batch(batch: TableBatch, mask_bad_channels: bool = True) -> Batch:
    """The windows of ``batch`` (mapped window tables) read into one :class:`Batch`.

    Per window this is one copy from the mapped shard into a recycled batch array (``buffers.py``)
    and a few list lookups; channel positions and masks are gathered from per-recording rows. All
    but the copy costs ~3 µs a window in batches of 32, against 15-20 µs to copy a 64 x 800 window.
    """
    t, at = batch.t.tolist(), batch.w.tolist()  # (B,) each window's table and index in it
    used = list(dict.fromkeys(t))  # the batch's recordings, in order of appearance
    tables = [batch.tables[k] for k in used]
    which = {k: j for j, k in enumerate(used)}
    of = [which[k] for k in t]  # (B,) each window's recording in `tables`
    if len({(r.n_times, r.sfreq) for r in tables}) > 1:
        _check_uniform(tables, "n_times", lambda r: r.n_times)
        _check_uniform(tables, "sfreq", lambda r: r.sfreq)
    x, channels = _copy_windows(tables, of, at)  # (B, C, T), (B, C, 6)
    labels, keys = [r.labels for r in tables], [r.keys for r in tables]
    return Batch(
        x=torch.from_numpy(x),
        chan_mask=torch.from_numpy(channels[..., 4 if mask_bad_channels else 3] > 0),
        pos=torch.from_numpy(np.ascontiguousarray(channels[..., :3])),
        pos_known=torch.from_numpy(channels[..., 5] > 0),
        label=torch.from_numpy(np.array([labels[k][i] for k, i in zip(of, at)], np.int64)),
        subject=_per_window(of, [r.subject for r in tables]),
        dataset=_per_window(of, [r.dataset for r in tables]),
        key=[keys[k][i] for k, i in zip(of, at)],
        ch_names=_per_window(of, [list(r.fields["ch_names"]) for r in tables]),
        ch_types=_per_window(of, [list(r.fields["ch_types"]) for r in tables]),
        sfreq=float(tables[0].sfreq),
    )


def _copy_windows(tables: Sequence[WindowTable], of: list[int], at: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Window ``at[b]`` of ``tables[of[b]]`` for each b, padded to the largest channel count C:
    the signals (B, C, T) in a recycled array, and each window's channel rows (B, C, 6)
    (``WindowTable.channel_rows``; a padded channel's row is all 0)."""
    n_batch, n_times, n_chans = len(of), tables[0].n_times, max(r.n_chans for r in tables)
    flat = [r.flat_windows() for r in tables]  # per recording, each window's (C_rec*T,) view of its shard
    src = [flat[k][i] for k, i in zip(of, at)]
    x = _BATCH_BUFFERS.empty((n_batch, n_chans * n_times))  # (B, C*T): row b holds window b, then padding
    uniform = all(r.n_chans == n_chans for r in tables)
    _COPY_THREADS.run(partial(_copy_rows, x, src, uniform), n_batch, x.nbytes)
    if uniform:
        channels = np.concatenate([r.channel_rows for r in tables]).reshape(len(tables), n_chans, 6)  # (U, C, 6)
    else:
        channels = np.zeros((len(tables), n_chans, 6), np.float32)  # (U, C, 6)
        for k, r in enumerate(tables):
            channels[k, : r.n_chans] = r.channel_rows
    return x.reshape(n_batch, n_chans, n_times), channels[np.array(of, np.intp)]


def _copy_rows(x: np.ndarray, src: list[np.ndarray], uniform: bool, start: int, stop: int) -> None:
    """Rows ``start:stop`` of ``x`` (B, C*T) from the flat windows ``src``, zero-padded."""
    if uniform:
        np.concatenate(src[start:stop], out=x[start:stop].reshape(-1))  # one C loop over the windows
        return
    for row in range(start, stop):
        window = src[row]
        x[row, : window.size] = window
        x[row, window.size:] = 0.0  # padding


def _per_window(inv: Sequence[int], per_recording: list[Any]) -> list[Any]:
    """Each window's value; windows of one recording share one (lists: a copy made by the caller,
    not the table's own)."""
    return [per_recording[k] for k in inv]


@dataclass(frozen=True)
class BatchRefs:
    """A batch of windows from local shards with window tables, as (shard url, window) pairs.

    What a DataLoader worker hands to the main process instead of the batch itself: a 6.5 MB batch
    crossing processes costs a fresh shared-memory segment each time (allocated, zeroed, faulted in
    and copied: ~6 ms here, 4x the read), a few hundred bytes of references cost nothing. The main
    process then reads the windows from its own mapping of the shards (``read``), so workers still
    do the shard drawing, filtering and shuffling, and the batch read is one copy per window.
    """

    refs: tuple[tuple[str, int], ...]
    mask_bad_channels: bool = True

    def __len__(self) -> int:
        return len(self.refs)

    def read(self) -> Batch:
        tables = {url: open_table(url) for url in dict.fromkeys(url for url, _ in self.refs)}
        for url, table in tables.items():
            if table is None:
                raise FileNotFoundError(f"shard {url} (read by a loader worker) cannot be opened in the main process")
        return collate_windows([WindowRef(tables[url], i) for url, i in self.refs], self.mask_bad_channels)


def collate_or_refer(items: Sequence[Window], mask_bad_channels: bool = True) -> Batch | BatchRefs:
    """In a DataLoader worker, :class:`BatchRefs` for windows of local tables; else ``collate_windows``."""
    if items and torch.utils.data.get_worker_info() is not None and all(type(r) is WindowRef for r in items):
        return BatchRefs(tuple((r.table.url, r.i) for r in items), mask_bad_channels)
    return collate_windows(items, mask_bad_channels)


def group_refs(src: Iterable[Batch | BatchRefs], size: int = 4) -> Iterator[Batch | BatchRefs | RefGroup]:
    """Pipeline stage: in a DataLoader worker, consecutive :class:`BatchRefs` travel ``size`` at a time.

    Each item a worker hands over costs the main process ~0.2 ms of queue, pipe and unpickling here,
    whatever its size; references to 4 batches cost what references to one do. Order is kept (a
    decoded ``Batch`` flushes the group before it); in the main process items pass unchanged.
    """
    if torch.utils.data.get_worker_info() is None or size <= 1:
        yield from src
        return
    group: list[BatchRefs] = []
    for item in src:
        if type(item) is BatchRefs:
            group.append(item)
            if len(group) < size:
                continue
        if group:
            yield RefGroup(tuple(group))
            group = []
        if type(item) is not BatchRefs:
            yield item
    if group:
        yield RefGroup(tuple(group))


@dataclass(frozen=True)
class RefGroup:
    """Several :class:`BatchRefs` sent from a worker as one item (see :func:`group_refs`)."""

    batches: tuple[BatchRefs, ...]


def _read_refs(items: Iterable[Batch | BatchRefs | RefGroup]) -> Iterator[Batch]:
    """What the main process makes of a worker's items: every reference read, every group unpacked."""
    for item in items:
        if type(item) is RefGroup:
            yield from (refs.read() for refs in item.batches)
        else:
            yield item.read() if type(item) is BatchRefs else item


# --------------------------------------------------------------------------------------------------
# seeded pipeline stages


def _worker() -> tuple[int, int]:
    """(worker id, number of workers) of the DataLoader worker running this code; (0, 1) in main."""
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


class _EpochSeeded:
    """Owns ``(seed, rank)``, an epoch set from the main process, and a per-process pass counter.

    With non-persistent workers each epoch re-creates the workers from the main process's copy, so
    ``epoch`` arrives there; ``passes`` counts the passes made in this process (it moves with
    ``num_workers=0`` or persistent workers). Both enter the seed, so every pass differs.
    """

    def __init__(self, seed: int, rank: int, salt: int) -> None:
        self.seed, self.rank, self.salt = seed, rank, salt
        self.epoch = 0
        self.passes = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def next_rng(self) -> random.Random:
        worker, _ = _worker()
        rng = random.Random(derive_seed(self.salt, self.seed, self.epoch, self.passes, self.rank, worker))
        self.passes += 1
        return rng


class SeededResampledShards(torch.utils.data.IterableDataset, _EpochSeeded):
    """Endless shard urls drawn with replacement, from a generator seeded by (seed, epoch, rank, worker)."""

    def __init__(self, urls: Sequence[str], seed: int, rank: int) -> None:
        if not urls:
            raise ValueError("no shards to sample from")
        torch.utils.data.IterableDataset.__init__(self)
        _EpochSeeded.__init__(self, seed, rank, salt=1)
        self.urls = list(urls)

    def __iter__(self) -> Iterator[dict[str, str]]:
        rng = self.next_rng()
        for _ in range(_ENDLESS):
            yield {"url": self.urls[rng.randrange(len(self.urls))]}


class SeededShuffle(wds.PipelineStage, _EpochSeeded):
    """``wds.shuffle`` with a buffer of ``bufsize`` samples and a generator seeded like the shards."""

    def __init__(self, bufsize: int, seed: int, rank: int) -> None:
        _EpochSeeded.__init__(self, seed, rank, salt=2)
        self.bufsize = bufsize

    def run(self, src: Iterable[Any]) -> Iterator[Any]:
        return shuffle_buffer(src, self.bufsize, min(_SHUFFLE_INITIAL, self.bufsize), self.next_rng())


def _uniforms(rng: random.Random, chunk: int = 4096) -> Iterator[float]:
    """Endless floats in [0, 1) from ``rng``, drawn a chunk at a time (one call per item costs ~1 µs)."""
    gen = np.random.Generator(np.random.PCG64(rng.getrandbits(64)))
    while True:
        yield from gen.random(chunk).tolist()


def shuffle_buffer(src: Iterable[Any], bufsize: int, initial: int, rng: random.Random) -> Iterator[Any]:
    """``wds.shuffle``'s algorithm with bulk random draws: items are yielded once ``initial`` are
    buffered; until the buffer holds ``bufsize``, two items are read per item yielded; the buffer's
    remainder comes out shuffled at the end. Every item comes out exactly once (test)."""
    src, u, buf = iter(src), _uniforms(rng), []
    append, pop = buf.append, buf.pop
    for item in src:
        append(item)
        if len(buf) < bufsize and (extra := next(src, _END)) is not _END:
            append(extra)  # grow towards bufsize
        n = len(buf)
        if n < initial:
            continue
        k = int(next(u) * n)
        buf[k], buf[-1] = buf[-1], buf[k]
        yield pop()
    rng.shuffle(buf)
    yield from buf


def split_by_rank(src: Iterable[Any], rank: int, world_size: int) -> Iterator[Any]:
    """``wds.split_by_node`` with the rank given (resolved in the main process, see module doc)."""
    yield from (src if world_size == 1 else (x for i, x in enumerate(src) if i % world_size == rank))


def dist_info(trainer: L.Trainer | None = None) -> tuple[int, int]:
    """(rank, world size): from the Lightning trainer, else env RANK/WORLD_SIZE or torch.distributed."""
    if trainer is not None:
        return trainer.global_rank, trainer.world_size
    rank, world_size, _, _ = wds.utils.pytorch_worker_info()
    return rank, world_size


# --------------------------------------------------------------------------------------------------
# datasets and loaders

# What a loader iterates: a webdataset pipeline, or a stream over window tables (run in-process).
Pipeline = wds.DataPipeline | TrainTableStream | EvalTableStream


def _use_tables(urls: Sequence[str], tables: bool) -> bool:
    """Whether a table stream reads ``urls``: every one a local shard with a window table.

    Warns when only some have one: the whole selection then goes through webdataset (slower, and
    the batches depend on ``num_workers``), which rerunning ``prepare`` on the dataset would fix.
    """
    if not tables:
        return False
    missing = [url for url in urls if not has_table(url)]
    local = [url for url in missing if not is_streamed(url)]
    if missing and len(missing) < len(urls) and len(local) == len(missing):  # only local tables are missing
        warnings.warn(f"{len(missing)} of {len(urls)} shards have no window table (first: {missing[0]}): all are "
                      "read through webdataset, slower; rerun `neurofm prepare` on their dataset to write the "
                      "tables (prepared shards are kept)", stacklevel=3)
    return not missing


def train_pipeline(
    urls: Sequence[str],
    batch_size: int,
    *,
    seed: int = 0,
    rank: int = 0,
    shuffle_buffer: int = 1000,
    sample_filter: Callable[[Any], bool] = SubjectFilter(),
    mask_bad_channels: bool = True,
    tables: bool = True,
) -> Pipeline:
    """Endless stream of full batches: resampled shards → samples → filter → shuffle → collate.

    When every shard is local with a window table (and ``tables``), a :class:`TrainTableStream`
    (``tablestream.py``: drawn as index arrays, read in the iterating process); else a webdataset
    pipeline with no node/worker splitter: each (rank, worker) draws its own shards from its own seed.
    """
    if _use_tables(urls, tables):
        return TrainTableStream(urls, batch_size, partial(read_table_batch, mask_bad_channels=mask_bad_channels),
                                seed=seed, rank=rank, shuffle_buffer=shuffle_buffer, keep=sample_filter)
    return wds.DataPipeline(
        SeededResampledShards(urls, seed, rank),
        partial(shard_windows, keep=sample_filter),
        SeededShuffle(shuffle_buffer, seed, rank) if shuffle_buffer > 1 else None,
        wds.batched(batch_size, collation_fn=partial(collate_or_refer, mask_bad_channels=mask_bad_channels),
                    partial=False),
        group_refs,
    )


def eval_pipeline(
    urls: Sequence[str],
    batch_size: int | None,
    *,
    rank: int = 0,
    world_size: int = 1,
    sample_filter: Callable[[Any], bool] = SubjectFilter(),
    mask_bad_channels: bool = True,
    tables: bool = True,
) -> Pipeline:
    """Every sample of ``urls`` once: shards split over ranks, then workers, never shuffled.

    ``batch_size=None`` yields :class:`Sample` objects instead of batches. A rank or worker may get
    no shard (more workers than shards): it then yields nothing rather than failing. Batches of
    local shards that all have window tables (and ``tables``) come from an :class:`EvalTableStream`.
    """
    if batch_size is not None and _use_tables(urls, tables):
        return EvalTableStream(urls, batch_size, partial(read_table_batch, mask_bad_channels=mask_bad_channels),
                               rank=rank, world_size=world_size, keep=sample_filter)
    collate = partial(collate_or_refer, mask_bad_channels=mask_bad_channels)
    return wds.DataPipeline(
        wds.SimpleShardList(list(urls)),
        partial(split_by_rank, rank=rank, world_size=world_size),
        wds.split_by_worker,
        partial(shard_windows, keep=sample_filter),
        wds.map(as_sample) if batch_size is None else wds.batched(batch_size, collation_fn=collate, partial=True),
        None if batch_size is None else group_refs,
    )


class ShardLoader:
    """Iterable over :class:`Batch`; one ``iter()`` is one epoch.

    Counts its own epochs and hands the number to the pipeline's seeded stages before each epoch
    (Lightning calls ``set_epoch`` only on a DataLoader's sampler), so with ``num_workers=0``, or
    workers re-created every epoch, epoch k of a run is the same for a given seed and number of
    workers. A train loader with persistent workers (``continuous``) instead reads one endless
    stream, seeded by the epoch of its first ``iter()``: an epoch is the stream's next ``n_batches``
    (a resumed run draws anew from its restored epoch).

    With ``num_workers=0`` the pipeline is iterated directly: a torch ``DataLoader`` would add only
    its per-batch bookkeeping (a profiler range and ``default_convert``, ~5 µs per window here).
    A stream over window tables (``tablestream.py``) is always iterated here, whatever
    ``num_workers``: workers would only pick index arrays. In a webdataset pipeline with workers,
    batches of windows from local tables arrive as :class:`BatchRefs` (grouped, see
    :func:`group_refs`) and are read here; batches of other shards (remote, no table) are decoded
    and collated in the workers.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        num_workers: int = 0,
        pin_memory: bool = False,
        n_batches: int | None = None,
        persistent_workers: bool = False,
    ) -> None:
        # Not `.dataset`: Lightning would warn about an IterableDataset with a __len__ there.
        self.pipeline = pipeline
        self.n_batches = n_batches
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.epoch = 0
        self.loader = None
        # Train loaders with persistent workers read one endless stream: an epoch is its next
        # `n_batches`. A new DataLoader iterator per epoch would make every worker restart its
        # pipeline (new shard draws, a refilled shuffle buffer) and drop the batches it prefetched.
        in_process = not isinstance(pipeline, wds.DataPipeline)
        if in_process and num_workers > 0:
            rank_zero_info(f"neurofm: {num_workers=} is not used: local shards with window tables are read in "
                           "this process (see tablestream.py)")
        self.continuous = num_workers > 0 and persistent_workers and n_batches is not None and not in_process
        self._stream: Iterator[Batch] | None = None
        if num_workers > 0 and not in_process:
            # batch_size=None: the pipeline batches inside the workers (a worker yields whole batches).
            # Persistent workers keep their copy of the pipeline: the epoch set here does not reach
            # them, but their own pass counter (see _EpochSeeded) still makes every epoch draw anew.
            # Pinning is done here for both paths: a worker's batch of local windows is read in this process.
            self.loader = wds.WebLoader(pipeline, batch_size=None, num_workers=num_workers, pin_memory=False,
                                        collate_fn=_as_is, persistent_workers=persistent_workers)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        stages = self.pipeline.pipeline if isinstance(self.pipeline, wds.DataPipeline) else [self.pipeline]
        for stage in stages:
            if isinstance(stage, (_EpochSeeded, TrainTableStream)):
                stage.set_epoch(self.epoch)
        self.epoch += 1
        if self.loader is None:
            batches = iter(self.pipeline)
        elif self.continuous:
            if self._stream is None:  # the workers start here, with the epoch just set
                self._stream = _read_refs(self.loader)
            batches = self._stream
        else:
            batches = _read_refs(self.loader)
        if self.pin_memory and torch.cuda.is_available():
            batches = (batch.pin_memory() for batch in batches)
        return batches if self.n_batches is None else islice(batches, self.n_batches)

    def __len__(self) -> int:
        if self.n_batches is None:
            raise TypeError("an eval ShardLoader has no length (it depends on the shard split)")
        return self.n_batches


def _as_is(batch: Batch) -> Batch:
    """DataLoader ``collate_fn`` for a pipeline that yields whole batches (module level: picklable)."""
    return batch


def batches_per_epoch(n_samples: int, batch_size: int, world_size: int) -> int:
    """Full batches per rank for one pass over ``n_samples`` in expectation (at least 1)."""
    return max(1, n_samples // (batch_size * world_size))


def iter_samples(
    index_path: PathLike | ShardIndex | Sequence[PathLike | ShardIndex],
    subjects: SubjectSpec = None,
    exclude_subjects: SubjectSpec = None,
) -> Iterator[Sample]:
    """Every sample of the selected subjects, in index order, in this process (no workers, no ranks)."""
    shards = select_shards(_as_indexes(index_path), subjects, exclude_subjects)
    if not shards:
        return
    sample_filter = SubjectFilter(_tuple(subjects), _tuple(exclude_subjects) or ())
    yield from eval_pipeline([s.url for s in shards], None, sample_filter=sample_filter)


def _tuple(specs: SubjectSpec) -> tuple[str, ...] | None:
    if isinstance(specs, str):
        raise TypeError(f"subjects must be a list of strings, got the string {specs!r}")
    return None if specs is None else tuple(str(s) for s in specs)


# --------------------------------------------------------------------------------------------------
# Lightning


class ShardDataModule(L.LightningDataModule):
    """Train/val/test loaders over one or more prepared datasets.

    Subjects: ``subjects`` (all when None) minus ``exclude_subjects`` minus ``val_subjects`` and
    ``test_subjects`` train; ``val_subjects``/``test_subjects`` (minus ``exclude_subjects``) give the
    val/test loaders, an empty list of loaders when None. A subject is ``"01"`` or, to tell datasets
    apart, ``"dataset/01"``.

    Rank and world size come from the attached trainer, else from env ``RANK``/``WORLD_SIZE`` or
    ``torch.distributed``. Each rank gets ``train_batches_per_epoch`` full batches per epoch
    (default: training samples // (batch_size * world size)). Eval loaders split shards over ranks,
    so under DDP ranks may get different numbers of val batches: log with ``sync_dist`` only from
    ``on_validation_epoch_end``, or validate on one device.

    Local prepared shards (all with window tables) are read by table streams in this process, and
    ``num_workers`` is not used for them. For streamed shards, train loader workers persist across
    epochs (``persistent_workers``) and keep streaming: re-forking them, or restarting their
    pipelines, every epoch cost more than the epoch itself on small datasets.
    """

    def __init__(
        self,
        index_paths: PathLike | ShardIndex | Sequence[PathLike | ShardIndex],
        *,
        batch_size: int = 32,
        num_workers: int = 0,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        subjects: Sequence[str] | None = None,
        exclude_subjects: Sequence[str] | None = None,
        val_subjects: Sequence[str] | None = None,
        test_subjects: Sequence[str] | None = None,
        train_batches_per_epoch: int | None = None,
        mask_bad_channels: bool = True,
        pin_memory: bool = False,
        eval_batch_size: int | None = None,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__()
        if batch_size < 1 or num_workers < 0 or shuffle_buffer < 0 or seed < 0:
            raise ValueError(f"{batch_size=} must be >= 1, {num_workers=}, {shuffle_buffer=} and {seed=} >= 0")
        if train_batches_per_epoch is not None and train_batches_per_epoch < 1:
            raise ValueError(f"{train_batches_per_epoch=} must be >= 1")
        self.save_hyperparameters()
        self.indexes = _as_indexes(index_paths if isinstance(index_paths, (str, Path, ShardIndex)) else list(index_paths))
        sfreqs = {str(index.path): index.sfreq for index in self.indexes}
        if len(set(sfreqs.values())) > 1:
            raise ValueError(f"prepared datasets have different sfreq and cannot share batches: {sfreqs}")
        self.batch_size, self.num_workers = batch_size, num_workers
        self.eval_batch_size = eval_batch_size or batch_size
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.mask_bad_channels, self.pin_memory = mask_bad_channels, pin_memory
        self.persistent_workers = persistent_workers
        self.train_batches_per_epoch = train_batches_per_epoch
        held_out = [*(val_subjects or ()), *(test_subjects or ())]
        exclude = _tuple(exclude_subjects) or ()
        self.train_filter = SubjectFilter(_tuple(subjects), (*exclude, *held_out))
        self.val_filter = None if val_subjects is None else SubjectFilter(_tuple(val_subjects), exclude)
        self.test_filter = None if test_subjects is None else SubjectFilter(_tuple(test_subjects), exclude)
        # Fail now on unknown subjects or an empty val/test split; an empty train split is an error
        # only when training asks for it (an eval-only module is fine).
        self.shards(self.train_filter)
        self._nonempty_shards("val", self.val_filter)
        self._nonempty_shards("test", self.test_filter)

    def shards(self, subject_filter: SubjectFilter) -> list[ShardInfo]:
        """Shards selected by ``subject_filter`` (unknown subjects in it are an error)."""
        return select_shards(self.indexes, subject_filter.subjects, subject_filter.exclude_subjects)

    def _nonempty_shards(self, split: str, subject_filter: SubjectFilter | None) -> list[ShardInfo]:
        shards = [] if subject_filter is None else self.shards(subject_filter)
        if subject_filter is not None and not shards:
            raise ValueError(f"no {split} shards left in {[str(i.path) for i in self.indexes]} for "
                             f"subjects={subject_filter.subjects} minus {list(subject_filter.exclude_subjects)}")
        return shards

    def train_dataloader(self) -> ShardLoader:
        rank, world_size = dist_info(self.trainer)
        shards = self._nonempty_shards("train", self.train_filter)
        n_batches = self.train_batches_per_epoch or batches_per_epoch(
            sum(s.n_samples for s in shards), self.batch_size, world_size
        )
        pipeline = train_pipeline(
            [s.url for s in shards], self.batch_size, seed=self.seed, rank=rank,
            shuffle_buffer=self.shuffle_buffer, sample_filter=self.train_filter,
            mask_bad_channels=self.mask_bad_channels,
        )
        return ShardLoader(pipeline, num_workers=self.num_workers, pin_memory=self.pin_memory, n_batches=n_batches,
                           persistent_workers=self.persistent_workers)

    def _eval_loader(self, subject_filter: SubjectFilter | None) -> ShardLoader | list:
        if subject_filter is None:
            return []  # Lightning skips validation / testing on an empty list of loaders
        rank, world_size = dist_info(self.trainer)
        pipeline = eval_pipeline(
            [s.url for s in self._nonempty_shards("eval", subject_filter)], self.eval_batch_size, rank=rank,
            world_size=world_size, sample_filter=subject_filter, mask_bad_channels=self.mask_bad_channels,
        )
        return ShardLoader(pipeline, num_workers=self.num_workers, pin_memory=self.pin_memory)

    def val_dataloader(self) -> ShardLoader | list:
        return self._eval_loader(self.val_filter)

    def test_dataloader(self) -> ShardLoader | list:
        return self._eval_loader(self.test_filter)
