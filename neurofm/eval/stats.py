"""Paired comparison of two models across subjects (Wilcoxon signed-rank on per-subject means)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import wilcoxon


@dataclass(frozen=True)
class Comparison:
    dataset: str
    protocol: str
    adapt_a: str
    adapt_b: str
    k: int | None
    model_a: str
    model_b: str
    n_subjects: int  # subjects both models have results for
    mean_difference: float  # a − b, mean over subjects (each a mean over seeds)
    statistic: float
    p_value: float  # two-sided; NaN with fewer than 2 subjects or all differences 0


def _subject_means(rows: list[dict[str, Any]], metric: str) -> dict[tuple, dict[str, float]]:
    per: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        per[(r["dataset"], r["protocol"], r.get("k"))][r["subject"]].append(r["metrics"][metric])
    return {g: {s: float(np.mean(v)) for s, v in subjects.items()} for g, subjects in per.items()}


def paired_wilcoxon(rows: list[dict[str, Any]], model_a: str, model_b: str,
                    metric: str = "balanced_accuracy") -> list[Comparison]:
    """One comparison per dataset × protocol × k where both models have results (any adaptation each).

    ``model`` may be ``name`` or ``name@adapt`` to pick one adaptation (e.g. ``neurofm@linear``); the
    name is the model's, or its leaderboard label when rows hold several configurations under one name
    (``neurofm (options.preset=small)@linear``, ``leaderboard.model_labels``).
    """
    from .leaderboard import label_of, model_labels

    labels = model_labels(rows)

    def pick(spec: str) -> tuple[list[dict], str]:
        name, _, adapt = spec.rpartition("@") if "@" in spec else (spec, "", "")
        chosen = [r for r in rows if name in (r["model"], label_of(labels, r)) and (not adapt or r["adapt"] == adapt)]
        adapts = sorted({r["adapt"] for r in chosen})
        if len(adapts) > 1:
            raise ValueError(f"{name} has results for several adaptations {adapts}: say which, e.g. {name}@{adapts[0]}")
        configs = sorted({label_of(labels, r) for r in chosen})
        if len(configs) > 1:
            raise ValueError(f"{name} has results for several configurations {configs}: name one of them")
        return chosen, adapts[0] if adapts else adapt

    rows_a, adapt_a = pick(model_a)
    rows_b, adapt_b = pick(model_b)
    means_a, means_b = _subject_means(rows_a, metric), _subject_means(rows_b, metric)
    out = []
    for group in sorted(set(means_a) & set(means_b), key=str):
        subjects = sorted(set(means_a[group]) & set(means_b[group]))
        diff = np.array([means_a[group][s] - means_b[group][s] for s in subjects])
        if len(diff) >= 2 and np.any(diff != 0):
            res = wilcoxon(diff)
            stat, p = float(res.statistic), float(res.pvalue)
        else:
            stat, p = float("nan"), float("nan")
        dataset, protocol, k = group
        out.append(Comparison(dataset, protocol, adapt_a, adapt_b, k, model_a, model_b, len(subjects),
                              float(diff.mean()) if len(diff) else float("nan"), stat, p))
    return out
