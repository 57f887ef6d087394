"""Scores of one fold: classification (balanced accuracy, κ, weighted F1, AUROC, AUPRC) and regression.

Multi-class AUROC/AUPRC are one-vs-rest macro averages; a class absent from the test set is left
out of the macro average (its AUROC is undefined) rather than failing the fold.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr
from sklearn.metrics import (average_precision_score, balanced_accuracy_score, cohen_kappa_score, f1_score,
                             mean_squared_error, r2_score, roc_auc_score)


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """``y_true`` (N,) class ids, ``proba`` (N, K) class probabilities (rows sum to 1)."""
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or len(proba) != len(y_true):
        raise ValueError(f"proba has shape {proba.shape}, expected ({len(y_true)}, n_classes)")
    y_pred = proba.argmax(1)
    out = {"balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
           "cohen_kappa": cohen_kappa_score(y_true, y_pred),
           "f1_weighted": f1_score(y_true, y_pred, average="weighted", zero_division=0)}
    present = np.unique(y_true)
    if len(present) < 2:
        out["auroc"] = out["auprc"] = float("nan")
    elif proba.shape[1] == 2:
        out["auroc"] = roc_auc_score(y_true, proba[:, 1])
        out["auprc"] = average_precision_score(y_true, proba[:, 1])
    else:
        onehot = y_true[:, None] == np.arange(proba.shape[1])[None]  # (N, K)
        out["auroc"] = float(np.mean([roc_auc_score(onehot[:, c], proba[:, c]) for c in present]))
        out["auprc"] = float(np.mean([average_precision_score(onehot[:, c], proba[:, c]) for c in present]))
    return {k: float(v) for k, v in out.items()}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    pearson = pearsonr(y_true, y_pred).statistic if np.std(y_pred) > 0 and np.std(y_true) > 0 else float("nan")
    return {"rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))), "r2": float(r2_score(y_true, y_pred)),
            "pearson": float(pearson)}
