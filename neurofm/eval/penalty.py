"""Linear heads of the classical pipelines, their penalty chosen on the fold's validation split.

The harness hands a model validation windows drawn from training subjects (or training sessions /
runs) only (``splits.py``); here each candidate penalty is fitted on the training features and scored
on the validation features, and the best one's model — fitted on the training windows only, the very
model that was validated — is kept. Not refitted on train + validation: the chosen penalty is a
strength for that sample size, and the validated model is then exactly the tested one.

Without validation (few-shot folds) ridge falls back to efficient leave-one-out on the training
windows (``RidgeCV``) and logistic regression to ``C = 1`` (k = 1 shot per class cannot be cross-validated).
Logistic regression (used by ``ts_lr``/``bp_lr`` only with ``c=None``; their default is a fixed C = 1)
keeps ``C = 1`` unless another C beats it on validation balanced accuracy by more than one standard
error: validation sets here are one training subject or a few windows of one run, and picking the
argmax among 13 candidates on them chose C from 1e-3 to 1e3 between folds and lowered TS+LR's LOSO
score (quickstart synthetic_mi 0.431 → 0.394; real subject fists vs feet 0.705 → 0.619).
``selected`` is what was chosen; the harness stores it in the result row (``ResultRow.selected``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Log-spaced: the best ridge penalty moves by orders of magnitude with the number of features
# (tangent space: C (C + 1) / 2; band power: C · 5).
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))
LOGISTIC_CS = tuple(float(c) for c in np.logspace(-3, 3, 13))  # inverse penalty, as the deep probes' grid
DEFAULT_C = 1.0  # scikit-learn's default, used without a validation split

Validation = tuple[np.ndarray, np.ndarray] | None  # (features (N, F), targets (N,)) of the validation windows


def _pipeline(head: Any, standardize: bool) -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), head) if standardize else make_pipeline(head)


@dataclass
class ValidatedRidge:
    """Standardise (fitted on the training features), then ridge; ``alpha`` by validation MSE."""

    alphas: tuple[float, ...] = RIDGE_ALPHAS
    selected: dict[str, Any] = field(default_factory=dict)

    def fit(self, f: np.ndarray, y: np.ndarray, val: Validation = None) -> ValidatedRidge:
        from sklearn.linear_model import Ridge, RidgeCV

        if val is None:
            self.model_ = _pipeline(RidgeCV(alphas=self.alphas), True).fit(f, y)
            self.selected = {"alpha": float(self.model_[-1].alpha_), "by": "leave-one-out MSE (training windows)"}
            return self
        fitted = [_pipeline(Ridge(alpha=a), True).fit(f, y) for a in self.alphas]
        mse = [float(np.mean((m.predict(val[0]) - val[1]) ** 2)) for m in fitted]
        best = int(np.argmin(mse))  # the first (smallest alpha) of equal scores
        self.model_ = fitted[best]
        self.selected = {"alpha": self.alphas[best], "by": "validation MSE", "val_mse": mse[best]}
        return self

    def predict(self, f: np.ndarray) -> np.ndarray:
        return self.model_.predict(f)  # (N,)


@dataclass
class ValidatedLogistic:
    """(Optionally standardise, then) L2 logistic regression; ``C`` by validation balanced accuracy, ties
    broken by validation log-loss (a handful of validation windows ties often on accuracy alone)."""

    cs: tuple[float, ...] = LOGISTIC_CS
    standardize: bool = True
    seed: int = 0
    default_c: float = DEFAULT_C  # without a validation split
    selected: dict[str, Any] = field(default_factory=dict)

    def _fit_one(self, f: np.ndarray, y: np.ndarray, c: float) -> Any:
        from sklearn.linear_model import LogisticRegression

        return _pipeline(LogisticRegression(C=c, max_iter=1000, random_state=self.seed), self.standardize).fit(f, y)

    def fit(self, f: np.ndarray, y: np.ndarray, val: Validation = None) -> ValidatedLogistic:
        if val is None:
            self.model_ = self._fit_one(f, y, self.default_c)
            self.selected = {"C": self.default_c, "by": "default (no validation split)"}
            return self
        cs = sorted({*self.cs, self.default_c})
        fitted = [self._fit_one(f, y, c) for c in cs]
        scores = [_classification_score(m, *val) for m in fitted]
        best = select_c(scores, cs.index(self.default_c), len(val[1]))
        self.model_ = fitted[best]
        self.selected = {"C": cs[best], "by": f"validation balanced accuracy; C = {self.default_c:g} unless "
                         "another beats it by more than one standard error", "val_balanced_accuracy": scores[best][0],
                         "val_windows": len(val[1])}
        return self

    @property
    def classes_(self) -> np.ndarray:
        return self.model_.classes_

    def predict_proba(self, f: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(f)  # (N, n_training_classes), columns in ``classes_`` order


def select_c(scores: list[tuple[float, float]], default: int, n_val: int) -> int:
    """The index of the best (balanced accuracy, −log-loss) score, unless its balanced accuracy beats the
    default's by no more than one standard error on ``n_val`` windows: then the default's."""
    best = max(range(len(scores)), key=lambda i: scores[i])  # the first (smallest C) of equal scores
    margin = _standard_error(scores[default][0], n_val)
    return best if scores[best][0] - scores[default][0] > margin else default


def _standard_error(accuracy: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on ``n`` windows (a floor of 1/n at 0 and 1)."""
    return max(float(np.sqrt(accuracy * (1 - accuracy) / max(n, 1))), 1.0 / max(n, 1))


def _classification_score(model: Any, f: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(balanced accuracy, −log-loss) on validation windows; windows of a class absent from training
    count for accuracy only (their log-loss is undefined)."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score, log_loss

    proba = model.predict_proba(f)  # (N, K)
    with warnings.catch_warnings():  # a few validation windows may hold one class: sklearn warns, scores fine
        warnings.simplefilter("ignore", UserWarning)
        bacc = float(balanced_accuracy_score(y, model.classes_[proba.argmax(1)]))
    known = np.isin(y, model.classes_)
    nll = log_loss(y[known], proba[known], labels=model.classes_) if known.any() else 0.0
    return bacc, -float(nll)
