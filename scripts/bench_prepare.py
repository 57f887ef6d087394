#!/usr/bin/env python
"""Data preparation and loading on CPU: neurofm against plain MNE and a numpy memmap.

In one run, on the same recordings (default: the 14 PhysioNet EDFs in ../shared/data/real/eegbci_S001,
as data_manifests/physionet_s001_all.yaml cuts them; ``--synthetic`` adds synthetic_mi, ``--long 10``
synthetic_pretrain with 10-minute runs), it times:

1. plain MNE in one process, as a user would write it with MNE's defaults: read, ``filter(0.1, 75)``
   (FIR), ``notch_filter(line)``, ``set_eeg_reference("average")``, ``resample(200)`` (FFT); no shards;
2. ``neurofm.pipelines.prepare.prepare`` into a fresh temporary folder with 1 and 2 workers (and, unless
   ``--quick``, the ``filter_method="fir"`` and ``resample_method="fft"`` variants with 1 worker);
3. reading every window of the prepared dataset: ``iter_samples`` (eval mode, one Sample at a time),
   the DataModule eval and train loaders, against ``np.load(mmap_mode="r")`` of one .npy holding the
   same windows, read window by window and each copied (in order, and in a random order: the
   like-for-like baseline of the shuffling train loader), or in batches. First epochs (window tables
   read and shards mapped anew) are compared with a memmap mapped anew, later epochs (the loader keeps
   its shards mapped) with a memmap kept open across passes. The readers are timed in a fresh process,
   as a training run reads what ``prepare`` wrote (``--same-process``: in the one that ran prepare).

Every timing is repeated (``--repeats`` times for preparation, ``--load-repeats`` for loading), each
round in a new random order (so a change of machine load hits all of them alike), after one untimed
warm-up; the table shows the best and the median, and the ratios use the best (the least disturbed
by other processes on a shared machine). Results: docs/benchmarks.md.

    python scripts/bench_prepare.py             # ~2-3 minutes on 2 cores
    python scripts/bench_prepare.py --quick     # one repeat, no variants (~30 s)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import mne
import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from neurofm.pipelines.loader import ShardDataModule, iter_samples, load_index
from neurofm.pipelines.windowtable import clear_table_cache
from neurofm.pipelines.manifest import load_manifest, manifests_dir
from neurofm.pipelines.prepare import prepare
from neurofm.pipelines.sources import list_items, load_item
from neurofm.throughput import cpu_model

REPO = Path(__file__).resolve().parents[1]
PREPARE_TARGET = 2.0  # prepare (2 workers) / plain MNE, recordings per second
LOADER_TARGET = 0.8  # loader / numpy memmap, windows per second


def shared_data_root() -> Path:
    """``$NEUROFM_SHARED_DATA``, else ``../shared/data`` beside the repository (as tests/conftest.py)."""
    override = os.environ.get("NEUROFM_SHARED_DATA")
    return Path(override) if override else REPO.parent / "shared" / "data"


@dataclass
class Timing:
    """Repeated wall-clock timings of one thing that processes ``count`` ``unit``s per run."""

    name: str
    unit: str  # "rec" or "win"
    count: int = 0
    seconds: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        """Throughput of the best run, in units per second."""
        return self.count / self.best


@dataclass
class Dataset:
    """A manifest to prepare, and how plain MNE reads the same recordings."""

    label: str
    manifest: Path
    line_freq: float | None  # for the plain-MNE notch


def _write_manifest(data: dict, folder: Path, name: str, **preprocessing) -> Path:
    data = {**data, "preprocessing": {**(data.get("preprocessing") or {}), **preprocessing}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def physionet_dataset(data_dir: Path, folder: Path) -> Dataset:
    """physionet_s001_all (fixed 4 s windows, 60 Hz mains) with its root set to ``data_dir``."""
    data = yaml.safe_load((manifests_dir() / "physionet_s001_all.yaml").read_text())
    data["source"]["root"] = str(data_dir.resolve())
    return Dataset("PhysioNet EEGMMIDB S001 (EDF)", _write_manifest(data, folder, "physionet"), line_freq=60.0)


def synthetic_dataset(folder: Path) -> Dataset:
    data = yaml.safe_load((manifests_dir() / "synthetic_mi.yaml").read_text())
    return Dataset("synthetic_mi", _write_manifest(data, folder, "synthetic_mi"), line_freq=None)


def long_synthetic_dataset(folder: Path, minutes: float) -> Dataset:
    """synthetic_pretrain (64 channels, fixed 4 s windows) with runs of ``minutes``: a shard per run
    then holds ``15 * minutes`` windows, where a PhysioNet run gives 15-30."""
    data = yaml.safe_load((manifests_dir() / "synthetic_pretrain.yaml").read_text())
    # each class has a 10 s state epoch per trial: 2 classes x trials x 10 s per run
    trials = max(1, round(minutes * 60 / 20))
    data["source"]["generator"]["trials_per_class"] = trials
    label = f"synthetic_pretrain, {trials * 20 / 60:g}-minute runs"
    return Dataset(label, _write_manifest(data, folder, "synthetic_long"), line_freq=None)


def variant(dataset: Dataset, folder: Path, **preprocessing) -> Path:
    """The dataset's manifest with preprocessing overrides (e.g. filter_method="fir")."""
    data = yaml.safe_load(dataset.manifest.read_text())
    name = dataset.manifest.stem + "_" + "_".join(f"{k}-{v}" for k, v in preprocessing.items())
    return _write_manifest(data, folder, name, **preprocessing)


