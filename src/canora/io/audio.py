"""Audio I/O: read any common format to mono float32 at a target rate, write wav or flac atomically.

Reading decodes and downmixes in blocks (:data:`BLOCK_FRAMES` frames at a time), so an 8-channel 192 kHz file
never exists in memory as a float array of all its channels; resampling comes after, on the mono signal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from canora.dsp.resample import resample  # noqa: F401 (read_audio and load_audio resample; re-exported)
from canora.errors import AudioError, CanoraError
from canora.io.files import atomic_write_bytes, bytes_with

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64")
#: what canora writes, by file extension -> libsndfile format
OUTPUT_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
SILENCE_PEAK = 1e-4  # a file whose peak is below this (-80 dBFS) is "all silent"
BLOCK_FRAMES = 1 << 16  # frames decoded at once (all channels), then averaged to mono
MAX_CHANNELS = 1024


def _first_line(e: BaseException) -> str:
    text = (str(e).splitlines() or [type(e).__name__])[0][:200]
    # libsndfile's words for a file it has no decoder for, or one it cannot make sense of
    return text.replace("File does not exist or is not a regular file (possibly a pipe?).", "Format not recognised.")


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """(channels, sample rate, frames) from the header of ``path`` (nothing decoded), or one :class:`AudioError`."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, expected an audio file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as e:
        raise AudioError(f"{path}: cannot read audio ({_first_line(e)}); convert it to wav/flac") from None
    return int(info.channels), int(info.samplerate), int(info.frames)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read ``path`` as it is: -> ((T,) float32 mono in [-1, 1], sample rate). Channels are averaged, block by
    block (memory: the mono signal plus one block of all channels)."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, expected an audio file")
    try:
        with sf.SoundFile(str(path)) as f:
            sr, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
            if sr <= 0 or not 0 < channels <= MAX_CHANNELS:
                raise AudioError(f"{path}: implausible header ({channels} channels at {sr} Hz); re-export the file")
            known = 0 < frames < 2**34
            out = np.empty(frames if known else 0, np.float32)
            extra: list[np.ndarray] = []
            pos = 0
            while True:
                block = f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                if not len(block):
                    break
                mono = block.mean(axis=1, dtype=np.float32) if channels > 1 else block[:, 0]
                if not np.isfinite(mono).all():
                    raise AudioError(f"{path}: audio holds NaN/inf samples; re-export it")
                fit = max(0, min(len(mono), len(out) - pos))
                out[pos: pos + fit] = mono[:fit]
                pos += fit
                if fit < len(mono):
                    extra.append(np.array(mono[fit:], np.float32))
    except CanoraError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as e:
        raise AudioError(f"{path}: cannot read audio ({_first_line(e)}); convert it to wav/flac") from None
    except MemoryError:
        raise AudioError(f"{path}: too large to decode in this machine's memory; cut the file") from None
    wav = out[:pos] if not extra else np.concatenate([out[:pos], *extra])
    if wav.size == 0:
        raise AudioError(f"{path}: audio is empty (0 samples)")
    return np.ascontiguousarray(wav, dtype=np.float32), sr


def load_audio(path: str | Path, sample_rate: int, *, allow_silent: bool = False) -> np.ndarray:
    """Read ``path`` -> (T,) float32 mono at ``sample_rate`` (soxr VHQ). Silent audio is an error unless allowed."""
    wav, sr = read_audio(path)
    wav = resample(wav, sr, sample_rate)
    if not allow_silent and float(np.abs(wav).max()) < SILENCE_PEAK:
        raise AudioError(f"{path}: audio is all silent (peak below -80 dBFS); nothing to analyse")
    return wav


def output_format(path: str | Path, subtype: str = "PCM_16") -> str:
    """The libsndfile format canora writes for ``path`` (from its extension: .wav or .flac), or one
    :class:`CanoraError` naming what is supported. Other names (no audio extension) are written as wav."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext in OUTPUT_FORMATS:
        fmt = OUTPUT_FORMATS[ext]
    elif ext in AUDIO_EXTENSIONS:
        raise CanoraError(f"{path}: canora writes .wav or .flac, not {ext}; choose -o NAME.wav or NAME.flac "
                          "(and convert afterwards)")
    else:
        fmt = "WAV"
    if fmt == "FLAC" and subtype not in ("PCM_16", "PCM_24", "PCM_S8"):
        raise CanoraError(f"{path}: FLAC holds integer samples, not {subtype}; drop --float or write .wav")
    return fmt


def audio_bytes(path: str | Path, wav: np.ndarray, sample_rate: int, *, subtype: str = "PCM_16") -> bytes:
    """(T,) float audio as the bytes of the file ``path`` names (.wav or .flac, see :func:`output_format`).
    PCM clips to [-1, 1]; ``subtype="FLOAT"`` keeps floats. NaN/inf are refused."""
    import soundfile as sf

    fmt = output_format(path, subtype)
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    if not np.isfinite(wav).all():
        raise AudioError(f"{path}: refusing to write audio with NaN/inf samples")
    if subtype != "FLOAT":
        wav = np.clip(wav, -1.0, 1.0)
    return bytes_with(lambda f: sf.write(f, wav, sample_rate, subtype=subtype, format=fmt))


def save_wav(path: str | Path, wav: np.ndarray, sample_rate: int, *, subtype: str = "PCM_16") -> None:
    """Write (T,) float audio atomically as wav (or flac, by the extension). PCM_16 clips to [-1, 1];
    ``subtype="FLOAT"`` keeps floats."""
    atomic_write_bytes(Path(path), audio_bytes(path, wav, sample_rate, subtype=subtype))


def full_scale_fraction(wav: np.ndarray, level: float = 0.999) -> float:
    """The fraction of samples of ``wav`` (T,) at full scale (|x| >= ``level``): clipping, when it is more than
    a few."""
    wav = np.asarray(wav)
    return float(np.count_nonzero(np.abs(wav) >= level)) / max(1, wav.size)


def list_audio(path: Path) -> list[Path]:
    """Audio files in a directory (sorted, non-recursive), or ``[path]`` for a file."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    return [path]
