"""Leaderboard: validate result rows, rank models per dataset × protocol × adaptation, plot.

``validate_rows`` refuses what would make a table misleading: malformed rows, non-finite metrics,
duplicated experiments, one (dataset, protocol) measured on different data (hashes), and
incomplete folds (a model × seed that lacks some subjects of its dataset).

A model is its name *and* its configuration (``model_config_sha256``): rows of one name with
different configurations (``neurofm`` at the tiny and the small preset, ``ts_lr`` with C = 1 and C by
validation) are ranked as separate models, named by the config fields that tell them apart
(``model_labels``), never averaged together.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .results import REQUIRED, ROW_FORMAT, is_finite_metrics, read_rows, row_key

FORMATS = ("md", "csv", "html")


class LeaderboardError(ValueError):
    """Rows that cannot make a trustworthy table; the message lists every problem with its line."""


@dataclass(frozen=True)
class Entry:
    dataset: str
    protocol: str
    adapt: str
    k: int | None
    model: str
    mean: float
    std: float
    n: int  # folds × seeds
    n_subjects: int
    n_seeds: int
    rank: int
    oracle: float | None = None  # synthetic data: mean oracle over the same folds, in ``metric`` (the primary one)
    metric: str = "balanced_accuracy"  # what mean/std are of (the task's primary metric unless asked)
    others: tuple[tuple[str, float], ...] = ()  # means of the task's ``alongside`` metrics (regression: rmse, pearson)


def validate_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Every problem found (empty when the rows are fine)."""
    problems = []
    for row in rows:
        where = row.get("_source", "?")
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            problems.append(f"{where}: malformed row, missing {missing}")
        elif row["format"] != ROW_FORMAT:
            problems.append(f"{where}: format {row['format']!r}, expected {ROW_FORMAT!r}")
        elif not isinstance(row["metrics"], dict) or not row["metrics"]:
            problems.append(f"{where}: metrics must be a non-empty object")
        elif not is_finite_metrics(row["metrics"]):
            bad = {k: v for k, v in row["metrics"].items() if not (isinstance(v, (int, float)) and math.isfinite(v))}
            problems.append(f"{where}: non-finite metrics {bad}")
    if problems:
        return problems
    seen: dict[tuple, str] = {}
    for row in rows:
        key = row_key(row)
        if key in seen:
            problems.append(f"{row['_source']}: duplicate of {seen[key]} ({row['model']}, {row['fold_id']})")
        seen[key] = row["_source"]
    hashes: dict[tuple, set] = defaultdict(set)
    for row in rows:
        hashes[(row["dataset"], row["protocol"])].add(row["data_hash"])
    problems += [f"{d} / {p}: rows from different data (hashes {sorted(h)}); re-run on one preparation"
                 for (d, p), h in hashes.items() if len(h) > 1]
    problems += _incomplete(rows)
    return problems


def model_labels(rows: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """``(model, model_config_sha256)`` → the name tables show: the model's name, followed, when rows
    hold several configurations under that name, by the config fields whose values tell them apart
    (``neurofm (options.preset=small)``; ``adapt`` has its own column and is left out)."""
    configs: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)  # name -> sha -> flat config
    for row in rows:
        configs[row["model"]].setdefault(row.get("model_config_sha256", ""), _flat(row.get("config") or {}))
    labels = {}
    for model, by_sha in configs.items():
        keys = sorted({k for flat in by_sha.values() for k in flat} - {"adapt"})
        differ = [k for k in keys if len({flat.get(k, "-") for flat in by_sha.values()}) > 1]
        for sha, flat in by_sha.items():
            detail = ", ".join(f"{k}={flat.get(k, '-')}" for k in differ)
            if not detail and sum(f.get("adapt") == flat.get("adapt") for f in by_sha.values()) > 1:
                detail = f"config {sha[:8]}"  # differences the config does not show (rows of another version)
            labels[(model, sha)] = f"{model} ({detail})" if detail else model
    return labels


def label_of(labels: dict[tuple[str, str], str], row: dict[str, Any]) -> str:
    """A row's model as ``model_labels`` names it."""
    return labels[(row["model"], row.get("model_config_sha256", ""))]


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"options": {"preset": "small"}} → {"options.preset": "small"} (values as compact JSON, strings bare)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return out


def _incomplete(rows: list[dict[str, Any]]) -> list[str]:
    """A model × seed (× k) must cover every subject its dataset × protocol has in any row."""
    labels = model_labels(rows)
    subjects: dict[tuple, set] = defaultdict(set)
    covered: dict[tuple, set] = defaultdict(set)
    for row in rows:
        model = label_of(labels, row)
        subjects[(row["dataset"], row["protocol"])].add(row["subject"])
        covered[(row["dataset"], row["protocol"], row["adapt"], row.get("k"), model, row["seed"])].add(row["subject"])
    out = []
    for (dataset, protocol, adapt, k, model, seed), have in sorted(covered.items(), key=str):
        lacking = subjects[(dataset, protocol)] - have
        if lacking:
            out.append(f"{model} on {dataset} / {protocol} / {adapt}{'' if k is None else f' / k={k}'} / seed {seed}: "
                       f"incomplete folds, no result for subject(s) {sorted(lacking)}")
    return out


