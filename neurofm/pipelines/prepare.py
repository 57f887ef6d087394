"""``neurofm prepare``: manifest → MNE preprocessing → windows → WebDataset shards + index.

Parallel over items (files / runs / subjects), resumable, crash-safe (see ``shards.py``), and
splittable over machines with ``part="i/n"`` (SLURM arrays; merge with ``neurofm index merge``).
"""

from __future__ import annotations

from .errors import PrepareError  # noqa: F401 - raised here, defined there

import json
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from .availability import require_available
from .channels import channel_positions, standardize_channels
from .manifest import Manifest, load_manifest, resolve_manifest
from .preprocess import PreprocessConfig, run_steps, to_array
from .shards import (build_index, clear_item, json_encoder_with, read_marker, shard_info_dicts,
                     write_json_atomic, write_shards)
from .sources import Item, Loaded, list_items, load_item, recording_id
from .windows import Window, bad_spans, cut, event_windows, fixed_windows
from .windowtable import table_path, write_table


@dataclass
class ItemResult:
    item: str
    ok: bool
    n_samples: int = 0
    skipped: bool = False  # already complete from an earlier run
    reason: str | None = None
    path: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class PrepareSummary:
    dataset: str
    out: str
    index: str
    n_items: int
    n_ok: int
    n_skipped: int
    n_failed: int
    n_samples: int
    subjects: list[str]
    n_channel_sets: int
    preproc_hash: str
    seconds: float
    failures: list[ItemResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)




def parse_part(part: str) -> tuple[int, int]:
    """``"i/n"`` with 0 ≤ i < n (SLURM_ARRAY_TASK_ID counts from 0)."""
    try:
        i, n = (int(x) for x in part.split("/"))
    except ValueError:
        raise ValueError(f"--part must look like i/n (e.g. 0/4), got {part!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--part {part}: need 0 <= i < n")
    return i, n


def select_part(items: list[Item], part: str | None) -> list[Item]:
    """Round-robin over the sorted items: deterministic and balanced."""
    if not part:
        return items
    i, n = parse_part(part)
    return items[i::n]


def preprocess_config(manifest: Manifest) -> PreprocessConfig:
    return PreprocessConfig.from_overrides(manifest.preprocessing)


def _label_windows(manifest: Manifest, loaded: Loaded, sfreq: float, n_times: int) -> tuple[list[Window], list[str]]:
    w = manifest.windows
    label_map = {**manifest.label_map(loaded.run), **loaded.extra_classes}
    if w.mode == "events":
        if not label_map:
            raise ValueError("windows.mode is 'events' but the manifest maps no event to a label")
        wins, skipped = event_windows(loaded.events, label_map, sfreq, n_times, w.length_s, w.tmin)
        notes = [f"{skipped} event window(s) outside the recording"] if skipped else []
        if not wins:
            found = sorted(loaded.events.counts())
            raise ValueError(f"no labelled events (looked for {sorted(label_map)}, found {found[:10]})")
        return wins, notes
    wins = fixed_windows(n_times, sfreq, w.length_s, w.stride_s, bad_spans(loaded.events))
    if not wins:
        raise ValueError(f"recording shorter than one window ({n_times / sfreq:.2f} s < {w.length_s} s)")
    if manifest.task == "regression":
        return _target_windows(wins, loaded, w.length_s)
    return [_cover_label(x, loaded, label_map, sfreq, w.length_s) for x in wins], []


def _target_windows(wins: list[Window], loaded: Loaded, length: float) -> tuple[list[Window], list[str]]:
    """Regression: a window's target is the value of the target span covering its middle (None: none)."""
    if loaded.targets is None:
        raise ValueError("task is regression but the source gives this recording no continuous targets "
                         "(the synthetic source and the files reader seed_vig do; see docs/evaluation.md, "
                         "Regression tasks)")
    out = [Window(x.start, x.onset, target=loaded.targets.at(x.onset + length / 2)) for x in wins]
    missing = sum(x.target is None for x in out)
    if missing == len(out):
        raise ValueError("no window has a target (no target span covers any window's middle)")
    return out, [f"{missing} window(s) without a target"] if missing else []


def _cover_label(win: Window, loaded: Loaded, label_map: dict[str, str], sfreq: float, length: float) -> Window:
    """In fixed mode, a window takes the label of the labelled annotation covering its middle."""
    mid = win.onset + length / 2
    for o, d, s in zip(loaded.events.onset, loaded.events.duration, loaded.events.description):
        if s in label_map and o <= mid < o + d:
            return Window(win.start, win.onset, label_map[s])
    return win


