"""Seizure detection end to end: synthetic seizures → shards → harness with SzCORE event metrics → leaderboard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from neurofm.eval.data import EvalData, load_eval_data
from neurofm.eval.harness import run_benchmark
from neurofm.eval.leaderboard import rank, render, validate_rows
from neurofm.eval.results import read_rows
from neurofm.eval.seizure import events_from_windows, score_windows
from neurofm.eval.tasks import SEIZURE_METRICS, get_task
from neurofm.pipelines.manifest import load_manifest, resolve_manifest
from neurofm.pipelines.prepare import prepare
from neurofm.pipelines.synthetic import SyntheticConfig, trial_latents


def _two_recordings() -> tuple[EvalData, np.ndarray]:
    """Recording 0: 400 s, seizure 80-120 s, detections 84-100 s and 280-288 s (a false alarm).
    Recording 1: 200 s, seizure 40-60 s (missed), detection 160-164 s (a false alarm). 4 s windows."""
    run = np.r_[np.zeros(100, int), np.ones(50, int)].astype(str)
    onset = np.r_[4.0 * np.arange(100), 4.0 * np.arange(50)]
    y = np.zeros(150, np.int64)
    y[20:30] = y[100 + 10:100 + 15] = 1
    detect = np.zeros(150, bool)
    detect[[21, 22, 23, 24, 70, 71, 140]] = True
    proba = np.where(detect, 0.9, 0.1)[:, None] * [-1, 1] + [1, 0]  # (N, 2) rows sum to 1
    order = np.random.default_rng(0).permutation(150)  # the harness's windows need not be in time order
    n = len(order)
    data = EvalData(dataset="hand", x=np.zeros((n, 1, 400), np.float32), y=y[order], subject=np.full(n, "01"),
                    session=np.full(n, "0"), run=run[order], key=np.arange(n).astype(str),
                    classes=("background", "seizure"), ch_names=("Cz",), pos=np.zeros((1, 3)), sfreq=100.0,
                    data_hash="h", index_path="-", task="seizure", onset=onset[order])
    return data, proba[order]


def test_event_metrics_of_two_recordings_are_summed_counts() -> None:
    data, proba = _two_recordings()
    metrics = get_task("seizure").score(data, proba)
    assert metrics["sz_sensitivity"] == 0.5  # 1 of 2 seizures detected
    assert metrics["sz_precision"] == pytest.approx(1 / 3)  # 1 of 3 predicted events is true
    assert metrics["sz_f1"] == pytest.approx(0.4)
    assert metrics["sz_fp_per_24h"] == pytest.approx(2 / 600 * 86400)  # 2 false alarms in 600 s
    assert metrics["balanced_accuracy"] == pytest.approx((132 / 135 + 4 / 15) / 2)  # window metrics stay


def test_windows_to_events_and_a_silent_model() -> None:
    assert events_from_windows(np.array([8.0, 0.0, 4.0, 16.0]), np.array([1, 1, 0, 1], bool), 4.0) == [
        (0.0, 4.0), (8.0, 12.0), (16.0, 20.0)]
    s = score_windows(np.zeros(10), 4.0 * np.arange(10), np.arange(10) < 3, np.zeros(10, bool), 4.0)
    assert (s.sensitivity, s.precision, s.f1, s.fp_per_24h) == (0.0, 0.0, 0.0, 0.0)  # finite: a valid row


def test_seizure_paradigm_annotates_background_and_seizures_deterministically() -> None:
    cfg = SyntheticConfig(paradigm="seizure", n_subjects=2, n_runs=1, trials_per_class=3, montage=["Cz", "C3"],
                          sfreq=128.0)
    lat = trial_latents(cfg, 0)
    assert lat.labels == ["background", "seizure"] * 3 + ["background"]
    ictal = lat.durations[1::2]
    assert np.all((ictal >= 20) & (ictal <= 80)) and np.allclose(lat.onsets[1:], np.cumsum(lat.durations)[:-1])
    np.testing.assert_array_equal(lat.features, trial_latents(cfg, 0).features)


def test_seizure_manifest_needs_fixed_windows_and_a_seizure_class(tmp_path: Path) -> None:
    spec = yaml.safe_load(resolve_manifest("synthetic_seizure").read_text())
    spec["labels"] = {"background": "background", "seizure": "ictal"}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="a class must be named 'seizure'"):
        load_manifest(tmp_path / "m.yaml")


@pytest.fixture(scope="module")
def seizure_index(tmp_path_factory) -> str:
    """The registered manifest shrunk to 3 subjects × 1 recording (~20 min each)."""
    out = tmp_path_factory.mktemp("sz")
    spec = yaml.safe_load(resolve_manifest("synthetic_seizure").read_text())
    spec["source"]["generator"].update(n_subjects=3, n_runs=1)
    (out / "m.yaml").write_text(yaml.safe_dump(spec))
    return prepare(str(out / "m.yaml"), str(out / "prepared"), workers=1, progress=False).index


def test_loso_csp_lda_gives_finite_event_metrics_and_ranks_by_event_f1(seizure_index, tmp_path) -> None:
    data = load_eval_data(seizure_index)
    assert data.task == "seizure" and data.classes == ("background", "seizure")
    assert np.all(np.diff(data.onset[data.recording == data.recording[0]]) == 4.0)  # onsets from the shards
    summary = run_benchmark("csp_lda", seizure_index, "loso", seeds=(0,), out=tmp_path, progress=False)
    assert len(summary.rows) == 3
    for row in summary.rows:
        assert all(np.isfinite(row["metrics"][m]) for m in SEIZURE_METRICS) and row["task"] == "seizure"
    assert np.mean([r["metrics"]["sz_sensitivity"] for r in summary.rows]) > 0.5
    rows = read_rows(summary.results)
    assert not validate_rows(rows)
    (entry,) = rank(rows)
    assert entry.metric == "sz_f1" and entry.oracle is None
    assert [m for m, _ in entry.others] == ["balanced_accuracy", "sz_sensitivity", "sz_precision", "sz_fp_per_24h"]
    table = render([entry], "md")
    assert "sz_f1 (mean ± std)" in table and "sz_fp_per_24h" in table and "csp_lda" in table
