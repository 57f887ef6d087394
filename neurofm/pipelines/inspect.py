"""What is in a prepared dataset: counts as tables (``neurofm inspect INDEX``) and one figure (``--png``).

::

    summary = summarize_index("runs/shards/synthetic_mi")   # IndexSummary (typed, below)
    print_summary(summary)                                   # rich tables
    plot_index("runs/shards/synthetic_mi", "mi.png")         # 1200 x 800 px PNG

Counts per subject, recordings, channel sets, shard sizes come from ``index.json`` alone; class counts
need the samples themselves, so they are read up to ``max_samples`` (from shards drawn at random
with a fixed seed, so a capped count still covers every part of the dataset) and the summary says
when it was capped.

The figure has four panels: (a) one example window per class, (b) class-mean log power spectra at
a few informative channels, (c) windows per subject, (d) the positions of the most common channel
set with its bad channels marked.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from .loader import PathLike, Sample, ShardIndex, ShardInfo, iter_samples, load_index
from .tario import is_streamed

UNLABELLED = "unlabelled"
# Channels where the usual effects show: sensorimotor mu/beta ERD (C3/Cz/C4, Pfurtscheller & Lopes da
# Silva 1999), then one posterior channel for alpha and visual responses.
SPECTRUM_CENTRAL = ("C3", "Cz", "C4")
SPECTRUM_POSTERIOR = ("Oz", "O1", "O2", "Pz", "POz")
N_SPECTRUM_CHANNELS = 4
# Example traces, front to back, so the stack reads like a montage from the nose down.
TRACE_PREFERENCE = ("Fz", "FCz", "C3", "Cz", "C4", "Pz", "Oz", "O1", "O2")
N_TRACE_CHANNELS = 6
MAX_EXAMPLE_CLASSES = 4  # more panels than this would be too narrow to read at 12 in wide
UNITS = {"eeg": "µV", "mag": "fT", "grad": "fT/cm"}  # what the shards store (docs/shard-format.md)
FIGSIZE_IN = (12.0, 8.0)
DPI = 100  # 1200 x 800 pixels
WELCH_SEGMENT_S = 2.0  # 0.5 Hz resolution; shorter for windows under 4 s (see _Spectra.add)
SPECTRUM_MAX_HZ = 45.0  # above the beta band and below 50/60 Hz line noise
TRACE_SPACING_STDS = 6.0  # trace offset in robust standard deviations: peaks rarely touch
MAX_POSITION_LABELS = 70  # label channel names on the montage up to a 10-10 cap; MEG is unreadable


# --------------------------------------------------------------------------------------------------
# summary


@dataclass(frozen=True)
class ChannelSetSummary:
    """One channel set of ``index.json``: its names and how many recordings use it."""

    ch_names: list[str]
    n_recordings: int

    @property
    def n_chans(self) -> int:
        return len(self.ch_names)


@dataclass
class IndexSummary:
    """What a prepared dataset holds. Per-subject counts are exact (index.json); class counts are
    over the ``n_read`` windows read, which is all of them unless ``capped``."""

    index: Path
    dataset: str
    paradigm: str | None
    n_samples: int
    n_recordings: int
    n_shards: int
    subject_counts: dict[str, int]  # subject -> windows
    class_counts: dict[str, int]  # label -> windows among the n_read read, UNLABELLED included
    n_read: int
    capped: bool
    channel_sets: list[ChannelSetSummary]  # most used first
    sfreq: float
    window_s: float | None  # None when the dataset has no window (and none could be read)
    preproc_hash: str | None
    shard_bytes: int | None  # None when a shard is remote or missing, see n_shards_not_local
    n_shards_not_local: int = 0
    classes: list[str] = field(default_factory=list)  # index.json order (label_id order)

    @property
    def subjects(self) -> list[str]:
        return list(self.subject_counts)


def summarize_index(index_path: PathLike, max_samples: int = 20_000) -> IndexSummary:
    """Read ``index.json`` and up to ``max_samples`` windows (for class counts) of a prepared dataset."""
    if max_samples < 1:
        raise ValueError(f"{max_samples=} must be >= 1")
    index = load_index(index_path)
    labels: Counter[str] = Counter()
    n_times: int | None = None
    for sample in read_spread(index, max_samples):
        labels[label_name(sample, index.classes)] += 1
        n_times = n_times or sample.x.shape[1]
    shard_bytes, n_not_local = _shard_bytes(index.shards)
    n_read = sum(labels.values())
    return IndexSummary(
        index=index.path, dataset=index.dataset, paradigm=index.paradigm, n_samples=index.n_samples,
        n_recordings=int(index.raw.get("n_recordings") or len({s.recording or s.url for s in index.shards})),
        n_shards=len(index.shards), subject_counts=subject_counts(index),
        class_counts=_ordered_counts(labels, index.classes), n_read=n_read, capped=n_read < index.n_samples,
        channel_sets=_channel_sets(index), sfreq=index.sfreq, window_s=_window_s(index, n_times),
        preproc_hash=index.preproc_hash, shard_bytes=shard_bytes, n_shards_not_local=n_not_local,
        classes=list(index.classes),
    )


def label_name(sample: Sample, classes: Sequence[str]) -> str:
    """The class name of a window (its ``label``, else ``classes[label_id]``), or ``UNLABELLED``."""
    if sample.meta.get("label") is not None:
        return str(sample.meta["label"])
    if 0 <= sample.label < len(classes):
        return classes[sample.label]
    return UNLABELLED if sample.label < 0 else f"label_id {sample.label}"


def subject_counts(index: ShardIndex) -> dict[str, int]:
    """Windows per subject from the shard list, in the index's subject order."""
    counts = dict.fromkeys(index.subjects, 0)
    for shard in index.shards:
        counts[shard.subject] = counts.get(shard.subject, 0) + shard.n_samples
    return counts


