"""Mel matching (canora.dsp.melmatch): the output's mel comes back to the target, the phase (pitch) stays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import canora.dsp.melmatch as mm
from canora.dsp.mel import MelSpec, wav_to_mel
from canora.dsp.melmatch import mel_match
from canora.dsp.metrics import mel_cycle_error
from canora.errors import CanoraError

SPEC = MelSpec()
SR, HOP = SPEC.sample_rate, SPEC.hop_length
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _sung(seconds: float = 2.0, f0: float = 220.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone with vibrato and a moving formant-like envelope, plus a little noise: (frames * hop,)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR) // HOP * HOP
    t = np.arange(n) / SR
    inst = f0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(inst) / SR
    formant = 800 + 400 * np.sin(2 * np.pi * 0.7 * t)
    x = sum(np.exp(-((k * inst - formant) / 600.0) ** 2) * np.sin(k * phase) / k for k in range(1, 30)
            if k * f0 < 7500)
    return (0.3 * x + 0.003 * rng.standard_normal(n)).astype(np.float32)


def _tilted(x: np.ndarray, db_per_octave: float) -> np.ndarray:
    """``x`` through a spectral tilt (a vocoder's envelope error, in the shape of one)."""
    spec = np.fft.rfft(x)
    f = np.maximum(np.fft.rfftfreq(len(x), 1 / SR), 50.0)
    return np.fft.irfft(spec * 10 ** (db_per_octave * np.log2(f / 500.0) / 20), n=len(x)).astype(np.float32)


def envelope_error(mel: np.ndarray, audio: np.ndarray, spec: MelSpec = SPEC) -> float:
    """Mean |ln| distance between the envelopes (mels smoothed over bands as mel matching compares them) of
    ``mel`` and of ``audio``'s mel."""
    from scipy.ndimage import gaussian_filter1d

    def env(m: np.ndarray) -> np.ndarray:
        return np.log(gaussian_filter1d(np.exp(m.astype(np.float64) * (np.log(10) if spec.log_base == "10" else 1)),
                                        mm.SMOOTH_BANDS, axis=0, mode="nearest"))

    return float(np.mean(np.abs(env(mel) - env(wav_to_mel(audio, spec)))))


def _period(x: np.ndarray) -> int:
    """The lag (samples) of the highest autocorrelation between 2 and 20 ms."""
    ac = np.correlate(x[:8192], x[:8192], "full")[8191:]
    lo, hi = int(0.002 * SR), int(0.02 * SR)
    return lo + int(np.argmax(ac[lo:hi]))


def test_brings_a_tilted_rendering_back_to_its_mel_and_keeps_the_pitch() -> None:
    x = _sung()
    mel = wav_to_mel(x, SPEC)
    bent = _tilted(x, -4.0)
    before = mel_cycle_error(mel, bent, SPEC)
    after1 = mel_cycle_error(mel, mel_match(bent, mel, SPEC, 1), SPEC)
    out = mel_match(bent, mel, SPEC, 2)
    after2 = mel_cycle_error(mel, out, SPEC)
    assert before > 0.5  # the tilt is a real envelope error
    assert after1 < 0.35 * before and after2 < after1  # each round brings it closer
    assert out.dtype == np.float32 and out.shape == x.shape
    assert _period(out) == _period(x)  # the phase is the rendering's: same pitch


def test_leaves_audio_already_on_its_mel_as_it_is() -> None:
    x = _sung(seed=1)
    out = mel_match(x, wav_to_mel(x, SPEC), SPEC, 2)
    assert np.abs(out - x).max() < 2e-3 * np.abs(x).max()


def test_zero_rounds_is_the_vocoders_output_and_gains_are_bounded() -> None:
    x = _sung(seed=2)
    mel = wav_to_mel(x, SPEC)
    assert np.array_equal(mel_match(x, mel, SPEC, 0), x)
    quiet = (x * 1e-3).astype(np.float32)  # 60 dB too quiet: one round may raise it by MAX_GAIN_DB at most
    out = mel_match(quiet, mel, SPEC, 1)
    gain_db = 20 * np.log10(np.sqrt(np.mean(out ** 2)) / np.sqrt(np.mean(quiet ** 2)))
    assert mm.MAX_GAIN_DB - 1.0 < gain_db <= mm.MAX_GAIN_DB + 0.5


def test_chunked_matching_equals_matching_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _tilted(_sung(seconds=3.0, seed=3), 3.0)
    mel = wav_to_mel(_sung(seconds=3.0, seed=3), SPEC)
    whole = mel_match(x, mel, SPEC, 2)
    monkeypatch.setattr(mm, "CHUNK_FRAMES", 37)
    assert np.allclose(mel_match(x, mel, SPEC, 2), whole, atol=1e-6)


@pytest.mark.parametrize("log_base, power", [("10", 1.0), ("e", 2.0)])
def test_other_mel_conventions(log_base: str, power: float) -> None:
    spec = MelSpec(log_base=log_base, power=power)
    x = _sung(seed=4)
    mel = wav_to_mel(x, spec)
    bent = _tilted(x, 4.0)
    assert mel_cycle_error(mel, mel_match(bent, mel, spec, 2), spec) < 0.4 * mel_cycle_error(mel, bent, spec)


def test_bad_input_is_one_clear_error() -> None:
    x = _sung(seed=5)
    mel = wav_to_mel(x, SPEC)
    with pytest.raises(CanoraError, match="frames \\* hop"):
        mel_match(x[:-7], mel, SPEC, 1)
    with pytest.raises(CanoraError, match="0 \\(off\\) to 8"):
        mel_match(x, mel, SPEC, 9)
    with pytest.raises(CanoraError, match="0 \\(off\\) to 8"):
        mel_match(x, mel, SPEC, True)


@pytest.mark.skipif(not (DATA / "pjs" / "pjs088_song.wav").is_file(), reason="needs ../shared/data (PJS)")
def test_bundled_vocoder_copy_of_a_held_out_song_comes_closer_to_its_mel() -> None:
    """The product's case: the bundled NSF vocoder's copy-synthesis of a song it never heard. The envelope error
    falls by more than half, the band-by-band error too (less: harmonics are not moved), and the pitch the vocoder
    made stays."""
    from canora.dsp.pitch import extract_f0
    from canora.io.audio import load_audio
    from canora.vocoder.api import Vocoder

    voc = Vocoder.from_pretrained("bundled")
    wav = load_audio(DATA / "pjs" / "pjs088_song.wav", SR)[SR * 3: SR * 9]
    mel = wav_to_mel(wav, voc.spec)
    f0 = extract_f0(wav[: mel.shape[1] * HOP], SR, HOP, mel.shape[1], method="swift")
    out = voc.vocode(mel, f0)
    matched = mel_match(out, mel, voc.spec)
    assert envelope_error(mel, matched, voc.spec) < 0.5 * envelope_error(mel, out, voc.spec)
    assert mel_cycle_error(mel, matched, voc.spec) < 0.8 * mel_cycle_error(mel, out, voc.spec)
    f_out = extract_f0(out, SR, HOP, mel.shape[1], method="swift")
    f_matched = extract_f0(matched, SR, HOP, mel.shape[1], method="swift")
    both = (f_out > 0) & (f_matched > 0)
    assert both.sum() > 100
    cents = 1200 * np.abs(np.log2(f_matched[both] / f_out[both]))
    assert np.mean(cents > 50) < 0.02


def test_the_rounds_follow_the_singers_the_vocoder_was_trained_on(tmp_path: Path) -> None:
    """Automatic: none for a singer (or a mix of singers) the vocoder learned, the default for any other; a number
    asked for is kept. The vocoder's singers survive its export and its ONNX copy, and land in the sidecar stats."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import make_tiny_models

    from canora.job import mel_match_rounds
    from canora.pipeline import Converter
    from canora.vocoder.api import Vocoder

    assert mel_match_rounds(None, "pjs", ("pjs",))[0] == 0
    assert mel_match_rounds(None, "pjs:0.5,alto:0.5", ("pjs",))[0] == mm.MEL_MATCH_ITERS
    assert mel_match_rounds(None, "pjs:0.5,alto:0.5", ("pjs", "alto"))[0] == 0
    assert mel_match_rounds(None, "pjs", ())[0] == mm.MEL_MATCH_ITERS
    assert mel_match_rounds(1, "pjs", ("pjs",)) == (1, "asked for")
    with pytest.raises(CanoraError):
        mel_match_rounds(-1, "pjs", ())
    ref, voc_dir = make_tiny_models(tmp_path / "m", singers=("pjs", "alto"))
    voc = Vocoder.from_pretrained(voc_dir)
    assert voc.singers == ()
    voc.singers = ("pjs",)
    voc.export(tmp_path / "voc_pjs")
    again = Vocoder.from_pretrained(tmp_path / "voc_pjs")
    assert again.singers == ("pjs",)
    conv = Converter.from_pretrained(ref, tmp_path / "voc_pjs")
    x = _sung(seconds=1.5)
    assert conv.convert(x, SR, singer="pjs", steps=1).stats["mel_match"] == 0
    res = conv.convert(x, SR, singer="alto", steps=1)
    assert res.stats["mel_match"] == mm.MEL_MATCH_ITERS and "not trained" in res.stats["mel_match_reason"]
    pytest.importorskip("onnxruntime")
    from canora.backends import on_onnx_runtime

    assert on_onnx_runtime(conv.vocoder, "vocoder").singers == ("pjs",)
