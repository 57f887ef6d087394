"""Reconstruction and code metrics against numpy / scipy / scikit-learn references on fixed inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import welch
from sklearn.metrics import mean_squared_error

from neurofm.tokenizers.metrics import (
    BANDS,
    CodeUsage,
    ReconstructionAccumulator,
    Stopwatch,
    band_power_error,
    band_powers,
    nmse,
    pearson_r,
    perplexity,
    si_sdr_db,
    welch_psd,
)

SFREQ = 200.0


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """(3, 4, 400) originals and noisy, scaled reconstructions."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 400, generator=gen, dtype=torch.float64)
    return x, 0.8 * x + 0.3 * torch.randn(3, 4, 400, generator=gen, dtype=torch.float64)


def _sine(freq: float, n_times: int = 800, amp: float = 1.0) -> torch.Tensor:
    t = torch.arange(n_times, dtype=torch.float64) / SFREQ
    return amp * torch.sin(2 * math.pi * freq * t)


# --------------------------------------------------------------------------------------------------
# waveform scores


def test_nmse_is_zero_for_a_copy_and_one_for_silence(pair):
    x, _ = pair
    assert torch.all(nmse(x, x) == 0)
    torch.testing.assert_close(nmse(x, torch.zeros_like(x)), torch.ones(3, 4))


def test_nmse_matches_scikit_learn(pair):
    x, r = pair
    got = nmse(x, r)
    for b, c in [(0, 0), (2, 3)]:
        xs, rs = x[b, c].numpy(), r[b, c].numpy()
        assert float(got[b, c]) == pytest.approx(mean_squared_error(xs, rs) / np.mean(xs ** 2), rel=1e-5)


def test_pearson_matches_numpy_corrcoef(pair):
    x, r = pair
    got = pearson_r(x, r)
    assert got.shape == (3, 4)
    want = [[np.corrcoef(x[b, c].numpy(), r[b, c].numpy())[0, 1] for c in range(4)] for b in range(3)]
    np.testing.assert_allclose(got.numpy(), np.array(want), rtol=1e-5)
    assert float(pearson_r(x[:1, :1], -3 * x[:1, :1] + 2)) == pytest.approx(-1.0)


def test_si_sdr_matches_the_direct_formula(pair):
    x, r = pair
    got = si_sdr_db(x, r)
    for b, c in [(0, 1), (1, 2)]:
        xs, rs = x[b, c].numpy() - x[b, c].numpy().mean(), r[b, c].numpy() - r[b, c].numpy().mean()
        target = (rs @ xs) / (xs @ xs) * xs  # the reconstruction's projection on the original
        want = 10 * np.log10((target @ target) / ((rs - target) @ (rs - target)))
        assert float(got[b, c]) == pytest.approx(want, abs=1e-3)
    # scale invariance: a rescaled copy is perfect
    assert float(si_sdr_db(x[:1, :1], 0.1 * x[:1, :1])) > 100


# --------------------------------------------------------------------------------------------------
# spectra


def test_welch_psd_is_scipys_with_two_second_segments():
    x = torch.randn(2, 1000, generator=torch.Generator().manual_seed(1), dtype=torch.float64).numpy()
    freqs, psd = welch_psd(x, SFREQ)
    ref_f, ref_p = welch(x, fs=SFREQ, nperseg=400)
    np.testing.assert_allclose(freqs, ref_f)
    np.testing.assert_allclose(psd, ref_p)


def test_band_powers_of_white_noise_are_proportional_to_bandwidth():
    x = np.random.default_rng(0).standard_normal(200_000)  # unit variance: PSD = 2 / sfreq one-sided
    freqs, psd = welch_psd(x, SFREQ)
    powers = band_powers(freqs, psd)
    for name, (lo, hi) in BANDS.items():
        assert powers[name] == pytest.approx((hi - lo) * 2 / SFREQ, rel=0.05)


