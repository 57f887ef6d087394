"""The built-in default job (`make demo`): synthetic multi-subject motor imagery → shards → evaluation.

Stages: prepare the default dataset, load a batch, then benchmark classical baselines and our
backbone (linear probe) leave-one-subject-out, and print the leaderboard with the oracle ceiling.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

DEFAULT_MANIFEST = "synthetic_mi"


def quickstart(out: str = "runs/quickstart", workers: int = 2, progress: bool = True) -> int:
    from .pipelines.inspect import plot_index
    from .pipelines.loader import ShardDataModule
    from .pipelines.manifest import load_manifest, resolve_manifest
    from .pipelines.prepare import prepare
    from .pipelines.summary import print_summary
    from .pipelines.synthetic import SyntheticConfig, oracle_score

    console = Console()
    manifest = load_manifest(resolve_manifest(DEFAULT_MANIFEST))
    shards = Path(out) / "shards" / manifest.name
    console.rule(f"[bold]prepare {manifest.name} → {shards}")
    summary = prepare(str(manifest.path), str(shards), workers=workers, progress=progress)
    print_summary(summary, console)
    console.rule("[bold]load a batch")
    dm = ShardDataModule([summary.index], batch_size=16, seed=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    console.print(f"batch x {tuple(batch.x.shape)} (batch, channels, samples), "
                  f"labels {batch.label.tolist()}")
    figure = plot_index(summary.index, Path(out) / f"{manifest.name}.png")
    console.print(f"figure of the prepared dataset (windows, spectra, subjects, channels): {figure}", soft_wrap=True)
    oracle = oracle_score(SyntheticConfig(**manifest.source.generator))
    console.print(f"oracle balanced accuracy on the generating features (LOSO): {oracle.balanced_accuracy:.3f} "
                  f"(chance {oracle.chance:.3f})")
    evaluate(summary.index, Path(out), console, progress, backbone=None)
    console.print(f"[bold green]done[/]: shards and index under {shards}, results under {Path(out) / 'bench'}")
    return 1 if summary.n_failed else 0


# What the quickstart benchmarks: (model, adapt, options); LOSO, one seed, so that it runs in minutes.
QUICK_MODELS = (("csp_lda", "scratch", {}), ("ts_lr", "scratch", {}), ("neurofm", "linear", {"preset": "tiny"}))


def evaluate(index: str, out: Path, console: Console, progress: bool, backbone: str | None) -> Path:
    """LOSO (seed 0) of the quick models → results.jsonl, a leaderboard table and PNG under ``out/bench``."""
    from .eval.harness import run_benchmark
    from .eval.leaderboard import load_valid_rows, rank, render
    from .eval.plots import plot_adaptation_bars

    console.rule("[bold]evaluate: leave one subject out, seed 0")
    bench = out / "bench"
    for model, adapt, options in QUICK_MODELS:
        options = {**options, **({"weights": backbone} if backbone and model == "neurofm" else {})}
        run_benchmark(model, index, "loso", adapt, seeds=(0,), out=bench, progress=progress, model_options=options)
    entries = rank(load_valid_rows(bench))
    console.print(render(entries, "md"), soft_wrap=True)
    figure = plot_adaptation_bars(entries, bench / "leaderboard.png")
    console.print(f"leaderboard figure: {figure}", soft_wrap=True)
    return bench
