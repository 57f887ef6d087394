"""Dataset manifests: every shipped one validates, errors are reported together, availability is
decided from the file system alone (no download, no network, no wait)."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest
import yaml

from neurofm.pipelines.availability import (
    DataNotAvailableError,
    check_available,
    datasets,
    list_manifests,
    require_available,
)
from neurofm.pipelines.manifest import (
    ManifestError,
    expand_path,
    load_manifest,
    manifests_dir,
    parse_manifest,
)

SEED_BENCHMARK = [
    "BNCI2014_001", "BNCI2014_004", "BNCI2015_001", "BNCI2014_008", "BNCI2014_009", "Nakanishi2015",
    "CHB-MIT", "TUAB", "Sleep-EDFx", "SEED", "SEED-VIG", "THINGS-EEG2", "EEGMAT",
]
SHARED = ["physionet_s001_imagery", "physionet_s001_all", "eeglab_sample", "formats_samples", "meg_samples"]
SYNTHETIC = ["synthetic_mi", "synthetic_erp", "synthetic_ssvep", "synthetic_rest", "synthetic_sleep",
             "synthetic_meg"]
REQUIRED = [*SEED_BENCHMARK, "PhysionetMI", *SHARED, *SYNTHETIC]

SHIPPED = sorted(manifests_dir().glob("*.yaml"))
FAST_S = 2.0  # an availability check only stats a few paths: anything slower is looking too far


def _shipped(kind: str | None = None) -> list[Path]:
    return [p for p in SHIPPED if kind is None or yaml.safe_load(p.read_text())["source"]["kind"] == kind]


def _valid() -> dict:
    return {"name": "ok", "paradigm": "resting", "source": {"kind": "synthetic"}, "license": "CC0",
            "citation": "-", "url": "-"}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test instead of reaching (or waiting on) a server."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] or kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def empty_mne_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty MNE_DATA, a fake home without an MNE config, and no per-dataset path keys."""
    mne_data = tmp_path / "mne_data"
    mne_data.mkdir()
    monkeypatch.setenv("MNE_DATA", str(mne_data))
    monkeypatch.setenv("_MNE_FAKE_HOME_DIR", str(tmp_path / "home"))  # MNE reads its config from here
    for key in [k for k in os.environ if k.startswith("MNE_DATASETS_")]:
        monkeypatch.delenv(key)
    return mne_data


# ------------------------------------------------------------------------- shipped manifests
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_manifest_validates(path: Path) -> None:
    m = load_manifest(path)
    assert m.name == path.stem, "the file name is how `neurofm prepare NAME` finds a manifest"
    assert m.license.strip() and m.citation.strip() and m.url.strip() and m.how_to_obtain.strip()
    if m.windows.mode == "events" and m.source.kind != "files":
        assert m.classes(), "event-locked windows need event → class labels"
    for rule in m.label_rules:
        assert m.runs is None or set(rule.runs) <= set(m.runs), "a label rule for runs that are filtered out"


def test_every_required_dataset_has_a_manifest() -> None:
    missing = sorted(set(REQUIRED) - {p.stem for p in SHIPPED})
    assert not missing, f"data_manifests/ lacks {missing}"


@pytest.mark.parametrize("path", _shipped("synthetic"), ids=lambda p: p.stem)
def test_synthetic_manifests_build_their_generator(path: Path) -> None:
    from neurofm.pipelines.synthetic import SyntheticConfig

    m = load_manifest(path)
    cfg = SyntheticConfig(**m.source.generator)
    assert m.classes() == cfg.classes(), "labels must name the generator's annotation descriptions"
    assert m.expected.n_channels == len(cfg.ch_names()) and m.expected.sfreq == cfg.sfreq


# --------------------------------------------------------------------------------- validation
def test_broken_manifest_reports_every_error_with_its_field_path() -> None:
    data = {**_valid(), "source": {"kind": "ftp"}, "windows": {"length_s": -4}}
    del data["license"]
    with pytest.raises(ManifestError) as err:
        parse_manifest(data, "bad.yaml")
    msg = str(err.value)
    assert msg.startswith("bad.yaml: 3 error(s)"), msg
    assert "source: " in msg and "'ftp'" in msg
    assert "windows.length_s: Input should be greater than 0" in msg
    assert "license: Field required" in msg


