"""Mel ``.npy`` files: load with validation (shape, layout, NaN, value range), save atomically.

HiFi-GAN's tools read ``<stem>.npy`` of shape (n_mels, T) (or (1, n_mels, T)); that is what we write.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from canora.dsp.mel import MelSpec
from canora.errors import MelError
from canora.io.files import atomic_save_npy, npy_bytes
from canora.io.inputs import require_regular_file


def guess_value_convention(mel: np.ndarray, spec: MelSpec) -> str | None:
    """A short name for the convention the values of ``mel`` (n_mels, T) suggest, if not ``spec``'s.

    Returns None when the values are plausible for ``spec``. A coarse check for loading; the full
    diagnosis (layout, padding, fmax, ...) is :mod:`canora.analysis.doctor`'s.
    """
    lo, hi = float(mel.min()), float(mel.max())
    floor = spec.log_floor
    ln_floor_1e9 = math.log(1e-9) if spec.log_base == "e" else math.log10(1e-9)
    if lo >= -1.0001 and hi <= 1.0001 and lo < -0.5:
        return "normalised to [-1, 1]"
    if hi > 10 or lo < -60:
        if hi <= 0.5 and lo >= -120:
            return "power dB (librosa power_to_db, ref=max) in [-80, 0]"
        return f"dB or another scale (values {lo:.1f}..{hi:.1f})"
    if abs(lo - ln_floor_1e9) < 0.05:
        return "log with clamp 1e-9 instead of 1e-5"
    if lo < floor - 0.01:
        return f"values below this spec's floor {floor:.4f} (min {lo:.3f}): another log base or clamp"
    if spec.log_base == "e" and abs(lo - math.log10(spec.clamp)) < 0.01:
        return "log10 instead of natural log (floor -5.0)"
    if hi < 0.0 and abs(float(mel.mean())) < 0.2 and 0.5 < float(mel.std()) < 1.5:
        return "mean-variance normalised"
    return None


def validate_mel(mel: np.ndarray, spec: MelSpec, name: str) -> np.ndarray:
    """Check a mel array against ``spec``; return it as float32 (n_mels, T) or raise one clear :class:`MelError`."""
    if mel.ndim == 3 and mel.shape[0] == 1:
        mel = mel[0]
    if mel.ndim != 2:
        raise MelError(f"{name}: mel has shape {mel.shape}; expected ({spec.n_mels}, T)")
    if mel.shape[0] != spec.n_mels:
        if mel.shape[1] == spec.n_mels:
            raise MelError(
                f"{name}: mel has shape {mel.shape}, the (T, {spec.n_mels}) layout; "
                f"save it transposed as ({spec.n_mels}, T) (np.save(path, mel.T))"
            )
        raise MelError(f"{name}: mel has {mel.shape[0]} bands; this model expects {spec.n_mels} ({spec.describe()})")
    if mel.shape[1] < 1:
        raise MelError(f"{name}: mel has no frames")
    if not np.issubdtype(mel.dtype, np.floating):
        raise MelError(f"{name}: mel has dtype {mel.dtype}; expected float log-mel values")
    if not np.isfinite(mel).all():
        bad = int((~np.isfinite(mel)).sum())
        raise MelError(f"{name}: mel holds {bad} NaN/inf values; re-extract it with `canora mel`")
    other = guess_value_convention(mel, spec)
    if other is not None:
        raise MelError(
            f"{name}: mel values look like {other}, not this model's "
            f"{'ln' if spec.log_base == 'e' else 'log10'} mel with clamp {spec.clamp:g}; "
            "run `canora doctor` on it, or re-extract with `canora mel`"
        )
    return np.ascontiguousarray(mel, dtype=np.float32)


def load_npy(path: str | Path, what: str = "mel", noun: str = "array") -> np.ndarray:
    """Read one numeric array from a ``.npy`` file, or raise one clear :class:`MelError`.

    The header is read first (memory-mapped), so a file that claims more data than it holds is refused before
    anything is allocated; an ``.npz`` archive saved under a ``.npy`` name, pickled objects, structured or
    non-numeric arrays are refused with their fix.
    """
    path = Path(path)
    if path.is_dir():
        raise MelError(f"{path}: is a directory, expected a .npy {what} file")
    if path.exists():
        require_regular_file(path, f".npy {what} file", MelError)  # a named pipe would block
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except FileNotFoundError:
        raise MelError(f"{path}: file not found") from None
    except OSError as e:
        raise MelError(f"{path}: cannot read ({e.strerror or e})") from None
    if head and not head.startswith((b"\x93NUMPY", b"PK\x03\x04")):
        audio = head.startswith((b"RIFF", b"fLaC", b"OggS", b"ID3", b"FORM"))
        if audio and path.suffix.lower() == ".npy":
            raise MelError(f"{path}: not a .npy {noun} but an audio file named .npy; give it its audio extension")
        if audio:
            raise MelError(f"{path}: an audio file, not a .npy {what}; make mels from it first (`canora mel "
                           f"{path.name} -o mels/`), or pass it where audio is taken (--audio)")
        raise MelError(f"{path}: not a readable .npy {noun} (no .npy header); re-create it (np.save, or `canora mel`)")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise MelError(f"{path}: file not found") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise MelError(f"{path}: not a readable .npy {noun} ({first}); re-create it (np.save, or `canora mel`)"
                       ) from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        names = list(arr.files)
        arr.close()
        first = names[0] if names else "..."
        raise MelError(f"{path}: an .npz archive (arrays {names[:4]}) named .npy, not one array; save the {what} "
                       f"alone with np.save (e.g. np.save(path, np.load(path)[{first!r}]))")
    if not isinstance(arr, np.ndarray):
        raise MelError(f"{path}: not a .npy array ({type(arr).__name__})")
    if arr.dtype.names is not None or arr.dtype.kind not in "fiub":
        raise MelError(f"{path}: a {what} array of dtype {arr.dtype}; expected real numbers")
    if arr.size == 0:
        raise MelError(f"{path}: an empty array of shape {tuple(arr.shape)}; nothing to read as a {what}")
    return np.array(arr)  # a copy in memory (no open memory map)


def load_mel(path: str | Path, spec: MelSpec) -> np.ndarray:
    """Load and validate a ``.npy`` mel -> float32 (n_mels, T)."""
    return validate_mel(load_npy(path, "mel"), spec, str(Path(path)))


def save_mel(path: str | Path, mel: np.ndarray, overwrite: bool = True) -> None:
    """Write a (n_mels, T) float32 mel atomically (without ``overwrite``: never over a file that exists by then)."""
    atomic_save_npy(Path(path), np.ascontiguousarray(mel, dtype=np.float32), overwrite)


def mel_bytes(mel: np.ndarray) -> bytes:
    """A (n_mels, T) mel as float32 ``.npy`` bytes (to stage in an :class:`canora.io.files.OutputSet`)."""
    return npy_bytes(np.ascontiguousarray(mel, dtype=np.float32))


def load_f0(path: str | Path, frames: int) -> np.ndarray:
    """Read an F0 track ``<stem>.f0.npy`` (frames,) in Hz, 0 = unvoiced, checked against the mel's frames."""
    path = Path(path)
    f0 = load_npy(path, "F0 track", "F0 track")
    if f0.dtype.kind not in "fiu":
        raise MelError(f"{path}: F0 array of dtype {f0.dtype}; expected numbers in Hz")
    if f0.ndim != 1 or len(f0) != frames:
        raise MelError(f"{path}: F0 of shape {tuple(f0.shape)} does not fit its mel of {frames} frames; "
                       "re-run canora refine to write both again")
    if not np.isfinite(f0).all() or (f0 < 0).any():
        raise MelError(f"{path}: F0 holds NaN/inf or negative values; expected Hz with 0 at unvoiced frames")
    return f0.astype(np.float32)
