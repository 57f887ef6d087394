"""WebDataset shards, completion markers and the dataset index (format: docs/shard-format.md).

Each shard gets a window table (``*.windows.json``, ``windowtable.py``) once it is in place.

Crash safety: a shard is written as ``*.tar.tmp`` and renamed when closed; an item's marker
(``parts/<item>.json``) is written atomically after all of its shards are in place; the index is
written last, atomically, from markers only. So a ``kill -9`` never puts a partial shard in an index.
"""

from __future__ import annotations

from .errors import IndexMergeError  # noqa: F401 - raised here, defined there

import glob
import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import webdataset as wds

from .tario import is_streamed
from .windowtable import write_table

INDEX_FORMAT = "neurofm-shards/1"
SHARD_MAXCOUNT = 2000  # samples per shard: 4 s × 64 ch × 200 Hz float32 ≈ 200 kB each → ~400 MB
SHARD_MAXSIZE = 512e6
FIXED_MTIME = 0  # fixed integer mtime: reruns write byte-identical shards (a float adds a pax header)


@dataclass
class ShardInfo:
    url: str  # relative to the index folder
    n_samples: int
    sha256: str
    recording: str
    subject: str
    session: str
    run: str
    n_chans: int


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class _HashingFile:
    """A file opened for writing that hashes what goes through it (no second read for the checksum)."""

    def __init__(self, path: str) -> None:
        # 8 MB writes rather than 8 KB ones: the page cache then holds the shard in large folios, and the
        # loader copied windows from such shards 8-20% faster (docs/benchmarks.md, 2026-11-23)
        self.file = open(path, "wb", buffering=8 << 20)
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.file.write(data)

    def tell(self) -> int:
        return self.file.tell()

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> str:
        """Close the file; its sha256."""
        self.file.close()
        return self.sha256.hexdigest()


def write_json_atomic(path: str | Path, obj: Any, durable: bool = True, indent: int | None = 1) -> None:
    """Write JSON to a temporary file in the same folder, fsync (when ``durable``), then rename over ``path``.

    ``indent=None`` writes compact JSON with the C encoder (an indent makes ``json`` encode in Python).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            # dumps, not dump: json.dump always encodes in Python, dumps uses the C encoder without an indent
            f.write(json.dumps(obj, indent=indent, allow_nan=False, separators=None if indent else (",", ":")))
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def encode_json(meta: dict) -> bytes:
    return json.dumps(meta, allow_nan=False, separators=(",", ":")).encode()


def json_encoder_with(common: dict) -> Callable[[dict], bytes]:
    """``extra -> encode_json({**common, **extra})``, with ``common`` encoded once, as it is now
    (later changes to it are not seen).

    A recording's channel names, types and positions are most of each of its windows' JSON.
    """
    if not common:
        return encode_json
    head = encode_json(common)[:-1]  # b'{"dataset":...' without its closing brace

    def encode(extra: dict) -> bytes:
        if clash := common.keys() & extra.keys():
            raise ValueError(f"per-window keys {sorted(clash)} repeat recording keys")
        return head + (b"," + encode_json(extra)[1:] if extra else b"}")
    return encode


def write_shards(folder: Path, prefix: str, samples: Iterable[dict], info: dict,
                 index_root: Path) -> list[ShardInfo]:
    """Write ``samples`` ({"__key__", "npy": array, "json": encoded bytes, see :func:`json_encoder_with`})
    as ``folder/prefix-%06d.tar``.

    ``info`` holds the recording/subject/session/run/n_chans fields of every shard it makes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    done: list[ShardInfo] = []
    files: dict[str, _HashingFile] = {}

    def finalize(tmp_name: str) -> None:
        sha256 = files.pop(tmp_name).close()  # the tar writer does not close a file it was given
        final = tmp_name[: -len(".tmp")]
        os.replace(tmp_name, final)
        write_table(final, sha256)  # before the item's marker: a marked shard always has its table
        done.append(ShardInfo(Path(final).relative_to(index_root).as_posix(), writer.count, sha256, **info))

    def opener(name: str) -> _HashingFile:
        files[name] = _HashingFile(name)
        return files[name]

    writer = wds.ShardWriter(str(folder / f"{prefix}-%06d.tar.tmp"), maxcount=SHARD_MAXCOUNT,
                             maxsize=SHARD_MAXSIZE, post=finalize, verbose=0, opener=opener, mtime=FIXED_MTIME)
    with writer:
        for s in samples:
            writer.write({"__key__": s["__key__"], "npy": encode_npy(s["npy"]), "json": s["json"]})
    return [d for d in done if d.n_samples > 0]


def clear_item(shard_dir: Path) -> None:
    """Remove whatever an unfinished run left for one item (shards without a marker, *.tmp)."""
    if shard_dir.exists():
        shutil.rmtree(shard_dir)


def read_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None  # a marker is written atomically: unreadable means absent


