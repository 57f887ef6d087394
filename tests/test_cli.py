"""The command line: every subcommand is listed and has --help; the CLI map and the docs agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from neurofm.cli import COMMANDS


def _leaves(commands: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, target in commands.items():
        out += _leaves(target, prefix + (name,)) if isinstance(target, dict) else [prefix + (name,)]
    return out


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neurofm.cli", *args], capture_output=True, text=True, timeout=120)


def test_top_level_help_lists_every_subcommand():
    res = run_cli("--help")
    assert res.returncode == 0
    for name in COMMANDS:
        assert name in res.stdout


@pytest.mark.parametrize("path", _leaves(COMMANDS), ids=lambda p: " ".join(p))
def test_each_subcommand_has_help(path: tuple[str, ...]):
    res = run_cli(*path, "--help")
    assert res.returncode == 0, res.stderr
    assert "usage:" in res.stdout.lower()


def test_readme_mentions_every_subcommand():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for path in _leaves(COMMANDS):
        assert f"neurofm {' '.join(path)}" in readme, f"README does not show `neurofm {' '.join(path)}`"


def test_datasets_lists_manifests_with_availability():
    res = run_cli("datasets")
    assert res.returncode == 0, res.stderr
    assert "synthetic_mi" in res.stdout and "BNCI2014_001" in res.stdout


def test_bad_manifest_is_a_clear_error(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nparadigm: telepathy\nsource: {kind: files}\n")
    res = run_cli("prepare", str(bad), "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    assert "paradigm" in res.stderr and "source.files.root" in res.stderr and "license" in res.stderr
