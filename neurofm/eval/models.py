"""Models under test: one registry, one interface (``fit`` on training data, ``predict_proba`` on windows).

An :class:`EvalModel` never sees a test label, subject or key: the harness calls ``fit`` with the
fold's training and validation windows only, and ``predict_proba`` with the test signals only,
after fitting is over. Anything a model learns from data (normalisation, alignment, CSP filters,
early stopping, a probe's penalty) therefore comes from training subjects by construction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .data import EvalData


class EvalModel(Protocol):
    model_id: str

    def fit(self, train: EvalData, val: EvalData | None, seed: int) -> None: ...

    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...  # (N, C, T) -> (N, n_classes)

    def describe(self) -> dict[str, Any]: ...  # config and weights identity for the result row

    # Optional, read by ``align.aligned``: ``alignment_band`` (Hz, or None: broadband), the band in which
    # alignment covariances are estimated; ``alignment_keep_scale``, True for nets that take µV.


MODELS: dict[str, Callable[..., EvalModel]] = {}


def register_model(name: str) -> Callable:
    def deco(factory: Callable[..., EvalModel]) -> Callable[..., EvalModel]:
        if name in MODELS:
            raise ValueError(f"eval model {name!r} is registered twice")
        MODELS[name] = factory
        return factory
    return deco


def build_model(name: str, align: str = "none", **options: Any) -> EvalModel:
    """A registered model by name (``csp_lda``, ``ts_lr``, ...); ``align="euclidean"`` puts it behind
    Euclidean alignment fitted on the fold's training windows only (``align.py``)."""
    from .align import aligned

    if name not in MODELS:
        from . import deep  # noqa: F401 - registers the deep models (imports torch)
    if name not in MODELS:
        raise ValueError(f"model {name!r} is not one of {sorted(MODELS)}")
    return aligned(MODELS[name](**options), align)


def _scratch_only(name: str, adapt: str) -> None:
    if adapt != "scratch":
        raise ValueError(f"{name} is trained from scratch on each fold: adapt must be 'scratch', not {adapt!r}")


def config_sha256(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# classical pipelines (scikit-learn, MNE, pyriemann)


class BandPass:
    """sklearn transformer: zero-phase IIR band-pass of (N, C, T) windows (stateless: nothing is fitted)."""

    def __init__(self, sfreq: float, band: tuple[float, float]) -> None:
        self.sfreq, self.band = sfreq, band

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> BandPass:
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        import mne

        return mne.filter.filter_data(x.astype(np.float64), self.sfreq, *self.band, method="iir", verbose="error")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"sfreq": self.sfreq, "band": self.band}

    def set_params(self, **params: Any) -> BandPass:
        for k, v in params.items():
            setattr(self, k, v)
        return self


@dataclass
class SklearnModel:
    """A scikit-learn pipeline built per fit from the data's sampling rate (no state between folds)."""

    model_id: str
    make: Callable[[float], Any] = field(repr=False)
    config: dict[str, Any] = field(default_factory=dict)
    pipeline: Any = field(default=None, repr=False)
    alignment_band: tuple[float, float] | None = None  # EA covariances in the pipeline's own band

    def fit(self, train: EvalData, val: EvalData | None, seed: int) -> None:
        import mne

        self.pipeline = self.make(train.sfreq, seed)
        with mne.utils.use_log_level("WARNING"):  # CSP logs every covariance at INFO
            self.pipeline.fit(train.x, train.y)
        self.n_classes = train.n_classes

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        import mne

        with mne.utils.use_log_level("WARNING"):
            proba = self.pipeline.predict_proba(x)
        full = np.zeros((len(x), self.n_classes))  # classes missing from the training set get 0
        full[:, self.pipeline.classes_] = proba
        return full

    def describe(self) -> dict[str, Any]:
        return {"model": self.model_id, "config": self.config, "weights_sha256": None}


@register_model("csp_lda")
def csp_lda(adapt: str = "scratch", band: tuple[float, float] = (8.0, 30.0), n_components: int = 6) -> SklearnModel:
    """Band-pass → CSP (log-variance of ``n_components`` filters; Ledoit-Wolf covariances at full rank, 2x faster
    than MNE's rank estimate, which the shrinkage makes moot) → shrinkage LDA."""
    _scratch_only("csp_lda", adapt)

    def make(sfreq: float, seed: int):
        from mne.decoding import CSP
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
        from sklearn.pipeline import make_pipeline

        csp = CSP(n_components=n_components, reg="ledoit_wolf", log=True, rank="full")
        return make_pipeline(BandPass(sfreq, band), csp, LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"))

    return SklearnModel("csp_lda", make, {"band": list(band), "n_components": n_components}, alignment_band=band)


@register_model("ts_lr")
def ts_lr(adapt: str = "scratch", band: tuple[float, float] = (8.0, 30.0), c: float = 1.0) -> SklearnModel:
    """Band-pass → OAS covariances → Riemannian tangent space (reference: training mean) → logistic regression."""
    _scratch_only("ts_lr", adapt)

    def make(sfreq: float, seed: int):
        from pyriemann.estimation import Covariances
        from pyriemann.tangentspace import TangentSpace
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        return make_pipeline(BandPass(sfreq, band), Covariances("oas"), TangentSpace(metric="riemann"),
                             LogisticRegression(C=c, max_iter=1000, random_state=seed))

    return SklearnModel("ts_lr", make, {"band": list(band), "C": c}, alignment_band=band)
