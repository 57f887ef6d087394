"""Tokenizer quality on held-out windows, side by side with the μ-law baseline at equal bitrate.

::

    report = tokenizer_report(["runs/rvq_base", "mulaw"], ["heldout/synthetic/index.json",
                              "heldout/physionet/index.json"], out="runs/tokenizer_report")
    # -> out/report.json, out/report.md, out/<dataset>.png, and a rich table on the console

``neurofm tokenizer report`` is the same call. Each entry of ``tokenizers`` is a registered preset
(``mulaw``, ``rvq_tiny``...) or a folder saved by ``RVQTokenizer.save_pretrained``. A tokenizer with
several levels (RVQ with quantiser dropout) is scored at every ``n_q`` from 1 to its ``n_q``: one
bitrate each. Every such operating point gets the μ-law baseline at the same bitrate or the nearest
lower one (:func:`~neurofm.tokenizers.mulaw.mulaw_at_bitrate`; with ``calibration`` data its
(bits, decimation) is chosen on those training windows). Each dataset is scored separately, on up to
``max_windows`` windows drawn from its shards with a fixed seed.

Scores (:mod:`neurofm.tokenizers.metrics`): NMSE, Pearson r, SI-SDR, relative band-power error per
band, code usage and perplexity per level, bits/s per channel, encode and decode windows per second
(batches of ``batch_size`` windows on ``device``, after one untimed warm-up batch).

"Better than μ-law" at an operating point means both a higher mean PCC and a lower mean NMSE.
The targets of a trained tokenizer (the tokenizer issue) are checked at its full ``n_q``: PCC >= 0.95,
>= 80% of the codes used in every level, and better than μ-law at every bitrate.
"""

from __future__ import annotations

import inspect as pyinspect
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor

from ..pipelines.loader import Batch, ShardIndex, collate_samples, load_index
from .base import TOKENIZERS, Tokenizer, build_tokenizer
from .metrics import BANDS, CodeUsage, LevelUsage, ReconstructionAccumulator, ReconstructionMetrics, Stopwatch
from .mulaw import MuLawTokenizer, mulaw_at_bitrate

TARGET_PCC = 0.95
TARGET_USAGE = 0.80
DEFAULT_MAX_WINDOWS = 256
CALIBRATION_WINDOWS = 64  # training windows for choosing the baseline's (bits, decimation)
# Modules whose import registers presets; the RVQ one is optional (it may not be installed yet).
PRESET_MODULES = ("neurofm.tokenizers.mulaw", "neurofm.tokenizers.rvq")

Role = Literal["tokenizer", "baseline"]


class TokenizerReportError(ValueError):
    """A report that cannot be made as asked (unknown tokenizer, sampling-rate mismatch, no data)."""


# --------------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class OperatingPoint:
    """One tokenizer at one number of levels, scored on one dataset."""

    dataset: str
    tokenizer: str  # preset name, folder name, or ``mulaw 4b/2`` for a baseline
    role: Role
    n_q: int
    bits_per_second: float  # per channel
    metrics: ReconstructionMetrics
    levels: list[LevelUsage]
    encode_windows_per_s: float
    decode_windows_per_s: float

    @property
    def min_usage(self) -> float:
        return min(level.fraction_used for level in self.levels)


@dataclass(frozen=True)
class Comparison:
    """A tokenizer's operating point against the baseline at the same or the nearest lower bitrate."""

    dataset: str
    tokenizer: str
    n_q: int
    bits_per_second: float
    baseline: str
    baseline_bits_per_second: float
    pcc: float
    baseline_pcc: float
    nmse: float
    baseline_nmse: float
    si_sdr_db: float
    baseline_si_sdr_db: float

    @property
    def better(self) -> bool:
        return self.pcc > self.baseline_pcc and self.nmse < self.baseline_nmse


@dataclass(frozen=True)
class TargetCheck:
    """The issue's targets for one tokenizer at its full ``n_q`` on one dataset."""

    dataset: str
    tokenizer: str
    pcc: float
    min_usage: float
    n_better: int  # operating points better than μ-law
    n_compared: int

    @property
    def pcc_ok(self) -> bool:
        return self.pcc >= TARGET_PCC

    @property
    def usage_ok(self) -> bool:
        return self.min_usage >= TARGET_USAGE

    @property
    def better_ok(self) -> bool:
        return self.n_compared > 0 and self.n_better == self.n_compared


