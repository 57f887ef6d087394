"""Table streams: batches of local shards with window tables, chosen as index arrays (tablestream.py)."""

from __future__ import annotations

import warnings
from collections import Counter
from itertools import islice
from pathlib import Path

import pytest
import torch
import webdataset as wds
from shardkit import DEFAULT_RECORDINGS, RecordingSpec, make_dataset

import neurofm.pipelines.loader as loader_module
from neurofm.pipelines.buffers import CopyThreads
from neurofm.pipelines.loader import (
    ShardDataModule,
    as_sample,
    collate_samples,
    eval_pipeline,
    load_index,
    shard_windows,
    train_pipeline,
)
from neurofm.pipelines.tablestream import MIN_SHARDS_PER_BLOCK, EvalTableStream, TrainTableStream
from neurofm.pipelines import tablestream
from neurofm.pipelines.windowtable import clear_table_cache, open_table, write_table

N_SAMPLES = sum(spec.n_windows for spec in DEFAULT_RECORDINGS)  # 60, in 6 shards of 10


@pytest.fixture(scope="module")
def tabled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_dataset(tmp_path_factory.mktemp("prepared") / "synthetic_mi")
    for shard in load_index(path).shards:
        assert write_table(shard.url, shard.sha256) is not None
    return path


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)


def urls_of(index: Path) -> list[str]:
    return [s.url for s in load_index(index).shards]


def shard_keys(index: Path) -> dict[str, list[str]]:
    """Each shard's window keys, in order."""
    return {url: [w.key for w in shard_windows([{"url": url}])] for url in urls_of(index)}


def test_table_streams_only_when_every_shard_has_a_table(tabled: Path, tmp_path: Path) -> None:
    urls = urls_of(tabled)
    assert isinstance(train_pipeline(urls, 4), TrainTableStream)
    assert isinstance(eval_pipeline(urls, 4), EvalTableStream)
    assert isinstance(train_pipeline(urls, 4, tables=False), wds.DataPipeline)
    assert isinstance(eval_pipeline(urls, None), wds.DataPipeline)  # samples, not batches
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a streamed shard has no table: nothing to warn about
        assert isinstance(train_pipeline([*urls, f"pipe:cat {urls[0]}"], 4), wds.DataPipeline)
        bare = urls_of(make_dataset(tmp_path / "bare"))  # no sidecars: tables would be built by scanning
        assert isinstance(eval_pipeline(bare, 4), wds.DataPipeline)
    with pytest.warns(UserWarning, match=rf"1 of 7 shards have no window table \(first: {bare[0]}\)"):
        assert isinstance(train_pipeline([*urls, bare[0]], 4), wds.DataPipeline)