# ------------------------------------------------------------------------------------------------
# what is timed


def plain_mne(dataset: Dataset) -> int:
    """Read + band-pass + notch + average reference + resample with MNE defaults; returns recordings."""
    manifest = load_manifest(dataset.manifest)
    items = list_items(manifest)
    for item in items:
        if manifest.source.kind == "files":
            raw = mne.io.read_raw(item.path, preload=True, verbose="error", **manifest.source.read_kwargs)
        else:  # synthetic: the generator is the "read" for both
            raw = load_item(manifest, item)[0].raw
        line = dataset.line_freq or raw.info["line_freq"] or 50.0
        raw.filter(0.1, 75.0, verbose="error")
        raw.notch_filter(line, verbose="error")
        raw.set_eeg_reference("average", verbose="error")
        raw.resample(200.0, verbose="error")
        raw.get_data()
    return len(items)


def neurofm_prepare(manifest: Path, out: Path, workers: int) -> int:
    shutil.rmtree(out, ignore_errors=True)  # fresh every time: nothing is resumed
    summary = prepare(str(manifest), str(out), workers=workers, progress=False)
    if summary.n_failed:
        raise RuntimeError(f"prepare failed on {summary.n_failed} recording(s): {summary.failures}")
    return summary.n_items


def memmap_windows(index: Path, npy: Path) -> int:
    """The same windows as ``index`` in one (N, C, T) .npy (written once, not timed)."""
    windows = [s.x for s in iter_samples(index)]
    np.save(npy, np.stack(windows))
    return len(windows)


def open_memmap(npy: Path | np.ndarray) -> np.ndarray:
    """A path is mapped anew (a first epoch: every page faulted in again); an open memmap is reused
    (later epochs, like a loader that keeps its shards mapped)."""
    return np.load(npy, mmap_mode="r") if isinstance(npy, Path) else npy  # (N, C, T)


def memmap_windows_iter(npy: Path | np.ndarray, order: str = "in order") -> Iterator[np.ndarray]:
    """Window by window, each copied (a loader hands out its own array); ``"random"``: a shuffled order."""
    x = open_memmap(npy)  # (N, C, T)
    rows = np.random.default_rng(0).permutation(len(x)) if order == "random" else range(len(x))
    for i in rows:
        yield np.array(x[i])[None]  # (1, C, T)


def memmap_batches(npy: Path | np.ndarray, batch_size: int, order: str = "in order") -> Iterator[np.ndarray]:
    """One new (B, C, T) array per batch: a slice in order, or a random draw (rows read in file order)."""
    x = open_memmap(npy)  # (N, C, T)
    if order == "random":
        perm = np.random.default_rng(0).permutation(len(x))
        for start in range(0, len(x) - batch_size + 1, batch_size):
            yield x[np.sort(perm[start:start + batch_size])]
    else:
        for start in range(0, len(x), batch_size):
            yield np.array(x[start:start + batch_size])


