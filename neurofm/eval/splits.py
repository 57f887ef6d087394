"""Evaluation protocols as folds of window indices, leakage-proof by construction.

A :class:`Fold` holds three disjoint index sets. The harness hands a model only ``train`` and
``val`` (for fitting, normalisation statistics, early stopping and model selection) and shows it
``test`` only to predict, after fitting is over (``harness.py``). The rules per protocol:

- ``loso``: each subject is the test set once; ``val`` is drawn from the *training subjects* (whole
  subjects, chosen with the seed), never from the test subject.
- ``fewshot``: within one subject, ``k`` labelled windows per class drawn with the seed are the
  training set; all other windows of that subject are the test set. ``val`` is empty: with k shots
  there is nothing left to select on, so models use fixed settings (or an inner split of the shots).
  Regression datasets have no class: ``k`` windows of the subject, drawn with the seed (``tasks.py``).
- ``cross_session``: within one subject, the first session trains (``val``: a seeded 20% of it),
  every later session is tested.
- ``loro`` (leave one run out): within one subject, each run (a session's run) is the test set once;
  ``val`` is drawn from the *other runs* (whole runs, chosen with the seed; a seeded 20% of their
  windows when there are fewer than three other runs), never from the test run.

:func:`check_fold` verifies these invariants on every fold before it is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .data import EvalData, natural_key
from .tasks import get_task

PROTOCOLS: dict[str, Callable[..., Iterator[Fold]]] = {}


class LeakageError(AssertionError):
    """A fold whose training or selection data touch its test data."""


@dataclass(frozen=True)
class Fold:
    protocol: str
    test_subject: str
    seed: int
    train: np.ndarray = field(repr=False)  # window indices
    val: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)
    k: int | None = None  # shots per class (fewshot)
    test_session: str | None = None
    test_run: str | None = None  # loro: the run tested (within test_session)

    @property
    def fold_id(self) -> str:
        parts = [self.protocol, f"subject={self.test_subject}", f"seed={self.seed}"]
        if self.k is not None:
            parts.append(f"k={self.k}")
        if self.test_session is not None:
            parts.append(f"session={self.test_session}")
        if self.test_run is not None:
            parts.append(f"run={self.test_run}")
        return "/".join(parts)


def register_protocol(name: str) -> Callable:
    def deco(fn: Callable[..., Iterator[Fold]]) -> Callable[..., Iterator[Fold]]:
        PROTOCOLS[name] = fn
        return fn
    return deco


def _rng(seed: int, *salt: object) -> np.random.Generator:
    """A generator per (seed, fold): folds are reproducible alone, whatever else runs."""
    text = "/".join(map(str, salt))
    return np.random.default_rng([seed, *text.encode()])


@register_protocol("loso")
def loso_folds(data: EvalData, seed: int, n_val_subjects: int | None = None, **_: object) -> Iterator[Fold]:
    """Leave one subject out; validation = ``n_val_subjects`` whole training subjects (default ~20%, at least 1)."""
    subjects = data.subjects
    if len(subjects) < 3:
        raise ValueError(f"{data.dataset}: LOSO needs >= 3 subjects (test, validation, training); has {subjects}")
    n_val = n_val_subjects or max(1, round(0.2 * (len(subjects) - 1)))
    for test_subject in subjects:
        others = [s for s in subjects if s != test_subject]
        val_subjects = set(_rng(seed, "loso", test_subject).choice(others, size=n_val, replace=False).tolist())
        is_test = data.subject == test_subject
        is_val = np.isin(data.subject, list(val_subjects))
        yield Fold("loso", test_subject, seed, train=np.flatnonzero(~is_test & ~is_val),
                   val=np.flatnonzero(is_val), test=np.flatnonzero(is_test))


@register_protocol("fewshot")
def fewshot_folds(data: EvalData, seed: int, ks: tuple[int, ...] = (1, 5, 10, 20), **_: object) -> Iterator[Fold]:
    """Per subject and k: k windows per class (regression: k windows) train, the rest of the subject
    tests (skipped if too few)."""
    pools = get_task(data.task).shot_pools
    for subject in data.subjects:
        own = np.flatnonzero(data.subject == subject)
        for k in ks:
            rng = _rng(seed, "fewshot", subject, k)
            shots = []
            for of_class in pools(own, data.y, data.n_classes):
                if len(of_class) <= k:  # k shots and at least one window left to test
                    shots = None
                    break
                shots.append(rng.choice(of_class, size=k, replace=False))
            if shots is None:
                continue
            train = np.sort(np.concatenate(shots))
            yield Fold("fewshot", subject, seed, train=train, val=np.array([], dtype=np.int64),
                       test=np.setdiff1d(own, train), k=k)


@register_protocol("cross_session")
def cross_session_folds(data: EvalData, seed: int, val_fraction: float = 0.2, **_: object) -> Iterator[Fold]:
    """Per subject with >= 2 sessions: the first session trains (a seeded part validates), each later one tests."""
    for subject in data.subjects:
        own = np.flatnonzero(data.subject == subject)
        sessions = sorted(set(data.session[own].tolist()), key=lambda s: (len(s), s))
        if len(sessions) < 2:
            continue
        first = own[data.session[own] == sessions[0]]
        rng = _rng(seed, "cross_session", subject)
        n_val = max(1, int(round(val_fraction * len(first))))
        val = np.sort(rng.choice(first, size=n_val, replace=False))
        train = np.setdiff1d(first, val)
        for session in sessions[1:]:
            yield Fold("cross_session", subject, seed, train=train, val=val,
                       test=own[data.session[own] == session], test_session=session)


# Other runs needed before whole runs validate (PhysioNet MI: 3 runs per task; whole-run validation
# would leave one run of 15 windows to train on).
_MIN_RUNS_FOR_WHOLE_RUN_VAL = 3


@register_protocol("loro")
def leave_one_run_out_folds(data: EvalData, seed: int, n_val_runs: int | None = None, val_fraction: float = 0.2,
                            **_: object) -> Iterator[Fold]:
    """Per subject with >= 2 runs: each (session, run) tests once; validation from the other runs only.

    Validation: ``n_val_runs`` whole other runs (default ~20% of them, at least 1), seeded; a seeded
    ``val_fraction`` of the other runs' windows instead when there are fewer than 3 other runs (and no
    ``n_val_runs``), or when ``n_val_runs`` would leave no run to train on.
    """
    for subject in data.subjects:
        own = np.flatnonzero(data.subject == subject)
        pairs = list(zip(data.session[own].tolist(), data.run[own].tolist()))  # (session, run) per window
        runs = sorted(set(pairs), key=lambda r: (natural_key(r[0]), natural_key(r[1])))
        if len(runs) < 2:
            continue
        number = {r: i for i, r in enumerate(runs)}
        run_id = np.array([number[p] for p in pairs])  # (n_own,) position of each window's run in `runs`
        for i, (session, run) in enumerate(runs):
            is_test = run_id == i
            others = [j for j in range(len(runs)) if j != i]
            rng = _rng(seed, "loro", subject, session, run)
            n_val = n_val_runs or max(1, round(0.2 * len(others)))
            if n_val < len(others) and (n_val_runs or len(others) >= _MIN_RUNS_FOR_WHOLE_RUN_VAL):
                is_val = np.isin(run_id, rng.choice(others, size=n_val, replace=False))
            else:  # few runs: whole ones would leave too little to train on, so part of their windows validate
                rest = np.flatnonzero(~is_test)
                is_val = np.zeros(len(own), bool)
                is_val[rng.choice(rest, size=max(1, int(round(val_fraction * len(rest)))), replace=False)] = True
            yield Fold("loro", subject, seed, train=own[~is_test & ~is_val], val=own[is_val], test=own[is_test],
                       test_session=session, test_run=run)


def make_folds(data: EvalData, protocol: str, seeds: tuple[int, ...], **options: object) -> list[Fold]:
    """Every fold of ``protocol`` for every seed, each checked by :func:`check_fold`."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of {sorted(PROTOCOLS)}")
    folds = [f for seed in seeds for f in PROTOCOLS[protocol](data, seed, **options)]
    if not folds:
        raise ValueError(f"{data.dataset}: protocol {protocol} gives no fold (sessions: "
                         f"{sorted(set(data.session.tolist()))}, subjects: {data.subjects})")
    for fold in folds:
        check_fold(fold, data)
    return folds


