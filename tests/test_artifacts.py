"""Waveform artifact metrics: each one flags a real recording with an injected frame-rate pulse train (the
buzz mel metrics cannot see) and passes the clean recording and a harmless change of it."""

from __future__ import annotations

import numpy as np
import pytest

from canora.dsp import artifacts as A

from .conftest import shared_file

SR, HOP = 22050, 256


@pytest.fixture(scope="module")
def recording() -> np.ndarray:
    from canora.io.audio import load_audio

    return load_audio(shared_file("pjs/pjs001_song.wav"), SR)[: SR * 10].astype(np.float64)


def _with_buzz(x: np.ndarray, level: float) -> np.ndarray:
    """``x`` plus a pulse every hop (the frame rate, 86.13 Hz) that follows the recording's frame level: a
    pulse of height ``level`` x frame RMS (16 = as much energy as the frame itself)."""
    n = len(x) // HOP
    rms = np.sqrt(np.mean(x[: n * HOP].reshape(n, HOP) ** 2, axis=1))
    pulses = np.zeros(n * HOP)
    pulses[::HOP] = 1.0
    y = x.copy()
    y[: n * HOP] += pulses * np.repeat(rms, HOP) * level
    return y


def _harmless(x: np.ndarray) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    return 0.8 * sosfiltfilt(butter(8, 7000, fs=SR, output="sos"), x)


@pytest.fixture(scope="module")
def scored(recording: np.ndarray) -> dict[str, tuple[A.ArtifactMetrics, A.ArtifactMetrics]]:
    return {name: A.compare(sig, recording, SR, HOP) for name, sig in (
        ("harmless", _harmless(recording)), ("quiet buzz", _with_buzz(recording, 4.0)),
        ("loud buzz", _with_buzz(recording, 16.0)))}


@pytest.mark.slow
def test_the_clean_recording_scores_in_the_healthy_range(scored):
    ref = scored["harmless"][1]
    assert ref.frame_rate_periodicity < 0.6
    assert ref.hnr_db > 12.0
    assert max(ref.frame_rate_lines_db[1:]) < 3.0  # k = 2..4 (k = 1 sits on the room's low-frequency floor)
    assert np.isnan(ref.gpe_harvest) and np.isnan(ref.gpe_praat)  # the reference has no reference


@pytest.mark.slow
def test_a_harmless_change_is_not_flagged(scored):
    out, ref = scored["harmless"]
    assert A.problems(out, ref) == []
    assert abs(out.frame_rate_periodicity - ref.frame_rate_periodicity) < 0.05
    assert out.gpe_harvest < 0.03 and out.gpe_praat < 0.03


@pytest.mark.slow
def test_each_metric_flags_a_frame_rate_buzz(scored):
    out, ref = scored["quiet buzz"]
    assert out.frame_rate_periodicity > ref.frame_rate_periodicity + 0.4
    assert out.frame_rate_line_db > ref.frame_rate_line_db + 10.0
    assert out.hnr_db < ref.hnr_db - 3.0
    assert out.gpe_harvest > 0.05
    found = " | ".join(A.problems(out, ref))
    assert "frame-rate buzz" in found and "frame-rate lines" in found and "HNR" in found
    # a buzz as loud as the singing makes Praat's tracker lock onto 86 Hz, and harvest too
    loud, _ = scored["loud buzz"]
    assert loud.gpe_praat > 0.3 and loud.gpe_harvest > 0.3


def test_lines_ignore_a_held_note_on_a_multiple_of_the_frame_rate():
    """A clean note at exactly 2 x 86.13 Hz is the melody, not a comb: with the F0 given it is left out."""
    t = np.arange(SR * 3) / SR
    f = 2 * SR / HOP
    noise = 0.01 * np.random.default_rng(0).normal(size=t.size)
    x = sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 6)) + noise
    n = len(x) // HOP
    mask = np.ones(n, bool)
    naive = A.frame_rate_lines(x, SR, HOP, mask)
    aware = A.frame_rate_lines(x, SR, HOP, mask, f0=np.full(n, f))
    assert naive[1] > 20.0  # the note's fundamental sits on line 2
    assert np.isnan(aware[1]) and np.isnan(aware[3])  # no frame is clear of the note at lines 2 and 4
    assert abs(aware[0]) < 3.0  # line 1 (86 Hz) lies between the note's harmonics: noise floor only


