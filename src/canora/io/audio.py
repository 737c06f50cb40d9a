"""Audio I/O: read any common format to mono float32 at a target rate, write wav or flac atomically.

Reading decodes, downmixes and resamples in blocks (:func:`decode`): each block of all channels is averaged to mono
and, when a rate is asked for, fed to a streaming soxr resampler (bit-identical to resampling the whole signal at
once), so the only whole-file array is the mono signal at the rate asked for. The duration and the decoded samples are
capped (:mod:`canora.io.limits`): from the header before decoding, and while decoding when the header does not say
(or understates) how long the file is. Only regular files are read (a named pipe would block).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from canora.dsp.resample import resample  # noqa: F401 (re-exported: callers resample through this module)
from canora.errors import AudioError, CanoraError
from canora.io.files import atomic_open, bytes_with
from canora.io.inputs import require_regular_file
from canora.io.limits import MAX_SAMPLE_RATE, UNKNOWN_FRAMES, AudioLimits, audio_limits

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64")
#: what canora writes, by file extension -> libsndfile format
OUTPUT_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
SILENCE_PEAK = 1e-4  # a file whose peak is below this (-80 dBFS) is "all silent"
BLOCK_SAMPLES = 1 << 18  # samples (frames x channels) decoded at once, then averaged to mono
MAX_CHANNELS = 1024
FULL_SCALE = 0.999  # a sample at or above this magnitude is at full scale (clipped, or about to be)


def _first_line(e: BaseException) -> str:
    text = (str(e).splitlines() or [type(e).__name__])[0][:200]
    # libsndfile's words for a file it has no decoder for, or one it cannot make sense of
    return text.replace("File does not exist or is not a regular file (possibly a pipe?).", "Format not recognised.")


def _check_path(path: Path) -> None:
    if not path.exists() and not path.is_symlink():
        raise AudioError(f"{path}: file not found")
    require_regular_file(path, "audio file", AudioError)


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """(channels, sample rate, frames) from the header of ``path`` (nothing decoded), or one :class:`AudioError`.
    ``frames`` is 0 when the header does not say how long the file is."""
    import soundfile as sf

    path = Path(path)
    _check_path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as e:
        raise AudioError(f"{path}: cannot read audio ({_first_line(e)}); convert it to wav/flac") from None
    frames = int(info.frames)
    return int(info.channels), int(info.samplerate), frames if 0 < frames < UNKNOWN_FRAMES else 0


@dataclass
class Decoded:
    """A decoded file: ``wav`` (N,) float32 mono at ``sample_rate``; the file's own rate and channels, and its
    samples at full scale (|x| >= 0.999 in the mono mix at its own rate)."""

    wav: np.ndarray
    sample_rate: int
    source_rate: int
    channels: int
    full_scale_samples: int = 0
    peak: float = 0.0


class _Sink:
    """The mono blocks of a decode, resampled on the way in when a rate is asked for, into one array (allocated
    once when the length is known)."""

    def __init__(self, rate: int, target: int | None, frames: int) -> None:
        self.stream = None
        if target is not None and target != rate:
            import soxr

            self.stream = soxr.ResampleStream(rate, target, 1, dtype="float32", quality="VHQ")
            frames = int(np.ceil(frames * target / rate)) + 64 if frames else 0
        self.out = np.empty(frames, np.float32)
        self.extra: list[np.ndarray] = []
        self.pos = 0
        self.peak = 0.0

    def add(self, mono: np.ndarray, last: bool = False) -> None:
        if self.stream is not None:
            mono = self.stream.resample_chunk(mono, last=last)
        if not len(mono):
            return
        self.peak = max(self.peak, float(np.abs(mono).max()))
        fit = max(0, min(len(mono), len(self.out) - self.pos))
        self.out[self.pos: self.pos + fit] = mono[:fit]
        self.pos += fit
        if fit < len(mono):
            self.extra.append(np.array(mono[fit:], np.float32))

    def result(self) -> np.ndarray:
        if self.stream is not None:
            self.add(np.zeros(0, np.float32), last=True)
        return self.out[: self.pos] if not self.extra else np.concatenate([self.out[: self.pos], *self.extra])


def _block_reader(f: object, buf: np.ndarray, known: bool) -> Callable[[], int]:
    """A function that decodes the next frames of ``f`` (an open ``soundfile.SoundFile``) into ``buf`` (frames,
    channels) float32 and returns how many. A file whose header gives no length (a FLAC of "unknown length") is read
    with libsndfile's own reader: soundfile's keeps its position by seeking, which such a file refuses."""
    import soundfile as sf

    if known:
        return lambda: f.buffer_read_into(buf, "float32")  # type: ignore[attr-defined]
    cdata = sf._ffi.cast("float*", buf.__array_interface__["data"][0])
    handle = f._file  # type: ignore[attr-defined]

    def read() -> int:
        n = int(sf._snd.sf_readf_float(handle, cdata, len(buf)))
        if n < 0 or sf._snd.sf_error(handle):
            raise RuntimeError(sf._ffi.string(sf._snd.sf_strerror(handle)).decode("utf-8", "replace"))
        return n

    return read


def decode(path: str | Path, sample_rate: int | None = None, *, limits: AudioLimits | None = None) -> Decoded:
    """Decode ``path`` to mono float32, at ``sample_rate`` (soxr VHQ, streamed) or at its own rate (None), within
    ``limits`` (default: :func:`canora.io.limits.audio_limits`). Memory: the mono signal at the rate asked for plus
    one block. One :class:`AudioError` for anything unreadable, empty, non-finite or beyond the limits."""
    import soundfile as sf

    path = Path(path)
    limits = limits or audio_limits()
    _check_path(path)
    try:
        with sf.SoundFile(str(path)) as f:
            sr, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
            if not 0 < sr <= MAX_SAMPLE_RATE or not 0 < channels <= MAX_CHANNELS:
                raise AudioError(f"{path}: implausible header ({channels} channels at {sr} Hz); re-export the file")
            limits.check_header(str(path), sr, channels, frames)
            known = 0 < frames < UNKNOWN_FRAMES
            sink = _Sink(sr, sample_rate, frames if known else 0)
            block, done, clipped = max(1024, BLOCK_SAMPLES // channels), 0, 0
            buf = np.empty((block, channels), np.float32)
            read = _block_reader(f, buf, known)
            while True:
                n = read()
                if n <= 0:
                    break
                data = buf[:n]
                done += n
                limits.check_decoded(str(path), sr, channels, done)
                mono = data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0]
                if not np.isfinite(mono).all():
                    raise AudioError(f"{path}: audio holds NaN/inf samples; re-export it")
                clipped += int(np.count_nonzero(np.abs(mono) >= FULL_SCALE))
                sink.add(mono)
            wav = sink.result()
    except CanoraError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as e:
        raise AudioError(f"{path}: cannot read audio ({_first_line(e)}); convert it to wav/flac") from None
    except MemoryError:
        raise AudioError(f"{path}: too large to decode in this machine's memory; cut the file") from None
    if wav.size == 0:
        raise AudioError(f"{path}: audio is empty (0 samples)")
    return Decoded(np.ascontiguousarray(wav, dtype=np.float32), sample_rate or sr, sr, channels, clipped, sink.peak)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read ``path`` as it is: -> ((T,) float32 mono in [-1, 1], sample rate). Channels are averaged, block by
    block (memory: the mono signal plus one block of all channels); the limits of :mod:`canora.io.limits` apply."""
    d = decode(path)
    return d.wav, d.sample_rate


