"""Paired Wilcoxon across subjects and SzCORE-style event scoring, on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from neurofm.eval.seizure import merge_and_split, score_events
from neurofm.eval.stats import paired_wilcoxon


def rows(model: str, scores: list[float], adapt: str = "scratch", seeds=(0, 1)) -> list[dict]:
    return [{"model": model, "adapt": adapt, "dataset": "d", "protocol": "loso", "k": None, "subject": f"{i:02d}",
             "seed": seed, "metrics": {"balanced_accuracy": s + 0.01 * seed}}
            for i, s in enumerate(scores) for seed in seeds]


def test_wilcoxon_pairs_subjects() -> None:
    a = rows("a", [0.70, 0.72, 0.81, 0.66, 0.90, 0.75, 0.69, 0.80])
    b = rows("b", [0.60, 0.65, 0.70, 0.61, 0.80, 0.70, 0.62, 0.71])
    (cmp,) = paired_wilcoxon(a + b, "a", "b")
    assert cmp.n_subjects == 8 and cmp.mean_difference == pytest.approx(0.08)
    assert cmp.p_value == pytest.approx(2 / 2**8)  # every difference positive: exact two-sided p = 2 / 2^n
    (same,) = paired_wilcoxon(a + rows("c", [0.70, 0.72, 0.81, 0.66, 0.90, 0.75, 0.69, 0.80]), "a", "c")
    assert math.isnan(same.p_value) and same.mean_difference == pytest.approx(0)


def test_wilcoxon_needs_one_adaptation_per_model() -> None:
    both = rows("n", [0.6] * 4, "linear") + rows("n", [0.7] * 4, "finetune") + rows("b", [0.5] * 4)
    with pytest.raises(ValueError, match="several adaptations"):
        paired_wilcoxon(both, "n", "b")
    (cmp,) = paired_wilcoxon(both, "n@finetune", "b")
    assert cmp.adapt_a == "finetune" and cmp.mean_difference == pytest.approx(0.2)


def test_wilcoxon_needs_one_configuration_per_model() -> None:
    """Random init at two presets under one name are two models: pooling them would pair each subject
    with a mix of both; the leaderboard's label picks one."""
    def configured(preset: str, scores: list[float]) -> list[dict]:
        return [{**r, "model_config_sha256": preset, "config": {"options": {"preset": preset}}}
                for r in rows("n", scores, "linear")]
    both = configured("tiny", [0.5] * 4) + configured("small", [0.8] * 4) + rows("b", [0.6] * 4)
    with pytest.raises(ValueError, match=r"several configurations \['n \(options.preset=small\)', "):
        paired_wilcoxon(both, "n", "b")
    (cmp,) = paired_wilcoxon(both, "n (options.preset=small)@linear", "b")
    assert cmp.n_subjects == 4 and cmp.mean_difference == pytest.approx(0.2)


def test_seizure_events_with_tolerances() -> None:
    reference = [(1000.0, 1060.0), (5000.0, 5100.0)]
    predicted = [(1080.0, 1100.0),  # 20 s after the offset: within the 60 s tolerance → detects event 1
                 (3000.0, 3010.0),  # far from everything: a false positive
                 (4900.0, 4980.0)]  # starts 100 s early, overlaps event 2 extended by 30 s
    s = score_events(reference, predicted, duration_s=86400.0)
    assert (s.sensitivity, s.precision, s.fp_per_24h) == (1.0, 2 / 3, 1.0)
    assert s.f1 == pytest.approx(0.8)
    late = score_events(reference, [(1130.0, 1140.0)], duration_s=43200.0)  # 70 s after the offset: missed
    assert late.sensitivity == 0.0 and late.fp_per_24h == 2.0 and late.f1 == 0.0


def test_merge_and_split() -> None:
    assert merge_and_split([(0, 10), (50, 60), (200, 210)]) == [(0, 60), (200, 210)]  # gap 40 s < 90 s
    assert merge_and_split([(0, 700)]) == [(0, 300), (300, 600), (600, 700)]
