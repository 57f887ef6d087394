"""The μ-law baseline tokenizer: shapes and ranges, the quantisation bound, resampling, bitrate rule."""

from __future__ import annotations

import math

import pytest
import torch

from neurofm.tokenizers.base import TOKENIZERS, Tokenizer, TokenizerInputError, TokenizerOutput, build_tokenizer
from neurofm.tokenizers.mulaw import (
    MuLawTokenizer,
    fft_decimate,
    fft_upsample,
    mulaw_at_bitrate,
    mulaw_candidates,
    mulaw_compress,
    mulaw_expand,
)

SFREQ = 200.0
MULAW_PRESETS = ("mulaw", "mulaw_tiny")


def _sines(freqs_hz: list[float], n_times: int = 400, sfreq: float = SFREQ, amp: float = 20.0) -> torch.Tensor:
    """(1, len(freqs), n_times): one sine per channel, with a phase so none starts at zero."""
    t = torch.arange(n_times) / sfreq
    return torch.stack([amp * torch.sin(2 * math.pi * f * t + 0.3) for f in freqs_hz])[None]


def _nmse(x: torch.Tensor, recon: torch.Tensor) -> float:
    return float((x - recon).pow(2).sum() / x.pow(2).sum())


# --------------------------------------------------------------------------------------------------
# layer 1: shapes, ranges, contract


@pytest.mark.parametrize("bits,decimate,n_times", [(8, 1, 100), (4, 2, 100), (3, 3, 101), (1, 8, 64)])
def test_codes_shape_range_and_decode_shape(bits: int, decimate: int, n_times: int):
    tok = MuLawTokenizer(SFREQ, bits=bits, decimate=decimate)
    x = 30 * torch.randn(2, 5, n_times, generator=torch.Generator().manual_seed(0))
    codes = tok.encode(x)
    assert list(codes.shape) == [2, 5, 1, math.ceil(n_times / decimate)]
    assert codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < 2 ** bits == tok.codebook_size
    assert list(tok.decode(codes, n_samples=n_times).shape) == [2, 5, n_times]
    assert tok.decode(codes).shape[-1] == codes.shape[-1] * decimate  # whole frames by default
    assert isinstance(tok, Tokenizer) and tok.n_q == 1


def test_bits_per_second_is_rate_times_bits():
    assert MuLawTokenizer(SFREQ, bits=8).bits_per_second() == 1600.0
    assert MuLawTokenizer(SFREQ, bits=5, decimate=2).bits_per_second() == 500.0
    assert MuLawTokenizer(250.0, bits=3, decimate=4).bits_per_second(n_q=1) == pytest.approx(187.5)
    with pytest.raises(ValueError, match="one level"):
        MuLawTokenizer(SFREQ).bits_per_second(n_q=2)


def test_forward_returns_tokenizer_output_with_usage():
    tok = MuLawTokenizer(SFREQ, bits=4, decimate=2)
    x = 10 * torch.randn(3, 4, 50)
    out = tok(x)
    assert isinstance(out, TokenizerOutput)
    assert out.recon.shape == x.shape and out.codes.shape == (3, 4, 1, 25)
    assert int(out.usage[0].sum()) == out.codes.numel() and out.usage[0].shape == (16,)


@pytest.mark.parametrize("name", MULAW_PRESETS)
def test_registered_presets_round_trip(name: str):
    tok = build_tokenizer(name)
    x = 10 * torch.randn(1, 3, 80)
    assert tok.decode(tok.encode(x), 80).shape == x.shape


def test_every_mulaw_preset_has_a_test_case():
    mulaw_presets = {n for n, f in TOKENIZERS.items() if f.__module__ == "neurofm.tokenizers.mulaw"}
    assert mulaw_presets == set(MULAW_PRESETS)


@pytest.mark.parametrize("bad,match", [
    (torch.zeros(4, 10), "batch, channels, samples"),
    (torch.full((1, 2, 10), float("nan")), "NaN"),
    (torch.zeros(1, 2, 3), "at least 4 are needed"),
])
def test_bad_signals_raise_tokenizer_input_error(bad: torch.Tensor, match: str):
    with pytest.raises(TokenizerInputError, match=match):
        MuLawTokenizer(SFREQ, bits=4, decimate=4).encode(bad)


