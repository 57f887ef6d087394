"""Batch arrays that are recycled once nobody holds them any more.

A training loop keeps batch k alive while the loader builds batch k+1. Fresh multi-megabyte arrays
then come from the kernel every time (glibc returns a freed large chunk at the top of the heap, and
mmapped chunks, to the system), and the first write to each page costs a page fault: on a 2-core VM
that was a third of the loader's time per window. The pool hands out an array it made before when
the only references left to it are the pool's own, which in CPython is exactly when every tensor and
view built on it (``torch.from_numpy`` keeps a reference to the array) has been freed.

The arrays are uninitialised (as ``np.empty``): callers write every element they hand out.
"""

from __future__ import annotations

import sys

import numpy as np

# References held while `_free` looks at a pooled array: the pool's list, the loop variable and
# getrefcount's own argument.
_POOL_REFS = 3


class BufferPool:
    """At most ``size`` arrays per (shape, dtype); a free one is reused, else a new one is made."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._arrays: dict[tuple[tuple[int, ...], str], list[np.ndarray]] = {}

    def empty(self, shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> np.ndarray:
        """An array of ``shape``/``dtype`` that no one else references (contents undefined)."""
        pool = self._arrays.setdefault((tuple(shape), np.dtype(dtype).str), [])
        for array in pool:
            if sys.getrefcount(array) <= _POOL_REFS:
                return array
        array = np.empty(shape, dtype)
        pool.append(array)
        if len(pool) > self.size:
            pool.pop(0)  # the oldest is still in use somewhere; it is simply no longer recycled
        return array

    def clear(self) -> None:
        self._arrays.clear()
