"""``neurofm`` command line: each subcommand is a typed function (jsonargparse builds --help from it)."""

from __future__ import annotations

import sys

from jsonargparse import CLI

from .eval.commands import bench, leaderboard_show, leaderboard_validate
from .models.config import BackboneConfig
from .models.objective_config import ObjectiveConfig
from .tokenizers.config import RVQConfig
from .tokenizers.fit import TokenizerDataConfig
from .training import OptimConfig, ShardDataConfig, TrainerConfig


def _prepare(manifest: str, *, out: str, workers: int = 1, part: str | None = None, progress: bool = True) -> int:
    """Preprocess a dataset (manifest YAML or shipped name) into WebDataset shards + index.json.

    Args:
        manifest: manifest YAML path or the name of one in data_manifests/ (e.g. synthetic_mi).
        out: output folder; rerunning into it resumes where it stopped.
        workers: parallel worker processes (the shards are the same for any number).
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
    """What `make demo` runs: synthetic data → shards → tiny tokenizer → tiny pretrained backbone →
    leave-one-subject-out benchmark (and, with ../shared/data, leave-one-run-out on a real subject)
    → leaderboard table and figure. Under 10 minutes on 2 CPU cores; resumable.

    Args:
        out: where results go.
        workers: parallel worker processes.
        progress: show progress bars.
    """
    from .quickstart import quickstart

    return quickstart(out=out, workers=workers, progress=progress)


def _say_on_rank_zero(message: str) -> None:
    """Print once: under DDP every rank runs the command (Lightning launches the others)."""
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:
        print(message)


def _tokenizer_fit(
    data: TokenizerDataConfig = TokenizerDataConfig(),
    model: str | RVQConfig = "tiny",
    optim: OptimConfig = OptimConfig(),
    trainer: TrainerConfig = TrainerConfig(),
    out: str = "runs/tokenizer/tiny",
    resume: bool = False,
) -> int:
    """Train an RVQ tokenizer on prepared shards (configs/tokenizer/*.yaml); writes out/tokenizer/.

    Args:
        data: prepared shards (index_paths), validation subjects, batch size.
        model: an RVQ preset name (tiny, base) or a full RVQConfig mapping.
        optim: AdamW and its warm-up + cosine schedule.
        trainer: steps, accelerator, precision, validation interval, logging (wandb: true for W&B).
        out: output folder: checkpoints/last.ckpt, logs/, tokenizer/ (save_pretrained folder).
        resume: continue from out/checkpoints/last.ckpt when it exists.
    """
    from .tokenizers.fit import fit_tokenizer

    result = fit_tokenizer(data=data, model=model, optim=optim, trainer=trainer, out=out, resume=resume)
    _say_on_rank_zero(f"{result.steps} steps in {result.seconds:.0f} s; tokenizer saved to {result.hub_dir}")
    return 0


def _tokenizer_report(
    tokenizers: str | list[str],
    *,
    data: str | list[str],
    out: str = "runs/tokenizer_report",
    max_windows: int = 256,
    bitrates: list[float] | None = None,
    calibration: list[str] | None = None,
    n_q: list[int] | None = None,
    batch_size: int = 32,
    device: str = "cpu",
) -> int:
    """Score tokenizers on held-out data against the μ-law baseline at equal bits/s: tables, json, md, PNG.

    Args:
        tokenizers: a registered preset (mulaw, rvq_tiny...) or a saved tokenizer folder, or a list
            of them: "[runs/tokenizer/tiny/tokenizer,rvq_tiny]".
        data: held-out prepared dataset(s) (index.json or folders), each reported separately:
            "[a/index.json,b/index.json]".
        out: output folder: report.json, report.md, one PNG per dataset.
        max_windows: windows scored per dataset (spread over its shards, fixed seed).
        bitrates: extra bits/s per channel at which to score the μ-law baseline.
        calibration: training datasets on which the baseline's bits and decimation are chosen (else a fixed rule).
        n_q: levels to score for multi-level tokenizers (default: every n_q from 1).
        batch_size: windows per encode/decode call.
        device: torch device (cpu, cuda).
    """
    from .tokenizers.report import TokenizerReportError, tokenizer_report

    as_list = lambda v: [v] if isinstance(v, str) else list(v)  # noqa: E731 - one name or a list
    try:
        tokenizer_report(as_list(tokenizers), as_list(data), out=out, max_windows=max_windows,
                         bitrates=bitrates or (), calibration=calibration, n_q=n_q, batch_size=batch_size,
                         device=device)
    except (TokenizerReportError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _tokenize(index: str, *, tokenizer: str, out: str, n_q: int | None = None, batch_size: int = 64,
              device: str = "cpu", progress: bool = True) -> int:
    """Encode a prepared dataset into token shards (codes + the same metadata) + index.json; resumable.

    Args:
        index: a prepared dataset's index.json or its folder.
        tokenizer: a tokenizer folder written by save_pretrained (runs/tokenizer/tiny/tokenizer) or a hub id.
        out: output folder; rerunning into it resumes where it stopped (another tokenizer or n_q redoes the shards).
        n_q: levels kept per frame (default: all the tokenizer has).
        batch_size: windows per encode call.
        device: torch device (cpu, cuda); reruns are byte-identical on cpu.
        progress: show a progress bar.
    """
    from .tokenizers.tokenize import TokenizeError, print_tokenize_summary, tokenize_dataset

    try:
        summary = tokenize_dataset(index, tokenizer, out, n_q=n_q, batch_size=batch_size, device=device,
                                   progress=progress)
    except TokenizeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_tokenize_summary(summary)
    return 1 if summary.n_failed else 0


def _pretrain(
    data: ShardDataConfig = ShardDataConfig(),
    model: str | BackboneConfig = "tiny",
    objective: ObjectiveConfig = ObjectiveConfig(),
    optim: OptimConfig = OptimConfig(),
    trainer: TrainerConfig = TrainerConfig(),
    out: str = "runs/pretrain/tiny_mae",
    resume: bool = False,
    ckpt_path: str | None = None,
) -> int:
    """Pretrain a backbone with a masked objective (configs/pretrain/*.yaml); writes out/backbone/.

    Args:
        data: prepared shards (index_paths), validation subjects, batch size, crop_samples.
        model: a backbone preset name (tiny, small, base, large) or a full BackboneConfig mapping.
        objective: mae (masked patch reconstruction) or tokens (masked RVQ code prediction, objective.tokenizer).
        optim: AdamW and its warm-up + cosine schedule.
        trainer: steps, devices, num_nodes, strategy, precision, validation interval, logging (wandb: true for W&B).
        out: output folder: checkpoints/last.ckpt, logs/, backbone/ (save_pretrained folder).
        resume: continue from out/checkpoints/last.ckpt (or a newer SLURM hpc checkpoint) when one exists.
        ckpt_path: continue from this checkpoint; "last" is out/checkpoints/last.ckpt (must exist).
    """
    from .models.fit import pretrain

    result = pretrain(data=data, model=model, objective=objective, optim=optim, trainer=trainer, out=out,
                      resume=resume, ckpt_path=ckpt_path)
    _say_on_rank_zero(f"{result.steps} steps in {result.seconds:.0f} s; backbone saved to {result.hub_dir}")
    return 0


def _export(ckpt: str, *, to: str) -> int:
    """Turn a pretraining checkpoint (.ckpt) into a backbone hub folder (config.json, model.safetensors, card).

    Args:
        ckpt: a checkpoint written by neurofm pretrain (e.g. runs/pretrain/tiny_mae/checkpoints/last.ckpt).
        to: output folder; NeuroTransformer.from_pretrained(to) loads it.
    """
    from .hub import CheckpointMismatchError
    from .models.export import export_checkpoint

    try:
        result = export_checkpoint(ckpt, to)
    except (CheckpointMismatchError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{result.n_weights} tensors of the {result.config.name} backbone at step {result.steps} -> {result.hub_dir}")
    return 0


COMMANDS = {
    "datasets": _datasets,
    "prepare": _prepare,
    "index": {"merge": _index_merge},
    "inspect": _inspect,
    "quickstart": _quickstart,
    "tokenizer": {"fit": _tokenizer_fit, "report": _tokenizer_report},
    "tokenize": _tokenize,
    "pretrain": _pretrain,
    "export": _export,
    "bench": bench,
    "leaderboard": {"show": leaderboard_show, "validate": leaderboard_validate},
}


def _shorthands(argv: list[str]) -> list[str]:
    """``neurofm leaderboard RESULTS ...`` means ``neurofm leaderboard show RESULTS ...``."""
    if len(argv) > 1 and argv[0] == "leaderboard" and argv[1] not in COMMANDS["leaderboard"] and \
            not argv[1].startswith("-"):
        return [argv[0], "show", *argv[1:]]
    return argv


def main(argv: list[str] | None = None) -> None:
    from .pipelines.errors import UserFacingErrors

    try:
        code = CLI(COMMANDS, args=_shorthands(sys.argv[1:] if argv is None else list(argv)), as_positional=True)
    except UserFacingErrors as err:
        print(f"error: {err}", file=sys.stderr)
        code = 2
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
