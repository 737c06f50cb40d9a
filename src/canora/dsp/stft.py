"""One STFT on the HiFi-GAN frame grid (frame i centred at i*hop + hop/2), shared by every frame feature."""

from __future__ import annotations

import numpy as np

from canora.errors import AudioError, CanoraError


def check_wav(wav: np.ndarray, sr: int, hop: int) -> np.ndarray:
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise AudioError(f"features need mono audio of shape (T,), got {wav.shape}; mix down to mono first")
    if sr <= 0 or hop <= 0:
        raise CanoraError(f"features need sr > 0 and hop > 0 (got sr={sr}, hop={hop})")
    if not np.isfinite(wav).all():
        raise AudioError("audio holds NaN/inf samples; re-export it")
    return np.ascontiguousarray(wav, dtype=np.float64)


def stft_power(wav: np.ndarray, hop: int, n_fft: int) -> np.ndarray:
    """Power spectrogram (n_fft // 2 + 1, len(wav) // hop) float64 on the HiFi-GAN frame grid.

    Reflect-pads (n_fft - hop) / 2 samples each side (the extra sample on the right if odd), periodic Hann
    window of n_fft, ``center=False``: exactly ``floor(T / hop)`` frames, frame i centred at i*hop + hop/2.
    """
    if n_fft < hop:
        raise CanoraError(f"n_fft ({n_fft}) must be >= hop ({hop})")
    n = len(wav) // hop
    if n == 0:
        return np.zeros((n_fft // 2 + 1, 0))
    left = (n_fft - hop) // 2
    x = np.pad(wav, (left, n_fft - hop - left), mode="reflect" if len(wav) > 1 else "edge")
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop][:n]
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    spec = np.fft.rfft(frames * win, axis=1)
    return (spec.real**2 + spec.imag**2).T


def _fit_frames(x: np.ndarray, n_frames: int) -> np.ndarray:
    """Trim or edge-pad ``x`` (N, ...) along axis 0 to ``n_frames`` rows."""
    if len(x) >= n_frames:
        return x[:n_frames]
    if len(x) == 0:
        return np.zeros((n_frames, *x.shape[1:]), x.dtype)
    return np.concatenate([x, np.repeat(x[-1:], n_frames - len(x), axis=0)])
