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
- ``seizure``: a classification of fixed windows (background / seizure) whose score adds SzCORE event
  metrics (``seizure.py``): per test recording, consecutive windows with P(seizure) > 0.5 become
  predicted events and consecutive seizure-labelled windows the reference events; sensitivity,
  precision, F1 and false positives per 24 h, counts summed over the fold's recordings. Ranked by
  the event F1 (a window-wise score rewards fragmented detections, each of which would be a false
  alarm); balanced accuracy, event sensitivity, precision and FP/24 h are shown alongside. A model
  needs only to classify (``asks``), so every classification model runs on a seizure dataset.

A model states what it can do in ``tasks`` (default: classification only); :func:`check_supports`
refuses a model asked for a task it does not do, with the models that do it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import EvalData
from .metrics import classification_metrics, regression_metrics
from .seizure import SeizureScore, score_windows

DEFAULT_TASK = "classification"  # datasets prepared before index.json recorded a task, and models without ``tasks``


@dataclass(frozen=True)
class Task:
    name: str
    primary: str  # the leaderboard ranks by this (higher is better)
    predict: Callable[[Any, np.ndarray], np.ndarray]  # (model, x (N, C, T)) -> predictions
    # (the test windows with their labels, onsets and recordings; predictions) -> metrics
    score: Callable[[EvalData, np.ndarray], dict[str, float]]
    shot_pools: Callable[[np.ndarray, np.ndarray, int], list[np.ndarray] | None]  # few-shot, below
    alongside: tuple[str, ...] = ()  # metrics the leaderboard shows next to the primary one
    asks: str = ""  # what a model must do (its ``tasks``); "" = this task's name

    @property
    def model_task(self) -> str:
        return self.asks or self.name


def _per_class(own: np.ndarray, y: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """Classification few-shot: draw k windows from each class of the subject."""
    return [own[y[own] == c] for c in range(n_classes)]


def _whole_subject(own: np.ndarray, y: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """Regression few-shot: draw k windows from all of the subject's windows."""
    return [own]


SEIZURE_METRICS = ("sz_sensitivity", "sz_precision", "sz_f1", "sz_fp_per_24h")
SEIZURE_THRESHOLD = 0.5  # P(seizure) above which a window is a detection (SzCORE scores hard decisions)


def seizure_metrics(test: EvalData, proba: np.ndarray) -> dict[str, float]:
    """Window metrics of ``proba`` (N, n_classes) plus the SzCORE event metrics of its seizure column."""
    return {**classification_metrics(test.y, proba), **seizure_score(test, proba).as_metrics()}


def seizure_score(test: EvalData, proba: np.ndarray) -> SeizureScore:
    if test.onset is None or not np.all(np.isfinite(test.onset)):
        raise ValueError(f"{test.dataset}: event scoring needs each window's onset (window .json 'onset')")
    k = test.classes.index("seizure")
    return score_windows(test.recording, test.onset, test.y == k, np.asarray(proba)[:, k] > SEIZURE_THRESHOLD,
                         test.window_s)


def _predict_proba(model: Any, x: np.ndarray) -> np.ndarray:
    return model.predict_proba(x)


TASKS: dict[str, Task] = {
    "classification": Task("classification", "balanced_accuracy", _predict_proba,
                           lambda test, proba: classification_metrics(test.y, proba), _per_class),
    "regression": Task("regression", "r2",
                       lambda model, x: np.asarray(model.predict(x), float).reshape(len(x)),
                       lambda test, pred: regression_metrics(test.y, pred), _whole_subject,
                       alongside=("rmse", "pearson")),
    "seizure": Task("seizure", "sz_f1", _predict_proba, seizure_metrics,
                    _per_class, alongside=("balanced_accuracy", "sz_sensitivity", "sz_precision", "sz_fp_per_24h"),
                    asks="classification"),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"task {name!r} is not one of {sorted(TASKS)}")
    return TASKS[name]


def model_tasks(model: Any) -> tuple[str, ...]:
    return tuple(getattr(model, "tasks", (DEFAULT_TASK,)))


def check_supports(model: Any, task: str, dataset: str) -> None:
    """Raise ``ValueError`` unless ``model`` (an EvalModel) does what ``task`` asks of it."""
    task = get_task(task).model_task if task in TASKS else task
    if task in model_tasks(model):
        return
    from .models import MODEL_TASKS

    able = sorted(name for name, tasks in MODEL_TASKS.items() if task in tasks)
    raise ValueError(f"{model.model_id} does {list(model_tasks(model))} only, but {dataset} is a {task} dataset; "
                     f"models that do {task}: {able or 'none registered'}"
                     + ("; our backbone does regression with adapt=linear (a ridge probe on its features)"
                        if task == "regression" else ""))
