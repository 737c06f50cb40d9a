"""The HiFi-GAN-exact mel against an independent numpy/librosa computation, and MelSpec itself."""

from __future__ import annotations

import json
import logging
import math

import librosa
import numpy as np
import pytest
import scipy.signal
import torch

from canora.dsp.mel import MelSpec, load_spec, mel_spectrogram, read_config, wav_to_mel
from canora.errors import CanoraError, MelError


def reference_mel(y: np.ndarray, spec: MelSpec) -> np.ndarray:
    """The official algorithm written independently in float64 numpy: reflect pad, periodic Hann,
    rfft of strided frames, sqrt(|X|^2 + 1e-9), Slaney mel filter, ln(clamp(., 1e-5))."""
    pad = (spec.n_fft - spec.hop_length) // 2
    y = np.pad(y.astype(np.float64), (pad, pad), mode="reflect")
    window = scipy.signal.get_window("hann", spec.win_length, fftbins=True)
    n_frames = 1 + (len(y) - spec.n_fft) // spec.hop_length
    frames = np.lib.stride_tricks.sliding_window_view(y, spec.n_fft)[:: spec.hop_length][:n_frames]
    X = np.fft.rfft(frames * window, axis=1)
    mag = np.sqrt(X.real**2 + X.imag**2 + 1e-9)
    fb = librosa.filters.mel(sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels, fmin=spec.fmin, fmax=spec.fmax)
    return np.log(np.maximum(fb.astype(np.float64) @ mag.T, 1e-5))