@dataclass
class DatasetReport:
    """Every operating point on one held-out dataset."""

    dataset: str
    index: str
    n_windows: int
    n_chans: int  # the largest channel count among the windows
    window_s: float
    sfreq: float
    points: list[OperatingPoint] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    targets: list[TargetCheck] = field(default_factory=list)
    figure: str | None = None


@dataclass
class TokenizerReport:
    """What :func:`tokenizer_report` wrote: one :class:`DatasetReport` per dataset."""

    datasets: list[DatasetReport]
    out: str
    device: str
    threads: int
    json_path: str = ""
    md_path: str = ""


# --------------------------------------------------------------------------------------------------
# loading


@dataclass
class _Loaded:
    label: str
    tokenizer: Tokenizer
    role: Role


def _import_presets() -> None:
    import importlib

    for module in PRESET_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise  # the module exists but something it imports is missing: a real error


def load_tokenizer(spec: str, sfreq: float) -> Tokenizer:
    """A registered preset (built for ``sfreq`` when its factory takes one) or a saved folder."""
    _import_presets()
    if spec in TOKENIZERS:
        accepts_sfreq = "sfreq" in pyinspect.signature(TOKENIZERS[spec]).parameters
        return build_tokenizer(spec, **({"sfreq": sfreq} if accepts_sfreq else {}))
    if Path(spec).is_dir():
        try:
            from .rvq import RVQTokenizer
        except ModuleNotFoundError as err:
            raise TokenizerReportError(f"{spec} is a folder, but RVQTokenizer cannot be imported ({err})") from err
        return RVQTokenizer.from_pretrained(spec)
    raise TokenizerReportError(f"tokenizer {spec!r} is neither a registered preset ({sorted(TOKENIZERS)}) nor a folder")


def _load_all(specs: Sequence[str], sfreq: float, device: str) -> list[_Loaded]:
    loaded = []
    for spec in specs:
        tok = load_tokenizer(spec, sfreq)
        if not math.isclose(float(tok.sfreq), sfreq):
            raise TokenizerReportError(f"tokenizer {spec!r} works at {tok.sfreq:g} Hz, the data is at {sfreq:g} Hz")
        role: Role = "baseline" if isinstance(tok, MuLawTokenizer) else "tokenizer"
        # a baseline goes by its operating point, so a preset and a matched baseline are one row
        label = tok.name if isinstance(tok, MuLawTokenizer) else _folder_label(spec) if Path(spec).is_dir() else spec
        loaded.append(_Loaded(label, tok.to(device).eval(), role))
    return loaded


def _folder_label(folder: str) -> str:
    """``runs/tokenizer/tiny/tokenizer`` (what ``neurofm tokenizer fit`` writes) -> ``tiny``."""
    path = Path(folder).resolve()
    return path.parent.name if path.name == "tokenizer" else path.name


def read_batches(index: ShardIndex, max_windows: int, batch_size: int) -> list[Batch]:
    """Up to ``max_windows`` windows spread over the shards (fixed seed), as batches of equal length."""
    from ..pipelines.inspect import read_spread

    by_length: dict[int, list] = {}
    for sample in read_spread(index, max_windows):
        by_length.setdefault(sample.x.shape[-1], []).append(sample)
    return [collate_samples(group[i: i + batch_size])
            for group in by_length.values() for i in range(0, len(group), batch_size)]


def calibration_windows(paths: Sequence[str], max_windows: int = CALIBRATION_WINDOWS) -> Tensor:
    """Good channels of up to ``max_windows`` windows per dataset, one channel per row: (P, 1, T)."""
    rows = []
    for path in paths:
        for batch in read_batches(load_index(path), max_windows, batch_size=max_windows):
            rows.append(batch.x[batch.chan_mask])  # (P, T)
    lengths = {r.shape[-1] for r in rows}
    if len(lengths) != 1:
        raise TokenizerReportError(f"calibration windows must share one length, got {sorted(lengths)}")
    return torch.cat(rows).unsqueeze(1)  # (P, 1, T)


# --------------------------------------------------------------------------------------------------
# scoring


@dataclass
class _Scored:
    point: OperatingPoint
    accumulator: ReconstructionAccumulator
    example: Tensor  # (C, T): the reconstruction of the first window


