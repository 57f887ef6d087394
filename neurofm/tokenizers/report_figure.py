"""The tokenizer report's figure for one dataset (1500 x 1000 px PNG).

Top: (a) one held-out window, original against the tokenizer and the μ-law baseline at the matched
bitrate, (b) their mean power spectra over every scored (window, channel) pair. Bottom: the
rate–distortion curves (c) PCC and (d) NMSE against bits/s per channel, and (e) the relative
band-power error per band at the matched bitrate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..pipelines.inspect import scale_bar, spectrum_channels  # as in the dataset figure
from ..pipelines.loader import Batch
from .metrics import BANDS

if TYPE_CHECKING:
    from .report import DatasetReport, _Scored

FIGSIZE_IN = (15.0, 10.0)
DPI = 100  # 1500 x 1000 pixels
TRACE_SECONDS = 2.0  # of the window: at 1500 px wide, longer hides the sample-level detail
TRACE_SPACING_RANGE = (1.0, 99.0)  # traces sit this percentile range of the original apart: rarely touch
SPECTRUM_FLOOR_DB = 20.0  # show this far below the original's 5th-percentile power: a decimated
# codec's reconstruction has nothing above its Nyquist frequency and would otherwise squash the axis
N_TRACE_CHANNELS = 4
ORIGINAL, TOKENIZER, BASELINE = "black", "tab:blue", "tab:orange"
CURVE_COLORS = ("tab:blue", "tab:green", "tab:purple", "tab:red", "tab:brown")  # tokenizers in order


def _nice_up(value: float) -> float:
    """The 1-2-5 number at or above ``value`` (trace spacing, scale bars)."""
    if not np.isfinite(value) or value <= 0:
        return 1.0
    exp = 10 ** np.floor(np.log10(value))
    return float(min(m for m in (1, 2, 5, 10) if m * exp >= value * (1 - 1e-9)) * exp)


def _focus(rep: DatasetReport, scored: Sequence[_Scored]) -> tuple[_Scored | None, _Scored | None]:
    """The first tokenizer at its full n_q and the baseline matched to it (else the first baseline)."""
    tokenizers = [s for s in scored if s.point.role == "tokenizer"]
    if not tokenizers:
        return None, next(s for s in scored if s.point.role == "baseline")
    label = tokenizers[0].point.tokenizer
    main = max((s for s in tokenizers if s.point.tokenizer == label), key=lambda s: s.point.n_q)
    match = next(c for c in rep.comparisons if c.tokenizer == label and c.n_q == main.point.n_q)
    base = next(s for s in scored if s.point.role == "baseline" and s.point.tokenizer == match.baseline)
    return main, base


def _color(s: _Scored) -> str:
    return TOKENIZER if s.point.role == "tokenizer" else BASELINE


def _label(s: _Scored) -> str:
    p = s.point
    levels = f", n_q={p.n_q}" if p.role == "tokenizer" else ""
    return f"{p.tokenizer}{levels} ({p.bits_per_second:.4g} bits/s, PCC {p.metrics.pcc:.3f})"


def _plot_traces(ax, batch: Batch, shown: Sequence[_Scored], sfreq: float) -> None:
    valid = batch.chan_mask[0].numpy()
    names = [n for n, ok in zip(batch.ch_names[0], valid) if ok]
    picks = [batch.ch_names[0].index(n) for n in spectrum_channels(names, N_TRACE_CHANNELS)]
    n = min(batch.x.shape[-1], int(round(TRACE_SECONDS * sfreq)))
    t = np.arange(n) / sfreq
    x = batch.x[0].numpy()
    lo, hi = np.percentile(x[picks, :n], TRACE_SPACING_RANGE, axis=1)  # (n_picks,) each
    spacing = _nice_up(float(np.max(hi - lo)))
    for k, i in enumerate(picks):
        offset = -k * spacing
        ax.plot(t, x[i, :n] + offset, color=ORIGINAL, lw=1.3, label="original" if k == 0 else None)
        for s in shown:
            ax.plot(t, s.example[i, :n].numpy() + offset, color=_color(s), lw=0.9, alpha=0.9,
                    label=_label(s) if k == 0 else None)
    ax.set_yticks(-spacing * np.arange(len(picks)), [batch.ch_names[0][i] for i in picks])
    ax.set_ylim(-spacing * (len(picks) - 0.4), spacing * 0.9)
    ax.set_xlim(0, t[-1])
    ax.set_xlabel("time (s)")
    scale_bar(ax, spacing / 2, "µV")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=1, fontsize=8, frameon=False)
    ax.set_title(f"(a) held-out window {batch.key[0]}, first {t[-1] + 1 / sfreq:g} s", fontsize=10)


def _plot_spectra(ax, shown: Sequence[_Scored], sfreq: float) -> None:
    freqs, psd_orig, _ = shown[0].accumulator.mean_psd()
    band = freqs >= 1.0
    for k, (name, (lo, hi)) in enumerate(BANDS.items()):
        if lo < sfreq / 2:
            ax.axvspan(lo, min(hi, sfreq / 2), color="0.93" if k % 2 else "0.97", lw=0)
            ax.text((lo + min(hi, sfreq / 2)) / 2, 0.98, name, transform=ax.get_xaxis_transform(), ha="center",
                    va="top", fontsize=7, color="0.35")
    orig_db = 10 * np.log10(np.maximum(psd_orig[band], 1e-12))
    ax.plot(freqs[band], orig_db, color=ORIGINAL, lw=1.6, label="original")
    for s in shown:
        _, _, psd_rec = s.accumulator.mean_psd()
        ax.plot(freqs[band], 10 * np.log10(np.maximum(psd_rec[band], 1e-12)), color=_color(s), lw=1.1,
                label=s.point.tokenizer)
    ax.set_ylim(np.percentile(orig_db, 5) - SPECTRUM_FLOOR_DB, orig_db.max() + 8)
    ax.set_xscale("log")
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("power (dB re 1 µV²/Hz)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, frameon=False, loc="lower left")
    ax.set_title(f"(b) mean spectra over {shown[0].point.metrics.n_pairs} window-channels (Welch)", fontsize=10)


def _rate_curves(ax, scored: Sequence[_Scored], metric: str) -> None:
    labels = list(dict.fromkeys(s.point.tokenizer for s in scored if s.point.role == "tokenizer"))
    for label, color in zip(labels, CURVE_COLORS):
        pts = sorted((s.point for s in scored if s.point.tokenizer == label), key=lambda p: p.bits_per_second)
        ax.plot([p.bits_per_second for p in pts], [getattr(p.metrics, metric) for p in pts], "o-", color=color,
                label=label, ms=5)
        for p in pts:
            ax.annotate(f"{p.n_q}", (p.bits_per_second, getattr(p.metrics, metric)), xytext=(3, 3),
                        textcoords="offset points", fontsize=7, color=color)
    base = sorted((s.point for s in scored if s.point.role == "baseline"), key=lambda p: p.bits_per_second)
    ax.plot([p.bits_per_second for p in base], [getattr(p.metrics, metric) for p in base], "s--", color=BASELINE,
            label="μ-law", ms=5)
    for p in base:
        ax.annotate(p.tokenizer.removeprefix("mulaw "), (p.bits_per_second, getattr(p.metrics, metric)),
                    xytext=(3, -9), textcoords="offset points", fontsize=7, color=BASELINE)
    _log2_rate_axis(ax, [s.point.bits_per_second for s in scored])
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, frameon=False)


def _log2_rate_axis(ax, rates: Sequence[float]) -> None:
    """Bits/s on a log2 axis with ticks at powers of 2 times 100 (low RVQ rates would bunch up on a
    linear axis)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xscale("log", base=2)
    lo, hi = min(rates), max(rates)
    ticks = [t for t in (12.5, 25, 50, 100, 200, 400, 800, 1600, 3200, 6400) if lo / 1.5 <= t <= hi * 1.5]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.set_xlim(lo / 1.25, hi * 1.25)
    ax.set_xlabel("bits/s per channel (log scale)")


