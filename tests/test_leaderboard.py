"""Leaderboard: ranking, every validation rule, the three formats, the plots and the commands' exit codes."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from neurofm.eval.commands import leaderboard_show, leaderboard_validate
from neurofm.eval.leaderboard import rank, render, validate_rows
from neurofm.eval.plots import plot_adaptation_bars, plot_fewshot_curves
from neurofm.eval.results import ResultRow, read_rows

SUBJECTS = ["01", "02", "03"]


def row(model: str, subject: str, seed: int = 0, score: float = 0.7, *, protocol: str = "loso", adapt: str = "scratch",
        k: int | None = None, data_hash: str = "h1") -> dict:
    fold = f"{protocol}/subject={subject}/seed={seed}" + ("" if k is None else f"/k={k}")
    r = ResultRow(model=model, model_config_sha256="c", weights_sha256=None, dataset="d", data_hash=data_hash,
                  index_path="-", protocol=protocol, adapt=adapt, seed=seed, subject=subject, fold_id=fold, k=k,
                  test_session=None, n_train=10, n_val=2, n_test=5,
                  metrics={"balanced_accuracy": score, "cohen_kappa": 2 * score - 1}, wall_s=0.1, config={},
                  git_sha="abc")
    return asdict(r)


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def complete(model: str, scores: list[float], **kw) -> list[dict]:
    return [row(model, s, seed, score, **kw) for seed in (0, 1) for s, score in zip(SUBJECTS, scores)]


def test_rank_means_stds_and_order(tmp_path: Path) -> None:
    rows = read_rows(write(tmp_path / "r.jsonl", complete("a", [0.6, 0.7, 0.8]) + complete("b", [0.9, 0.9, 0.9])))
    assert validate_rows(rows) == []
    entries = rank(rows)
    assert [(e.model, e.rank, e.n, e.n_subjects, e.n_seeds) for e in entries] == [("b", 1, 6, 3, 2), ("a", 2, 6, 3, 2)]
    assert entries[1].mean == pytest.approx(0.7) and entries[1].std == pytest.approx(0.0894, abs=1e-4)
    assert rank(rows, "cohen_kappa")[0].mean == pytest.approx(0.8)
    md = render(entries, "md")
    assert "| d | loso | scratch |  | 1 | b | 0.900 ± 0.000 | 6 | 3 | 2 |  |" in md
    assert render(entries, "csv").splitlines()[1].startswith("d,loso,scratch,,1,b,0.900000")
    assert "<td>b</td>" in render(entries, "html")


def test_one_name_with_two_configurations_is_two_models(tmp_path: Path) -> None:
    """Random init at two presets under one model name: ranked apart, named by what differs, and each
    checked for complete folds on its own (pooled, tiny's seed 0 would cover small's missing subject)."""
    def configured(preset: str, scores: list[float]) -> list[dict]:
        return [{**r, "model_config_sha256": preset, "config": {"adapt": "linear", "options": {"preset": preset}}}
                for r in complete("neurofm", scores, adapt="linear")]
    rows = configured("tiny", [0.5, 0.5, 0.5]) + configured("small", [0.8, 0.8, 0.8])
    rows += [{**r, "adapt": "finetune", "config": {**r["config"], "adapt": "finetune"}, "model_config_sha256": "ft"}
             for r in configured("small", [0.6, 0.6, 0.6])]
    entries = rank(read_rows(write(tmp_path / "r.jsonl", rows)))
    assert [(e.adapt, e.model, e.mean, e.n) for e in entries] == [
        ("finetune", "neurofm (options.preset=small)", pytest.approx(0.6), 6),
        ("linear", "neurofm (options.preset=small)", pytest.approx(0.8), 6),
        ("linear", "neurofm (options.preset=tiny)", pytest.approx(0.5), 6)]
    lacking = read_rows(write(tmp_path / "l.jsonl", rows[:-1]))  # small, finetune, seed 1 lacks subject 03
    assert validate_rows(lacking) == ["neurofm (options.preset=small) on d / loso / finetune / seed 1: "
                                      "incomplete folds, no result for subject(s) ['03']"]


def test_validate_reports_every_problem(tmp_path: Path) -> None:
    good = complete("a", [0.6, 0.7, 0.8])
    nan = dict(row("c", "01"), metrics={"balanced_accuracy": float("nan")})
    malformed = {k: v for k, v in row("c", "02").items() if k != "metrics"}
    rows = read_rows(write(tmp_path / "bad.jsonl", good + [nan, malformed]))
    problems = validate_rows(rows)
    assert any("non-finite metrics" in p and "bad.jsonl:7" in p for p in problems)
    assert any("malformed row, missing ['metrics']" in p for p in problems)

    dup = read_rows(write(tmp_path / "dup.jsonl", good + [good[0]]))
    assert any("duplicate of" in p and "dup.jsonl:1" in p for p in validate_rows(dup))
    mixed = read_rows(write(tmp_path / "mixed.jsonl", good + complete("b", [0.5] * 3, data_hash="h2")))
    assert any("rows from different data" in p for p in validate_rows(mixed))
    partial = read_rows(write(tmp_path / "partial.jsonl", good + complete("b", [0.5] * 3)[:2]))
    assert any("b on d / loso / scratch / seed 0: incomplete folds, no result for subject(s) ['03']" in p
               for p in validate_rows(partial))


def test_commands_exit_codes_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = complete("a", [0.6, 0.7, 0.8]) + complete("a", [0.7, 0.8, 0.9], adapt="finetune")
    rows += [row("a", s, 0, 0.5 + 0.05 * k, protocol="fewshot", adapt="linear", k=k) for s in SUBJECTS for k in (1, 5)]
    folder = tmp_path / "results"
    folder.mkdir()
    write(folder / "results.part-0-of-2.jsonl", rows[:5])
    write(folder / "results.part-1-of-2.jsonl", rows[5:])
    assert leaderboard_validate(str(folder)) == 0
    assert leaderboard_show(str(folder), format="md", png=str(tmp_path / "png")) == 0
    out = capsys.readouterr().out
    assert "| d | fewshot | linear | 5 | 1 | a |" in out
    for name in ("adaptation.png", "fewshot.png"):
        assert (tmp_path / "png" / name).stat().st_size > 10_000

    write(folder / "results.part-1-of-2.jsonl", rows[5:7])  # lost folds
    assert leaderboard_validate(str(folder)) == 1
    assert leaderboard_show(str(folder)) == 2
    assert "incomplete folds" in capsys.readouterr().err


def test_plots_skip_what_is_absent(tmp_path: Path) -> None:
    entries = rank(read_rows(write(tmp_path / "r.jsonl", complete("a", [0.6, 0.7, 0.8]))))
    assert plot_fewshot_curves(entries, tmp_path / "f.png") is None
    assert plot_adaptation_bars(entries, tmp_path / "a.png").is_file()


def test_oracle_and_gap_on_synthetic_rows(tmp_path: Path) -> None:
    rows = [dict(r, oracle=0.95) for r in complete("a", [0.8, 0.9, 0.9])]
    entries = rank(read_rows(write(tmp_path / "r.jsonl", rows)))
    assert entries[0].oracle == pytest.approx(0.95)
    assert "| 0.950 (+0.083) |" in render(entries, "md")
    mixed = rows[:-1] + [dict(rows[-1], oracle=None)]
    assert rank(read_rows(write(tmp_path / "m.jsonl", mixed)))[0].oracle is None  # not every fold has one
