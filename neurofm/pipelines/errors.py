"""Errors a user caused (bad manifest, missing data, wrong arguments): the CLI prints them plainly.

Defined here, free of heavy imports, so that the command line can catch them without importing
MNE, webdataset or torch; the modules that raise them re-export them under their old homes.
"""

from __future__ import annotations


class DataNotAvailableError(FileNotFoundError):
    """A dataset whose data is not on this machine; the message says where we looked and what to do."""


class ManifestError(ValueError):
    """A manifest that cannot be used; the message lists every problem with its field path."""


class PrepareError(RuntimeError):
    """A prepare run that cannot start or continue as asked (empty source, mismatched output folder)."""


class IndexMergeError(ValueError):
    """Partial indexes that cannot be merged (different datasets or preprocessing, missing parts)."""


class TrainingSettingsError(ValueError):
    """Settings a training command cannot run with: data that does not fit (``data.*``: unknown
    subjects, mixed sampling rates, a malformed index) or trainer settings Lightning refuses here
    (``trainer.*``: FSDP or a GPU on a machine without one). The message names the fields."""


UserFacingErrors = (ManifestError, DataNotAvailableError, PrepareError, IndexMergeError, TrainingSettingsError,
                    FileNotFoundError)