def _plot_band_errors(ax, shown: Sequence[_Scored]) -> None:
    x = np.arange(len(BANDS))
    width = 0.8 / len(shown)
    for k, s in enumerate(shown):
        errors = [100 * s.point.metrics.band_power_error[b] for b in BANDS]
        ax.bar(x + (k - (len(shown) - 1) / 2) * width, errors, width, color=_color(s), label=s.point.tokenizer)
    ax.set_xticks(x, [f"{b}\n{lo:g}–{hi:g} Hz" for b, (lo, hi) in BANDS.items()], fontsize=8)
    ax.set_ylabel("|ΔP| / P (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title("(e) band-power error at the matched bitrate", fontsize=10)


def plot_dataset(rep: DatasetReport, scored: Sequence[_Scored], batch: Batch, png: Path) -> Path:
    """Write the figure of one dataset (panels in the module docstring); returns its path."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    main, base = _focus(rep, scored)
    shown = [s for s in (main, base) if s is not None]
    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(2, 6, height_ratios=[1.15, 1.0])
    _plot_traces(fig.add_subplot(grid[0, :4]), batch, shown, rep.sfreq)
    _plot_spectra(fig.add_subplot(grid[0, 4:]), shown, rep.sfreq)
    ax_pcc, ax_nmse = fig.add_subplot(grid[1, :2]), fig.add_subplot(grid[1, 2:4])
    _rate_curves(ax_pcc, scored, "pcc")
    ax_pcc.set_ylabel("Pearson r (mean)")
    ax_pcc.set_title("(c) correlation vs bitrate (labels: n_q; bits/decimation)", fontsize=10)
    _rate_curves(ax_nmse, scored, "nmse")
    ax_nmse.set_yscale("log")
    ax_nmse.set_ylabel("NMSE (mean)")
    ax_nmse.set_title("(d) normalised error vs bitrate", fontsize=10)
    _plot_band_errors(fig.add_subplot(grid[1, 4:]), shown)
    fig.suptitle(f"{rep.dataset}: {rep.n_windows} held-out windows of {rep.window_s:g} s, {rep.sfreq:g} Hz — "
                 "tokenizer vs μ-law at equal bits/s per channel", fontsize=13, weight="bold")
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=DPI)
    return png
