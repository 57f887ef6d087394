"""The built-in default job (`make demo`): synthetic data → shards → tokenizer → backbone → leaderboard.

On a fresh machine with no data and no GPU, in under 10 minutes on 2 CPU cores (measured: README.md,
"Quickstart"), every stage of the platform once, at toy scale:

1. prepare ``synthetic_mi`` (9 subjects, 3-class motor imagery: the evaluation set) and
   ``synthetic_pretrain`` (4 *other* subjects, resting state: the pretraining set, so that no
   evaluated subject is ever pretrained on), load one batch and draw the evaluation set;
2. fit the tiny RVQ tokenizer (``configs/tokenizer/tiny.yaml`` with ``TOKENIZER_STEPS`` steps);
3. pretrain the tiny backbone by masked patch reconstruction (``configs/pretrain/tiny_mae.yaml`` with
   ``PRETRAIN_STEPS`` steps);
4. leave one subject out (seed 0) on ``synthetic_mi``: CSP+LDA, TS+LR and EEGNet from scratch, and the
   pretrained backbone as a linear probe and fine-tuned (``DEEP_EPOCHS`` epochs a fold);
5. when the real PhysioNet subject is in ``../shared/data`` (``physionet_s001_imagery``): leave one run
   out within that subject, CSP+LDA and TS+LR, per imagery task; skipped, saying why, otherwise;
6. the leaderboard: a table, ``leaderboard.md`` and adaptation bars with the generator's oracle.

Budget: 10 minutes on 2 CPU cores; measured 6.0-6.8 minutes with one thread on 2 cores shared with
other jobs: preparation and the figure ~0.3 min, tokenizer ~1 min, pretraining ~0.3 min, LOSO ~4.5 min
(EEGNet ~3 of them), the real subject ~0.2 min. The step and epoch counts are what fits; they are far
too few for the deep models to learn much (docs/benchmarks.md): the quickstart shows the path from
raw data to a leaderboard, not what the models can reach.

Every stage resumes like the command it calls: a rerun into the same ``out`` reuses the shards, the
finished tokenizer and backbone runs (``resume``: their last checkpoints) and the rows already written.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

DEFAULT_MANIFEST = "synthetic_mi"  # the evaluation set
PRETRAIN_MANIFEST = "synthetic_pretrain"  # other synthetic subjects: nothing evaluated is pretrained on
PRETRAIN_VAL_SUBJECT = "04"  # of synthetic_pretrain's 4 subjects: validation only
REAL_MANIFEST = "physionet_s001_imagery"  # the real subject in ../shared/data, when it is there
CONFIGS = Path(__file__).resolve().parents[1] / "configs"  # shipped beside data_manifests/

TOKENIZER_STEPS = 200  # ~1 min on one core (configs/tokenizer/tiny.yaml: 1500)
PRETRAIN_STEPS = 300  # ~15 s on one core (configs/pretrain/tiny_mae.yaml: 2000); held-out NMSE ~0.42 by then
DEEP_EPOCHS = 4  # fine-tuning and EEGNet, per fold (EEGNet: ~5 s an epoch on one core, 9 folds)
DEEP_SETTINGS = {"max_epochs": DEEP_EPOCHS, "patience": 2}

# Leave one subject out on the evaluation set: (model, adapt, options); neurofm gets the backbone's weights.
QUICK_MODELS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("csp_lda", "scratch", {}),
    ("ts_lr", "scratch", {}),
    ("eegnet", "scratch", {"settings": DEEP_SETTINGS}),
    ("neurofm", "linear", {}),
    ("neurofm", "finetune", {"settings": DEEP_SETTINGS}),
)
# The real subject, leave one run out, one task at a time: the two tasks' runs hold disjoint class
# pairs, so a four-class model would mostly learn which task a run belongs to (0.0-0.4 on a held-out run).
REAL_MODELS = ("csp_lda", "ts_lr")
REAL_TASKS = (("left_hand", "right_hand"), ("both_fists", "feet"))  # imagined, runs 4/8/12 and 6/10/14


def quickstart(out: str = "runs/quickstart", workers: int = 2, progress: bool = True) -> int:
    """Every stage of the module docstring into ``out``; 0 on success, 1 when a recording failed to prepare."""
    console, root = Console(), Path(out)
    with one_thread(), warnings.catch_warnings():
        # deprecation notices of installed libraries, once per fold, that a user can do nothing about
        warnings.filterwarnings("ignore", message="Montage name 'standard_1020' is deprecated")  # braindecode
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
        index, pretrain_index, n_failed = prepare_data(root, workers, progress, console)
        tokenizer = fit_quick_tokenizer(pretrain_index, root / "tokenizer", progress, console)
        backbone = pretrain_quick_backbone(pretrain_index, root / "pretrain", progress, console)
        bench = root / "bench"
        evaluate(index, bench, console, progress, backbone=str(backbone))
        evaluate_real(root, bench, workers, console, progress)
        table, figure = leaderboard(bench, console)
    print_where(console, {"prepared datasets (shards, index.json)": root / "shards",
                          "figure of the evaluation set": root / f"{DEFAULT_MANIFEST}.png",
                          "tokenizer (save_pretrained folder)": tokenizer,
                          "pretrained backbone (save_pretrained folder)": backbone,
                          "result rows (one JSON line per fold)": bench / "results.jsonl",
                          "leaderboard table": table, "leaderboard figure (adaptation bars)": figure})
    return 1 if n_failed else 0


@contextmanager
def one_thread() -> Iterator[None]:
    """One thread for torch and for numpy's BLAS. On 2 cores shared with other jobs, two threads
    waiting on each other stall: 300 tiny pretraining steps took 129 s instead of 10.5 s, and TS+LR on
    the real subject (3 folds, 64 channels, OpenBLAS) 56 s instead of 2.3 s (tests/test_pretrain.py too)."""
    import torch
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------------
# data


def prepare_data(root: Path, workers: int, progress: bool, console: Console) -> tuple[str, str, int]:
    """Prepare both synthetic sets, load a batch, draw the evaluation set: (index, pretraining index, failures)."""
    from .pipelines.inspect import plot_index
    from .pipelines.loader import ShardDataModule
    from .pipelines.manifest import load_manifest, resolve_manifest
    from .pipelines.synthetic import SyntheticConfig, oracle_score

    index, n_failed = prepare_one(DEFAULT_MANIFEST, root, workers, progress, console)
    pretrain_index, n_failed_pretrain = prepare_one(PRETRAIN_MANIFEST, root, workers, progress, console)
    console.rule("[bold]load a batch")
    dm = ShardDataModule([index], batch_size=16, seed=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    console.print(f"batch x {tuple(batch.x.shape)} (batch, channels, samples), labels {batch.label.tolist()}")
    figure = plot_index(index, root / f"{DEFAULT_MANIFEST}.png")
    console.print(f"figure of the prepared dataset (windows, spectra, subjects, channels): {figure}", soft_wrap=True)
    generator = load_manifest(resolve_manifest(DEFAULT_MANIFEST)).source.generator
    oracle = oracle_score(SyntheticConfig(**generator))
    console.print(f"oracle balanced accuracy on the generating features (LOSO): {oracle.balanced_accuracy:.3f} "
                  f"(chance {oracle.chance:.3f})")
    return index, pretrain_index, n_failed + n_failed_pretrain


def prepare_one(name: str, root: Path, workers: int, progress: bool, console: Console) -> tuple[str, int]:
    """``neurofm prepare NAME --out ROOT/shards/NAME``: (its index.json, recordings that failed)."""
    from .pipelines.prepare import prepare
    from .pipelines.summary import print_summary

    shards = root / "shards" / name
    console.rule(f"[bold]prepare {name} → {shards}")
    summary = prepare(name, str(shards), workers=workers, progress=progress)
    print_summary(summary, console)
    return summary.index, summary.n_failed


# --------------------------------------------------------------------------------------------------
# tokenizer and backbone: the shipped tiny configs, on the quickstart's data, with fewer steps


def run_config(path: Path, index: str, out: Path, steps: int, progress: bool) -> dict[str, Any]:
    """A shipped training config (YAML) pointed at ``index`` (validation: one of its subjects) and shortened."""
    config = yaml.safe_load(path.read_text())
    config["data"] = {**config["data"], "index_paths": [index], "val_subjects": [PRETRAIN_VAL_SUBJECT]}
    config["trainer"] = {**config["trainer"], "max_steps": steps, "val_check_interval": steps,
                         "checkpoint_every_n_steps": steps, "progress_bar": progress}
    config["out"] = str(out)
    return config


def fit_quick_tokenizer(index: str, out: Path, progress: bool, console: Console) -> Path:
    """``configs/tokenizer/tiny.yaml`` for ``TOKENIZER_STEPS`` steps; the tokenizer's folder."""
    from .tokenizers.fit import OptimConfig, TokenizerDataConfig, TrainerConfig, fit_tokenizer

    console.rule(f"[bold]fit the tiny RVQ tokenizer ({TOKENIZER_STEPS} steps) → {out}")
    cfg = run_config(CONFIGS / "tokenizer" / "tiny.yaml", index, out, TOKENIZER_STEPS, progress)
    result = fit_tokenizer(data=TokenizerDataConfig(**cfg["data"]), model=cfg["model"],
                           optim=OptimConfig(**cfg["optim"]), trainer=TrainerConfig(**cfg["trainer"]),
                           out=cfg["out"], resume=True)
    levels = sorted(k for k in result.metrics if k.startswith("val/nmse_q"))
    nmse = ", ".join(f"{k.removeprefix('val/nmse_')} {result.metrics[k]:.3f}" for k in levels)
    console.print(f"{result.steps} steps in {result.seconds:.0f} s; held-out subject NMSE by RVQ levels: {nmse}")
    return result.hub_dir


