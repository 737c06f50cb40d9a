"""The sub-audio high-pass: zero phase like scipy's sosfiltfilt, DC removed, sung notes kept."""

from __future__ import annotations

import numpy as np
import pytest

from canora.dsp.filters import HIGHPASS_HZ, StreamingHighpass, butterworth_highpass_sos, highpass, subsonic_db

SR = 22050


def tone(hz: float, seconds: float = 3.0) -> np.ndarray:
    return np.sin(2 * np.pi * hz * np.arange(int(seconds * SR)) / SR).astype(np.float32)


def test_matches_scipy_sosfiltfilt_and_removes_dc() -> None:
    from scipy.signal import butter, sosfiltfilt

    x = np.random.default_rng(0).standard_normal(3 * SR).astype(np.float32) + 0.3  # DC offset
    y = highpass(x, SR)
    ref = sosfiltfilt(butter(4, HIGHPASS_HZ, "highpass", fs=SR, output="sos"), x)
    mid = slice(SR // 2, -SR // 2)  # edges differ by padding convention only
    assert np.abs(y[mid] - ref[mid]).max() < 1e-4
    assert abs(float(y.mean())) < 1e-3 and y.dtype == np.float32 and y.shape == x.shape


@pytest.mark.parametrize(("hz", "lo", "hi"), [(20, -60, -30), (30, -23, -19), (50, -1.6, -1.0), (80, -0.1, 0.0),
                                              (440, -0.01, 0.01)])
def test_response(hz: float, lo: float, hi: float) -> None:
    x = tone(hz)
    mid = slice(SR, -SR)
    db = 20 * np.log10(np.std(highpass(x, SR)[mid]) / np.std(x[mid]))
    assert lo <= db <= hi


def test_off_and_short_inputs_pass_through() -> None:
    x = tone(30, 0.1)
    assert highpass(x, SR, 0.0) is not None and np.array_equal(highpass(x, SR, 0.0), x)
    assert highpass(np.zeros(1, np.float32), SR).shape == (1,)


def test_streaming_equals_one_pass_of_the_same_filter() -> None:
    from scipy.signal import butter, sosfilt

    sos = butterworth_highpass_sos(SR)
    ref_sos = butter(4, HIGHPASS_HZ, "highpass", fs=SR, output="sos")
    x = np.random.default_rng(1).standard_normal(SR).astype(np.float32)
    hp = StreamingHighpass(SR)
    y = np.concatenate([hp.process(b) for b in np.array_split(x, 7)])  # uneven blocks
    assert np.abs(y - sosfilt(ref_sos, x)).max() < 1e-5
    assert np.abs(sosfilt(sos, x) - sosfilt(ref_sos, x)).max() < 1e-5


def test_subsonic_db_reads_rumble_and_not_singing() -> None:
    voice = tone(220) * 0.3
    rumble = voice + 0.3 * tone(15)
    assert subsonic_db(voice, SR) < -60
    assert -4 < subsonic_db(rumble, SR) < -2  # equal power: -3 dB
    assert subsonic_db(highpass(rumble, SR), SR) < -40
    assert np.isnan(subsonic_db(np.zeros(SR), SR))
