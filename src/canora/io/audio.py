"""Audio I/O: read any common format to mono float32 at a target rate, write wav atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from canora.dsp.resample import resample  # noqa: F401 (read_audio and load_audio resample; re-exported)
from canora.errors import AudioError
from canora.io.files import atomic_write_with

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64")
SILENCE_PEAK = 1e-4  # a file whose peak is below this (-80 dBFS) is "all silent"


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read ``path`` as it is: -> ((T,) float32 mono in [-1, 1], sample rate). Channels are averaged."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, expected an audio file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AudioError(f"{path}: cannot read audio ({msg}); convert it to wav/flac") from None
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if wav.size == 0:
        raise AudioError(f"{path}: audio is empty (0 samples)")
    if not np.isfinite(wav).all():
        raise AudioError(f"{path}: audio holds NaN/inf samples; re-export it")
    return np.ascontiguousarray(wav, dtype=np.float32), int(sr)


def load_audio(path: str | Path, sample_rate: int, *, allow_silent: bool = False) -> np.ndarray:
    """Read ``path`` -> (T,) float32 mono at ``sample_rate`` (soxr VHQ). Silent audio is an error unless allowed."""
    wav, sr = read_audio(path)
    wav = resample(wav, sr, sample_rate)
    if not allow_silent and float(np.abs(wav).max()) < SILENCE_PEAK:
        raise AudioError(f"{path}: audio is all silent (peak below -80 dBFS); nothing to analyse")
    return wav


def save_wav(path: str | Path, wav: np.ndarray, sample_rate: int, *, subtype: str = "PCM_16") -> None:
    """Write (T,) float audio atomically as wav. PCM_16 clips to [-1, 1]; ``subtype="FLOAT"`` keeps floats."""
    import soundfile as sf

    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    if not np.isfinite(wav).all():
        raise AudioError(f"{path}: refusing to write audio with NaN/inf samples")
    if subtype != "FLOAT":
        wav = np.clip(wav, -1.0, 1.0)
    atomic_write_with(Path(path), lambda f: sf.write(f, wav, sample_rate, subtype=subtype, format="WAV"))


def list_audio(path: Path) -> list[Path]:
    """Audio files in a directory (sorted, non-recursive), or ``[path]`` for a file."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    return [path]