def test_unknown_fields_are_rejected_by_name() -> None:
    data = {**_valid(), "sampling_rate": 250}
    data["source"] = {"kind": "files", "root": "/x", "colour": "blue"}
    with pytest.raises(ManifestError) as err:
        parse_manifest(data)
    msg = str(err.value)
    assert "sampling_rate: Extra inputs are not permitted" in msg
    assert "source.files.colour: Extra inputs are not permitted" in msg


@pytest.mark.parametrize("source, complaint", [
    ({"path_regex": "(?P<subj>\\d+)"}, "unknown named group(s) ['subj']"),
    ({"path_regex": "(unclosed"}, "not a valid regular expression"),
    ({"label_from_path": "(normal|abnormal)"}, "needs the named group(s) ['label']"),
    ({"annotation_file": "{night}*-Hypnogram.edf"}, "annotation_file uses ['night']"),
])
def test_files_source_checks_its_regexes(source: dict, complaint: str) -> None:
    with pytest.raises(ManifestError, match=r"source\.files") as err:
        parse_manifest({**_valid(), "source": {"kind": "files", "root": "/x", **source}})
    assert complaint in str(err.value)


def test_path_variables_expand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEUROFM_TEST_ROOT", raising=False)
    assert expand_path("${NEUROFM_TEST_ROOT:-/opt/data}/TUAB", tmp_path) == Path("/opt/data/TUAB")
    monkeypatch.setenv("NEUROFM_TEST_ROOT", "")  # empty counts as unset, like the shell's :-
    assert expand_path("${NEUROFM_TEST_ROOT:-/opt/data}/TUAB", tmp_path) == Path("/opt/data/TUAB")
    monkeypatch.setenv("NEUROFM_TEST_ROOT", str(tmp_path / "mine"))
    assert expand_path("${NEUROFM_TEST_ROOT:-/opt/data}/TUAB", tmp_path) == tmp_path / "mine" / "TUAB"
    assert expand_path("${NEUROFM_TEST_ROOT}", tmp_path) == tmp_path / "mine"
    assert expand_path("~/x", tmp_path) == Path.home() / "x"
    assert expand_path("rel/x", tmp_path) == tmp_path / "rel" / "x"
    monkeypatch.delenv("NEUROFM_TEST_ROOT")
    with pytest.raises(ManifestError, match="NEUROFM_TEST_ROOT is not set"):
        expand_path("${NEUROFM_TEST_ROOT}/x", tmp_path)


# ------------------------------------------------------------------- files: paths and labels
@pytest.mark.parametrize("name, rel, groups", [
    ("CHB-MIT", "chb01/chb01_03.edf", {"subject": "01", "session": "", "run": "03"}),
    ("CHB-MIT", "chb17/chb17a_03.edf", {"subject": "17", "session": "a", "run": "03"}),
    ("TUAB", "edf/train/abnormal/01_tcp_ar/aaaaaaaq_s004_t000.edf",
     {"subject": "aaaaaaaq", "session": "004", "run": "000"}),
    ("Sleep-EDFx", "sleep-cassette/SC4001E0-PSG.edf", {"subject": "00", "session": "1"}),
    ("EEGMAT", "Subject07_2.edf", {"subject": "07", "run": "2"}),
    ("physionet_s001_imagery", "S001R04.edf", {"subject": "001", "run": "04"}),
    ("THINGS-EEG2", "sub-03/ses-02/raw_eeg_test.npy", {"subject": "03", "session": "02", "run": "test"}),
])
def test_path_regex_reads_ids(name: str, rel: str, groups: dict) -> None:
    assert load_manifest(manifests_dir() / f"{name}.yaml").source.path_groups(rel) == groups


