"""Where recordings come from: files, BIDS, MOABB, the synthetic generator — one registry entry each.

A source lists *items* (units of work that ``prepare`` runs, resumes and reports on: one file, one
synthetic run, one MOABB subject) and loads an item into one or more ``Loaded`` recordings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import mne
import numpy as np

from . import events as ev
from .manifest import Manifest, expand_path
from .readers import READERS


@dataclass(frozen=True)
class Item:
    """One unit of work; plain values only so it crosses process boundaries."""

    dataset: str
    subject: str
    session: str = "0"
    run: str = "0"
    path: str | None = None

    @property
    def item_id(self) -> str:
        return recording_id(self.dataset, self.subject, self.session, self.run)


@dataclass
class Loaded:
    """One recording in memory, with its events and where it came from."""

    raw: mne.io.BaseRaw
    events: ev.Events
    subject: str
    session: str
    run: str
    path: str | None = None
    extra_classes: dict[str, str] = field(default_factory=dict)  # event → class a source adds
    targets: ev.Targets | None = None  # regression: a continuous target over spans of the recording


_UNSAFE = re.compile(r"[^A-Za-z0-9]")


def recording_id(dataset: str, subject: str, session: str, run: str) -> str:
    """``dataset_subject_session_run`` with each part reduced to [A-Za-z0-9] (dataset keeps - and _)."""
    parts = [_UNSAFE.sub("", str(p)) or "x" for p in (subject, session, run)]
    return "_".join([re.sub(r"[^A-Za-z0-9_-]", "", dataset), *parts])


def _base(manifest: Manifest) -> Path:
    return manifest.path.parent if manifest.path else Path.cwd()


# ---------------------------------------------------------------- files
def _num(value: str | None) -> str | None:
    """'001' -> '1' so ids do not depend on zero padding; non-numbers unchanged."""
    return str(int(value)) if value and value.isdigit() else value


def _list_files(manifest: Manifest) -> list[Item]:
    src = manifest.source
    root = expand_path(src.root, _base(manifest))
    regex = re.compile(src.path_regex) if src.path_regex else None
    items = []
    for p in sorted(root.glob(src.pattern)):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        m = regex.search(rel) if regex else None
        g = m.groupdict() if m else {}
        items.append(Item(manifest.name, _num(g.get("subject")) or p.stem, _num(g.get("session")) or "0",
                          _num(g.get("run")) or "0", str(p)))
    return items


def _load_file(manifest: Manifest, item: Item) -> list[Loaded]:
    src = manifest.source
    path, root = Path(item.path), expand_path(src.root, _base(manifest))
    recording = READERS[src.reader](path, src.read_kwargs)
    raw = recording.raw
    sidecar = src.annotation_file_for(path, root)
    if src.annotation_file and sidecar is None:
        raise FileNotFoundError(f"no annotation file {src.annotation_file!r} beside {path}")
    if sidecar is not None:  # e.g. a Sleep-EDF hypnogram: annotations only, no signal
        raw.set_annotations(mne.read_annotations(sidecar))
    events = ev.READERS[src.events](raw, path)
    label = src.label_for(path.relative_to(root).as_posix())
    if label is not None:  # a recording-level label (TUAB normal/abnormal): one span over it all
        events = ev.Events(np.r_[events.onset, 0.0], np.r_[events.duration, raw.times[-1] + 1 / raw.info["sfreq"]],
                           [*events.description, label])
    return [Loaded(raw, events, item.subject, item.session, item.run, item.path, targets=recording.targets)]


# ---------------------------------------------------------------- synthetic
def _synthetic_config(manifest: Manifest):
    from .synthetic import SyntheticConfig

    return SyntheticConfig(**manifest.source.generator)


def _list_synthetic(manifest: Manifest) -> list[Item]:
    cfg = _synthetic_config(manifest)
    return [Item(manifest.name, f"{s + 1:02d}", str(se), str(r))
            for s in range(cfg.n_subjects) for se in range(cfg.n_sessions) for r in range(cfg.n_runs)]


def _load_synthetic(manifest: Manifest, item: Item) -> list[Loaded]:
    from .synthetic import generate_raw, trial_latents

    cfg = _synthetic_config(manifest)
    subject, session, run = int(item.subject) - 1, int(item.session), int(item.run)
    raw = generate_raw(cfg, subject, session, run)
    latents = trial_latents(cfg, subject, session, run)  # the same draws as the raw: cheap, no rendering
    targets = None if latents.targets is None else ev.Targets(latents.onsets, latents.durations, latents.targets)
    return [Loaded(raw, ev.from_annotations(raw), item.subject, item.session, item.run, targets=targets)]


# ---------------------------------------------------------------- moabb
def _moabb_dataset(manifest: Manifest):
    import moabb.datasets

    name = manifest.source.dataset
    if not hasattr(moabb.datasets, name):
        raise ValueError(f"source.dataset: moabb has no dataset class {name!r}")
    return getattr(moabb.datasets, name)(**manifest.source.kwargs)


def _list_moabb(manifest: Manifest) -> list[Item]:
    ds = _moabb_dataset(manifest)
    subjects = manifest.source.subjects or ds.subject_list
    return [Item(manifest.name, str(s)) for s in subjects]


def _load_moabb(manifest: Manifest, item: Item) -> list[Loaded]:
    ds = _moabb_dataset(manifest)
    data = ds.get_data(subjects=[int(item.subject)])
    out = []
    for sess, runs in data[int(item.subject)].items():
        for run, raw in runs.items():
            raw.load_data(verbose="error")
            events = ev.from_annotations(raw)
            if not any(d in ds.event_id for d in events.description):
                events = ev.from_stim(raw, ds.event_id)
            out.append(Loaded(raw, events, item.subject, str(sess), str(run)))
    return out


# ---------------------------------------------------------------- bids
def _list_bids(manifest: Manifest) -> list[Item]:
    from mne_bids import find_matching_paths

    src = manifest.source
    root = expand_path(src.root, _base(manifest))
    paths = find_matching_paths(root, subjects=src.subjects, tasks=src.task, datatypes=src.datatype,
                                suffixes=src.datatype, extensions=[".edf", ".bdf", ".vhdr", ".set", ".fif", ".con", ".ds"])
    return [Item(manifest.name, p.subject, p.session or "0", p.run or (p.task or "0"), str(p.fpath))
            for p in sorted(paths, key=lambda p: str(p.fpath))]


def _load_bids(manifest: Manifest, item: Item) -> list[Loaded]:
    from mne_bids import get_bids_path_from_fname, read_raw_bids

    bp = get_bids_path_from_fname(item.path)
    raw = read_raw_bids(bp, verbose="error")
    raw.load_data(verbose="error")
    return [Loaded(raw, ev.from_annotations(raw), item.subject, item.session, item.run, item.path)]


@dataclass(frozen=True)
class SourceKind:
    list_items: Callable[[Manifest], list[Item]]
    load: Callable[[Manifest, Item], list[Loaded]]


SOURCES: dict[str, SourceKind] = {
    "files": SourceKind(_list_files, _load_file),
    "synthetic": SourceKind(_list_synthetic, _load_synthetic),
    "moabb": SourceKind(_list_moabb, _load_moabb),
    "bids": SourceKind(_list_bids, _load_bids),
}


def list_items(manifest: Manifest) -> list[Item]:
    """Every item of a manifest, sorted, filtered by ``manifest.runs``; ids must be unique."""
    items = SOURCES[manifest.source.kind].list_items(manifest)
    if manifest.runs is not None:
        items = [i for i in items if i.run in manifest.runs]
    items = sorted(items, key=lambda i: i.item_id)
    ids = [i.item_id for i in items]
    dup = sorted({x for x in ids if ids.count(x) > 1})
    if dup:
        raise ValueError(f"{manifest.name}: several recordings map to the same id {dup[:5]}: "
                         "add subject/session/run groups to source.path_regex")
    return items


def load_item(manifest: Manifest, item: Item) -> list[Loaded]:
    return SOURCES[manifest.source.kind].load(manifest, item)