def test_mel_matches_independent_reference_on_real_audio(sung_clip):
    wav, _ = sung_clip
    spec = load_spec("v1")
    ours = wav_to_mel(wav, spec)
    ref = reference_mel(wav, spec)
    assert ours.shape == ref.shape == (80, len(wav) // 256)
    assert np.abs(ours - ref).max() < 1e-4
    assert ours.min() >= math.log(1e-5) - 1e-6  # clamp floor, natural log


@pytest.mark.parametrize("rel", ["pjs/pjs001_song.wav", "speech/198-209-0000.hq.ogg"])
def test_both_mel_paths_match_the_official_mel_on_real_audio(rel):
    """The numpy mel (the default, and what every analysis shares) and the torch mel (the caller's explicit
    choice: the vocoder's loss) against the official algorithm computed exactly, in one process: within 1e-4
    wherever the mel is within 60 dB of its frame's loudest band (the torch path computes in float32, as the
    official code does, and rounding reaches 1e-3 in the quiet bins below that); the numpy path everywhere."""
    from canora.dsp.stft import hifigan_power
    from canora.io.audio import load_audio

    from .conftest import shared_file

    wav = load_audio(shared_file(rel), 22050)[: 22050 * 20]
    spec = load_spec("v1")
    ref = reference_mel(wav, spec)
    np_mel, torch_mel = wav_to_mel(wav, spec), wav_to_mel(wav, spec, impl="torch")
    assert np_mel.dtype == torch_mel.dtype == np.float32 and np_mel.shape == torch_mel.shape == ref.shape
    assert np.abs(np_mel - ref).max() < 1e-5
    loud = ref > ref.max(axis=0, keepdims=True) - 60 / 8.686
    assert np.abs(torch_mel - ref)[loud].max() < 1e-4
    from canora.dsp.mel import mel_from_power

    assert np.array_equal(mel_from_power(hifigan_power(wav, spec.hop_length, spec.n_fft), spec), np_mel)
    with pytest.raises(MelError, match="too short"):
        wav_to_mel(np.zeros(100, np.float32), spec)
    with pytest.raises(CanoraError, match="numpy' or 'torch"):
        wav_to_mel(wav, spec, impl="jax")


def test_numpy_mel_handles_center_padding_and_short_windows(synth_clip):
    import torch

    wav, _ = synth_clip
    for spec in (MelSpec(padding="center"), MelSpec(win_length=800)):
        ref = mel_spectrogram(torch.from_numpy(wav), spec).numpy()
        ours = wav_to_mel(wav, spec)
        assert ours.shape == ref.shape
        assert np.abs(ours - ref)[ref > ref.max(axis=0, keepdims=True) - 60 / 8.686].max() < 1e-4


@pytest.mark.parametrize("n", [256 * 40, 256 * 40 + 1, 256 * 41 - 1, 1000, 22050])
def test_frame_count_is_floor_of_samples_over_hop(n):
    spec = MelSpec()
    wav = np.random.default_rng(0).uniform(-0.5, 0.5, n).astype(np.float32)
    assert wav_to_mel(wav, spec).shape == (80, n // 256) == (80, spec.num_frames(n))


def test_center_padding_gives_one_more_frame():
    wav = np.random.default_rng(1).uniform(-0.5, 0.5, 10_000).astype(np.float32)
    spec = MelSpec(padding="center")
    assert wav_to_mel(wav, spec).shape[1] == 10_000 // 256 + 1 == spec.num_frames(10_000)


def test_batched_equals_unbatched_and_is_differentiable(synth_clip):
    wav, _ = synth_clip
    spec = MelSpec()
    x = torch.from_numpy(np.stack([wav, wav[::-1].copy()])).requires_grad_(True)
    batch = mel_spectrogram(x, spec)
    assert batch.shape == (2, 80, len(wav) // 256)
    assert torch.allclose(batch[1], mel_spectrogram(x[1].detach(), spec), atol=1e-5)
    batch.mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_cache_is_keyed_on_every_parameter(synth_clip):
    """A cache keyed on part of the spec (the official code's bug) would return the first filter for both."""
    wav, _ = synth_clip
    a = wav_to_mel(wav, MelSpec(fmax=8000.0))
    b = wav_to_mel(wav, MelSpec(fmax=None))
    c = wav_to_mel(wav, MelSpec(fmax=8000.0, mel_scale="htk"))
    assert not np.allclose(a, b) and not np.allclose(a, c)
    assert np.array_equal(a, wav_to_mel(wav, MelSpec(fmax=8000.0)))


def test_log10_spec_is_ln_divided_by_ln10(synth_clip):
    wav, _ = synth_clip
    ln = wav_to_mel(wav, MelSpec())
    l10 = wav_to_mel(wav, MelSpec(log_base="10"))
    np.testing.assert_allclose(l10, ln / math.log(10), atol=1e-5)
    assert MelSpec(log_base="10").log_floor == pytest.approx(-5.0)


def test_melspec_json_round_trip_and_diff():
    spec = MelSpec(fmax=None, log_base="10", clamp=1e-9, padding="center")
    assert MelSpec.from_json(spec.to_json()) == spec
    assert MelSpec.from_json(MelSpec().to_json()) == MelSpec()
    assert {d.split(":")[0] for d in MelSpec().diff(spec)} == {"fmax", "log_base", "clamp", "padding"}
    with pytest.raises(MelError, match="fmax"):
        MelSpec().require_same(spec, "x.npy", "re-extract")


def test_official_configs_give_the_official_mel():
    for v in ("v1", "v2", "v3"):
        assert load_spec(v) == MelSpec()  # 22050 Hz, 1024/256/1024, 80 mels, fmin 0, fmax 8000


def test_released_config_spelling_and_unknown_keys(tmp_path, caplog):
    cfg = read_config("v2")
    cfg.pop("fmax_for_loss")
    cfg["fmax_loss"] = None
    cfg["resblock_initial_channel"] = 64
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    with caplog.at_level(logging.WARNING):
        assert load_spec(p) == MelSpec()
    assert "resblock_initial_channel" in caplog.text
    from canora.dsp.mel import hifigan_fmax_for_loss

    assert hifigan_fmax_for_loss(cfg) is None
    assert hifigan_fmax_for_loss({"fmax_for_loss": 11025}) == 11025


@pytest.mark.parametrize(
    "kwargs", [dict(n_mels=0), dict(fmax=12000.0), dict(log_base="2"), dict(hop_length=255), dict(clamp=0.0)]
)
def test_invalid_specs_are_rejected(kwargs):
    with pytest.raises(CanoraError):
        MelSpec(**kwargs)


def test_bad_config_files(tmp_path):
    with pytest.raises(CanoraError, match="config not found"):
        read_config(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CanoraError, match="not valid JSON"):
        read_config(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(CanoraError, match="missing keys"):
        load_spec(tmp_path / "other.json")


def test_too_short_audio_is_a_clear_error():
    with pytest.raises(MelError, match="too short"):
        wav_to_mel(np.zeros(100, np.float32), MelSpec())


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [
    (22050, 1024, 80, 0.0, 8000.0),  # HiFi-GAN v1/v2/v3
    (22050, 1024, 80, 0.0, None),  # fmax_for_loss = None: Nyquist
    (24000, 2048, 128, 30.0, 12000.0),
    (44100, 2048, 40, 55.0, 7600.0),
    (16000, 512, 80, 0.0, 7600.0),
    (22050, 1024, 26, 0.0, 11025.0),  # the cepstral content feature's bank
])
@pytest.mark.parametrize("htk", [False, True])
def test_own_mel_filterbank_is_librosas_bit_for_bit(sr, n_fft, n_mels, fmin, fmax, htk):
    from canora.dsp.melbank import mel_filterbank, mel_frequencies

    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax, htk=htk)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm="slaney")
    assert ours.dtype == ref.dtype == np.float32 and ours.shape == ref.shape
    assert np.array_equal(ours, ref)
    top = sr / 2 if fmax is None else fmax
    assert np.array_equal(mel_frequencies(n_mels, fmin, top, htk), librosa.mel_frequencies(n_mels, fmin=fmin, fmax=top,
                                                                                           htk=htk))
    assert np.array_equal(mel_filterbank(sr, n_fft, n_mels, fmin, fmax, htk=htk, norm=None),
                          librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk,
                                              norm=None))


