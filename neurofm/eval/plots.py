"""PNG plots of a leaderboard: adaptation bars per dataset and model, few-shot curves (score vs k)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from .leaderboard import Entry


def plot_adaptation_bars(entries: list[Entry], path: str | Path, metric: str = "balanced_accuracy") -> Path | None:
    """Bars (mean ± std) per model, one colour per adaptation (scratch / linear / finetune), a panel per
    dataset × protocol (few-shot rows are left to the curves). None when there is nothing to draw."""
    import matplotlib.pyplot as plt

    chosen = [e for e in entries if e.k is None]
    panels = sorted({(e.dataset, e.protocol) for e in chosen})
    if not panels:
        return None
    adapts = [a for a in ("scratch", "linear", "finetune") if any(e.adapt == a for e in chosen)]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(4.5, 2.2 + 1.4 * _max_models(chosen)) * len(panels), 4),
                             squeeze=False)
    for ax, (dataset, protocol) in zip(axes[0], panels):
        mine = [e for e in chosen if (e.dataset, e.protocol) == (dataset, protocol)]
        models = sorted({e.model for e in mine})
        width = 0.8 / len(adapts)
        for j, adapt in enumerate(adapts):
            got = {e.model: e for e in mine if e.adapt == adapt}
            xs = [i + (j - (len(adapts) - 1) / 2) * width for i, m in enumerate(models) if m in got]
            ax.bar(xs, [got[m].mean for m in models if m in got], width, yerr=[got[m].std for m in models if m in got],
                   capsize=3, label=adapt)
        oracles = [e.oracle for e in mine if e.oracle is not None]
        if oracles:  # synthetic data: the generator's ceiling
            ax.axhline(float(np.mean(oracles)), color="k", ls="--", lw=1, label="oracle")
        ax.set_xticks(range(len(models)), models, rotation=20, ha="right")
        ax.set_title(f"{dataset} · {protocol}")
        ax.set_ylabel(metric)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def _max_models(entries: list[Entry]) -> int:
    counts: dict[tuple, set] = defaultdict(set)
    for e in entries:
        counts[(e.dataset, e.protocol)].add(e.model)
    return max(len(v) for v in counts.values())


def plot_fewshot_curves(entries: list[Entry], path: str | Path, metric: str = "balanced_accuracy") -> Path | None:
    """Score vs k (shots per class) per model and adaptation, a panel per dataset; None without few-shot rows."""
    import matplotlib.pyplot as plt

    shots = [e for e in entries if e.k is not None]
    datasets = sorted({e.dataset for e in shots})
    if not datasets:
        return None
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        lines: dict[tuple, list[Entry]] = defaultdict(list)
        for e in shots:
            if e.dataset == dataset:
                lines[(e.model, e.adapt)].append(e)
        for (model, adapt), points in sorted(lines.items()):
            points.sort(key=lambda e: e.k)
            k = np.array([e.k for e in points])
            mean, std = np.array([e.mean for e in points]), np.array([e.std for e in points])
            ax.plot(k, mean, marker="o", label=f"{model} ({adapt})")
            ax.fill_between(k, mean - std, mean + std, alpha=0.15)
        ax.set_xscale("log")
        ax.set_xlabel("labelled windows per class (k)")
        ax.set_ylabel(metric)
        ax.set_title(f"{dataset} · few-shot")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
