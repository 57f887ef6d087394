"""`neurofm quickstart` (`make demo`): its stages fit together; end to end under the `slow` marker.

The whole run takes about 6 minutes on 2 CPU cores (`make test-slow`); the default suite checks
only that its parts still agree with the registries, the shipped configs and the data sources.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from conftest import shared_data_root
from neurofm import quickstart as qs
from neurofm.eval.models import MODELS, build_model
from neurofm.eval.splits import PROTOCOLS
from neurofm.models.fit import ObjectiveConfig, ShardDataConfig
from neurofm.pipelines.manifest import load_manifest, resolve_manifest
from neurofm.tokenizers.fit import OptimConfig, TokenizerDataConfig, TrainerConfig

REAL_DATA = (shared_data_root() / "real" / "eegbci_S001").is_dir()


def test_quick_models_are_registered_and_build() -> None:
    import neurofm.eval.deep  # noqa: F401 - registers the deep models
    for model, adapt, options in (*qs.QUICK_MODELS, *((m, "scratch", {}) for m in qs.REAL_MODELS)):
        assert model in MODELS
        options = {**options, **({"preset": "tiny"} if model == "neurofm" else {})}
        assert build_model(model, adapt=adapt, **options).model_id
    assert "loro" in PROTOCOLS and "loso" in PROTOCOLS


def test_real_tasks_are_class_pairs_of_the_real_manifest() -> None:
    manifest = load_manifest(resolve_manifest(qs.REAL_MANIFEST))
    classes = {c for rule in manifest.label_rules for c in rule.labels.values()}
    for pair in qs.REAL_TASKS:
        assert len(pair) == 2 and set(pair) <= classes
    assert load_manifest(resolve_manifest(qs.PRETRAIN_MANIFEST)).name != qs.DEFAULT_MANIFEST


@pytest.mark.parametrize("path, steps", [(qs.CONFIGS / "tokenizer" / "tiny.yaml", qs.TOKENIZER_STEPS),
                                         (qs.CONFIGS / "pretrain" / "tiny_mae.yaml", qs.PRETRAIN_STEPS)],
                         ids=["tokenizer", "pretrain"])
def test_shipped_configs_become_the_quick_runs(path: Path, steps: int, tmp_path: Path) -> None:
    cfg = qs.run_config(path, "idx/index.json", tmp_path / "run", steps, progress=False)
    data = (TokenizerDataConfig if "tokenizer" in path.parts else ShardDataConfig)(**cfg["data"])
    assert data.index_paths == ["idx/index.json"] and data.val_subjects == [qs.PRETRAIN_VAL_SUBJECT]
    trainer = TrainerConfig(**cfg["trainer"])
    assert (trainer.max_steps, trainer.val_check_interval, trainer.progress_bar) == (steps, steps, False)
    assert trainer.accelerator == "cpu" and OptimConfig(**cfg["optim"]).lr > 0
    if "objective" in cfg:
        assert ObjectiveConfig(**cfg["objective"]).name == "mae"


def test_real_subject_is_skipped_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUROFM_SHARED_DATA", str(tmp_path / "nowhere"))
    console = Console(record=True, width=200)
    assert qs.evaluate_real(tmp_path, tmp_path / "bench", 1, console, progress=False) is False
    text = console.export_text()
    assert "skipped" in text and str(tmp_path / "nowhere") in text and not (tmp_path / "bench").exists()


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path: Path) -> None:
    """The whole `make demo` (about 6 minutes on 2 CPU cores)."""
    assert qs.quickstart(out=str(tmp_path), progress=False) == 0
    bench = tmp_path / "bench"
    rows = [json.loads(line) for line in (bench / "results.jsonl").read_text().splitlines()]
    synthetic = [r for r in rows if r["dataset"] == qs.DEFAULT_MANIFEST]
    assert len(synthetic) == 9 * len(qs.QUICK_MODELS) and {r["protocol"] for r in synthetic} == {"loso"}
    assert {(r["model"].split(":")[0], r["adapt"]) for r in synthetic} == {(m, a) for m, a, _ in qs.QUICK_MODELS}
    assert all(r["oracle"] is not None for r in synthetic)
    backbone = tmp_path / "pretrain" / "backbone"
    assert {r["model"] for r in synthetic if r["model"].startswith("neurofm")} == {f"neurofm:{backbone}"}
    assert (backbone / "model.safetensors").is_file() and (tmp_path / "tokenizer" / "tokenizer").is_dir()
    real = [r for r in rows if r["dataset"].startswith(qs.REAL_MANIFEST)]
    # 3 runs per task, each tested once, per classical model; nothing when the real data is absent
    assert len(real) == (3 * len(qs.REAL_TASKS) * len(qs.REAL_MODELS) if REAL_DATA else 0)
    assert {r["protocol"] for r in real} <= {"loro"}
    assert "| synthetic_mi | loso |" in (bench / "leaderboard.md").read_text()
    assert (bench / "leaderboard.png").stat().st_size > 10_000 and (tmp_path / "synthetic_mi.png").is_file()
    assert qs.quickstart(out=str(tmp_path), progress=False) == 0  # a rerun resumes: nothing new
    assert len((bench / "results.jsonl").read_text().splitlines()) == len(rows)
