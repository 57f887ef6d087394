"""Preprocessing maths: band-pass, notch, reference, bad channels, amplitude checks, resampling.

Signals are built in volts (MNE's unit); ``to_array`` returns µV. Amplitudes are measured away from
the recording's ends, where the 0.1 Hz high-pass has its start-up transient (see PreprocessConfig).
"""

from __future__ import annotations

import mne
import numpy as np
import pytest

from neurofm.pipelines.preprocess import (
    PIPELINE_VERSION,
    PreprocessConfig,
    PreprocessError,
    ROBUST_STATS_SAMPLES,
    robust_center_scale,
    run_steps,
    to_array,
)

UV = 1e-6  # volts per µV
NAMES = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8", "T7", "T8", "P7", "P8"]


def make_raw(data_uv: np.ndarray, sfreq: float, names: list[str] | None = None) -> mne.io.RawArray:
    names = names or NAMES[: data_uv.shape[0]]
    info = mne.create_info(names, sfreq, "eeg")
    return mne.io.RawArray(data_uv * UV, info, verbose=False)


def amplitude(x: np.ndarray, sfreq: float, freq: float) -> np.ndarray:
    """Amplitude of the ``freq`` sinusoid in each row of x (C, T), by projection (T a whole number of cycles)."""
    t = np.arange(x.shape[-1]) / sfreq
    c, s = np.cos(2 * np.pi * freq * t), np.sin(2 * np.pi * freq * t)
    return 2 * np.hypot(x @ c, x @ s) / x.shape[-1]


def middle(x: np.ndarray, sfreq: float, start_s: float, stop_s: float) -> np.ndarray:
    return x[..., int(start_s * sfreq): int(stop_s * sfreq)]


def preprocess(raw: mne.io.BaseRaw, **overrides) -> tuple[np.ndarray, mne.io.BaseRaw, object]:
    cfg = PreprocessConfig(**{"line_freq": None, "clip_sigma": None, **overrides})
    raw, report = run_steps(raw, cfg)
    return to_array(raw, cfg, report), raw, report


def sines(n_chans: int, sfreq: float, seconds: float, freq: float, amps_uv: np.ndarray, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sfreq)) / sfreq
    phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, n_chans)
    return amps_uv[:, None] * np.sin(2 * np.pi * freq * t[None, :] + phases[:, None])  # (C, T) µV


@pytest.mark.parametrize("sfreq", [160.0, 200.0, 250.0])  # resampled up, kept, resampled down
def test_sine_in_band_passes_with_its_amplitude(sfreq: float) -> None:
    amps = np.linspace(10, 40, 8)
    x, raw, report = preprocess(make_raw(sines(8, sfreq, 120, 10.0, amps), sfreq), reference="none")
    assert raw.info["sfreq"] == 200.0 and x.dtype == np.float32
    assert x.shape[1] == round(120 * 200.0)
    measured = amplitude(middle(x.astype(np.float64), 200.0, 40, 80), 200.0, 10.0)
    np.testing.assert_allclose(measured, amps, rtol=0.02)
    assert report.band == (0.1, 75.0 if sfreq >= 200 else 72.0)  # capped at 0.9 x the lower Nyquist


def test_slow_drift_and_line_noise_are_removed() -> None:
    sfreq, seconds = 200.0, 200
    t = np.arange(int(seconds * sfreq)) / sfreq
    alpha = sines(4, sfreq, seconds, 10.0, np.full(4, 20.0))
    drift = 300.0 * np.sin(2 * np.pi * 0.05 * t)  # µV, a slow electrode drift
    line = 50.0 * np.sin(2 * np.pi * 60.0 * t)  # µV, mains
    x, _, report = preprocess(make_raw(alpha + drift + line, sfreq), line_freq=60.0, reference="none")
    assert report.notch_freqs == [60.0]
    mid = middle(x.astype(np.float64), sfreq, 60, 140)
    assert (amplitude(mid, sfreq, 0.05) < 0.01 * 300.0).all()  # > 40 dB down
    assert (amplitude(mid, sfreq, 60.0) < 0.01 * 50.0).all()
    np.testing.assert_allclose(amplitude(mid, sfreq, 10.0), 20.0, rtol=0.02)


def test_line_frequency_is_detected() -> None:
    sfreq = 200.0
    noise = np.random.default_rng(1).standard_normal((6, int(60 * sfreq))) * 10.0
    t = np.arange(noise.shape[1]) / sfreq
    _, _, report = preprocess(make_raw(noise + 30.0 * np.sin(2 * np.pi * 50.0 * t), sfreq), line_freq="auto")
    assert report.line_freq == 50.0 and report.notch_freqs == [50.0]


