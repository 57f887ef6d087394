"""Prepared shards → batches: index parsing, subject selection, padding, seeds, epochs, ranks."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections import Counter
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import webdataset as wds
from shardkit import DEFAULT_RECORDINGS, RecordingSpec, expected_pos, expected_window, make_dataset, sample_key

import neurofm.pipelines.loader as loader_module
from neurofm.pipelines.windowtable import table_path, write_table
from neurofm.pipelines.loader import (
    Batch,
    ShardDataModule,
    ShardLoader,
    collate_samples,
    eval_pipeline,
    iter_samples,
    resolve_url,
    load_index,
    train_pipeline,
)

SPECS = {spec.subject: spec for spec in DEFAULT_RECORDINGS}
N_SAMPLES = sum(spec.n_windows for spec in DEFAULT_RECORDINGS)  # 60, in 6 shards of 10


@pytest.fixture(scope="module", params=["webdataset", "tables"])
def index_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dataset, without window-table sidecars (the webdataset pipelines) and with them
    (``prepare``'s output: the loaders are then table streams, ``tablestream.py``)."""
    path = make_dataset(tmp_path_factory.mktemp("prepared") / "synthetic_mi")
    if request.param == "tables":
        for shard in load_index(path).shards:
            assert write_table(shard.url, shard.sha256) is not None
    return path


def has_tables(index_path: Path) -> bool:
    return all(table_path(s.url).is_file() for s in load_index(index_path).shards)


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run as rank 0 of 1 unless they say otherwise, whatever the caller's environment."""
    for name in ("RANK", "WORLD_SIZE", "WORKER", "NUM_WORKERS"):
        monkeypatch.delenv(name, raising=False)


def keys_of(subject: str) -> set[str]:
    spec = SPECS[subject]
    return {sample_key("synthetic_mi", spec, w) for w in range(spec.n_windows)}


def epoch_keys(loader) -> list[list[str]]:
    return [batch.key for batch in loader]


# --- format and index ---------------------------------------------------------------------------


def test_shards_decode_with_plain_webdataset(index_path: Path) -> None:
    urls = [str(p) for p in sorted((index_path.parent / "shards").glob("*.tar"))]
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert len(samples) == N_SAMPLES
    first = samples[0]
    x = np.load(io.BytesIO(first["npy"]), allow_pickle=False)
    meta = json.loads(first["json"])
    assert x.dtype == np.float32 and x.shape == (len(meta["ch_names"]), meta["n_times"])
    assert first["__key__"] == sample_key("synthetic_mi", SPECS[meta["subject"]], meta["window"])
    np.testing.assert_array_equal(x, expected_window(SPECS[meta["subject"]], meta["window"]))


def test_load_index_resolves_urls(index_path: Path, tmp_path: Path) -> None:
    index = load_index(index_path.parent)  # a folder works too
    assert index.dataset == "synthetic_mi" and index.sfreq == 100.0 and index.n_samples == N_SAMPLES
    assert index.subjects == ["01", "02", "03"] and len(index.shards) == 6
    assert all(Path(s.url).is_file() and Path(s.url).parent == index_path.parent / "shards" for s in index.shards)

    raw = json.loads(index_path.read_text())
    kept = ["/abs/a.tar", "pipe:aws s3 cp s3://bucket/b.tar -", "https://host/c.tar"]
    for entry, url in zip(raw["shards"], kept):
        entry["url"] = url
    (tmp_path / "index.json").write_text(json.dumps(raw))
    assert [s.url for s in load_index(tmp_path / "index.json").shards[:3]] == kept


def test_relative_urls_resolve_through_links_and_parent_folders(index_path: Path, tmp_path: Path) -> None:
    link = tmp_path / "linked"
    link.symlink_to(index_path.parent, target_is_directory=True)
    urls = [s.url for s in load_index(link / "index.json").shards]
    assert urls == [s.url for s in load_index(index_path).shards]  # the link's target, as Path.resolve gives
    raw = json.loads(index_path.read_text())
    (tmp_path / "elsewhere").mkdir()
    raw["shards"][0]["url"] = os.path.relpath(urls[0], tmp_path / "elsewhere")  # "../../…/shards/x.tar"
    (tmp_path / "elsewhere" / "index.json").write_text(json.dumps(raw))
    assert load_index(tmp_path / "elsewhere").shards[0].url == urls[0]