def check_fold(fold: Fold, data: EvalData) -> None:
    """Raise :class:`LeakageError` unless train, val and test are disjoint and respect the protocol."""
    train, val, test = (set(a.tolist()) for a in (fold.train, fold.val, fold.test))
    if train & test or val & test or train & val:
        raise LeakageError(f"{fold.fold_id}: train/val/test share windows")
    if not fold.train.size or not fold.test.size:
        raise LeakageError(f"{fold.fold_id}: empty train or test set")
    test_subjects = set(data.subject[fold.test].tolist())
    if test_subjects != {fold.test_subject}:
        raise LeakageError(f"{fold.fold_id}: test windows of subjects {sorted(test_subjects)}")
    fit = np.concatenate([fold.train, fold.val]).astype(np.int64)  # everything a model is fitted or selected on
    fit_subjects = set(data.subject[fit].tolist())
    if fold.protocol == "loso" and fold.test_subject in fit_subjects:
        raise LeakageError(f"{fold.fold_id}: the test subject is in the training or validation data")
    if fold.protocol != "loso" and fit_subjects != {fold.test_subject}:
        raise LeakageError(f"{fold.fold_id}: within-subject training data from {sorted(fit_subjects)}")
    if fold.protocol == "cross_session" and set(data.session[fold.test].tolist()) & set(data.session[fit].tolist()):
        raise LeakageError(f"{fold.fold_id}: a test session is also trained on")
    if fold.protocol == "loro":
        test_runs = set(zip(data.session[fold.test].tolist(), data.run[fold.test].tolist()))
        if test_runs != {(fold.test_session, fold.test_run)}:
            raise LeakageError(f"{fold.fold_id}: test windows of runs {sorted(test_runs)}")
        if (fold.test_session, fold.test_run) in set(zip(data.session[fit].tolist(), data.run[fit].tolist())):
            raise LeakageError(f"{fold.fold_id}: the test run is in the training or validation data")
