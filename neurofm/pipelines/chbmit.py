"""CHB-MIT's seizure times: ``chbNN/chbNN-summary.txt`` parsed into seizure spans per EDF file.

The summary opens with a sampling-rate line and "Channels in EDF Files" lists (repeated as "Channels
changed" where a montage changes), then has one block per EDF file::

    File Name: chb01_03.edf
    File Start Time: 13:43:04
    File End Time: 14:43:04
    Number of Seizures in File: 1
    Seizure Start Time: 2996 seconds
    Seizure End Time: 3036 seconds

Some cases number the seizures (``Seizure 1 Start Time: ...``); chb24 has no start/end clock times.
Times are seconds from the first sample of the file. Only ``File Name``, ``Number of Seizures`` and the
``Seizure ... Time`` lines are read; every other line is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_FILE = re.compile(r"^File\s+Name\s*:\s*(?P<name>\S+)\s*$", re.IGNORECASE)
_COUNT = re.compile(r"^Number\s+of\s+Seizures\s+in\s+File\s*:\s*(?P<n>\d+)\s*$", re.IGNORECASE)
_SEIZURE_LINE = re.compile(r"^Seizure\b", re.IGNORECASE)
_SEIZURE_TIME = re.compile(
    r"^Seizure(?:\s+\d+)?\s+(?P<edge>Start|End)\s+Time\s*:\s*(?P<t>\d+(?:\.\d+)?)\s*(?:s|sec|secs|seconds?)?\s*$",
    re.IGNORECASE)


class SummaryError(ValueError):
    """A summary file that cannot be read; the message names the file and the line."""


@dataclass
class FileSeizures:
    """The seizures of one EDF file, as the summary lists them."""

    name: str
    line: int  # of its "File Name:" line (1-based)
    declared: int | None = None  # "Number of Seizures in File"
    starts: list[tuple[float, int]] = field(default_factory=list)  # (seconds, line)
    ends: list[tuple[float, int]] = field(default_factory=list)

    def spans(self) -> list[tuple[float, float, int]]:
        """(start_s, end_s, line of the start) per seizure, in file order."""
        return [(s, e, line) for (s, line), (e, _) in zip(self.starts, self.ends)]


def summary_path(recording: Path) -> Path:
    """``chbNN/chbNN_MM.edf`` → ``chbNN/chbNN-summary.txt`` (chb17a_03.edf → chb17/chb17-summary.txt)."""
    return recording.parent / f"{recording.parent.name}-summary.txt"


def _check_block(block: FileSeizures, path: Path) -> None:
    where = f"{path}:{block.line} ({block.name})"
    if len(block.starts) != len(block.ends):
        raise SummaryError(f"{where}: {len(block.starts)} seizure start time(s) but {len(block.ends)} end time(s)")
    if block.declared is not None and block.declared != len(block.starts):
        raise SummaryError(f"{where}: 'Number of Seizures in File: {block.declared}' but "
                           f"{len(block.starts)} seizure(s) listed")
    previous_end = float("-inf")
    for start, end, line in sorted(block.spans()):
        if end <= start:
            raise SummaryError(f"{path}:{line} ({block.name}): seizure ends at {end:g} s, "
                               f"not after its start {start:g} s")
        if start < previous_end:
            raise SummaryError(f"{path}:{line} ({block.name}): seizure at {start:g} s overlaps the one before it")
        previous_end = end


def _read_line(line: str, number: int, block: FileSeizures | None, path: Path) -> FileSeizures | None:
    """Fold one line into the block being read; returns the block a ``File Name`` line opens, else None."""
    if m := _FILE.match(line):
        return FileSeizures(m["name"], number)
    if block is not None and (m := _COUNT.match(line)):
        block.declared = int(m["n"])
    elif _SEIZURE_LINE.match(line):
        m = _SEIZURE_TIME.match(line)
        if m is None:
            raise SummaryError(f"{path}:{number}: cannot read a seizure time from {line!r}")
        if block is None:
            raise SummaryError(f"{path}:{number}: a seizure time before any 'File Name:' line names its file")
        (block.starts if m["edge"].lower() == "start" else block.ends).append((float(m["t"]), number))
    return None


def parse_summary(path: Path) -> dict[str, FileSeizures]:
    """Every EDF file the summary lists, by file name, with its seizures (checked: starts match ends)."""
    if not path.is_file():
        raise FileNotFoundError(f"no CHB-MIT summary file {path} (seizure times are read from it)")
    blocks: dict[str, FileSeizures] = {}
    block: FileSeizures | None = None
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        opened = _read_line(line.strip(), number, block, path)
        if opened is not None:
            if opened.name in blocks:
                raise SummaryError(f"{path}:{number}: {opened.name} is listed twice (first on line "
                                   f"{blocks[opened.name].line})")
            block = blocks[opened.name] = opened
    for b in blocks.values():
        _check_block(b, path)
    return blocks


def seizure_spans(recording: Path, duration_s: float) -> list[tuple[float, float]]:
    """(start_s, end_s) of each seizure in one EDF file, read from its case's summary file."""
    path = summary_path(recording)
    blocks = parse_summary(path)
    if recording.name not in blocks:
        raise SummaryError(f"{path}: lists no 'File Name: {recording.name}', so its seizures are unknown")
    block = blocks[recording.name]
    for start, end, line in block.spans():
        if end > duration_s + 1.0:  # a second of slack: the summary's times are whole seconds
            raise SummaryError(f"{path}:{line}: seizure {start:g}-{end:g} s of {recording.name} ends after "
                               f"the file does ({duration_s:.1f} s)")
    return [(s, min(e, duration_s)) for s, e, _ in block.spans()]
