"""The built-in default job (`make demo`): synthetic multi-subject motor imagery → shards → summary.

Later stages (tokenizer, pretraining, evaluation) extend this one function.
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
    console.rule(f"[bold]1/2 prepare {manifest.name} → {shards}")
    summary = prepare(str(manifest.path), str(shards), workers=workers, progress=progress)
    print_summary(summary, console)
    console.rule("[bold]2/2 load a batch")
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
    console.print(f"[bold green]done[/]: shards and index under {shards}")
    return 1 if summary.n_failed else 0
