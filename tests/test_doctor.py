"""canora doctor: one test per mel convention, on mels made from real audio."""

from __future__ import annotations

import math

import numpy as np
import pytest

from canora.analysis.conventions import synthesize
from canora.analysis.doctor import apply_fix, diagnose
from canora.cli import main
from canora.dsp.mel import MelSpec
from canora.errors import MelError
from tests.conftest import shared_file

SPEC = MelSpec()


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """3 s of real singing that reaches digital silence (PJS song 2 from 1 s), 22050 Hz."""
    from canora.io.audio import load_audio

    return load_audio(shared_file("pjs/pjs002_song.wav"), 22050)[22050 : 4 * 22050]


@pytest.fixture(scope="module")
def ln(clip: np.ndarray) -> np.ndarray:
    return synthesize(clip, SPEC, "ln")


def test_matching_mel_is_ok(clip: np.ndarray, ln: np.ndarray) -> None:
    assert diagnose(ln, SPEC).matches
    d = diagnose(ln, SPEC, audio=clip, audio_sr=22050)
    assert d.matches and d.audio_error == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("key", ["log10", "clamp_1e-9", "log1p", "norm_pm1", "transposed"])
def test_exact_conventions_detected_and_fixed(key: str, ln: np.ndarray) -> None:
    wav_mel = _make(key)
    d = diagnose(wav_mel, SPEC)
    assert d.keys == [key], d.summary()
    fixed = apply_fix(wav_mel, d)
    assert fixed.shape == ln.shape
    assert np.abs(fixed - ln).max() < 1e-3


def _make(key: str) -> np.ndarray:
    from canora.io.audio import load_audio

    wav = load_audio(shared_file("pjs/pjs002_song.wav"), 22050)[22050 : 4 * 22050]
    return synthesize(wav, SPEC, key)


def test_clamp_convention_differs_on_this_audio(ln: np.ndarray) -> None:
    # the clamp test above is only meaningful if the audio reaches below 1e-5
    assert (_make("clamp_1e-9") < SPEC.log_floor - 0.5).any()


@pytest.mark.slow
def test_power_db_ref1_detected_and_approximately_fixed(ln: np.ndarray) -> None:
    mel = _make("db_ref1")
    d = diagnose(mel, SPEC)
    assert d.keys == ["db_ref1"]
    with pytest.raises(MelError, match="approximate"):
        apply_fix(mel, d)
    fixed = apply_fix(mel, d, allow_approximate=True)
    loud = ln.max(axis=0) > SPEC.log_floor + 4
    assert np.abs(fixed - ln)[:, loud].mean() < 1.0  # power -> magnitude is approximate; log10 scale alone is 10x off


def test_power_db_ref_max_needs_the_audio(clip: np.ndarray, ln: np.ndarray) -> None:
    mel = _make("db_refmax")
    blind = diagnose(mel, SPEC)
    assert blind.keys == ["db_refmax"] and not blind.fixable
    with pytest.raises(MelError, match="discarded"):
        apply_fix(mel, blind, allow_approximate=True)
    d = diagnose(mel, SPEC, audio=clip, audio_sr=22050)
    from canora.analysis.conventions import linear_mel

    true_ref = float(linear_mel(clip, SPEC, power=2.0).max())
    assert d.findings[0].params["ref"] == pytest.approx(true_ref, rel=0.02)
    fixed = apply_fix(mel, d, allow_approximate=True)
    assert np.abs(fixed - apply_fix(_make("db_ref1"), diagnose(_make("db_ref1"), SPEC), allow_approximate=True)).max() \
        < 0.05


def test_mean_variance_detected_not_fixable() -> None:
    mel = _make("meanvar")
    d = diagnose(mel, SPEC)
    assert d.keys == ["meanvar"]
    with pytest.raises(MelError, match="mean/std"):
        apply_fix(mel, d)


def test_power_mel_detected_blind_and_with_audio(clip: np.ndarray) -> None:
    mel = _make("power")
    assert diagnose(mel, SPEC).keys == ["power"]
    assert diagnose(mel, SPEC, audio=clip, audio_sr=22050).keys == ["power"]


def test_center_padding_from_frame_count(clip: np.ndarray) -> None:
    mel = _make("center")
    assert mel.shape[1] == len(clip) // 256 + 1
    d = diagnose(mel, SPEC, audio=clip, audio_sr=22050)
    assert d.keys == ["center"]
    with pytest.raises(MelError, match="re-extract"):
        apply_fix(mel, d)


@pytest.mark.parametrize("fmax", [7600.0, None])
def test_other_fmax_with_audio(clip: np.ndarray, fmax: float | None) -> None:
    mel = synthesize(clip, SPEC, "fmax", fmax=fmax)
    d = diagnose(mel, SPEC, audio=clip, audio_sr=22050)
    assert d.keys == ["fmax"], d.summary()
    assert d.findings[0].params["fmax"] == fmax


def test_full_band_fmax_blind_on_band_limited_audio() -> None:
    from canora.io.audio import load_audio

    wav = load_audio(shared_file("speech/cmu_arctic_us_aew_a0001.wav"), 22050)  # 16 kHz: nothing above 8 kHz
    d = diagnose(synthesize(wav, SPEC, "fmax", fmax=None), SPEC)
    assert d.keys == ["fmax"] and d.findings[0].params["empty_bands"] > 3


def test_other_sample_rate_from_frame_count(clip: np.ndarray) -> None:
    mel = synthesize(clip, SPEC, "sample_rate", sample_rate=24000)
    d = diagnose(mel, SPEC, audio=clip, audio_sr=22050)
    assert d.keys == ["sample_rate"] and d.findings[0].params["sample_rate"] == 24000


def test_htk_scale_with_audio(clip: np.ndarray) -> None:
    d = diagnose(_make("htk"), SPEC, audio=clip, audio_sr=22050)
    assert d.keys == ["htk"], d.summary()


def test_peak_normalised_with_audio(clip: np.ndarray, ln: np.ndarray) -> None:
    mel = _make("peak_normalised")
    d = diagnose(mel, SPEC, audio=clip, audio_sr=22050)
    assert d.keys == ["peak_normalised"]
    assert math.log(d.findings[0].params["gain"]) == pytest.approx(math.log(0.95 / np.abs(clip).max()), abs=2e-3)
    fixed = apply_fix(mel, d)
    above = (ln > SPEC.log_floor + 4) & (mel > SPEC.log_floor + 4)  # the 1e-9 inside sqrt is not scale-free
    assert np.abs(fixed - ln)[above].max() < 1e-3


def test_cli_doctor_fix_and_refuse(tmp_path, clip: np.ndarray, ln: np.ndarray, capsys) -> None:
    from canora.io.audio import save_wav

    mels, audio, out = tmp_path / "mels", tmp_path / "audio", tmp_path / "fixed"
    mels.mkdir()
    audio.mkdir()
    np.save(mels / "a.npy", _make("log10"))
    np.save(mels / "b.npy", _make("center"))
    for stem in ("a", "b"):
        save_wav(audio / f"{stem}.wav", clip, 22050, subtype="FLOAT")
    rc = main(["doctor", str(mels), "--config", "v1", "--audio", str(audio), "--fix", "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 1  # one mel could not be fixed
    assert "log10 mel" in text and "center=True" in text and "NOT fixed" in text
    assert np.abs(np.load(out / "a.npy") - ln).max() < 1e-3
    assert not (out / "b.npy").exists()
    assert main(["doctor", str(out), "--config", "v1"]) == 0
