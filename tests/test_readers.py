"""Dataset-specific readers, end to end through ``prepare`` of the shipped manifests: SEED-VIG's MATLAB
files with PERCLOS targets, CHB-MIT's EDFs with seizure times from the summary file. Each test builds a
tiny release in the real on-disk layout under tmp_path (no download) and points NEUROFM_DATA at it."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import get_args

import mne
import numpy as np
import pytest
import webdataset as wds
from scipy.io import savemat

from neurofm.pipelines import events as ev
from neurofm.pipelines.chbmit import SummaryError, parse_summary, seizure_spans
from neurofm.pipelines.manifest import FilesSource
from neurofm.pipelines.prepare import prepare
from neurofm.pipelines.readers import READERS, read_seed_vig


def _windows(index_path: Path) -> list[dict]:
    """Every window's .json, with its signal's std (µV) added as ``std``."""
    index = json.loads(index_path.read_text())
    out = []
    for s in wds.WebDataset([str(index_path.parent / sh["url"]) for sh in index["shards"]], shardshuffle=False,
                            empty_check=False):
        meta = json.loads(s["json"])
        meta["std"] = float(np.load(io.BytesIO(s["npy"])).std())
        out.append(meta)
    return out


def test_manifest_choices_match_the_registries() -> None:
    fields = FilesSource.model_fields
    assert set(get_args(fields["reader"].annotation)) == set(READERS)
    assert set(get_args(fields["events"].annotation)) == set(ev.READERS)


# ------------------------------------------------------------------------------- SEED-VIG
SEED_VIG_CHANNELS = ["FT7", "FT8", "T7", "T8", "TP7", "TP8", "CP1", "CP2", "P1", "PZ", "P2", "PO3", "POZ",
                     "PO4", "O1", "OZ", "O2"]  # as the release spells them
SFREQ_VIG, N_SPANS = 200, 6  # 6 PERCLOS values of 8 s (the release has 885)


def _write_seed_vig(root: Path, name: str, seed: int, n_spans: int = N_SPANS, eeg: bool = True) -> np.ndarray:
    """``Raw_Data/<name>.mat`` and ``perclos_labels/<name>.mat``; returns the PERCLOS values."""
    rng = np.random.default_rng(seed)
    data = rng.normal(0, 20.0, (N_SPANS * 8 * SFREQ_VIG, len(SEED_VIG_CHANNELS)))  # (T, C) µV
    struct = {"data": data, "chn": np.array(SEED_VIG_CHANNELS, dtype=object), "sample_rate": SFREQ_VIG}
    perclos = rng.uniform(0, 1, (n_spans, 1))
    for folder, content in [("Raw_Data", {"EEG" if eeg else "eeg": struct}), ("perclos_labels", {"perclos": perclos})]:
        (root / folder).mkdir(parents=True, exist_ok=True)
        savemat(root / folder / f"{name}.mat", content)
    return perclos.ravel()


def test_seed_vig_reader_scales_microvolts_and_reads_perclos(tmp_path: Path) -> None:
    perclos = _write_seed_vig(tmp_path, "1_20151124_noon_2", seed=0)
    rec = read_seed_vig(tmp_path / "Raw_Data" / "1_20151124_noon_2.mat", {})
    assert rec.raw.ch_names == SEED_VIG_CHANNELS and rec.raw.info["sfreq"] == SFREQ_VIG
    assert set(rec.raw.get_channel_types()) == {"eeg"}
    assert 10e-6 < rec.raw.get_data().std() < 40e-6  # 20 µV noise, held in volts
    np.testing.assert_allclose(rec.targets.value, perclos)
    assert rec.targets.at(8.5) == pytest.approx(perclos[1]) and rec.targets.duration[0] == 8.0


def test_seed_vig_prepares_with_perclos_targets_and_reports_bad_files(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "SEED-VIG"
    good = {name: _write_seed_vig(root, name, seed=i)
            for i, name in enumerate(["1_20151124_noon_2", "2_20151106_noon"])}
    _write_seed_vig(root, "3_20151024_noon", seed=3, n_spans=N_SPANS + 2)  # wrong PERCLOS length
    _write_seed_vig(root, "4_20151105_noon", seed=4, eeg=False)  # no EEG variable
    _write_seed_vig(root, "5_20141108_noon", seed=5)
    (root / "perclos_labels" / "5_20141108_noon.mat").unlink()  # no PERCLOS file
    monkeypatch.setenv("NEUROFM_DATA", str(tmp_path))

    summary = prepare("SEED-VIG", str(tmp_path / "out"), progress=False)

    reasons = {Path(f.path).name: f.reason for f in summary.failures}
    assert summary.n_ok == 2 and set(reasons) == {"3_20151024_noon.mat", "4_20151105_noon.mat", "5_20141108_noon.mat"}
    wrong_length, no_eeg = reasons["3_20151024_noon.mat"], reasons["4_20151105_noon.mat"]
    assert "perclos has 8 values" in wrong_length and "perclos_labels/3_20151024_noon.mat" in wrong_length
    assert "no variable 'EEG'" in no_eeg and "Raw_Data/4_20151105_noon.mat" in no_eeg
    assert "no PERCLOS file" in reasons["5_20141108_noon.mat"]
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["task"] == "regression" and index["classes"] == [] and index["subjects"] == ["1", "2"]
    wins = _windows(tmp_path / "out" / "index.json")
    assert len(wins) == 2 * N_SPANS
    for w in wins:
        expected = good["1_20151124_noon_2" if w["subject"] == "1" else "2_20151106_noon"]
        assert w["target"] == pytest.approx(expected[round(w["onset"] / 8.0)]) and w["label"] is None
        assert 5 < w["std"] < 60, "µV in the shards: the reader's V scaling was undone once, not twice"
    assert {"Pz", "POz", "Oz"} <= set(wins[0]["ch_names"])  # normalised from PZ, POZ, OZ


# ------------------------------------------------------------------------------- CHB-MIT
CHB_CHANNELS = ["FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1", "FP2-F4", "F4-C4",
                "C4-P4", "P4-O2", "FP2-F8", "F8-T8", "T8-P8-0", "P8-O2", "FZ-CZ", "CZ-PZ", "P7-T7", "T7-FT9",
                "FT9-FT10", "FT10-T8", "T8-P8-1"]  # chb01's 23 bipolar channels (MNE's names for the T8-P8 pair)
SFREQ_CHB, SECONDS_CHB = 256, 60

SUMMARY = """Data Sampling Rate: 256 Hz
*************************