def channel_sets(markers: list[dict]) -> list[dict]:
    counts: dict[tuple[str, ...], int] = {}
    for m in markers:
        for rec in m["recordings"]:
            key = tuple(rec["ch_names"])
            counts[key] = counts.get(key, 0) + 1
    return [{"ch_names": list(k), "n_recordings": n} for k, n in sorted(counts.items(), key=lambda x: -x[1])]


def build_index(markers: list[dict], header: dict, part: str | None = None) -> dict:
    """The index of a prepared dataset from its items' markers (sorted, so reruns are identical)."""
    markers = sorted(markers, key=lambda m: m["item"])
    shards = [s for m in markers for s in m["shards"]]
    return {
        "format": INDEX_FORMAT,
        **header,
        "n_samples": int(sum(s["n_samples"] for s in shards)),
        "n_recordings": int(sum(len(m["recordings"]) for m in markers)),
        "subjects": sorted({s["subject"] for s in shards}, key=_natural),
        "channel_sets": channel_sets(markers),
        "shards": shards,
        "part": part,
    }


def _natural(s: str) -> tuple:
    return (0, int(s), "") if s.isdigit() else (1, 0, s)




def _collect(inputs: list[str]) -> list[Path]:
    paths: list[Path] = []
    for value in inputs:
        p = Path(value)
        if p.is_dir():
            paths += sorted(p.glob("index.part-*.json"))
        else:
            paths += [Path(x) for x in sorted(glob.glob(value))] or [p]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise IndexMergeError(f"no index files to merge (missing: {missing or inputs})")
    return paths


def _check_parts(indexes: dict[Path, dict], allow_partial: bool) -> None:
    parts = [ix.get("part") for ix in indexes.values() if ix.get("part")]
    totals = {p.split("/")[1] for p in parts}
    if len(totals) > 1:
        raise IndexMergeError(f"parts of different splits: {sorted(parts)}")
    if parts and not allow_partial:
        n = int(totals.pop())
        have = {int(p.split("/")[0]) for p in parts}
        lacking = sorted(set(range(n)) - have)
        if lacking:
            raise IndexMergeError(f"parts {lacking} of {n} are missing (pass --allow_partial to merge anyway)")


def merge_indexes(inputs: list[str], out: str | Path, base_url: str | None = None,
                  allow_partial: bool = False) -> dict:
    """Combine partial indexes (``--part i/n`` runs) into one; shard urls become relative to ``out``.

    ``base_url`` (e.g. ``pipe:aws s3 cp s3://bucket/ds/{url} -`` or ``https://host/ds``) replaces
    the local location of every shard, for clusters that stream shards from object storage.
    """
    out = Path(out)
    indexes = {p: json.loads(p.read_text()) for p in _collect(inputs)}
    for key in ("dataset", "preproc_hash", "format"):
        values = {str(ix.get(key)) for ix in indexes.values()}
        if len(values) > 1:
            raise IndexMergeError(f"indexes disagree on {key}: {sorted(values)} — they cannot be merged")
    _check_parts(indexes, allow_partial)
    shards, seen = [], {}
    for p, ix in indexes.items():
        for s in ix["shards"]:
            s = dict(s, url=_rebase(s["url"], p.parent, out.parent, base_url))
            if s["url"] in seen:
                raise IndexMergeError(f"shard {s['url']} is listed by both {seen[s['url']]} and {p}")
            seen[s["url"]] = p
            shards.append(s)
    first = next(iter(indexes.values()))
    header = {k: v for k, v in first.items() if k not in
              {"shards", "n_samples", "n_recordings", "subjects", "channel_sets", "part"}}
    merged = {**header, "n_samples": sum(s["n_samples"] for s in shards),
              "n_recordings": sum(ix.get("n_recordings", 0) for ix in indexes.values()),
              "subjects": sorted({s["subject"] for s in shards}, key=_natural),
              "channel_sets": _merge_channel_sets(indexes.values()),
              "shards": sorted(shards, key=lambda s: s["url"]), "part": None}
    write_json_atomic(out, merged)
    return merged


def _merge_channel_sets(indexes) -> list[dict]:
    counts: dict[tuple[str, ...], int] = {}
    for ix in indexes:
        for cs in ix.get("channel_sets", []):
            counts[tuple(cs["ch_names"])] = counts.get(tuple(cs["ch_names"]), 0) + cs["n_recordings"]
    return [{"ch_names": list(k), "n_recordings": n} for k, n in sorted(counts.items(), key=lambda x: -x[1])]


def _rebase(url: str, src: Path, dst: Path, base_url: str | None) -> str:
    if is_streamed(url) or Path(url).is_absolute():
        return url
    if base_url:
        # "pipe:aws s3 cp s3://bucket/ds/{url} -" → the shard's relative path fills {url};
        # without a placeholder ("https://host/ds") the relative path is appended.
        return base_url.replace("{url}", url) if "{url}" in base_url else f"{base_url.rstrip('/')}/{url}"
    return os.path.relpath((src / url).resolve(), dst.resolve())


def shard_info_dicts(infos: list[ShardInfo]) -> list[dict]:
    return [asdict(i) for i in infos]
