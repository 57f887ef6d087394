"""MOABB interoperability: its CrossSubjectEvaluation runs our estimator next to CSP+LDA on its FakeDataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from neurofm.eval.estimator import NeurofmClassifier


def test_estimator_follows_the_sklearn_contract() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4, 128)).astype(np.float32)
    y = np.array(["left", "right"] * 20)
    x[y == "left", 0] *= 3  # class information in channel variance
    est = NeurofmClassifier("ts_lr", sfreq=128.0, ch_names=("C3", "Cz", "C4", "Pz"))
    cloned = clone(est)  # get_params/set_params round trip
    assert cloned.get_params() == est.get_params()
    est.fit(x[:30], y[:30])
    assert list(est.classes_) == ["left", "right"]
    assert est.predict_proba(x[30:]).shape == (10, 2)
    assert (est.predict(x[30:]) == y[30:]).mean() >= 0.8


def test_moabb_cross_subject_evaluation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNE_DATA", str(tmp_path / "mne_data"))
    from mne.decoding import CSP
    from moabb.datasets.fake import FakeDataset
    from moabb.evaluations import CrossSubjectEvaluation
    from moabb.paradigms import LeftRightImagery
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    dataset = FakeDataset(event_list=["left_hand", "right_hand"], n_subjects=3, n_sessions=1, n_runs=1,
                          paradigm="imagery", duration=60)
    paradigm = LeftRightImagery(resample=128.0)
    pipelines = {
        "neurofm-csp_lda": make_pipeline(NeurofmClassifier("csp_lda", sfreq=128.0)),
        "neurofm-shallow": make_pipeline(NeurofmClassifier("shallow", sfreq=128.0,
                                                           options={"settings": {"fewshot_epochs": 2}})),
        "mne-csp_lda": make_pipeline(CSP(n_components=6), LinearDiscriminantAnalysis()),
    }
    evaluation = CrossSubjectEvaluation(paradigm=paradigm, datasets=[dataset], overwrite=True,
                                        hdf5_path=str(tmp_path / "results"), suffix="neurofm-test")
    results = evaluation.process(pipelines)
    assert set(results["pipeline"]) == set(pipelines)
    assert len(results) == 3 * len(pipelines)  # one score per subject and pipeline
    assert results["score"].between(0, 1).all()
