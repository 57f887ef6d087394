"""Result rows: one JSON line per (model, fold, seed), with everything needed to trust and reproduce it."""

from __future__ import annotations

import json
import math
import os
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

ROW_FORMAT = "neurofm-result/1"
REQUIRED = ("format", "model", "model_config_sha256", "dataset", "data_hash", "protocol", "adapt", "seed",
            "subject", "fold_id", "metrics", "n_train", "n_test")


@dataclass
class ResultRow:
    model: str
    model_config_sha256: str
    weights_sha256: str | None
    dataset: str
    data_hash: str
    index_path: str
    protocol: str
    adapt: str
    seed: int
    subject: str
    fold_id: str
    k: int | None
    test_session: str | None
    n_train: int
    n_val: int
    n_test: int
    metrics: dict[str, float]
    wall_s: float
    config: dict[str, Any]
    oracle: float | None = None  # synthetic data: the generator's oracle for this subject, in the task's primary
    # metric (balanced accuracy; R² for regression; ``synthetic.oracle_score``)
    test_run: str | None = None  # loro: the run tested (within test_session)
    task: str = "classification"  # or "regression" (tasks.py): which metrics the row holds
    # What fitting chose on the validation split (classical heads: {"alpha": 10.0, "by": "validation MSE"});
    # not in ``config``, which is hashed into the row key and must be known before fitting (resume).
    selected: dict[str, Any] | None = None
    git_sha: str = field(default_factory=lambda: git_sha())
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    format: str = ROW_FORMAT

    def key(self) -> tuple:
        return row_key(asdict(self))


def row_key(row: dict[str, Any]) -> tuple:
    """What makes two rows the same experiment (a rerun skips it; the leaderboard rejects duplicates).

    Not ``weights_sha256``: it is known only after fitting (a random initialisation depends on the
    seed), so a rerun could never match it. Pretrained weights enter the config (their file's sha256).
    """
    return (row["model"], row["model_config_sha256"], row["dataset"], row["data_hash"], row["protocol"],
            row["adapt"], row["fold_id"])


@lru_cache(maxsize=1)
def git_sha() -> str:
    """The code version: the git commit of the checkout (+ "-dirty" with local changes), else "unknown"."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def append_row(path: str | Path, row: ResultRow) -> None:
    """Append one line and flush it to disk: a killed run loses at most the fold in progress."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _drop_torn_tail(path)
    line = json.dumps(asdict(row), allow_nan=True, sort_keys=True)
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line without its newline (written by a killed run) before appending after it."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a results file, or of every ``*.jsonl`` in a folder; a torn last line (a kill) is ignored."""
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    rows = []
    for file in files:
        lines = file.read_text().splitlines()
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if i == len(lines) - 1:
                    continue  # the line a killed run was writing
                raise ValueError(f"{file}:{i + 1}: not a JSON line") from None
            row["_source"] = f"{file}:{i + 1}"
            rows.append(row)
    return rows


def is_finite_metrics(metrics: dict[str, Any]) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in metrics.values())