def read_spread(index: ShardIndex, max_samples: int, seed: int = 0) -> Iterator[Sample]:
    """Up to ``max_samples`` windows from shards drawn at random (fixed ``seed``), read in index order.

    All shards when they hold ``max_samples`` or fewer; otherwise whole shards are drawn until they
    hold ``max_samples``, so a capped read still spans subjects instead of only the first ones.
    """
    shards = index.shards
    if sum(s.n_samples for s in shards) > max_samples:
        order = np.random.default_rng(seed).permutation(len(shards))
        sizes = np.cumsum([shards[i].n_samples for i in order])
        keep = set(order[: int(np.searchsorted(sizes, max_samples)) + 1].tolist())  # first cumsum >= cap
        shards = [s for i, s in enumerate(shards) if i in keep]
    return itertools.islice(iter_samples(dataclasses.replace(index, shards=shards)), max_samples)


def _ordered_counts(counts: Counter[str], classes: Sequence[str]) -> dict[str, int]:
    """Counts in ``classes`` order (zeros kept: an absent class is worth seeing), then the rest."""
    out = {c: counts.get(c, 0) for c in classes}
    out.update({k: v for k, v in sorted(counts.items()) if k not in out})
    return out


def _channel_sets(index: ShardIndex) -> list[ChannelSetSummary]:
    sets = [ChannelSetSummary(list(cs.get("ch_names") or []), int(cs.get("n_recordings", 0)))
            for cs in index.raw.get("channel_sets") or []]
    return sorted(sets, key=lambda cs: -cs.n_recordings)


def _window_s(index: ShardIndex, n_times: int | None) -> float | None:
    windows = index.raw.get("windows")
    if isinstance(windows, dict) and windows.get("length_s") is not None:
        return float(windows["length_s"])
    return None if n_times is None else n_times / index.sfreq


