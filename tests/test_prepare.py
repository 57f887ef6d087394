"""End to end: manifest → prepare → shards + index, resumability, bad inputs, parts + merge."""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mne
import numpy as np
import pytest
import webdataset as wds
import yaml

from neurofm.pipelines.prepare import PrepareError, _largest_first, prepare
from neurofm.pipelines.shards import IndexMergeError, encode_json, json_encoder_with, merge_indexes, sha256_file
from neurofm.pipelines.sources import Item
from shardkit import TINY_MI_MANIFEST

SYNTH = TINY_MI_MANIFEST


def write_manifest(folder: Path, data: dict, name: str = "m.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


def read_plain(index_path: Path) -> list[tuple[str, np.ndarray, dict]]:
    """Decode every sample with plain webdataset + numpy (no neurofm code)."""
    index = json.loads(index_path.read_text())
    urls = [str(index_path.parent / s["url"]) for s in index["shards"]]
    out = []
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        x = np.load(io.BytesIO(sample["npy"]), allow_pickle=False)
        out.append((sample["__key__"], x, json.loads(sample["json"])))
    return out


@pytest.fixture(scope="module")
def synth_prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    manifest = write_manifest(root, SYNTH)
    summary = prepare(str(manifest), str(root / "out"), progress=False)
    assert summary.n_failed == 0
    return root / "out" / "index.json"


def test_shards_decode_plainly_and_match_index(synth_prepared: Path):
    index = json.loads(synth_prepared.read_text())
    samples = read_plain(synth_prepared)
    assert len(samples) == index["n_samples"] == 3 * 2 * 2 * 3  # subjects × runs × classes × trials
    for shard in index["shards"]:
        assert sha256_file(synth_prepared.parent / shard["url"]) == shard["sha256"]
    key, x, meta = samples[0]
    assert x.dtype == np.float32 and x.shape == (22, 400)  # 2 s at 200 Hz
    assert key == f"tiny_mi/{meta['subject']}/{meta['session']}/{meta['run']}/{meta['window']:06d}"
    assert meta["label"] in ("left_hand", "right_hand")
    assert meta["label_id"] == index["classes"].index(meta["label"])
    assert len(meta["ch_pos"]) == 22 and all(v is not None for p in meta["ch_pos"] for v in p)
    assert meta["preproc_hash"] == index["preproc_hash"]
    assert index["subjects"] == ["01", "02", "03"]
    assert {s["subject"] for s in index["shards"]} == {"01", "02", "03"}
    assert sorted(k for k, _, _ in samples) == sorted(set(k for k, _, _ in samples))


def test_preprocessed_signal_is_in_microvolts_and_clean(synth_prepared: Path):
    _, x, meta = read_plain(synth_prepared)[0]
    rms = np.sqrt((x ** 2).mean(axis=1))
    good = [i for i, n in enumerate(meta["ch_names"]) if n not in meta["bad_channels"]]
    assert 1 < np.median(rms[good]) < 200  # µV, scalp EEG scale
    assert abs(float(x[good].mean(axis=0).mean())) < 1.0  # average reference


def test_rerun_skips_everything_and_writes_the_same_index(synth_prepared: Path):
    before = synth_prepared.read_bytes()
    summary = prepare(str(synth_prepared.parent.parent / "m.yaml"), str(synth_prepared.parent), progress=False)
    assert summary.n_skipped == summary.n_items and summary.n_ok == 0
    assert synth_prepared.read_bytes() == before


def test_resume_after_simulated_crash(synth_prepared: Path, tmp_path: Path):
    out = tmp_path / "out"
    shutil.copytree(synth_prepared.parent, out)
    (out / "index.json").unlink()
    victim = sorted((out / "parts").glob("*.json"))[2]
    victim.unlink()  # died after writing shards but before the marker ...
    item_dir = out / "shards" / victim.stem
    (item_dir / "half-written-000000.tar.tmp").write_bytes(b"\0" * 100)  # ... and mid-shard
    tar = next(item_dir.glob("*.tar"))
    tar.write_bytes(tar.read_bytes()[:1000])  # a torn shard that has no marker
    summary = prepare(str(synth_prepared.parent.parent / "m.yaml"), str(out), progress=False)
    assert summary.n_ok == 1 and summary.n_skipped == summary.n_items - 1
    assert (out / "index.json").read_bytes() == synth_prepared.read_bytes()
    assert not list(out.rglob("*.tmp"))


def test_kill_dash_9_then_rerun_completes_the_same_index(synth_prepared: Path, tmp_path: Path):
    manifest = synth_prepared.parent.parent / "m.yaml"
    out = tmp_path / "killed"
    code = ("import sys; from neurofm.pipelines.prepare import prepare; "
            "prepare(sys.argv[1], sys.argv[2], progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(manifest), str(out)])
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "parts").glob("*.json"))) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (out / "index.json").exists():  # only if it finished before the kill: then it must be whole
        assert json.loads((out / "index.json").read_text())["n_samples"] > 0
    prepare(str(manifest), str(out), progress=False)
    assert (out / "index.json").read_bytes() == synth_prepared.read_bytes()