def consume(batches: Iterable) -> int:
    """Windows handed out, consumed as a training loop does: batch k is held while batch k+1 is made."""
    n = 0
    for batch in batches:
        n += len(batch)
    return n


def consume_dropping(batches: Iterable) -> int:
    """Windows handed out, each batch dropped before the next is made (no consumer ever does this:
    the allocator then hands the same, cache-hot block back for every batch)."""
    return sum(map(len, batches))  # each batch is released as soon as its length is taken


def read_iter_samples(index: Path) -> int:
    clear_table_cache()  # every timed pass opens (reads and checks) the window tables anew
    return consume([s] for s in iter_samples(index))


def eval_module(index: Path, batch_size: int) -> ShardDataModule:
    return ShardDataModule(index, batch_size=batch_size, val_subjects=load_index(index).subjects)


def read_eval_loader(index: Path, batch_size: int) -> int:
    """A first epoch: index read, DataModule built, window tables read and checked."""
    clear_table_cache()
    return consume(eval_module(index, batch_size).val_dataloader())


def read_train_loader(index: Path, batch_size: int, workers: int) -> int:
    """A first epoch of the train loader (n_samples // batch_size full batches, shuffle buffer 1000)."""
    clear_table_cache()
    dm = ShardDataModule(index, batch_size=batch_size, num_workers=workers, seed=0)
    return consume(dm.train_dataloader())


def later_epochs(make_loader: Callable[[], Iterable]) -> Callable[[], int]:
    """Each call is the next epoch of one loader (built once, as a training run does; tables cached)."""
    loader = make_loader()
    return lambda: consume(loader)


# ------------------------------------------------------------------------------------------------
# running and reporting


def run_round_robin(timings: list[tuple[Timing, Callable[[], int]]], repeats: int, warmup: bool) -> None:
    """Run every callable once untimed (``warmup``), then ``repeats`` timed rounds over all of them.

    Each round runs them in a new (seeded) random order: a reader's pass can be slower right after
    some others (15-25% right after the random memmap batches, whichever reader), and rotating one
    fixed order would keep every reader after the same neighbour.
    """
    if warmup:
        for timing, fn in timings:
            timing.count = fn()
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        for k in rng.permutation(len(timings)):
            timing, fn = timings[k]
            t0 = time.perf_counter()
            timing.count = fn()
            timing.seconds.append(time.perf_counter() - t0)


Ratio = tuple[str, float, float, float]  # name, throughput ratio of the best runs, of the medians, target or NaN


def ratio(name: str, num: Timing, den: Timing, target: float) -> Ratio:
    return (name, num.rate / den.rate, (num.count / num.median) / (den.count / den.median), target)


def ratio_rows(t: dict[str, Timing]) -> list[Ratio]:
    """The ratios that the timings allow."""
    rows = []
    if "plain" in t and "w2" in t:
        rows.append(ratio("prepare (2 workers) / plain MNE", t["w2"], t["plain"], PREPARE_TARGET))
    if "plain" in t and "w1" in t:
        rows.append(ratio("prepare (1 worker) / plain MNE", t["w1"], t["plain"], float("nan")))
    # Like for like: in-order readers against in-order memmap reads, shuffling ones against random
    # ones; first epochs (shards mapped anew) against a memmap mapped anew, later epochs against one
    # kept open. The batch dropped at once is shown for reference only (no consumer reads like that).
    for key, what, bases in (
        ("iter", "iter_samples", (("memmap_first", "memmap mapped anew"),)),
        ("eval", "eval loader, first epoch", (("memmap_first_b", "memmap batches, mapped anew"),)),
        ("eval_warm", "eval loader, later epochs", (("memmap", "memmap"), ("memmap_b", "memmap batches"),
                                                    ("memmap_bd", "memmap batches dropped at once"))),
        ("train0", "train loader, 0 workers, first epoch", (("memmap_first_sb", "memmap random batches, mapped anew"),)),
        ("train0_warm", "train loader, 0 workers, later epochs", (("memmap_s", "memmap in random order"),
                                                                   ("memmap_sb", "memmap random batches"))),
        ("train2", "train loader, 2 workers, first epoch", (("memmap_first_sb", "memmap random batches, mapped anew"),)),
        ("train2_warm", "train loader, 2 workers, later epochs", (("memmap_s", "memmap in random order"),
                                                                   ("memmap_sb", "memmap random batches"))),
    ):
        for base, name in bases:
            if key in t and base in t:
                target = float("nan") if base == "memmap_bd" else LOADER_TARGET
                rows.append(ratio(f"{what} / {name}", t[key], t[base], target))
    return rows


