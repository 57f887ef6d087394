"""Fixtures shared by the test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA_ENV = "NEUROFM_SHARED_DATA"


def shared_data_root() -> Path:
    """Where the real recordings live: ``$NEUROFM_SHARED_DATA``, else ``../shared/data``."""
    override = os.environ.get(SHARED_DATA_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def requires_shared_data(relative: str = "") -> Path:
    """Path of ``relative`` inside the shared data; skips the calling test when it is absent."""
    path = shared_data_root() / relative
    if not path.exists():
        pytest.skip(f"real recording not found: {path} (set {SHARED_DATA_ENV} to its folder)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the shared real recordings (see its README.md); skips when it is absent."""
    return requires_shared_data()