Channels in EDF Files:
**********************
Channel 1: FP1-F7
Channel 2: F7-T7

File Name: chb01_01.edf
File Start Time: 11:42:54
File End Time: 11:43:54
Number of Seizures in File: 0

File Name: chb01_03.edf
File Start Time: 13:43:04
File End Time: 13:44:04
Number of Seizures in File: 1
Seizure Start Time: 20 seconds
Seizure End Time: 30 seconds

File Name: chb01_04.edf
File Start Time: 14:43:12
File End Time: 14:44:12
Number of Seizures in File: 2
Seizure 1 Start Time: 0 seconds
Seizure 1 End Time: 10 seconds
Seizure 2 Start Time:  38 seconds
Seizure 2 End Time:  57 seconds
"""


def _write_chb(case: Path, runs: list[str], summary: str = SUMMARY) -> None:
    case.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    info = mne.create_info(CHB_CHANNELS, SFREQ_CHB, "eeg")
    for run in runs:
        raw = mne.io.RawArray(rng.normal(0, 30e-6, (len(CHB_CHANNELS), SECONDS_CHB * SFREQ_CHB)), info, verbose="error")
        mne.export.export_raw(case / f"{case.name}_{run}.edf", raw, fmt="edf", overwrite=True, verbose="error")
    (case / f"{case.name}-summary.txt").write_text(summary)


def _labels(wins: list[dict], run: str) -> list[str]:
    return [w["label"] for w in sorted((w for w in wins if w["run"] == run), key=lambda w: w["onset"])]


def test_chb_mit_prepares_seizure_and_background_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_chb(tmp_path / "CHB-MIT" / "chb01", ["01", "03", "04"])
    monkeypatch.setenv("NEUROFM_DATA", str(tmp_path))

    summary = prepare("CHB-MIT", str(tmp_path / "out"), progress=False)

    assert summary.n_failed == 0, [f.reason for f in summary.failures]
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["task"] == "seizure" and index["classes"] == ["background", "seizure"]
    wins = _windows(tmp_path / "out" / "index.json")
    b, s = "background", "seizure"
    assert _labels(wins, "1") == [b] * 6
    assert _labels(wins, "3") == [b, b, s, b, b, b]  # seizure 20-30 s is exactly window 2 (10 s windows)
    assert _labels(wins, "4") == [s, b, b, b, s, s]  # 0-10 s; 38-57 s covers the middles of windows 4 and 5 (not of 3)
    assert all(w["label_id"] == index["classes"].index(w["label"]) for w in wins)


def test_chb_mit_file_missing_from_its_summary_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_chb(tmp_path / "CHB-MIT" / "chb01", ["01", "07"])
    _write_chb(tmp_path / "CHB-MIT" / "chb02", ["01"])
    (tmp_path / "CHB-MIT" / "chb02" / "chb02-summary.txt").unlink()
    monkeypatch.setenv("NEUROFM_DATA", str(tmp_path))

    summary = prepare("CHB-MIT", str(tmp_path / "out"), progress=False)

    reasons = {Path(f.path).name: f.reason for f in summary.failures}
    assert summary.n_ok == 1 and set(reasons) == {"chb01_07.edf", "chb02_01.edf"}
    assert "chb01-summary.txt" in reasons["chb01_07.edf"] and "File Name: chb01_07.edf" in reasons["chb01_07.edf"]
    assert str(tmp_path / "CHB-MIT" / "chb02" / "chb02-summary.txt") in reasons["chb02_01.edf"]


def test_chb_summary_reads_both_seizure_spellings(tmp_path: Path) -> None:
    path = tmp_path / "chb01-summary.txt"
    path.write_text(SUMMARY)
    blocks = parse_summary(path)
    assert sorted(blocks) == ["chb01_01.edf", "chb01_03.edf", "chb01_04.edf"]
    assert [(a, b) for a, b, _ in blocks["chb01_04.edf"].spans()] == [(0.0, 10.0), (38.0, 57.0)]
    assert blocks["chb01_01.edf"].spans() == []


@pytest.mark.parametrize("broken, line, complaint", [
    (SUMMARY.replace("Seizure End Time: 30 seconds", "Seizure End Time: thirty seconds"), 19,
     "cannot read a seizure time"),
    (SUMMARY.replace("Seizure End Time: 30 seconds\n", ""), 14, "1 seizure start time(s) but 0 end time(s)"),
    (SUMMARY.replace("Number of Seizures in File: 1", "Number of Seizures in File: 2"), 14,
     "'Number of Seizures in File: 2' but 1 seizure(s) listed"),
    ("Seizure Start Time: 5 seconds\n" + SUMMARY, 1, "before any 'File Name:' line"),
    (SUMMARY.replace("Seizure End Time: 30 seconds", "Seizure End Time: 10 seconds"), 18, "not after its start"),
])
def test_chb_summary_errors_name_the_file_and_line(tmp_path: Path, broken: str, line: int, complaint: str) -> None:
    path = tmp_path / "chb01-summary.txt"
    path.write_text(broken)
    with pytest.raises(SummaryError) as err:
        parse_summary(path)
    assert f"{path}:{line}" in str(err.value) and complaint in str(err.value)


def test_chb_seizure_past_the_end_of_its_file_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "chb01").mkdir()
    (tmp_path / "chb01" / "chb01-summary.txt").write_text(SUMMARY)
    assert seizure_spans(tmp_path / "chb01" / "chb01_04.edf", 60.0) == [(0.0, 10.0), (38.0, 57.0)]
    with pytest.raises(SummaryError, match=r"chb01-summary.txt:27: seizure 38-57 s of chb01_04.edf ends after"):
        seizure_spans(tmp_path / "chb01" / "chb01_04.edf", 50.0)
