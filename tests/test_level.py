"""Peak level and loudness: the true-peak meter, the look-ahead limiter, BS.1770 loudness, the output stage."""

from __future__ import annotations

import numpy as np
import pytest

from canora.dsp.fir import convolve
from canora.dsp.level import limit, limiter_gain_db, running_min, true_peak_db, true_peak_envelope
from canora.dsp.lufs import integrated_loudness, k_weighting
from canora.dsp.output import CEILING_DBTP, MAX_TRIM_DB, PEAK_MARGIN_DB, check_loudness, finish_output
from canora.errors import CanoraError

from .conftest import shared_file

SR = 22050


def faded(x: np.ndarray, seconds: float = 0.05) -> np.ndarray:
    """``x`` with raised-cosine fades at both ends (a hard edge rings between samples like any step)."""
    n = int(seconds * SR)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    y = np.asarray(x, np.float64).copy()
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y


def sine(hz: float, amp: float, seconds: float = 2.0, phase: float = 0.0) -> np.ndarray:
    return faded(amp * np.sin(2 * np.pi * hz * np.arange(int(seconds * SR)) / SR + phase))


def scipy_true_peak(x: np.ndarray) -> float:
    """An independent 4x meter (scipy's polyphase resampler)."""
    from scipy.signal import resample_poly

    return float(20 * np.log10(np.abs(resample_poly(np.asarray(x, np.float64), 4, 1)).max()))


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    """12 s of a real studio take (PJS 087), peak-normalised to 0.99."""
    from canora.io.audio import load_audio

    x = load_audio(shared_file("pjs/pjs087_song.wav"), SR)[2 * SR: 14 * SR]
    return (0.99 * x / np.abs(x).max()).astype(np.float32)


# ------------------------------------------------------------------ FIR, running minimum
def test_block_convolution_equals_numpy() -> None:
    rng = np.random.default_rng(0)
    x, h = rng.standard_normal(5000), rng.standard_normal(301)
    full = np.convolve(x, h)
    for delay in (0, 150, 300):
        assert np.allclose(convolve(x, h, delay, n_fft=1024), full[delay: delay + len(x)])


def test_running_min_equals_brute_force() -> None:
    x = np.random.default_rng(1).standard_normal(500)
    for before, after in ((0, 0), (3, 2), (0, 9), (7, 0), (40, 40)):
        ref = [x[max(0, i - before): i + after + 1].min() for i in range(len(x))]
        assert np.array_equal(running_min(x, before, after), ref)


# ------------------------------------------------------------------ true peak
def test_true_peak_finds_the_peak_between_samples() -> None:
    x = sine(SR / 4, 1.0, phase=np.pi / 4)  # every sample at +-0.707, the wave at +-1 halfway between them
    assert 20 * np.log10(np.abs(x).max()) == pytest.approx(-3.01, abs=0.01)
    assert true_peak_db(x) == pytest.approx(0.0, abs=0.02)
    assert (true_peak_envelope(x) >= np.abs(x) - 1e-7).all()


def test_true_peak_agrees_with_an_independent_meter_on_singing(song: np.ndarray) -> None:
    assert true_peak_db(song) == pytest.approx(scipy_true_peak(song), abs=0.03)


# ------------------------------------------------------------------ limiter
def test_limiter_passes_audio_under_the_ceiling_unchanged(song: np.ndarray) -> None:
    quiet = (song * 10 ** (-3 / 20)).astype(np.float32)  # true peak about -3 dBTP
    y, lim = limit(quiet, SR, -1.0)
    assert np.array_equal(y, quiet) and lim.limited_ms == 0 and lim.max_reduction_db == 0


def test_limiter_keeps_the_true_peak_under_the_ceiling(song: np.ndarray) -> None:
    hot = (song * 10 ** (4 / 20)).astype(np.float32)  # +4 dB: peaks about +4 dBTP
    y, lim = limit(hot, SR, -1.0)
    assert true_peak_db(y) <= -1.0 + 1e-6 and scipy_true_peak(y) <= -0.98
    assert 4.5 < lim.max_reduction_db < 5.5 and 0 < lim.limited_ms < 12_000
    gain = y[np.abs(hot) > 1e-3] / hot[np.abs(hot) > 1e-3]
    assert gain.max() <= 1.0 + 1e-6  # the limiter only ever lowers


