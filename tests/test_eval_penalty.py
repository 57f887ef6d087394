"""Classical features and heads: log band power reference values; penalties chosen on validation only."""

from __future__ import annotations

import numpy as np
import pytest

from neurofm.eval.bandpower import BANDS, log_bandpower, usable_bands
from neurofm.eval.penalty import LOGISTIC_CS, RIDGE_ALPHAS, ValidatedLogistic, ValidatedRidge


def test_log_bandpower_of_a_sine_reference_values():
    """A 10 Hz sine of amplitude 2 µV has power 2²/2 = 2 µV², all of it in alpha (Welch, Hann, 0.5 Hz bins)."""
    sfreq, t = 200.0, np.arange(1600) / 200.0
    x = np.stack([2.0 * np.sin(2 * np.pi * 10.0 * t), 4.0 * np.sin(2 * np.pi * 20.0 * t)])[None]  # (1, 2, 1600)
    f = log_bandpower(x, sfreq).reshape(2, 5)  # (C, B): delta, theta, alpha, beta, gamma
    np.testing.assert_allclose(np.exp(f[0, 2]), 2.0, rtol=1e-3)
    np.testing.assert_allclose(np.exp(f[1, 3]), 8.0, rtol=1e-3)
    assert np.exp(f[0]).sum() == pytest.approx(2.0, rel=1e-3)  # Hann leakage stays within the band
    noisy = x + np.random.default_rng(0).normal(0.0, 1.0, x.shape)  # every band above the power floor
    relative = log_bandpower(noisy, sfreq, power="relative")
    np.testing.assert_allclose(relative, log_bandpower(3.0 * noisy, sfreq, power="relative"))  # a gain cancels
    assert log_bandpower(x, sfreq, power="both").shape == (1, 2 * 10)


def test_bands_above_nyquist_are_dropped():
    assert list(usable_bands(50.0)) == ["delta", "theta", "alpha", "beta"] and usable_bands(50.0)["beta"] == (13, 25)
    assert usable_bands(80.0)["gamma"] == (30.0, 40.0) and usable_bands(250.0) == BANDS


def _linear(n: int, rng: np.random.Generator, w: np.ndarray, noise: float) -> tuple[np.ndarray, np.ndarray]:
    f = rng.normal(size=(n, len(w)))
    return f, f @ w + noise * rng.normal(size=n)


def test_ridge_penalty_follows_the_validation_split():
    """Same training data, two validation sets: one where the training fit holds (small alpha wins), one
    whose targets are unrelated to the features (the strongest shrinkage wins)."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=20)
    f, y = _linear(60, rng, w, 0.1)
    f_val, y_val = _linear(200, rng, w, 0.1)
    fitting = ValidatedRidge().fit(f, y, (f_val, y_val))
    unrelated = ValidatedRidge().fit(f, y, (f_val, rng.normal(y.mean(), 0.1, 200)))
    assert fitting.selected["alpha"] < 1.0 and unrelated.selected["alpha"] == RIDGE_ALPHAS[-1]
    assert ValidatedRidge().fit(f, y).selected["by"].startswith("leave-one-out")  # no validation split


def test_logistic_c_follows_the_validation_split():
    rng = np.random.default_rng(1)
    w = rng.normal(size=10)
    f, y = _linear(80, rng, w, 0.5)
    f_val, y_val = _linear(200, rng, w, 0.5)
    head = ValidatedLogistic(seed=0).fit(f, y > 0, (f_val, y_val > 0))
    assert head.selected["C"] in LOGISTIC_CS and head.selected["val_balanced_accuracy"] > 0.8
    flipped = ValidatedLogistic(seed=0).fit(f, y > 0, (f_val, y_val <= 0))  # a validation set that disagrees
    assert flipped.selected["val_balanced_accuracy"] < 0.5 and flipped.selected["C"] != head.selected["C"]
    assert ValidatedLogistic(seed=0).fit(f, y > 0).selected == {"C": 1.0, "by": "default (no validation split)"}


def test_logistic_keeps_c_1_unless_clearly_beaten_on_validation():
    from neurofm.eval.penalty import select_c

    scores = [(0.60, -0.7), (0.70, -0.6), (0.66, -0.65)]  # default (index 0) at 0.60
    assert select_c(scores, 0, n_val=10) == 0  # +0.10 < one s.e. (0.155 at n = 10): keep the default
    assert select_c(scores, 0, n_val=1000) == 1  # +0.10 > one s.e. (0.015): the best
    assert select_c([(1.0, -0.1), (1.0, -0.01)], 0, n_val=6) == 0  # a tie on accuracy never moves away
    rng = np.random.default_rng(2)
    w = rng.normal(size=10)
    f, y = _linear(80, rng, w, 0.5)
    f_val, y_val = _linear(6, rng, w, 0.5)
    selected = ValidatedLogistic(seed=0).fit(f, y > 0, (f_val, y_val > 0)).selected
    assert selected["C"] == 1.0 and selected["val_windows"] == 6
