"""``neurofm`` command line: each subcommand is a typed function (jsonargparse builds --help from it)."""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import CLI


def _prepare(manifest: str, *, out: str, workers: int = 1, part: str | None = None, progress: bool = True) -> int:
    """Preprocess a dataset (manifest YAML or shipped name) into WebDataset shards + index.json.

    Args:
        manifest: manifest YAML path or the name of one in data_manifests/ (e.g. synthetic_mi).
        out: output folder; rerunning into it resumes where it stopped.
        workers: parallel worker processes.
        part: i/n — prepare only slice i (0-based) of n, for SLURM array jobs; merge with `index merge`.
        progress: show a progress bar.
    """
    from .pipelines.prepare import prepare
    from .pipelines.summary import print_summary

    summary = prepare(manifest, out, workers=workers, part=part, progress=progress)
    print_summary(summary)
    return 1 if summary.n_failed else 0


def _datasets(folder: str | None = None) -> int:
    """List the dataset manifests with their paradigm and whether the data is on this machine.

    Args:
        folder: a folder of manifests (default: the shipped data_manifests/).
    """
    from .pipelines.availability import datasets

    datasets(folder)
    return 0


def _index_merge(inputs: list[str], *, out: str, base_url: str | None = None, allow_partial: bool = False) -> int:
    """Merge partial indexes written by `prepare --part i/n` into one index.json.

    Args:
        inputs: partial index files, globs, or folders holding index.part-*.json.
        out: the merged index path (e.g. DIR/index.json).
        base_url: new shard locations: a prefix (https://host/ds) or a template with {url} ("pipe:aws s3 cp s3://bucket/ds/{url} -").
        allow_partial: merge even when some parts are missing.
    """
    from .pipelines.shards import merge_indexes

    merged = merge_indexes(inputs, out, base_url=base_url, allow_partial=allow_partial)
    print(f"{out}: {len(merged['shards'])} shards, {merged['n_samples']} samples, "
          f"{len(merged['subjects'])} subjects")
    return 0


def _inspect(index: str, *, png: str | None = None, max_samples: int = 20000) -> int:
    """Show what a prepared dataset holds: tables of windows, classes, subjects, channel sets.

    Args:
        index: a prepared dataset's index.json or its folder.
        png: also write a figure here (example windows, class spectra, subjects, channel positions).
        max_samples: windows read to count classes (and at most 2000 for the figure); the tables say when capped.
    """
    from .pipelines.inspect import plot_index, print_summary, summarize_index

    print_summary(summarize_index(index, max_samples=max_samples))
    if png is not None:
        print(f"figure: {plot_index(index, png, max_samples=min(max_samples, 2000))}")
    return 0


def _quickstart(out: str = "runs/quickstart", workers: int = 2, progress: bool = True) -> int:
    """Run the main job on the built-in default: synthetic motor imagery → shards → summary.

    Args:
        out: where results go.
        workers: parallel worker processes.
        progress: show progress bars.
    """
    from .quickstart import quickstart

    return quickstart(out=out, workers=workers, progress=progress)


COMMANDS = {
    "datasets": _datasets,
    "prepare": _prepare,
    "index": {"merge": _index_merge},
    "inspect": _inspect,
    "quickstart": _quickstart,
}


def main(argv: list[str] | None = None) -> None:
    from .pipelines.errors import UserFacingErrors

    try:
        code = CLI(COMMANDS, args=argv, as_positional=True)
    except UserFacingErrors as err:
        print(f"error: {err}", file=sys.stderr)
        code = 2
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
