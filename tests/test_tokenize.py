"""``neurofm tokenize``: token shards equal ``encode``, keep the metadata, resume, fail clearly."""

from __future__ import annotations

import io
import json
import shutil
from itertools import groupby
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
import yaml
from safetensors.torch import load_file, save_file

from neurofm.cli import main
from neurofm.pipelines.loader import iter_samples, load_index
from neurofm.pipelines.prepare import prepare
from neurofm.pipelines.shards import sha256_file
from neurofm.tokenizers import tokenize as tokenize_module
from neurofm.tokenizers.rvq import RVQConfig, RVQTokenizer
from neurofm.tokenizers.token_shards import code_dtype, iter_token_windows, load_token_index
from neurofm.tokenizers.tokenize import TokenizeError, tokenize_dataset
from shardkit import TINY_MI_MANIFEST, make_dataset

# ~2 k parameters: 64-sample windows at 100 Hz (shardkit) → 4 frames of 3 levels, K = 16.
MICRO = dict(name="micro", sfreq=100.0, channels=(4, 8, 8), strides=(4, 5), dilations=(1,), latent_dim=8,
             n_q=3, codebook_size=16, stem_kernels=(5, 25), stft_windows=(16, 64))
BATCH = 4  # smaller than a shard (10 windows): shards are encoded in several batches


def save_micro(folder: Path, seed: int = 0, **overrides) -> Path:
    """A randomly initialised tokenizer; kmeans_init=False: its codebooks are ready without training."""
    torch.manual_seed(seed)
    RVQTokenizer(RVQConfig(**{**MICRO, "kmeans_init": False, **overrides})).save_pretrained(folder)
    return folder


def run(index: Path, tok: Path, out: Path, **kw):
    return tokenize_dataset(str(index), str(tok), str(out), batch_size=kw.pop("batch_size", BATCH),
                            progress=False, **kw)


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "shards").rglob("*.tar"))}


def cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    return exit_.value.code


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    """3 recordings of 8, 12 and 5 channels, 2 shards each (shardkit)."""
    return make_dataset(tmp_path_factory.mktemp("src"))


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Path:
    return save_micro(tmp_path_factory.mktemp("tok") / "micro")


@pytest.fixture(scope="module")
def done(src: Path, tok: Path, tmp_path_factory) -> Path:
    """A complete token dataset; tests copy it before changing anything."""
    out = tmp_path_factory.mktemp("tokens") / "out"
    summary = run(src, tok, out)
    assert (summary.n_ok, summary.n_failed, summary.n_samples) == (6, 0, 60)
    return out


def copy_of(done: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(done, tmp_path / "copy"))


# ------------------------------------------------------------------------------------ content
def test_codes_equal_encode_in_the_compact_dtype(src: Path, tok: Path, done: Path):
    model = RVQTokenizer.from_pretrained(str(tok))
    windows = list(iter_token_windows(done))
    expected = []
    for _, shard in groupby(iter_samples(src), key=lambda s: s.url):
        shard = list(shard)
        for i in range(0, len(shard), BATCH):  # the batches tokenize used
            x = torch.from_numpy(np.stack([s.x for s in shard[i:i + BATCH]]))  # (B, C, T)
            expected += list(model.encode(x).numpy())  # (C, n_q, F) each
    assert len(windows) == len(expected) == 60
    for w, codes in zip(windows, expected):
        assert w.tokens.dtype == np.uint8
        assert w.tokens.shape == (len(w.meta["ch_names"]), 3, 4)  # (n_chans, n_q, ceil(64 / hop 20))
        np.testing.assert_array_equal(w.tokens, codes)
    assert len({w.tokens.tobytes() for w in windows}) > 1


def test_metadata_is_the_source_plus_a_tokens_entry(src: Path, tok: Path, done: Path):
    for s, w in zip(iter_samples(src), iter_token_windows(done), strict=True):
        assert w.key == s.key
        assert {k: v for k, v in w.meta.items() if k != "tokens"} == s.meta
        assert w.meta["tokens"] == {"n_q": 3, "codebook_size": 16, "frame_rate": 5.0, "dtype": "uint8"}
    source, index = json.loads(src.read_text()), json.loads((done / "index.json").read_text())
    for key in ("dataset", "paradigm", "preproc_hash", "sfreq", "classes", "subjects", "channel_sets", "n_samples"):
        assert index[key] == source[key], key
    assert (index["format"], index["kind"]) == ("neurofm-tokens/1", "tokens")
    assert index["source"] == {"index": str(src), "sha256": sha256_file(src)}
    assert index["tokenizer"]["sha256"] == sha256_file(tok / "model.safetensors")
    assert index["tokenizer"]["config"]["codebook_size"] == 16
    assert index["tokens"]["bits_per_second"] == 5.0 * 3 * 4  # frames/s × levels × log2 K
    for s, t in zip(source["shards"], index["shards"], strict=True):
        assert t["url"] == s["url"] and t["n_samples"] == s["n_samples"] and t["source_sha256"] == s["sha256"]
        assert t["sha256"] == sha256_file(done / t["url"])


