"""The BIDS and MOABB sources, end to end through prepare (no download: MOABB's FakeDataset, a BIDS tree
written here with mne-bids)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from neurofm.pipelines.prepare import prepare
from neurofm.pipelines.synthetic import SyntheticConfig, generate_raw

COMMON = {"license": "x", "citation": "x", "url": "x"}


def _manifest(folder: Path, data: dict) -> str:
    path = folder / "m.yaml"
    path.write_text(yaml.safe_dump({**data, **COMMON}))
    return str(path)


def test_moabb_fake_dataset_prepares_with_its_labels(tmp_path: Path):
    manifest = _manifest(tmp_path, {
        "name": "moabb_fake", "paradigm": "motor_imagery",
        "source": {"kind": "moabb", "dataset": "FakeDataset",
                   "kwargs": {"n_subjects": 2, "n_sessions": 1, "n_runs": 1, "paradigm": "imagery",
                              "event_list": ["left_hand", "right_hand"], "duration": 60}},
        "labels": {"left_hand": "left_hand", "right_hand": "right_hand"},
        "windows": {"mode": "events", "length_s": 2.0}})
    summary = prepare(manifest, str(tmp_path / "out"), progress=False)
    assert summary.n_failed == 0 and summary.subjects == ["1", "2"]
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["classes"] == ["left_hand", "right_hand"] and index["n_samples"] > 10


def test_bids_dataset_prepares_with_subjects_from_the_tree(tmp_path: Path):
    mne_bids = pytest.importorskip("mne_bids")
    cfg = SyntheticConfig(paradigm="resting", n_subjects=2, n_runs=1, trials_per_class=1,
                          montage="eeg32", sfreq=128.0, seed=1)
    root = tmp_path / "bids"
    for subject in range(2):
        raw = generate_raw(cfg, subject)
        path = mne_bids.BIDSPath(subject=f"{subject + 1:02d}", task="rest", run="01", datatype="eeg", root=root)
        mne_bids.write_raw_bids(raw, path, allow_preload=True, format="BrainVision", verbose=False)
    manifest = _manifest(tmp_path, {
        "name": "bids_rest", "paradigm": "resting",
        "source": {"kind": "bids", "root": str(root), "datatype": "eeg", "task": "rest"},
        "labels": {"eyes_open": "eyes_open", "eyes_closed": "eyes_closed"},
        "windows": {"mode": "fixed", "length_s": 2.0}})
    summary = prepare(manifest, str(tmp_path / "out"), progress=False)
    assert summary.n_failed == 0, [f.reason for f in summary.failures]
    assert summary.subjects == ["01", "02"]
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert {s["run"] for s in index["shards"]} == {"01"}
    assert index["channel_sets"][0]["ch_names"][:2] == SyntheticConfig(montage="eeg32").ch_names()[:2]
