"""Collapse detector: flags LJ_V2 output from mismatched mels, passes output from matched mels (real audio)."""

from __future__ import annotations

import numpy as np
import pytest

from canora.analysis.collapse import check_output, spectral_flatness
from canora.analysis.conventions import synthesize
from canora.dsp.mel import MelSpec
from canora.dsp.metrics import mel_cycle_error
from tests.conftest import shared_file

SPEC = MelSpec()


@pytest.fixture(scope="module")
def lj_v2():
    from canora.vocoder import Vocoder

    return Vocoder.from_pretrained(shared_file("hifigan/LJ_V2/generator_v2"))


@pytest.fixture(scope="module", params=["vocadito/vocadito_1.wav", "pjs/pjs002_song.wav"])
def clip(request) -> np.ndarray:
    from canora.io.audio import load_audio

    return load_audio(shared_file(request.param), 22050)[22050 : 22050 * 3]


@pytest.mark.slow
def test_matched_mels_pass(lj_v2, clip: np.ndarray) -> None:
    mel = synthesize(clip, lj_v2.spec, "ln")
    wav = lj_v2.vocode(mel)
    r = check_output(mel, wav, lj_v2.spec)
    assert not r.collapsed, r.verdict
    assert r.cycle_error == pytest.approx(mel_cycle_error(mel, wav, lj_v2.spec), rel=1e-6)
    assert r.cycle_error < 0.9 and r.flatness < 0.05 and abs(r.level_change) < 1.0


@pytest.mark.parametrize(("key", "reason"), [
    ("db_ref1", "energy blow-up"),
    ("db_refmax", "energy blow-up"),
    ("norm_pm1", "cycle error"),
    ("meanvar", "clipped"),
    ("log1p", "cycle error"),
    ("log10", "noise-like"),
])
@pytest.mark.slow
def test_mismatched_mels_are_flagged(lj_v2, clip: np.ndarray, key: str, reason: str) -> None:
    mel = synthesize(clip, lj_v2.spec, key)  # fed to the vocoder as if it were its ln mel
    r = check_output(mel, lj_v2.vocode(mel), lj_v2.spec)
    assert r.collapsed
    assert any(reason in why for why in r.reasons), r.verdict


@pytest.mark.slow
def test_power_mel_is_borderline_but_much_worse_than_matched(lj_v2, clip: np.ndarray) -> None:
    # a power mel read as a magnitude mel sits near the cycle-error threshold (1.3-2.7 on real audio):
    # the doctor, not the collapse detector, is what names it; here it must at least be far worse than matched
    ln, power = synthesize(clip, lj_v2.spec, "ln"), synthesize(clip, lj_v2.spec, "power")
    r_ln = check_output(ln, lj_v2.vocode(ln), lj_v2.spec)
    r_pw = check_output(power, lj_v2.vocode(power), lj_v2.spec)
    assert r_pw.cycle_error > 2 * r_ln.cycle_error and r_pw.level_change > 0.5


def test_nan_silence_and_clipping(sung_clip: tuple[np.ndarray, int]) -> None:
    wav, _ = sung_clip
    mel = synthesize(wav, SPEC, "ln")
    ok = check_output(mel, wav[: mel.shape[1] * 256], SPEC)
    assert not ok.collapsed and ok.cycle_error < 0.05  # the audio itself reproduces its own mel
    bad = wav.copy()
    bad[100] = np.nan
    assert check_output(mel, bad, SPEC).nan
    assert "energy collapse" in check_output(mel, np.zeros_like(wav), SPEC).verdict
    square = np.sign(np.sin(2 * np.pi * 220 * np.arange(len(wav)) / 22050)).astype(np.float32)
    assert "clipped" in check_output(mel, square, SPEC).verdict


def test_spectral_flatness_tone_vs_noise() -> None:
    t = np.arange(22050) / 22050
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    noise = np.random.default_rng(0).standard_normal(22050).astype(np.float32) * 0.1
    assert spectral_flatness(tone, SPEC) < 0.01
    assert 0.4 < spectral_flatness(noise, SPEC) < 0.7
