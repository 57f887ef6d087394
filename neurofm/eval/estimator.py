"""Any harness model as a scikit-learn classifier, so MOABB's own evaluations can run it.

::

    from moabb.evaluations import CrossSubjectEvaluation
    pipelines = {"neurofm-eegnet": make_pipeline(NeurofmClassifier("eegnet", sfreq=128.0))}
    CrossSubjectEvaluation(paradigm, datasets=[dataset]).process(pipelines)

MOABB hands the estimator ``(n_windows, n_channels, n_times)`` arrays and labels (strings or ints);
the estimator keeps scikit-learn's contract (``fit`` learns from what it is given, ``predict`` /
``predict_proba`` on new windows, ``classes_``), so MOABB's splits decide what is training data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from .data import EvalData
from .models import build_model


class NeurofmClassifier(ClassifierMixin, BaseEstimator):
    """A registered harness model (``csp_lda``, ``eegnet``, ``neurofm`` ...) behind ``fit``/``predict``.

    Args:
        model: registered model name.
        sfreq: sampling rate of the windows MOABB passes (its paradigm's ``resample``).
        adapt: scratch, finetune or linear (see ``neurofm bench``).
        ch_names: channel names (positions for montage-aware models); default ``ch0..``.
        options: model options (e.g. ``{"settings": {"max_epochs": 20}}``, ``{"weights": "runs/.../backbone"}``).
        seed: the seed of the fit.
    """

    def __init__(self, model: str = "csp_lda", sfreq: float = 128.0, adapt: str = "scratch",
                 ch_names: tuple[str, ...] | None = None, options: dict[str, Any] | None = None, seed: int = 0) -> None:
        self.model, self.sfreq, self.adapt = model, sfreq, adapt
        self.ch_names, self.options, self.seed = ch_names, options, seed

    def _data(self, x: np.ndarray, y: np.ndarray) -> EvalData:
        n = len(x)
        names = tuple(self.ch_names or [f"ch{i}" for i in range(x.shape[1])])
        one = np.array(["0"] * n)  # one subject, session and run
        return EvalData(dataset="sklearn", x=np.asarray(x, np.float32), y=y, subject=one, session=one, run=one,
                        key=np.array([str(i) for i in range(n)]), classes=tuple(str(c) for c in self.classes_),
                        ch_names=names, pos=_positions(names), sfreq=float(self.sfreq), data_hash="", index_path="")

    def fit(self, X: np.ndarray, y: np.ndarray) -> NeurofmClassifier:
        self.classes_, y_ids = np.unique(np.asarray(y), return_inverse=True)
        self.model_ = build_model(self.model, adapt=self.adapt, **(self.options or {}))
        self.model_.fit(self._data(X, y_ids.astype(np.int64)), None, self.seed)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(np.asarray(X, np.float32))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]


def _positions(names: tuple[str, ...]) -> np.ndarray:
    """colin27_1005 positions for 10-05 names, NaN for others."""
    from ..pipelines.channels import template_position

    return np.array([p if (p := template_position(n)) is not None else (np.nan,) * 3 for n in names], dtype=float)