def test_chb_mit_pattern_leaves_out_the_colliding_continuation_file() -> None:
    src = load_manifest(manifests_dir() / "CHB-MIT.yaml").source
    assert Path("chb02/chb02_16.edf").match(src.pattern)
    assert not Path("chb02/chb02_16+.edf").match(src.pattern)


@pytest.mark.parametrize("name, rel, label, klass", [
    ("TUAB", "edf/train/abnormal/01_tcp_ar/aaaaaaaq_s004_t000.edf", "abnormal", "abnormal"),
    ("TUAB", "edf/eval/normal/01_tcp_ar/aaaaaebo_s001_t000.edf", "normal", "normal"),
    ("EEGMAT", "Subject00_1.edf", "1", "rest"),
    ("EEGMAT", "Subject35_2.edf", "2", "mental_arithmetic"),
])
def test_label_from_path(name: str, rel: str, label: str, klass: str) -> None:
    m = load_manifest(manifests_dir() / f"{name}.yaml")
    assert m.source.label_for(rel) == label and m.labels[label] == klass


def test_sleep_edf_pairs_each_psg_with_its_hypnogram(tmp_path: Path) -> None:
    folder = tmp_path / "sleep-cassette"
    folder.mkdir()
    for name in ("SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf", "SC4002E0-PSG.edf",
                 "SC4002EC-Hypnogram.edf", "SC4011E0-PSG.edf", "SC4011EH-Hypnogram.edf"):
        (folder / name).touch()
    src = load_manifest(manifests_dir() / "Sleep-EDFx.yaml").source
    pairs = {p.name: src.annotation_file_for(p, tmp_path).name for p in sorted(folder.glob("*-PSG.edf"))}
    assert pairs == {"SC4001E0-PSG.edf": "SC4001EC-Hypnogram.edf",
                     "SC4002E0-PSG.edf": "SC4002EC-Hypnogram.edf",
                     "SC4011E0-PSG.edf": "SC4011EH-Hypnogram.edf"}


def test_physionet_label_rules_depend_on_the_run() -> None:
    m = load_manifest(manifests_dir() / "physionet_s001_imagery.yaml")
    assert m.label_map("4") == {"T1": "left_hand", "T2": "right_hand"}
    assert m.label_map("14") == {"T1": "both_fists", "T2": "feet"}
    assert m.classes() == ["left_hand", "right_hand", "both_fists", "feet"]


# --------------------------------------------------------------------- availability: files
def test_missing_files_dataset_raises_quickly_with_where_and_how(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUROFM_DATA", str(tmp_path / "nowhere"))
    m = load_manifest(manifests_dir() / "CHB-MIT.yaml")
    t0 = time.perf_counter()
    with pytest.raises(DataNotAvailableError) as err:
        require_available(m)
    assert time.perf_counter() - t0 < FAST_S
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "CHB-MIT") in msg and "NEUROFM_DATA" in msg
    assert "physionet.org/files/chbmit" in msg, "the message says how to obtain the data"
    assert isinstance(err.value, FileNotFoundError)


def test_default_data_root_is_named_when_the_variable_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEUROFM_DATA", raising=False)
    a = check_available(load_manifest(manifests_dir() / "TUAB.yaml"))
    if a.available:
        pytest.skip("TUAB is installed under ~/neurofm_data on this machine")
    assert "NEUROFM_DATA is unset" in a.message and str(Path.home() / "neurofm_data" / "TUAB") in a.where
    assert "register" in a.message.lower(), "TUH needs a signed agreement: the message must say so"


def test_files_dataset_needs_a_matching_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUROFM_DATA", str(tmp_path))
    m = load_manifest(manifests_dir() / "EEGMAT.yaml")
    (tmp_path / "EEGMAT").mkdir()
    (tmp_path / "EEGMAT" / "RECORDS").touch()
    a = check_available(m)
    assert not a.available and "no file matches 'Subject*_[12].edf'" in a.message
    (tmp_path / "EEGMAT" / "Subject00_1.edf").touch()
    assert check_available(m).available


