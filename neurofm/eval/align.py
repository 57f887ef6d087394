"""Euclidean alignment (EA) of windows, with every reference fitted on training windows only.

EA (He & Wu 2020, IEEE TBME 67(2):399-410, doi:10.1109/TBME.2019.2913914) whitens a subject's windows
by the inverse square root of that subject's mean spatial covariance, ``x̃ = R^{-1/2} x`` with
``R = mean_i X_i X_iᵀ / T``, so that every subject's mean covariance becomes the identity.

The published recipe computes the *test* subject's ``R`` from its test windows (transductive). The
harness rule is that nothing is fitted on test data, and a model only ever sees test signals (no
subject id, ``harness.run_fold``), so here:

- training windows: each training subject is whitened with its own reference (from its training
  windows);
- test (and validation) windows: one fixed reference from the training side — the single training
  subject's when training holds exactly one subject (within-subject few-shot and cross-session folds,
  whose training shots are the test subject's own labelled windows), otherwise the mean covariance of
  all training windows pooled. Validation windows get it too, so early stopping selects under test
  conditions.

:class:`AlignedModel` applies it in front of any ``EvalModel`` (``build_model(..., align="euclidean")``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .data import EvalData
from .tasks import model_tasks

ALIGNMENTS = ("none", "euclidean")
TEST_REFERENCE_RULE = ("the single training subject's reference when training holds one subject, "
                       "else the mean covariance of all training windows pooled")


def window_covariances(x: np.ndarray) -> np.ndarray:
    """(N, C, T) → (N, C, C): ``X Xᵀ / T`` per window (not centred, as in EA)."""
    from pyriemann.utils.covariance import covariance_scm

    return covariance_scm(x.astype(np.float64), assume_centered=True)


def mean_reference(covs: np.ndarray) -> np.ndarray:
    """(N, C, C) → (C, C): the arithmetic (Euclidean) mean covariance."""
    from pyriemann.utils.mean import mean_euclid

    return mean_euclid(covs)


# Ridge added to a reference, relative to its mean eigenvalue: average-referenced EEG has rank C - 1 (one
# eigenvalue ~1e-14 of the others), whose plain inverse square root would amplify float noise ~1e6-fold.
# With it that direction is left near zero and the others whitened to within ~1e-5 of the identity.
RIDGE = 1e-5


def inverse_sqrt(ref: np.ndarray) -> np.ndarray:
    """(C, C) covariance → (C, C) ``(R + ridge I)^{-1/2}``."""
    from pyriemann.utils.base import invsqrtm

    return invsqrtm(ref + RIDGE * np.trace(ref) / len(ref) * np.eye(len(ref)))


@dataclass
class EuclideanAlignment:
    """Per-subject EA on training windows; one training-side reference for every other window.

    Args:
        band: estimate covariances on the signals band-passed to ``band`` Hz (the matrices are then
            applied to the raw windows; a spatial filter and a temporal filter commute, so a pipeline
            that band-passes next gets exactly EA of its band-passed signals). None: broadband.
        keep_scale: multiply the aligned windows by ``sqrt(trace(R_pooled) / C)`` (fitted on training
            windows) so they keep the training data's mean channel power: for nets that take µV.
    """

    band: tuple[float, float] | None = None
    keep_scale: bool = False
    subject_maps: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # subject -> (C, C)
    test_map: np.ndarray | None = field(default=None, repr=False)  # (C, C)

    def fit(self, x: np.ndarray, subject: np.ndarray, sfreq: float) -> EuclideanAlignment:
        """References from training windows ``x`` (N, C, T) of subjects ``subject`` (N,)."""
        covs = window_covariances(self._filtered(x, sfreq))  # (N, C, C)
        pooled = mean_reference(covs)
        scale = float(np.sqrt(np.trace(pooled) / len(pooled))) if self.keep_scale else 1.0
        subjects = sorted(set(subject.tolist()))
        self.subject_maps = {s: scale * inverse_sqrt(mean_reference(covs[subject == s])) for s in subjects}
        self.test_map = self.subject_maps[subjects[0]] if len(subjects) == 1 else scale * inverse_sqrt(pooled)
        return self

    def _filtered(self, x: np.ndarray, sfreq: float) -> np.ndarray:
        if self.band is None:
            return x
        from .models import BandPass

        return BandPass(sfreq, self.band).transform(x)

    def transform_train(self, x: np.ndarray, subject: np.ndarray) -> np.ndarray:
        """Training windows (N, C, T), each with its own subject's map."""
        out = np.empty(x.shape, np.float32)
        for s, m in self.subject_maps.items():
            idx = subject == s
            out[idx] = m @ x[idx]  # (C, C) @ (n, C, T) -> (n, C, T)
        return out

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Any other windows (N, C, T): the training-side test map; ``x`` contributes no statistic."""
        if self.test_map is None:
            raise RuntimeError("EuclideanAlignment: fit it on training windows first")
        return (self.test_map @ x).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        """The static recipe (identical before and after fitting: it enters the result row's config hash)."""
        return {"method": "euclidean", "band": None if self.band is None else list(self.band),
                "keep_scale": self.keep_scale, "fitted_on": "training windows, per training subject",
                "test_reference": TEST_REFERENCE_RULE}


@dataclass
class AlignedModel:
    """An ``EvalModel`` behind EA: ``fit`` aligns the training windows per subject, every other window
    (validation, test) with the training-side test reference."""

    inner: Any  # an EvalModel
    alignment: EuclideanAlignment

    def __post_init__(self) -> None:
        self.model_id = f"{self.inner.model_id}+ea"  # the leaderboard ranks it apart from the unaligned model

    def fit(self, train: EvalData, val: EvalData | None, seed: int) -> None:
        self.alignment.fit(train.x, train.subject, train.sfreq)
        aligned = replace(train, x=self.alignment.transform_train(train.x, train.subject))
        self.inner.fit(aligned, None if val is None else replace(val, x=self.alignment.transform(val.x)), seed)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.inner.predict_proba(self.alignment.transform(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.inner.predict(self.alignment.transform(x))

    @property
    def tasks(self) -> tuple[str, ...]:
        return model_tasks(self.inner)

    def describe(self) -> dict[str, Any]:
        desc = self.inner.describe()
        return {**desc, "model": self.model_id, "config": {**desc["config"], "align": self.alignment.describe()}}


def aligned(model: Any, align: str) -> Any:
    """``model`` behind the alignment named ``align`` (``none``: unchanged)."""
    if align not in ALIGNMENTS:
        raise ValueError(f"align={align!r} must be one of {ALIGNMENTS}")
    if align == "none":
        return model
    return AlignedModel(model, EuclideanAlignment(band=getattr(model, "alignment_band", None),
                                                  keep_scale=getattr(model, "alignment_keep_scale", False)))