def test_missing_index_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.json")):
        load_index(tmp_path / "nope.json")
    (tmp_path / "index.part-1-of-2.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="index merge"):
        load_index(tmp_path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda raw: raw.pop("shards"), "missing field 'shards'"),
        (lambda raw: raw.update(format="other/2"), "field 'format'"),
        (lambda raw: raw["shards"][1].pop("subject"), r"shards\[1\]: missing field 'subject'"),
        (lambda raw: raw["shards"][0].update(n_samples="10"), r"shards\[0\]: field 'n_samples'"),
    ],
)
def test_malformed_index_names_file_and_field(index_path: Path, tmp_path: Path, edit, message: str) -> None:
    raw = json.loads(index_path.read_text())
    edit(raw)
    bad = tmp_path / "index.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=message) as err:
        load_index(bad)
    assert str(bad) in str(err.value)


def test_invalid_json_names_file(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(ValueError, match=f"{tmp_path / 'index.json'}: not valid JSON"):
        load_index(tmp_path)


def test_select_by_subject(index_path: Path) -> None:
    index = load_index(index_path)
    assert len(index.select(["02"])) == 2 and all("_02_" in url for url in index.select(["02"]))
    assert index.select(["synthetic_mi/02"]) == index.select(["02"])
    assert len(index.select(exclude_subjects=["01", "03"])) == 2
    with pytest.raises(ValueError, match=r"\['7'\] have no shard"):
        index.select(["7"])
    with pytest.raises(TypeError, match="list of strings"):
        index.select("02")


# --- collate ------------------------------------------------------------------------------------


def test_collate_pads_mixed_montages(index_path: Path) -> None:
    samples = [next(iter_samples(index_path, [s])) for s in ("01", "02", "03")]  # 8, 12, 5 channels
    batch = collate_samples(samples)
    assert batch.x.shape == (3, 12, 64) and batch.x.dtype == torch.float32
    assert batch.pos.shape == (3, 12, 3) and batch.chan_mask.shape == batch.pos_known.shape == (3, 12)
    assert batch.chan_mask.dtype == batch.pos_known.dtype == torch.bool
    assert batch.sfreq == 100.0 and batch.subject == ["01", "02", "03"]
    assert batch.label.tolist() == [0, 0, -1]  # subject 03 is unlabelled
    assert [len(n) for n in batch.ch_names] == [8, 12, 5]
    for i, spec in enumerate(DEFAULT_RECORDINGS):
        c = spec.n_chans
        torch.testing.assert_close(batch.x[i, :c], torch.from_numpy(expected_window(spec, 0)))
        assert not batch.x[i, c:].any() and not batch.pos[i, c:].any()
        assert not batch.chan_mask[i, c:].any() and not batch.pos_known[i, c:].any()
    # subject 01: C3 is bad → masked; its position is still known.
    c3 = SPECS["01"].ch_names.index("C3")
    assert batch.chan_mask[0, :8].tolist() == [j != c3 for j in range(8)] and batch.pos_known[0, :8].all()
    # subject 02: last channel X1 has no position → kept in chan_mask, pos_known False, pos 0.
    assert batch.chan_mask[1].all() and batch.pos_known[1].tolist() == [True] * 11 + [False]
    assert not batch.pos[1, 11].any() and torch.isfinite(batch.pos).all()
    torch.testing.assert_close(batch.pos[1, :11], torch.tensor(expected_pos(SPECS["02"])[:11]))

    assert collate_samples(samples, mask_bad_channels=False).chan_mask[0, :8].all()
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and len(moved) == 3 and moved.key == batch.key


def test_collate_rejects_mixed_n_times_or_sfreq(index_path: Path, tmp_path: Path) -> None:
    a = next(iter_samples(index_path))
    other = make_dataset(tmp_path / "other", [RecordingSpec("09", 4, n_windows=1)], n_times=32, sfreq=250.0)
    b = next(iter_samples(other))
    with pytest.raises(ValueError, match="different n_times"):
        collate_samples([a, b])
    b.x = np.zeros((4, 64), np.float32)
    with pytest.raises(ValueError, match="different sfreq"):
        collate_samples([a, b])
    with pytest.raises(ValueError, match="different sfreq"):
        ShardDataModule([index_path, other])


# --- eval loaders: every selected sample exactly once -------------------------------------------


def test_iter_samples_in_index_order(index_path: Path) -> None:
    keys = [s.key for s in iter_samples(index_path)]
    expected = [sample_key("synthetic_mi", spec, w) for spec in DEFAULT_RECORDINGS for w in range(spec.n_windows)]
    assert keys == expected
    assert {s.key for s in iter_samples(index_path, ["03"])} == keys_of("03")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_eval_loader_yields_exactly_the_selected_subjects(index_path: Path, num_workers: int) -> None:
    dm = ShardDataModule(index_path, batch_size=7, num_workers=num_workers,
                         val_subjects=["02"], test_subjects=["01", "03"])
    val = Counter(k for batch in dm.val_dataloader() for k in batch.key)
    test = Counter(k for batch in dm.test_dataloader() for k in batch.key)
    assert set(val) == keys_of("02") and set(val.values()) == {1}
    assert set(test) == keys_of("01") | keys_of("03") and set(test.values()) == {1}


def test_workers_send_window_references_and_batches_equal_the_in_process_ones(index_path: Path) -> None:
    import pickle

    # Every window once either way (workers batch their own shards): compare them window by window.
    def windows(num_workers: int) -> dict[str, tuple[torch.Tensor, ...]]:
        dm = ShardDataModule(index_path, batch_size=4, num_workers=num_workers, val_subjects=["01", "02", "03"])
        # a window's real channels only: the padding depends on the batch's other windows
        return {key: (b.x[i, :n], b.pos[i, :n], b.chan_mask[i, :n], b.pos_known[i, :n], b.label[i])
                for b in dm.val_dataloader() for i, key in enumerate(b.key) for n in [len(b.ch_names[i])]}

    in_process, from_workers = windows(0), windows(2)
    assert in_process.keys() == from_workers.keys() and len(in_process) == N_SAMPLES
    for key, parts in in_process.items():
        assert all(torch.equal(a, b) for a, b in zip(parts, from_workers[key])), key

    table_refs = [r for r in loader_module.shard_windows([{"url": s.url} for s in load_index(index_path).shards])][:4]
    refs = loader_module.BatchRefs(tuple((r.table.url, r.i) for r in table_refs))
    assert len(pickle.dumps(refs)) < 2000  # what crosses the process boundary
    read = refs.read()
    assert read.key == [r.key for r in table_refs]
    assert torch.equal(read.x, loader_module.collate_windows(table_refs).x)
    gone = loader_module.BatchRefs((("/nonexistent/shard-000000.tar", 0),))
    with pytest.raises(FileNotFoundError, match="/nonexistent/shard-000000.tar"):
        gone.read()


def test_train_excludes_held_out_subjects(index_path: Path) -> None:
    dm = ShardDataModule(index_path, batch_size=4, val_subjects=["02"], test_subjects=["03"],
                         train_batches_per_epoch=20)
    assert {k for batch in dm.train_dataloader() for k in batch.key} <= keys_of("01")
    assert [s.subject for s in dm.shards(dm.train_filter)] == ["01", "01"]
    with pytest.raises(ValueError, match="have no shard"):
        ShardDataModule(index_path, val_subjects=["7"])
    eval_only = ShardDataModule(index_path, exclude_subjects=["01", "02"], val_subjects=["03"])
    with pytest.raises(ValueError, match="no train shards left"):
        eval_only.train_dataloader()
    with pytest.raises(ValueError, match="no test shards left"):
        ShardDataModule(index_path, exclude_subjects=["01"], test_subjects=["01"])


def test_samples_are_filtered_by_their_own_subject(index_path: Path, tmp_path: Path) -> None:
    raw = json.loads(index_path.read_text())
    for entry in raw["shards"]:
        entry["url"] = str(index_path.parent / entry["url"])
        entry["subject"] = "01" if entry["subject"] == "03" else entry["subject"]  # a wrong index
    (tmp_path / "index.json").write_text(json.dumps(raw))
    with pytest.warns(UserWarning, match="subject '03' is not selected"):
        keys = {s.key for s in iter_samples(tmp_path, ["01"])}
    assert keys == keys_of("01")
    dm = ShardDataModule(tmp_path, batch_size=4, val_subjects=["01"])
    with pytest.warns(UserWarning, match="subject '03' is not selected"):
        assert {k for batch in dm.val_dataloader() for k in batch.key} == keys_of("01")
    dm = ShardDataModule(tmp_path, batch_size=4, subjects=["01"], train_batches_per_epoch=30)
    with pytest.warns(UserWarning, match="subject '03' is not selected"):
        assert {k for batch in dm.train_dataloader() for k in batch.key} <= keys_of("01")


def test_train_stream_stops_when_no_sample_matches(
    index_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = json.loads(index_path.read_text())
    for entry in raw["shards"]:
        entry["url"] = str(index_path.parent / entry["url"])
        entry["subject"] = "05" if entry["subject"] == "03" else entry["subject"]
    (tmp_path / "index.json").write_text(json.dumps(raw))
    monkeypatch.setattr(loader_module, "_MAX_REJECTED_IN_A_ROW", 5)
    loader = ShardDataModule(tmp_path, batch_size=4, subjects=["05"]).train_dataloader()
    match = r"none of the \d+ shards holds windows" if has_tables(index_path) else r"\d+ samples in a row rejected"
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=match):
        next(iter(loader))


# --- train loader: seeds, epochs, ranks ----------------------------------------------------------


@pytest.mark.parametrize("num_workers", [0, 2])
def test_same_seed_same_batches(index_path: Path, num_workers: int) -> None:
    def run(seed: int) -> list[list[list[str]]]:
        dm = ShardDataModule(index_path, batch_size=4, num_workers=num_workers, seed=seed, shuffle_buffer=16)
        loader = dm.train_dataloader()
        return [epoch_keys(loader) for _ in range(2)]

    first, again, other = run(1), run(1), run(2)
    assert first == again
    assert first != other
    assert first[0] != first[1]  # the second epoch draws differently


@pytest.mark.parametrize("n, bufsize, initial", [(0, 8, 4), (3, 8, 4), (50, 8, 4), (50, 1000, 100), (200, 16, 16)])
def test_shuffle_buffer_yields_every_item_once_and_shuffles(n: int, bufsize: int, initial: int) -> None:
    import random

    out = list(loader_module.shuffle_buffer(range(n), bufsize, initial, random.Random(0)))
    assert sorted(out) == list(range(n))
    assert out == list(loader_module.shuffle_buffer(range(n), bufsize, initial, random.Random(0)))
    if n >= 50:
        assert out != list(range(n)) and out != list(loader_module.shuffle_buffer(range(n), bufsize, initial,
                                                                                  random.Random(1)))
        # a bounded buffer: an item never comes out before the item `bufsize` places ahead has been read
        assert all(item <= 2 * (i + 1) + initial for i, item in enumerate(out))


def test_persistent_workers_read_one_stream_across_epochs(index_path: Path) -> None:
    # An epoch is the next n batches of one endless stream: two epochs of 3 are the 6 batches of
    # one epoch of 6; no worker restarts its pipeline (and re-draws) between epochs. (The webdataset
    # pipeline: a table stream runs in the main process, see test_tablestream.py.)
    urls = [s.url for s in load_index(index_path).shards]

    def loader(n: int, persistent: bool = True):
        pipeline = train_pipeline(urls, 4, seed=3, shuffle_buffer=16, tables=False)
        return ShardLoader(pipeline, num_workers=2, n_batches=n, persistent_workers=persistent)

    three, six = loader(3), loader(6)
    assert three.continuous and epoch_keys(three) + epoch_keys(three) == epoch_keys(six)
    fresh = loader(3, persistent=False)  # workers re-created per epoch: each epoch seeded anew
    assert not fresh.continuous
    first, second = epoch_keys(fresh), epoch_keys(fresh)
    assert len(first) == len(second) == 3 and first != second


def test_worker_batch_references_travel_in_groups_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    refs = [loader_module.BatchRefs((("a.tar", i),)) for i in range(6)]
    decoded = Batch.__new__(Batch)  # a batch decoded in the worker (a shard without a table)
    items = [*refs[:5], decoded, refs[5]]
    assert list(loader_module.group_refs(iter(items), 2)) == items  # main process: unchanged
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())
    out = list(loader_module.group_refs(iter(items), 2))
    Group = loader_module.RefGroup
    assert out == [Group(tuple(refs[0:2])), Group(tuple(refs[2:4])), Group((refs[4],)), decoded, Group((refs[5],))]
    monkeypatch.setattr(loader_module.BatchRefs, "read", lambda self: self.refs[0][1])
    assert list(loader_module._read_refs(out)) == [0, 1, 2, 3, 4, decoded, 5]


