"""What kind of target a dataset has, and what follows from it: how a model is asked, how it is scored.

One :class:`Task` per kind, in ``TASKS``; the harness, the few-shot protocol and the leaderboard look
the dataset's task up here instead of branching on it:

- ``classification``: ``y`` are class ids; a model answers ``predict_proba(x)`` (N, n_classes);
  balanced accuracy, κ, weighted F1, AUROC, AUPRC; ranked by balanced accuracy; few-shot draws
  ``k`` windows per class.
- ``regression``: ``y`` are float targets (SEED-VIG's PERCLOS); a model answers ``predict(x)`` (N,);
  RMSE, R², Pearson r; ranked by R² (it penalises both a bad fit and a biased offset, which Pearson
  ignores, and is 0 for predicting the test mean); few-shot draws ``k`` windows of the subject at
  random (there is no class to stratify on).

A model states what it can do in ``tasks`` (default: classification only); :func:`check_supports`
refuses a model asked for a task it does not do, with the models that do it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS, classification_metrics, regression_metrics

DEFAULT_TASK = "classification"  # datasets prepared before index.json recorded a task, and models without ``tasks``


@dataclass(frozen=True)
class Task:
    name: str
    metrics: tuple[str, ...]  # what ``score`` returns
    primary: str  # the leaderboard ranks by this (higher is better)
    predict: Callable[[Any, np.ndarray], np.ndarray]  # (model, x (N, C, T)) -> predictions
    score: Callable[[np.ndarray, np.ndarray], dict[str, float]]  # (y_true, predictions) -> metrics
    shot_pools: Callable[[np.ndarray, np.ndarray, int], list[np.ndarray] | None]  # few-shot, below


def _per_class(own: np.ndarray, y: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """Classification few-shot: draw k windows from each class of the subject."""
    return [own[y[own] == c] for c in range(n_classes)]


def _whole_subject(own: np.ndarray, y: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """Regression few-shot: draw k windows from all of the subject's windows."""
    return [own]


TASKS: dict[str, Task] = {
    "classification": Task("classification", CLASSIFICATION_METRICS, "balanced_accuracy",
                           lambda model, x: model.predict_proba(x), classification_metrics, _per_class),
    "regression": Task("regression", REGRESSION_METRICS, "r2",
                       lambda model, x: np.asarray(model.predict(x), float).reshape(len(x)), regression_metrics,
                       _whole_subject),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"task {name!r} is not one of {sorted(TASKS)}")
    return TASKS[name]


def model_tasks(model: Any) -> tuple[str, ...]:
    return tuple(getattr(model, "tasks", (DEFAULT_TASK,)))


def check_supports(model: Any, task: str, dataset: str) -> None:
    """Raise ``ValueError`` unless ``model`` (an EvalModel) does ``task``."""
    if task in model_tasks(model):
        return
    from .models import MODEL_TASKS

    able = sorted(name for name, tasks in MODEL_TASKS.items() if task in tasks)
    raise ValueError(f"{model.model_id} does {list(model_tasks(model))} only, but {dataset} is a {task} dataset; "
                     f"models that do {task}: {able or 'none registered'}"
                     + ("; our backbone does regression with adapt=linear and settings.probe=ridge"
                        if task == "regression" else ""))
