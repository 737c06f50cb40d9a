"""Audio loading (formats, rates, channels, bit depths), writing, and the errors bad files get."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from canora.errors import AudioError
from canora.io.audio import load_audio, read_audio, save_wav


def tone(sr: int, seconds: float = 1.0, f: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)


@pytest.mark.parametrize(
    "ext,subtype,sr",
    [("wav", "PCM_16", 44100), ("wav", "PCM_24", 48000), ("wav", "FLOAT", 16000), ("flac", "PCM_16", 24000),
     ("ogg", "VORBIS", 32000), ("mp3", "MPEG_LAYER_III", 44100)],
)
def test_formats_rates_and_depths_load_to_mono_at_target_rate(tmp_path, ext, subtype, sr):
    stereo = np.stack([tone(sr), tone(sr)], axis=1)
    path = tmp_path / f"x.{ext}"
    try:
        sf.write(path, stereo, sr, subtype=subtype)
    except (sf.LibsndfileError, ValueError, TypeError):
        pytest.skip(f"this libsndfile cannot write {ext}/{subtype}")
    wav = load_audio(path, 22050)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - 22050) < 0.01 * 22050  # mp3/ogg add codec padding
    # the 440 Hz tone survives resampling: its spectral peak is at 440 Hz
    spec = np.abs(np.fft.rfft(wav[1000:21000]))
    assert abs(np.argmax(spec) * 22050 / 20000 - 440) < 3


def test_channels_are_averaged(tmp_path):
    sr = 22050
    left, right = tone(sr), np.zeros(sr, np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), sr, subtype="FLOAT")
    wav, got_sr = read_audio(tmp_path / "s.wav")
    assert got_sr == sr
    np.testing.assert_allclose(wav, left / 2, atol=1e-6)


def test_resampling_is_high_quality(tmp_path):
    """A 5 kHz tone at 48 kHz resampled to 22050 Hz keeps its level (no droop, no aliasing junk)."""
    sr = 48000
    sf.write(tmp_path / "t.wav", tone(sr, 1.0, 5000), sr, subtype="FLOAT")
    wav = load_audio(tmp_path / "t.wav", 22050)
    rms = float(np.sqrt(np.mean(wav[2000:-2000] ** 2)))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_bad_files_get_one_clear_error(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "missing.wav", 22050)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(AudioError, match="corrupt.wav: cannot read audio"):
        load_audio(tmp_path / "corrupt.wav", 22050)
    (tmp_path / "text.wav").write_text("hello, I am not audio")
    with pytest.raises(AudioError, match="cannot read audio"):
        load_audio(tmp_path / "text.wav", 22050)
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 22050)
    with pytest.raises(AudioError, match="empty"):
        load_audio(tmp_path / "empty.wav", 22050)
    sf.write(tmp_path / "silent.wav", np.zeros(22050, np.float32), 22050)
    with pytest.raises(AudioError, match="silent"):
        load_audio(tmp_path / "silent.wav", 22050)
    assert load_audio(tmp_path / "silent.wav", 22050, allow_silent=True).shape == (22050,)


def test_save_wav_clips_pcm_keeps_float_and_leaves_no_temp_files(tmp_path):
    x = np.array([0.0, 0.5, 1.5, -2.0], np.float32)
    save_wav(tmp_path / "pcm.wav", x, 22050)
    save_wav(tmp_path / "f.wav", x, 22050, subtype="FLOAT")
    pcm, sr = sf.read(tmp_path / "pcm.wav", dtype="float32")
    flt, _ = sf.read(tmp_path / "f.wav", dtype="float32")
    assert sr == 22050
    assert pcm.max() <= 1.0 and pcm.min() == -1.0 and pcm[1] == pytest.approx(0.5, abs=1e-4)
    np.testing.assert_array_equal(flt, x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.wav", "pcm.wav"]
    with pytest.raises(AudioError, match="NaN"):
        save_wav(tmp_path / "nan.wav", np.array([np.nan], np.float32), 22050)
    assert not (tmp_path / "nan.wav").exists()


def test_many_channels_are_decoded_block_by_block(tmp_path, monkeypatch):
    """An 8-channel file is read a block at a time and averaged to mono as it goes (never all channels at once)."""
    import canora.io.audio as audio

    sr = 48000
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (sr, 8)).astype(np.float32)
    sf.write(tmp_path / "8ch.flac", x, sr, subtype="PCM_24")
    whole, _ = sf.read(tmp_path / "8ch.flac", dtype="float32")
    asked = []
    real = sf.SoundFile.buffer_read_into

    def spy(self, buffer, dtype):
        asked.append(len(buffer))
        return real(self, buffer, dtype)

    monkeypatch.setattr(audio, "BLOCK_SAMPLES", 4096 * 8)
    monkeypatch.setattr(sf.SoundFile, "buffer_read_into", spy)
    wav, got = read_audio(tmp_path / "8ch.flac")
    assert got == sr and wav.shape == (sr,) and wav.dtype == np.float32
    assert len(asked) >= sr // 4096 and all(0 < n <= 4096 for n in asked)
    np.testing.assert_allclose(wav, whole.mean(axis=1), atol=1e-6)


def test_output_format_comes_from_the_extension(tmp_path):
    from canora.errors import CanoraError

    save_wav(tmp_path / "a.flac", tone(22050), 22050)
    assert sf.info(str(tmp_path / "a.flac")).format == "FLAC"
    with pytest.raises(CanoraError, match=r"a\.mp3: canora writes \.wav or \.flac"):
        save_wav(tmp_path / "a.mp3", tone(22050), 22050)
    with pytest.raises(CanoraError, match="FLAC holds integer samples"):
        save_wav(tmp_path / "b.flac", tone(22050), 22050, subtype="FLOAT")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.flac"]


def _flac_without_length(data: np.ndarray, sr: int) -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, data, sr, format="FLAC", subtype="PCM_16")
    b = bytearray(buf.getvalue())
    b[8 + 13] &= 0xF0  # STREAMINFO's total samples = 0: "unknown length"
    b[8 + 14: 8 + 18] = b"\0\0\0\0"
    return bytes(b)


def test_decoding_streams_the_resampler_and_reads_flacs_of_unknown_length(tmp_path):
    """Decoded in blocks and resampled as a stream: the same samples as resampling the whole signal at once; a FLAC
    whose header gives no length decodes to the same audio (its header reads as 0 frames, not 2^63)."""
    import soxr

    from canora.io.audio import audio_info, decode

    rng = np.random.default_rng(1)
    x = (0.2 * rng.standard_normal((48000 * 3 + 17, 2))).astype(np.float32)
    sf.write(tmp_path / "a.flac", x, 48000, subtype="PCM_16")
    (tmp_path / "u.flac").write_bytes(_flac_without_length(x, 48000))
    whole, _ = sf.read(tmp_path / "a.flac", dtype="float32")
    want = soxr.resample(whole.mean(axis=1, dtype=np.float32), 48000, 22050, quality="VHQ")
    for name in ("a.flac", "u.flac"):
        d = decode(tmp_path / name, 22050)
        np.testing.assert_array_equal(d.wav, want)
        assert d.source_rate == 48000 and d.channels == 2 and d.sample_rate == 22050
    assert audio_info(tmp_path / "u.flac") == (2, 48000, 0)


def test_the_caps_hold_whatever_the_header_says(tmp_path):
    """From the header when it tells (before decoding), while decoding when it does not; both name the flag."""
    from canora.io.audio import decode
    from canora.io.limits import limited

    sf.write(tmp_path / "a.wav", np.zeros(22050 * 3, np.float32), 22050)
    (tmp_path / "u.flac").write_bytes(_flac_without_length(np.zeros(22050 * 3, np.float32), 22050))
    with limited(0.02):  # 1.2 s
        with pytest.raises(AudioError, match=r"a\.wav: 0\.1 minutes of audio is over the limit of 0\.02 minutes; "
                                             r"pass --max-audio-minutes 0\.1 to read it"):
            decode(tmp_path / "a.wav")
        with pytest.raises(AudioError, match=r"u\.flac: more than 0\.02 minutes .*header does not say"):
            decode(tmp_path / "u.flac")
    assert len(decode(tmp_path / "u.flac").wav) == 22050 * 3  # the default cap: 30 minutes


def test_pipes_and_devices_are_not_read(tmp_path):
    import os

    from canora.io.audio import decode

    os.mkfifo(tmp_path / "p.wav")
    with pytest.raises(AudioError, match=r"p\.wav: is a named pipe \(FIFO\), not a regular file"):
        decode(tmp_path / "p.wav")
    with pytest.raises(AudioError, match="character device"):
        decode("/dev/zero")