def pretrain_quick_backbone(index: str, out: Path, progress: bool, console: Console) -> Path:
    """``configs/pretrain/tiny_mae.yaml`` for ``PRETRAIN_STEPS`` steps; the backbone's folder."""
    from .models.fit import ObjectiveConfig, OptimConfig, ShardDataConfig, TrainerConfig, pretrain

    console.rule(f"[bold]pretrain the tiny backbone, masked reconstruction ({PRETRAIN_STEPS} steps) → {out}")
    cfg = run_config(CONFIGS / "pretrain" / "tiny_mae.yaml", index, out, PRETRAIN_STEPS, progress)
    result = pretrain(data=ShardDataConfig(**cfg["data"]), model=cfg["model"],
                      objective=ObjectiveConfig(**cfg["objective"]), optim=OptimConfig(**cfg["optim"]),
                      trainer=TrainerConfig(**cfg["trainer"]), out=cfg["out"], resume=True)
    nmse = result.metrics.get("val/nmse", float("nan"))
    console.print(f"{result.steps} steps in {result.seconds:.0f} s; held-out subject masked-patch NMSE {nmse:.3f} "
                  "(1.0: the zero predictor; leaving it takes thousands of steps, docs/pretraining.md)")
    return result.hub_dir


# --------------------------------------------------------------------------------------------------
# evaluation


