"""Batches of local shards with window tables, chosen as integer arrays: no per-window Python objects.

When every selected shard is a local tar with a window table (``windowtable.py``: ``prepare`` writes
one beside each shard), the loaders need no per-window pipeline. Which windows make a batch is
decided with numpy on (shard, window) index arrays, and the batch is then read with one copy per
window (``loader.read_table_batch``):

- train (:class:`TrainTableStream`): shards drawn with replacement from a generator seeded by
  ``(seed, epoch, rank)`` until a block holds at least ``shuffle_buffer`` windows and
  ``MIN_SHARDS_PER_BLOCK`` shards (or as many as there are); the block is permuted and cut into full batches, and its
  remainder opens the next block. Every window of a drawn shard is used, as in webdataset's
  ``resampled`` stream; the block permutation plays the part of its shuffle buffer (a uniform
  shuffle within the block instead of a bounded-delay one, over indices, not samples).
- eval (:class:`EvalTableStream`): every window of the rank's shards once, in index order.

Both run in the process that iterates them. Per batch they cost a few numpy calls, so DataLoader
workers would only add forking and inter-process traffic: the batch is copied out of the shard
mapping in the main process whichever way its windows were chosen. The batches therefore depend on
the seed, the epoch and the rank, never on the number of workers.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .seeding import derive_seed
from .tario import map_file, names_local_tar
from .windowtable import WindowTable, open_table, table_name

_SALT = 3  # the loader's webdataset stages use salts 1 (shard draws) and 2 (shuffle buffer)
# A train block draws at least this many shards (at most the number there are: draws are with
# replacement, and more draws would repeat windows within a block), whatever `shuffle_buffer`: a
# block is only index arrays, and with long recordings (2000-window shards) a block of
# `shuffle_buffer` windows would hold one recording, so that dozens of consecutive batches came from it.
MIN_SHARDS_PER_BLOCK = 16


def has_table(url: str) -> bool:
    """A local tar with a window-table sidecar (a ``stat``; the table is checked when it is opened)."""
    return names_local_tar(url) and os.path.isfile(table_name(url))


@dataclass(frozen=True)
class TableBatch:
    """``B`` windows: window ``b`` is window ``w[b]`` of ``tables[t[b]]``."""

    tables: Sequence[WindowTable] | Mapping[int, WindowTable]  # indexed by the values of t
    t: np.ndarray  # (B,) intp
    w: np.ndarray  # (B,) intp

    def __len__(self) -> int:
        return len(self.t)


def _default_max_open() -> int:
    """Tables a stream keeps open: each holds its shard's mapping, and Python's ``mmap`` keeps a file
    descriptor per mapping; train, val and test streams and the per-process table cache (128)
    must stay well inside the open-file limit (often 1024)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # no such limit here
        return 1024
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(8, min(1024, (soft - 256) // 4))


class _Tables:
    """A stream's shards, each opened (mapped, its table read and checked) when first needed.

    The ``max_open`` most recently drawn tables are kept (a table costs ~0.4 ms to open and holds
    its shard's mapping, a file descriptor and per-window lists: a stream over a corpus of
    10^4-10^5 shards must not hold them all); an evicted one is opened again when drawn again. The
    tables of the windows a stream has yet to hand out are held by the stream itself, so eviction
    never reopens a table mid-block. ``keep`` is the sample-level subject check behind the
    shard-level selection: a shard whose table names an unselected subject is skipped with a
    warning (index.json and the shard disagree).
    """

    def __init__(self, urls: Sequence[str], keep: Callable[[Any], bool], max_open: int | None = None) -> None:
        self.urls, self.keep = list(urls), keep
        self.max_open = max_open or _default_max_open()
        self.open: OrderedDict[int, WindowTable] = OrderedDict()
        self.skipped: set[int] = set()  # not selected, or no windows

    def get(self, k: int) -> WindowTable | None:
        """Shard ``k``'s table; None when it is skipped."""
        table = self.open.get(k)
        if table is not None:
            self.open.move_to_end(k)
            return table
        if k in self.skipped:
            return None
        table = self._open(k)
        if table is not None:
            self.open[k] = table
            if len(self.open) > self.max_open:
                self.open.popitem(last=False)
        return table

    def _open(self, k: int) -> WindowTable | None:
        url = self.urls[k]
        table = open_table(url)
        if table is None:
            if not Path(url).is_file():
                raise FileNotFoundError(f"shard {url} not found")
            try:
                map_file(url)  # the reason open_table gave None, if the shard cannot be mapped
            except OSError as err:  # e.g. too many open files
                raise OSError(f"shard {url} cannot be mapped: {err}") from err
            raise ValueError(f"shard {url}: its window table no longer describes it and its windows do not "
                             "share one recording layout (was the shard replaced after the loader was built?)")
        if not self.keep(table):
            warnings.warn(f"skipping shard {url}: its subject {table.subject!r} is not selected although "
                          "index.json lists it under a selected subject", stacklevel=4)
            self.skipped.add(k)
            return None
        if not len(table):
            self.skipped.add(k)
            return None
        return table


class TrainTableStream:
    """Endless full batches (see the module doc); one ``iter()`` is one epoch's stream."""

    def __init__(self, urls: Sequence[str], batch_size: int, read: Callable[[TableBatch], Any], *,
                 seed: int = 0, rank: int = 0, shuffle_buffer: int = 1000,
                 keep: Callable[[Any], bool] = lambda table: True) -> None:
        if not urls:
            raise ValueError("no shards to sample from")
        self.tables = _Tables(urls, keep)
        self.batch_size, self.read = batch_size, read
        self.seed, self.rank, self.shuffle_buffer = seed, rank, shuffle_buffer
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Any]:
        rng = np.random.default_rng(derive_seed(_SALT, self.seed, self.epoch, self.rank))
        self.epoch += 1  # iterated again without set_epoch, the next pass still draws anew
        return self._batches(rng)

    def _batches(self, rng: np.random.Generator) -> Iterator[Any]:
        size, t, w, pinned = self.batch_size, np.empty(0, np.intp), np.empty(0, np.intp), {}
        draws = _draws(rng, len(self.tables.urls))
        while True:
            t, w, pinned = self._block(rng, draws, t, w, pinned)  # (N,), (N,), the block's tables
            t, w = yield from _full_batches(self.read, pinned, t, w, size)

    def _block(self, rng: np.random.Generator, draws: Iterator[int], t_rest: np.ndarray, w_rest: np.ndarray,
               pinned: dict[int, WindowTable]) -> tuple[np.ndarray, np.ndarray, dict[int, WindowTable]]:
        """The remainder of the last block and every window of newly drawn shards, permuted, and
        the tables of all of them (shard number -> table)."""
        pinned = {k: pinned[k] for k in set(t_rest.tolist())}
        drawn, sizes, n = [], [], len(t_rest)
        n_shards = len(self.tables.urls)
        min_shards = min(MIN_SHARDS_PER_BLOCK, n_shards)
        while n < max(self.shuffle_buffer, self.batch_size) or len(drawn) < min_shards:
            k = next(draws)
            table = self.tables.get(k)
            if table is None:
                if len(self.tables.skipped) == n_shards:
                    raise ValueError(f"none of the {n_shards} shards holds windows of a selected subject "
                                     f"({self.tables.keep}); index.json does not match the shards' metadata")
                continue
            pinned[k] = table
            drawn.append(k)
            sizes.append(len(table))
            n += len(table)
        counts = np.array(sizes, np.intp)  # (D,) windows of each drawn shard
        first = np.repeat(np.cumsum(counts) - counts, counts)  # (N - rest,) where each shard's run starts
        t = np.concatenate([t_rest, np.repeat(np.array(drawn, np.intp), counts)])  # (N,)
        w = np.concatenate([w_rest, np.arange(len(first), dtype=np.intp) - first])  # (N,)
        if self.shuffle_buffer > 1:
            order = rng.permutation(n)
            t, w = t[order], w[order]
        return t, w, pinned


def _full_batches(read: Callable[[TableBatch], Any], tables: Mapping[int, WindowTable], t: np.ndarray,
                  w: np.ndarray, size: int) -> Generator[Any, None, tuple[np.ndarray, np.ndarray]]:
    """Yield the full batches of ``size`` windows (t, w) holds, in order; return the rest (t, w)."""
    full = len(t) - len(t) % size
    for start in range(0, full, size):
        yield read(TableBatch(tables, t[start:start + size], w[start:start + size]))
    return t[full:], w[full:]


def _draws(rng: np.random.Generator, n: int, chunk: int = 256) -> Iterator[int]:
    """Endless shard numbers drawn uniformly with replacement, a chunk per call to ``rng``."""
    while True:
        yield from rng.integers(n, size=chunk).tolist()


class EvalTableStream:
    """Every window of the rank's shards (shard ``i`` goes to rank ``i % world_size``) once, in order."""

    def __init__(self, urls: Sequence[str], batch_size: int, read: Callable[[TableBatch], Any], *,
                 rank: int = 0, world_size: int = 1, keep: Callable[[Any], bool] = lambda table: True) -> None:
        self.tables = _Tables(list(urls)[rank::world_size], keep)
        self.batch_size, self.read = batch_size, read

    def __iter__(self) -> Iterator[Any]:
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        size, t_rest, w_rest, pinned = self.batch_size, np.empty(0, np.intp), np.empty(0, np.intp), {}
        for k in range(len(self.tables.urls)):  # opened one by one: a batch may span shards
            table = self.tables.get(k)
            if table is None:
                continue
            pinned = {**{j: pinned[j] for j in set(t_rest.tolist())}, k: table}  # the tables still to read
            t = np.concatenate([t_rest, np.full(len(table), k, np.intp)])  # (N,)
            w = np.concatenate([w_rest, np.arange(len(table), dtype=np.intp)])  # (N,)
            t_rest, w_rest = yield from _full_batches(self.read, pinned, t, w, size)
        if len(t_rest):
            yield self.read(TableBatch(pinned, t_rest, w_rest))