def test_with_epoch_gives_exactly_n_batches(index_path: Path) -> None:
    dm = ShardDataModule(index_path, batch_size=4, train_batches_per_epoch=7)
    loader = dm.train_dataloader()
    sizes = [[len(b) for b in loader] for _ in range(2)]
    assert len(loader) == 7 and sizes == [[4] * 7, [4] * 7]  # full batches only
    assert len(ShardDataModule(index_path, batch_size=4).train_dataloader()) == N_SAMPLES // 4


def test_two_ranks_get_equal_train_batches_and_disjoint_eval_shards(
    index_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # wds.utils.pytorch_worker_info (behind wds.split_by_node and our dist_info) reads env
    # RANK/WORLD_SIZE first, then torch.distributed; inside a Trainer the DataModule asks the trainer.
    train_counts, eval_keys, eval_urls = [], [], []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        train_counts.append(sum(1 for _ in ShardDataModule(index_path, batch_size=4).train_dataloader()))
        dm = ShardDataModule(index_path, batch_size=4, num_workers=2, val_subjects=["01", "02", "03"])
        eval_keys.append([k for batch in dm.val_dataloader() for k in batch.key])
        urls = [s.url for s in dm.shards(dm.val_filter)]
        eval_urls.append({s.url for s in eval_pipeline(urls, None, rank=rank, world_size=2)})
    assert train_counts == [N_SAMPLES // (4 * 2)] * 2
    assert not set(eval_keys[0]) & set(eval_keys[1])
    assert sorted(eval_keys[0] + eval_keys[1]) == sorted(keys_of("01") | keys_of("02") | keys_of("03"))
    assert len(eval_urls[0]) == len(eval_urls[1]) == 3 and not eval_urls[0] & eval_urls[1]


def test_ranks_draw_different_train_streams(index_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    streams = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        streams.append(epoch_keys(ShardDataModule(index_path, batch_size=4, seed=3).train_dataloader()))
    assert streams[0] != streams[1]


# --- Lightning ----------------------------------------------------------------------------------


class _MeanProbe(L.LightningModule):
    """Counts what the trainer hands it; the loss is a mean over real channels."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: dict[str, int] = Counter()

    def _step(self, batch: Batch, stage: str) -> torch.Tensor:
        assert isinstance(batch, Batch)
        self.seen[stage] += len(batch)
        x = batch.x * batch.chan_mask[..., None]  # (B, C, T)
        return (self.w - x.mean()) ** 2

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_lightning_fit_and_test(index_path: Path, num_workers: int) -> None:
    dm = ShardDataModule(index_path, batch_size=4, val_subjects=["03"], test_subjects=["03"], num_workers=num_workers)
    model = _MeanProbe()
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    n_train = 3 * 4 * ((N_SAMPLES - 20) // 4)  # 3 epochs of full batches from subjects 01 and 02
    assert model.seen["train"] == n_train and model.seen["val"] == 3 * 20

    no_val = ShardDataModule(index_path, batch_size=4, train_batches_per_epoch=2)
    model = _MeanProbe()
    L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False).fit(model, datamodule=no_val)
    assert model.seen == {"train": 8}


# --- the shard reader: same samples as webdataset, faster ---------------------------------------


def test_fast_reader_gives_webdataset_samples(index_path: Path, tmp_path: Path) -> None:
    urls = [s.url for s in load_index(index_path).shards]
    ours = list(loader_module.tar_samples({"url": u} for u in urls))
    theirs = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert [s["__key__"] for s in ours] == [s["__key__"] for s in theirs] and len(ours) == N_SAMPLES
    for a, b in zip(ours, theirs):
        assert a["__url__"] == b["__url__"] and a["json"] == b["json"] and bytes(a["npy"]) == b["npy"]
    # names over 100 characters are stored in pax records (webdataset writes pax tars)
    long_key = "d" * 60 + "/" + "e" * 70 + "/000001"
    with wds.TarWriter(str(tmp_path / "long.tar")) as sink:
        sink.write({"__key__": long_key, "npy": np.ones((2, 3), np.float32), "json": {"sfreq": 1.0}})
    (sample,) = loader_module.tar_samples([{"url": str(tmp_path / "long.tar")}])
    assert sample["__key__"] == long_key and set(sample) == {"__key__", "__url__", "npy", "json"}
    # ustar (name prefix field) and GNU (long-name member) tars of other writers read the same
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT):
        path = tmp_path / f"fmt{fmt}.tar"
        with tarfile.open(path, "w", format=fmt) as tar:
            for name, data in ((f"{long_key}.json", b"{}"), (f"{long_key}.npy", b"\x93NUMPY"), ("x/00.json", b"1")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        ours = [{k: bytes(v) if k in ("npy", "json") else v for k, v in s.items()}
                for s in loader_module.tar_samples([{"url": str(path)}])]
        theirs = list(wds.WebDataset([str(path)], shardshuffle=False, empty_check=False))
        assert ours == [{k: v for k, v in s.items() if k != "__local_path__"} for s in theirs]


def test_decoded_samples_are_independent_and_exact(index_path: Path) -> None:
    samples = list(iter_samples(index_path, ["01"]))
    spec = SPECS["01"]
    for w, s in enumerate(samples):
        np.testing.assert_array_equal(s.x, expected_window(spec, w))
        assert s.meta["window"] == w and s.label == w % 2 and s.meta["onset"] == w * 64 / 100.0
        assert s.x.flags.writeable and s.x.flags.owndata
    samples[0].x[:] = 0  # a sample's arrays and lists are its own
    samples[0].ch_names.append("extra")
    samples[0].pos[:] = 0
    again = next(iter_samples(index_path, ["01"]))
    np.testing.assert_array_equal(again.x, expected_window(spec, 0))
    assert again.ch_names == spec.ch_names and samples[1].ch_names == spec.ch_names
    np.testing.assert_allclose(samples[1].pos, np.array(expected_pos(spec), dtype=np.float32))


def test_metadata_in_any_layout_is_parsed_exactly() -> None:
    cache = loader_module._MetaCache()
    first = {"window": 0, "onset": 0.0, "label": "a", "label_id": 0, "ch_names": ["window", "label"], "sfreq": 1.0}
    for meta in (first, {**first, "window": 1, "onset": 4.0, "label": None, "label_id": None},
                 {"sfreq": 2.0, "label": "x"},  # varying keys missing: parsed in full
                 {**first, "nested": {"window": 9}}):  # a nested object: never cached
        for separators in ((",", ":"), (", ", ": ")):
            text = json.dumps(meta, separators=separators).encode()
            assert cache.parse(text)[0] == meta
    assert cache.parse(json.dumps(first).encode())[1] is not None  # the shared part is cached


def test_regression_targets_vary_per_window_and_share_one_template() -> None:
    cache = loader_module._MetaCache()
    base = {"window": 0, "onset": 0.0, "label": None, "label_id": None, "ch_names": ["Cz"], "target": 0.25}
    metas = [{**base, "window": i, "onset": 8.0 * i, "target": 0.1 * i} for i in range(5)]
    for meta in metas:
        assert cache.parse(json.dumps(meta, separators=(",", ":")).encode())[0] == meta
    assert len(cache.templates) == 1  # the target is cut out like the window index, not a template per window


def test_truncated_shard_is_an_error_naming_it(index_path: Path, tmp_path: Path) -> None:
    url = load_index(index_path).shards[0].url
    torn = tmp_path / "torn.tar"
    torn.write_bytes(Path(url).read_bytes()[:3000])
    with pytest.raises(ValueError, match=f"{torn}.*truncated"):
        list(loader_module.tar_samples([{"url": str(torn)}]))


def test_shard_urls_resolve_against_the_index_folder(tmp_path: Path):
    root = tmp_path.resolve()
    (root / "a").mkdir()
    assert resolve_url("shards/x.tar", root) == str(root / "shards" / "x.tar")
    assert resolve_url("./shards//x.tar", root) == str(root / "shards" / "x.tar")
    assert resolve_url("../a/x.tar", root / "a") == str(root / "a" / "x.tar")
    assert resolve_url("a..b/x.tar", root) == str(root / "a..b" / "x.tar")  # not a parent step
    for url in ("/data/x.tar", "pipe:aws s3 cp s3://b/x.tar -", "https://host/x.tar"):
        assert resolve_url(url, root) == url