@dataclass
class _Level:
    """What is accumulated for one number of levels while the batches go by."""

    n_q: int
    acc: ReconstructionAccumulator
    usage: CodeUsage
    dec: Stopwatch = field(default_factory=Stopwatch)
    example: Tensor | None = None


def _prefix_codes_match(tok: Tokenizer, x: Tensor, levels: Sequence[int]) -> bool:
    """Whether ``encode(x, n_q=q)`` is the first q levels of ``encode(x)`` (true for residual VQ)."""
    full = tok.encode(x, n_q=max(levels))
    return all(torch.equal(tok.encode(x, n_q=q), full[:, :, :q]) for q in levels if q != max(levels))


def score(tok: Tokenizer, label: str, role: Role, levels: Sequence[int], batches: Sequence[Batch], dataset: str,
          sfreq: float, device: str = "cpu") -> list[_Scored]:
    """Encode and decode every batch, decoding the first q levels for each q in ``levels``.

    Residual quantisers are encoded once at the deepest level and decoded from prefixes of the codes,
    after checking on the first batch that ``encode(x, n_q=q)`` is that prefix; otherwise every q
    is encoded on its own. The first batch also runs once untimed (warm-up: lazy init, caches).
    """
    states = [_Level(q, ReconstructionAccumulator(sfreq), CodeUsage(q, tok.codebook_size)) for q in levels]
    deepest = max(levels)
    enc = Stopwatch()
    with torch.inference_mode():
        prefix = _prefix_codes_match(tok, batches[0].x.to(device), levels)  # also the warm-up
        for batch in batches:
            x = batch.x.to(device)  # (B, C, T)
            full = enc.time(lambda: tok.encode(x, n_q=deepest), len(batch)) if prefix else None  # (B, C, n_q, F)
            for st in states:
                codes = full[:, :, : st.n_q] if prefix else enc.time(lambda: tok.encode(x, n_q=st.n_q), 0)
                recon = st.dec.time(lambda: tok.decode(codes, n_samples=x.shape[-1]), len(batch))  # (B, C, T)
                st.acc.add(batch.x, recon.cpu(), batch.chan_mask)
                st.usage.add(codes.cpu(), batch.chan_mask)
                st.example = recon[0].cpu() if st.example is None else st.example
        if not prefix:  # each window was encoded once per depth: the rate is for all depths together
            enc.items = sum(len(b) for b in batches)
    return [_Scored(_point(tok, label, role, st, enc, dataset), st.acc, st.example) for st in states]


def _point(tok: Tokenizer, label: str, role: Role, st: _Level, enc: Stopwatch, dataset: str) -> OperatingPoint:
    return OperatingPoint(
        dataset=dataset, tokenizer=label, role=role, n_q=st.n_q, bits_per_second=tok.bits_per_second(st.n_q),
        metrics=st.acc.summary(), levels=st.usage.levels(), encode_windows_per_s=enc.rate,
        decode_windows_per_s=st.dec.rate,
    )


def _compare(p: OperatingPoint, b: OperatingPoint) -> Comparison:
    return Comparison(
        dataset=p.dataset, tokenizer=p.tokenizer, n_q=p.n_q, bits_per_second=p.bits_per_second,
        baseline=b.tokenizer, baseline_bits_per_second=b.bits_per_second,
        pcc=p.metrics.pcc, baseline_pcc=b.metrics.pcc, nmse=p.metrics.nmse, baseline_nmse=b.metrics.nmse,
        si_sdr_db=p.metrics.si_sdr_db, baseline_si_sdr_db=b.metrics.si_sdr_db,
    )


def _targets(points: Sequence[OperatingPoint], comparisons: Sequence[Comparison]) -> list[TargetCheck]:
    checks = []
    for label in dict.fromkeys(p.tokenizer for p in points if p.role == "tokenizer"):
        full = max((p for p in points if p.tokenizer == label), key=lambda p: p.n_q)
        mine = [c for c in comparisons if c.tokenizer == label]
        checks.append(TargetCheck(dataset=full.dataset, tokenizer=label, pcc=full.metrics.pcc,
                                  min_usage=full.min_usage, n_better=sum(c.better for c in mine),
                                  n_compared=len(mine)))
    return checks