def print_report(console: Console, title: str, timings: list[Timing], ratios: list[Ratio]) -> None:
    table = Table(title=title, title_justify="left")
    for col, justify in (("what", "left"), ("n", "right"), ("best s", "right"), ("median s", "right"),
                         ("throughput (best)", "right")):
        table.add_column(col, justify=justify)
    for t in timings:
        table.add_row(t.name, f"{t.count} {t.unit}", f"{t.best:.3f}", f"{t.median:.3f}", f"{t.rate:,.1f} {t.unit}/s")
    console.print(table)
    if ratios:
        rt = Table(title_justify="left")
        for col in ("ratio (throughput)", "best", "median", "target", "met (best)"):
            rt.add_column(col, justify="left" if col == "ratio (throughput)" else "right")
        for name, best, median, target in ratios:
            met = "-" if np.isnan(target) else ("[green]yes" if best >= target else "[red]no")
            rt.add_row(name, f"{best:.2f}x", f"{median:.2f}x", "-" if np.isnan(target) else f">= {target:g}x", met)
        console.print(rt)


Timed = dict[str, tuple[Timing, Callable[[], int]]]  # key -> (its timings, what is timed)


def preparation_runs(dataset: Dataset, work: Path, args: argparse.Namespace) -> Timed:
    runs: Timed = {"plain": (Timing("plain MNE, 1 process (FIR, FFT resampling, no shards)", "rec"),
                             lambda: plain_mne(dataset))}
    for w in args.workers:
        runs[f"w{w}"] = (Timing(f"neurofm prepare, {w} worker{'s' if w > 1 else ''}", "rec"),
                         lambda w=w: neurofm_prepare(dataset.manifest, work / "prepared", w))
    if not (args.quick or args.no_variants):
        for key, value in (("filter_method", "fir"), ("resample_method", "fft")):
            manifest = variant(dataset, work, **{key: value})
            runs[value] = (Timing(f"neurofm prepare, 1 worker, {key}={value}", "rec"),
                           lambda m=manifest: neurofm_prepare(m, work / "variant", 1))
    return runs


def loading_runs(index: Path, npy: Path, args: argparse.Namespace) -> Timed:
    b = args.batch_size
    kept = np.load(npy, mmap_mode="r")  # mapped once, for the later-epoch baselines
    runs: Timed = {
        "memmap_first": (Timing("numpy memmap mapped anew, window by window (copied)", "win"),
                         lambda: consume(memmap_windows_iter(npy))),
        "memmap_first_b": (Timing(f"numpy memmap mapped anew, batches of {b} (copied)", "win"),
                           lambda: consume(memmap_batches(npy, b))),
        "memmap_first_sb": (Timing(f"numpy memmap mapped anew, random batches of {b} (copied)", "win"),
                            lambda: consume(memmap_batches(npy, b, "random"))),
        "memmap": (Timing("numpy memmap kept open, window by window (copied)", "win"),
                   lambda: consume(memmap_windows_iter(kept))),
        "memmap_b": (Timing(f"numpy memmap kept open, batches of {b} (copied)", "win"),
                     lambda: consume(memmap_batches(kept, b))),
        "memmap_bd": (Timing(f"numpy memmap kept open, batches of {b} (copied), each dropped before the next", "win"),
                      lambda: consume_dropping(memmap_batches(kept, b))),
        "memmap_s": (Timing("numpy memmap kept open, window by window in random order (copied)", "win"),
                     lambda: consume(memmap_windows_iter(kept, "random"))),
        "memmap_sb": (Timing(f"numpy memmap kept open, random batches of {b} (copied)", "win"),
                      lambda: consume(memmap_batches(kept, b, "random"))),
        "iter": (Timing("loader: iter_samples (eval mode, Samples)", "win"), lambda: read_iter_samples(index)),
        "eval": (Timing(f"loader: DataModule eval loader, batch {b}, first epoch", "win"),
                 lambda: read_eval_loader(index, b)),
        "eval_warm": (Timing(f"loader: DataModule eval loader, batch {b}, later epochs", "win"),
                      later_epochs(lambda: eval_module(index, b).val_dataloader())),
        "train0": (Timing(f"loader: DataModule train loader, batch {b}, 0 workers, first epoch", "win"),
                   lambda: read_train_loader(index, b, 0)),
        "train0_warm": (Timing(f"loader: DataModule train loader, batch {b}, 0 workers, later epochs", "win"),
                        later_epochs(lambda: ShardDataModule(index, batch_size=b, seed=0).train_dataloader())),
    }
    if not args.quick:
        runs["train2"] = (Timing(f"loader: DataModule train loader, batch {b}, 2 workers, first epoch", "win"),
                          lambda: read_train_loader(index, b, 2))
        runs["train2_warm"] = (Timing(f"loader: DataModule train loader, batch {b}, 2 workers, later epochs", "win"),
                               later_epochs(lambda: ShardDataModule(index, batch_size=b, num_workers=2,
                                                                    seed=0).train_dataloader()))
    return runs