def test_bids_dataset_availability(tmp_path: Path) -> None:
    data = {**_valid(), "source": {"kind": "bids", "root": str(tmp_path), "task": "rest"}}
    m = parse_manifest(data)
    assert not check_available(m).available
    (tmp_path / "sub-01" / "eeg").mkdir(parents=True)
    (tmp_path / "sub-01" / "eeg" / "sub-01_task-motor_eeg.edf").touch()
    assert not check_available(m).available, "another task does not count"
    (tmp_path / "sub-01" / "eeg" / "sub-01_task-rest_eeg.edf").touch()
    assert check_available(m).available


def test_synthetic_is_always_available() -> None:
    for path in _shipped("synthetic"):
        assert check_available(load_manifest(path)).available


# --------------------------------------------------------------------- availability: MOABB
@pytest.mark.usefixtures("no_network")
def test_moabb_dataset_with_empty_mne_data_is_unavailable_fast(
        empty_mne_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "moabb", None)  # importing moabb (or its downloaders) would fail
    for path in _shipped("moabb"):
        m = load_manifest(path)
        t0 = time.perf_counter()
        a = check_available(m)
        assert time.perf_counter() - t0 < FAST_S
        assert not a.available, path.stem
        assert str(empty_mne_data) in a.where and str(empty_mne_data) in a.message
        assert "MNE_DATA" in a.message and m.source.dataset in a.message
        with pytest.raises(DataNotAvailableError, match="MNE_DATA"):
            require_available(m)
    assert not any(empty_mne_data.iterdir()), "the check must not create anything"
    assert not (empty_mne_data.parent / "home").exists(), "nor write an MNE config"


