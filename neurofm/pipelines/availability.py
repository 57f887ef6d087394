"""Is a dataset on this machine? Decided from the file system alone: never downloads, never waits.

Each source kind has one check (``CHECKS``); every answer says what was looked at and, when the data
is missing, how to obtain it::

    >>> check_available(load_manifest(resolve_manifest("TUAB")))
    Availability(available=False, where='/home/me/neurofm_data/TUAB/edf/*/*/**/*.edf', message=...)

- files / bids: the root exists and the glob matches at least one file.
- moabb: the files MOABB would have downloaded are in its cache folder. ``source.cache`` says where
  (signifier, code, glob, NEMAR id), so moabb itself is neither imported (6 s) nor called (its
  ``get_dataset_path`` writes the MNE config and creates ``~/mne_data``; its loaders download).
- synthetic: always available.
"""

from __future__ import annotations

from .errors import DataNotAvailableError  # noqa: F401 - raised here, defined there

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .manifest import (
    BidsSource,
    FilesSource,
    Manifest,
    ManifestError,
    MoabbCache,
    default_shared_data,
    expand_path,
    load_manifest,
    manifests_dir,
    path_variables,
    resolve_manifest,
)

# A NEMAR deposit's bookkeeping file: present even when no subject's data has been fetched yet.
_NEMAR_PROVENANCE = "sourcedata_provenance.json"


@dataclass(frozen=True)
class Availability:
    """Whether a dataset's data is here, what was looked at, and found-what / how-to-obtain."""

    available: bool
    where: str
    message: str




# ------------------------------------------------------------------------------------- helpers
def _base(manifest: Manifest) -> Path:
    # Same base as ``sources._base``: a relative root is relative to the manifest file.
    return manifest.path.parent if manifest.path else Path.cwd()


def _first_file(root: Path, pattern: str, accept: Callable[[Path], bool] = lambda p: True) -> Path | None:
    """The first file under ``root`` matching ``pattern`` (stops there: no full listing)."""
    if not root.is_dir():
        return None
    return next((p for p in root.glob(pattern) if p.is_file() and accept(p)), None)


def _obtain(manifest: Manifest) -> str:
    how = " ".join(manifest.how_to_obtain.split())
    licence = " ".join(manifest.license.split()).rstrip(".")
    return " ".join(filter(None, [f"How to obtain: {how}" if how else "", f"URL: {manifest.url}",
                                  f"Licence: {licence}."]))


def _variables_note(raw_root: str) -> str:
    """How the ``${VAR}``s of a root were resolved, e.g. "NEUROFM_DATA is unset (default ...)"."""
    notes = []
    for name, default in path_variables(raw_root).items():
        value = os.environ.get(name)
        if value:
            notes.append(f"{name}={value}")
        else:
            fallback = str(default_shared_data()) if name == "NEUROFM_SHARED_DATA" else default
            notes.append(f"{name} is unset, so {fallback} was used" if fallback is not None
                         else f"{name} is unset")
        notes[-1] += f" (set {name} to look elsewhere)"
    return "; ".join(notes)


def _missing(manifest: Manifest, where: str, what: str, root_note: str = "") -> Availability:
    note = f" [{root_note}]" if root_note else ""
    return Availability(False, where, f"{manifest.name}: {what}{note}. {_obtain(manifest)}")


# -------------------------------------------------------------------------------- files / bids
def _root(manifest: Manifest, raw_root: str) -> Path | str:
    """The expanded root, or the reason it cannot be expanded."""
    try:
        return expand_path(raw_root, _base(manifest))
    except ManifestError as err:
        return str(err)