def _levels_to_score(tok: Tokenizer, role: Role, n_q: Sequence[int] | None) -> list[int]:
    if role == "baseline" or n_q is None:
        return list(range(1, tok.n_q + 1))
    wanted = [q for q in n_q if 1 <= q <= tok.n_q]
    if not wanted:
        raise TokenizerReportError(f"none of n_q={list(n_q)} is in [1, {tok.n_q}]")
    return wanted


def report_dataset(index_path: str, tokenizers: Sequence[str], *, max_windows: int, batch_size: int,
                   bitrates: Sequence[float], calibration: Tensor | None, n_q: Sequence[int] | None,
                   device: str, out: Path, console: Console, figure: bool = True) -> DatasetReport:
    """Score every tokenizer and its matched baselines on one dataset; draws its figure."""
    index = load_index(index_path)
    batches = read_batches(index, max_windows, batch_size)
    if not batches:
        raise TokenizerReportError(f"{index_path}: no windows to score")
    scored: list[_Scored] = []
    for item in _load_all(tokenizers, index.sfreq, device):
        levels = _levels_to_score(item.tokenizer, item.role, n_q)
        console.print(f"  {index.dataset}: {item.label}, n_q {', '.join(map(str, levels))}")
        scored += score(item.tokenizer, item.label, item.role, levels, batches, index.dataset, index.sfreq, device)
    baselines, matched = _score_baselines(scored, bitrates, batches, index, calibration, device, console)
    comparisons = [_compare(s.point, baselines[matched[s.point.bits_per_second]].point)
                   for s in scored if s.point.role == "tokenizer"]
    all_scored = scored + [b for b in baselines.values() if not any(b is s for s in scored)]
    points = [s.point for s in all_scored]
    rep = DatasetReport(
        dataset=index.dataset, index=str(index.path), n_windows=sum(len(b) for b in batches),
        n_chans=max(b.x.shape[1] for b in batches), window_s=batches[0].x.shape[-1] / index.sfreq,
        sfreq=index.sfreq, points=points, comparisons=comparisons, targets=_targets(points, comparisons),
    )
    if figure:
        from .report_figure import plot_dataset

        rep.figure = str(plot_dataset(rep, all_scored, batches[0], out / f"{_safe(index.dataset)}.png"))
    return rep


def _score_baselines(scored: Sequence[_Scored], bitrates: Sequence[float], batches: Sequence[Batch],
                     index: ShardIndex, calibration: Tensor | None, device: str, console: Console
                     ) -> tuple[dict[str, _Scored], dict[float, str]]:
    """The baseline at each tokenizer bitrate and at ``bitrates``, scored once per (bits, decimation).

    Returns baselines by name (those given as tokenizers included) and the baseline name per bitrate.
    """
    wanted = [s.point.bits_per_second for s in scored if s.point.role == "tokenizer"] + list(bitrates)
    out: dict[str, _Scored] = {s.point.tokenizer: s for s in scored if s.point.role == "baseline"}
    matched: dict[float, str] = {}
    for bps in dict.fromkeys(wanted):
        tok = mulaw_at_bitrate(bps, index.sfreq, calibration=calibration).to(device)
        matched[bps] = tok.name
        if tok.name not in out:
            console.print(f"  {index.dataset}: baseline {tok.name} ({tok.bits_per_second():g} bits/s)")
            out[tok.name] = score(tok, tok.name, "baseline", [1], batches, index.dataset, index.sfreq, device)[0]
    return out, matched


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


# --------------------------------------------------------------------------------------------------
# the whole report