def test_limiter_gain_is_smooth_attacks_within_the_lookahead_and_releases_slowly() -> None:
    env = np.full(SR, 0.5)
    env[SR // 2] = 2.0  # one peak 12 dB over a -1 dB ceiling, 500 ms in
    g = limiter_gain_db(env, SR, -1.0)
    need = 20 * np.log10(2.0) + 1.0
    assert g[SR // 2] <= -need + 1e-9 and (g <= 1e-12).all()
    look = round(0.005 * SR)
    assert (g[: SR // 2 - look] == 0).all()  # nothing before the look-ahead
    assert np.abs(np.diff(g)).max() <= need / look + 1e-9  # at most a linear ramp over the look-ahead per sample
    after = g[SR // 2 + int(0.2 * SR)]  # 200 ms later: still reducing (hold 20 ms, release 150 ms)
    assert -need < after < -0.1 * need


def test_limited_steady_tone_has_a_steady_gain() -> None:
    """Hold >= a period of the lowest sung note: the gain does not ripple at the pitch, so it adds no harmonics."""
    x = sine(110.0, 1.5, seconds=3.0)  # +3.5 dB over 0 dBFS
    y, _ = limit(x, SR, -1.0)
    mid = slice(SR, 2 * SR)
    ratio = y[mid][np.abs(x[mid]) > 0.1] / x[mid][np.abs(x[mid]) > 0.1]
    assert ratio.max() - ratio.min() < 1e-4
    spec = np.abs(np.fft.rfft(y[mid] * np.hanning(SR)))
    fundamental = spec[110]
    harmonics = spec[[220, 330, 440, 550]]
    assert 20 * np.log10(harmonics.max() / fundamental) < -80


# ------------------------------------------------------------------ loudness
def test_k_weighting_is_the_standards_at_48k_and_a_full_scale_sine_reads_minus_3() -> None:
    (b1, a1), (b2, a2) = k_weighting(48000)
    assert np.allclose(b1, [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-12)
    assert np.allclose(a1, [1.0, -1.69065929318241, 0.73248077421585], atol=1e-12)
    assert np.allclose(a2, [1.0, -1.99004745483398, 0.99007225036621], atol=1e-12) and np.allclose(b2, [1, -2, 1])
    t = np.arange(5 * 48000) / 48000
    assert integrated_loudness(np.sin(2 * np.pi * 997 * t), 48000) == pytest.approx(-3.01, abs=0.01)


@pytest.mark.parametrize("rel", ["pjs/pjs087_song.wav", "vocadito/vocadito_1.wav", "smstools/singing-female.wav"])
def test_loudness_matches_pyloudnorm(rel: str) -> None:
    pyln = pytest.importorskip("pyloudnorm")
    from canora.io.audio import load_audio

    x = load_audio(shared_file(rel), SR).astype(np.float64)
    ours = integrated_loudness(x, SR)
    assert ours == pytest.approx(pyln.Meter(SR, filter_class="DeMan").integrated_loudness(x), abs=1e-6)
    assert ours == pytest.approx(pyln.Meter(SR).integrated_loudness(x), abs=0.15)  # its cookbook filters at 22 kHz


def test_loudness_of_silence_and_of_too_little_audio() -> None:
    assert integrated_loudness(np.zeros(SR), SR) == float("-inf")
    assert np.isnan(integrated_loudness(np.ones(100), SR))


# ------------------------------------------------------------------ output stage
def test_output_stage_removes_dc_and_rumble_and_leaves_a_quiet_song_alone(song: np.ndarray) -> None:
    from canora.dsp.filters import subsonic_db

    x = (0.3 * song + 0.02 + 0.05 * sine(15, 1.0, seconds=len(song) / SR)).astype(np.float32)
    assert subsonic_db(x, SR) > -25
    y, out = finish_output(x, SR)
    assert subsonic_db(y, SR) < -50 and abs(float(y.mean())) < 1e-4
    assert out.gain_db == 0 and out.limited_ms == 0 and not out.acted and out.true_peak_dbtp < CEILING_DBTP


def test_output_stage_trims_a_little_and_limits_only_the_rest(song: np.ndarray) -> None:
    small = (song * 10 ** (1.5 / 20)).astype(np.float32)  # 1.5 dB over 0 dBTP: a plain gain suffices
    y, out = finish_output(small, SR)
    assert out.limited_ms == 0 and -MAX_TRIM_DB < out.gain_db < -2.0 and out.true_peak_dbtp <= CEILING_DBTP
    assert out.gain_db == pytest.approx(CEILING_DBTP - PEAK_MARGIN_DB - out.input_true_peak_dbtp, abs=1e-3)
    from canora.dsp.filters import highpass

    assert np.allclose(y, highpass(small, SR) * 10 ** (out.gain_db / 20), atol=1e-6)  # the same song, lower
    big = (song * 10 ** (5 / 20)).astype(np.float32)  # 5 dB over: a plain gain of 3 dB, the limiter the rest
    y, out = finish_output(big, SR)
    assert out.gain_db == pytest.approx(-MAX_TRIM_DB, abs=0.01) and out.limited_ms > 0
    assert 2.5 < out.max_reduction_db < 3.5 and out.true_peak_dbtp <= CEILING_DBTP and scipy_true_peak(y) <= -1.0
    assert (np.abs(y) < 0.999).all()


def test_output_stage_reaches_a_loudness_target_under_the_ceiling(song: np.ndarray) -> None:
    y, out = finish_output(song * 0.1, SR, loudness=-14.0)
    assert out.loudness_lufs == pytest.approx(-14.0, abs=0.1) and out.target_lufs == -14.0
    assert out.true_peak_dbtp <= CEILING_DBTP and out.limited_ms > 0  # this take peaks about 15 dB over -14 LUFS
    y, out = finish_output(song, SR, loudness=-30.0)
    assert out.loudness_lufs == pytest.approx(-30.0, abs=0.01) and out.limited_ms == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -70.0, 0.0, "loud", True])
def test_a_bad_loudness_target_is_one_clear_error(bad: object) -> None:
    with pytest.raises(CanoraError, match="LUFS"):
        check_loudness(bad, "--loudness")
    assert check_loudness(None) is None and check_loudness(-14) == -14.0