def _check_tree(manifest: Manifest, raw_root: str, pattern: str,
                accept: Callable[[Path], bool] = lambda p: True) -> Availability:
    root, note = _root(manifest, raw_root), _variables_note(raw_root)
    if isinstance(root, str):
        return _missing(manifest, raw_root, f"source.root cannot be resolved: {root}", note)
    where = f"{root}/{pattern}"
    if not root.is_dir():
        return _missing(manifest, where, f"data not found: folder {root} does not exist", note)
    try:
        hit = _first_file(root, pattern, accept)
    except OSError as err:  # unreadable folder: say so rather than crash the listing
        return _missing(manifest, where, f"cannot read {root}: {err}", note)
    if hit is None:
        return _missing(manifest, where, f"folder {root} exists but no file matches {pattern!r}", note)
    return Availability(True, where, f"{manifest.name}: found {hit} (and possibly more)")


def _check_files(manifest: Manifest) -> Availability:
    src: FilesSource = manifest.source
    return _check_tree(manifest, src.root, src.pattern)


def _check_bids(manifest: Manifest) -> Availability:
    src: BidsSource = manifest.source
    task = f"*_task-{src.task}_*" if src.task else "*"
    subjects = {f"sub-{s}" for s in src.subjects} if src.subjects else None

    def accept(p: Path) -> bool:
        return subjects is None or any(part in subjects for part in p.parts)

    return _check_tree(manifest, src.root, f"sub-*/**/{src.datatype}/{task}", accept)


# ------------------------------------------------------------------------------------- moabb
def mne_data_root(key: str) -> tuple[Path, str]:
    """MNE's data folder for a config key, read-only: ``(folder, which setting chose it)``.

    The lookup of ``moabb.datasets.download.get_dataset_path`` and ``mne.datasets.utils._get_path``:
    ``key`` (e.g. ``MNE_DATASETS_BNCI_PATH``), else ``MNE_DATA``, each from the environment or the
    MNE config file, else ``~/mne_data``; without their side effects (writing ``MNE_DATA`` into the
    config, creating the folder).
    """
    import mne

    for name in (key, "MNE_DATA"):
        value = mne.get_config(name)
        if value:
            return Path(value).expanduser(), name
    home = Path(os.getenv("_MNE_FAKE_HOME_DIR", "~")).expanduser()  # MNE's own test hook
    return home / "mne_data", "default, neither MNE_DATA nor the dataset key is set"


@dataclass(frozen=True)
class _Place:
    """One place MOABB may keep a dataset's files."""

    where: str  # the folder/glob looked at
    why: str  # which setting chose its root
    find: Callable[[], Path | None]


def _moabb_places(cache: MoabbCache) -> Iterator[_Place]:
    root, chosen = mne_data_root(f"MNE_DATASETS_{cache.sign.upper()}_PATH")
    folder = root / f"MNE-{cache.sign.lower()}-data"  # data_dl's "MNE-{sign.lower()}-data"
    yield _Place(f"{folder}/{cache.glob}", f"root from {chosen}", lambda: _first_file(folder, cache.glob))
    if cache.nemar_id:
        # BaseDataset.download() fetches NEMAR's mirror first, into nemar_store(code, nemar_id).
        code_root, chosen = mne_data_root(f"MNE_DATASETS_{cache.code.upper()}_PATH")
        store = code_root / "NEMAR" / cache.nemar_id / "sourcedata"
        yield _Place(str(store), f"NEMAR mirror, root from {chosen}",
                     lambda: _first_file(store, "**/*", lambda p: p.name != _NEMAR_PROVENANCE))


# MOABB datasets that generate their signal in memory (nothing on disk, nothing to download).
MOABB_GENERATED = ("FakeDataset", "FakeVirtualRealityDataset")