def evaluate(index: str, bench: Path, console: Console, progress: bool, backbone: str | None) -> Path:
    """LOSO (seed 0) of ``QUICK_MODELS`` → rows in ``bench/results.jsonl`` (neurofm: ``backbone``, else random)."""
    from .eval.harness import run_benchmark

    console.rule("[bold]evaluate: leave one subject out, seed 0")
    for model, adapt, options in QUICK_MODELS:
        if model == "neurofm":
            options = {**options, **({"weights": backbone} if backbone else {"preset": "tiny"})}
        run_benchmark(model, index, "loso", adapt, seeds=(0,), out=bench, progress=progress, model_options=options)
    return bench


def evaluate_real(root: Path, bench: Path, workers: int, console: Console, progress: bool) -> bool:
    """Leave one run out on the real subject, per task; False (and why) when its files are not here."""
    from .eval.harness import run_benchmark
    from .pipelines.availability import check_available

    console.rule(f"[bold]real EEG: {REAL_MANIFEST}, leave one run out within the subject")
    available = check_available(REAL_MANIFEST)
    if not available.available:
        console.print(f"[yellow]skipped[/]: {available.message}", soft_wrap=True)
        return False
    index, _ = prepare_one(REAL_MANIFEST, root, workers, progress, console)
    for classes in REAL_TASKS:
        for model in REAL_MODELS:
            run_benchmark(model, index, "loro", seeds=(0,), out=bench, progress=progress, classes=classes)
    return True


def leaderboard(bench: Path, console: Console) -> tuple[Path, Path | None]:
    """Print the ranked table; write it as ``leaderboard.md`` and the adaptation bars as ``leaderboard.png``."""
    from .eval.leaderboard import load_valid_rows, rank, render
    from .eval.plots import plot_adaptation_bars

    console.rule("[bold]leaderboard (balanced accuracy; synthetic: the generator's oracle beside it)")
    entries = rank(load_valid_rows(bench))
    table = render(entries, "md")
    console.print(table, soft_wrap=True, markup=False)
    (bench / "leaderboard.md").write_text(table)
    return bench / "leaderboard.md", plot_adaptation_bars(entries, bench / "leaderboard.png")


def print_where(console: Console, where: dict[str, Path | str | None]) -> None:
    table = Table(title="[bold green]done[/]: where everything is", title_justify="left")
    table.add_column("what")
    table.add_column("where", overflow="fold")
    for what, path in where.items():
        if path is not None:
            table.add_row(what, str(path))
    console.print(table)