def tokenizer_report(
    tokenizers: Sequence[str],
    data: Sequence[str],
    out: str = "runs/tokenizer_report",
    max_windows: int = DEFAULT_MAX_WINDOWS,
    bitrates: Sequence[float] = (),
    calibration: Sequence[str] | None = None,
    n_q: Sequence[int] | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    figures: bool = True,
    console: Console | None = None,
) -> TokenizerReport:
    """Score ``tokenizers`` on each held-out dataset in ``data``; write json, md and one PNG per dataset.

    Args:
        tokenizers: registered preset names or saved tokenizer folders.
        data: ``index.json`` paths (or folders) of held-out prepared datasets, reported separately.
        out: output folder.
        max_windows: windows scored per dataset.
        bitrates: extra bits/s per channel at which to score the μ-law baseline (its own curve).
        calibration: training datasets on which the baseline's (bits, decimation) is chosen; without
            them the fixed rule of ``mulaw_at_bitrate`` is used.
        n_q: levels to score for multi-level tokenizers (default: every n_q from 1).
        batch_size: windows per encode/decode call (also the timing unit).
        device: torch device.
        figures: draw one PNG per dataset.
        console: where the tables go (default: the terminal, 160 columns when not a terminal).
    """
    if not tokenizers or not data:
        raise TokenizerReportError("give at least one tokenizer and one dataset")
    if max_windows < 1 or batch_size < 1:
        raise TokenizerReportError(f"{max_windows=} and {batch_size=} must be >= 1")
    console = console or _console()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    calib = calibration_windows(calibration) if calibration else None
    datasets = [report_dataset(path, tokenizers, max_windows=max_windows, batch_size=batch_size,
                               bitrates=bitrates, calibration=calib, n_q=n_q, device=device, out=out_dir,
                               console=console, figure=figures) for path in data]
    rep = TokenizerReport(datasets=datasets, out=str(out_dir), device=device, threads=torch.get_num_threads())
    rep.json_path, rep.md_path = str(out_dir / "report.json"), str(out_dir / "report.md")
    Path(rep.json_path).write_text(json.dumps(report_dict(rep), indent=1, allow_nan=True))
    Path(rep.md_path).write_text(report_markdown(rep))
    print_report(rep, console)
    return rep


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=160)  # logs and pipes: no 80-column squeeze


def report_dict(rep: TokenizerReport) -> dict:
    """The report as JSON-ready data, with the derived flags (``better``, target checks) spelled out."""
    d = asdict(rep)
    for ds, ds_dict in zip(rep.datasets, d["datasets"]):
        for c, c_dict in zip(ds.comparisons, ds_dict["comparisons"]):
            c_dict["better"] = c.better
        for t, t_dict in zip(ds.targets, ds_dict["targets"]):
            t_dict.update(pcc_ok=t.pcc_ok, usage_ok=t.usage_ok, better_ok=t.better_ok)
    return d


# --------------------------------------------------------------------------------------------------
# tables


BAND_SHORT = {"delta": "δ", "theta": "θ", "alpha": "α", "beta": "β", "gamma": "γ"}
KEY_COLUMNS = ["tokenizer", "n_q", "bits/s"]
POINT_COLUMNS = [*KEY_COLUMNS, "PCC", "NMSE", "SI-SDR dB", "codes used", "perplexity", "enc win/s", "dec win/s"]
BAND_COLUMNS = [*KEY_COLUMNS, *(f"{BAND_SHORT[b]} {b}" for b in BANDS)]
COMPARISON_COLUMNS = ["tokenizer", "n_q", "bits/s", "μ-law (bits/s)", "PCC", "NMSE", "SI-SDR dB", "better"]


def _fmt(v: float, digits: int = 3) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _key(p: OperatingPoint) -> list[str]:
    return [p.tokenizer, str(p.n_q), f"{p.bits_per_second:.4g}"]


def _point_row(p: OperatingPoint) -> list[str]:
    """Waveform scores, the lowest code usage and perplexity (of K) over the levels, speed."""
    m = p.metrics
    used, ppl = min(lv.fraction_used for lv in p.levels), min(lv.perplexity for lv in p.levels)
    return [*_key(p), _fmt(m.pcc), _fmt(m.nmse), _fmt(m.si_sdr_db, 1), f"{100 * used:.0f}%",
            f"{ppl:.1f}/{p.levels[0].codebook_size}", f"{p.encode_windows_per_s:.1f}",
            f"{p.decode_windows_per_s:.1f}"]


def _band_row(p: OperatingPoint) -> list[str]:
    return [*_key(p), *(f"{100 * p.metrics.band_power_error[b]:.1f}%" if math.isfinite(p.metrics.band_power_error[b])
                        else "—" for b in BANDS)]


def _comparison_row(c: Comparison) -> list[str]:
    """Each score as ``tokenizer / μ-law``."""
    return [c.tokenizer, str(c.n_q), f"{c.bits_per_second:.4g}", f"{c.baseline.removeprefix('mulaw ')} "
            f"({c.baseline_bits_per_second:.4g})", f"{_fmt(c.pcc)} / {_fmt(c.baseline_pcc)}",
            f"{_fmt(c.nmse)} / {_fmt(c.baseline_nmse)}", f"{_fmt(c.si_sdr_db, 1)} / {_fmt(c.baseline_si_sdr_db, 1)}",
            "yes" if c.better else "no"]