def time_loading(index: Path, npy: Path, args: argparse.Namespace) -> dict[str, Timing]:
    """Every reader of ``loading_runs``, timed in groups, each round robin."""
    load_rounds = 2 if args.quick else args.load_repeats
    load = loading_runs(index, npy, args)
    # Groups: cold readers clear the window-table cache on every pass, which the later-epoch readers
    # must keep, as a training run does; and a loader with persistent worker processes keeps
    # prefetching after its epoch ends, which would take the cores from whatever runs next. (Local
    # shards with window tables are read in-process whatever num_workers: no such group.)
    forks = ShardDataModule(index, batch_size=args.batch_size, num_workers=2).train_dataloader().loader is not None
    groups: dict[str, list] = {"cold": [], "warm": [], "workers": []}
    for key, run in load.items():
        group = ("workers" if key.startswith("train2") and forks
                 else "warm" if (key.startswith("memmap") and not key.startswith("memmap_first")) or key.endswith("_warm")
                 else "cold")
        groups[group].append(run)
    # A pass over 402 windows takes 10-20 ms, and this VM's memory speed drifts by 2x over seconds:
    # the warm readers alternate pass by pass, `--passes` times per round, so a slow spell hits all alike.
    for name, runs in ((name, runs) for name, runs in groups.items() if runs):
        run_round_robin(runs, load_rounds * (args.passes if name == "warm" else 1), warmup=True)
    return {key: timing for key, (timing, _) in load.items()}


def time_loading_in_child(index: Path, npy: Path, args: argparse.Namespace) -> dict[str, Timing]:
    """:func:`time_loading` in a fresh Python process, as a training run reads what ``prepare`` wrote.

    The process that just ran ``prepare`` has a heap shaped by it (glibc raises its mmap threshold
    when MNE's ~10 MB arrays are freed, so later multi-megabyte arrays come from the heap instead of
    fresh mappings). In that process (``--same-process``) the memmap baselines' batches took ~35%
    less time and the loaders' later epochs ~40% more than in a fresh one (docs/benchmarks.md).
    """
    out = npy.with_suffix(".timings.json")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--loading-only", str(index), str(npy), str(out),
           "--batch-size", str(args.batch_size), "--load-repeats", str(args.load_repeats),
           "--passes", str(args.passes), *(["--quick"] if args.quick else [])]
    subprocess.run(cmd, check=True)
    return {key: Timing(**t) for key, t in json.loads(out.read_text()).items()}


