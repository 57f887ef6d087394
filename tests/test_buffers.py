"""BufferPool: an array is handed out again only once nothing outside the pool refers to it.
CopyThreads: every row range copied once, in this thread or a pool that survives fork."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch

from neurofm.pipelines.buffers import BufferPool, CopyThreads


def test_a_released_array_is_reused() -> None:
    pool = BufferPool()
    a = pool.empty((4, 5))
    ptr = a.ctypes.data
    del a
    assert pool.empty((4, 5)).ctypes.data == ptr


def test_arrays_in_use_are_not_reused() -> None:
    pool = BufferPool(size=8)
    held = pool.empty((4, 5))
    as_tensor = torch.from_numpy(pool.empty((4, 5)).reshape(2, 10))  # only the tensor holds this one
    view = pool.empty((4, 5))[1:]
    fresh = pool.empty((4, 5))
    pointers = {held.ctypes.data, as_tensor.data_ptr(), view.base.ctypes.data, fresh.ctypes.data}
    assert len(pointers) == 4
    del as_tensor
    assert pool.empty((4, 5)).ctypes.data not in {held.ctypes.data, view.base.ctypes.data, fresh.ctypes.data}


def test_shapes_and_dtypes_have_their_own_arrays() -> None:
    pool = BufferPool()
    assert pool.empty((2, 3)).shape == (2, 3)
    assert pool.empty((3, 2)).shape == (3, 2)
    assert pool.empty((2, 3), np.int64).dtype == np.int64


def test_the_pool_is_bounded() -> None:
    pool = BufferPool(size=2)
    held = [pool.empty((8,)) for _ in range(5)]
    assert sum(len(arrays) for arrays in pool._arrays.values()) == 2
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