def _check_moabb(manifest: Manifest) -> Availability:
    src = manifest.source
    if src.dataset in MOABB_GENERATED:
        return Availability(True, f"moabb.datasets.{src.dataset}",
                            f"{manifest.name}: {src.dataset} is generated by moabb in memory")
    if src.cache is None:
        return Availability(False, "source.cache", (
            f"{manifest.name}: the manifest does not say where MOABB keeps {src.dataset}, and finding "
            "out would mean importing or calling moabb (which downloads). Add source.cache with sign "
            "(the signifier the dataset passes to moabb.datasets.download.data_dl, e.g. BNCI), code "
            "(dataset.code), glob (its files inside MNE-<sign>-data) and nemar_id (dataset.nemar_id); "
            f"see data_manifests/BNCI2014_001.yaml. {_obtain(manifest)}"))
    places = list(_moabb_places(src.cache))
    for place in places:
        try:
            hit = place.find()
        except OSError:
            hit = None
        if hit is not None:
            return Availability(True, place.where, f"{manifest.name}: found {hit} (and possibly more)")
    looked = " and ".join(f"{p.where} ({p.why})" for p in places)
    return Availability(False, "; ".join(p.where for p in places), (
        f"{manifest.name}: MOABB dataset {src.dataset} is not in the local MNE/MOABB cache; looked in "
        f"{looked}. MOABB keeps data under MNE_DATASETS_{src.cache.sign.upper()}_PATH, "
        "else MNE_DATA, else ~/mne_data (set MNE_DATA to the folder that holds the downloaded data). "
        f"Nothing is downloaded here. {_obtain(manifest)}"))


# --------------------------------------------------------------------------------- synthetic
def _check_synthetic(manifest: Manifest) -> Availability:
    return Availability(True, "neurofm.pipelines.synthetic",
                        f"{manifest.name}: generated on the fly from source.generator")


CHECKS: dict[str, Callable[[Manifest], Availability]] = {
    "files": _check_files,
    "bids": _check_bids,
    "moabb": _check_moabb,
    "synthetic": _check_synthetic,
}


def _as_manifest(manifest: Manifest | str | Path) -> Manifest:
    return manifest if isinstance(manifest, Manifest) else load_manifest(resolve_manifest(manifest))


def check_available(manifest: Manifest | str | Path) -> Availability:
    """Whether the data of a manifest (object, path or shipped name) is on this machine."""
    m = _as_manifest(manifest)
    return CHECKS[m.source.kind](m)


def require_available(manifest: Manifest | str | Path) -> Availability:
    """``check_available``, raising ``DataNotAvailableError`` (with how to obtain it) when missing."""
    result = check_available(manifest)
    if not result.available:
        raise DataNotAvailableError(result.message)
    return result


# ----------------------------------------------------------------------------------- listing
@dataclass(frozen=True)
class ManifestRow:
    """One line of ``neurofm datasets``; ``error`` is set (and the rest is '?') for an invalid file."""

    name: str
    paradigm: str
    kind: str
    available: bool
    where: str
    error: str | None = None


def _row(path: Path) -> ManifestRow:
    try:
        m = load_manifest(path)
    except ManifestError as err:
        return ManifestRow(path.stem, "?", "?", False, str(path), str(err))
    a = check_available(m)
    return ManifestRow(m.name, m.paradigm, m.source.kind, a.available, a.where)


def list_manifests(folder: str | Path | None = None) -> list[ManifestRow]:
    """Every ``*.yaml`` manifest in ``folder`` (default: the shipped ``data_manifests/``), by name."""
    root = Path(folder) if folder is not None else manifests_dir()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of manifests")
    return [_row(p) for p in sorted(root.glob("*.yaml"), key=lambda p: p.stem.lower())]


def datasets(folder: str | None = None) -> None:
    """Print the manifests as a table: name, paradigm, source, available, where it was looked for."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    rows = list_manifests(folder)
    table = Table(title=f"datasets ({folder or manifests_dir()})")
    for column in ("name", "paradigm", "source", "available", "where"):
        table.add_column(column, overflow="fold")
    for r in rows:
        state = "[red]invalid[/]" if r.error else ("[green]yes[/]" if r.available else "[yellow]no[/]")
        where = "; ".join(x.strip() for x in r.error.splitlines()[1:]) or r.error if r.error else r.where
        table.add_row(escape(r.name), r.paradigm, r.kind, state, escape(where))  # globs hold [..]
    console = Console()
    console.print(table)
    n_ok = sum(r.available for r in rows)
    console.print(f"{n_ok} of {len(rows)} available; `neurofm prepare NAME` says how to obtain the others.")
