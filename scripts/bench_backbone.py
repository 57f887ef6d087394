#!/usr/bin/env python
"""Backbone training throughput: neurofm's NeuroTransformer against braindecode's Labram.

In one run, at matched width, depth, heads and tokens (every channel cut into time patches: C x P
tokens; Labram adds one [CLS] token), it times a training step — forward, cross-entropy on a 4-class
head, backward (and, with ``--adamw``, an AdamW step) — of

1. braindecode ``Labram`` (the baseline; ``neural_tokenizer=True``: temporal-conv patch embedding,
   learned channel and time tables, explicit softmax attention, GELU MLP of 4 x width);
2. ours, ``attention="full"`` (every token attends to every token, through SDPA);
3. ours, ``attention="criss_cross"`` (half of the heads across channels, half across patches),

for every montage of ``--channels`` (22: BCI Competition IV 2a; 62: the SEED cap) at ``--patches``
time patches, and prints samples/s (best and median of ``--repeats`` round-robin runs after an
untimed warm-up), parameters, training FLOPs per step (counted with
``neurofm.throughput.flop_counter_mode`` on one step) and the ratios ours / Labram against the
1.5x target. ``--device cuda --dtype bf16`` runs the same code under ``torch.autocast(bfloat16)`` and
adds the model FLOPs utilisation (MFU = counted FLOPs per step / step time / the device's dense bf16
peak). ``--breakdown`` also times the parts of each model alone (embedding, attention, MLP).
Results: docs/benchmarks.md, "Backbone throughput".

    python scripts/bench_backbone.py --repeats 3                 # CPU, base preset, ~3 min on 2 quiet cores
    python scripts/bench_backbone.py --threads 1 --breakdown     # steadier on a shared machine, ~2 min
    python scripts/bench_backbone.py --quick                     # one repeat, 22 channels only
    python scripts/bench_backbone.py --device cuda --dtype bf16 --batch-size 256 [--compile]
    python scripts/bench_backbone.py --device cuda --dtype bf16 --compile-mode max-autotune --dim 192 --heads 12

On a machine shared with other jobs, two OpenMP threads stall whenever another process takes a core
(steps 5-30x slower); one thread is slower but steady, and the ratios are what matter.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mne
import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

with warnings.catch_warnings():  # braindecode's EEGPT builds a deprecated montage at import time
    warnings.simplefilter("ignore", FutureWarning)
    import braindecode
    from braindecode.models import Labram

from neurofm.models.backbone import NeuroTransformer
from neurofm.models.config import BackboneConfig
from neurofm.pipelines.channels import TEMPLATE_MONTAGE, channel_positions
from neurofm.throughput import cpu_model, flop_counter_mode, peak_bf16_flops  # the table the training callback uses

THROUGHPUT_TARGET = 1.5  # ours / Labram, training samples per second
PARAMS_TOLERANCE = 0.10  # matched configurations: parameter counts within 10% of Labram's
N_CLASSES = 4

# Montages in LaBraM's channel vocabulary (braindecode LABRAM_CHANNEL_ORDER: 128 names, so any
# montage of at most 128 of them has learned channel embeddings).
MONTAGES: dict[int, list[str]] = {
    # BCI Competition IV 2a (22 EEG channels).
    22: "Fz FC3 FC1 FCz FC2 FC4 C5 C3 C1 Cz C2 C4 C6 CP3 CP1 CPz CP2 CP4 P1 Pz P2 POz".split(),
    # SEED / SEED-IV 62-channel cap; its CB1/CB2 are not in colin27_1005, so the PO9/PO10 sites
    # stand in (braindecode's LaBraM table puts CB1/CB2 at exactly those coordinates).
    62: ("Fp1 Fpz Fp2 AF3 AF4 F7 F5 F3 F1 Fz F2 F4 F6 F8 FT7 FC5 FC3 FC1 FCz FC2 FC4 FC6 FT8 T7 C5 C3 C1 "
         "Cz C2 C4 C6 T8 TP7 CP5 CP3 CP1 CPz CP2 CP4 CP6 TP8 P7 P5 P3 P1 Pz P2 P4 P6 P8 PO7 PO5 PO3 POz "
         "PO4 PO6 PO8 PO9 O1 Oz O2 PO10").split(),
}


# ------------------------------------------------------------------------------------------------
# matched configurations


@dataclass
class Setting:
    """One token grid: a montage and a number of time patches per window."""

    n_chans: int
    n_patches: int
    ch_names: list[str]

    @property
    def label(self) -> str:
        return f"{self.n_chans} channels x {self.n_patches} patches"


@dataclass
class Matched:
    """Our config and Labram's arguments for the same width/depth/heads and the same token grid.

    braindecode's Labram fixes its width to conv_out_channels x ceil(patch_size / 8) (the temporal
    conv has stride 8), so widths that are not 25 x (a multiple of 4: GroupNorm has 4 groups) use
    patches of ``dim`` samples and 8 conv channels; both models then take the same patches.
    """

    config: BackboneConfig
    labram_kwargs: dict[str, Any]

    @property
    def patch_size(self) -> int:
        return self.config.patch_size


def matched_configs(preset: str, **overrides: int) -> Matched:
    """``overrides`` (``dim``, ``heads``) change the preset for both models, e.g. a head dimension
    that is a multiple of 16 for the fastest flash-attention tiles (``--dim 192 --heads 12``)."""
    base = BackboneConfig.from_name(preset, **{k: v for k, v in overrides.items() if v is not None})
    if base.dim % 25 == 0 and (base.dim // 25) % 4 == 0:  # base (200 = 8 x 25), large (400 = 16 x 25)
        patch_size, conv_out = 200, base.dim // 25
    elif base.dim % 8 == 0:  # tiny (32), small (128): ceil(dim / 8) x 8 = dim
        patch_size, conv_out = base.dim, 8
    else:
        raise ValueError(f"no Labram width matches dim={base.dim} (need 25 x 4k or a multiple of 8)")
    config = BackboneConfig.from_dict({**base.to_dict(), "patch_size": patch_size})
    labram = dict(patch_size=patch_size, embed_dim=base.dim, conv_out_channels=conv_out, num_layers=base.depth,
                  num_heads=base.heads, mlp_ratio=4.0, neural_tokenizer=True)
    return Matched(config, labram)


def electrode_positions(ch_names: list[str]) -> np.ndarray:
    """(C, 3) head-frame positions in metres from the template montage, as the shards carry them."""
    info = mne.create_info(ch_names, sfreq=200.0, ch_types="eeg")
    info.set_montage(mne.channels.make_standard_montage(TEMPLATE_MONTAGE), verbose="error")
    pos = channel_positions(info)
    if not np.isfinite(pos).all():
        missing = [n for n, p in zip(ch_names, pos) if not np.isfinite(p).all()]
        raise ValueError(f"no {TEMPLATE_MONTAGE} position for {missing}")
    return pos


# ------------------------------------------------------------------------------------------------
# models and one training step


@dataclass
class Case:
    """One model on one setting: how to call it on the benchmark batch, and its timings."""

    key: str  # "labram", "full", "criss_cross"
    name: str
    model: nn.Module  # eager module
    forward: Callable[[], Tensor]  # logits (B, N_CLASSES) of the benchmark batch (compiled with --compile)
    eager_forward: Callable[[], Tensor]  # the same through the eager module (FLOPs are counted on it)
    n_tokens: int
    params: int = 0
    attention_kernel: str = "explicit softmax"  # ours: which SDPA kernel family can run (fused_sdpa_kernel)
    flops: float = float("nan")  # training FLOPs per step (FlopCounterMode)
    seconds: list[float] = field(default_factory=list)  # per timed run of `steps` steps

    def step_time(self, steps: int, best: bool = True) -> float:
        return (min(self.seconds) if best else statistics.median(self.seconds)) / steps


@dataclass
class Batch:
    x: Tensor  # (B, C, T) µV
    pos: Tensor  # (B, C, 3) metres
    chan_mask: Tensor  # (B, C) bool
    y: Tensor  # (B,) class labels


def make_batch(setting: Setting, patch_size: int, batch_size: int, device: torch.device, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    n_times = setting.n_patches * patch_size
    x = 20.0 * torch.randn(batch_size, setting.n_chans, n_times, generator=g)  # ~20 µV, EEG-like scale
    pos = torch.from_numpy(electrode_positions(setting.ch_names)).float()
    return Batch(x.to(device), pos.expand(batch_size, -1, -1).contiguous().to(device),
                 torch.ones(batch_size, setting.n_chans, dtype=torch.bool, device=device),
                 torch.randint(0, N_CLASSES, (batch_size,), generator=g).to(device))


def build_cases(matched: Matched, setting: Setting, batch: Batch, device: torch.device,
                compile_models: bool = False, compile_mode: str | None = None) -> list[Case]:
    """Labram (baseline), ours full, ours criss-cross (when the heads split in two halves); the same
    initial seed for each. ``compile_mode`` is ``torch.compile``'s (e.g. ``reduce-overhead``: CUDA graphs)."""
    compiled = partial(torch.compile, mode=compile_mode)
    n_times = setting.n_patches * matched.patch_size
    cases = []
    torch.manual_seed(0)
    labram = Labram(n_times=n_times, n_outputs=N_CLASSES, n_chans=setting.n_chans, sfreq=matched.config.sfreq,
                    **matched.labram_kwargs).to(device)
    if labram.embed_dim != matched.config.dim:
        raise ValueError(f"Labram width {labram.embed_dim} != ours {matched.config.dim}")
    names = setting.ch_names  # Labram picks its learned channel embeddings by name

    def labram_call(m: nn.Module) -> Callable[[], Tensor]:
        return lambda: m(batch.x, ch_names=names)

    def ours_call(m: nn.Module) -> Callable[[], Tensor]:
        return lambda: m(batch.x, pos=batch.pos, chan_mask=batch.chan_mask)

    call = compiled(labram) if compile_models else labram
    cases.append(Case("labram", "braindecode Labram", labram, labram_call(call), labram_call(labram),
                      setting.n_chans * setting.n_patches + 1))  # + [CLS]
    for attention in ("full", "criss_cross") if matched.config.heads % 2 == 0 else ("full",):
        torch.manual_seed(0)
        ours = NeuroTransformer(BackboneConfig.from_dict({**matched.config.to_dict(), "attention": attention}),
                                n_outputs=N_CLASSES).to(device)
        call = compiled(ours) if compile_models else ours
        cases.append(Case(attention, f"neurofm {matched.config.name}, {attention.replace('_', '-')} attention", ours,
                          ours_call(call), ours_call(ours), setting.n_chans * setting.n_patches))
    for case in cases:
        case.params = sum(p.numel() for p in case.model.parameters())
    return cases