def load_audio(path: str | Path, sample_rate: int, *, allow_silent: bool = False) -> np.ndarray:
    """Read ``path`` -> (T,) float32 mono at ``sample_rate`` (soxr VHQ, resampled as it is decoded). Silent audio is
    an error unless allowed."""
    d = decode(path, sample_rate)
    if not allow_silent and d.peak < SILENCE_PEAK:
        raise AudioError(f"{path}: audio is all silent (peak below -80 dBFS); nothing to analyse")
    return d.wav


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


#: samples written at once by :func:`audio_writer`
WRITE_BLOCK = 1 << 18


def audio_writer(path: str | Path, wav: np.ndarray, sample_rate: int, *,
                 subtype: str = "PCM_16") -> Callable[[BinaryIO], None]:
    """A function that writes (T,) float audio into an open binary file as the file ``path`` names (.wav or .flac,
    see :func:`output_format`), a block at a time (no whole-file copy: a long song is written in the memory of one
    block). PCM clips to [-1, 1]; ``subtype="FLOAT"`` keeps floats. NaN/inf are refused before anything is written."""
    import soundfile as sf

    fmt = output_format(path, subtype)
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    for a in range(0, len(wav), WRITE_BLOCK):
        if not np.isfinite(wav[a: a + WRITE_BLOCK]).all():
            raise AudioError(f"{path}: refusing to write audio with NaN/inf samples")

    def write(f: BinaryIO) -> None:
        with sf.SoundFile(f, "w", sample_rate, 1, subtype=subtype, format=fmt) as out:
            for a in range(0, len(wav), WRITE_BLOCK):
                block = wav[a: a + WRITE_BLOCK]
                out.write(block if subtype == "FLOAT" else np.clip(block, -1.0, 1.0))

    return write


def audio_bytes(path: str | Path, wav: np.ndarray, sample_rate: int, *, subtype: str = "PCM_16") -> bytes:
    """(T,) float audio as the bytes of the file ``path`` names (see :func:`audio_writer`)."""
    return bytes_with(audio_writer(path, wav, sample_rate, subtype=subtype))


def save_wav(path: str | Path, wav: np.ndarray, sample_rate: int, *, subtype: str = "PCM_16") -> None:
    """Write (T,) float audio atomically as wav (or flac, by the extension). PCM_16 clips to [-1, 1];
    ``subtype="FLOAT"`` keeps floats."""
    with atomic_open(Path(path)) as f:
        audio_writer(path, wav, sample_rate, subtype=subtype)(f)


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
