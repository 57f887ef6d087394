"""Channel names to standard 10-05 labels, and a 3D position for every channel.

Any-montage models read a channel's identity from its name and its 3D position, so every recording
goes through :func:`standardize_channels` before it is cut into windows::

    raw = mne.io.read_raw_edf("S001R01.edf", encoding="latin1")  # names like "Fc5.", "Cz.."
    report = standardize_channels(raw)                            # now "FC5", "Cz", with positions
    pos = channel_positions(raw.info)                             # (n_chans, 3) metres, head frame

The template is MNE's ``colin27_1005`` montage (``standard_1005`` is deprecated in MNE 1.13); its
label spelling ("Fp1", "AFz", "FCz", "TP9", "PO7", "Iz", ...) is the canonical one here.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import mne
import numpy as np
from mne.io.constants import FIFF
from mne.transforms import apply_trans

TEMPLATE_MONTAGE = "colin27_1005"

# Old 10-20 labels renamed in the 10-10 system (American Clinical Neurophysiology Society, 2006).
# colin27_1005 holds both spellings at the same coordinates; we keep only the modern one so that
# one electrode has one name across datasets.
OLD_1020_ALIASES: Mapping[str, str] = MappingProxyType(
    {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}
)

_PREFIX = re.compile(r"^EEG[\s_:]*", re.IGNORECASE)
# Reference suffixes: TUH "-REF"/"-LE"/"-AR", mastoid/ear references "-M1"/"-A2", average "-AVG".
# Bipolar pairs such as "Fpz-Cz" keep their name: they are not one electrode.
_REF_SUFFIX = re.compile(r"-(REF|LE|RE|AR|AVG|CAR|A1|A2|M1|M2)$", re.IGNORECASE)
# Letter bank + index names of BioSemi ("A1".."H32") and EGI ("E1".."E257") caps.
_BANK_NAME = re.compile(r"^[A-Z]\d{1,3}$")
# A recording uses bank names when at least this many of its EEG names look like "B7" and are not
# 10-05 labels; a few such names ("E1"/"E2" sleep EOG, "X1" aux inputs) do not make a bank cap.
_MIN_BANK_EVIDENCE = 8


@dataclass
class ChannelReport:
    """What :func:`standardize_channels` changed and what it could not place."""

    renamed: dict[str, str] = field(default_factory=dict)  # original -> normalised, changed only
    unknown: list[str] = field(default_factory=list)  # EEG channels kept with a NaN position
    duplicates: list[str] = field(default_factory=list)  # originals that would collide; not renamed
    n_with_position: int = 0  # channels of any type with a finite position


@functools.lru_cache(maxsize=1)
def _template_montage() -> mne.channels.DigMontage:
    return mne.channels.make_standard_montage(TEMPLATE_MONTAGE)


@functools.lru_cache(maxsize=1)
def _canonical_names() -> Mapping[str, str]:
    """Lower-case key -> canonical 10-05 label, old 10-20 labels mapped to their new names."""
    table = {n.lower(): n for n in _template_montage().ch_names if n not in OLD_1020_ALIASES}
    table.update({old.lower(): new for old, new in OLD_1020_ALIASES.items()})
    return MappingProxyType(table)


@functools.lru_cache(maxsize=1)
def _template_info() -> mne.Info:
    """Every template label placed by ``set_montage``: positions in head coordinates."""
    montage = _template_montage()
    info = mne.create_info(montage.ch_names, sfreq=1.0, ch_types="eeg")
    return info.set_montage(montage)


@functools.lru_cache(maxsize=1)
def _template_locs() -> Mapping[str, np.ndarray]:
    """Canonical label -> ``loc`` (12,) in head coordinates, as ``set_montage`` writes it."""
    locs = {ch["ch_name"]: ch["loc"].copy() for ch in _template_info()["chs"]}
    for loc in locs.values():
        loc.setflags(write=False)
    return MappingProxyType(locs)


def _strip_decorations(name: str) -> str:
    """Drop padding dots/spaces, an "EEG" prefix and a reference suffix: "EEG Fp1-REF" -> "Fp1"."""
    core = _PREFIX.sub("", name.strip(" ."))
    return _REF_SUFFIX.sub("", core).strip(" .")


def _canonical(name: str) -> str | None:
    """The 10-05 label ``name`` stands for, or None."""
    core = _strip_decorations(name)
    return _canonical_names().get(core.lower()) if core else None


def template_position(name: str) -> np.ndarray | None:
    """The colin27 10-05 position (3,) in metres, head frame, of a channel name (any spelling); None if unknown."""
    label = _canonical(name)
    return None if label is None else _template_locs()[label][:3].copy()


def normalize_ch_name(name: str) -> str:
    """Standard 10-05 label for an EEG channel name; any name that is not one comes back unchanged.

    Padding dots and spaces, an "EEG" prefix and a reference suffix ("-REF", "-LE", "-AR", "-M1",
    ...) are removed, then the rest is looked up case-insensitively in the colin27_1005 labels:
    "EEG Fp1-REF" -> "Fp1", "FP1" -> "Fp1", "Fc5." -> "FC5", "EEG FPZ-LE" -> "Fpz".
    The old 10-20 labels T3/T4/T5/T6 become T7/T8/P7/P8 (same electrodes, renamed in 10-10).
    Unknown names ("EEG 000", "MEG0113", "Fpz-Cz") are returned as given.
    """
    return _canonical(name) or name


def _uses_bank_names(names: Sequence[str]) -> bool:
    """True for caps named by letter bank + index (BioSemi "A1".."H32", EGI "E1".."E257").

    Their "C3" or "A1" is not the 10-05 electrode of that name, so no template label applies.
    """
    cores = [_strip_decorations(n) for n in names]
    banked = [c for c in cores if _BANK_NAME.match(c.upper())]
    foreign = [c for c in banked if c.lower() not in _canonical_names()]
    return len(foreign) >= _MIN_BANK_EVIDENCE and 2 * len(banked) >= len(names)


def _eeg_targets(ch_names: Sequence[str], eeg_idx: Sequence[int]) -> dict[int, str | None]:
    """Channel index -> canonical 10-05 label (None where there is none), for EEG channels only."""
    if _uses_bank_names([ch_names[i] for i in eeg_idx]):
        return {i: None for i in eeg_idx}
    return {i: _canonical(ch_names[i]) for i in eeg_idx}


def _plan_renames(
    ch_names: Sequence[str], targets: Mapping[int, str | None]
) -> tuple[dict[str, str], list[str]]:
    """Renames that create no duplicate name, and the original names left alone for that reason."""
    proposed = [targets.get(i) or name for i, name in enumerate(ch_names)]
    counts = Counter(proposed)
    # Reverting a colliding group to its originals cannot collide again: originals are unique, and
    # an original equal to some proposal proposes itself, so it is in that same group.
    duplicates = [name for name, new in zip(ch_names, proposed) if counts[new] > 1]
    renamed = {
        name: new for name, new in zip(ch_names, proposed) if new != name and counts[new] == 1
    }
    return renamed, duplicates


def _locations(info: mne.Info) -> tuple[np.ndarray, np.ndarray]:
    """Every channel's ``loc[:3]`` (C, 3), and whether it is usable (C,): finite and not all zero
    (readers without positions write NaN or 0)."""
    xyz = np.array([ch["loc"][:3] for ch in info["chs"]], dtype=float).reshape(-1, 3)  # (C, 3)
    return xyz, np.isfinite(xyz).all(axis=1) & (xyz != 0).any(axis=1)


def _attach_positions(info: mne.Info, targets: Mapping[int, str | None]) -> list[str]:
    """Give EEG channels without a usable position the template's; return those left without one.

    Writes ``loc`` directly rather than calling ``set_montage``, which would replace ``info["dig"]``
    and so drop the HPI and head-shape points of MEG recordings.
    """
    unknown = []
    _, placed = _locations(info)
    for i, label in targets.items():
        ch = info["chs"][i]
        if placed[i]:
            continue  # digitised positions (EEGLAB, FIF) beat the template
        if label is None:
            ch["loc"][:3] = np.nan
            unknown.append(ch["ch_name"])
            continue
        ch["loc"][:] = _template_locs()[label]
        ch["coord_frame"] = FIFF.FIFFV_COORD_HEAD
    return unknown


@functools.lru_cache(maxsize=1)
def _template_fiducials() -> Mapping[str, np.ndarray]:
    """Nasion, LPA and RPA of the template (``get_montage`` of its 340 channels costs ~8 ms a call)."""
    positions = _template_info().get_montage().get_positions()
    return MappingProxyType({k: np.array(positions[k]) for k in ("nasion", "lpa", "rpa")})


def _digitize_eeg(raw: mne.io.BaseRaw, eeg_idx: Sequence[int]) -> None:
    """Fill an empty ``info["dig"]`` with the EEG positions and the template's fiducials.

    Only for recordings with no digitisation at all, where ``set_montage`` has nothing to replace;
    with it ``raw.get_montage()``, topomaps and ``interpolate_bads`` work as after ``set_montage``.
    """
    xyz, placed = _locations(raw.info)
    ch_pos = {raw.ch_names[i]: xyz[i] for i in eeg_idx if placed[i]}
    fiducials = _template_fiducials()
    montage = mne.channels.make_dig_montage(
        ch_pos=ch_pos,
        nasion=fiducials["nasion"],
        lpa=fiducials["lpa"],
        rpa=fiducials["rpa"],
        coord_frame="head",
    )
    raw.set_montage(montage, on_missing="ignore")


def standardize_channels(raw: mne.io.BaseRaw) -> ChannelReport:
    """Rename EEG channels to 10-05 labels and give them positions, in place.

    - Only channels of type "eeg" are renamed or placed; MEG, EOG, ECG, EMG, misc and stim channels
      keep their names and whatever ``loc`` they have (MEG: the sensor positions from the file).
    - A rename that would make two channels share a name is not done; those originals are listed in
      ``duplicates`` and still get the template position of the label they stand for.
    - An EEG channel keeps a finite, non-zero position it already has; otherwise it gets the
      colin27_1005 position of its label; otherwise its position is NaN and it is listed in
      ``unknown`` (it is never dropped).
    - Caps named by letter bank ("A1".."H32", "E1".."E257") get no template labels or positions.
    """
    eeg_idx = [i for i, kind in enumerate(raw.get_channel_types()) if kind == "eeg"]
    targets = _eeg_targets(raw.ch_names, eeg_idx)
    renamed, duplicates = _plan_renames(raw.ch_names, targets)
    if renamed:
        raw.rename_channels(renamed)
    unknown = _attach_positions(raw.info, targets)
    if raw.info["dig"] is None and len(unknown) < len(eeg_idx):
        _digitize_eeg(raw, eeg_idx)
    n_placed = int(np.isfinite(channel_positions(raw.info)).all(axis=1).sum())
    return ChannelReport(renamed, unknown, duplicates, n_placed)


def _device_to_head(info: mne.Info) -> np.ndarray:
    """The (4, 4) device -> head transform; identity when the file has none, as MNE assumes."""
    trans = info["dev_head_t"]
    return np.eye(4) if trans is None else trans["trans"]


def channel_positions(info: mne.Info) -> np.ndarray:
    """Position of every channel, (n_chans, 3) float in metres, head coordinates.

    EEG positions are read from ``loc[:3]`` (head frame); MEG sensor positions are moved from the
    device frame with ``info["dev_head_t"]``. Rows are NaN for channels with no usable position
    (stim, misc, unknown EEG names) or in a frame other than head or device.
    """
    xyz, placed = _locations(info)  # (C, 3), (C,)
    frame = np.array([ch["coord_frame"] for ch in info["chs"]])  # (C,)
    head, device = placed & (frame == FIFF.FIFFV_COORD_HEAD), placed & (frame == FIFF.FIFFV_COORD_DEVICE)
    pos = np.full(xyz.shape, np.nan)  # (C, 3)
    pos[head] = xyz[head]
    if device.any():
        pos[device] = apply_trans(_device_to_head(info), xyz[device])
    return pos
