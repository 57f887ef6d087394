"""BufferPool: an array is handed out again only once nothing outside the pool refers to it."""

from __future__ import annotations

import numpy as np
import torch

from neurofm.pipelines.buffers import BufferPool


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