def _samples(manifest: Manifest, loaded: Loaded, data: np.ndarray, wins: list[Window], raw, phash: str) -> Iterator[dict]:
    sfreq = float(raw.info["sfreq"])
    n = round(manifest.windows.length_s * sfreq)
    classes = manifest.classes()
    pos = channel_positions(raw.info)
    common = {
        "dataset": manifest.name, "subject": loaded.subject, "session": loaded.session, "run": loaded.run,
        "ch_names": list(raw.ch_names), "ch_types": raw.get_channel_types(),
        "ch_pos": [[None if not np.isfinite(v) else round(float(v), 6) for v in p] for p in pos],
        "sfreq": sfreq, "n_times": n, "bad_channels": list(raw.info["bads"]), "preproc_hash": phash,
    }
    encode = json_encoder_with(common)
    rec = recording_id(manifest.name, loaded.subject, loaded.session, loaded.run)
    key = f"{manifest.name}/" + "/".join(rec[len(manifest.name) + 1:].split("_"))  # dataset/subj/sess/run
    for j, (w, x) in enumerate(zip(wins, cut(data, wins, n))):
        meta = {"window": j, "onset": round(w.onset, 6), "label": w.label,
                "label_id": classes.index(w.label) if w.label in classes else None}
        if manifest.task == "regression":  # classification windows keep their bytes as before
            meta["target"] = w.target
        yield {"__key__": f"{key}/{j:06d}", "npy": x, "json": encode(meta)}


def expectation_notes(manifest: Manifest, raw) -> list[str]:
    """Where a recording differs from the manifest's ``expected`` block (reported, not fatal)."""
    exp, notes = manifest.expected, []
    types = raw.get_channel_types()
    data_types = [t for t in types if t in (exp.ch_types or ["eeg", "mag", "grad"])]
    if exp.n_channels is not None and len(data_types) != exp.n_channels:
        notes.append(f"expected {exp.n_channels} data channels, found {len(data_types)}")
    if exp.sfreq is not None and abs(raw.info["sfreq"] - exp.sfreq) > 1e-6:
        notes.append(f"expected sfreq {exp.sfreq:g} Hz, found {raw.info['sfreq']:g} Hz")
    if exp.ch_types is not None and not set(exp.ch_types) & set(types):
        notes.append(f"expected channel types {exp.ch_types}, found {sorted(set(types))}")
    return notes


def _process_loaded(manifest: Manifest, loaded: Loaded, cfg: PreprocessConfig, out: Path, item_dir: Path) -> tuple[list[dict], dict]:
    raw = loaded.raw
    expected = expectation_notes(manifest, raw)
    chan_report = standardize_channels(raw)
    raw, report = run_steps(raw, cfg)
    data = to_array(raw, cfg, report)
    sfreq = float(raw.info["sfreq"])
    wins, notes = _label_windows(manifest, loaded, sfreq, data.shape[1])
    notes = expected + notes
    rec = recording_id(manifest.name, loaded.subject, loaded.session, loaded.run)
    info = dict(recording=rec, subject=loaded.subject, session=loaded.session, run=loaded.run,
                n_chans=len(raw.ch_names))
    shards = write_shards(item_dir, rec, _samples(manifest, loaded, data, wins, raw, cfg.hash()), info, out)
    record = {"recording": rec, "path": loaded.path, "n_windows": len(wins), "ch_names": list(raw.ch_names),
              "channels": asdict(chan_report), "preprocessing": asdict(report), "notes": notes}
    return shard_info_dicts(shards), record


@lru_cache(maxsize=4)
def _manifest(path: str) -> Manifest:
    return load_manifest(path)


