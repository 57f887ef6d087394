"""Channel names to 10-05 labels and positions: names, synthetic recordings, then the real files."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest

from neurofm.pipelines.channels import (
    OLD_1020_ALIASES,
    TEMPLATE_MONTAGE,
    ChannelReport,
    channel_positions,
    normalize_ch_name,
    standardize_channels,
)

EEGBCI_R01 = "real/eegbci_S001/S001R01.edf"


def _raw(names: list[str], types: str | list[str] = "eeg") -> mne.io.RawArray:
    info = mne.create_info(names, sfreq=100.0, ch_types=types)
    return mne.io.RawArray(np.zeros((len(names), 10)), info, verbose="error")


def _read(shared_data: Path, relative: str, **kwargs) -> mne.io.BaseRaw:
    path = shared_data / relative
    if not path.exists():
        pytest.skip(f"real recording not found: {path}")
    return mne.io.read_raw(path, verbose="error", **kwargs)


def _template_positions(names: list[str]) -> np.ndarray:
    """Positions MNE itself gives these 10-05 labels: the reference for parity checks."""
    raw = _raw(names)
    raw.set_montage(mne.channels.make_standard_montage(TEMPLATE_MONTAGE))
    return channel_positions(raw.info)


def _pos(raw: mne.io.BaseRaw, name: str) -> np.ndarray:
    return channel_positions(raw.info)[raw.ch_names.index(name)]


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("EEG Fp1-REF", "Fp1"),
        ("FP1", "Fp1"),
        ("Fc5.", "FC5"),
        ("Cz..", "Cz"),
        ("EEG FPZ-LE", "Fpz"),
        ("eeg c3", "C3"),
        ("EEG O2-AR", "O2"),
        ("C3-M2", "C3"),
        ("Af7.", "AF7"),
        ("Tp10", "TP10"),
        ("POZ", "POz"),
        ("FCZ", "FCz"),
        ("cpz", "CPz"),
        ("iz", "Iz"),
        ("i1", "I1"),
        ("ft10", "FT10"),
        ("T3", "T7"),
        ("T4", "T8"),
        ("EEG T5-REF", "P7"),
        ("t6", "P8"),
        ("A1", "A1"),
        ("EEG 000", "EEG 000"),
        ("MEG0113", "MEG0113"),
        ("MEG 001", "MEG 001"),
        ("Fpz-Cz", "Fpz-Cz"),  # bipolar pair: not one electrode
        ("squarewave", "squarewave"),
        ("EEG", "EEG"),
        ("", ""),
    ],
)
def test_normalize_ch_name(name: str, expected: str) -> None:
    assert normalize_ch_name(name) == expected


def test_every_template_label_is_canonical() -> None:
    labels = mne.channels.make_standard_montage(TEMPLATE_MONTAGE).ch_names
    for label in labels:
        assert normalize_ch_name(label) == OLD_1020_ALIASES.get(label, label)
        assert normalize_ch_name(label.upper()) == OLD_1020_ALIASES.get(label, label)


# ---------------------------------------------------------------- synthetic recordings


def test_renames_and_places_like_set_montage() -> None:
    raw = _raw(["EEG FP1-REF", "c3", "C4", "T3"])
    report = standardize_channels(raw)
    assert isinstance(report, ChannelReport)
    assert raw.ch_names == ["Fp1", "C3", "C4", "T7"]
    assert report.renamed == {"EEG FP1-REF": "Fp1", "c3": "C3", "T3": "T7"}
    assert report.unknown == [] and report.duplicates == [] and report.n_with_position == 4
    np.testing.assert_allclose(channel_positions(raw.info), _template_positions(raw.ch_names))
    assert raw.get_montage() is not None  # dig filled in, as set_montage would


def test_duplicates_keep_original_names() -> None:
    raw = _raw(["EEG Fp1-REF", "EEG Fp1-LE", "FP2", "Cz"])
    report = standardize_channels(raw)
    assert raw.ch_names == ["EEG Fp1-REF", "EEG Fp1-LE", "Fp2", "Cz"]
    assert report.duplicates == ["EEG Fp1-REF", "EEG Fp1-LE"]
    assert report.renamed == {"FP2": "Fp2"}
    # Both are the Fp1 electrode (two references), so both get its position.
    fp1 = _template_positions(["Fp1"])[0]
    np.testing.assert_allclose(_pos(raw, "EEG Fp1-REF"), fp1)
    np.testing.assert_allclose(_pos(raw, "EEG Fp1-LE"), fp1)


def test_no_collision_with_a_non_eeg_channel() -> None:
    raw = _raw(["FP1", "Fp1"], types=["eeg", "misc"])
    report = standardize_channels(raw)
    assert raw.ch_names == ["FP1", "Fp1"]
    assert report.duplicates == ["FP1", "Fp1"]


def test_unknown_eeg_kept_with_nan_position() -> None:
    raw = _raw(["Cz", "EEG 000", "Pz"])
    report = standardize_channels(raw)
    assert raw.ch_names == ["Cz", "EEG 000", "Pz"]
    assert report.unknown == ["EEG 000"]
    assert report.n_with_position == 2
    pos = channel_positions(raw.info)
    assert pos.shape == (3, 3)
    assert np.isnan(pos[1]).all() and np.isfinite(pos[[0, 2]]).all()


def test_non_eeg_types_untouched() -> None:
    names = ["FP1", "EOG Fp1", "ECG", "EMG", "STI 014", "Cz"]
    raw = _raw(names, types=["eeg", "eog", "ecg", "emg", "stim", "misc"])
    report = standardize_channels(raw)
    assert raw.ch_names == ["Fp1", *names[1:]]
    assert report.unknown == []
    assert np.isnan(channel_positions(raw.info)[1:]).all()


def test_existing_positions_win_over_template() -> None:
    raw = _raw(["FP1", "Cz", "X"])
    own = {"FP1": [0.01, 0.02, 0.03], "Cz": [0.0, 0.0, 0.09], "X": [0.05, 0.0, 0.05]}
    raw.set_montage(mne.channels.make_dig_montage(ch_pos=own, coord_frame="head"))
    report = standardize_channels(raw)
    assert raw.ch_names == ["Fp1", "Cz", "X"]
    assert report.unknown == [] and report.n_with_position == 3
    np.testing.assert_allclose(channel_positions(raw.info), np.array(list(own.values())))


def test_bank_named_cap_gets_no_template_positions() -> None:
    # BioSemi 32: "C3" here is an electrode of bank C, not the 10-05 C3.
    names = [f"{bank}{i}" for bank in "AB" for i in range(1, 17)]
    report = standardize_channels(_raw(names))
    assert report.renamed == {} and report.unknown == names and report.n_with_position == 0


def test_a_few_bank_like_names_do_not_veto_10_20() -> None:
    raw = _raw(["Fp1", "Fp2", "C3", "C4", "O1", "O2", "E1", "E2", "X1"])
    report = standardize_channels(raw)
    assert report.unknown == ["E1", "E2", "X1"] and report.n_with_position == 6


def test_standardize_is_idempotent() -> None:
    raw = _raw(["Fc5.", "Cz..", "EEG 000"])
    standardize_channels(raw)
    before = channel_positions(raw.info)
    again = standardize_channels(raw)
    assert again.renamed == {} and again.unknown == ["EEG 000"]
    np.testing.assert_array_equal(channel_positions(raw.info), before)


# ---------------------------------------------------------------- real recordings


@pytest.mark.shared_data
def test_physionet_edf(shared_data: Path) -> None:
    raw = _read(shared_data, EEGBCI_R01, encoding="latin1")
    report = standardize_channels(raw)
    assert len(raw.ch_names) == 64 and len(report.renamed) == 64
    assert report.unknown == [] and report.duplicates == [] and report.n_with_position == 64
    labels = set(mne.channels.make_standard_montage(TEMPLATE_MONTAGE).ch_names)
    assert set(raw.ch_names) <= labels
    assert {"FC5", "FCz", "AFz", "PO7", "TP8", "T10", "Iz"} <= set(raw.ch_names)
    pos = channel_positions(raw.info)
    assert np.isfinite(pos).all()
    assert _pos(raw, "C3")[0] < _pos(raw, "Cz")[0] < _pos(raw, "C4")[0]  # x: left -> right
    assert _pos(raw, "Fpz")[1] > _pos(raw, "Oz")[1]  # y: front -> back
    np.testing.assert_allclose(pos, _template_positions(raw.ch_names))


@pytest.mark.shared_data
def test_eeglab_without_positions(shared_data: Path) -> None:
    raw = _read(shared_data, "real/eeglab/test_raw.set")
    report = standardize_channels(raw)
    # This export has empty chanlocs and "EEG 000"-style names: nothing to place.
    assert report.renamed == {} and len(report.unknown) == 32 and report.n_with_position == 0


@pytest.mark.shared_data
def test_eeglab_keeps_its_own_positions(shared_data: Path) -> None:
    raw = _read(shared_data, "real/eeglab/test_raw.set")
    rng = np.random.default_rng(0)
    own = {name: xyz for name, xyz in zip(raw.ch_names, 0.01 + 0.08 * rng.random((32, 3)))}
    raw.set_montage(mne.channels.make_dig_montage(ch_pos=own, coord_frame="head"))
    raw.rename_channels({"EEG 000": "FP1"})  # a 10-05 name must not pull in the template position
    report = standardize_channels(raw)
    assert report.renamed == {"FP1": "Fp1"} and report.unknown == []
    np.testing.assert_allclose(channel_positions(raw.info), np.array(list(own.values())))


@pytest.mark.shared_data
def test_meg_fif_sensor_positions(shared_data: Path) -> None:
    raw = _read(shared_data, "meg/141027_cropped_90Hz_raw.fif")
    names = list(raw.ch_names)
    report = standardize_channels(raw)
    assert raw.ch_names == names and report.renamed == {} and report.n_with_position == 306
    pos = channel_positions(raw.info)
    picks = mne.pick_types(raw.info, meg=True)
    assert len(picks) == 306 and np.isfinite(pos[picks]).all()
    locs = np.array([ch["loc"][:3] for ch in raw.info["chs"]])
    np.testing.assert_allclose(pos, locs)  # no dev_head_t in this file: device frame as is


@pytest.mark.shared_data
def test_meg_positions_follow_dev_head_t(shared_data: Path) -> None:
    raw = _read(shared_data, "meg/141027_cropped_90Hz_raw.fif")
    shift = np.eye(4)
    shift[:3, 3] = [0.0, 0.01, 0.04]
    with raw.info._unlock():  # tests only: set a device -> head transform the file lacks
        raw.info["dev_head_t"] = mne.transforms.Transform("meg", "head", shift)
    locs = np.array([ch["loc"][:3] for ch in raw.info["chs"]])
    np.testing.assert_allclose(channel_positions(raw.info), locs + shift[:3, 3])


@pytest.mark.shared_data
def test_kit_meg(shared_data: Path) -> None:
    raw = _read(shared_data, "meg/MQKIT_125_2sec.con")
    report = standardize_channels(raw)
    pos = channel_positions(raw.info)
    assert report.renamed == {} and report.unknown == []
    assert np.isfinite(pos[mne.pick_types(raw.info, meg="mag")]).all()
    assert np.isnan(pos[mne.pick_types(raw.info, stim=True, misc=True)]).all()


@pytest.mark.shared_data
def test_many_channel_edf_reports_unknowns(shared_data: Path) -> None:
    raw = _read(shared_data, "formats/test_reduced.edf")
    report = standardize_channels(raw)
    # Bank names A1..I8 (+ two "Ergo" inputs typed EEG); "Status" is stim and is not reported.
    assert len(raw.ch_names) == 139 and report.renamed == {}
    assert len(report.unknown) == 138 and "Status" not in report.unknown
    assert report.n_with_position == 0


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("relative", "n_unknown"),
    [("formats/test_NO.vhdr", 65), ("formats/test_generator_2.edf", 11)],
)
def test_other_formats_report_unknowns(shared_data: Path, relative: str, n_unknown: int) -> None:
    raw = _read(shared_data, relative)
    names = list(raw.ch_names)
    report = standardize_channels(raw)
    assert raw.ch_names == names and report.renamed == {}
    assert len(report.unknown) == n_unknown and report.n_with_position == 0