@pytest.mark.slow
def test_held_tone_finds_a_quiet_whistle_that_the_notes_do_not_make(recording, scored):
    """A fixed 10.3 kHz tone 40 dB below the singing (a streamed vocoder's defect) stands out of the
    neighbouring bins; the recording's own harmonics move with the notes and do not."""
    out, ref = scored["harmless"]
    assert ref.held_tone_db < 4.0 and out.held_tone_db < 4.0
    t = np.arange(len(recording)) / SR
    rms = np.sqrt(np.mean(recording**2))
    whistle = recording + 0.01 * rms * np.sin(2 * np.pi * 120 * SR / HOP * t)
    db, hz = A.held_tone(whistle, SR)
    assert db > ref.held_tone_db + 4.0 and abs(hz - 120 * SR / HOP) < 11.0
    flagged, _ = A.compare(whistle, recording, SR, HOP)
    assert any("fixed tone" in p for p in A.problems(flagged, ref))
    assert np.isnan(A.held_tone(recording[:1000], SR)[0])


def test_periodicity_is_nan_without_qualifying_frames():
    x = np.random.default_rng(0).normal(size=SR)
    assert np.isnan(A.frame_rate_periodicity(x, SR, HOP, np.zeros(len(x) // HOP, bool)))


# ---------------------------------------------------------------------- held tone against the source
#: a C-major tune: C, G and C' share a harmonic at 3.14 kHz (x12, x8, x6), so a recording of it holds a "tone" there
C_MAJOR = [60, 64, 67, 72, 67, 64, 60, 67, 72, 67, 60, 64, 67, 60]


def _tune(shift: float = 0.0, tilt: float = 1.0, seed: int = 0, note_s: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """(audio (N,), F0 (N // HOP,) Hz) of :data:`C_MAJOR` sung ``shift`` semitones up: harmonics to 8 kHz at
    ``k ** -tilt`` (a brighter voice: smaller tilt), 20-cent vibrato, 50 ms of breath noise between notes."""
    rng = np.random.default_rng(seed)
    n = int(note_s * SR)
    t = np.arange(n * len(C_MAJOR)) / SR
    f0 = 440 * 2 ** ((np.repeat(np.array(C_MAJOR, float) + shift, n) - 69) / 12) * 2 ** (
        0.2 * np.sin(2 * np.pi * 5.5 * t) / 12)
    gap = np.arange(len(t)) % n > n - int(0.05 * SR)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.where(k * f0 < 8000, k ** -tilt, 0.0) * np.sin(k * phase) for k in range(1, 60))
    x = np.where(gap, 0.0, x) + 0.003 * rng.standard_normal(len(t))
    track = np.where(gap, 0.0, f0)[np.arange(len(t) // HOP) * HOP + HOP // 2]
    return 0.2 * x / np.sqrt(np.mean(x**2)), track


@pytest.mark.parametrize("shift", [0, 12, -12])
@pytest.mark.slow
def test_held_tone_over_source_passes_a_major_tune_and_flags_a_whistle(shift):
    """The tune's shared harmonic reads +36 dB as a plain held tone in the source and in a conversion of it; read
    off the notes' harmonics and against the source (after the transpose: an octave down, half the output's
    harmonics have no counterpart in the source), the conversion scores what a clean recording does, and a whistle
    30 dB under the singing still stands out at its own frequency."""
    src, f0_src = _tune()
    out, f0_out = _tune(shift, tilt=0.7, seed=1)  # the "conversion": transposed, brighter, other noise
    assert A.held_tone(src, SR)[0] > 10.0 and A.held_tone(out, SR)[0] > 10.0  # the old reading: a false alarm
    db, _ = A.held_tone_over_source(out, src, SR, shift, [f0_out], [f0_src])
    assert db < 4.0
    whistle = out + 0.03 * np.sqrt(np.mean(out**2)) * np.sin(2 * np.pi * 3700 * np.arange(len(out)) / SR)
    db, hz = A.held_tone_over_source(whistle, src, SR, shift, [f0_out], [f0_src])
    assert db > 6.0 and abs(hz - 3700) < 11.0


def test_problems_read_the_held_tone_against_the_source():
    clean = A.ArtifactMetrics(0.2, 0.0, (0.0,), 20.0, 0.01, 0.01, held_tone_db=15.0, held_tone_hz=3143.8,
                              held_tone_over_source_db=1.5, held_tone_over_source_hz=5000.0)
    ref = A.ArtifactMetrics(0.2, 0.0, (0.0,), 20.0, float("nan"), float("nan"), held_tone_db=12.0)
    assert A.problems(clean, ref) == []  # the melody's harmonic, held by the source too
    from dataclasses import replace

    whistle = replace(clean, held_tone_over_source_db=9.0, held_tone_over_source_hz=3700.0)
    assert any("3700 Hz" in p for p in A.problems(whistle, ref))
