"""BufferPool: an array is handed out again only once nothing outside the pool refers to it.
CopyThreads: every row range copied once, in this thread or a pool that survives fork."""

from __future__ import annotations

import mmap
import os
import signal

import numpy as np
import pytest
import torch

from neurofm.pipelines.buffers import BufferPool, CopyThreads


MAPPED, MALLOC = 0, 1 << 40  # map_bytes: every array mapped / none


@pytest.mark.parametrize("map_bytes", [MAPPED, MALLOC])
def test_a_released_array_is_reused(map_bytes: int) -> None:
    pool = BufferPool(map_bytes=map_bytes)
    a = pool.empty((4, 5))
    ptr = a.ctypes.data
    del a
    assert pool.empty((4, 5)).ctypes.data == ptr


@pytest.mark.parametrize("map_bytes", [MAPPED, MALLOC])
def test_arrays_in_use_are_not_reused(map_bytes: int) -> None:
    pool = BufferPool(size=8, map_bytes=map_bytes)
    held = pool.empty((4, 5))
    as_tensor = torch.from_numpy(pool.empty((4, 5)).reshape(2, 10))  # only the tensor holds this one
    view = pool.empty((4, 5))[1:]  # only a slice
    column = pool.empty((4, 5)).reshape(20)[::2]  # a view of a view
    fresh = pool.empty((4, 5))
    pointers = [held.ctypes.data, as_tensor.data_ptr(), view.ctypes.data - 5 * 4, column.ctypes.data,
                fresh.ctypes.data]
    assert len(set(pointers)) == 5
    del as_tensor
    again = pool.empty((4, 5))
    assert again.ctypes.data == pointers[1]  # the only one released
    assert pool.empty((4, 5)).ctypes.data not in pointers


def test_large_arrays_are_private_mappings_that_a_forked_child_does_not_share() -> None:
    pool = BufferPool(map_bytes=64)
    big, small = pool.empty((4, 16)), pool.empty((2, 2))
    assert isinstance(big.base.base.obj, mmap.mmap) and small.base.flags.owndata  # root: frombuffer / np.empty
    big[:] = 1.0
    pid = os.fork()
    if pid == 0:  # the child writes its copy, and always exits
        try:
            big[:] = 2.0
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert (big == 1.0).all()
    assert big.flags.writeable and torch.from_numpy(big).sum() == 64


@pytest.mark.parametrize("map_bytes", [MAPPED, MALLOC])
def test_shapes_and_dtypes_have_their_own_arrays(map_bytes: int) -> None:
    pool = BufferPool(map_bytes=map_bytes)
    assert pool.empty((2, 3)).shape == (2, 3)
    assert pool.empty((3, 2)).shape == (3, 2)
    assert pool.empty((2, 3), np.int64).dtype == np.int64


def test_the_pool_is_bounded() -> None:
    pool = BufferPool(size=2)
    held = [pool.empty((8,)) for _ in range(5)]
    assert sum(len(roots) for roots in pool._roots.values()) == 2
    assert len({a.ctypes.data for a in held}) == 5


@pytest.mark.parametrize("threads, n_rows", [(1, 10), (3, 10), (3, 2), (4, 1), (3, 0)])
def test_copy_threads_run_every_row_once(threads: int, n_rows: int) -> None:
    calls: list[tuple[int, int]] = []
    CopyThreads(threads, min_bytes=0).run(lambda a, b: calls.append((a, b)), n_rows, nbytes=1)
    assert sorted(calls)[0][0] == 0 and sorted(calls)[-1][1] == n_rows
    assert sum(b - a for a, b in calls) == n_rows and len(calls) == max(1, min(threads, n_rows))
    small: list[tuple[int, int]] = []
    CopyThreads(threads, min_bytes=100).run(lambda a, b: small.append((a, b)), n_rows, nbytes=99)
    assert small == [(0, n_rows)]  # below min_bytes: one call, in this thread


def test_copy_threads_work_in_a_forked_child() -> None:
    copier = CopyThreads(2, min_bytes=0)
    out = np.zeros(8)
    copier.run(lambda a, b: out.__setitem__(slice(a, b), 1.0), 8, nbytes=1)  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # the child's copy of the pool has no threads: a new one must be made
        code = 1
        try:
            signal.alarm(20)
            child = np.zeros(8)
            copier.run(lambda a, b: child.__setitem__(slice(a, b), 2.0), 8, nbytes=1)
            code = 0 if (child == 2.0).all() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and (out == 1.0).all()
