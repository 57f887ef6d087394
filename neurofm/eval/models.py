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
from sklearn.base import BaseEstimator, TransformerMixin

from .data import EvalData
from .penalty import DEFAULT_C, LOGISTIC_CS, RIDGE_ALPHAS, ValidatedLogistic, ValidatedRidge  # noqa: F401 - re-exported
from .tasks import DEFAULT_TASK


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


def register_model(name: str, tasks: tuple[str, ...] = (DEFAULT_TASK,)) -> Callable:
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


class BandPass(TransformerMixin, BaseEstimator):
    """sklearn transformer: zero-phase IIR band-pass of (N, C, T) windows (stateless: nothing is fitted)."""

    def __init__(self, sfreq: float, band: tuple[float, float]) -> None:
        self.sfreq, self.band = sfreq, band

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> BandPass:
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        import mne

        return mne.filter.filter_data(x.astype(np.float64), self.sfreq, *self.band, method="iir", verbose="error")


@dataclass
class SklearnModel:
    """A scikit-learn pipeline built per fit from the data's sampling rate (no state between folds)."""

    model_id: str
    make: Callable[[float], Any] = field(repr=False)
    config: dict[str, Any] = field(default_factory=dict)
    pipeline: Any = field(default=None, repr=False)
    alignment_band: tuple[float, float] | None = None  # EA covariances in the pipeline's own band
    tasks: tuple[str, ...] = (DEFAULT_TASK,)

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


@dataclass
class FeatureModel:
    """Features of each window (a transformer fitted on the training windows only) → a linear head whose
    penalty is chosen on the fold's validation windows (``penalty.py``). Classification or regression,
    by the head: ``ValidatedLogistic`` answers ``predict_proba``, ``ValidatedRidge`` ``predict``."""

    model_id: str
    make_features: Callable[[float], Any] = field(repr=False)  # sfreq -> sklearn transformer (N, C, T) -> (N, F)
    make_head: Callable[[int], Any] = field(repr=False)  # seed -> ValidatedLogistic | ValidatedRidge
    config: dict[str, Any] = field(default_factory=dict)
    tasks: tuple[str, ...] = (DEFAULT_TASK,)
    alignment_band: tuple[float, float] | None = None  # EA covariances in the features' own band

    def fit(self, train: EvalData, val: EvalData | None, seed: int) -> None:
        import mne

        self.features = self.make_features(train.sfreq)
        with mne.utils.use_log_level("WARNING"):
            f_train = self.features.fit_transform(train.x, train.y)  # (N_train, F), fitted here only
            f_val = None if val is None else (self.features.transform(val.x), val.y)  # transformed, never fitted
        self.head = self.make_head(seed).fit(f_train, train.y, f_val)
        self.n_classes = train.n_classes

    def _features(self, x: np.ndarray) -> np.ndarray:
        import mne

        with mne.utils.use_log_level("WARNING"):
            return self.features.transform(x)  # (N, F)

    def predict(self, x: np.ndarray) -> np.ndarray:
        if "regression" not in self.tasks:
            raise ValueError(f"{self.model_id} is a classification model: it predicts class probabilities")
        return np.asarray(self.head.predict(self._features(x)), float)  # (N,)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if "classification" not in self.tasks:
            raise ValueError(f"{self.model_id} is a regression model: it predicts targets (predict), "
                             "not class probabilities")
        proba = self.head.predict_proba(self._features(x))
        full = np.zeros((len(x), self.n_classes))  # classes missing from the training set get 0
        full[:, self.head.classes_] = proba
        return full

    def describe(self) -> dict[str, Any]:
        """``config`` is the static recipe (hashed into the row key, so equal before and after fitting);
        ``selected`` is what fitting chose on the validation split (empty before)."""
        head = getattr(self, "head", None)
        return {"model": self.model_id, "config": self.config, "weights_sha256": None,
                "selected": dict(head.selected) if head is not None else {}}


def _tangent_space(band: tuple[float, float]) -> Callable[[float], Any]:
    """Band-pass → OAS covariances → Riemannian tangent space at the training windows' mean: (N, C (C + 1) / 2)."""

    def make(sfreq: float) -> Any:
        from pyriemann.estimation import Covariances
        from pyriemann.tangentspace import TangentSpace
        from sklearn.pipeline import make_pipeline

        return make_pipeline(BandPass(sfreq, band), Covariances("oas"), TangentSpace(metric="riemann"))
    return make