def test_empty_mel_bands_are_warned_about_as_librosa_does(caplog):
    from canora.dsp.melbank import mel_filterbank

    with caplog.at_level(logging.WARNING):
        fb = mel_filterbank(16000, 512, 256, 0.0, 8000.0)
    assert "bands cover no FFT bin" in caplog.text and (fb.max(axis=1) == 0).any()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        mel_filterbank(22050, 1024, 80, 0.0, 8000.0)
    assert caplog.text == ""


@pytest.mark.slow
@pytest.mark.parametrize("voice", [[], ["--voice", "idil"]], ids=["pjs", "idil (mel matching)"])
def test_converting_does_not_import_scipy_signal_or_ndimage(tmp_path, voice):
    """scipy.signal's, scipy.ndimage's and scipy.fft's imports cost over a second of every command's start-up,
    librosa's numba-compiled notation module another 0.2 s; the convert path (with a transpose) needs none, with
    mel matching (a voice the vocoder was not trained on) or without."""
    import subprocess
    import sys

    import soundfile as sf

    from canora.pipeline import DEFAULT_REFINER, DEFAULT_VOCODER

    if not (DEFAULT_REFINER.exists() and DEFAULT_VOCODER.exists()):
        pytest.skip("bundled models not available")
    t = np.arange(22050) / 22050
    sf.write(tmp_path / "a.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 22050)
    code = (f"import sys; from canora.cli import main; rc = main(['convert', {str(tmp_path / 'a.wav')!r}, '-o', "
            f"{str(tmp_path / 'b.wav')!r}, '--steps', '1', '--transpose', '2', *{voice!r}]); "
            "print(rc, *(m in sys.modules for m in ('scipy.signal', 'scipy.ndimage', 'scipy.fft', 'numba')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split()[-5:] == ["0", "False", "False", "False", "False"], out.stderr[-2000:]
