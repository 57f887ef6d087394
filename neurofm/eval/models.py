"""Models under test: one registry, one interface (``fit`` on training data, ``predict_proba`` on windows).

Regression models answer ``predict`` (N,) instead and list ``"regression"`` in ``tasks`` (``tasks.py``).

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

    # Optional: ``tasks`` (default ("classification",)), the tasks the model does (``tasks.py``), and
    # ``predict(x)`` (N, C, T) -> (N,) float targets for "regression".

    def describe(self) -> dict[str, Any]: ...  # config and weights identity for the result row

    # Optional, read by ``align.aligned``: ``alignment_band`` (Hz, or None: broadband), the band in which
    # alignment covariances are estimated; ``alignment_keep_scale``, True for nets that take µV.


MODELS: dict[str, Callable[..., EvalModel]] = {}
MODEL_TASKS: dict[str, tuple[str, ...]] = {}  # what each registered model can do (with some options)


def register_model(name: str, tasks: tuple[str, ...] = ("classification",)) -> Callable:
    def deco(factory: Callable[..., EvalModel]) -> Callable[..., EvalModel]:
        if name in MODELS:
            raise ValueError(f"eval model {name!r} is registered twice")
        MODELS[name] = factory
        MODEL_TASKS[name] = tasks
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
    tasks: tuple[str, ...] = ("classification",)

    def fit(self, train: EvalData, val: EvalData | None, seed: int) -> None:
        import mne

        self.pipeline = self.make(train.sfreq, seed)
        with mne.utils.use_log_level("WARNING"):  # CSP logs every covariance at INFO
            self.pipeline.fit(train.x, train.y)
        self.n_classes = train.n_classes

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N,) float targets (regression pipelines)."""
        import mne

        with mne.utils.use_log_level("WARNING"):
            return np.asarray(self.pipeline.predict(x), float)

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


# Ridge penalties tried on the validation split (log-spaced: the best one moves by orders of magnitude
# with the number of tangent-space features, C (C + 1) / 2).
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))


@dataclass
class ValidatedRidge:
    """sklearn regressor: standardise, then ridge with its penalty chosen on the fold's validation split.

    ``fit(features, y)`` takes the training features; the harness passes validation windows through
    :class:`TangentRidgeModel`, which sets ``val`` first. Without validation (few-shot) the penalty
    comes from efficient leave-one-out on the training windows (``RidgeCV``).
    """

    alphas: tuple[float, ...] = RIDGE_ALPHAS
    val: tuple[np.ndarray, np.ndarray] | None = None  # (features, targets) of the validation windows
    alpha_: float | None = None

    def fit(self, f: np.ndarray, y: np.ndarray) -> ValidatedRidge:
        from sklearn.linear_model import Ridge, RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if self.val is None:
            self.model_ = make_pipeline(StandardScaler(), RidgeCV(alphas=self.alphas)).fit(f, y)
            self.alpha_ = float(self.model_[-1].alpha_)
            return self
        scores = []
        for alpha in self.alphas:
            model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(f, y)
            scores.append(-float(np.mean((model.predict(self.val[0]) - self.val[1]) ** 2)))
        self.alpha_ = self.alphas[int(np.argmax(scores))]
        self.model_ = make_pipeline(StandardScaler(), Ridge(alpha=self.alpha_)).fit(f, y)
        return self

    def predict(self, f: np.ndarray) -> np.ndarray:
        return self.model_.predict(f)


@dataclass
class TangentRidgeModel:
    """Band-pass → OAS covariances → Riemannian tangent space (reference: training mean) → validated ridge."""

    band: tuple[float, float] = (1.0, 30.0)
    model_id: str = "ts_ridge"
    tasks: tuple[str, ...] = ("regression",)
    alignment_band: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        self.alignment_band = self.band

    def _covariances(self, x: np.ndarray, sfreq: float) -> np.ndarray:
        from pyriemann.estimation import Covariances

        return Covariances("oas").transform(BandPass(sfreq, self.band).transform(x))  # (N, C, C)

    def fit(self, train: EvalData, val: EvalData | None, seed: int) -> None:
        from pyriemann.tangentspace import TangentSpace

        self.sfreq = train.sfreq
        covs = self._covariances(train.x, train.sfreq)  # once: OAS is most of the fold's time
        self.space = TangentSpace(metric="riemann").fit(covs)
        f_val = None if val is None else (self._features(val.x), val.y.astype(float))
        self.ridge = ValidatedRidge(val=f_val).fit(self.space.transform(covs), train.y.astype(float))

    def _features(self, x: np.ndarray) -> np.ndarray:
        return self.space.transform(self._covariances(x, self.sfreq))  # (N, C (C + 1) / 2)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.ridge.predict(self._features(x))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        raise ValueError("ts_ridge is a regression model: it predicts targets (predict), not class probabilities")

    def describe(self) -> dict[str, Any]:
        return {"model": self.model_id, "config": {"band": list(self.band), "alphas": list(RIDGE_ALPHAS),
                                                     "penalty": "validation MSE (leave-one-out without)"},
                "weights_sha256": None}


@register_model("ts_ridge", tasks=("regression",))
def ts_ridge(adapt: str = "scratch", band: tuple[float, float] = (1.0, 30.0)) -> TangentRidgeModel:
    """Regression: 1–30 Hz band-pass (theta and alpha both matter for vigilance) → OAS covariances →
    tangent space → ridge, its penalty chosen by validation MSE."""
    _scratch_only("ts_ridge", adapt)
    return TangentRidgeModel(band=tuple(band))