def test_notch_harmonics_below_the_low_pass_are_all_removed() -> None:
    # At 500 Hz without a low-pass every harmonic up to Nyquist is notched: MNE's IIR notch_filter
    # refuses several stop bands, so each harmonic is its own band-stop in the cascade.
    sfreq, seconds = 500.0, 60
    t = np.arange(int(seconds * sfreq)) / sfreq
    line = sum(20.0 * np.sin(2 * np.pi * f * t) for f in (50.0, 100.0, 150.0))
    x, _, report = preprocess(make_raw(sines(4, sfreq, seconds, 10.0, np.full(4, 20.0)) + line, sfreq),
                              sfreq=500.0, h_freq=None, line_freq=50.0, reference="none")
    assert report.notch_freqs == [50.0, 100.0, 150.0, 200.0]
    mid = middle(x.astype(np.float64), sfreq, 20, 40)
    for f in (50.0, 100.0, 150.0):
        assert (amplitude(mid, sfreq, f) < 0.2).all()


def test_average_reference_matches_mne_and_has_zero_mean() -> None:
    sfreq = 200.0
    data = np.random.default_rng(2).standard_normal((8, int(30 * sfreq))) * 20.0 + np.arange(8)[:, None] * 5
    raw = make_raw(data, sfreq)
    raw.info["bads"] = ["F3"]
    cfg = PreprocessConfig(steps=("reference",))
    ours, _ = run_steps(raw.copy(), cfg)
    theirs = raw.copy().set_eeg_reference("average", projection=False, verbose=False)
    np.testing.assert_allclose(ours.get_data(), theirs.get_data(), rtol=0, atol=1e-18)
    good = [i for i, n in enumerate(ours.ch_names) if n != "F3"]
    assert np.abs(ours.get_data()[good].mean(axis=0)).max() < 1e-18  # volts: zero channel mean
    np.testing.assert_array_equal(ours.get_data()[2], raw.get_data()[2])  # the bad channel is left as is
    assert ours.info["custom_ref_applied"] == theirs.info["custom_ref_applied"]


def test_fused_filters_match_mne_applied_one_by_one() -> None:
    """notch + band-pass in one cascade equals MNE's IIR notch then IIR band-pass, off the edges."""
    sfreq, seconds = 200.0, 180
    rng = np.random.default_rng(3)
    data = np.cumsum(rng.standard_normal((6, int(seconds * sfreq))), axis=1) * 2.0  # brown noise, µV
    raw = make_raw(data, sfreq)
    cfg = PreprocessConfig(steps=("notch", "bandpass"), line_freq=60.0)
    ours, _ = run_steps(raw.copy(), cfg)
    theirs = raw.copy()
    theirs.notch_filter([60.0], method="iir", iir_params=dict(order=2, ftype="butter", output="sos"), verbose=False)
    theirs.filter(0.1, 75.0, method="iir", iir_params=dict(order=4, ftype="butter", output="sos"), verbose=False)
    a, b = middle(ours.get_data(), sfreq, 60, 120), middle(theirs.get_data(), sfreq, 60, 120)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())
    assert (ours.info["highpass"], ours.info["lowpass"]) == (theirs.info["highpass"], theirs.info["lowpass"])


def test_fir_filter_method_still_works() -> None:
    sfreq, seconds = 200.0, 120
    t = np.arange(int(seconds * sfreq)) / sfreq
    data = sines(4, sfreq, seconds, 10.0, np.full(4, 20.0)) + 50.0 * np.sin(2 * np.pi * 60.0 * t)
    x, _, _ = preprocess(make_raw(data, sfreq), filter_method="fir", line_freq=60.0, reference="none")
    mid = middle(x.astype(np.float64), sfreq, 40, 80)
    np.testing.assert_allclose(amplitude(mid, sfreq, 10.0), 20.0, rtol=0.02)
    assert (amplitude(mid, sfreq, 60.0) < 1.0).all()


def test_flat_and_noisy_channels_are_detected() -> None:
    sfreq = 200.0
    rng = np.random.default_rng(4)
    data = rng.standard_normal((12, int(60 * sfreq))) * rng.uniform(10, 20, (12, 1))  # µV
    data[3] = 0.01 * rng.standard_normal(data.shape[1])  # SD 0.01 µV: flat
    data[7] *= 60  # a channel far noisier than the rest
    data[9, 1000:1100] += 2000.0  # a single large blink: not "noisy" (robust SD)
    _, _, report = preprocess(make_raw(data, sfreq), reference="none")
    assert report.bad_channels == sorted([NAMES[3], NAMES[7]])


def test_implausible_amplitude_warns_and_auto_rescales() -> None:
    sfreq = 200.0
    rng = np.random.default_rng(5)
    data = rng.standard_normal((8, int(30 * sfreq))) * rng.uniform(10, 30, (8, 1)) * 1000  # µV read as mV
    data[5] *= 50  # a noisy channel: bad, left out of the RMS, but its unit is just as wrong
    x, _, report = preprocess(make_raw(data, sfreq), rescale="warn")
    assert report.amplitude_warning and "units are probably wrong" in report.amplitude_warning
    assert report.median_rms_uv > 10_000 and report.rescaled_by == 1.0
    assert report.bad_channels == [NAMES[5]]

    fixed, _, report = preprocess(make_raw(data, sfreq), rescale="auto")
    assert report.rescaled_by == pytest.approx(1e-3)  # unit mistakes are powers of 1000
    rms = np.sqrt((fixed.astype(np.float64) ** 2).mean(axis=1))
    assert 5 < np.median(rms) < 50
    np.testing.assert_allclose(fixed, x * 1e-3, rtol=1e-5, atol=1e-4)  # every channel, the bad one too

    with pytest.raises(PreprocessError, match="units are probably wrong"):
        preprocess(make_raw(data, sfreq), rescale="error")