def process_item(manifest_path: str, item: Item, out: str) -> ItemResult:
    """Worker entry point: one item → its shards and marker, or a failure with its reason."""
    t0 = time.perf_counter()
    manifest = _manifest(manifest_path)
    cfg = preprocess_config(manifest)
    out_p = Path(out)
    item_dir = out_p / "shards" / item.item_id
    clear_item(item_dir)
    try:
        shards, records = [], []
        for loaded in load_item(manifest, item):
            s, r = _process_loaded(manifest, loaded, cfg, out_p, item_dir)
            shards += s
            records.append(r)
    except Exception as err:  # noqa: BLE001 - any failure of one recording is reported, never fatal
        clear_item(item_dir)
        return ItemResult(item.item_id, False, reason=f"{type(err).__name__}: {err}", path=item.path,
                          seconds=time.perf_counter() - t0)
    marker = {"item": item.item_id, "path": item.path, "preproc_hash": cfg.hash(), "shards": shards,
              "recordings": records}
    write_json_atomic(out_p / "parts" / f"{item.item_id}.json", marker)
    warnings = [f"{item.item_id}: {w}" for r in records
                for w in [r["preprocessing"]["amplitude_warning"], *r["notes"]] if w]
    return ItemResult(item.item_id, True, sum(s["n_samples"] for s in shards), path=item.path,
                      warnings=warnings, seconds=time.perf_counter() - t0)


def _completed(out: Path, item: Item, phash: str) -> dict | None:
    marker = read_marker(out / "parts" / f"{item.item_id}.json")
    if marker is None:
        return None
    if marker.get("preproc_hash") != phash:
        raise PrepareError(
            f"{out} holds {item.item_id} prepared with preprocessing hash {marker.get('preproc_hash')}, "
            f"but the manifest now hashes to {phash}: prepare into a new --out folder")
    for shard in marker["shards"]:  # datasets prepared before window tables existed get them now
        if not table_path(out / shard["url"]).is_file():
            write_table(out / shard["url"], shard["sha256"])
    return marker


def _thread_pools():
    """The process's BLAS/OpenMP thread pools, as loaded now (finding them scans the loaded
    libraries: ~25 ms, so it is done once per run, not once per worker)."""
    from threadpoolctl import ThreadpoolController  # scikit-learn's dependency

    return ThreadpoolController()


def _worker_init(pools) -> None:
    # One BLAS/OpenMP thread per worker process: the parallelism is over recordings. The pools were
    # found in the parent just before it forked (a worker scanning them itself took 40-90 ms, while
    # the next worker was being forked); the limit stays for the worker's life.
    pools.limit(limits=1)


def _largest_first(items: list[Item]) -> list[Item]:
    """Items by decreasing size of ``item.path`` (stable; items without a file keep their order, last).

    Workers take items in this order, so the short recordings fill the end of the run instead of
    one worker finishing a long one while the other has nothing left. For formats whose path is a
    header (BrainVision, EEGLAB with .fdt) or a folder (CTF) the order says little; it is harmless.
    """
    def size(item: Item) -> int:
        try:
            return os.path.getsize(item.path) if item.path else -1
        except OSError:
            return -1  # reading it will fail and say why
    return sorted(items, key=size, reverse=True)


def _run_items(manifest_path: str, todo: list[Item], out: Path, workers: int, bar: "_progress_bar") -> list[ItemResult]:
    if workers <= 1 or len(todo) <= 1:
        # One thread here too: a BLAS product summed by two threads differs in its last bits, and a
        # shard must not depend on --workers.
        with _thread_pools().limit(limits=1), bar as advance:  # restores the caller's limits
            return [advance(process_item(manifest_path, item, str(out))) for item in todo]
    # fork: workers start instantly with everything imported. All work is submitted before the
    # progress bar starts its refresh thread, so no Python thread of ours runs when the workers fork
    # (BLAS pools have idle threads; a forked child has none of them and starts its own).
    ctx = mp.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(_thread_pools(),)) as pool:
        futures = [pool.submit(process_item, manifest_path, it, str(out)) for it in _largest_first(todo)]
        with bar as advance:
            return [advance(fut.result()) for fut in as_completed(futures)]


def _header(manifest: Manifest, cfg: PreprocessConfig) -> dict:
    header = {"dataset": manifest.name, "paradigm": manifest.paradigm, "manifest_sha256": manifest.sha256,
              "preproc_hash": cfg.hash(), "preproc": cfg.to_dict(), "windows": manifest.windows.model_dump(),
              "classes": manifest.classes(), "task": manifest.task, "sfreq": cfg.sfreq}
    if manifest.source.kind == "synthetic":  # lets the harness compute the generator's oracle score
        header["synthetic_generator"] = dict(manifest.source.generator)
    return header


def _suffix(part: str | None) -> str:
    if not part:
        return ""
    i, n = parse_part(part)
    return f".part-{i}-of-{n}"


