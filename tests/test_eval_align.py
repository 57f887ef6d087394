"""Euclidean alignment: reference numbers, training-only references (no test statistic), end to end."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from neurofm.eval.align import AlignedModel, EuclideanAlignment, inverse_sqrt, mean_reference, window_covariances
from neurofm.eval.data import EvalData
from neurofm.eval.harness import run_benchmark
from neurofm.eval.models import build_model
from test_eval_harness import fake_data, mi_index  # noqa: F401 - mi_index: the prepared synthetic MI fixture

C, T, SFREQ = 4, 256, 128.0


def mixed_windows(n: int, seed: int) -> np.ndarray:
    """(n, C, T) white noise through a random subject-specific mixing matrix (full rank)."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(C, C)) + 2 * np.eye(C)
    return (mixing @ rng.normal(size=(n, C, T))).astype(np.float32)


def subjects_data(n_subjects: int = 3) -> EvalData:
    """fake_data's labels and subjects (one session) with mixed-noise windows, subject s mixed by seed s."""
    data = fake_data(n_subjects=n_subjects, per_class=6, n_classes=2, sessions=1)
    x = np.concatenate([mixed_windows(int((data.subject == s).sum()), i) for i, s in enumerate(data.subjects)])
    return replace(data, x=x, ch_names=tuple(f"ch{i}" for i in range(C)), pos=np.zeros((C, 3)), sfreq=SFREQ)


def mean_cov(x: np.ndarray) -> np.ndarray:
    return mean_reference(window_covariances(x))


def test_reference_numbers_of_a_diagonal_covariance() -> None:
    x = np.array([[[2.0, -2.0], [3.0, 3.0]]])  # X Xᵀ / T = diag(4, 9)
    np.testing.assert_allclose(mean_cov(x), np.diag([4.0, 9.0]))
    np.testing.assert_allclose(inverse_sqrt(np.diag([4.0, 9.0])), np.diag([1 / 2, 1 / 3]), rtol=1e-5)


def test_each_training_subject_is_whitened_to_the_identity() -> None:
    data = subjects_data()
    ea = EuclideanAlignment().fit(data.x, data.subject, data.sfreq)
    aligned = ea.transform_train(data.x, data.subject)
    for s in data.subjects:
        np.testing.assert_allclose(mean_cov(aligned[data.subject == s]), np.eye(C), atol=1e-4)
    assert not np.allclose(mean_cov(data.x[data.subject == "01"]), np.eye(C), atol=0.1)  # it was not before
    # test windows: the reference of all training windows pooled (several training subjects)
    np.testing.assert_allclose(ea.test_map, inverse_sqrt(mean_cov(data.x)), rtol=1e-6)


def test_one_training_subject_is_its_own_test_reference() -> None:
    data = subjects_data(n_subjects=1)
    ea = EuclideanAlignment().fit(data.x, data.subject, data.sfreq)
    np.testing.assert_array_equal(ea.test_map, ea.subject_maps["01"])


def test_keep_scale_keeps_the_training_power() -> None:
    data = subjects_data()
    ea = EuclideanAlignment(keep_scale=True).fit(data.x, data.subject, data.sfreq)
    power = np.trace(mean_cov(data.x)) / C
    aligned = ea.transform_train(data.x, data.subject)
    np.testing.assert_allclose(mean_cov(aligned[data.subject == "02"]), power * np.eye(C), rtol=1e-4, atol=1e-4 * power)


def test_band_reference_whitens_the_band_passed_signals() -> None:
    """The map is fitted on band-passed windows and applied to raw ones; filtering after aligning gives EA of
    the band-passed signals (a spatial and a temporal filter commute)."""
    from neurofm.eval.models import BandPass

    data = subjects_data()
    ea = EuclideanAlignment(band=(8.0, 30.0)).fit(data.x, data.subject, data.sfreq)
    filtered = BandPass(SFREQ, (8.0, 30.0)).transform(ea.transform_train(data.x, data.subject))
    np.testing.assert_allclose(mean_cov(filtered[data.subject == "03"]), np.eye(C), atol=1e-3)


def test_rank_deficient_average_reference_stays_finite() -> None:
    """Average-referenced EEG has rank C - 1: the ridge whitens the rest and leaves the common mode at ~0."""
    data = subjects_data()
    x = data.x - data.x.mean(axis=1, keepdims=True)  # average reference
    ea = EuclideanAlignment().fit(x, data.subject, data.sfreq)
    ones = np.ones((C, 1)) / np.sqrt(C)
    np.testing.assert_allclose(mean_cov(ea.transform_train(x, data.subject)[data.subject == "01"]),
                               np.eye(C) - ones @ ones.T, atol=1e-3)