def test_plausible_amplitude_gives_no_warning() -> None:
    data = np.random.default_rng(6).standard_normal((8, 6000)) * 20.0
    _, _, report = preprocess(make_raw(data, 200.0))
    assert report.amplitude_warning is None and 10 < report.median_rms_uv < 30


def test_robust_clip_bounds_outliers() -> None:
    data = np.random.default_rng(7).standard_normal((4, 12000)) * 10.0
    data[:, 5000] = 10_000.0  # one absurd sample per channel
    x, _, report = preprocess(make_raw(data, 200.0), clip_sigma=20.0, l_freq=None, h_freq=None, reference="none")
    assert np.abs(x).max() < 20 * 10.0 * 1.1 and 0 < report.clipped_fraction < 1e-3


def test_robust_stats_from_a_subset_are_close_to_exact() -> None:
    x = np.random.default_rng(8).standard_normal((6, 200_000)) * np.arange(1, 7)[:, None] + 3.0
    med, sd = robust_center_scale(x)
    exact_med = np.median(x, axis=1, keepdims=True)
    exact_sd = np.median(np.abs(x - exact_med), axis=1, keepdims=True) * 1.4826
    np.testing.assert_allclose(sd, exact_sd, rtol=0.06)
    np.testing.assert_allclose(med, exact_med, atol=0.06 * exact_sd.max())


@pytest.mark.parametrize("n_times", [1, 2, 7, 4096, 8193, 24600])
def test_robust_stats_are_numpy_medians_of_an_odd_strided_subset(n_times: int) -> None:
    x = np.random.default_rng(n_times).standard_normal((3, n_times))
    sub = x[:, :: max(1, n_times // ROBUST_STATS_SAMPLES)]
    if sub.shape[1] % 2 == 0:
        sub = sub[:, :-1]
    exact_med = np.median(sub, axis=1, keepdims=True)
    med, sd = robust_center_scale(x)
    np.testing.assert_array_equal(med, exact_med)
    np.testing.assert_array_equal(sd, np.median(np.abs(sub - exact_med), axis=1, keepdims=True) * 1.4826)


def test_robust_stats_are_nan_where_numpy_medians_are() -> None:
    x = np.random.default_rng(3).standard_normal((3, 5000))
    x[1, 100] = np.nan
    med, sd = robust_center_scale(x[:, ::1])
    sub = x[:, :: 5000 // ROBUST_STATS_SAMPLES][:, :4999]
    np.testing.assert_array_equal(np.isnan(med[:, 0]), np.isnan(np.median(sub, axis=1)))
    assert np.isnan(sd[1, 0]) and np.isfinite(sd[[0, 2], 0]).all()
    for stat in robust_center_scale(np.zeros((3, 0))):  # no samples: NaN rows, as np.median gives
        assert stat.shape == (3, 1) and np.isnan(stat).all()


def test_errors_name_the_problem() -> None:
    data = np.random.default_rng(9).standard_normal((4, 2000)) * 20.0
    data[1, 10] = np.nan
    with pytest.raises(PreprocessError, match="non-finite"):
        preprocess(make_raw(data, 200.0))
    raw = mne.io.RawArray(np.zeros((2, 100)), mne.create_info(["a", "b"], 100.0, "misc"), verbose=False)
    with pytest.raises(PreprocessError, match="no data channels"):
        preprocess(raw)


def test_config_hash_covers_the_version_and_methods() -> None:
    base = PreprocessConfig()
    assert base.to_dict()["version"] == PIPELINE_VERSION >= 3
    hashes = {base.hash(), PreprocessConfig(filter_method="fir").hash(),
              PreprocessConfig(resample_method="fft").hash()}
    assert len(hashes) == 3
    with pytest.raises(ValueError, match="unknown step"):
        PreprocessConfig(steps=("pick", "nope"))


def test_alike_channels_are_not_flagged_noisy():
    """White noise of equal SD on every channel: nothing is bad (the spread floor prevents random flags)."""
    import mne

    from neurofm.pipelines.preprocess import PreprocessConfig, PreprocessReport, STEPS

    rng = np.random.default_rng(0)
    names = ["Fz", "Cz", "Pz", "Oz", "C3", "C4", "F3", "F4", "P3", "P4"]
    raw = mne.io.RawArray(rng.normal(0, 10e-6, (10, 2000)), mne.create_info(names, 200.0, "eeg"), verbose="error")
    report = PreprocessReport()
    STEPS["detect_bad"](raw, PreprocessConfig(), report)
    assert report.bad_channels == []