def test_two_workers_write_the_same_index_as_one(synth_prepared: Path, tmp_path: Path):
    manifest = synth_prepared.parent.parent / "m.yaml"
    prepare(str(manifest), str(tmp_path / "w2"), workers=2, progress=False)
    assert (tmp_path / "w2" / "index.json").read_bytes() == synth_prepared.read_bytes()


def test_workers_take_the_largest_recordings_first(tmp_path: Path):
    for name, size in (("a", 10), ("b", 300), ("c", 20)):
        (tmp_path / name).write_bytes(b"x" * size)
    items = [Item("d", name, path=str(tmp_path / name)) for name in "abc"]
    items += [Item("d", "generated"), Item("d", "gone", path=str(tmp_path / "missing"))]
    assert [it.subject for it in _largest_first(items)] == ["b", "c", "a", "generated", "gone"]


def test_window_json_is_encoded_with_its_recording_part_once():
    common = {"dataset": "d", "ch_names": ["C3", "C4"], "ch_pos": [[0.1, None, 0.2]], "sfreq": 200.0}
    encode = json_encoder_with(common)
    for extra in ({"window": 3, "onset": 1.5, "label": None}, {}):
        assert encode(extra) == encode_json({**common, **extra})
    assert json_encoder_with({})(common) == encode_json(common)
    with pytest.raises(ValueError, match="sfreq"):
        encode({"sfreq": 100.0})
    accents = json_encoder_with({"subject": "Zoë ☃"})
    assert accents({"label": "é"}) == encode_json({"subject": "Zoë ☃", "label": "é"})
    with pytest.raises(ValueError):  # NaN is refused in either part, as encode_json refuses it
        encode({"onset": float("nan")})
    with pytest.raises(ValueError):
        json_encoder_with({"sfreq": float("inf")})