class SpyModel:
    """Records the windows it is given; predicts from their first sample (deterministic, per window)."""

    model_id = "spy"

    def fit(self, train: EvalData, val: EvalData | None, seed: int) -> None:
        self.train_x = train.x

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.predicted_x = x
        p = 1 / (1 + np.exp(-x[:, 0, 0].astype(np.float64)))
        return np.stack([1 - p, p], 1)

    def describe(self) -> dict:
        return {"config": {}, "weights_sha256": None}


def test_test_windows_never_shape_their_own_alignment() -> None:
    """Predictions for the test windows are the same whatever else is in the batch: a batch of strongly
    mixed extra windows (which would move a transductive, test-fitted EA reference) changes nothing."""
    data = subjects_data()
    train, test = data.x[data.subject != "03"], data.x[data.subject == "03"]
    subj = data.subject[data.subject != "03"]
    extra = 20 * mixed_windows(40, seed=99)
    assert not np.allclose(inverse_sqrt(mean_cov(test)), inverse_sqrt(mean_cov(np.concatenate([test, extra]))),
                           rtol=0.1)  # a transductive EA would align the test windows differently here
    spy = AlignedModel(SpyModel(), EuclideanAlignment())
    spy.fit(data.take(np.flatnonzero(data.subject != "03")), None, seed=0)
    spy.predict_proba(test)
    expected = inverse_sqrt(mean_cov(train)) @ test  # the reference of the training windows alone
    np.testing.assert_allclose(spy.inner.predicted_x, expected, rtol=1e-4, atol=1e-5)
    assert spy.inner.train_x.shape == (len(subj), C, T)

    model = build_model("csp_lda", align="euclidean", band=(8.0, 30.0))
    model.fit(data.take(np.flatnonzero(data.subject != "03")), None, seed=0)
    alone = model.predict_proba(test)
    one_by_one = np.concatenate([model.predict_proba(w[None]) for w in test])
    with_extra = model.predict_proba(np.concatenate([test, extra]))[:len(test)]
    np.testing.assert_allclose(one_by_one, alone, atol=1e-6)
    np.testing.assert_allclose(with_extra, alone, atol=1e-6)


def test_align_option_is_checked_and_described() -> None:
    with pytest.raises(ValueError, match="align='whiten' must be one of"):
        build_model("csp_lda", align="whiten")
    model = build_model("ts_lr", align="euclidean")
    assert model.model_id == "ts_lr+ea" and model.alignment.band == (8.0, 30.0)
    config = model.describe()["config"]
    assert config["align"]["method"] == "euclidean" and "pooled" in config["align"]["test_reference"]
    assert build_model("ts_lr", align="none").model_id == "ts_lr"


def test_benchmark_with_alignment_end_to_end(mi_index: Path, tmp_path: Path) -> None:  # noqa: F811
    summary = run_benchmark("csp_lda", mi_index, "loso", seeds=(0,), out=tmp_path, progress=False,
                            model_options={"align": "euclidean"})
    assert summary.n_done == 4
    row = summary.rows[0]
    assert row["model"] == "csp_lda+ea" and row["config"]["align"]["band"] == [8.0, 30.0]
    assert all(0 <= r["metrics"]["balanced_accuracy"] <= 1 for r in summary.rows)
    again = run_benchmark("csp_lda", mi_index, "loso", seeds=(0,), out=tmp_path, progress=False,
                          model_options={"align": "euclidean"})
    assert again.n_done == 0 and again.n_skipped == 4  # the config (hence the resume key) is fixed before fitting
    within = run_benchmark("ts_lr", mi_index, "cross_session", seeds=(0,), out=tmp_path / "cs", progress=False,
                           model_options={"align": "euclidean"})
    print("ts_lr+ea cross_session", np.mean([r["metrics"]["balanced_accuracy"] for r in within.rows]))
    assert np.mean([r["metrics"]["balanced_accuracy"] for r in within.rows]) > 0.65


def test_deep_model_behind_alignment_keeps_the_microvolt_scale(mi_index: Path) -> None:  # noqa: F811
    from neurofm.eval.data import load_eval_data
    from neurofm.eval.splits import make_folds

    data = load_eval_data(mi_index)
    fold = make_folds(data, "fewshot", seeds=(0,), ks=(2,))[0]
    fast = {"max_epochs": 2, "fewshot_epochs": 2, "batch_size": 16}
    model = build_model("neurofm", adapt="finetune", align="euclidean", preset="tiny", settings=fast)
    assert model.alignment.keep_scale and not build_model("eegnet", align="euclidean").alignment.keep_scale
    model.fit(data.take(fold.train), None, seed=0)
    proba = model.predict_proba(data.x[fold.test])
    assert proba.shape == (fold.test.size, 2) and np.isfinite(proba).all()
