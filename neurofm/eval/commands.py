"""``neurofm bench`` and ``neurofm leaderboard``: typed functions the CLI maps to subcommands."""

from __future__ import annotations

import sys
from pathlib import Path

from .leaderboard import LeaderboardError, load_valid_rows, rank, render, validate_rows
from .results import read_rows


def bench(
    *,
    model: str,
    dataset: str,
    protocol: str = "loso",
    adapt: str = "scratch",
    seeds: list[int] = [0, 1, 2],  # noqa: B006 - jsonargparse shows the default; never mutated
    ks: list[int] = [1, 5, 10, 20],  # noqa: B006
    out: str = "runs/bench",
    part: str | None = None,
    weights: str | None = None,
    options: dict | None = None,
    classes: list[str] | None = None,
    progress: bool = True,
) -> int:
    """Run a model on a prepared dataset under a protocol; append one JSON line per fold × seed (resumable).

    Args:
        model: a registered model (csp_lda, ts_lr, ...).
        dataset: a prepared dataset: its index.json or folder (neurofm prepare NAME --out runs/shards/NAME).
        protocol: loso (leave one subject out), fewshot (k per class within a subject), cross_session,
            loro (leave one run out within a subject; validation from the other runs).
        adapt: scratch (trained from scratch), linear (frozen backbone, linear probe), finetune.
        seeds: one result row per fold and seed.
        ks: labelled windows per class for fewshot.
        out: results folder (results.jsonl, or results.part-i-of-n.jsonl with --part).
        part: i/n to run only the i-th of n deterministic slices of the folds (cluster arrays).
        weights: for --model neurofm: a save_pretrained folder (neurofm export / pretrain output) or hub id.
        options: model options as JSON, e.g. '{"preset": "tiny", "settings": {"max_epochs": 20}}'.
        classes: evaluate only the windows of these classes (e.g. '[both_fists, feet]'); the selection
            becomes part of the dataset name in the results.
        progress: show a progress bar.
    """
    from .harness import run_benchmark, summarize

    index = Path(dataset)
    if not (index / "index.json").is_file() and not index.is_file():
        raise FileNotFoundError(f"{dataset}: no prepared dataset there (index.json); prepare it first: "
                                f"neurofm prepare <manifest> --out {dataset}")
    protocol_options = {"ks": tuple(ks)} if protocol == "fewshot" else {}
    model_options = {**(options or {}), **({"weights": weights} if weights else {})}
    summary = run_benchmark(model, index, protocol, adapt, tuple(seeds), out, part, progress,
                            model_options=model_options, classes=tuple(classes) if classes else None,
                            **protocol_options)
    print(f"{summary.n_done} fold(s) run, {summary.n_skipped} already done → {summary.results}")
    if summary.rows:
        from .tasks import DEFAULT_TASK, get_task

        metric = get_task(summary.rows[0].get("task", DEFAULT_TASK)).primary
        s = summarize(summary.rows, metric)
        print(f"{metric} {s['mean']:.3f} ± {s['std']:.3f} over {s['n']} fold(s) × seed(s)")
    return 0


def leaderboard_show(results: str, *, format: str = "md", metric: str | None = None,
                     png: str | None = None) -> int:
    """Rank models per dataset × protocol × adaptation (mean ± std over folds × seeds, n).

    Args:
        results: a results .jsonl file or a folder of them (e.g. the parts of a cluster run).
        format: md, csv or html.
        metric: the metric to rank by; default: each dataset's task's (balanced_accuracy, regression: r2).
        png: folder to write adaptation.png (bars) and fewshot.png (score vs k) into.
    """
    try:
        entries = rank(load_valid_rows(results), metric)
        text = render(entries, format, metric)
    except LeaderboardError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(text, end="")
    if png:
        from .plots import plot_adaptation_bars, plot_fewshot_curves

        Path(png).mkdir(parents=True, exist_ok=True)
        for made in (plot_adaptation_bars(entries, Path(png) / "adaptation.png", metric or "score"),
                     plot_fewshot_curves(entries, Path(png) / "fewshot.png", metric or "score")):
            if made:
                print(f"wrote {made}", file=sys.stderr)
    return 0


def leaderboard_validate(file: str) -> int:
    """Check result rows: malformed rows, non-finite metrics, duplicates, mixed data hashes, incomplete folds.

    Args:
        file: a results .jsonl file or a folder of them.
    """
    try:
        rows = read_rows(file)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    problems = validate_rows(rows) if rows else [f"{file}: no result rows"]
    if problems:
        print(f"{file}: {len(problems)} problem(s)", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"{file}: {len(rows)} rows, valid")
    return 0