def test_moabb_per_dataset_key_wins_over_mne_data(empty_mne_data: Path, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    bnci = tmp_path / "bnci_here"
    monkeypatch.setenv("MNE_DATASETS_BNCI_PATH", str(bnci))
    target = bnci / "MNE-bnci-data" / "~bci" / "database" / "001-2014" / "A01T.mat"
    target.parent.mkdir(parents=True)
    target.touch()
    a = check_available("BNCI2014_001")
    assert a.available and str(bnci) in a.where
    assert not check_available("BNCI2014_004").available, "another BNCI dataset's files do not count"


def test_moabb_nemar_mirror_counts_once_it_holds_data(empty_mne_data: Path) -> None:
    store = empty_mne_data / "NEMAR" / "nm000139" / "sourcedata"
    store.mkdir(parents=True)
    (store / "sourcedata_provenance.json").write_text("{}")
    assert not check_available("BNCI2014_001").available, "bookkeeping alone is not data"
    (store / "A01T.mat").touch()
    assert check_available("BNCI2014_001").available


def test_moabb_manifest_without_cache_is_unavailable_with_a_fix(empty_mne_data: Path) -> None:
    m = parse_manifest({**_valid(), "source": {"kind": "moabb", "dataset": "Zhou2016"}})
    a = check_available(m)
    assert not a.available and "source.cache" in a.message


def _moabb_dataset(path: Path):
    moabb_datasets = pytest.importorskip("moabb.datasets")
    m = load_manifest(path)
    return m, getattr(moabb_datasets, m.source.dataset)(**m.source.kwargs)


@pytest.mark.parametrize("path", _shipped("moabb"), ids=lambda p: p.stem)
def test_moabb_manifest_agrees_with_installed_moabb(path: Path) -> None:
    m, ds = _moabb_dataset(path)
    assert set(m.labels) <= set(ds.event_id), f"labels must use MOABB's event names {sorted(ds.event_id)}"
    assert (m.source.cache.code, m.source.cache.nemar_id) == (ds.code, ds.nemar_id)
    tmin, tmax = ds.interval
    assert m.windows.mode == "events"
    assert m.windows.tmin == pytest.approx(tmin) and m.windows.length_s == pytest.approx(tmax - tmin)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("path", _shipped("moabb"), ids=lambda p: p.stem)
def test_moabb_cache_glob_finds_where_moabb_downloads(path: Path, empty_mne_data: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Ask MOABB where it would store subject 1 (its fetcher replaced by `touch`), then check."""
    m, ds = _moabb_dataset(path)
    import moabb.datasets.download as dl

    def fake_retrieve(url, known_hash=None, fname=None, path=None, **kwargs):
        target = Path(path) / fname
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
        return str(target)

    monkeypatch.setattr(dl, "retrieve", fake_retrieve)
    assert not check_available(m).available
    ds.data_path(ds.subject_list[0])
    a = check_available(m)
    assert a.available, a.message
    assert a.where.startswith(str(empty_mne_data / f"MNE-{m.source.cache.sign.lower()}-data"))


# ----------------------------------------------------------------------------- shared data
def _shared_manifests() -> list[Path]:
    return [p for p in SHIPPED if "${NEUROFM_SHARED_DATA" in p.read_text()]


@pytest.mark.shared_data
@pytest.mark.parametrize("path", _shared_manifests(), ids=lambda p: p.stem)
def test_shared_data_manifests_are_available(path: Path, shared_data: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUROFM_SHARED_DATA", str(shared_data))
    a = require_available(load_manifest(path))
    assert a.where.startswith(str(shared_data))


@pytest.mark.shared_data
@pytest.mark.parametrize("name, n_items, runs", [
    ("physionet_s001_imagery", 6, {"4", "6", "8", "10", "12", "14"}),
    ("physionet_s001_all", 14, {str(r) for r in range(1, 15)}),
    ("physionet_s001_executed", 6, {"1", "2", "3", "5", "7", "9"}),  # no imagery run
    ("physionet_s001_executed_heldout", 2, {"11", "13"}),
    ("formats_samples", 4, {"edf", "bdf", "vhdr"}),
    ("meg_samples", 2, {"0"}),
    ("eeglab_sample", 1, {"0"}),
])
def test_shared_data_manifests_list_the_intended_files(name: str, n_items: int, runs: set[str],
                                                       shared_data: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from neurofm.pipelines.sources import list_items

    monkeypatch.setenv("NEUROFM_SHARED_DATA", str(shared_data))
    items = list_items(load_manifest(manifests_dir() / f"{name}.yaml"))
    assert len(items) == n_items and {i.run for i in items} == runs
    assert not any("Hypnogram" in i.path or i.path.endswith((".eeg", ".vmrk", ".fdt")) for i in items)


# --------------------------------------------------------------------------------- listing
def test_list_manifests_covers_every_shipped_file() -> None:
    rows = list_manifests()
    assert sorted(r.name for r in rows) == sorted(p.stem for p in SHIPPED)
    assert all(r.error is None for r in rows)
    by_name = {r.name: r for r in rows}
    assert by_name["synthetic_mi"].available and by_name["synthetic_mi"].kind == "synthetic"
    assert by_name["BNCI2014_001"].paradigm == "motor_imagery"


def test_list_manifests_reports_a_broken_file_instead_of_failing(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "good.yaml").write_text(yaml.safe_dump({**_valid(), "name": "good"}))
    (tmp_path / "bad.yaml").write_text("name: bad\nsource: {kind: ftp}\n")
    rows = {r.name: r for r in list_manifests(tmp_path)}
    assert rows["good"].available and rows["good"].error is None
    assert not rows["bad"].available and "source" in rows["bad"].error
    datasets(str(tmp_path))
    out = capsys.readouterr().out
    assert "good" in out and "invalid" in out and "1 of 2 available" in out


def test_datasets_table_prints_globs_verbatim(tmp_path: Path, capsys: pytest.CaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # rich's console width: keep each row on one line
    data = {**_valid(), "name": "globbed", "source": {"kind": "files", "root": str(tmp_path),
                                                      "pattern": "rec[12].edf"}}
    (tmp_path / "globbed.yaml").write_text(yaml.safe_dump(data))
    datasets(str(tmp_path))
    assert f"{tmp_path}/rec[12].edf" in capsys.readouterr().out, "rich must not eat [..] as markup"