def test_bad_codes_and_arguments_raise():
    tok = MuLawTokenizer(SFREQ, bits=3, decimate=2)
    with pytest.raises(TokenizerInputError, match=r"\[0, 8\)"):
        tok.decode(torch.full((1, 1, 1, 5), 8))
    with pytest.raises(TokenizerInputError, match="1, frames"):
        tok.decode(torch.zeros(1, 1, 2, 5, dtype=torch.long))
    with pytest.raises(TokenizerInputError, match="n_samples=20"):
        tok.decode(torch.zeros(1, 1, 1, 5, dtype=torch.long), n_samples=20)
    with pytest.raises(ValueError, match="one level"):
        tok.encode(torch.zeros(1, 1, 8), n_q=2)
    for kwargs in ({"bits": 0}, {"bits": 17}, {"decimate": 0}, {"mu": -1.0}, {"max_abs_uv": 0.0}):
        with pytest.raises(ValueError):
            MuLawTokenizer(SFREQ, **kwargs)


# --------------------------------------------------------------------------------------------------
# layer 2: against the definitions


def test_compress_expand_are_inverse_and_mu_zero_is_uniform():
    y = torch.linspace(-1, 1, 101, dtype=torch.float64)
    for mu in (0.0, 16.0, 255.0):
        torch.testing.assert_close(mulaw_compress(mulaw_expand(y, mu), mu), y)
    assert torch.equal(mulaw_compress(y, 0.0), y)
    # G.711's curve: 255-law maps 0.1 to ln(1 + 25.5) / ln(256)
    assert float(mulaw_compress(torch.tensor(0.1), 255.0)) == pytest.approx(math.log(26.5) / math.log(256))


@pytest.mark.parametrize("bits,mu", [(2, 16.0), (4, 16.0), (8, 255.0), (6, 0.0)])
def test_round_trip_error_is_bounded_by_half_a_mulaw_step(bits: int, mu: float):
    """|x − x̂| <= expand(|y| + 1/K) − expand(|y|): half a bin (1/K in the companded domain) mapped back."""
    amp = 50.0
    tok = MuLawTokenizer(SFREQ, bits=bits, max_abs_uv=amp, mu=mu)
    x = torch.linspace(-amp, amp, 4001, dtype=torch.float32)[None, None]  # (1, 1, T) within the clip range
    err = (tok.decode(tok.encode(x), x.shape[-1]) - x).abs()
    y = mulaw_compress(x.abs().double() / amp, mu)
    bound = amp * (mulaw_expand(y + 1 / 2 ** bits, mu) - mulaw_expand(y, mu))  # convex: the larger side
    assert (err.double() <= bound + 1e-4).all()
    inner = y <= 1 - 1 / 2 ** bits  # below the top bin's centre the bound is reached at bin edges
    assert float(err.max()) > 0.5 * float(bound[inner].max())  # tight, not vacuous


def test_values_beyond_the_clip_range_saturate():
    tok = MuLawTokenizer(SFREQ, bits=8, max_abs_uv=50.0)
    recon = tok.decode(tok.encode(torch.tensor([[[-500.0, 500.0]]])), 2)
    assert recon.abs().max() <= 50.0 and recon.abs().min() > 49.0


# --------------------------------------------------------------------------------------------------
# resampling


def test_decimation_keeps_the_band_below_the_new_nyquist_and_removes_the_rest():
    x = _sines([5.0, 20.0, 40.0])  # channels: far below, below, above the 25 Hz Nyquist of d=4
    tok = MuLawTokenizer(SFREQ, bits=16, decimate=4, max_abs_uv=100.0, mu=0.0)
    recon = tok.decode(tok.encode(x), x.shape[-1])
    assert _nmse(x[:, :1], recon[:, :1]) < 1e-3
    assert _nmse(x[:, 1:2], recon[:, 1:2]) < 1e-3
    assert _nmse(x[:, 2:], recon[:, 2:]) > 0.99  # low-passed away, not aliased into the band