def _shard_bytes(shards: Sequence[ShardInfo]) -> tuple[int | None, int]:
    """Total size of the shard files, and how many shards are not local files (size unknown)."""
    total, not_local = 0, 0
    for shard in shards:
        path = Path(shard.url)
        if is_streamed(shard.url) or not path.is_file():
            not_local += 1
        else:
            total += path.stat().st_size
    return (None if not_local else total), not_local


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _overview_table(s: IndexSummary) -> Table:
    t = Table(title=f"inspect {s.dataset}", show_header=False)
    size = (_human_bytes(s.shard_bytes) if s.shard_bytes is not None
            else f"unknown ({s.n_shards_not_local} of {s.n_shards} shards remote or missing)")
    rows = [
        ("paradigm", s.paradigm or "—"),
        ("windows", str(s.n_samples)),
        ("recordings", str(s.n_recordings)),
        ("subjects", str(len(s.subject_counts))),
        ("sampling rate", f"{s.sfreq:g} Hz"),
        ("window length", "—" if s.window_s is None else f"{s.window_s:g} s"),
        ("preprocessing hash", s.preproc_hash or "—"),
        ("shards", f"{s.n_shards}, {size}"),
        ("index", str(s.index)),
    ]
    for k, v in rows:
        t.add_row(k, v)
    return t


def _classes_table(s: IndexSummary) -> Table:
    where = f"{s.n_read} of {s.n_samples} windows" if s.capped else f"all {s.n_read} windows"
    t = Table(title=f"classes ({where})")
    t.add_column("class")
    t.add_column("windows", justify="right")
    t.add_column("%", justify="right")
    for name, n in s.class_counts.items():
        t.add_row(name, str(n), f"{100 * n / max(s.n_read, 1):.1f}")
    return t


def _subjects_table(s: IndexSummary, max_rows: int = 30) -> Table:
    counts = list(s.subject_counts.items())
    t = Table(title="windows per subject")
    t.add_column("subject")
    t.add_column("windows", justify="right")
    for subject, n in counts[:max_rows]:
        t.add_row(subject, str(n))
    if len(counts) > max_rows:
        rest = counts[max_rows:]
        t.add_row(f"… {len(rest)} more", str(sum(n for _, n in rest)))
    return t


def _channel_sets_table(s: IndexSummary, max_rows: int = 10, max_names: int = 8) -> Table:
    t = Table(title="channel sets")
    t.add_column("channels", justify="right")
    t.add_column("recordings", justify="right")
    t.add_column("names")
    for cs in s.channel_sets[:max_rows]:
        more = f" … (+{cs.n_chans - max_names})" if cs.n_chans > max_names else ""
        t.add_row(str(cs.n_chans), str(cs.n_recordings), ", ".join(cs.ch_names[:max_names]) + more)
    if len(s.channel_sets) > max_rows:
        t.add_row("…", str(sum(cs.n_recordings for cs in s.channel_sets[max_rows:])),
                  f"{len(s.channel_sets) - max_rows} more sets")
    return t


def print_summary(summary: IndexSummary, console: Console | None = None) -> None:
    """The summary as rich tables: overview, classes, subjects, channel sets."""
    console = console or Console()
    console.print(_overview_table(summary))
    console.print(_classes_table(summary))
    if summary.capped:
        console.print(f"[yellow]class counts read from {summary.n_read} of {summary.n_samples} windows[/] "
                      "(raise --max_samples to count them all)", soft_wrap=True)
    console.print(_subjects_table(summary))
    if summary.channel_sets:
        console.print(_channel_sets_table(summary))


# --------------------------------------------------------------------------------------------------
# figure: what is read from the samples