def _target_line(t: TargetCheck) -> str:
    def mark(ok: bool) -> str:
        return "met" if ok else "NOT met"

    return (f"{t.tokenizer}: PCC {t.pcc:.3f} (>= {TARGET_PCC}: {mark(t.pcc_ok)}); codes used in the worst level "
            f"{100 * t.min_usage:.0f}% (>= {100 * TARGET_USAGE:.0f}%: {mark(t.usage_ok)}); better than μ-law at "
            f"{t.n_better} of {t.n_compared} bitrates ({mark(t.better_ok)})")


def _sorted_points(ds: DatasetReport) -> list[OperatingPoint]:
    """Tokenizers first (in the order given, by depth), then the baselines by bitrate."""
    order = {label: i for i, label in enumerate(dict.fromkeys(p.tokenizer for p in ds.points))}
    return sorted(ds.points, key=lambda p: (p.role != "tokenizer", order[p.tokenizer] if p.role == "tokenizer"
                                            else 0, p.bits_per_second))


def _title(ds: DatasetReport) -> str:
    return (f"{ds.dataset}: {ds.n_windows} windows of {ds.window_s:g} s x up to {ds.n_chans} channels "
            f"at {ds.sfreq:g} Hz")


def _rich_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    t = Table(title=title)
    for col in columns:
        t.add_column(col, justify="left" if col in ("tokenizer", "μ-law (bits/s)") else "right")
    for row in rows:
        t.add_row(*row)
    return t


def print_report(rep: TokenizerReport, console: Console | None = None) -> None:
    """Rich tables: every operating point, band-power errors, the head-to-head comparison, targets."""
    console = console or Console()
    for ds in rep.datasets:
        points = _sorted_points(ds)
        console.print(_rich_table(_title(ds), POINT_COLUMNS, [_point_row(p) for p in points]))
        console.print(_rich_table(f"{ds.dataset}: relative band-power error |ΔP|/P", BAND_COLUMNS,
                                  [_band_row(p) for p in points]))
        if ds.comparisons:
            console.print(_rich_table(f"{ds.dataset}: tokenizer / μ-law at equal bits/s per channel",
                                      COMPARISON_COLUMNS, [_comparison_row(c) for c in ds.comparisons]))
        for target in ds.targets:
            console.print(f"targets on {ds.dataset}: {_target_line(target)}", soft_wrap=True)
        if ds.figure:
            console.print(f"figure: {ds.figure}", soft_wrap=True)
    console.print(f"speed: {rep.device}, {rep.threads} threads; report: {rep.md_path}", soft_wrap=True)


def _md_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def report_markdown(rep: TokenizerReport) -> str:
    parts = ["# Tokenizer report", "",
             f"Speed measured on {rep.device} with {rep.threads} threads. PCC, NMSE, SI-SDR and band-power "
             "errors are means over (window, channel) pairs; `codes used` and `perplexity` are the lowest over "
             "the levels; bits/s are per channel.", ""]
    for ds in rep.datasets:
        points = _sorted_points(ds)
        parts += [f"## {_title(ds)}", "", f"Index: `{ds.index}`", "",
                  _md_table(POINT_COLUMNS, [_point_row(p) for p in points]), "",
                  "Relative band-power error |ΔP|/P:", "",
                  _md_table(BAND_COLUMNS, [_band_row(p) for p in points]), ""]
        if ds.comparisons:
            parts += ["Tokenizer / μ-law at equal bits/s per channel (μ-law at the same or the nearest lower rate):",
                      "", _md_table(COMPARISON_COLUMNS, [_comparison_row(c) for c in ds.comparisons]), ""]
        parts += [f"- targets: {_target_line(t)}" for t in ds.targets]
        if ds.figure:
            parts += ["", f"![{ds.dataset}]({Path(ds.figure).name})", ""]
    return "\n".join(parts) + "\n"


__all__ = ["tokenizer_report", "TokenizerReportError", "TokenizerReport", "DatasetReport", "OperatingPoint",
           "Comparison", "TargetCheck", "load_tokenizer", "score", "read_batches", "calibration_windows",
           "print_report", "report_markdown", "report_dict"]