def test_fft_upsampling_beats_linear_interpolation_on_band_limited_signals():
    x = _sines([3.0, 11.0, 17.0])
    recon = {}
    for up in ("fft", "linear"):
        tok = MuLawTokenizer(SFREQ, bits=16, decimate=4, max_abs_uv=100.0, mu=0.0, upsample=up)
        recon[up] = tok.decode(tok.encode(x), x.shape[-1])
    assert _nmse(x, recon["fft"]) < 0.1 * _nmse(x, recon["linear"])


def test_fft_decimate_then_upsample_is_identity_for_band_limited_periodic_signals():
    t = torch.arange(120, dtype=torch.float64) / 120
    x = torch.sin(2 * math.pi * 3 * t) + 0.5 * torch.cos(2 * math.pi * 7 * t)  # whole periods in the window
    torch.testing.assert_close(fft_upsample(fft_decimate(x, 3), 3), x)


def test_length_not_a_multiple_of_decimate_round_trips():
    tok = MuLawTokenizer(SFREQ, bits=16, decimate=3, max_abs_uv=100.0, mu=0.0)
    x = _sines([4.0], n_times=401)
    recon = tok.decode(tok.encode(x), n_samples=401)
    assert recon.shape[-1] == 401 and _nmse(x, recon) < 1e-3


# --------------------------------------------------------------------------------------------------
# choosing the operating point


@pytest.mark.parametrize("bps", [60.0, 100.0, 200.0, 333.0, 400.0, 650.0, 800.0, 1600.0, 5000.0])
def test_mulaw_at_bitrate_never_exceeds_the_budget(bps: float):
    tok = mulaw_at_bitrate(bps, SFREQ)
    assert tok.bits_per_second() <= bps + 1e-9
    assert (tok.bits, tok.decimate) in mulaw_candidates(bps, SFREQ)


def test_mulaw_at_bitrate_fixed_rule_picks_the_documented_points():
    picks = {bps: (t.bits, t.decimate) for bps in (200, 300, 400, 600, 800)
             for t in [mulaw_at_bitrate(bps, SFREQ)]}
    assert picks == {200: (4, 4), 300: (3, 2), 400: (4, 2), 600: (6, 2), 800: (4, 1)}


def test_mulaw_at_bitrate_with_calibration_picks_the_lowest_nmse_candidate():
    gen = torch.Generator().manual_seed(0)
    x = torch.cumsum(torch.randn(8, 1, 400, generator=gen), -1)  # (P, 1, T): 1/f² like EEG
    x = 10 * (x - x.mean(-1, keepdim=True)) / x.std()
    chosen = mulaw_at_bitrate(400.0, SFREQ, calibration=x)
    errors = {}
    for bits, d in mulaw_candidates(400.0, SFREQ):
        tok = MuLawTokenizer(SFREQ, bits, d)
        errors[(bits, d)] = _nmse(x, tok.decode(tok.encode(x), x.shape[-1]))
    assert (chosen.bits, chosen.decimate) == min(errors, key=errors.get)


def test_mulaw_at_bitrate_below_one_bit_per_sample_is_an_error():
    with pytest.raises(ValueError, match="below one bit"):
        mulaw_at_bitrate(20.0, SFREQ)


# --------------------------------------------------------------------------------------------------
# layer 3: reference numbers under a fixed seed


def test_reference_nmse_on_a_fixed_signal():
    x = 10 * torch.randn(2, 4, 400, generator=torch.Generator().manual_seed(0))
    got = {}
    for bits, d in ((4, 1), (6, 2)):
        tok = MuLawTokenizer(SFREQ, bits=bits, decimate=d)
        got[(bits, d)] = _nmse(x, tok.decode(tok.encode(x), 400))
    # white noise: decimating by 2 loses half the power whatever the bits
    assert got[(6, 2)] == pytest.approx(0.5, abs=0.03)
    assert got[(4, 1)] == pytest.approx(0.016293, rel=1e-3)
