"""Batch arrays that are recycled once nobody holds them any more.

A training loop keeps batch k alive while the loader builds batch k+1. Fresh multi-megabyte arrays
then come from the kernel every time (glibc returns a freed large chunk at the top of the heap, and
mmapped chunks, to the system), and the first write to each page costs a page fault: on a 2-core VM
that was a third of the loader's time per window. The pool hands out a buffer it made before when
the only references left to the buffer's root array are the pool's own, which in CPython is exactly
when every tensor and view built on what it handed out has been freed (numpy views refer to the root;
``torch.from_numpy`` keeps a reference to its array).

The arrays are uninitialised (as ``np.empty``): callers write every element they hand out. The
reference count test relies on the GIL (a pool shared by loaders in several threads is safe under
it; free-threaded Python would need a lock in ``empty``).
"""

from __future__ import annotations

import math
import mmap
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# References held while `_free` looks at a pooled array: the pool's list, the loop variable and
# getrefcount's own argument.
_POOL_REFS = 3


class BufferPool:
    """At most ``size`` arrays per (shape, dtype); a free one is reused, else a new one is made.

    An array of ``map_bytes`` or more gets its own private anonymous mapping rather than malloc's
    memory (after MNE's ~10 MB arrays are freed, glibc serves multi-megabyte arrays from its heap):
    later train epochs ran 5-8% faster with it, in a fresh process and in one that had run
    ``prepare`` (60 interleaved passes each, docs/benchmarks.md).

    The pool keeps each buffer's 1-D *root* array and hands out ``root.reshape(shape)``: every view
    numpy makes of a hand-out (slices, reshapes, ``torch.from_numpy``) refers to the root, so the
    root's reference count says whether any is alive. (A view of a view of a mapping refers to the
    first array made on the mapping, not to the view it was made from.)
    """

    def __init__(self, size: int = 4, map_bytes: int = 1 << 20) -> None:
        self.size, self.map_bytes = size, map_bytes
        self._roots: dict[tuple[tuple[int, ...], str], list[np.ndarray]] = {}

    def empty(self, shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> np.ndarray:
        """An array of ``shape``/``dtype`` that no one else references (contents undefined)."""
        shape, dtype = tuple(shape), np.dtype(dtype)
        pool = self._roots.setdefault((shape, dtype.str), [])
        for root in pool:
            if sys.getrefcount(root) <= _POOL_REFS:
                return root.reshape(shape)
        root = _new_root(math.prod(shape), dtype, self.map_bytes)
        pool.append(root)
        if len(pool) > self.size:
            pool.pop(0)  # the oldest is still in use somewhere; it is simply no longer recycled
        return root.reshape(shape)

    def clear(self) -> None:
        self._roots.clear()


def _new_root(count: int, dtype: np.dtype, map_bytes: int) -> np.ndarray:
    """A 1-D array of ``count`` elements that every view of it refers to (its data's owner)."""
    if count * dtype.itemsize < max(map_bytes, 1) or not hasattr(mmap, "MAP_PRIVATE"):  # small, or not POSIX
        return np.empty(count, dtype)
    # MAP_PRIVATE: a forked child gets a copy-on-write view (mmap's default, MAP_SHARED, would share
    # every write between parent and child)
    return np.frombuffer(mmap.mmap(-1, count * dtype.itemsize, flags=mmap.MAP_PRIVATE), dtype, count)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may run on (SLURM binds tasks to CPUs)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class CopyThreads:
    """Rows of a batch copied by several threads: numpy releases the GIL while it copies, and one
    thread does not saturate memory bandwidth (2 threads: 1.2-1.4x faster copies on 2 vCPUs).

    ``run(copy_rows, n_rows, nbytes)`` calls ``copy_rows(start, stop)`` on consecutive row ranges,
    one in the calling thread and the others in a pool; a batch of fewer than ``min_bytes`` is
    copied in the calling thread alone (a hand-off costs ~20-50 µs). The pool is made on first use,
    under a lock, and made anew in a forked child (whose copy of it has no threads).
    """

    def __init__(self, threads: int | None = None, min_bytes: int = 4 << 20) -> None:
        self.threads = threads or max(1, min(4, _usable_cpus()))
        self.min_bytes = min_bytes
        self._pool: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def run(self, copy_rows: Callable[[int, int], object], n_rows: int, nbytes: int) -> None:
        n = max(1, min(self.threads, n_rows)) if nbytes >= self.min_bytes else 1
        if n == 1:
            copy_rows(0, n_rows)
            return
        bounds = [n_rows * k // n for k in range(n + 1)]
        pool = self._get_pool()
        futures = [pool.submit(copy_rows, a, b) for a, b in zip(bounds[1:-1], bounds[2:])]
        copy_rows(bounds[0], bounds[1])
        for future in futures:
            future.result()

    def _get_pool(self) -> ThreadPoolExecutor:
        if self._pid != os.getpid():  # a forked child: the parent's lock may be held, its threads are gone
            self._pid, self._lock, self._pool = os.getpid(), threading.Lock(), None
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="neurofm-copy")
            return self._pool
