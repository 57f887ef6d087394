#!/usr/bin/env python
"""Linear probing with and without the feature cache: one LOSO run each, side by side.

``adapt=linear`` freezes the backbone, so a window's pooled features depend only on the weights and
the window: ``neurofm.eval.deep.features`` computes them once per (weights sha256, window digest)
and reuses them in every later fold. Leave one subject out over S subjects shows each window to the
backbone in every fold (S - 1 times as training or validation, once as test), so without the cache
the encoder runs about S times as often. This script times ``run_benchmark`` (LOSO, linear probe)
on a prepared dataset (default: ``synthetic_mi``, 9 subjects, prepared under ``--out`` when absent):

- **cached**: the cache emptied once before the run (a first run: every window encoded once);
- **uncached**: the cache emptied before every fold (each fold encodes all its windows itself),

in ``--repeats`` alternating rounds after an untimed warm-up fold, and prints per condition the best
and median seconds, the windows encoded and the balanced accuracy (which must not change), then the
ratio uncached / cached. Emptying the cache between folds is the same as running without it: within
one fold every window is encoded once either way (train, validation and test are disjoint).

    python scripts/bench_eval.py                                  # tiny random backbone, under a minute on 2 cores
    python scripts/bench_eval.py --weights runs/pretrain/tiny_mae/backbone --repeats 3
    python scripts/bench_eval.py --dataset runs/shards/synthetic_mi --json bench_eval.json

Results: docs/benchmarks.md, "Evaluation: the linear-probe feature cache".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from neurofm.eval import deep
from neurofm.eval.harness import run_benchmark
from neurofm.eval.models import EvalModel, build_model
from neurofm.pipelines.prepare import prepare
from neurofm.throughput import cpu_model

DEFAULT_MANIFEST = "synthetic_mi"  # 9 subjects: 9 LOSO folds


@dataclass
class Condition:
    """One way of running the probe, and what its timed runs measured."""

    key: str  # "cached" or "uncached"
    label: str
    seconds: list[float] = field(default_factory=list)
    encoded: list[int] = field(default_factory=list)  # windows the backbone encoded, per run
    scores: list[float] = field(default_factory=list)  # mean balanced accuracy, per run


class CountingCache(dict):
    """The feature cache, counting the windows stored (= encoded by the backbone)."""

    def __init__(self) -> None:
        super().__init__()
        self.stored = 0

    def __setitem__(self, key: Any, value: Any) -> None:
        self.stored += 1
        super().__setitem__(key, value)


@contextmanager
def counting_cache() -> Iterator[CountingCache]:
    """``deep._FEATURES`` (the module-level dict ``features`` looks up at each call) replaced by a
    counting one for the duration; the original is put back after."""
    before, cache = deep._FEATURES, CountingCache()
    deep._FEATURES = cache
    try:
        yield cache
    finally:
        deep._FEATURES = before


def model_factory(options: dict[str, Any], cache: CountingCache, per_fold_reset: bool) -> Callable[[], EvalModel]:
    """The harness calls this once before the folds and once per fold: emptying the cache here
    (uncached) makes every fold encode its windows anew."""
    def make() -> EvalModel:
        if per_fold_reset:
            cache.clear()
        return build_model("neurofm", adapt="linear", **options)
    return make


def timed_run(condition: Condition, index: Path, options: dict[str, Any], cache: CountingCache) -> None:
    cache.clear()
    start = cache.stored
    with tempfile.TemporaryDirectory() as out:  # fresh results: a rerun would skip the folds
        t0 = time.perf_counter()
        summary = run_benchmark(model_factory(options, cache, condition.key == "uncached"), index, "loso",
                                "linear", seeds=(0,), out=out, progress=False)
        condition.seconds.append(time.perf_counter() - t0)
    condition.encoded.append(cache.stored - start)
    condition.scores.append(statistics.fmean(r["metrics"]["balanced_accuracy"] for r in summary.rows))


def warm_up(index: Path, options: dict[str, Any]) -> None:
    """One untimed fold: imports, the first forward passes, the data in the page cache."""
    with tempfile.TemporaryDirectory() as out:
        run_benchmark("neurofm", index, "loso", "linear", seeds=(0,), out=out, part=f"0/{_n_subjects(index)}",
                      progress=False, model_options=options)


def _n_subjects(index: Path) -> int:
    from neurofm.pipelines.loader import load_index

    return len(load_index(index).subjects)


def print_conditions(console: Console, title: str, conditions: list[Condition]) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("condition", "best s", "median s", "windows encoded", "balanced accuracy"):
        table.add_column(column, justify="left" if column == "condition" else "right")
    for c in conditions:
        table.add_row(c.label, f"{min(c.seconds):.2f}", f"{statistics.median(c.seconds):.2f}",
                      f"{statistics.median(c.encoded):,.0f}", f"{statistics.median(c.scores):.4f}")
    console.print(table)


def ratios(cached: Condition, uncached: Condition) -> dict[str, float]:
    return {"seconds_best": min(uncached.seconds) / min(cached.seconds),
            "seconds_median": statistics.median(uncached.seconds) / statistics.median(cached.seconds),
            "windows_encoded": statistics.median(uncached.encoded) / statistics.median(cached.encoded)}


def dataset_index(args: argparse.Namespace, console: Console) -> Path:
    if args.dataset is not None:
        return args.dataset if args.dataset.is_file() else args.dataset / "index.json"
    summary = prepare(DEFAULT_MANIFEST, str(args.out / DEFAULT_MANIFEST), workers=2, progress=False)
    if summary.n_failed:
        raise SystemExit(f"preparing {DEFAULT_MANIFEST} failed for {summary.n_failed} recording(s)")
    console.print(f"prepared {DEFAULT_MANIFEST}: {summary.index}")
    return Path(summary.index)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=None,
                        help=f"a prepared dataset (folder or index.json); default: {DEFAULT_MANIFEST}, prepared "
                             "under --out")
    parser.add_argument("--out", type=Path, default=Path("runs/shards"), help="where to prepare the default dataset")
    parser.add_argument("--weights", default=None, help="a backbone folder (save_pretrained); default: random tiny")
    parser.add_argument("--preset", default="tiny", help="backbone preset without --weights (default tiny)")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds, alternating conditions (default 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: two stall on a shared 2-core machine)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    console = Console(width=None if Console().is_terminal else 200)
    index = dataset_index(args, console)
    options = {"weights": args.weights} if args.weights else {"preset": args.preset}
    load_before = os.getloadavg()
    console.print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC | {cpu_model()} | {os.cpu_count()} cores, "
                  f"{args.threads} thread(s) | load average {load_before[0]:.2f} {load_before[1]:.2f} "
                  f"{load_before[2]:.2f} | torch {torch.__version__} | {index}")
    conditions = [Condition("cached", "cached (features reused across folds)"),
                  Condition("uncached", "uncached (cache emptied every fold)")]
    with threadpool_limits(args.threads):  # numpy's BLAS too: the probe's fits
        warm_up(index, options)
        with counting_cache() as cache:
            for _ in range(args.repeats):
                for condition in conditions:
                    timed_run(condition, index, options, cache)
    load_after = os.getloadavg()
    n_subjects = _n_subjects(index)
    print_conditions(console, f"LOSO linear probe, {n_subjects} subjects, {args.weights or args.preset} backbone: "
                     f"{args.repeats} run(s) per condition", conditions)
    r = ratios(*conditions)
    console.print(f"uncached / cached: {r['seconds_best']:.2f}x (best), {r['seconds_median']:.2f}x (median) in time; "
                  f"{r['windows_encoded']:.1f}x the windows encoded | load average after {load_after[0]:.2f} "
                  f"{load_after[1]:.2f} {load_after[2]:.2f}")
    if conditions[0].scores != conditions[1].scores:
        console.print("[red]the cache changed the scores[/]: "
                      f"{conditions[0].scores} against {conditions[1].scores}")
        return 1
    if args.json:
        args.json.write_text(json.dumps({
            "cpu": cpu_model(), "cores": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
            "dataset": str(index), "subjects": n_subjects, "backbone": args.weights or args.preset,
            "load_before": load_before, "load_after": load_after, "ratios": r,
            "conditions": [c.__dict__ for c in conditions]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
