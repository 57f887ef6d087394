"""``neurofm tokenize``: a prepared dataset's shards → token shards, resumable like ``prepare``.

::

    summary = tokenize_dataset("runs/shards/physionet", "runs/tokenizer/tiny/tokenizer", "runs/tokens/physionet")
    # out/shards/<the source shard's relative name>   codes + the source metadata (token_shards.py)
    # out/parts/<shard>.json                          completion marker of one shard
    # out/errors.jsonl                                one line per shard that failed
    # out/index.json                                  written last; read it with iter_token_windows

Crash safety follows ``pipelines/shards.py``: a token shard is written as ``*.tar.tmp`` and renamed
into place, then its marker is written atomically; the index is written last, atomically, from
markers only. A marker counts only while the source shard's sha256, the tokenizer's sha256 (of its
``model.safetensors``) and ``n_q`` all match the current run: another tokenizer or ``n_q`` redoes
the shard, a rerun of the same command skips it.

Reruns are byte-identical on CPU: fixed tar mtime, source order, and batches that never span two
shards, so a redone shard is encoded in the same batches as in the first run. (A GPU may flip a code
where two codebook vectors are nearly equidistant; use the CPU where identical reruns matter.)
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
import webdataset as wds

from ..pipelines.loader import Sample, ShardIndex, ShardInfo, decode_sample, load_index
from ..pipelines.shards import FIXED_MTIME, encode_json, read_marker, sha256_file, write_json_atomic
from ..pipelines.tario import is_streamed, tar_samples
from .base import TokenizerInputError
from .rvq import RVQTokenizer
from .token_shards import TOKEN_FORMAT, TOKEN_KIND, TOKENS_MEMBER, code_dtype, encode_tokens

SAFETENSORS = "model.safetensors"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # owner/name
_TAR_NAME = re.compile(r"[^/\s]+\.tar(?=\s|$)")  # the file name inside a url or a pipe: command
# Index fields recomputed from the completed shards; every other source field is copied.
_RECOMPUTED = ("format", "kind", "shards", "n_samples", "n_recordings", "subjects", "channel_sets", "part")


class TokenizeError(ValueError):
    """A run that cannot start as asked: bad index, tokenizer, n_q, device or output folder."""


# --------------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class SavedTokenizer:
    """A tokenizer loaded strictly from a folder or hub id, with what identifies it."""

    id: str  # as given: a folder or a hub id
    model: RVQTokenizer
    sha256: str  # of its model.safetensors
    config: dict[str, Any]


@dataclass(frozen=True)
class TokenSpec:
    """What every token window of a run holds; ``meta()`` is the ``tokens`` entry of its metadata."""

    n_q: int
    codebook_size: int
    frame_rate: float  # frames per second
    dtype: str  # numpy name: "uint8" for K <= 256, "uint16" for K <= 65536
    bits_per_second: float  # per channel, at this n_q

    def meta(self) -> dict[str, Any]:
        return {"n_q": self.n_q, "codebook_size": self.codebook_size, "frame_rate": self.frame_rate,
                "dtype": self.dtype}


@dataclass(frozen=True)
class ShardJob:
    """One source shard and where its tokens go."""

    source: ShardInfo  # url resolved against the source index folder
    entry: dict[str, Any]  # the source index's entry for it
    name: str  # the token shard, relative to the output folder: shards/...
    source_sha256: str | None


@dataclass
class ShardResult:
    shard: str
    ok: bool
    n_samples: int = 0
    reason: str | None = None
    seconds: float = 0.0


@dataclass
class TokenizeSummary:
    dataset: str
    out: str
    index: str
    tokenizer: str
    n_shards: int
    n_ok: int
    n_skipped: int  # complete from an earlier run
    n_failed: int
    n_samples: int  # windows in the token index
    tokens: TokenSpec
    seconds: float
    failures: list[ShardResult] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# inputs


def load_saved_tokenizer(spec: str) -> SavedTokenizer:
    """A folder written by ``save_pretrained`` or a hub id (``HF_HUB_OFFLINE=1``: the local cache only)."""
    path = Path(spec).expanduser()
    if path.exists() and not path.is_dir():
        raise TokenizeError(f"tokenizer {spec} is a file; expected a folder written by save_pretrained "
                            f"(config.json, {SAFETENSORS}) or a hub id")
    hint = "" if path.is_dir() else " (no such folder; tried it as a hub id)"
    if not path.is_dir() and not _HUB_ID.fullmatch(spec):
        raise TokenizeError(f"tokenizer folder not found: {spec} (and it is not a hub id owner/name)")
    try:
        model = RVQTokenizer.from_pretrained(str(path) if path.is_dir() else spec)
        weights = path / SAFETENSORS if path.is_dir() else Path(_hub_file(spec))
    except Exception as err:  # noqa: BLE001 - any loading failure is the user's input: name it
        raise TokenizeError(f"tokenizer {spec} cannot be loaded{hint}: {type(err).__name__}: {err}") from err
    _check_initialised(model, spec)
    return SavedTokenizer(id=spec, model=model, sha256=sha256_file(weights), config=model.config.to_dict())


def _hub_file(repo_id: str) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id=repo_id, filename=SAFETENSORS)  # cached by from_pretrained


def _check_initialised(model: RVQTokenizer, spec: str) -> None:
    """An untrained codebook k-means-initialises on the first windows it sees, even in eval mode:
    codes would depend on which windows came first, so a resumed run would not match a fresh one."""
    stale = [name for name, buf in model.named_buffers() if name.endswith("initted") and not bool(buf.all())]
    if stale:
        raise TokenizeError(f"tokenizer {spec}: {len(stale)} codebook(s) were never initialised ({stale[0]}...); "
                            "train it first (neurofm tokenizer fit)")


def _load_source(index: str) -> ShardIndex:
    try:
        return load_index(index)
    except (FileNotFoundError, ValueError) as err:  # both name the file (and the field)
        raise TokenizeError(str(err)) from err


def _out_name(url: str) -> str:
    """The token shard's path relative to the output folder: ``shards/`` + the source's relative name."""
    path = PurePosixPath(url)
    remote = is_streamed(url) or path.is_absolute()
    if not remote and ".." not in path.parts and url.endswith(".tar"):
        return str(path) if path.parts[0] == "shards" else f"shards/{path}"
    names = _TAR_NAME.findall(url)
    if not names:
        raise TokenizeError(f"source shard {url!r}: no '<name>.tar' in its url to name the token shard after")
    return f"shards/{names[-1]}"


def _plan(index: ShardIndex) -> list[ShardJob]:
    jobs, seen = [], {}
    for info, entry in zip(index.shards, index.raw["shards"]):
        name = _out_name(entry["url"])
        if name in seen:
            raise TokenizeError(f"{index.path}: shards {seen[name]!r} and {entry['url']!r} would both be "
                                f"written to {name}")
        seen[name] = entry["url"]
        local = Path(info.url).is_file()
        jobs.append(ShardJob(info, entry, name, info.sha256 or (sha256_file(info.url) if local else None)))
    return jobs


def _check_compatible(tok: SavedTokenizer, index: ShardIndex, jobs: list[ShardJob], n_q: int | None) -> TokenSpec:
    """What can be checked before reading a window: levels, sampling rate, channel count, length."""
    model = tok.model
    n_q = model.n_q if n_q is None else n_q
    if not 1 <= n_q <= model.n_q:
        raise TokenizeError(f"n_q={n_q}: tokenizer {tok.id} has levels 1..{model.n_q}")
    if not math.isclose(model.sfreq, index.sfreq):
        raise TokenizeError(f"{index.path}: the data is at {index.sfreq:g} Hz, tokenizer {tok.id} "
                            f"works at {model.sfreq:g} Hz")
    fixed = model.config.n_chans
    bad = [j for j in jobs if fixed is not None and j.source.n_chans not in (None, fixed)]
    if bad:
        listed = ", ".join(f"{j.entry['url']} ({j.source.n_chans})" for j in bad[:5])
        raise TokenizeError(f"tokenizer {tok.id} was built for {fixed} channels; {len(bad)} of {len(jobs)} shards "
                            f"of {index.path} have another count: {listed}{' ...' if len(bad) > 5 else ''}")
    length_s = (index.raw.get("windows") or {}).get("length_s")
    if length_s is not None and round(length_s * index.sfreq) < model.min_samples:
        raise TokenizeError(f"{index.path}: windows of {length_s} s are shorter than tokenizer {tok.id}'s "
                            f"{model.min_samples} samples per frame")
    return TokenSpec(n_q=n_q, codebook_size=model.codebook_size, frame_rate=model.config.frames_per_second,
                     dtype=code_dtype(model.codebook_size).name, bits_per_second=model.bits_per_second(n_q))


def _to_device(model: RVQTokenizer, device: str) -> RVQTokenizer:
    try:
        return model.to(torch.device(device))
    except (RuntimeError, AssertionError) as err:  # unknown device string; CUDA not available
        raise TokenizeError(f"device {device!r}: {err}") from err


def _prepare_out(out: Path, index: ShardIndex) -> None:
    """Refuse the source folder or a prepared dataset; remove what an interrupted run left (*.tmp)."""
    if out.resolve() == index.path.parent.resolve():
        raise TokenizeError(f"--out {out} is the prepared dataset's own folder: tokenize into another folder")
    existing = out / "index.json"
    if existing.is_file() and (read_marker(existing) or {}).get("kind") != TOKEN_KIND:
        raise TokenizeError(f"--out {out} holds an index.json that is not a token dataset's: choose another folder")
    (out / "parts").mkdir(parents=True, exist_ok=True)
    leftovers = [*(out / "shards").rglob("*.tmp"), *(out / "parts").rglob("*.tmp"), *out.glob("*.tmp")]
    for tmp in leftovers:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# one shard


def _marker_path(out: Path, name: str) -> Path:
    return out / "parts" / PurePosixPath(name).relative_to("shards").with_suffix(".json")


def _completed(out: Path, job: ShardJob, tokenizer_sha256: str, n_q: int) -> dict | None:
    marker = read_marker(_marker_path(out, job.name))
    if marker is None or not (out / job.name).is_file():
        return None
    same = (marker.get("source_sha256") == job.source_sha256 and marker.get("tokenizer_sha256") == tokenizer_sha256
            and marker.get("n_q") == n_q)
    return marker if same else None


def _batches(samples: Iterable[Sample], batch_size: int) -> Iterator[list[Sample]]:
    """Consecutive windows of equal shape, at most ``batch_size`` at a time, in shard order."""
    batch: list[Sample] = []
    for s in samples:
        if batch and (len(batch) == batch_size or s.x.shape != batch[0].x.shape):
            yield batch
            batch = []
        batch.append(s)
    if batch:
        yield batch


def _encode(model: RVQTokenizer, batch: list[Sample], spec: TokenSpec) -> np.ndarray:
    device = next(model.parameters()).device
    x = torch.from_numpy(np.stack([s.x for s in batch])).to(device)  # (B, C, T) float32 µV
    try:
        with torch.inference_mode():
            codes = model.encode(x, n_q=spec.n_q).cpu().numpy()  # (B, C, n_q, F) int64
    except TokenizerInputError as err:
        raise TokenizerInputError(f"window {_first_rejected(model, batch, spec)}: {err}") from err
    if codes.size and (codes.min() < 0 or codes.max() >= spec.codebook_size):  # -1 would be a dropped level
        raise ValueError(f"window {batch[0].key}: codes outside [0, {spec.codebook_size})")
    return codes.astype(spec.dtype)  # (B, C, n_q, F), the compact dtype


def _first_rejected(model: RVQTokenizer, batch: list[Sample], spec: TokenSpec) -> str:
    """The key of the first window of a rejected batch that the tokenizer rejects on its own."""
    for s in batch:
        try:
            with torch.inference_mode():
                model.encode(torch.from_numpy(s.x[None]).to(next(model.parameters()).device), n_q=spec.n_q)
        except TokenizerInputError:
            return s.key
    return f"{batch[0].key} (or a later one of its batch of {len(batch)})"


def _write_token_shard(job: ShardJob, model: RVQTokenizer, spec: TokenSpec, tmp: Path, batch_size: int,
                       advance: Callable[[int], None]) -> tuple[int, list[str]]:
    """Encode every window of the source shard into ``tmp``; returns (windows, the first window's ch_names)."""
    tmp.parent.mkdir(parents=True, exist_ok=True)
    n, ch_names = 0, []
    windows = (decode_sample(raw) for raw in tar_samples([{"url": job.source.url}]))
    with open(tmp, "wb") as f:
        with wds.TarWriter(f, encoder=False, mtime=FIXED_MTIME) as sink:
            for batch in _batches(windows, batch_size):
                for s, codes in zip(batch, _encode(model, batch, spec)):  # codes: (C, n_q, F)
                    sink.write({"__key__": s.key, TOKENS_MEMBER: encode_tokens(codes),
                                "json": encode_json({**s.meta, "tokens": spec.meta()})})
                n, ch_names = n + len(batch), ch_names or list(batch[0].ch_names)
                advance(len(batch))
        f.flush()
        os.fsync(f.fileno())
    return n, ch_names


def _check_source(job: ShardJob) -> None:
    if job.entry.get("sha256") and Path(job.source.url).is_file():
        actual = sha256_file(job.source.url)
        if actual != job.source_sha256:
            raise ValueError(f"{job.source.url} has sha256 {actual[:12]}..., the source index says "
                             f"{job.source_sha256[:12]}...: it changed after the index was written (re-run prepare)")


def _tokenize_shard(job: ShardJob, tok: SavedTokenizer, spec: TokenSpec, out: Path, batch_size: int,
                    advance: Callable[[int], None]) -> ShardResult:
    """One source shard → its token shard, then its marker; a failure is returned, never raised."""
    t0 = time.perf_counter()
    final, marker = out / job.name, _marker_path(out, job.name)
    tmp = final.with_name(final.name + ".tmp")
    marker.unlink(missing_ok=True)  # a marker of another tokenizer or n_q must not outlive its shard
    final.unlink(missing_ok=True)
    try:
        _check_source(job)
        n, ch_names = _write_token_shard(job, tok.model, spec, tmp, batch_size, advance)
        if n != job.source.n_samples:
            raise ValueError(f"{job.source.url} holds {n} windows, the source index says {job.source.n_samples}")
        os.replace(tmp, final)
    except Exception as err:  # noqa: BLE001 - one bad shard is reported, the others go on
        tmp.unlink(missing_ok=True)
        return ShardResult(job.name, False, reason=f"{type(err).__name__}: {err}", seconds=time.perf_counter() - t0)
    entry = {**job.entry, "url": job.name, "n_samples": n, "sha256": sha256_file(final),
             "source_sha256": job.source_sha256}
    write_json_atomic(marker, {"shard": job.name, "source_url": job.entry["url"], "source_sha256": job.source_sha256,
                               "tokenizer_sha256": tok.sha256, "n_q": spec.n_q, "ch_names": ch_names, "entry": entry})
    return ShardResult(job.name, True, n, seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------
# the index


def _channel_sets(index: ShardIndex, markers: list[dict]) -> list[dict]:
    """Recordings per channel set among the completed shards, in the source index's order."""
    recordings: dict[tuple[str, ...], set[str]] = {}
    for m in markers:
        recordings.setdefault(tuple(m["ch_names"]), set()).add(m["entry"].get("recording") or m["shard"])
    order = [tuple(cs["ch_names"]) for cs in index.raw.get("channel_sets") or []]
    keys = sorted(recordings, key=lambda k: order.index(k) if k in order else len(order))  # stable
    return [{"ch_names": list(k), "n_recordings": len(recordings[k])} for k in keys]


def build_token_index(index: ShardIndex, tok: SavedTokenizer, spec: TokenSpec, markers: list[dict]) -> dict:
    """The token index: the source header, provenance, the token spec, and the completed shards in source order."""
    header = {k: v for k, v in index.raw.items() if k not in _RECOMPUTED}
    shards = [m["entry"] for m in markers]
    subjects = {str(s["subject"]) for s in shards}
    return {
        "format": TOKEN_FORMAT, "kind": TOKEN_KIND, **header,
        "source": {"index": str(index.path), "sha256": sha256_file(index.path)},
        "tokenizer": {"id": tok.id, "sha256": tok.sha256, "config": tok.config},
        "tokens": {**spec.meta(), "bits_per_second": spec.bits_per_second},
        "n_samples": int(sum(s["n_samples"] for s in shards)),
        "n_recordings": len({s.get("recording") or s["url"] for s in shards}),
        "subjects": [s for s in index.subjects if s in subjects],
        "channel_sets": _channel_sets(index, markers),
        "shards": shards,
        "part": index.raw.get("part"),
    }


def _write_errors(path: Path, jobs: dict[str, ShardJob], failures: list[ShardResult]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps({"shard": f.shard, "source": jobs[f.shard].entry["url"], "reason": f.reason})
                           + "\n" for f in failures))
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# the job


def tokenize_dataset(index: str, tokenizer: str, out: str, n_q: int | None = None, batch_size: int = 64,
                     device: str = "cpu", progress: bool = True) -> TokenizeSummary:
    """Encode every window of a prepared dataset into token shards under ``out`` (rerun: resume).

    Args:
        index: the prepared dataset's index.json or its folder.
        tokenizer: a folder written by ``save_pretrained`` or a hub id.
        out: output folder (created); not the prepared dataset's folder.
        n_q: levels kept per frame (default: all the tokenizer has).
        batch_size: windows per encode call (consecutive windows of one shard with equal shape).
        device: torch device (cpu, cuda).
        progress: show a progress bar (windows done / total).
    """
    t0 = time.perf_counter()
    if batch_size < 1:
        raise TokenizeError(f"batch_size={batch_size} must be >= 1")
    source = _load_source(index)
    tok = load_saved_tokenizer(tokenizer)
    jobs = _plan(source)
    spec = _check_compatible(tok, source, jobs, n_q)
    _to_device(tok.model, device)
    out_p = Path(out)
    _prepare_out(out_p, source)
    done = {j.name: m for j in jobs if (m := _completed(out_p, j, tok.sha256, spec.n_q)) is not None}
    todo = [j for j in jobs if j.name not in done]
    bar = _WindowBar(progress, sum(j.source.n_samples for j in jobs),
                     sum(j.source.n_samples for j in jobs if j.name in done), source.dataset)
    with bar as advance:
        results = [_tokenize_shard(j, tok, spec, out_p, batch_size, advance) for j in todo]
    for r in results:
        if r.ok:
            done[r.shard] = read_marker(_marker_path(out_p, r.shard))
    return _finish(source, tok, spec, out_p, jobs, done, results, t0)


def _finish(source: ShardIndex, tok: SavedTokenizer, spec: TokenSpec, out: Path, jobs: list[ShardJob],
            done: dict[str, dict], results: list[ShardResult], t0: float) -> TokenizeSummary:
    failures = [r for r in results if not r.ok]
    _write_errors(out / "errors.jsonl", {j.name: j for j in jobs}, failures)
    token_index = build_token_index(source, tok, spec, [done[j.name] for j in jobs if j.name in done])
    write_json_atomic(out / "index.json", token_index)
    return TokenizeSummary(
        dataset=source.dataset, out=str(out), index=str(out / "index.json"), tokenizer=tok.id, n_shards=len(jobs),
        n_ok=sum(r.ok for r in results), n_skipped=len(jobs) - len(results), n_failed=len(failures),
        n_samples=token_index["n_samples"], tokens=spec, seconds=time.perf_counter() - t0, failures=failures)


def print_tokenize_summary(s: TokenizeSummary) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"tokenize {s.dataset}", show_header=False)
    k = s.tokens
    for row in (("shards", f"{s.n_shards}: {s.n_ok} tokenized, {s.n_skipped} already complete, {s.n_failed} failed"),
                ("windows", str(s.n_samples)), ("tokenizer", s.tokenizer),
                ("tokens", f"n_q={k.n_q} × K={k.codebook_size} ({k.dtype}) at {k.frame_rate:g} frames/s = "
                           f"{k.bits_per_second:g} bits/s per channel"),
                ("index", s.index), ("time", f"{s.seconds:.1f} s")):
        t.add_row(*row)
    console.print(t)
    for f in s.failures:
        console.print(f"[red]failed[/]: {f.shard}: {f.reason}", soft_wrap=True)
    if s.failures:
        console.print(f"[red]{s.n_failed} shard(s) failed[/]; details in {s.out}/errors.jsonl", soft_wrap=True)


class _WindowBar:
    """A rich progress bar over windows; a no-op when disabled."""

    def __init__(self, enabled: bool, total: int, completed: int, name: str) -> None:
        self.enabled, self.total, self.completed, self.name = enabled, total, completed, name

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("[bold]tokenize {task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("windows"), TimeElapsedColumn())
        self.bar.start()
        task = self.bar.add_task(self.name, total=self.total, completed=self.completed)
        return lambda n: self.bar.update(task, advance=n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()
