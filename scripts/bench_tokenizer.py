#!/usr/bin/env python
"""RVQ against the μ-law baseline at equal bits/s, on synthetic and real held-out EEG, in one run.

1. prepares (resumably, under ``--out/shards``) the held-out data: ``synthetic_rest`` (seed 0: other
   subjects than ``synthetic_pretrain``, seed 11, which trains the tokenizer) and PhysioNet subject 1
   runs 11–14 (``physionet_s001_heldout``), plus the training data the baseline is calibrated on
   (``physionet_s001_train``, runs 1–10, and ``synthetic_pretrain``);
2. takes the RVQ tokenizer saved in ``--tokenizer``, or trains the ``tiny`` preset for ``--steps``
   steps on the training data (``neurofm.tokenizers.fit``), and scores it at every n_q;
3. runs ``tokenizer_report``: each RVQ depth next to μ-law at the same or the nearest lower bits/s
   (its bits and decimation chosen on the training windows), plus a μ-law curve over ``--bitrates``;
   the tables (NMSE, PCC, SI-SDR, band-power errors, code usage and perplexity per level, encode and
   decode windows/s), report.json, report.md and one PNG per dataset under ``--out/report``.

    python scripts/bench_tokenizer.py --tokenizer runs/tokenizer/tiny/tokenizer
    python scripts/bench_tokenizer.py --steps 300          # trains rvq_tiny first (~15-20 min on 2 cores)
    python scripts/bench_tokenizer.py --mulaw_only         # the baseline alone (~1 min)

Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console

from neurofm.pipelines.loader import load_index
from neurofm.pipelines.manifest import manifests_dir
from neurofm.pipelines.prepare import prepare
from neurofm.tokenizers.report import tokenizer_report

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC_HELDOUT = "synthetic_rest"
SYNTHETIC_TRAIN = "synthetic_pretrain"
REAL_HELDOUT, REAL_TRAIN, REAL_ALL = "physionet_s001_heldout", "physionet_s001_train", "physionet_s001_all"
HELDOUT_RUNS, TRAIN_RUNS = tuple(str(r) for r in range(11, 15)), tuple(str(r) for r in range(1, 11))
# The μ-law curve: 1 to 8 bits at every sample of 200 Hz, and the low rates an RVQ reaches.
DEFAULT_BITRATES = (100.0, 200.0, 300.0, 400.0, 600.0, 800.0, 1000.0, 1200.0, 1600.0)


def shared_data_root() -> Path:
    """``$NEUROFM_SHARED_DATA``, else ``../shared/data`` beside the repository (as tests/conftest.py)."""
    override = os.environ.get("NEUROFM_SHARED_DATA")
    return Path(override) if override else REPO.parent / "shared" / "data"


def prepared(name: str, shards: Path, console: Console) -> Path:
    """``shards/name/index.json``, prepared from the shipped manifest unless already complete."""
    out = shards / name
    summary = prepare(name, str(out), workers=2, progress=False)
    if summary.n_failed:
        raise SystemExit(f"preparing {name} failed for {summary.n_failed} recordings: see {out}/errors.jsonl")
    console.print(f"prepared {name}: {summary.index}")
    return Path(summary.index)


def run_subset(index_path: Path, runs: tuple[str, ...], name: str, out: Path) -> Path:
    """An index.json of ``index_path``'s shards whose ``run`` is in ``runs`` (shards stay in place)."""
    index = load_index(index_path)
    raw = dict(index.raw, dataset=name)
    raw["shards"] = [dict(entry, url=shard.url) for entry, shard in zip(index.raw["shards"], index.shards)
                     if shard.run in runs]
    raw["n_samples"] = sum(e["n_samples"] for e in raw["shards"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.json").write_text(json.dumps(raw, indent=1))
    return out / "index.json"


def real_data(shards: Path, console: Console) -> tuple[Path, Path]:
    """(held-out runs 11–14, training runs 1–10) of PhysioNet subject 1."""
    if (manifests_dir() / f"{REAL_HELDOUT}.yaml").is_file():
        return prepared(REAL_HELDOUT, shards, console), prepared(REAL_TRAIN, shards, console)
    everything = prepared(REAL_ALL, shards, console)  # older checkouts: split by the shards' run field
    return (run_subset(everything, HELDOUT_RUNS, REAL_HELDOUT, shards / REAL_HELDOUT),
            run_subset(everything, TRAIN_RUNS, REAL_TRAIN, shards / REAL_TRAIN))


def train_tiny(train: list[Path], out: Path, steps: int, console: Console) -> Path | None:
    """Train ``rvq_tiny`` on ``train`` for ``steps`` steps; its save_pretrained folder (None: no RVQ yet)."""
    try:
        from neurofm.tokenizers.fit import OptimConfig, TokenizerDataConfig, TrainerConfig, fit_tokenizer
    except ModuleNotFoundError as err:
        console.print(f"[yellow]no RVQ trainer in this checkout ({err}): μ-law only[/]")
        return None
    if (out / "tokenizer" / "config.json").is_file():
        console.print(f"using the tokenizer already trained in {out / 'tokenizer'} (delete it to retrain)")
        return out / "tokenizer"
    console.rule(f"[bold]training rvq_tiny for {steps} steps → {out}")
    # As configs/tokenizer/tiny.yaml: 2 s crops, 64 channels (rows) a step, warm-up then cosine decay.
    result = fit_tokenizer(
        data=TokenizerDataConfig(index_paths=[str(p) for p in train], batch_size=8, max_rows=64, crop_samples=400),
        model="tiny", optim=OptimConfig(lr=2e-3, warmup_steps=min(50, steps // 4)),
        trainer=TrainerConfig(max_steps=steps, accelerator="cpu", progress_bar=False,
                              checkpoint_every_n_steps=max(1, steps // 2)),
        out=str(out),
    )
    console.print(f"trained {result.steps} steps in {result.seconds / 60:.1f} min")
    return result.hub_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokenizer", help="a saved RVQ tokenizer folder (default: train rvq_tiny first)")
    p.add_argument("--steps", type=int, default=300, help="training steps when no --tokenizer is given")
    p.add_argument("--mulaw_only", action="store_true", help="no RVQ: the baseline's curve alone")
    p.add_argument("--out", default="runs/bench_tokenizer", help="shards/, rvq_tiny/ and report/ go here")
    p.add_argument("--max_windows", type=int, default=128, help="held-out windows scored per dataset")
    p.add_argument("--bitrates", type=float, nargs="*", default=list(DEFAULT_BITRATES),
                   help="bits/s per channel of the μ-law curve")
    p.add_argument("--no_calibration", action="store_true",
                   help="choose the baseline's bits/decimation by the fixed rule, not on training windows")
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    os.environ.setdefault("NEUROFM_SHARED_DATA", str(shared_data_root()))
    out = Path(args.out)
    console.rule("[bold]1/3 data")
    synthetic_heldout = prepared(SYNTHETIC_HELDOUT, out / "shards", console)
    synthetic_train = prepared(SYNTHETIC_TRAIN, out / "shards", console)
    real_heldout, real_train = real_data(out / "shards", console)
    console.rule("[bold]2/3 tokenizer")
    tokenizers: list[str] = []
    if args.tokenizer:
        tokenizers = [args.tokenizer]
    elif not args.mulaw_only:
        trained = train_tiny([synthetic_train, real_train], out / "rvq_tiny", args.steps, console)
        tokenizers = [str(trained)] if trained else []
    console.rule("[bold]3/3 report")
    report = tokenizer_report(
        tokenizers or ["mulaw"], [str(synthetic_heldout), str(real_heldout)], out=str(out / "report"),
        max_windows=args.max_windows, bitrates=args.bitrates, device=args.device, console=console,
        calibration=None if args.no_calibration else [str(synthetic_train), str(real_train)],
    )
    for ds in report.datasets:
        console.print(f"figure ({ds.dataset}): {ds.figure}", soft_wrap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
