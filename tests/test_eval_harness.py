"""Evaluation harness: protocols are leakage-proof, results are resumable and splittable, scores are right."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from neurofm.cli import main as cli_main
from neurofm.eval.data import EvalData, EvalDataError, load_eval_data
from neurofm.eval.harness import run_benchmark
from neurofm.eval.metrics import classification_metrics
from neurofm.eval.results import read_rows
from neurofm.eval.splits import Fold, LeakageError, check_fold, make_folds
from neurofm.pipelines.prepare import prepare
from shardkit import CLASSES, RecordingSpec, make_dataset

# 4 subjects × 2 sessions × 1 run × 2 classes × 8 trials, strong effect: CSP+LDA must beat chance.
MI_MANIFEST = {
    "name": "eval_mi", "paradigm": "motor_imagery",
    "source": {"kind": "synthetic", "generator": {
        "paradigm": "motor_imagery", "n_subjects": 4, "n_sessions": 2, "n_runs": 1, "trials_per_class": 8,
        "montage": "eeg22", "sfreq": 128.0, "seed": 5, "effect_size": 3.0,
        "mi_classes": ["left_hand", "right_hand"]}},
    "labels": {"left_hand": "left_hand", "right_hand": "right_hand"},
    "windows": {"mode": "events", "length_s": 2.0},
    "license": "BSD-3-Clause", "citation": "synthetic", "url": "none",
}


@pytest.fixture(scope="module")
def mi_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    (root / "m.yaml").write_text(yaml.safe_dump(MI_MANIFEST))
    summary = prepare(str(root / "m.yaml"), str(root / "prepared"), workers=2, progress=False)
    assert summary.n_failed == 0
    return Path(summary.index)


def fake_data(n_subjects: int = 5, per_class: int = 6, n_classes: int = 3, sessions: int = 2) -> EvalData:
    """Arrays only (no shards): for protocol tests."""
    rows = [(f"{s + 1:02d}", str(sess), c) for s in range(n_subjects) for sess in range(sessions)
            for c in range(n_classes) for _ in range(per_class)]
    subject, session, y = (np.array(v) for v in zip(*rows))
    n = len(rows)
    return EvalData(dataset="fake", x=np.zeros((n, 2, 8), np.float32), y=y.astype(np.int64), subject=subject,
                    session=session, run=np.full(n, "1"), key=np.array([f"k{i}" for i in range(n)]),
                    classes=tuple("abc"[:n_classes]), ch_names=("C3", "C4"), pos=np.zeros((2, 3)), sfreq=100.0, data_hash="h", index_path="-")


# --- protocols -----------------------------------------------------------------------------------


def test_loso_each_subject_tested_once_and_validation_from_training_subjects() -> None:
    data = fake_data()
    folds = make_folds(data, "loso", seeds=(0,))
    assert [f.test_subject for f in folds] == data.subjects
    for fold in folds:
        val_subjects = set(data.subject[fold.val])
        assert fold.test_subject not in val_subjects | set(data.subject[fold.train])
        assert len(val_subjects) == 1 and not val_subjects & set(data.subject[fold.train])  # whole subjects
        assert len(fold.train) + len(fold.val) + len(fold.test) == len(data)
    other = make_folds(data, "loso", seeds=(1,))
    assert [set(f.val) for f in make_folds(data, "loso", seeds=(0,))] == [set(f.val) for f in folds]  # seeded
    assert [set(f.val) for f in other] != [set(f.val) for f in folds]


def test_fewshot_draws_k_per_class_and_tests_on_the_rest() -> None:
    data = fake_data()
    folds = make_folds(data, "fewshot", seeds=(0, 1), ks=(1, 5, 20))
    assert {f.k for f in folds} == {1, 5}  # 20 > 12 windows per class: skipped, not crashed
    for fold in folds:
        own = np.flatnonzero(data.subject == fold.test_subject)
        assert np.bincount(data.y[fold.train], minlength=3).tolist() == [fold.k] * 3
        assert sorted(np.concatenate([fold.train, fold.test]).tolist()) == own.tolist()
        assert fold.val.size == 0
    by_seed = {(f.test_subject, f.k, f.seed): set(f.train) for f in folds}
    assert by_seed[("01", 5, 0)] != by_seed[("01", 5, 1)]


def test_cross_session_trains_on_the_first_session_only() -> None:
    data = fake_data()
    for fold in make_folds(data, "cross_session", seeds=(0,)):
        assert set(data.session[np.concatenate([fold.train, fold.val])]) == {"0"}
        assert set(data.session[fold.test]) == {fold.test_session} == {"1"}
    with pytest.raises(ValueError, match="gives no fold"):
        make_folds(fake_data(sessions=1), "cross_session", seeds=(0,))


@pytest.fixture(scope="module")
def runs_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Written shards, no preparation: subject 01 has 4 runs of 4 windows (run "1" in two sessions, run "10"
    after "2"), 02 has 2 runs of 5, 03 one run (no fold). Windows lie in this order (indices 0-29)."""
    recordings = ([RecordingSpec("01", 4, n_windows=4, session=s, run=r)
                   for s, r in (("0", "1"), ("0", "2"), ("0", "10"), ("1", "1"))]
                  + [RecordingSpec("02", 4, n_windows=5, run=r) for r in ("1", "2")]
                  + [RecordingSpec("03", 4, n_windows=4, run="1")])
    return make_dataset(tmp_path_factory.mktemp("runs"), recordings)