def test_train_stream_draws_whole_shards_and_permutes_each_block(tabled: Path) -> None:
    keys = shard_keys(tabled)
    # no shuffle: the windows of each drawn shard, whole and in order
    stream = train_pipeline(urls_of(tabled), 5, shuffle_buffer=0, seed=1)
    drawn = [k for batch in islice(stream, 12) for k in batch.key]  # 60 windows: 6 draws of 10
    assert all(len(b) == 5 for b in islice(stream, 3))
    chunks = [drawn[i:i + 10] for i in range(0, 60, 10)]
    assert all(chunk in keys.values() for chunk in chunks)
    assert len({tuple(c) for c in chunks}) > 1
    # each block: as many draws as there are shards (6 < MIN_SHARDS_PER_BLOCK; a buffer of 30 holds
    # fewer windows), each drawn shard whole, the block permuted
    n_draws = min(MIN_SHARDS_PER_BLOCK, len(keys))
    for seed in (1, 2):
        stream = train_pipeline(urls_of(tabled), 5, shuffle_buffer=30, seed=seed)
        block = [k for batch in islice(stream, 10 * n_draws // 5) for k in batch.key]
        counts = Counter(block)
        shards = [ks for ks in keys.values() if ks[0] in counts]
        assert sum(counts[ks[0]] for ks in shards) == n_draws  # draws, with replacement
        assert all(counts[k] == counts[ks[0]] for ks in shards for k in ks)  # each drawn shard whole
        assert len({k.rsplit("/", 1)[0] for k in block[:10]}) > 1  # permuted: recordings mixed


def test_table_stream_epochs_and_workers(tabled: Path) -> None:
    def loader(num_workers: int):
        return ShardDataModule(tabled, batch_size=4, num_workers=num_workers, seed=5, shuffle_buffer=16,
                               train_batches_per_epoch=6).train_dataloader()

    def epoch(loader) -> list[list[str]]:
        return [batch.key for batch in loader]

    in_process, with_workers = loader(0), loader(2)
    first = [epoch(in_process) for _ in range(3)]
    assert first == [epoch(with_workers) for _ in range(3)]  # in-process whatever num_workers
    assert first[0] != first[1] and first[1] != first[2] and first[0] != first[2]
    resumed = loader(2)
    resumed.set_epoch(2)  # what a run resumed at epoch 2 does
    assert epoch(resumed) == first[2]
    assert not with_workers.continuous and with_workers.loader is None


@pytest.mark.parametrize("threads", [1, 3])
def test_table_batches_equal_the_decoded_samples(tabled: Path, threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader_module, "_COPY_THREADS", CopyThreads(threads, min_bytes=0))  # tiny batches too
    urls = urls_of(tabled)
    samples = {w.key: as_sample(w) for url in urls for w in shard_windows([{"url": url}])}
    mixed = list(islice(train_pipeline(urls, 9, shuffle_buffer=40, seed=0), 6))  # 8, 12 and 5 channels: padded
    uniform = list(eval_pipeline(urls[:2], 6))  # subject 01's two shards: one channel count, no padding
    assert len({len(names) for b in mixed for names in b.ch_names}) > 1
    assert {b.x.shape[1] for b in uniform} == {len(uniform[0].ch_names[0])}
    for batch in mixed + uniform:
        ref = collate_samples([samples[k] for k in batch.key])
        for name in ("x", "chan_mask", "pos", "pos_known", "label"):
            assert torch.equal(getattr(batch, name), getattr(ref, name)), name
        assert (batch.ch_names, batch.subject, batch.sfreq) == (ref.ch_names, ref.subject, ref.sfreq)


def test_a_shard_gone_after_the_loader_was_built_is_named(tabled: Path, tmp_path: Path) -> None:
    index = make_dataset(tmp_path / "mi")
    for shard in load_index(index).shards:
        write_table(shard.url)
    urls = urls_of(index)
    stream = eval_pipeline(urls, 4)
    Path(urls[2]).unlink()
    clear_table_cache()
    with pytest.raises(FileNotFoundError, match=urls[2]):
        list(stream)


def test_streams_keep_a_bounded_number_of_tables_open(tabled: Path) -> None:
    urls = urls_of(tabled)
    for make, n in ((lambda: train_pipeline(urls, 5, shuffle_buffer=30, seed=4), 20),
                    (lambda: eval_pipeline(urls, 7), 100)):
        everything, bounded = make(), make()
        bounded.tables.max_open = 1  # every other shard is opened again when it is drawn again
        opened = Counter()

        def counting_open(url: str):
            opened[url] += 1
            clear_table_cache()  # a real reopen: mapped, read and checked anew
            return open_table(url)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(tablestream, "open_table", counting_open)
            pairs = list(zip(islice(everything, n), islice(bounded, n)))
        assert pairs and all(a.key == b.key and torch.equal(a.x, b.x) for a, b in pairs)
        assert len(bounded.tables.open) == 1 and len(everything.tables.open) > 2
        assert sum(opened.values()) > len(opened)  # the bounded stream opened shards again


def test_windows_of_different_lengths_in_one_batch_are_an_error_naming_the_shards(tabled: Path,
                                                                                 tmp_path: Path) -> None:
    other = make_dataset(tmp_path / "other", [RecordingSpec("09", 4, n_windows=1)], n_times=32)
    for shard in load_index(other).shards:
        write_table(shard.url)
    stream = eval_pipeline(urls_of(tabled)[-1:] + urls_of(other), 64)
    assert isinstance(stream, EvalTableStream)
    with pytest.raises(ValueError, match=r"different n_times: .*other/shards/.*-000000\.tar"):
        list(stream)


def test_a_shard_that_cannot_be_mapped_is_named_and_not_remembered(tabled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from neurofm.pipelines import windowtable

    urls = urls_of(tabled)
    clear_table_cache()

    def no_more_files(path: str):
        raise OSError(24, "Too many open files")

    with monkeypatch.context() as mp:
        mp.setattr(windowtable, "map_file", no_more_files)
        mp.setattr(tablestream, "map_file", no_more_files)
        with pytest.raises(OSError, match=rf"shard {urls[0]} cannot be mapped: .*Too many open files"):
            next(iter(eval_pipeline(urls, 4)))
    assert open_table(urls[0]) is not None  # the failure was not cached