def bench_dataset(dataset: Dataset, work: Path, args: argparse.Namespace, console: Console) -> dict:
    prep_rounds, load_rounds = (1, 2) if args.quick else (args.repeats, args.load_repeats)
    prep = {} if args.no_prepare else preparation_runs(dataset, work, args)
    if prep:
        console.print(f"[bold]{dataset.label}[/]: preparing ({prep_rounds} round(s) of {len(prep)} timings)...")
        run_round_robin(list(prep.values()), prep_rounds, warmup=True)  # warm-up: imports, caches, page cache

    index, npy = work / "prepared" / "index.json", work / "windows.npy"
    neurofm_prepare(dataset.manifest, index.parent, 1)  # what the loaders read
    memmap_windows(index, npy)
    console.print(f"[bold]{dataset.label}[/]: loading ({load_rounds} rounds, "
                  f"{'this process' if args.same_process else 'a fresh process'})...")
    load = time_loading(index, npy, args) if args.same_process else time_loading_in_child(index, npy, args)

    timings = {**{key: timing for key, (timing, _) in prep.items()}, **load}
    ratios = ratio_rows(timings)
    n_windows, n_chans, n_times = np.load(npy, mmap_mode="r").shape
    n_recordings = len({s.recording for s in load_index(index).shards})
    print_report(console, f"{dataset.label}: {n_recordings} recordings, {n_windows} windows of "
                 f"{n_chans} channels x {n_times} samples (float32)", list(timings.values()), ratios)
    return {"dataset": dataset.label,
            "timings": [dict(asdict(t), best=t.best, median=t.median, rate=t.rate) for t in timings.values()],
            "ratios": [{"name": n, "value": v, "median": m, "target": None if np.isnan(t) else t}
                       for n, v, m, t in ratios]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one timed repeat, no variants, no loader workers")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each preparation (default 3)")
    parser.add_argument("--load-repeats", type=int, default=5, help="timed rounds of the readers (default 5)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="prepare workers to time")
    parser.add_argument("--passes", type=int, default=10,
                        help="passes per round of the memmap and later-epoch readers, alternating (default 10)")
    parser.add_argument("--batch-size", type=int, default=32, help="loader batch size (default 32)")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder of the PhysioNet S001 EDFs (default: $NEUROFM_SHARED_DATA/real/eegbci_S001)")
    parser.add_argument("--no-variants", action="store_true", help="skip the fir / fft preprocessing variants")
    parser.add_argument("--no-prepare", action="store_true",
                        help="time only the loading (the dataset is still prepared once, untimed)")
    parser.add_argument("--synthetic", action="store_true", help="also benchmark the synthetic_mi manifest")
    parser.add_argument("--no-physionet", action="store_true", help="skip the real EDF recordings")
    parser.add_argument("--long", type=float, default=0.0, metavar="MINUTES",
                        help="also benchmark synthetic_pretrain with runs about this long (in steps of 20 s; "
                             "e.g. 10: 150 windows a shard, where a PhysioNet run gives 15-30)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--same-process", action="store_true",
                        help="time the loading in the process that ran prepare (default: a fresh process)")
    parser.add_argument("--loading-only", nargs=3, type=Path, metavar=("INDEX", "NPY", "OUT"),
                        help=argparse.SUPPRESS)  # the fresh process: time the loading, write OUT (JSON)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.loading_only:
        index, npy, out = args.loading_only
        out.write_text(json.dumps({k: asdict(t) for k, t in time_loading(index, npy, args).items()}))
        return 0
    console = Console(width=None if Console().is_terminal else 120)
    data_dir = args.data or shared_data_root() / "real" / "eegbci_S001"
    load_before = os.getloadavg()
    console.print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC | {cpu_model()} | {os.cpu_count()} cores | "
                  f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} | "
                  f"MNE {mne.__version__} | numpy {np.__version__}")
    results = []
    with tempfile.TemporaryDirectory(prefix="neurofm-bench-") as tmp:
        work = Path(tmp)
        datasets = []
        if not args.no_physionet:
            if not any(data_dir.glob("*.edf")):
                console.print(f"[yellow]no EDF files in {data_dir}: skipping the real recordings "
                              "(set NEUROFM_SHARED_DATA or --data)")
            else:
                datasets.append(physionet_dataset(data_dir, work))
        if args.synthetic:
            datasets.append(synthetic_dataset(work))
        if args.long:
            datasets.append(long_synthetic_dataset(work, args.long))
        for dataset in datasets:
            sub = work / dataset.manifest.stem
            sub.mkdir()
            results.append(bench_dataset(dataset, sub, args, console))
    load_after = os.getloadavg()
    console.print(f"best of {1 if args.quick else args.repeats} (prepare) / {2 if args.quick else args.load_repeats} "
                  f"(loading) timed runs; load average after: {load_after[0]:.2f} {load_after[1]:.2f} "
                  f"{load_after[2]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "cores": os.cpu_count(),
                                         "load_before": load_before, "load_after": load_after,
                                         "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