def test_loro_fold_contents(runs_index: Path) -> None:
    """Each (session, run) tests once; validation: one whole other run (>= 3 others, seeded), else a
    seeded 20% of the other run's windows. Reference folds for seed 0."""
    data = load_eval_data(runs_index)
    assert data.run.tolist() == ["1"] * 4 + ["2"] * 4 + ["10"] * 4 + ["1"] * 4 + ["1"] * 5 + ["2"] * 5 + ["1"] * 4
    folds = make_folds(data, "loro", seeds=(0,))
    got = [(f.fold_id, f.train.tolist(), f.val.tolist(), f.test.tolist()) for f in folds]
    assert got == [
        ("loro/subject=01/seed=0/session=0/run=1", [4, 5, 6, 7, 8, 9, 10, 11], [12, 13, 14, 15], [0, 1, 2, 3]),
        ("loro/subject=01/seed=0/session=0/run=2", [0, 1, 2, 3, 12, 13, 14, 15], [8, 9, 10, 11], [4, 5, 6, 7]),
        ("loro/subject=01/seed=0/session=0/run=10", [4, 5, 6, 7, 12, 13, 14, 15], [0, 1, 2, 3], [8, 9, 10, 11]),
        ("loro/subject=01/seed=0/session=1/run=1", [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7], [12, 13, 14, 15]),
        ("loro/subject=02/seed=0/session=0/run=1", [21, 22, 24, 25], [23], [16, 17, 18, 19, 20]),
        ("loro/subject=02/seed=0/session=0/run=2", [16, 17, 18, 19], [20], [21, 22, 23, 24, 25]),
    ]
    assert [(f.test_session, f.test_run) for f in folds[:4]] == [("0", "1"), ("0", "2"), ("0", "10"), ("1", "1")]
    other = make_folds(data, "loro", seeds=(1,))
    assert [f.val.tolist() for f in other] != [f.val.tolist() for f in folds]  # seeded
    two = make_folds(data, "loro", seeds=(0,), n_val_runs=2)  # asked for: whole runs even with few others
    assert len(two[0].train) == 4 and sorted([*two[0].train, *two[0].val]) == list(range(4, 16))
    assert len(two[-1].val) == 1  # subject 02: two runs would leave none to train on, so 20% of the other


def test_check_fold_rejects_a_test_run_in_fitting(runs_index: Path) -> None:
    data = load_eval_data(runs_index)
    fold = make_folds(data, "loro", seeds=(0,))[0]  # tests subject 01, session 0, run 1: windows 0-3
    with pytest.raises(LeakageError, match="test run is in the training"):
        check_fold(replace(fold, train=np.concatenate([fold.train, [3]]), test=np.array([0, 1, 2])), data)
    with pytest.raises(LeakageError, match="test run is in the training"):
        check_fold(replace(fold, val=np.concatenate([fold.val, [3]]), test=np.array([0, 1, 2])), data)
    with pytest.raises(LeakageError, match="test windows of runs"):  # run "1" of session 1 is another run
        check_fold(replace(fold, train=np.array([4, 5]), val=np.array([], int), test=np.array([0, 12])), data)


def test_no_test_run_window_reaches_fitting(runs_index: Path, tmp_path: Path) -> None:
    RecordingModel.seen = []
    data = load_eval_data(runs_index)
    summary = run_benchmark(RecordingModel, runs_index, "loro", seeds=(0, 1), out=tmp_path, progress=False)
    assert summary.n_done == len(RecordingModel.seen) == 2 * 6
    for row, (fit_subjects, fit_keys, n_predicted) in zip(summary.rows, RecordingModel.seen):
        in_test_run = ((data.subject == row["subject"]) & (data.session == row["test_session"])
                       & (data.run == row["test_run"]))
        assert fit_subjects == {row["subject"]} and not fit_keys & set(data.key[in_test_run])
        assert len(fit_keys) == row["n_train"] + row["n_val"] and n_predicted == row["n_test"] == in_test_run.sum()