def _band_power(power: str) -> Callable[[float], Any]:
    """Per-channel log band power (``bandpower.py``): (N, C · 5), or (N, C · 10) with ``power="both"``."""
    from .bandpower import POWER_FEATURES, LogBandPower

    if power not in POWER_FEATURES:
        raise ValueError(f"power={power!r} is not one of {sorted(POWER_FEATURES)}")
    return lambda sfreq: LogBandPower(sfreq, power=power)


def _bandpower_config(power: str, head: dict[str, Any]) -> dict[str, Any]:
    from .bandpower import BANDS, SEGMENT_S

    return {"bands": {k: list(v) for k, v in BANDS.items()}, "welch_segment_s": SEGMENT_S, "power": power,
            "log": True, "standardize": "training windows", **head}


RIDGE_CONFIG = {"alphas": list(RIDGE_ALPHAS), "penalty": "validation MSE (leave-one-out without)"}
LOGISTIC_CONFIG = {"Cs": list(LOGISTIC_CS), "C": "validation balanced accuracy, 1.0 unless beaten by one standard error"}


def _variant(name: str, power: str) -> str:
    """``bp_ridge`` (absolute power), ``bp_ridge:relative``: the leaderboard ranks variants apart."""
    return name if power == "absolute" else f"{name}:{power}"


BROADBAND = (1.0, 45.0)  # Hz: the span of the band-power features, where EA estimates its covariances


@register_model("ts_lr")
def ts_lr(adapt: str = "scratch", band: tuple[float, float] = (8.0, 30.0), c: float | None = DEFAULT_C) -> FeatureModel:
    """Band-pass → OAS covariances → Riemannian tangent space (reference: training mean) → logistic regression
    with C = ``c`` (scikit-learn's 1, the usual TS+LR baseline); ``c=None``: C chosen on the validation split
    (``penalty.ValidatedLogistic``; it scored lower on every dataset measured here, docs/evaluation.md)."""
    _scratch_only("ts_lr", adapt)
    return FeatureModel("ts_lr", _tangent_space(tuple(band)), _logistic_head(c, standardize=False),
                        {"band": list(band), **_logistic_config(c)}, alignment_band=tuple(band))


def _logistic_head(c: float | None, standardize: bool = True) -> Callable[[int], ValidatedLogistic]:
    """A fixed C, or (``None``) C chosen on the validation split."""
    cs, default_c = (LOGISTIC_CS, DEFAULT_C) if c is None else ((float(c),), float(c))
    return lambda seed: ValidatedLogistic(cs, standardize=standardize, seed=seed, default_c=default_c)


def _logistic_config(c: float | None) -> dict[str, Any]:
    return dict(LOGISTIC_CONFIG) if c is None else {"C": float(c)}


@register_model("ts_ridge", tasks=("regression",))
def ts_ridge(adapt: str = "scratch", band: tuple[float, float] = (1.0, 30.0)) -> FeatureModel:
    """Regression: 1–30 Hz band-pass (theta and alpha both matter for vigilance) → OAS covariances →
    tangent space → standardise → ridge, its penalty chosen by validation MSE."""
    _scratch_only("ts_ridge", adapt)
    return FeatureModel("ts_ridge", _tangent_space(tuple(band)), lambda seed: ValidatedRidge(),
                        {"band": list(band), **RIDGE_CONFIG}, tasks=("regression",), alignment_band=tuple(band))


@register_model("bp_ridge", tasks=("regression",))
def bp_ridge(adapt: str = "scratch", power: str = "absolute") -> FeatureModel:
    """Regression: per-channel log band power (delta … gamma, Welch; ``power``: absolute, relative or both)
    → standardise → ridge, its penalty chosen by validation MSE. The standard vigilance baseline."""
    _scratch_only("bp_ridge", adapt)
    return FeatureModel(_variant("bp_ridge", power), _band_power(power), lambda seed: ValidatedRidge(),
                        _bandpower_config(power, RIDGE_CONFIG), tasks=("regression",), alignment_band=BROADBAND)


@register_model("bp_lr")
def bp_lr(adapt: str = "scratch", power: str = "absolute", c: float | None = DEFAULT_C) -> FeatureModel:
    """Per-channel log band power → standardise → logistic regression with C = ``c``; ``None``: C chosen
    on the validation split (as ``ts_lr``)."""
    _scratch_only("bp_lr", adapt)
    return FeatureModel(_variant("bp_lr", power), _band_power(power), _logistic_head(c),
                        _bandpower_config(power, _logistic_config(c)), alignment_band=BROADBAND)
