"""Errors a user caused (bad manifest, missing data, wrong arguments): the CLI prints them plainly."""

from __future__ import annotations

from .availability import DataNotAvailableError
from .manifest import ManifestError
from .prepare import PrepareError
from .shards import IndexMergeError

UserFacingErrors = (ManifestError, DataNotAvailableError, PrepareError, IndexMergeError, FileNotFoundError)