def test_prepare_runs_with_one_blas_thread_and_restores_the_callers(synth_prepared: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    from threadpoolctl import ThreadpoolController

    import neurofm.pipelines.prepare as prepare_module

    seen = []
    process_item = prepare_module.process_item

    def counting(*args, **kwargs):
        seen.append({lib.num_threads for lib in ThreadpoolController().lib_controllers})
        return process_item(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "process_item", counting)
    pools = ThreadpoolController()
    with pools.limit(limits=2):  # the caller's setting
        before = [lib.num_threads for lib in pools.lib_controllers]
        prepare(str(synth_prepared.parent.parent / "m.yaml"), str(tmp_path / "w1"), progress=False)
        assert [lib.num_threads for lib in ThreadpoolController().lib_controllers] == before
    assert seen and all(counts == {1} for counts in seen)


def test_changed_preprocessing_refuses_to_mix_into_the_same_folder(synth_prepared: Path, tmp_path: Path):
    data = dict(SYNTH, preprocessing={"h_freq": 40.0})
    manifest = write_manifest(tmp_path, data)
    with pytest.raises(PrepareError, match="preprocessing hash"):
        prepare(str(manifest), str(synth_prepared.parent), progress=False)


def test_parts_and_merge_equal_the_whole(synth_prepared: Path, tmp_path: Path):
    manifest = synth_prepared.parent.parent / "m.yaml"
    out = tmp_path / "parts"
    for i in range(3):
        s = prepare(str(manifest), str(out), part=f"{i}/3", progress=False)
        assert Path(s.index).name == f"index.part-{i}-of-3.json"
    with pytest.raises(IndexMergeError, match=r"parts \[2\] of 3 are missing"):
        merge_indexes([str(out / "index.part-0-of-3.json"), str(out / "index.part-1-of-3.json")],
                      out / "index.json")
    merged = merge_indexes([str(out)], out / "index.json")
    whole = json.loads(synth_prepared.read_text())
    key = lambda s: (s["recording"], s["sha256"], s["n_samples"])  # noqa: E731
    assert sorted(map(key, merged["shards"])) == sorted(map(key, whole["shards"]))
    assert merged["n_samples"] == whole["n_samples"] and merged["subjects"] == whole["subjects"]
    rebased = merge_indexes([str(out)], tmp_path / "s3.json", base_url="pipe:aws s3 cp s3://bucket/ds/{url} -")
    assert rebased["shards"][0]["url"].startswith("pipe:aws s3 cp s3://bucket/ds/shards/")
    assert rebased["shards"][0]["url"].endswith(".tar -")
    # any URL webdataset streams works: here a pipe: command reads the local shards
    piped = merge_indexes([str(out)], tmp_path / "piped" / "index.json", base_url=f"pipe:cat {out}/{{url}}")
    from neurofm.pipelines.loader import iter_samples

    assert sum(1 for _ in iter_samples(tmp_path / "piped" / "index.json")) == piped["n_samples"]


# ------------------------------------------------------------------ bad inputs
def _raw(n_chans: int = 8, seconds: float = 10.0, sfreq: float = 100.0, ch_type: str = "eeg",
         nan: bool = False) -> mne.io.RawArray:
    rng = np.random.default_rng(0)
    data = rng.normal(0, 20e-6, (n_chans, int(seconds * sfreq)))
    if nan:
        data[2, 100:200] = np.nan
    names = ["Fz", "Cz", "Pz", "Oz", "C3", "C4", "F3", "F4"][:n_chans]
    return mne.io.RawArray(data, mne.create_info(names, sfreq, ch_type), verbose="error")


@pytest.fixture()
def bad_folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    _raw().save(root / "good1_raw.fif")
    _raw(seconds=20).save(root / "good2_raw.fif")
    _raw(nan=True).save(root / "nans_raw.fif")
    _raw(ch_type="misc").save(root / "nodata_raw.fif")
    _raw(seconds=1.0).save(root / "short_raw.fif")  # shorter than one 4 s window
    (root / "empty_raw.fif").write_bytes(b"")
    (root / "garbage_raw.fif").write_bytes(b"this is not a FIF file" * 100)
    good = (root / "good1_raw.fif").read_bytes()
    (root / "truncated_raw.fif").write_bytes(good[: len(good) // 2])
    return root


def test_bad_recordings_are_reported_and_good_ones_survive(bad_folder: Path, tmp_path: Path):
    manifest = write_manifest(tmp_path, {
        "name": "mixed_bag", "paradigm": "resting",
        "source": {"kind": "files", "root": str(bad_folder), "pattern": "*_raw.fif", "events": "none"},
        "windows": {"mode": "fixed", "length_s": 4.0},
        "license": "x", "citation": "x", "url": "x"})
    out = tmp_path / "out"
    summary = prepare(str(manifest), str(out), progress=False)
    assert summary.n_ok == 2 and summary.n_failed == 6
    errors = {Path(e["path"]).name: e["reason"] for e in map(json.loads, (out / "errors.jsonl").read_text().splitlines())}
    assert set(errors) == {"nans_raw.fif", "nodata_raw.fif", "short_raw.fif", "empty_raw.fif",
                           "garbage_raw.fif", "truncated_raw.fif"}
    assert "NaN" in errors["nans_raw.fif"]
    assert "no data channels" in errors["nodata_raw.fif"]
    assert "shorter than one window" in errors["short_raw.fif"]
    assert "empty" in errors["empty_raw.fif"]
    index = json.loads((out / "index.json").read_text())
    assert index["n_samples"] == 2 + 5  # 10 s and 20 s at 4 s windows
    assert len(read_plain(out / "index.json")) == 7


def test_cli_exit_code_is_nonzero_when_a_recording_failed(bad_folder: Path, tmp_path: Path):
    manifest = write_manifest(tmp_path, {
        "name": "mixed_bag", "paradigm": "resting",
        "source": {"kind": "files", "root": str(bad_folder), "pattern": "[eg]*_raw.fif", "events": "none"},
        "license": "x", "citation": "x", "url": "x"})
    res = subprocess.run([sys.executable, "-m", "neurofm.cli", "prepare", str(manifest), "--out",
                          str(tmp_path / "o"), "--progress", "false"], capture_output=True, text=True)
    assert res.returncode == 1, res.stderr
    assert "empty_raw.fif" in res.stdout and "garbage_raw.fif" in res.stdout


def test_missing_dataset_fails_at_once_with_where_and_how(tmp_path: Path):
    manifest = write_manifest(tmp_path, {
        "name": "nowhere", "paradigm": "resting",
        "source": {"kind": "files", "root": str(tmp_path / "absent"), "pattern": "*.edf"},
        "license": "x", "citation": "x", "url": "https://example.org/data"})
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "neurofm.cli", "prepare", str(manifest), "--out",
                          str(tmp_path / "o")], capture_output=True, text=True)
    assert res.returncode == 2
    assert str(tmp_path / "absent") in res.stderr
    assert time.perf_counter() - t0 < 60


# ------------------------------------------------------------------ real recordings
@pytest.mark.parametrize("name", ["physionet_s001_all", "eeglab_sample", "formats_samples", "meg_samples"])
def test_every_shared_recording_goes_through_prepare(name: str, shared_data: Path, tmp_path: Path):
    summary = prepare(name, str(tmp_path / name), workers=2, progress=False)
    assert summary.n_failed == 0, [f.reason for f in summary.failures]
    samples = read_plain(tmp_path / name / "index.json")
    assert len(samples) == summary.n_samples > 0
    assert all(np.isfinite(x).all() for _, x, _ in samples)


def test_meg_shards_carry_mag_and_grad_with_positions(shared_data: Path, tmp_path: Path):
    prepare("meg_samples", str(tmp_path / "meg"), progress=False)
    types = {t for _, _, meta in read_plain(tmp_path / "meg" / "index.json") for t in meta["ch_types"]}
    assert {"mag", "grad"} <= types
    _, _, meta = read_plain(tmp_path / "meg" / "index.json")[0]
    assert all(v is not None for p in meta["ch_pos"] for v in p)


def test_physionet_labels_come_from_the_event_files(shared_data: Path, tmp_path: Path):
    import wfdb

    summary = prepare("physionet_s001_imagery", str(tmp_path / "p"), progress=False)
    assert summary.n_failed == 0
    by_run: dict[str, dict[str, int]] = {}
    for _, x, meta in read_plain(tmp_path / "p" / "index.json"):
        counts = by_run.setdefault(meta["run"], {})
        counts[meta["label"]] = counts.get(meta["label"], 0) + 1
    for run, (t1, t2) in {"4": ("left_hand", "right_hand"), "6": ("both_fists", "feet")}.items():
        ann = wfdb.rdann(str(shared_data / "real" / "eegbci_S001" / f"S001R{int(run):02d}.edf"), "event")
        codes = [n.split()[0] for n in ann.aux_note]
        expected = {t1: codes.count("T1"), t2: codes.count("T2")}
        # a cue less than 4 s before the end of the run has no full window
        assert by_run[run] == expected or sum(by_run[run].values()) == sum(expected.values()) - 1


def test_physionet_implausible_amplitude_is_reported(shared_data: Path, tmp_path: Path):
    summary = prepare("physionet_s001_imagery", str(tmp_path / "p"), progress=False)
    assert summary.warnings and all("units are probably wrong" in w for w in summary.warnings)
    report = json.loads((tmp_path / "p" / "report.json").read_text())
    assert all(r["amplitude_warning"] for r in report["recordings"])


def test_loader_batches_two_prepared_montages_together(synth_prepared: Path, tmp_path: Path):
    from neurofm.pipelines.loader import ShardDataModule

    gen = dict(SYNTH["source"]["generator"], montage="eeg32", n_subjects=1, seed=9)
    other = dict(SYNTH, name="tiny_mi32", source={"kind": "synthetic", "generator": gen})
    prepare(str(write_manifest(tmp_path, other)), str(tmp_path / "o32"), progress=False)
    dm = ShardDataModule([synth_prepared, tmp_path / "o32" / "index.json"], batch_size=48, seed=1,
                         shuffle_buffer=100)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    n_chans = [len(names) for names in batch.ch_names]
    assert batch.x.shape[1] == 32 and {22, 32} <= set(n_chans)
    for row, n in enumerate(n_chans):
        assert (batch.x[row, n:] == 0).all() and not batch.chan_mask[row, n:].any()  # padding
        bad = [i for i, name in enumerate(batch.ch_names[row]) if not batch.chan_mask[row, i]]
        assert len(bad) <= 1  # the generator breaks at most one channel per run
    assert set(batch.dataset) == {"tiny_mi", "tiny_mi32"}


def test_annotation_only_edf_is_a_clear_failure(shared_data: Path, tmp_path: Path):
    manifest = write_manifest(tmp_path, {
        "name": "hypnogram", "paradigm": "sleep",
        "source": {"kind": "files", "root": str(shared_data / "formats"), "pattern": "SC4001EC-Hypnogram.edf"},
        "license": "x", "citation": "x", "url": "x"})
    summary = prepare(str(manifest), str(tmp_path / "o"), progress=False)
    assert summary.n_failed == 1 and "holds no signal" in summary.failures[0].reason
    assert summary.failures[0].path.endswith("SC4001EC-Hypnogram.edf")


def test_expected_block_mismatch_is_reported_not_fatal(tmp_path: Path):
    manifest = write_manifest(tmp_path, dict(SYNTH, expected={"n_channels": 64, "sfreq": 250.0}))
    summary = prepare(str(manifest), str(tmp_path / "o"), progress=False)
    assert summary.n_failed == 0 and summary.n_samples > 0
    assert any("expected 64 data channels, found 22" in w for w in summary.warnings)
    assert any("expected sfreq 250 Hz, found 128 Hz" in w for w in summary.warnings)
