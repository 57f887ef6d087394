"""Token shards (``neurofm-tokens/1``): what ``neurofm tokenize`` writes, and a reader for them.

A token dataset mirrors the prepared dataset it came from (docs/tokenizers.md, "Token shards"):
one tar shard per source shard, each sample holding the source ``__key__``, ``tokens.npy`` (the
codes, ``(n_chans, n_q, n_frames)`` in the smallest unsigned dtype that holds the codebook) and
``.json`` (the source window's metadata unchanged, plus a small ``tokens`` entry)::

    for w in iter_token_windows("runs/tokens/physionet"):   # a folder or its index.json
        w.tokens    # (n_chans, n_q, n_frames) uint8 / uint16
        w.meta      # ch_names, ch_pos, label, subject, ... and meta["tokens"]["n_q"] ...

The index has its own ``format`` so that the float-window loader refuses it by name instead of
failing on a missing ``.npy`` member.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..pipelines.loader import ShardInfo, read_index_json, resolve_url
from ..pipelines.tario import tar_samples

TOKEN_FORMAT = "neurofm-tokens/1"
TOKEN_KIND = "tokens"
TOKENS_MEMBER = "tokens.npy"  # sample member: "<key>.tokens.npy"
INDEX_NAME = "index.json"


def code_dtype(codebook_size: int) -> np.dtype:
    """The smallest unsigned integer dtype holding codes in ``[0, codebook_size)``."""
    if codebook_size < 1:
        raise ValueError(f"codebook_size={codebook_size} must be >= 1")
    for dtype in (np.uint8, np.uint16, np.uint32):
        if codebook_size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"codebook_size={codebook_size} does not fit in 32 bits")


def encode_tokens(codes: np.ndarray) -> bytes:
    """``(n_chans, n_q, n_frames)`` codes (already in their compact dtype) → ``.npy`` bytes."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(codes), allow_pickle=False)
    return buf.getvalue()


def decode_tokens(data: bytes | memoryview, where: str) -> np.ndarray:
    """``.npy`` bytes → ``(n_chans, n_q, n_frames)`` unsigned codes; never unpickles."""
    try:
        tokens = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"{where}: {TOKENS_MEMBER} is not a plain .npy array ({err})") from err
    if tokens.ndim != 3 or tokens.dtype.kind != "u":
        raise ValueError(f"{where}: {TOKENS_MEMBER} is {tokens.dtype} {tokens.shape}, "
                         "expected unsigned integers (n_chans, n_q, n_frames)")
    return tokens


@dataclass(frozen=True)
class TokenIndex:
    """A parsed token-dataset ``index.json``; shard urls are resolved against its folder."""

    path: Path
    dataset: str
    n_q: int
    codebook_size: int
    frame_rate: float  # frames per second
    dtype: str  # numpy name of the codes' dtype ("uint8", "uint16")
    n_samples: int
    subjects: list[str]
    shards: list[ShardInfo]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the whole file, for provenance


@dataclass
class TokenWindow:
    """One tokenized window. ``tokens``: (n_chans, n_q, n_frames) unsigned codes."""

    key: str
    tokens: np.ndarray
    meta: dict[str, Any]  # the source window's metadata, plus meta["tokens"]
    url: str


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in obj:
        raise ValueError(f"{where}: missing field '{name}'")
    if not isinstance(obj[name], kind) or isinstance(obj[name], bool):
        raise ValueError(f"{where}: field '{name}' has type {type(obj[name]).__name__}, expected {kind}")
    return obj[name]


def _shard(entry: Any, i: int, dataset: str, root: Path, where: str) -> ShardInfo:
    where = f"{where}: shards[{i}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is {type(entry).__name__}, expected an object")
    return ShardInfo(url=resolve_url(_field(entry, "url", str, where), root),
                     n_samples=_field(entry, "n_samples", int, where),
                     subject=str(_field(entry, "subject", (str, int), where)), dataset=dataset,
                     recording=str(entry.get("recording", "")), session=_optional_str(entry.get("session")),
                     run=_optional_str(entry.get("run")), n_chans=entry.get("n_chans"), sha256=entry.get("sha256"))


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def load_token_index(path: str | Path) -> TokenIndex:
    """Read a token dataset's ``index.json`` (or the one in its folder); errors name the file and field."""
    file, raw = read_index_json(path, TOKEN_FORMAT, " (a token dataset written by `neurofm tokenize`)")
    where = str(file)
    tokens = _field(raw, "tokens", dict, where)
    dataset = _field(raw, "dataset", str, where)
    root = file.parent.resolve()
    shards = [_shard(e, i, dataset, root, where) for i, e in enumerate(_field(raw, "shards", list, where))]
    return TokenIndex(
        path=file, dataset=dataset, n_q=_field(tokens, "n_q", int, f"{where}: tokens"),
        codebook_size=_field(tokens, "codebook_size", int, f"{where}: tokens"),
        frame_rate=float(_field(tokens, "frame_rate", (int, float), f"{where}: tokens")),
        dtype=_field(tokens, "dtype", str, f"{where}: tokens"),
        n_samples=int(raw.get("n_samples", sum(s.n_samples for s in shards))),
        subjects=[str(s) for s in raw.get("subjects") or []], shards=shards, raw=raw)


def iter_shard_windows(url: str, n_q: int | None = None, dtype: str | None = None) -> Iterator[TokenWindow]:
    """The windows of one token shard, in shard order; ``n_q``/``dtype``, when given, are checked."""
    for raw in tar_samples([{"url": url}]):
        key = raw.get("__key__", "?")
        where = f"sample {key} in {url}"
        missing = [m for m in (TOKENS_MEMBER, "json") if m not in raw]
        if missing:
            raise ValueError(f"{where}: missing member(s) {missing} (has {sorted(raw)})")
        tokens = decode_tokens(raw[TOKENS_MEMBER], where)
        if (n_q is not None and tokens.shape[1] != n_q) or (dtype is not None and tokens.dtype != np.dtype(dtype)):
            raise ValueError(f"{where}: tokens are {tokens.dtype} {tokens.shape}, the index says "
                             f"{dtype} with n_q={n_q}")
        yield TokenWindow(key=key, tokens=tokens, meta=json.loads(bytes(raw["json"])), url=url)


def iter_token_windows(index_path: str | Path | TokenIndex) -> Iterator[TokenWindow]:
    """Every window of a token dataset, in index order (this process; no workers, no shuffling)."""
    index = index_path if isinstance(index_path, TokenIndex) else load_token_index(index_path)
    for shard in index.shards:
        yield from iter_shard_windows(shard.url, index.n_q, index.dtype)