def test_class_selection_relabels_and_names_the_dataset(runs_index: Path, tmp_path: Path) -> None:
    full = load_eval_data(runs_index)
    swapped = load_eval_data(runs_index, classes=CLASSES[::-1])
    assert swapped.classes == tuple(CLASSES[::-1]) and swapped.dataset == "synthetic_mi[right_hand+left_hand]"
    assert (swapped.y == 1 - full.y).all() and (swapped.key == full.key).all()
    for bad in (["left_hand"], ["left_hand", "feet"], ["left_hand", "left_hand"]):
        with pytest.raises(EvalDataError, match="must be >= 2 distinct classes"):
            load_eval_data(runs_index, classes=bad)
    summary = run_benchmark(RecordingModel, runs_index, "loro", seeds=(0,), out=tmp_path, progress=False,
                            classes=tuple(CLASSES))
    assert {r["dataset"] for r in summary.rows} == {"synthetic_mi[left_hand+right_hand]"}
    assert all(r["oracle"] is None for r in summary.rows)


def test_cli_bench_runs_loro_on_a_class_selection(mi_index: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    """4 subjects x 2 sessions of one run each: 2 folds a subject, each trained on the other session's run."""
    with pytest.raises(SystemExit) as exit_:
        cli_main(["bench", "--model", "csp_lda", "--dataset", str(mi_index), "--protocol", "loro", "--seeds", "[0]",
                  "--classes", "[right_hand, left_hand]", "--out", str(tmp_path), "--progress", "false"])
    assert exit_.value.code == 0
    rows = read_rows(tmp_path)
    assert len(rows) == 8 and {r["dataset"] for r in rows} == {"eval_mi[right_hand+left_hand]"}
    assert {r["protocol"] for r in rows} == {"loro"} and all(r["test_run"] is not None for r in rows)
    assert "8 fold(s) run" in capsys.readouterr().out


def test_check_fold_rejects_leaks() -> None:
    data = fake_data()
    fold = make_folds(data, "loso", seeds=(0,))[0]
    leaky = replace(fold, train=np.concatenate([fold.train, fold.test[:1]]))
    with pytest.raises(LeakageError, match="share windows"):
        check_fold(leaky, data)
    other_subject = np.flatnonzero(data.subject == "03")[:2]
    with pytest.raises(LeakageError, match="within-subject training data"):
        check_fold(Fold("fewshot", "01", 0, train=other_subject, val=np.array([], int),
                        test=np.flatnonzero(data.subject == "01"), k=1), data)


class RecordingModel:
    """Remembers every window it is given for fitting and for prediction (a leakage probe)."""

    model_id = "recorder"
    seen: list[tuple[str, set[str], set[str], int]] = []

    def fit(self, train: EvalData, val: EvalData | None, seed: int) -> None:
        keys = set(train.key) | (set(val.key) if val is not None else set())
        subjects = set(train.subject) | (set(val.subject) if val is not None else set())
        self.fit_info = (subjects, keys)
        self.n_classes = train.n_classes

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        RecordingModel.seen.append((*self.fit_info, len(x)))
        return np.full((len(x), self.n_classes), 1.0 / self.n_classes)

    def describe(self) -> dict:
        return {"config": {}, "weights_sha256": None}


def test_no_test_sample_reaches_fitting_or_selection(mi_index: Path, tmp_path: Path) -> None:
    RecordingModel.seen = []
    summary = run_benchmark(RecordingModel, mi_index, "loso", seeds=(0,), out=tmp_path, progress=False)
    data = load_eval_data(mi_index)
    assert summary.n_done == len(data.subjects) == len(RecordingModel.seen)
    for row, (fit_subjects, fit_keys, n_predicted) in zip(summary.rows, RecordingModel.seen):
        test_keys = set(data.key[data.subject == row["subject"]])
        assert row["subject"] not in fit_subjects and not fit_keys & test_keys
        assert n_predicted == row["n_test"] == len(test_keys)
    RecordingModel.seen = []
    run_benchmark(RecordingModel, mi_index, "fewshot", seeds=(0,), ks=(2,), out=tmp_path / "fs", progress=False)
    for fit_subjects, fit_keys, n_predicted in RecordingModel.seen:
        assert len(fit_subjects) == 1 and len(fit_keys) == 2 * 2  # k=2 shots × 2 classes, one subject
        assert n_predicted == 16 * 2 - 4  # the rest of that subject (2 sessions × 16 trials)


@pytest.mark.parametrize("model", ["ts_lr", "bp_lr"])
def test_classical_penalty_selection_sees_no_test_window(model: str, mi_index: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The real pipelines, not a probe: every window whose features are computed while ``fit`` runs
    (training features, and the validation features that choose C) is fingerprinted; none may be a
    test window of that fold, and the validation windows must have been used for the choice."""
    from neurofm.eval import bandpower, models

    fits: list[set[bytes]] = []  # per fold, the windows featurised during fit
    fitting = [False]

    def spy(transform):
        def wrapped(self, x):
            if fitting[0]:
                fits[-1].update(w.tobytes() for w in np.asarray(x, np.float32))
            return transform(self, x)
        return wrapped

    def fit(self, train, val, seed):
        fits.append(set())
        fitting[0] = True
        try:
            return original_fit(self, train, val, seed)
        finally:
            fitting[0] = False

    original_fit = models.FeatureModel.fit
    monkeypatch.setattr(models.FeatureModel, "fit", fit)
    monkeypatch.setattr(models.BandPass, "transform", spy(models.BandPass.transform))  # ts_lr's first step
    monkeypatch.setattr(bandpower.LogBandPower, "transform", spy(bandpower.LogBandPower.transform))  # bp_lr's
    summary = run_benchmark(model, mi_index, "loso", seeds=(0,), out=tmp_path, progress=False,
                            model_options={"c": None})  # C chosen on the validation split
    data = load_eval_data(mi_index)
    assert len(fits) == len(summary.rows) == len(data.subjects)
    for row, seen in zip(summary.rows, fits):
        is_test = data.subject == row["subject"]
        assert not seen & {w.tobytes() for w in data.x[is_test]}
        assert len(seen) == row["n_train"] + row["n_val"] and row["n_val"] > 0  # validation featurised too
        assert row["selected"]["by"].startswith("validation") and row["selected"]["C"] in models.LOGISTIC_CS


# --- running, resuming, splitting ----------------------------------------------------------------


def test_classical_pipelines_beat_chance_within_subject(mi_index: Path, tmp_path: Path) -> None:
    """Across sessions of one subject (measured: TS+LR 0.78, CSP+LDA 0.72; chance 0.5). Across subjects
    these 4 synthetic subjects (own mu frequencies and gains, 2 training subjects per fold) stay near chance."""
    for model, floor in (("ts_lr", 0.65), ("csp_lda", 0.6)):
        summary = run_benchmark(model, mi_index, "cross_session", seeds=(0,), out=tmp_path, progress=False)
        assert np.mean([r["metrics"]["balanced_accuracy"] for r in summary.rows]) > floor, model


def test_loso_rows_are_complete_and_a_rerun_skips_them(mi_index: Path, tmp_path: Path) -> None:
    summary = run_benchmark("csp_lda", mi_index, "loso", seeds=(0,), out=tmp_path, progress=False)
    rows = read_rows(summary.results)
    assert len(rows) == 4 and {r["subject"] for r in rows} == {"01", "02", "03", "04"}
    row = rows[0]
    assert 0.5 < row["oracle"] <= 1.0  # synthetic data: the generator's ceiling for that subject
    assert row["data_hash"] == load_eval_data(mi_index).data_hash and row["git_sha"] and row["adapt"] == "scratch"
    assert set(row["metrics"]) == {"balanced_accuracy", "cohen_kappa", "f1_weighted", "auroc", "auprc"}

    again = run_benchmark("csp_lda", mi_index, "loso", seeds=(0,), out=tmp_path, progress=False)
    assert again.n_done == 0 and again.n_skipped == 4 and len(read_rows(summary.results)) == 4


def test_parts_cover_the_grid_once_and_a_torn_line_is_redone(mi_index: Path, tmp_path: Path) -> None:
    parts = [run_benchmark("ts_lr", mi_index, "loso", seeds=(0, 1), out=tmp_path, part=f"{i}/3", progress=False)
             for i in range(3)]
    rows = read_rows(tmp_path)
    assert sum(p.n_done for p in parts) == len(rows) == 8
    assert len({r["fold_id"] for r in rows}) == 8
    # a run killed while writing leaves a torn last line: it is ignored, and that fold is redone
    path = Path(parts[0].results)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])
    assert len(read_rows(path)) == len(lines) - 1
    rerun = run_benchmark("ts_lr", mi_index, "loso", seeds=(0, 1), out=tmp_path, part="0/3", progress=False)
    assert rerun.n_done == 1 and len(read_rows(path)) == len(lines)
    assert all(json.loads(line) for line in path.read_text().splitlines())


# --- metrics -------------------------------------------------------------------------------------


def test_classification_metrics_reference_values() -> None:
    y = np.array([0, 0, 1, 1, 1, 0])
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55], [0.7, 0.3], [0.2, 0.8]])
    m = classification_metrics(y, proba)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, proba[:, 1]))
    perfect = classification_metrics(np.array([0, 1, 2]), np.eye(3))
    assert perfect["balanced_accuracy"] == perfect["cohen_kappa"] == perfect["auroc"] == 1.0
    missing = classification_metrics(np.array([0, 0, 1]), np.array([[0.8, 0.1, 0.1], [0.6, 0.2, 0.2], [0.1, 0.8, 0.1]]))
    assert missing["auroc"] == 1.0  # class 2 absent from the test set: left out of the macro average