def load_valid_rows(path: str | Path) -> list[dict[str, Any]]:
    rows = read_rows(path)
    if not rows:
        raise LeaderboardError(f"{path}: no result rows")
    problems = validate_rows(rows)
    if problems:
        raise LeaderboardError(f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return rows


def rank(rows: list[dict[str, Any]], metric: str | None = None) -> list[Entry]:
    """Mean ± std over folds and seeds per (dataset, protocol, adapt, k, model), ranked within each group;
    a model is a name and a configuration (``model_labels``).

    ``metric``: None ranks each row by its task's primary metric (``tasks.py``: balanced accuracy for
    classification, R² for regression, event F1 for seizure detection), so one table holds every kind
    of dataset.
    """
    from .tasks import DEFAULT_TASK, get_task

    labels = model_labels(rows)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        task = get_task(row.get("task", DEFAULT_TASK))
        name = metric or task.primary
        if name not in row["metrics"]:
            raise LeaderboardError(f"{row['_source']}: no metric {name!r} (has {sorted(row['metrics'])})")
        model = label_of(labels, row)
        groups[(row["dataset"], row["protocol"], row["adapt"], row.get("k"), model, name, task.name)].append(row)
    entries = []
    for (dataset, protocol, adapt, k, model, name, task), group in groups.items():
        values = np.array([r["metrics"][name] for r in group], dtype=float)
        others = tuple((m, float(np.mean([r["metrics"][m] for r in group]))) for m in get_task(task).alongside
                       if m != name and all(m in r["metrics"] for r in group))
        entries.append(dict(dataset=dataset, protocol=protocol, adapt=adapt, k=k, model=model,
                            mean=float(values.mean()), std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                            n=len(values), n_subjects=len({r["subject"] for r in group}),
                            n_seeds=len({r["seed"] for r in group}), oracle=_mean_oracle(group, name, task),
                            metric=name,
                            others=others))
    entries.sort(key=lambda e: (e["dataset"], e["protocol"], e["adapt"], e["k"] or 0, -e["mean"]))
    ranked, last_group, r = [], None, 0
    for e in entries:
        group = (e["dataset"], e["protocol"], e["adapt"], e["k"])
        r = 1 if group != last_group else r + 1
        last_group = group
        ranked.append(Entry(**e, rank=r))
    return ranked


def _mean_oracle(group: list[dict[str, Any]], metric: str, task: str) -> float | None:
    """Mean oracle over the group's folds; None unless every fold has one and the table ranks by the task's
    primary metric, the one the oracle is scored in (``oracle.py``: balanced accuracy, R² for regression)."""
    from .tasks import get_task

    values = [r.get("oracle") for r in group]
    if metric != get_task(task).primary or any(v is None for v in values):
        return None
    return float(np.mean(values))


COLUMNS = ("dataset", "protocol", "adapt", "k", "rank", "model", "score", "n", "subjects", "seeds", "oracle (gap)")


def _cells(e: Entry) -> list[str]:
    oracle = "" if e.oracle is None else f"{e.oracle:.3f} ({e.oracle - e.mean:+.3f})"
    return [e.dataset, e.protocol, e.adapt, "" if e.k is None else str(e.k), str(e.rank), e.model,
            _score(e), str(e.n), str(e.n_subjects), str(e.n_seeds), oracle]


def _score(e: Entry) -> str:
    """``0.512 ± 0.100``; with the metric's name when the table mixes metrics, the other metrics' means after."""
    text = f"{e.mean:.3f} ± {e.std:.3f}"
    if e.others:
        text = f"{e.metric} {text} · " + " · ".join(f"{m} {v:.3f}" for m, v in e.others)
    return text


def render(entries: list[Entry], fmt: str = "md", metric: str | None = None) -> str:
    if fmt not in FORMATS:
        raise LeaderboardError(f"format {fmt!r} is not one of {FORMATS}")
    metrics = {e.metric for e in entries}
    shown = metric or (metrics.pop() if len(metrics) == 1 else "score")
    header = [c if c != "score" else f"{shown} (mean ± std)" for c in COLUMNS]
    rows = [_cells(e) for e in entries]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow([*COLUMNS[:6], "mean", "std", *COLUMNS[7:10], "oracle"])
        writer.writerows([[*c[:6], f"{e.mean:.6f}", f"{e.std:.6f}", *c[7:10], "" if e.oracle is None else
                           f"{e.oracle:.6f}"] for c, e in zip(rows, entries)])
        return buf.getvalue()
    if fmt == "html":
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody>\n</table>\n"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"
