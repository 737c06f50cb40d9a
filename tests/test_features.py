"""Loudness and content features: levels of known signals, frame counts, alignment, the hubert plugin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from canora.dsp import content as feat
from canora.dsp.loudness import LOUDNESS_FLOOR_DB, loudness
from canora.dsp.stft import stft_power
from canora.errors import AudioError, CanoraError, CheckpointError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SR, HOP = 22050, 256


def tone(freq: float, amp: float, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_loudness_of_sines_of_known_level() -> None:
    """A sine of amplitude A has mean square A^2/2: 1 kHz (A-weight 0 dB) reads 20 log10(A) - 3.01 dB;
    100 Hz is A-weighted down by 19.1 dB (IEC 61672) but not in RMS mode."""
    db = loudness(tone(1000, 0.1), SR, HOP)
    assert np.abs(db[4:-4] - (-20 - 3.0103)).max() < 0.1
    low = tone(100, 0.1)
    np.testing.assert_allclose(np.median(loudness(low, SR, HOP, kind="rms")), -23.01, atol=0.1)
    np.testing.assert_allclose(np.median(loudness(low, SR, HOP)), -23.01 - 19.1, atol=0.3)


def test_loudness_frames_floor_and_alignment() -> None:
    """floor(T/hop) frames for odd lengths; silence floored, not -inf; frame i sees samples by i*hop+hop/2"""
    wav = np.zeros(2 * SR + 777, np.float32)
    wav[100 * HOP : 140 * HOP] = tone(1000, 0.5, 40 * HOP / SR)
    db = loudness(wav, SR, HOP)
    assert db.shape == (len(wav) // HOP,) and db.dtype == np.float32
    assert db[10] == LOUDNESS_FLOOR_DB and np.isfinite(db).all()
    # burst at samples [100, 140) * hop at -9 dB: frames whose centre (i*hop + hop/2) is inside it hold over
    # half the Hann window's energy (> -12 dB); frames 99 and 140 have their centres outside
    loud = np.flatnonzero(db > -12.04)
    assert loud[0] == 100 and loud[-1] == 139 and len(loud) == 40
    assert loudness(wav, SR, HOP, n_frames=50).shape == (50,)
    with pytest.raises(CanoraError, match="unknown loudness kind"):
        loudness(wav, SR, HOP, kind="lufs")
    with pytest.raises(AudioError, match=r"mono audio of shape \(T,\)"):
        loudness(np.zeros((2, 1000)), SR, HOP)


def test_stft_grid_matches_the_mel() -> None:
    """stft_power frames equal the HiFi-GAN mel's frames (same padding), for odd lengths too."""
    from canora.dsp.mel import MelSpec, mel_filterbank, wav_to_mel

    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(SR // 2 + 333)).astype(np.float32)
    spec = MelSpec()
    power = stft_power(wav.astype(np.float64), HOP, spec.n_fft)
    ours = np.log(np.maximum(mel_filterbank(spec) @ np.sqrt(power + 1e-9), 1e-5))
    ref = wav_to_mel(wav, spec)
    assert ours.shape == ref.shape == (80, len(wav) // HOP)
    assert np.abs(ours - ref).max() < 1e-3


def test_dsp_content_shape_normalisation_and_gain_invariance() -> None:
    rng = np.random.default_rng(1)
    wav = np.concatenate([tone(220, 0.3, 0.5), 0.05 * rng.standard_normal(SR // 2), tone(330, 0.2, 0.5)])
    wav = (wav + 1e-3 * rng.standard_normal(len(wav))).astype(np.float32)
    enc = feat.get_content_encoder("dsp")
    n = len(wav) // HOP
    c = enc.extract(wav, SR, HOP, n)
    assert c.shape == (n, enc.dim) and enc.dim == 19 and c.dtype == np.float32
    assert np.abs(c.mean(axis=0)).max() < 0.1  # CMVN: zero mean per utterance
    np.testing.assert_allclose(enc.extract(0.1 * wav, SR, HOP, n), c, atol=1e-3)  # level is not content
    # the tone and the noise differ in content; the first and last tone frames are different notes
    assert np.linalg.norm(c[n // 6] - c[n // 2]) > 1.0
    assert enc.extract(wav, SR, HOP, n + 3).shape == (n + 3, 19)
    assert feat.get_content_encoder("dsp", **enc.config()).config() == enc.config()


def test_dsp_content_removes_static_timbre() -> None:
    """Filtering the whole recording by a fixed EQ (a different microphone / vocal-tract colour) barely moves
    the feature, while the raw cepstrum moves a lot."""
    from scipy.signal import lfilter

    path = DATA / "vocadito" / "vocadito_1.wav"
    if not path.exists():
        pytest.skip(f"{path} not available (../shared/data is missing)")
    from canora.io.audio import load_audio

    wav = load_audio(path, SR)[SR : 5 * SR]
    coloured = lfilter([1.0, -0.7], [1.0], wav).astype(np.float32)  # a fixed +tilt filter
    n = len(wav) // HOP

    def change(enc: feat.ContentEncoder) -> float:
        """Mean |feature change| from the colouring, in units of each coefficient's std over time."""
        a, b = enc.extract(wav, SR, HOP, n), enc.extract(coloured, SR, HOP, n)
        return float((np.abs(a - b) / a.std(axis=0)).mean())

    raw = change(feat.get_content_encoder("dsp", normalize=False))  # measured 0.088
    normalised = change(feat.get_content_encoder("dsp"))  # measured 0.023
    assert raw > 0.06 and normalised < 0.04 and normalised < 0.4 * raw


def test_content_registry_and_refiner_layout() -> None:
    assert {"dsp", "hubert"} <= set(feat.available_content_encoders())
    with pytest.raises(CanoraError, match="unknown content encoder 'ppg'"):
        feat.get_content_encoder("ppg")
    wav = tone(440, 0.3, 0.5)
    out = feat.get_content_extractor("dsp")(wav, SR, hop_length=HOP, n_frames=len(wav) // HOP)
    assert out.shape == (19, len(wav) // HOP)  # channels first, like the mel


def test_hubert_plugin_loads_a_local_tiny_model(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    import torch

    cfg = transformers.HubertConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8, 8), conv_stride=(5, 64), conv_kernel=(10, 64), num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2, vocab_size=4,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.HubertModel(cfg).save_pretrained(tmp_path / "hubert")
    enc = feat.get_content_encoder("hubert", model_dir=tmp_path / "hubert", layer=1)
    assert enc.dim == 16
    wav = np.random.default_rng(0).standard_normal(SR + 555).astype(np.float32) * 0.1
    n = len(wav) // HOP
    c = enc.extract(wav, SR, HOP, n)
    assert c.shape == (n, 16) and c.dtype == np.float32 and np.isfinite(c).all()
    assert c.std(axis=0).mean() > 0  # varies over time: not a constant broadcast
    last = feat.get_content_encoder("hubert", model_dir=tmp_path / "hubert").extract(wav, SR, HOP, n)
    assert not np.allclose(last, c)  # the layer choice matters
    with pytest.raises(CheckpointError, match="no config.json"):
        feat.get_content_encoder("hubert", model_dir=tmp_path / "nothing")
    with pytest.raises(CanoraError, match="layer 5 out of range"):
        feat.get_content_encoder("hubert", model_dir=tmp_path / "hubert", layer=5)


# ---------------------------------------------------------------------- one STFT per waveform (conditioning.analyse)
def _pjs_clip() -> np.ndarray:
    path = DATA / "pjs" / "pjs087_song.wav"
    if not path.exists():
        pytest.skip(f"{path} not available (../shared/data is missing)")
    from canora.io.audio import load_audio

    return load_audio(path, SR)[2 * SR : 8 * SR + 77]


def test_one_analysis_gives_todays_mel_loudness_and_content_on_real_singing() -> None:
    """The mel, loudness and DSP content derived from one shared STFT equal wav_to_mel bit for bit and the
    standalone functions (own float64 STFTs) to float32 rounding (measured 7.6e-6 dB and 2.8e-5)."""
    from canora.conditioning import FeatureParams, analyse
    from canora.dsp.mel import MelSpec, wav_to_mel

    wav, spec = _pjs_clip(), MelSpec()
    n = len(wav) // HOP
    a = analyse(wav, spec)
    assert a.power.shape == (spec.n_fft // 2 + 1, n) and a.power.dtype == np.float32
    np.testing.assert_array_equal(a.mel, wav_to_mel(wav, spec))
    np.testing.assert_allclose(a.power, stft_power(wav.astype(np.float64), HOP, spec.n_fft),
                               rtol=0, atol=1e-6 * float(a.power.max()))
    np.testing.assert_allclose(a.loudness(), loudness(wav, SR, HOP, n), rtol=0, atol=1e-4)
    ref = feat.get_content_extractor("dsp")(wav, SR, hop_length=HOP, n_frames=n)
    np.testing.assert_allclose(a.content(FeatureParams()), ref, rtol=0, atol=2e-4)


def test_analysis_falls_back_to_own_stfts_when_parameters_differ(monkeypatch) -> None:
    """A MelSpec with another window, padding or n_fft gets wav_to_mel; loudness and content whose n_fft
    differs from the shared STFT's take their own (then exactly today's numbers); a content encoder that
    reads audio (like HuBERT) is given the waveform."""
    from canora.conditioning import FeatureParams, analyse, extract_features
    from canora.dsp.mel import MelSpec, wav_to_mel

    rng = np.random.default_rng(2)
    wav = np.concatenate([tone(220, 0.3, 0.6), 0.05 * rng.standard_normal(SR // 3)]).astype(np.float32)
    n = len(wav) // HOP
    for spec in (MelSpec(win_length=800), MelSpec(padding="center"), MelSpec(n_fft=2048, win_length=2048)):
        a = analyse(wav, spec)
        np.testing.assert_array_equal(a.mel, wav_to_mel(wav, spec))
        assert a.loudness().shape == a.content(FeatureParams()).shape[1:] == (spec.num_frames(len(wav)),)
    a = analyse(wav, MelSpec(n_fft=2048, win_length=2048))  # loudness and content read 1024-point STFTs
    np.testing.assert_array_equal(a.loudness(), loudness(wav, SR, HOP, n))
    ref = feat.get_content_extractor("dsp")(wav, SR, hop_length=HOP, n_frames=n)
    np.testing.assert_array_equal(a.content(FeatureParams()), ref)
    monkeypatch.setattr(feat.CepstralContent, "stft_size", lambda self, sr, hop: None)  # "reads audio"
    seen = []
    monkeypatch.setattr(feat.CepstralContent, "extract", lambda self, w, *a: seen.append(len(w)) or np.zeros((n, 19)))
    assert extract_features(wav, MelSpec(), FeatureParams()).content.shape == (19, n) and seen == [len(wav)]


def test_a_weighting_is_librosas_curve():
    import librosa

    from canora.dsp.loudness import a_weighting_db

    f = np.maximum(np.fft.rfftfreq(1024, 1 / 22050), 1e-3)
    assert np.array_equal(a_weighting_db(f), librosa.A_weighting(f, min_db=None))
    assert abs(float(a_weighting_db(np.array([1000.0]))[0])) < 0.01  # 0 dB at 1 kHz


def test_cepstral_dct_matrix_is_scipys_orthonormal_dct2():
    from scipy.fft import dct

    from canora.dsp.content import _dct2_ortho

    x = np.random.default_rng(0).normal(size=(300, 26)) * 5
    np.testing.assert_allclose(x @ _dct2_ortho(26).T, dct(x, type=2, norm="ortho", axis=1), rtol=0, atol=1e-12)