def prepare(manifest: str, out: str, workers: int = 1, part: str | None = None,
            progress: bool = True) -> PrepareSummary:
    """Prepare one dataset into shards under ``out``.

    Args:
        manifest: a manifest YAML path, or the name of a shipped one (``synthetic_mi``).
        out: output folder (created); rerunning into it resumes.
        workers: parallel worker processes (one recording each, largest first). Each runs with one
            BLAS/OpenMP thread, as does the serial path, so the shards are the same for any value.
        part: ``i/n`` to prepare only the i-th of n deterministic slices (0-based, for SLURM arrays).
        progress: show a progress bar.
    """
    t0 = time.perf_counter()
    path = str(resolve_manifest(manifest).resolve())
    m = load_manifest(path)
    require_available(m)
    cfg = preprocess_config(m)
    out_p = Path(out)
    (out_p / "parts").mkdir(parents=True, exist_ok=True)
    items = select_part(list_items(m), part)
    if not items:
        raise PrepareError(f"{m.name}: the source lists no recordings (check source.root/pattern/runs)")
    done = {it.item_id: mk for it in items if (mk := _completed(out_p, it, cfg.hash())) is not None}
    todo = [it for it in items if it.item_id not in done]
    bar = _progress_bar(progress, len(items), len(done), m.name)
    results = _run_items(path, todo, out_p, workers, bar)
    for r in results:
        if r.ok:
            done[r.item] = read_marker(out_p / "parts" / f"{r.item}.json")
    return _finish(m, cfg, out_p, part, items, done, results, t0)


def _finish(m, cfg, out_p, part, items, done, results, t0) -> PrepareSummary:
    failures = sorted([r for r in results if not r.ok], key=lambda r: r.item)
    sfx = _suffix(part)
    _write_errors(out_p / f"errors{sfx}.jsonl", failures)
    markers = [done[it.item_id] for it in items if it.item_id in done]
    write_json_atomic(out_p / f"report{sfx}.json", _report(markers))
    index = build_index(markers, _header(m, cfg), part=part and "/".join(map(str, parse_part(part))))
    write_json_atomic(out_p / f"index{sfx}.json", index)
    return PrepareSummary(
        dataset=m.name, out=str(out_p), index=str(out_p / f"index{sfx}.json"), n_items=len(items),
        n_ok=sum(r.ok for r in results), n_skipped=len(items) - len(results), n_failed=len(failures),
        n_samples=index["n_samples"], subjects=index["subjects"], n_channel_sets=len(index["channel_sets"]),
        preproc_hash=cfg.hash(), seconds=time.perf_counter() - t0, failures=failures,
        warnings=[w for r in results for w in r.warnings])


def _write_errors(path: Path, failures: list[ItemResult]) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps({"recording": f.item, "path": f.path, "reason": f.reason}) + "\n"
                           for f in failures))
    os.replace(tmp, path)


def _report(markers: list[dict]) -> dict:
    recs = [r for mk in markers for r in mk["recordings"]]
    unknown = sorted({c for r in recs for c in r["channels"]["unknown"]})
    return {
        "n_recordings": len(recs),
        "unknown_channels": unknown,
        "recordings": [{"recording": r["recording"], "path": r["path"], "n_windows": r["n_windows"],
                        "renamed": r["channels"]["renamed"], "unknown": r["channels"]["unknown"],
                        "bad_channels": r["preprocessing"]["bad_channels"],
                        "line_freq": r["preprocessing"]["line_freq"],
                        "median_rms_uv": r["preprocessing"]["median_rms_uv"],
                        "amplitude_warning": r["preprocessing"]["amplitude_warning"], "notes": r["notes"]}
                       for r in recs],
    }


class _progress_bar:
    """A rich progress bar over items; a no-op when disabled."""

    def __init__(self, enabled: bool, total: int, completed: int, name: str):
        self.enabled, self.total, self.completed, self.name = enabled, total, completed, name

    def __enter__(self):
        if not self.enabled:
            return lambda result: result
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("[bold]prepare {task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("{task.fields[last]}"))
        self.bar.start()
        task = self.bar.add_task(self.name, total=self.total, completed=self.completed, last="")

        def advance(result: ItemResult) -> None:
            status = "ok" if result.ok else "[red]FAILED"
            self.bar.update(task, advance=1, last=f"{result.item} {status}")
            return result

        return advance

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.stop()
