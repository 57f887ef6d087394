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


@pytest.fixture(scope="session")
def tiny_mi_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``shardkit.TINY_MI_MANIFEST`` prepared once: synthetic motor imagery, 3 subjects × 2 runs,
    2 s windows resampled to 200 Hz (2 patches), 22 channels."""
    import yaml
    from shardkit import TINY_MI_MANIFEST

    from neurofm.pipelines.prepare import prepare

    root = tmp_path_factory.mktemp("tiny_mi")
    (root / "m.yaml").write_text(yaml.safe_dump(TINY_MI_MANIFEST))
    assert prepare(str(root / "m.yaml"), str(root / "shards"), progress=False).n_failed == 0
    return root / "shards" / "index.json"
