"""`neurofm inspect`: summary counts agree with index.json; the figure is written at its size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.image import imread
from rich.console import Console

from neurofm.pipelines.inspect import (DPI, FIGSIZE_IN, UNLABELLED, plot_index, print_summary,
                                       spectrum_channels, summarize_index)
from neurofm.pipelines.prepare import prepare
import yaml
from shardkit import CLASSES, DEFAULT_RECORDINGS, TINY_MI_MANIFEST, RecordingSpec, make_dataset

EXPECTED_PIXELS = (int(FIGSIZE_IN[1] * DPI), int(FIGSIZE_IN[0] * DPI))  # (rows, columns)
MIN_PNG_BYTES = 50_000  # four panels of traces and text; a blank 1200x800 PNG is ~5 KB
TINY_MI = TINY_MI_MANIFEST


@pytest.fixture(scope="module")
def kit_index(tmp_path_factory) -> Path:
    """Mixed montages (8, 12, 5 channels), a bad channel, an unplaced one, an unlabelled subject."""
    return make_dataset(tmp_path_factory.mktemp("kit"))


@pytest.fixture(scope="module")
def prepared_index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    manifest = root / "tiny_mi.yaml"
    manifest.write_text(yaml.safe_dump(TINY_MI))
    summary = prepare(str(manifest), str(root / "out"), progress=False)
    assert summary.n_failed == 0
    return Path(summary.index)


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > MIN_PNG_BYTES
    pixels = imread(path)
    assert pixels.shape[:2] == EXPECTED_PIXELS
    assert pixels[..., :3].std() > 0.05  # not a blank canvas


def test_summary_counts_match_the_index(kit_index: Path):
    s = summarize_index(kit_index)
    index = json.loads(kit_index.read_text())
    assert s.dataset == index["dataset"] and s.paradigm == "motor_imagery"
    assert s.n_samples == index["n_samples"] == sum(r.n_windows for r in DEFAULT_RECORDINGS)
    assert s.subject_counts == {r.subject: r.n_windows for r in DEFAULT_RECORDINGS}
    assert s.n_recordings == len(DEFAULT_RECORDINGS) and s.n_shards == len(index["shards"])
    # shardkit labels window w of a labelled recording CLASSES[w % 2]; subject 03 is unlabelled
    assert s.class_counts == {CLASSES[0]: 20, CLASSES[1]: 20, UNLABELLED: 20}
    assert s.n_read == s.n_samples and not s.capped
    assert sorted(cs.n_chans for cs in s.channel_sets) == [5, 8, 12]
    assert s.sfreq == 100.0 and s.window_s == pytest.approx(64 / 100.0)
    assert s.shard_bytes == sum((kit_index.parent / e["url"]).stat().st_size for e in index["shards"])


def test_class_counts_are_capped_and_say_so(kit_index: Path):
    s = summarize_index(kit_index, max_samples=25)
    assert s.capped and s.n_read == 25 == sum(s.class_counts.values())
    assert s.subject_counts == {"01": 20, "02": 20, "03": 20}  # from the index: exact despite the cap
    console = Console(record=True, width=120)
    print_summary(s, console)
    assert "25 of 60 windows" in console.export_text()


def test_summary_of_a_prepared_dataset(prepared_index: Path):
    s = summarize_index(prepared_index)
    index = json.loads(prepared_index.read_text())
    assert s.class_counts == {"left_hand": 18, "right_hand": 18}  # 3 subjects × 2 runs × 3 trials
    assert s.n_recordings == index["n_recordings"] == 6 and s.window_s == 2.0
    assert s.preproc_hash == index["preproc_hash"]
    assert [cs.n_chans for cs in s.channel_sets] == [22]
    console = Console(record=True, width=120)
    print_summary(s, console)
    text = console.export_text()
    assert "tiny_mi" in text and "left_hand" in text and s.preproc_hash in text


def test_spectrum_channels_prefer_sensorimotor_and_posterior():
    assert spectrum_channels(["Fz", "C4", "CZ", "C3", "POz", "O1"]) == ["C3", "CZ", "C4", "O1"]
    assert spectrum_channels(["Fp1", "Fp2", "C3", "T7", "T8"]) == ["C3", "Fp1", "Fp2", "T7"]


def test_plot_of_a_prepared_dataset(prepared_index: Path, tmp_path: Path):
    assert_png(plot_index(prepared_index, tmp_path / "fig" / "tiny.png"))


def test_plot_of_mixed_montages_and_unlabelled_data(kit_index: Path, tmp_path: Path):
    assert_png(plot_index(kit_index, tmp_path / "kit.png"))
    unlabelled = make_dataset(tmp_path / "u", [RecordingSpec("01", 16, labelled=False),
                                              RecordingSpec("02", 16, labelled=False, bad_channels=("C3",))])
    assert_png(plot_index(unlabelled, tmp_path / "u.png", max_samples=15))  # capped: plots from 15


def test_cli_prints_tables_and_writes_the_figure(kit_index: Path, tmp_path: Path):
    png = tmp_path / "cli.png"
    res = subprocess.run([sys.executable, "-m", "neurofm.cli", "inspect", str(kit_index.parent), "--png", str(png)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "windows per subject" in res.stdout and str(png) in res.stdout
    assert_png(png)


def test_cli_missing_index_is_a_clear_error(tmp_path: Path):
    res = subprocess.run([sys.executable, "-m", "neurofm.cli", "inspect", str(tmp_path / "nothing")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "not found" in res.stderr


def test_no_windows_is_an_error(tmp_path: Path):
    empty = make_dataset(tmp_path / "e", [RecordingSpec("01", 4, n_windows=0)])
    assert summarize_index(empty).n_samples == 0
    with pytest.raises(ValueError, match="no windows"):
        plot_index(empty, tmp_path / "e.png")
