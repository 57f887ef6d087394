"""Dataset manifests: one YAML file describes one dataset (where it is, what it is, how to cut it).

Validation reports every error at once, each with its field path, e.g.::

    data_manifests/bad.yaml: 2 errors
      source.kind: Input should be 'files', 'bids', 'moabb' or 'synthetic'
      windows.length_s: Input should be greater than 0
"""

from __future__ import annotations

from .errors import ManifestError  # noqa: F401 - raised here, defined there

import hashlib
import os
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Paradigm = Literal[
    "motor_imagery", "erp", "ssvep", "resting", "sleep", "seizure", "abnormal", "emotion",
    "vigilance", "visual_decoding", "mental_workload", "mixed",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_regex(value: str | None, allowed: set[str], required: set[str] = frozenset()) -> str | None:
    """A regex that compiles and whose named groups are among ``allowed`` (and include ``required``)."""
    if value is None:
        return None
    try:
        groups = set(re.compile(value).groupindex)
    except re.error as err:
        raise ValueError(f"not a valid regular expression: {err}") from None
    if groups - allowed:
        raise ValueError(f"unknown named group(s) {sorted(groups - allowed)}; allowed: {sorted(allowed)}")
    if required - groups:
        raise ValueError(f"needs the named group(s) {sorted(required - groups)}")
    return value


class FilesSource(_Strict):
    """Recordings on disk found by a glob, each read by a reader of ``readers.READERS``."""

    kind: Literal["files"] = "files"
    root: str
    pattern: str = "**/*.edf"
    # Named groups ``subject``, ``session``, ``run`` pulled (``re.search``) from the path relative to
    # ``root``.
    path_regex: str | None = None
    # How a file becomes a recording (``readers.READERS``): ``mne`` is ``mne.io.read_raw``; ``seed_vig``
    # reads SEED-VIG's MATLAB files and their PERCLOS targets.
    reader: Literal["mne", "seed_vig"] = "mne"
    read_kwargs: dict[str, Any] = Field(default_factory=dict)
    # Where events come from (``events.READERS``): the file's annotations, PhysioNet WFDB
    # ``<file>.event`` files, CHB-MIT's ``chbNN-summary.txt`` (seizure and background spans), or none.
    events: Literal["annotations", "wfdb", "chb_summary", "none"] = "annotations"
    # Recording-level label read from the path relative to ``root`` (``re.search``): the text of the
    # named group ``label`` is an event description for ``labels`` that spans the whole recording
    # (TUAB's ``.../abnormal/...``). See ``label_for``.
    label_from_path: str | None = None
    # Annotations kept in a sidecar file instead of the recording (Sleep-EDF ``*-Hypnogram.edf``): a
    # glob relative to the recording's folder, ``{group}`` filled from ``path_regex``'s named groups
    # as matched. See ``annotation_file_for``.
    annotation_file: str | None = None

    @field_validator("path_regex")
    @classmethod
    def _path_regex(cls, v: str | None) -> str | None:
        return _check_regex(v, {"subject", "session", "run"})

    @field_validator("label_from_path")
    @classmethod
    def _label_regex(cls, v: str | None) -> str | None:
        return _check_regex(v, {"subject", "session", "run", "label"}, {"label"})

    @model_validator(mode="after")
    def _annotation_placeholders(self) -> FilesSource:
        if self.annotation_file is not None:
            names = {f for _, f, _, _ in string.Formatter().parse(self.annotation_file) if f}
            groups = set(re.compile(self.path_regex).groupindex) if self.path_regex else set()
            if names - groups:
                raise ValueError(f"annotation_file uses {sorted(names - groups)}, which path_regex "
                                 f"does not capture (its groups: {sorted(groups)})")
        return self

    def path_groups(self, rel_path: str) -> dict[str, str]:
        """``path_regex``'s named groups (as matched, not normalised) for a path relative to ``root``."""
        m = re.search(self.path_regex, rel_path) if self.path_regex else None
        return {k: v for k, v in m.groupdict().items() if v is not None} if m else {}

    def label_for(self, rel_path: str) -> str | None:
        """The event description ``label_from_path`` reads from a path relative to ``root``, or None."""
        m = re.search(self.label_from_path, rel_path) if self.label_from_path else None
        return m["label"] if m else None

    def annotation_file_for(self, recording: Path, root: Path) -> Path | None:
        """The sidecar annotation file of one recording (first match, sorted), or None."""
        if self.annotation_file is None:
            return None
        rel = recording.relative_to(root).as_posix()
        pattern = self.annotation_file.format(**self.path_groups(rel))
        matches = sorted(recording.parent.glob(pattern))
        return matches[0] if matches else None


class BidsSource(_Strict):
    """A BIDS dataset read with mne-bids."""

    kind: Literal["bids"] = "bids"
    root: str
    datatype: Literal["eeg", "meg", "ieeg"] = "eeg"
    task: str | None = None
    subjects: list[str] | None = None


class MoabbCache(_Strict):
    """Where MOABB keeps a dataset's files, so availability is decided without importing moabb.

    MOABB's ``data_dl(url, sign)`` stores a file under ``<root>/MNE-<sign>-data/<url path>``, where
    ``<root>`` is the MNE config/env key ``MNE_DATASETS_<SIGN>_PATH``, else ``MNE_DATA``, else
    ``~/mne_data`` (``moabb.datasets.download.get_dataset_path``). ``download()`` first tries the
    dataset's NEMAR mirror, kept in ``<root for code>/NEMAR/<nemar_id>/sourcedata``.
    """

    sign: str = Field(pattern=r"^[A-Za-z0-9_-]+$")  # signifier passed to data_dl, e.g. "BNCI"
    code: str  # ``dataset.code``, e.g. "BNCI2014-001" (keys the NEMAR store)
    glob: str  # this dataset's files inside MNE-<sign>-data, e.g. "**/001-2014/A*.mat"
    nemar_id: str | None = None  # ``dataset.nemar_id``


class MoabbSource(_Strict):
    """A MOABB dataset class read from the local MNE/MOABB cache (never downloaded here)."""

    kind: Literal["moabb"] = "moabb"
    dataset: str  # class name in ``moabb.datasets``, e.g. ``BNCI2014_001``
    kwargs: dict[str, Any] = Field(default_factory=dict)
    subjects: list[int] | None = None
    cache: MoabbCache | None = None


class SyntheticSource(_Strict):
    """The built-in generator (``neurofm.pipelines.synthetic``); ``generator`` holds its kwargs."""

    kind: Literal["synthetic"] = "synthetic"
    generator: dict[str, Any] = Field(default_factory=dict)


Source = Annotated[
    Union[FilesSource, BidsSource, MoabbSource, SyntheticSource], Field(discriminator="kind")
]


class LabelRule(_Strict):
    """Event-description → class mapping that applies only to some runs (PhysioNet's T1/T2)."""

    runs: list[str]
    labels: dict[str, str]


class Windows(_Strict):
    """How a recording is cut: fixed-length windows (pretraining) or event-locked (downstream).

    In fixed mode a window still takes the label of a labelled annotation that covers its middle, so
    span labels (sleep stages, seizures, film clips, a label read from the path) use fixed windows.
    """

    mode: Literal["fixed", "events"] = "fixed"
    length_s: float = Field(4.0, gt=0)
    stride_s: float | None = Field(None, gt=0)  # None: equal to length_s (no overlap)
    tmin: float = 0.0  # events mode: window start relative to event onset (s)


class Expected(_Strict):
    """What the data should look like; a mismatch is reported, not fatal."""

    n_channels: int | None = Field(None, gt=0)
    sfreq: float | None = Field(None, gt=0)
    ch_types: list[str] | None = None


class Manifest(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    source: Source
    paradigm: Paradigm
    # classification: each window's class from ``labels``; regression: each window's continuous
    # ``target`` from the source's target spans (fixed windows; no labels); seizure: a classification
    # of fixed windows with a "seizure" class, also scored as events (docs/evaluation.md, "Seizure
    # detection"). Written into index.json.
    task: Literal["classification", "regression", "seizure"] = "classification"
    labels: dict[str, str] = Field(default_factory=dict)
    label_rules: list[LabelRule] = Field(default_factory=list)
    runs: list[str] | None = None  # keep only these runs (after path parsing)
    expected: Expected = Field(default_factory=Expected)
    windows: Windows = Field(default_factory=Windows)
    preprocessing: dict[str, Any] = Field(default_factory=dict)  # overrides of PreprocessConfig
    license: str
    citation: str
    url: str
    how_to_obtain: str = ""
    notes: str = ""
    # Filled by ``load_manifest``: not part of the YAML.
    path: Path | None = Field(None, exclude=True)
    sha256: str = Field("", exclude=True)

    @model_validator(mode="after")
    def _regression_has_no_classes(self) -> Manifest:
        if self.task == "regression":
            if self.labels or self.label_rules:
                raise ValueError("task: regression windows carry a continuous target, not a class: "
                                 "leave labels and label_rules empty")
            if self.windows.mode != "fixed":
                raise ValueError("task: regression takes each window's target from the spans covering "
                                 "its middle: windows.mode must be 'fixed'")
        if self.task == "seizure" and (self.windows.mode != "fixed" or "seizure" not in self.classes()):
            raise ValueError("task: seizure scores consecutive windows as events: windows.mode must be 'fixed' "
                             f"and a class must be named 'seizure' (classes: {self.classes()})")
        return self

    def classes(self) -> list[str]:
        """Class names in a stable order (first appearance in ``labels`` then in the rules)."""
        names = list(dict.fromkeys(self.labels.values()))
        for rule in self.label_rules:
            names += [n for n in rule.labels.values() if n not in names]
        return names

    def label_map(self, run: str) -> dict[str, str]:
        """Event-description → class name for one run."""
        mapping = dict(self.labels)
        for rule in self.label_rules:
            if run in rule.runs:
                mapping.update(rule.labels)
        return mapping




_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def path_variables(value: str) -> dict[str, str | None]:
    """The ``${VAR}`` / ``${VAR:-default}`` variables a path uses, with their defaults (or None)."""
    return {m["name"]: m["default"] for m in _VAR.finditer(value)}


def default_shared_data() -> Path:
    """``../shared/data`` beside the repository root (where the project's real test files live)."""
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def expand_path(value: str, base: Path) -> Path:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``~``; resolve a relative path against ``base``."""
    env = {"NEUROFM_SHARED_DATA": str(default_shared_data()), **os.environ}

    def sub(m: re.Match) -> str:
        if m["name"] in env and env[m["name"]]:
            return env[m["name"]]
        if m["default"] is not None:
            return m["default"]
        raise ManifestError(f"environment variable {m['name']} is not set (used in {value!r})")

    path = Path(os.path.expanduser(_VAR.sub(sub, value)))
    return path if path.is_absolute() else (base / path).resolve()


def _format_errors(path: Path | str, err: ValidationError) -> str:
    lines = [f"{path}: {err.error_count()} error(s)"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        lines.append(f"  {loc}: {e['msg']}")
    return "\n".join(lines)


def parse_manifest(data: dict[str, Any], path: Path | str = "<manifest>") -> Manifest:
    """Validate a manifest dict; raise ``ManifestError`` listing every error with its field path."""
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: a manifest must be a YAML mapping, got {type(data).__name__}")
    try:
        return Manifest.model_validate(data)
    except ValidationError as err:
        raise ManifestError(_format_errors(path, err)) from None


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate one manifest file."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest file not found")
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ManifestError(f"{path}: not valid YAML: {err}") from None
    manifest = parse_manifest(data, path)
    manifest.path = path.resolve()
    manifest.sha256 = hashlib.sha256(raw).hexdigest()
    return manifest


def manifests_dir() -> Path:
    """The ``data_manifests/`` folder shipped at the repository root."""
    return Path(__file__).resolve().parents[2] / "data_manifests"


def resolve_manifest(name_or_path: str | Path) -> Path:
    """Accept a path or the bare name of a shipped manifest (``synthetic_mi``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = manifests_dir() / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(q.stem for q in manifests_dir().glob("*.yaml"))
    raise ManifestError(f"{name_or_path}: no such manifest file, nor a shipped one ({', '.join(names)})")
