"""scripts/bench_prepare.py on a tiny prepared dataset: every reader reads every window, and each
loader is compared with its like-for-like memmap baseline.

No timing is asserted (timings are reported by the script, never tested).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from neurofm.pipelines.loader import iter_samples
from neurofm.pipelines.prepare import prepare
from scriptkit import load_script
from shardkit import TINY_MI_MANIFEST


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_prepare")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    folder = tmp_path_factory.mktemp("bench_prepare")
    (folder / "m.yaml").write_text(yaml.safe_dump(TINY_MI_MANIFEST))
    summary = prepare(str(folder / "m.yaml"), str(folder / "shards"), progress=False)
    return folder / "shards" / "index.json", folder / "windows.npy", summary.n_samples


def test_every_reader_reads_every_window(bench, prepared: tuple[Path, Path, int]) -> None:
    index, npy, n = prepared
    assert bench.memmap_windows(index, npy) == n
    np.testing.assert_array_equal(np.load(npy)[0], next(iter_samples(index)).x)
    batch = 4
    runs = bench.loading_runs(index, npy, bench.parse_args(["--batch-size", str(batch)]))
    full = n // batch * batch  # readers that hand out full batches only
    expected = {"memmap_first_sb": full, "memmap_sb": full, "train0": full, "train0_warm": full,
                "train2": full, "train2_warm": full}
    for key, (timing, fn) in runs.items():
        assert fn() == expected.get(key, n), (key, timing.name)


def test_ratios_pair_each_loader_with_its_baseline(bench) -> None:
    timings = {key: bench.Timing(key, "win", 100, [1.0]) for key in (
        "memmap_first", "memmap_first_b", "memmap_first_sb", "memmap", "memmap_b", "memmap_bd", "memmap_s",
        "memmap_sb", "iter", "eval", "eval_warm", "train0", "train0_warm", "train2", "train2_warm")}
    timings["eval_warm"].seconds = [0.5, 4.0, 4.0]  # twice the best rate, a quarter of the median one
    rows = {name: (best, median, target) for name, best, median, target in bench.ratio_rows(timings)}
    assert rows["eval loader, later epochs / memmap batches"][:2] == (2.0, 0.25)
    assert "eval loader, first epoch / memmap batches, mapped anew" in rows
    assert "train loader, 0 workers, later epochs / memmap random batches" in rows
    assert not any("first epoch" in name and "mapped anew" not in name for name in rows)
    assert not any("later epochs" in name and "mapped anew" in name for name in rows)
    assert np.isnan(rows["eval loader, later epochs / memmap batches dropped at once"][2])
    assert all(target == bench.LOADER_TARGET for name, (_, _, target) in rows.items() if "dropped" not in name)


def test_long_runs_dataset_has_runs_of_the_given_length(bench, tmp_path: Path) -> None:
    from neurofm.pipelines.manifest import load_manifest

    dataset = bench.long_synthetic_dataset(tmp_path, 10)
    manifest = load_manifest(dataset.manifest)
    assert manifest.source.generator["trials_per_class"] == 30  # 2 classes x 30 x 10 s = 600 s
    assert "10-minute" in dataset.label
    assert "1.33333-minute" in bench.long_synthetic_dataset(tmp_path, 1.5).label  # 4 trials: 80 s
    assert manifest.windows.mode == "fixed" and manifest.windows.length_s == 4.0


def test_loading_is_timed_in_a_fresh_process(bench, prepared: tuple[Path, Path, int]) -> None:
    index, npy, n = prepared
    bench.memmap_windows(index, npy)
    args = bench.parse_args(["--quick", "--batch-size", "4"])
    timings = bench.time_loading_in_child(index, npy, args)
    assert timings["eval"].count == n and len(timings["eval"].seconds) == 2  # --quick: 2 rounds
    assert set(timings) == set(bench.loading_runs(index, npy, args))