def autocast(device: torch.device, dtype: str):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")


def train_step(forward: Callable[[], Tensor], y: Tensor, model: nn.Module, optimizer: torch.optim.Optimizer | None,
               device: torch.device, dtype: str) -> None:
    """Forward + cross-entropy + backward (+ optimizer step); gradients cleared for the next step."""
    with autocast(device, dtype):
        loss = F.cross_entropy(forward().float(), y)
    loss.backward()
    if optimizer is not None:
        optimizer.step()
    model.zero_grad(set_to_none=True)


def count_flops(step: Callable[[], None]) -> float:
    """Training FLOPs of one step (matmuls, convolutions, attention; not norms or element-wise ops),
    counted as ``neurofm.throughput`` counts them for training runs (CPU flash attention included)."""
    with flop_counter_mode() as counter:
        step()
    return float(counter.get_total_flops())


FUSED_SDPA = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]


def fused_sdpa_kernel(forward: Callable[[], Tensor], device: torch.device, dtype: str) -> str:
    """Which SDPA kernel the model gets on these shapes: "fused", or "math fallback" when none is.

    On CUDA a boolean mask rules out flash attention, and the memory-efficient and cuDNN kernels
    need a head dimension divisible by 8 in 16-bit types (pytorch/pytorch#110630); otherwise SDPA
    silently falls back to its math path, which materialises the (N x N) scores as Labram does.
    """
    try:
        with sdpa_kernel(FUSED_SDPA), autocast(device, dtype), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the per-kernel "why not" warnings
            forward()
    except RuntimeError:
        return "math fallback"
    return "fused"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_round_robin(runs: list[tuple[list[float], Callable[[], None]]], repeats: int, warmup: int, steps: int,
                    device: torch.device) -> None:
    """``warmup`` untimed steps of each, then ``repeats`` rounds, each timing ``steps`` steps of every run."""
    for _, step in runs:
        for _ in range(warmup):
            step()
    synchronize(device)
    for _ in range(repeats):
        for seconds, step in runs:
            synchronize(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            synchronize(device)
            seconds.append(time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------
# parts of each model alone (--breakdown)


def _fwd_bwd(fn: Callable[[], Tensor], device: torch.device, dtype: str) -> Callable[[], None]:
    def step() -> None:
        with autocast(device, dtype):
            out = fn()
        # a dense upstream gradient, as inside the network (``out.sum()`` would hand back a stride-0 one)
        out.backward(torch.ones_like(out))
    return step


def component_steps(case: Case, batch: Batch, setting: Setting, device: torch.device,
                    dtype: str) -> dict[str, Callable[[], None]]:
    """Forward + backward of the embedding, of one block's attention and of one block's MLP
    (each with its pre-norm), on the benchmark shapes. Attention and MLP are timed on block 0 and
    multiplied by the depth when reported."""
    m = case.model
    b, c, p = batch.x.shape[0], setting.n_chans, setting.n_patches
    if case.key == "labram":
        blk = m.blocks[0]
        h = torch.randn(b, c * p + 1, m.embed_dim, device=device, requires_grad=True)  # (B, 1 + C*P, D)
        return {"embedding": _fwd_bwd(lambda: m.patch_embed(batch.x), device, dtype),
                "attention": _fwd_bwd(lambda: blk.gamma_1 * blk.attn(blk.norm1(h)), device, dtype),
                "mlp": _fwd_bwd(lambda: blk.gamma_2 * blk.mlp(blk.norm2(h)), device, dtype)}
    blk = m.blocks[0]
    h = torch.randn(b, c, p, m.config.dim, device=device, requires_grad=True)  # (B, C, P, D)
    known = torch.ones(b, c, dtype=torch.bool, device=device)
    return {"embedding": _fwd_bwd(lambda: m.embed(batch.x) + m.pos_enc(batch.pos, known, p), device, dtype),
            "attention": _fwd_bwd(lambda: blk.attn(blk.norm1(h), batch.chan_mask), device, dtype),
            "mlp": _fwd_bwd(lambda: blk.mlp(blk.norm2(h)), device, dtype)}


def n_layers(case: Case) -> int:
    return len(case.model.blocks)


# ------------------------------------------------------------------------------------------------
# reporting


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU: {cpu_model()}"


def print_cases(console: Console, title: str, cases: list[Case], steps: int, batch_size: int, peak: float) -> None:
    table = Table(title=title, title_justify="left")
    scale, unit = (1e12, "TFLOP/s") if math.isfinite(peak) else (1e9, "GFLOP/s")  # CPU rates read in GFLOP/s
    for col in ("model", "attention", "params", "tokens", "GFLOP/step", "best s/step", "median s/step",
                "samples/s (best)", f"{unit} (best)", "MFU"):
        table.add_column(col, justify="left" if col in ("model", "attention") else "right")
    for c in cases:
        best = c.step_time(steps)
        achieved = c.flops / best
        mfu = "-" if math.isnan(peak) else f"{100 * achieved / peak:.1f}%"
        table.add_row(c.name, c.attention_kernel, f"{c.params / 1e6:.3f} M", str(c.n_tokens), f"{c.flops / 1e9:.3g}",
                      f"{best:.3f}", f"{c.step_time(steps, best=False):.3f}", f"{batch_size / best:,.1f}",
                      f"{achieved / scale:,.1f}", mfu)
    console.print(table)


def case_result(c: Case, steps: int, batch_size: int, peak: float) -> dict[str, Any]:
    best = c.step_time(steps)
    return {"key": c.key, "name": c.name, "attention": c.attention_kernel, "params": c.params, "tokens": c.n_tokens,
            "flops_per_step": c.flops, "seconds_per_step": [s / steps for s in c.seconds], "best_s_per_step": best,
            "samples_per_s": batch_size / best, "mfu": None if math.isnan(peak) else c.flops / best / peak}


def ratio_rows(cases: list[Case]) -> list[dict[str, Any]]:
    """ours / Labram: throughput (best), parameters, counted FLOPs."""
    base = next(c for c in cases if c.key == "labram")
    return [{"name": f"{c.name} / Labram", "throughput": min(base.seconds) / min(c.seconds),
             "throughput_median": statistics.median(base.seconds) / statistics.median(c.seconds),
             "params": c.params / base.params, "flops": c.flops / base.flops, "target": THROUGHPUT_TARGET}
            for c in cases if c.key != "labram"]


def print_ratios(console: Console, rows: list[dict[str, Any]]) -> None:
    rt = Table(title_justify="left")
    for col in ("ratio ours / Labram", "samples/s (best)", "(median)", "target", "met", "params", "FLOPs/step"):
        rt.add_column(col, justify="left" if col.startswith("ratio") else "right")
    for r in rows:
        met = "[green]yes" if r["throughput"] >= r["target"] else "[red]no"
        params_ok = abs(r["params"] - 1) <= PARAMS_TOLERANCE
        rt.add_row(r["name"], f"{r['throughput']:.2f}x", f"{r['throughput_median']:.2f}x", f">= {r['target']:g}x", met,
                   f"{r['params']:.3f}x" + ("" if params_ok else " [red](not within 10%)"), f"{r['flops']:.2f}x")
    console.print(rt)


def print_breakdown(console: Console, cases: list[Case], parts: dict[str, dict[str, list[float]]], steps: int) -> None:
    table = Table(title="where a training step goes (forward + backward of each part alone, best s/step; "
                        "attention and MLP: block 0 x depth)", title_justify="left")
    for col in ("model", "embedding", "attention", "MLP", "rest (whole step - parts)", "whole step"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for c in cases:
        whole = c.step_time(steps)
        t = {k: min(v) / steps * (n_layers(c) if k in ("attention", "mlp") else 1) for k, v in parts[c.key].items()}
        rest = whole - sum(t.values())
        cells = [f"{t[k]:.3f} ({100 * t[k] / whole:.0f}%)" for k in ("embedding", "attention", "mlp")]
        table.add_row(c.name, *cells, f"{rest:.3f} ({100 * rest / whole:.0f}%)", f"{whole:.3f}")
    console.print(table)


# ------------------------------------------------------------------------------------------------
# one setting


def bench_setting(matched: Matched, setting: Setting, args: argparse.Namespace, device: torch.device,
                  console: Console) -> dict[str, Any]:
    batch = make_batch(setting, matched.patch_size, args.batch_size, device)
    cases = build_cases(matched, setting, batch, device, compile_models=args.compile, compile_mode=args.compile_mode)
    steps = {}
    for case in cases:
        opt = torch.optim.AdamW(case.model.parameters(), lr=1e-4) if args.adamw else None
        steps[case.key] = (lambda c=case, o=opt: train_step(c.forward, batch.y, c.model, o, device, args.dtype))
        case.flops = count_flops(lambda c=case, o=opt: train_step(c.eager_forward, batch.y, c.model, o, device,
                                                                  args.dtype))
        if case.key != "labram":
            case.attention_kernel = f"SDPA, {fused_sdpa_kernel(case.eager_forward, device, args.dtype)}"
    console.print(f"[bold]{setting.label}[/] ({matched.config.name}, batch {args.batch_size}): "
                  f"{args.warmup} warm-up step(s), then {args.repeats} round(s) of {args.steps} step(s) per model...")
    run_round_robin([(c.seconds, steps[c.key]) for c in cases], args.repeats, args.warmup, args.steps, device)

    peak = peak_bf16_flops(device_name(device)) if device.type == "cuda" and args.dtype == "bf16" else float("nan")
    what = "forward + backward + AdamW step" if args.adamw else "forward + backward (no optimizer step)"
    print_cases(console, f"{setting.label} ({setting.n_chans * setting.n_patches} tokens), {matched.config.name} "
                f"(width {matched.config.dim}, depth {matched.config.depth}, {matched.config.heads} heads, patches of "
                f"{matched.patch_size} samples), batch {args.batch_size}, {args.dtype}: {what}",
                cases, args.steps, args.batch_size, peak)
    ratios = ratio_rows(cases)
    print_ratios(console, ratios)
    result: dict[str, Any] = {
        "setting": setting.label, "n_chans": setting.n_chans, "n_patches": setting.n_patches,
        "patch_size": matched.patch_size, "ratios": ratios,
        "models": [case_result(c, args.steps, args.batch_size, peak) for c in cases]}
    if args.breakdown:
        parts = {c.key: {k: [] for k in ("embedding", "attention", "mlp")} for c in cases}
        runs = [(parts[c.key][k], fn) for c in cases
                for k, fn in component_steps(c, batch, setting, device, args.dtype).items()]
        run_round_robin(runs, args.repeats, args.warmup, args.steps, device)
        print_breakdown(console, cases, parts, args.steps)
        result["breakdown_s_per_step"] = {key: {k: min(v) / args.steps for k, v in p.items()}
                                          for key, p in parts.items()}
    return result


# ------------------------------------------------------------------------------------------------
# command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="base", choices=sorted(BackboneConfig.PRESETS),
                        help="width/depth/heads of both models (default base: 200/12/10, as LaBraM-base)")
    parser.add_argument("--channels", type=int, nargs="+", default=[22, 62], choices=sorted(MONTAGES),
                        help="montages to time (default 22 62)")
    parser.add_argument("--patches", type=int, default=4, help="time patches per window (default 4: 4 s at base)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 8 on CPU, 256 on CUDA")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    parser.add_argument("--dtype", default=None, choices=("fp32", "bf16"),
                        help="fp32, or bf16 autocast (default fp32 on CPU, bf16 on CUDA)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default all cores)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per timed run (default 3)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps per model (default 2; 3 with --compile)")
    parser.add_argument("--adamw", action="store_true", help="include an AdamW step in every training step")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models (FLOPs counted eagerly)")
    parser.add_argument("--compile-mode", default=None,
                        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                        help="torch.compile mode (reduce-overhead and max-autotune use CUDA graphs); implies --compile")
    parser.add_argument("--dim", type=int, default=None, help="override the preset's width (both models)")
    parser.add_argument("--heads", type=int, default=None,
                        help="override the preset's heads (both models); criss-cross needs an even number")
    parser.add_argument("--breakdown", action="store_true", help="also time embedding / attention / MLP alone")
    parser.add_argument("--quick", action="store_true", help="one round of 2 steps, 22 channels only")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.batch_size = args.batch_size or (256 if cuda else 8)
    args.dtype = args.dtype or ("bf16" if cuda else "fp32")
    args.compile = args.compile or args.compile_mode is not None
    args.warmup = args.warmup if args.warmup is not None else (3 if args.compile else 2)
    if args.quick:
        args.repeats, args.steps = 1, 2
        args.warmup = args.warmup if args.compile else min(args.warmup, 1)  # compiling takes the first steps
        args.channels = args.channels[:1]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    torch.set_num_threads(args.threads)
    console = Console(width=None if Console().is_terminal else 200)
    load_before = os.getloadavg()
    console.print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC | {device_name(device)} | {os.cpu_count()} cores, "
                  f"{torch.get_num_threads()} torch threads | load average {load_before[0]:.2f} {load_before[1]:.2f} "
                  f"{load_before[2]:.2f} | torch {torch.__version__} | braindecode {braindecode.__version__} | "
                  f"MNE {mne.__version__}" + (f" | torch.compile ({args.compile_mode or 'default'})" if args.compile else ""))
    matched = matched_configs(args.preset, dim=args.dim, heads=args.heads)
    results = [bench_setting(matched, Setting(n, args.patches, MONTAGES[n]), args, device, console)
               for n in args.channels]
    load_after = os.getloadavg()
    console.print(f"best and median of {args.repeats} timed run(s) of {args.steps} step(s) per model, round robin; "
                  f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({
            "device": device_name(device), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "braindecode": braindecode.__version__, "preset": args.preset,
            "batch_size": args.batch_size, "dtype": args.dtype, "adamw": args.adamw, "compile": args.compile,
            "compile_mode": args.compile_mode, "dim": matched.config.dim, "heads": matched.config.heads,
            "load_before": load_before, "load_after": load_after, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
