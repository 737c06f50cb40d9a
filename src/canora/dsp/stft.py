"""One STFT on the HiFi-GAN frame grid (frame i centred at i*hop + hop/2), shared by every frame feature.

:func:`stft_power` (numpy, float64) computes it; :func:`hifigan_power` is the same rounded to float32, the power
:func:`canora.dsp.mel.mel_from_power` turns into the HiFi-GAN mel (:func:`canora.dsp.mel.wav_to_mel`'s numpy path,
exactly). :class:`canora.conditioning.Analysis` computes it once per waveform and derives the mel, loudness and
content from it. Nothing here depends on what else is imported: the torch mel (``wav_to_mel(..., impl="torch")``,
the vocoder's training loss) is the caller's explicit choice.
"""

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


def _check_sizes(hop: int, n_fft: int) -> None:
    if n_fft < hop:
        raise CanoraError(f"n_fft ({n_fft}) must be >= hop ({hop})")


def stft_power(wav: np.ndarray, hop: int, n_fft: int) -> np.ndarray:
    """Power spectrogram (n_fft // 2 + 1, len(wav) // hop) float64 on the HiFi-GAN frame grid.

    Reflect-pads (n_fft - hop) / 2 samples each side (the extra sample on the right if odd), periodic Hann
    window of n_fft, ``center=False``: exactly ``floor(T / hop)`` frames, frame i centred at i*hop + hop/2.
    """
    _check_sizes(hop, n_fft)
    n = len(wav) // hop
    if n == 0:
        return np.zeros((n_fft // 2 + 1, 0))
    left = (n_fft - hop) // 2
    x = np.pad(wav, (left, n_fft - hop - left), mode="reflect" if len(wav) > 1 else "edge")
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop][:n]
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    spec = np.fft.rfft(frames * win, axis=1)
    return (spec.real**2 + spec.imag**2).T


def hifigan_power(wav: np.ndarray, hop: int, n_fft: int) -> np.ndarray:
    """:func:`stft_power` on the grid the HiFi-GAN mel uses: (n_fft // 2 + 1, len(wav) // hop) float32 |X|^2
    (reflect padding of (n_fft - hop) / 2 each side, periodic Hann of n_fft, ``center=False``; float64 inside)."""
    _check_sizes(hop, n_fft)
    return stft_power(np.asarray(wav, dtype=np.float64), hop, n_fft).astype(np.float32)


def _fit_frames(x: np.ndarray, n_frames: int) -> np.ndarray:
    """Trim or edge-pad ``x`` (N, ...) along axis 0 to ``n_frames`` rows."""
    if len(x) >= n_frames:
        return x[:n_frames]
    if len(x) == 0:
        return np.zeros((n_frames, *x.shape[1:]), x.dtype)
    return np.concatenate([x, np.repeat(x[-1:], n_frames - len(x), axis=0)])
