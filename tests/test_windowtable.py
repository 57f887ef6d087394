"""Window tables: the fast read path gives exactly what decoding every sample gives, and is checked."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from shardkit import DEFAULT_RECORDINGS, TINY_MI_MANIFEST, RecordingSpec, make_dataset

from neurofm.pipelines import windowtable
from neurofm.pipelines.loader import (
    Batch,
    ShardDataModule,
    collate_samples,
    collate_windows,
    decode_sample,
    eval_pipeline,
    iter_samples,
    load_index,
    shard_windows,
)
from neurofm.pipelines.prepare import prepare
from neurofm.pipelines.shards import sha256_file
from neurofm.pipelines.tario import tar_samples
from neurofm.pipelines.windowtable import (
    WindowRef,
    WindowTable,
    build_table,
    clear_table_cache,
    open_table,
    table_path,
    write_table,
)

N_SAMPLES = sum(spec.n_windows for spec in DEFAULT_RECORDINGS)


@pytest.fixture(autouse=True)
def fresh_tables():
    clear_table_cache()
    yield
    clear_table_cache()


def with_tables(index_path: Path) -> Path:
    for shard in load_index(index_path).shards:
        assert write_table(shard.url, shard.sha256) is not None
    return index_path


@pytest.fixture()
def index_path(tmp_path: Path) -> Path:
    return with_tables(make_dataset(tmp_path / "mi"))


def reference_batches(index_path: Path, batch_size: int, mask_bad_channels: bool) -> list[Batch]:
    """Every sample decoded from the tar members, batched by `collate_samples` (no tables involved)."""
    urls = [s.url for s in load_index(index_path).shards]
    samples = [decode_sample(raw) for raw in tar_samples({"url": u} for u in urls)]
    return [collate_samples(samples[i:i + batch_size], mask_bad_channels) for i in range(0, len(samples), batch_size)]


def assert_same_batch(a: Batch, b: Batch) -> None:
    for name in ("x", "chan_mask", "pos", "pos_known", "label"):
        ta, tb = getattr(a, name), getattr(b, name)
        assert ta.dtype == tb.dtype and ta.shape == tb.shape, name
        assert torch.equal(ta, tb), name
    for name in ("subject", "dataset", "key", "ch_names", "ch_types", "sfreq"):
        assert getattr(a, name) == getattr(b, name), name


def test_prepared_shards_get_a_table(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(TINY_MI_MANIFEST))
    summary = prepare(str(tmp_path / "m.yaml"), str(tmp_path / "out"), progress=False)
    index = load_index(summary.index)
    for shard in index.shards:
        table = json.loads(table_path(shard.url).read_text())
        assert table["format"] == windowtable.TABLE_FORMAT and table["shard_sha256"] == shard.sha256
        assert len(table["windows"]["key"]) == shard.n_samples
    # a dataset prepared before tables existed gets them on a rerun, which changes nothing else
    before = Path(summary.index).read_bytes()
    tables = {s.url: table_path(s.url).read_bytes() for s in index.shards}
    for s in index.shards:
        table_path(s.url).unlink()
    prepare(str(tmp_path / "m.yaml"), str(tmp_path / "out"), progress=False)
    assert Path(summary.index).read_bytes() == before
    assert {s.url: table_path(s.url).read_bytes() for s in index.shards} == tables


@pytest.mark.parametrize("mask_bad_channels", [True, False])
def test_batches_from_tables_equal_decoded_batches(index_path: Path, mask_bad_channels: bool) -> None:
    """Mixed montages (8, 12, 5 channels), a bad channel, an unplaced channel, unlabelled windows."""
    urls = [s.url for s in load_index(index_path).shards]
    ours = list(eval_pipeline(urls, 7, mask_bad_channels=mask_bad_channels))
    expected = reference_batches(index_path, 7, mask_bad_channels)
    assert len(ours) == len(expected) == -(-N_SAMPLES // 7)
    for a, b in zip(ours, expected):
        assert_same_batch(a, b)


def test_items_are_references_and_samples_are_unchanged(index_path: Path) -> None:
    urls = [s.url for s in load_index(index_path).shards]
    items = list(shard_windows({"url": u} for u in urls))
    assert len(items) == N_SAMPLES and all(type(i) is WindowRef for i in items)
    decoded = [decode_sample(raw) for raw in tar_samples({"url": u} for u in urls)]
    for sample, ours in zip(decoded, iter_samples(index_path)):
        assert ours.key == sample.key and ours.meta == sample.meta and ours.label == sample.label
        np.testing.assert_array_equal(ours.x, sample.x)
        assert ours.x.flags.writeable  # the sample owns a copy, not a view of the shard


def test_batch_of_references_and_samples(index_path: Path) -> None:
    urls = [s.url for s in load_index(index_path).shards]
    refs = list(shard_windows({"url": u} for u in urls))[8:14]  # across two recordings
    mixed = [decode_sample(r.members()) if i % 2 else r for i, r in enumerate(refs)]
    assert_same_batch(collate_windows(mixed), collate_windows(refs))


def test_sidecar_equals_a_scan_of_the_shard(index_path: Path) -> None:
    shard = load_index(index_path).shards[0].url
    from_file = WindowTable.from_json(json.loads(table_path(shard).read_text()), shard)
    scanned = build_table(shard, windowtable.map_file(shard))
    for name in ("shard_bytes", "n_chans", "n_times", "npy_prefix", "npy_starts", "json_spans", "keys", "labels"):
        assert getattr(from_file, name) == getattr(scanned, name), name
    np.testing.assert_array_equal(from_file.channel_rows, scanned.channel_rows)  # positions, masks


def test_shards_without_tables_are_scanned(tmp_path: Path) -> None:
    bare = make_dataset(tmp_path / "bare")  # plain webdataset shards, no sidecar
    assert not list((tmp_path / "bare" / "shards").glob("*.windows.json"))
    tabled = with_tables(make_dataset(tmp_path / "tabled"))
    for a, b in zip(eval_pipeline([s.url for s in load_index(bare).shards], 9),
                    eval_pipeline([s.url for s in load_index(tabled).shards], 9)):
        assert a.key == b.key and torch.equal(a.x, b.x)


@pytest.mark.parametrize("damage", ["offsets", "size", "garbage"])
def test_a_table_that_does_not_match_its_shard_is_not_used(index_path: Path, damage: str) -> None:
    shard = load_index(index_path).shards[0].url
    path = table_path(shard)
    table = json.loads(path.read_text())
    if damage == "offsets":  # windows shifted by one tar block: would read the wrong bytes
        table["windows"]["npy"] = [s + 512 for s in table["windows"]["npy"]]
        path.write_text(json.dumps(table))
    elif damage == "size":
        table["shard_bytes"] += 512
        path.write_text(json.dumps(table))
    else:
        path.write_text("{not json")
    with pytest.warns(UserWarning, match=f"{path.name}.*reading the windows from the shard itself"):
        batches = list(eval_pipeline([s.url for s in load_index(index_path).shards], 7))
    for a, b in zip(batches, reference_batches(index_path, 7, True)):
        assert_same_batch(a, b)


def test_a_rewritten_shard_is_reopened(index_path: Path, tmp_path: Path) -> None:
    """The per-process cache is keyed by size and mtime: a shard replaced in place is read anew."""
    first = load_index(index_path).shards[0].url
    assert open_table(first).keys[0].endswith("000000")
    other = make_dataset(tmp_path / "other", [RecordingSpec("07", 4, n_windows=10)])
    shutil.copy(load_index(other).shards[0].url, first)
    table_path(first).unlink()
    assert open_table(first).keys[0].startswith("synthetic-mi/07/")


def test_a_shard_mixing_recordings_gets_no_table(tmp_path: Path) -> None:
    """Hand-made shards may mix recordings or shapes: read sample by sample, as before."""
    index = make_dataset(tmp_path / "mi", [RecordingSpec("01", 8, n_windows=3), RecordingSpec("02", 5, n_windows=3)])
    urls = [s.url for s in load_index(index).shards]
    merged = tmp_path / "mixed.tar"
    with tarfile.open(merged, "w", format=tarfile.USTAR_FORMAT) as out:
        for url in urls:
            with tarfile.open(url) as src:
                for member in src.getmembers():
                    out.addfile(member, src.extractfile(member))
    assert build_table(str(merged), windowtable.map_file(str(merged))) is None
    assert write_table(merged) is None and not table_path(merged).exists()
    samples = list(shard_windows([{"url": str(merged)}]))
    assert [s.x.shape[0] for s in samples] == [8, 8, 8, 5, 5, 5]  # decoded Samples, both recordings
    batch = collate_windows(samples)
    assert batch.x.shape == (6, 8, 64) and batch.chan_mask.sum(1).tolist() == [8, 8, 8, 5, 5, 5]


def test_train_loader_reads_tables(index_path: Path) -> None:
    dm = ShardDataModule(index_path, batch_size=6, seed=3, shuffle_buffer=20)
    batches = list(dm.train_dataloader())
    assert len(batches) == N_SAMPLES // 6
    reference = {s.key: s.x for s in iter_samples(index_path)}
    for batch in batches:
        for i, key in enumerate(batch.key):
            x = reference[key]
            assert torch.equal(batch.x[i, : x.shape[0]], torch.from_numpy(x))
            assert not batch.x[i, x.shape[0]:].any()


def test_member_bytes_are_the_tar_members(index_path: Path) -> None:
    shard = load_index(index_path).shards[0].url
    ref = next(iter(shard_windows([{"url": shard}])))
    members = ref.members()
    with tarfile.open(shard) as tar:
        assert tar.extractfile(f"{ref.key}.json").read() == members["json"]
        x = np.load(io.BytesIO(tar.extractfile(f"{ref.key}.npy").read()), allow_pickle=False)
    np.testing.assert_array_equal(np.load(io.BytesIO(bytes(members["npy"])), allow_pickle=False), x)
    assert sha256_file(shard) == json.loads(table_path(shard).read_text())["shard_sha256"]


def test_recycled_batch_arrays_equal_decoded_batches(index_path: Path) -> None:
    """Each batch dropped before the next: arrays are reused, padding rows are rewritten."""
    urls = [s.url for s in load_index(index_path).shards]
    expected = reference_batches(index_path, 3, True)
    pointers = set()
    for _ in range(2):
        for batch, ref in zip(eval_pipeline(urls, 3), expected, strict=True):
            assert_same_batch(batch, ref)
            pointers.add(batch.x.data_ptr())
            del batch
    assert len(pointers) < len(expected)  # some arrays were recycled


def test_held_batches_are_never_overwritten(index_path: Path) -> None:
    urls = [s.url for s in load_index(index_path).shards]
    expected = reference_batches(index_path, 3, True)
    first = [b.x[1:] for b in eval_pipeline(urls, 3)]  # views keep their arrays alive
    second = list(eval_pipeline(urls, 3))
    for x, ref, again in zip(first, expected, second, strict=True):
        torch.testing.assert_close(x, ref.x[1:], rtol=0, atol=0)
        assert again.x.data_ptr() not in {y.data_ptr() for y in first}


def test_positions_from_json_values() -> None:
    pos = windowtable.positions([[0.1, None, 0.3], [None, None, None]], 2, "w")
    assert pos.dtype == np.float32 and pos.shape == (2, 3)
    np.testing.assert_array_equal(np.isnan(pos), [[False, True, False], [True, True, True]])
    assert windowtable.positions([], 0, "w").shape == (0, 3)
    assert np.isnan(windowtable.positions(None, 2, "w")).all()
    for bad in ([[0.1, 0.2], [0.1, 0.2, 0.3]], [[0.1, 0.2, "x"]], [[0.1, 0.2, 0.3]]):
        with pytest.raises(ValueError, match="table of s.tar: ch_pos"):
            windowtable.positions(bad, 2, "table of s.tar")