@dataclass
class _Spectra:
    """Running means of log10 power per class at the chosen channels."""

    picks: list[str]
    freqs: np.ndarray | None = None
    nperseg: int = 0
    sums: dict[str, np.ndarray] = field(default_factory=dict)  # class -> (n_picks, n_freqs)
    counts: dict[str, np.ndarray] = field(default_factory=dict)  # class -> (n_picks,)

    def add(self, sample: Sample, label: str) -> None:
        from scipy.signal import welch

        if self.freqs is None:
            # at least two segments per window: one whole-window periodogram is too noisy to read
            self.nperseg = max(1, min(sample.x.shape[1] // 2, int(round(WELCH_SEGMENT_S * sample.sfreq))))
        if sample.x.shape[1] < self.nperseg:
            return  # shorter windows than the first would give another frequency grid
        where = {name: i for i, name in enumerate(sample.ch_names) if name not in sample.bad_channels}
        present = [k for k, name in enumerate(self.picks) if name in where]
        if not present:
            return
        freqs, psd = welch(sample.x[[where[self.picks[k]] for k in present]], fs=sample.sfreq,
                           nperseg=self.nperseg)  # psd: (n_present, n_freqs), unit²/Hz
        self.freqs = freqs
        if label not in self.sums:
            self.sums[label] = np.zeros((len(self.picks), freqs.size))
            self.counts[label] = np.zeros(len(self.picks))
        # tiny floor: a flat (zeroed) channel would give log10(0)
        self.sums[label][present] += np.log10(np.maximum(psd, 1e-12))
        self.counts[label][present] += 1

    def mean_db(self, label: str) -> np.ndarray:
        """(n_picks, n_freqs) class-mean of 10 log10 power; NaN where no window had that channel."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return 10.0 * self.sums[label] / self.counts[label][:, None]


@dataclass
class _FigureData:
    picks: list[str]  # spectrum channels
    traces: list[str]  # example-trace channels
    montage: list[str]  # the most common channel set
    spectra: _Spectra
    examples: dict[str, Sample] = field(default_factory=dict)  # class -> first window of that class
    positions: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (3,) metres
    bad_recordings: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    recordings: set[str] = field(default_factory=set)  # of the montage's channel set, among those read
    per_subject_class: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    n_read: int = 0


def pick_channels(names: Sequence[str], preferred: Sequence[str], n: int) -> list[str]:
    """Up to ``n`` of ``preferred`` present in ``names`` (case-insensitive, in ``preferred`` order),
    filled up with the first other channels of ``names``."""
    by_lower = {name.lower(): name for name in names}
    picks = [by_lower[p.lower()] for p in preferred if p.lower() in by_lower][:n]
    return picks + [name for name in names if name not in picks][: n - len(picks)]


def spectrum_channels(names: Sequence[str], n: int = N_SPECTRUM_CHANNELS) -> list[str]:
    """C3, Cz, C4 and one posterior channel (Oz/O1/O2/Pz/POz) when present, else the first channels."""
    lower = {name.lower() for name in names}
    central = [c for c in SPECTRUM_CENTRAL if c.lower() in lower]
    posterior = [c for c in SPECTRUM_POSTERIOR if c.lower() in lower][:1]
    return pick_channels(names, central + posterior, n)


def _collect(index: ShardIndex, max_samples: int) -> _FigureData:
    sets = _channel_sets(index)
    data: _FigureData | None = None
    for sample in read_spread(index, max_samples):
        if data is None:
            montage = sets[0].ch_names if sets and sets[0].ch_names else sample.ch_names
            same_type = _same_type(montage, sample)
            picks = spectrum_channels(same_type)
            traces = pick_channels(same_type, TRACE_PREFERENCE, N_TRACE_CHANNELS)
            data = _FigureData(picks=picks, traces=traces, montage=list(montage), spectra=_Spectra(picks))
        _add(data, sample, label_name(sample, index.classes))
    if data is None:
        raise ValueError(f"{index.path}: no windows to plot")
    return data


def _same_type(names: Sequence[str], sample: Sample) -> list[str]:
    """``names`` of the most common channel type in ``sample`` (one unit per axis)."""
    types = dict(zip(sample.ch_names, sample.ch_types))
    main = Counter(types.get(n, "eeg") for n in names).most_common(1)[0][0]
    return [n for n in names if types.get(n, main) == main]


def _add(data: _FigureData, sample: Sample, label: str) -> None:
    data.n_read += 1
    data.per_subject_class[sample.subject][label] += 1
    data.spectra.add(sample, label)
    if label not in data.examples or (data.examples[label].ch_names != data.montage
                                      and sample.ch_names == data.montage):
        data.examples[label] = sample
    if sample.ch_names == data.montage:
        m = sample.meta
        recording = f"{sample.subject}/{m.get('session')}/{m.get('run')}"
        data.recordings.add(recording)
        for bad in sample.bad_channels:
            data.bad_recordings[bad].add(recording)
        if not data.positions:
            data.positions = {n: p for n, p in zip(sample.ch_names, sample.pos)}


# --------------------------------------------------------------------------------------------------
# figure: drawing


def _unit(sample: Sample, name: str) -> str:
    kind = dict(zip(sample.ch_names, sample.ch_types)).get(name, "eeg")
    return UNITS.get(kind, "a.u.")


def _nice(value: float) -> float:
    """The 1-2-5 number nearest below ``value`` (scale bars, trace spacing)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    return max(m for m in (1, 2, 5, 10) if m * exp <= value * (1 + 1e-9)) * exp


def _robust_std(x: np.ndarray) -> float:
    """Median absolute deviation as a standard deviation (1.4826: MAD of a normal distribution)."""
    return float(1.4826 * np.median(np.abs(x - np.median(x, axis=-1, keepdims=True))))


def _class_colors(labels: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def _plot_examples(sub, data: _FigureData, labels: list[str], colors: dict[str, tuple]) -> None:
    shown = labels[:MAX_EXAMPLE_CLASSES]
    samples = [data.examples[label] for label in shown]
    # One list of channels for every panel (the rows share y tick labels), from the common set.
    names = data.traces
    present = [[s.ch_names.index(n) for n in names if n in s.ch_names] for s in samples]
    spacing = _nice(TRACE_SPACING_STDS * np.median([_robust_std(s.x[r]) for s, r in zip(samples, present) if r]))
    axes = sub.subplots(1, len(shown), sharey=True, squeeze=False)[0]
    for ax, label, sample in zip(axes, shown, samples):
        _trace_panel(ax, sample, names, spacing, colors[label])
        ax.set_title(f"{label}\nsubject {sample.subject}", fontsize=9)
    axes[0].set_yticks(-spacing * np.arange(len(names)), names)
    axes[0].set_ylim(-spacing * (len(names) - 0.2), spacing * 1.1)
    unit = _unit(samples[0], names[0])
    scale_bar(axes[-1], spacing, unit)
    more = f" (first {len(shown)} of {len(labels)} classes)" if len(labels) > len(shown) else ""
    sub.suptitle(f"(a) example window per class{more}; traces {spacing:g} {unit} apart", fontsize=11)


def _trace_panel(ax, sample: Sample, names: Sequence[str], spacing: float, color: tuple) -> None:
    """``names`` stacked top to bottom, ``spacing`` apart; bad channels grey, absent ones noted."""
    from matplotlib.transforms import blended_transform_factory

    t = np.arange(sample.x.shape[1]) / sample.sfreq
    left = blended_transform_factory(ax.transAxes, ax.transData)
    for k, name in enumerate(names):
        offset = -k * spacing
        if name not in sample.ch_names:
            ax.text(0.02, offset, "not in this recording", transform=left, fontsize=7, color="0.4", va="center")
            continue
        bad = name in sample.bad_channels
        ax.plot(t, sample.x[sample.ch_names.index(name)] + offset, lw=0.6, color="0.65" if bad else color)
        if bad:
            ax.text(0.01, offset + 0.3 * spacing, "bad", transform=left, fontsize=7, color="0.3")
    ax.set_xlabel("time (s)")
    ax.set_xlim(t[0], t[-1])


def scale_bar(ax, length: float, unit: str) -> None:
    """A vertical bar of ``length`` (data units) just right of the axes, labelled with its value."""
    from matplotlib.transforms import blended_transform_factory

    trans = blended_transform_factory(ax.transAxes, ax.transData)
    y0 = ax.get_ylim()[0] + 0.1 * length
    ax.plot([1.03, 1.03], [y0, y0 + length], transform=trans, color="k", lw=2, clip_on=False)
    ax.text(1.06, y0 + length / 2, f"{length:g} {unit}", transform=trans, rotation=90, va="center",
            ha="left", fontsize=8)


def _plot_spectra(sub, data: _FigureData, labels: list[str], colors: dict[str, tuple], unit: str) -> None:
    spectra = data.spectra
    axes = sub.subplots(1, len(spectra.picks), sharey=True, squeeze=False)[0]
    nyquist = spectra.freqs[-1]
    band = (spectra.freqs >= 1.0) & (spectra.freqs <= min(SPECTRUM_MAX_HZ, nyquist))
    n_windows = Counter()
    for counts in data.per_subject_class.values():
        n_windows.update(counts)
    for k, (ax, name) in enumerate(zip(axes, spectra.picks)):
        ax.axvspan(8, 13, color="0.92", lw=0)  # mu/alpha band: where ERD and alpha show
        for label in labels:
            if label in spectra.sums:
                ax.plot(spectra.freqs[band], spectra.mean_db(label)[k, band], color=colors[label], lw=1.2,
                        label=f"{label} ({n_windows[label]} windows)" if k == 0 else None)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("frequency (Hz)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"power (dB re 1 {unit}²/Hz)")
    axes[0].text(10.5, 0.02, "8–13 Hz", transform=axes[0].get_xaxis_transform(), ha="center",
                 fontsize=7, color="0.4")
    sub.legend(loc="outside lower center", ncols=min(len(labels), 4), fontsize=8, frameon=False)
    sub.suptitle(f"(b) class-mean log power spectra (Welch, {spectra.nperseg / data.examples[labels[0]].sfreq:g} s "
                 "segments)", fontsize=11)


def _plot_subjects(sub, summary_counts: dict[str, int], data: _FigureData, labels: list[str],
                   colors: dict[str, tuple], stacked: bool) -> None:
    from matplotlib.ticker import MaxNLocator

    ax = sub.subplots()
    subjects = list(summary_counts)
    x = np.arange(len(subjects))
    if stacked:
        bottom = np.zeros(len(subjects))
        for label in labels:
            heights = np.array([data.per_subject_class[s][label] for s in subjects], dtype=float)
            ax.bar(x, heights, bottom=bottom, color=colors[label], label=label, width=0.8)
            bottom += heights
        ax.legend(fontsize=8, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                  ncols=min(len(labels), 4))
    else:
        ax.bar(x, [summary_counts[s] for s in subjects], color="tab:gray", width=0.8)
    step = max(1, math.ceil(len(subjects) / 30))  # at most ~30 readable tick labels
    ax.set_xticks(x[::step], subjects[::step], rotation=90 if len(subjects) > 12 else 0, fontsize=8)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set_xlabel("subject")
    ax.set_ylabel("windows")
    ax.set_xlim(-0.6, len(subjects) - 0.4)
    ax.grid(axis="y", alpha=0.3)
    by = " by class" if stacked else ""
    sub.suptitle(f"(c) windows per subject{by} ({sum(summary_counts.values())} in all)", fontsize=11)


def _plot_montage(sub, data: _FigureData) -> None:
    ax = sub.subplots()
    names = [n for n in data.montage if n in data.positions and np.all(np.isfinite(data.positions[n]))]
    unplaced = [n for n in data.montage if n not in names]
    xy = np.array([data.positions[n][:2] for n in names]).reshape(-1, 2) * 100  # metres -> cm
    bad = np.array([bool(data.bad_recordings.get(n)) for n in names], dtype=bool)
    if len(xy):
        radius = 1.12 * float(np.max(np.hypot(xy[:, 0], xy[:, 1])))
        _head_outline(ax, radius)
        ax.scatter(xy[~bad, 0], xy[~bad, 1], s=28, color="tab:blue", zorder=3, label="channel")
        if bad.any():
            n_rec = len(data.recordings)
            ax.scatter(xy[bad, 0], xy[bad, 1], s=60, marker="x", color="tab:red", zorder=4, lw=2,
                       label=f"bad in ≥1 of {n_rec} recordings")
            ax.legend(fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(0.0, -0.02))
        if len(names) <= MAX_POSITION_LABELS:
            for name, (px, py) in zip(names, xy):
                ax.annotate(name, (px, py), xytext=(0, 5), textcoords="offset points", ha="center",
                            fontsize=7)
    ax.set_aspect("equal")
    ax.set_xlabel("x (cm, right →)")
    ax.set_ylabel("y (cm, nose ↑)")
    if unplaced:
        shown = ", ".join(unplaced[:6]) + (" …" if len(unplaced) > 6 else "")
        ax.text(0.0, 1.0, f"no position: {shown}", transform=ax.transAxes, fontsize=7, va="top", color="0.3")
    sub.suptitle(f"(d) positions of the most common set ({len(data.montage)} ch)", fontsize=11)


def _head_outline(ax, radius: float) -> None:
    angle = np.linspace(0, 2 * np.pi, 200)
    ax.plot(radius * np.cos(angle), radius * np.sin(angle), color="0.5", lw=1)
    nose = 0.1 * radius
    ax.plot([-nose, 0, nose], [radius * 0.995, radius + 1.5 * nose, radius * 0.995], color="0.5", lw=1)
    ax.set_xlim(-1.15 * radius, 1.15 * radius)
    ax.set_ylim(-1.1 * radius, 1.25 * radius)


def plot_index(index_path: PathLike, png: PathLike, max_samples: int = 2000) -> Path:
    """Write one 1200 x 800 px PNG of a prepared dataset (panels in the module docstring); returns it.

    Reads up to ``max_samples`` windows (see :func:`read_spread`); per-subject bars are stacked by
    class only when every window was read, since a capped read would misstate them.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    index = load_index(index_path)
    data = _collect(index, max_samples)
    labels = [c for c in index.classes if c in data.examples] + sorted(set(data.examples) - set(index.classes))
    colors = _class_colors(labels)
    unit = _unit(data.examples[labels[0]], data.spectra.picks[0])
    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.1, 1.0])
    top_left, top_right = top.subfigures(1, 2, width_ratios=[2.0, 1.0])
    bottom_left, bottom_right = bottom.subfigures(1, 2, width_ratios=[2.0, 1.0])
    _plot_examples(top_left, data, labels, colors)
    _plot_montage(top_right, data)
    _plot_spectra(bottom_left, data, labels, colors, unit)
    stacked = data.n_read == index.n_samples and labels != [UNLABELLED]
    _plot_subjects(bottom_right, subject_counts(index), data, labels, colors, stacked)
    example = data.examples[labels[0]]
    window_s = _window_s(index, example.x.shape[1])
    read = "" if data.n_read == index.n_samples else f"; plots from {data.n_read} of them"
    fig.suptitle(f"{index.dataset} ({index.paradigm or 'no paradigm'}): {index.n_samples} windows of "
                 f"{window_s:g} s at {index.sfreq:g} Hz, {len(index.subjects)} subjects{read}",
                 fontsize=13, weight="bold")
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=DPI)
    return png