def test_plain_webdataset_reads_token_shards(done: Path):
    index = json.loads((done / "index.json").read_text())
    urls = [str(done / s["url"]) for s in index["shards"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert len(samples) == index["n_samples"]
    tokens = np.load(io.BytesIO(samples[0]["tokens.npy"]), allow_pickle=False)
    assert tokens.dtype == np.uint8 and json.loads(samples[0]["json"])["tokens"]["n_q"] == 3


def test_each_loader_refuses_the_other_format(src: Path, done: Path):
    with pytest.raises(ValueError, match="neurofm-tokens/1"):
        load_index(done / "index.json")
    with pytest.raises(ValueError, match="neurofm tokenize"):
        load_token_index(src)
    assert load_token_index(done).n_q == 3


@pytest.mark.parametrize(("k", "dtype"), [(16, np.uint8), (256, np.uint8), (257, np.uint16), (65536, np.uint16),
                                          (65537, np.uint32)])
def test_code_dtype_is_the_smallest_that_holds_k(k: int, dtype: type):
    assert code_dtype(k) == dtype


def test_a_real_prepared_dataset_keeps_its_shard_layout(tmp_path: Path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump(TINY_MI_MANIFEST))
    prepare(str(manifest), str(tmp_path / "prep"), progress=False)
    tok = save_micro(tmp_path / "tok200", sfreq=200.0)
    summary = run(tmp_path / "prep", tok, tmp_path / "tok_out")
    source, index = (json.loads(p.read_text()) for p in (tmp_path / "prep/index.json", tmp_path / "tok_out/index.json"))
    assert summary.n_failed == 0 and [s["url"] for s in index["shards"]] == [s["url"] for s in source["shards"]]
    assert index["shards"][0]["url"].count("/") == 2  # shards/<item>/<rec>-000000.tar, as prepare wrote it
    assert sum(1 for _ in iter_token_windows(tmp_path / "tok_out")) == source["n_samples"] == 36


# ------------------------------------------------------------------------------------- resume
def test_rerun_skips_everything_and_a_fresh_run_is_byte_identical(src: Path, tok: Path, done: Path, tmp_path: Path):
    before, shards = (done / "index.json").read_bytes(), shard_bytes(done)
    summary = run(src, tok, done)
    assert (summary.n_skipped, summary.n_ok) == (6, 0)
    assert (done / "index.json").read_bytes() == before and shard_bytes(done) == shards
    run(src, tok, tmp_path / "fresh", batch_size=BATCH)
    assert (tmp_path / "fresh/index.json").read_bytes() == before and shard_bytes(tmp_path / "fresh") == shards


def test_resume_after_a_crash_between_shard_and_marker(src: Path, tok: Path, done: Path, tmp_path: Path):
    out = copy_of(done, tmp_path)
    (out / "index.json").unlink()
    victim = sorted((out / "parts").glob("*.json"))[2]
    victim.unlink()  # died after renaming the shard, before its marker ...
    shard = out / "shards" / f"{victim.stem}.tar"
    shard.write_bytes(shard.read_bytes()[:1000])  # ... (and the shard is torn, too)
    (out / "shards" / "next-000000.tar.tmp").write_bytes(b"\0" * 100)  # ... while writing the next one
    summary = run(src, tok, out)
    assert (summary.n_ok, summary.n_skipped) == (1, 5)
    assert (out / "index.json").read_bytes() == (done / "index.json").read_bytes()
    assert shard_bytes(out) == shard_bytes(done) and not list(out.rglob("*.tmp"))


def test_interrupted_midway_then_rerun_gives_the_same_index(src: Path, tok: Path, done: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch):
    calls, encode = [], tokenize_module._encode

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:  # third shard, first batch
            raise KeyboardInterrupt
        return encode(*args, **kwargs)

    monkeypatch.setattr(tokenize_module, "_encode", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(src, tok, out)
    assert len(list((out / "parts").glob("*.json"))) == 2 and not (out / "index.json").exists()
    monkeypatch.setattr(tokenize_module, "_encode", encode)
    summary = run(src, tok, out)
    assert (summary.n_ok, summary.n_skipped) == (4, 2)
    assert (out / "index.json").read_bytes() == (done / "index.json").read_bytes()


def test_another_n_q_or_tokenizer_redoes_the_shards(src: Path, tok: Path, done: Path, tmp_path: Path):
    out = copy_of(done, tmp_path)
    summary = run(src, tok, out, n_q=2)
    assert summary.n_ok == 6 and summary.tokens.bits_per_second == 5.0 * 2 * 4
    assert {w.tokens.shape[1] for w in iter_token_windows(out)} == {2}
    other = save_micro(tmp_path / "other", seed=1)
    assert run(src, other, out).n_ok == 6
    index = json.loads((out / "index.json").read_text())
    assert index["tokenizer"]["sha256"] == sha256_file(other / "model.safetensors")
    assert run(src, tok, out).n_ok == 6
    assert (out / "index.json").read_bytes() == (done / "index.json").read_bytes()


# ------------------------------------------------------------------------------------- errors
def _with_nan_window(src: Path, root: Path) -> Path:
    """A copy of the source dataset whose second shard holds a NaN (its sha256 updated in the index)."""
    shutil.copytree(src.parent, root)
    index = json.loads((root / "index.json").read_text())
    entry = index["shards"][1]
    samples = list(wds.WebDataset(str(root / entry["url"]), shardshuffle=False, empty_check=False))
    with wds.TarWriter(str(root / entry["url"])) as sink:
        for i, s in enumerate(samples):
            x = np.load(io.BytesIO(s["npy"]))
            x[0, 0] = np.nan if i == 3 else x[0, 0]
            sink.write({"__key__": s["__key__"], "npy": x, "json": s["json"]})
    entry["sha256"] = sha256_file(root / entry["url"])
    (root / "index.json").write_text(json.dumps(index))
    return root / "index.json"


def test_a_failing_shard_is_reported_and_the_others_survive(src: Path, tok: Path, tmp_path: Path):
    bad = _with_nan_window(src, tmp_path / "bad_src")
    out = tmp_path / "out"
    assert cli("tokenize", str(bad), "--tokenizer", str(tok), "--out", str(out), "--progress", "false") == 1
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 1 and errors[0]["shard"].endswith("_01_0_1-000001.tar")
    assert "NaN" in errors[0]["reason"] and "/000013" in errors[0]["reason"]  # names the window
    index = json.loads((out / "index.json").read_text())
    assert len(index["shards"]) == 5 and index["n_samples"] == 50 and not list(out.rglob("*.tmp"))


def test_a_source_shard_changed_after_its_index_fails_alone(src: Path, tok: Path, tmp_path: Path):
    root = Path(shutil.copytree(src.parent, tmp_path / "stale_src"))
    shard = root / json.loads(src.read_text())["shards"][4]["url"]
    shard.write_bytes(shard.read_bytes()[:2048])  # torn after the index was written
    summary = run(root / "index.json", tok, tmp_path / "out")
    assert (summary.n_ok, summary.n_failed) == (5, 1)
    assert "changed after the index was written" in summary.failures[0].reason


def _drop_a_weight(folder: Path) -> None:
    weights = load_file(folder / "model.safetensors")
    weights.pop("encoder.stem.mix.weight")
    save_file(weights, folder / "model.safetensors")


def test_bad_tokenizers_are_clear_errors(src: Path, tok: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from huggingface_hub import constants

    out = str(tmp_path / "out")
    with pytest.raises(TokenizeError, match="tokenizer folder not found: .*absent"):
        run(src, tmp_path / "no" / "absent", out)
    broken = Path(shutil.copytree(tok, tmp_path / "broken"))
    _drop_a_weight(broken)
    with pytest.raises(TokenizeError, match=r"broken cannot be loaded.*missing keys.*encoder\.stem\.mix\.weight"):
        run(src, broken, out)
    untrained = save_micro(tmp_path / "untrained", kmeans_init=True)
    with pytest.raises(TokenizeError, match="never initialised"):
        run(src, untrained, out)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    with pytest.raises(TokenizeError, match="neurofm/no-such-tokenizer cannot be loaded .*hub id"):
        tokenize_dataset(str(src), "neurofm/no-such-tokenizer", out, progress=False)
    assert not (tmp_path / "out" / "index.json").exists()


def test_inputs_the_tokenizer_cannot_take_are_clear_errors(src: Path, tok: Path, tmp_path: Path):
    fixed = save_micro(tmp_path / "fixed8", n_chans=8)
    with pytest.raises(TokenizeError, match=r"built for 8 channels; 4 of 6 shards .*_02_0_1-000000\.tar \(12\)"):
        run(src, fixed, tmp_path / "o")
    with pytest.raises(TokenizeError, match="100 Hz, tokenizer .* 200 Hz"):
        run(src, save_micro(tmp_path / "at200", sfreq=200.0), tmp_path / "o")
    with pytest.raises(TokenizeError, match="n_q=4: tokenizer .* levels 1..3"):
        run(src, tok, tmp_path / "o", n_q=4)
    with pytest.raises(TokenizeError, match="own folder"):
        run(src, tok, src.parent)
    with pytest.raises(TokenizeError, match="prepared-dataset index not found"):
        run(tmp_path / "missing.json", tok, tmp_path / "o")


def test_cli_help_and_exit_codes(src: Path, tok: Path, done: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    assert cli("tokenize", "--help") == 0
    assert "--tokenizer" in capsys.readouterr().out
    out = str(copy_of(done, tmp_path))
    assert cli("tokenize", str(src), "--tokenizer", str(tok), "--out", out, "--batch_size", str(BATCH),
               "--progress", "false") == 0
    assert "6 already complete" in capsys.readouterr().out
    assert cli("tokenize", str(src), "--tokenizer", str(tmp_path / "absent"), "--out", out) == 2
    assert "tokenizer folder not found" in capsys.readouterr().err