def test_band_power_error_of_a_pure_10_hz_sine():
    x = _sine(10.0)[None, None]  # (1, 1, T): all its power in alpha
    half = band_power_error(x, 0.5 * x, SFREQ)  # a quarter of the power in every band
    for name in BANDS:
        assert float(half[name]) == pytest.approx(0.75, abs=1e-6)
    exact = band_power_error(x, x, SFREQ)
    assert all(float(exact[name]) == 0 for name in BANDS)
    added = band_power_error(x, x + _sine(20.0)[None, None], SFREQ)  # a beta sine on top
    assert float(added["alpha"]) < 0.01
    assert float(added["beta"]) > 100  # beta had only leakage of the 10 Hz sine


def test_bands_above_nyquist_are_nan():
    x = torch.randn(1, 1, 200, dtype=torch.float64)
    errors = band_power_error(x, x, sfreq=50.0)  # Nyquist 25 Hz: no gamma bin
    assert math.isnan(float(errors["gamma"])) and float(errors["beta"]) == 0


# --------------------------------------------------------------------------------------------------
# aggregation with masks


def test_accumulator_leaves_out_masked_and_flat_channels(pair):
    x, r = pair
    x, r = x.clone(), r.clone()
    x[0, 3] = 0.0  # flat (a padded channel looks like this)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1, 2] = False  # a bad channel
    mask[2, 0] = False
    acc = ReconstructionAccumulator(SFREQ)
    acc.add(x[:2].float(), r[:2].float(), mask[:2])
    acc.add(x[2:].float(), r[2:].float(), mask[2:])
    m = acc.summary()
    keep = mask & (x.pow(2).sum(-1) > 0)
    assert m.n_pairs == int(keep.sum()) == 9 and m.n_excluded == 3
    assert m.pcc == pytest.approx(float(pearson_r(x, r)[keep].mean()), rel=1e-5)
    assert m.nmse == pytest.approx(float(nmse(x, r)[keep].mean()), rel=1e-5)
    assert m.nmse_median == pytest.approx(float(nmse(x, r)[keep].median()), rel=1e-5)
    assert set(m.band_power_error) == set(BANDS)
    freqs, psd_orig, psd_rec = acc.mean_psd()
    _, ref = welch(x[keep].numpy(), fs=SFREQ, nperseg=400)
    np.testing.assert_allclose(psd_orig, ref.mean(0), rtol=1e-4)


def test_accumulator_with_every_channel_masked_is_an_error():
    acc = ReconstructionAccumulator(SFREQ)
    acc.add(torch.randn(1, 2, 100), torch.randn(1, 2, 100), torch.zeros(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="no \\(window, channel\\) pair"):
        acc.summary()


# --------------------------------------------------------------------------------------------------
# codes


def test_perplexity_of_uniform_codes_is_k_and_of_one_code_is_one():
    assert perplexity(torch.full((64,), 5)) == pytest.approx(64.0)
    assert perplexity(torch.tensor([0, 9, 0, 0])) == pytest.approx(1.0)
    p = np.array([1, 2, 3, 4]) / 10
    assert perplexity(torch.tensor([1, 2, 3, 4])) == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert math.isnan(perplexity(torch.zeros(4)))


def test_code_usage_per_level_skips_masked_channels():
    k = 8
    codes = torch.zeros(2, 3, 2, 4, dtype=torch.long)  # (B, C, n_q, F)
    codes[:, :, 0] = torch.arange(4)  # level 0: codes 0..3
    codes[:, :, 1] = torch.arange(4) + 4  # level 1: codes 4..7 ...
    codes[1, 2, 1] = 0  # ... except on a masked channel
    mask = torch.ones(2, 3, dtype=torch.bool)
    mask[1, 2] = False
    usage = CodeUsage(n_q=2, codebook_size=k)
    usage.add(codes, mask)
    levels = usage.levels()
    assert [lv.fraction_used for lv in levels] == [0.5, 0.5]
    assert levels[1].perplexity == pytest.approx(4.0)  # 4 codes, equally often
    assert int(usage.counts[1, 0]) == 0 and int(usage.counts.sum()) == 2 * 5 * 4
    with pytest.raises(ValueError, match="outside"):
        usage.add(torch.full((1, 1, 1, 2), k))


def test_stopwatch_counts_items_per_second():
    watch = Stopwatch()
    out = watch.time(lambda: torch.ones(3), 12)
    assert torch.equal(out, torch.ones(3)) and watch.items == 12 and watch.rate > 0
    assert math.isnan(Stopwatch().rate)
