"""``run_benchmark``: models × folds × seeds → one result row per fold, resumable and splittable.

Per fold the harness builds a fresh model, calls ``fit(train, val, seed)`` with the fold's training
and validation windows only (``EvalData.take``: copies, no test window in them), and then
``predict_proba`` on the test signals alone; the scores are computed here from the held-back test
labels. Nothing the model fits can see a test window, whatever the model does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import EvalData, load_eval_data
from .models import EvalModel, build_model, config_sha256
from .oracle import oracle_by_subject
from .results import ResultRow, append_row, read_rows, row_key
from .splits import Fold, make_folds
from .tasks import DEFAULT_TASK, check_supports, get_task

ADAPTS = ("scratch", "linear", "finetune")


@dataclass
class BenchSummary:
    results: str  # the results file written
    n_tasks: int  # folds in this part
    n_done: int  # run now
    n_skipped: int  # already in the results file
    seconds: float
    rows: list[dict[str, Any]] = field(default_factory=list)  # every row of this part (old and new)


def parse_part(part: str | None) -> tuple[int, int]:
    """``"i/n"`` → (i, n), as ``neurofm prepare --part`` reads it; None → the whole grid (0, 1)."""
    from ..pipelines.prepare import parse_part as parse

    return (0, 1) if part is None else parse(part)


def results_file(out: str | Path, part: str | None) -> Path:
    i, n = parse_part(part)
    return Path(out) / ("results.jsonl" if n == 1 else f"results.part-{i}-of-{n}.jsonl")


def run_fold(model: EvalModel, data: EvalData, fold: Fold) -> tuple[dict[str, float], float]:
    """Fit on the fold's train/val windows, predict its test signals, score; (metrics, seconds).

    The dataset's task (``tasks.py``) says how: class probabilities and classification metrics (with
    event metrics on a seizure dataset), or ``predict`` (N,) and regression metrics. The score sees the
    test windows' labels, onsets and recordings; the model saw their signals only.
    """
    task = get_task(data.task)
    check_supports(model, task.name, data.dataset)
    t0 = time.perf_counter()
    model.fit(data.take(fold.train), data.take(fold.val) if fold.val.size else None, fold.seed)
    predictions = task.predict(model, data.x[fold.test])  # signals only: no label, subject or key
    return task.score(data.take(fold.test), predictions), time.perf_counter() - t0


def _row(model: EvalModel, data: EvalData, fold: Fold, adapt: str, metrics: dict[str, float],
         seconds: float, oracle: dict[str, float] | None) -> ResultRow:
    desc = model.describe()
    return ResultRow(model=model.model_id, model_config_sha256=config_sha256(desc["config"]),
                     weights_sha256=desc.get("weights_sha256"), dataset=data.dataset, data_hash=data.data_hash,
                     index_path=data.index_path, protocol=fold.protocol, adapt=adapt, seed=fold.seed,
                     subject=fold.test_subject, fold_id=fold.fold_id, k=fold.k, test_session=fold.test_session,
                     n_train=int(fold.train.size), n_val=int(fold.val.size), n_test=int(fold.test.size),
                     metrics=metrics, wall_s=round(seconds, 3), config=desc["config"],
                     oracle=None if oracle is None else oracle.get(fold.test_subject), test_run=fold.test_run,
                     task=data.task, selected=desc.get("selected") or None)


def run_benchmark(
    model: str | Callable[[], EvalModel],
    index: str | Path,
    protocol: str = "loso",
    adapt: str = "scratch",
    seeds: tuple[int, ...] = (0, 1, 2),
    out: str | Path = "runs/bench",
    part: str | None = None,
    progress: bool = True,
    model_options: dict[str, Any] | None = None,
    classes: tuple[str, ...] | None = None,
    **protocol_options: Any,
) -> BenchSummary:
    """Run (or resume) one model on one prepared dataset under one protocol; rows go to ``out``.

    ``classes``: evaluate only the windows of these classes (``load_eval_data``).
    """
    if adapt not in ADAPTS:
        raise ValueError(f"adapt={adapt!r} must be one of {ADAPTS}")
    make = model if callable(model) else (lambda: build_model(model, adapt=adapt, **(model_options or {})))
    t0 = time.perf_counter()
    data = load_eval_data(index, classes)
    # the generator's oracle scores its full class set: none for a selection of classes
    oracle = oracle_by_subject(data.index_path) if classes is None else None
    folds = make_folds(data, protocol, tuple(seeds), **protocol_options)
    i, n = parse_part(part)
    mine = folds[i::n]
    path = results_file(out, part)
    probe = make()
    check_supports(probe, data.task, data.dataset)  # before any fold runs
    done = {row_key(r): r for r in (read_rows(path) if path.exists() else [])}
    rows, n_done, n_skipped = [], 0, 0
    for fold in _progress(mine, progress, f"{probe.model_id} · {data.dataset} · {protocol}"):
        key = _row(probe, data, fold, adapt, {}, 0.0, oracle).key()
        if key in done:
            rows.append(done[key])
            n_skipped += 1
            continue
        fitted = make()
        metrics, seconds = run_fold(fitted, data, fold)
        row = _row(fitted, data, fold, adapt, metrics, seconds, oracle)
        append_row(path, row)
        rows.append(row.__dict__)
        n_done += 1
    return BenchSummary(results=str(path), n_tasks=len(mine), n_done=n_done, n_skipped=n_skipped,
                        seconds=time.perf_counter() - t0, rows=rows)


def _progress(folds: list[Fold], enabled: bool, label: str) -> Iterator[Fold]:
    if not enabled:
        yield from folds
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task(label, total=len(folds))
        for fold in folds:
            yield fold
            bar.advance(task)


def summarize(rows: list[dict[str, Any]], metric: str | None = None) -> dict[str, float]:
    """Mean, std and n of ``metric`` over rows (default: the primary metric of the first row's task)."""
    metric = metric or get_task(rows[0].get("task", DEFAULT_TASK)).primary
    values = np.array([r["metrics"][metric] for r in rows], dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "n": int(len(values))}
