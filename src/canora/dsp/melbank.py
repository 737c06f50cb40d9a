"""The mel scale and the triangular mel filterbank, in numpy alone.

The same numbers as ``librosa.filters.mel`` (Slaney's auditory-toolbox scale by default, HTK's on request;
Slaney area normalisation), bit for bit in float32, which the tests check for every official HiFi-GAN
config. It lives here because ``librosa.filters`` imports ``scipy.signal``, whose import alone costs about a
second, paid by every ``canora convert`` for a matrix that takes a millisecond to build.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

_F_SP = 200.0 / 3  # Slaney: 66.67 Hz per mel below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0  # above 1 kHz: log-spaced, 27 mels per factor 6.4


def hz_to_mel(hz: np.ndarray | float, htk: bool = False) -> np.ndarray:
    """Frequencies (any shape) in Hz -> mels (same shape), float64."""
    f = np.asarray(hz, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    mel = f / _F_SP
    high = f >= _MIN_LOG_HZ
    return np.where(high, _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP, mel)


def mel_to_hz(mel: np.ndarray | float, htk: bool = False) -> np.ndarray:
    """Mels (any shape) -> frequencies in Hz (same shape), float64."""
    m = np.asarray(mel, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    hz = _F_SP * m
    high = m >= _MIN_LOG_MEL
    return np.where(high, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), hz)


def mel_frequencies(n_mels: int, fmin: float, fmax: float, htk: bool = False) -> np.ndarray:
    """``n_mels`` (n_mels,) frequencies in Hz, evenly spaced in mels from ``fmin`` to ``fmax``."""
    return mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels), htk)


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None,
                   htk: bool = False, norm: str | None = "slaney") -> np.ndarray:
    """Triangular filters (n_mels, n_fft // 2 + 1) float32 over the rfft bins of ``n_fft`` at ``sr``; each
    filter spans two neighbouring mel points and, with ``norm="slaney"``, has unit area in Hz / 2."""
    if norm not in (None, "slaney"):
        raise ValueError(f"mel filterbank norm {norm!r}: only 'slaney' or None")
    fmax = sr / 2.0 if fmax is None else float(fmax)
    bins = np.fft.rfftfreq(n_fft, 1.0 / sr)
    points = mel_frequencies(n_mels + 2, fmin, fmax, htk)
    widths = np.diff(points)
    ramps = points[:, None] - bins[None, :]
    weights = np.zeros((n_mels, len(bins)), dtype=np.float32)
    for i in range(n_mels):  # rising edge from points[i], falling edge to points[i + 2]
        weights[i] = np.maximum(0.0, np.minimum(-ramps[i] / widths[i], ramps[i + 2] / widths[i + 1]))
    if norm == "slaney":
        weights *= (2.0 / (points[2: n_mels + 2] - points[:n_mels]))[:, None]
    empty = (points[:-2] != 0) & (weights.max(axis=1) <= 0)
    if empty.any():
        log.warning("mel filterbank: %d of %d bands cover no FFT bin (sr %d, n_fft %d, %g-%g Hz); those bands stay "
                    "at the floor: use fewer mels, a larger n_fft or a wider range", int(empty.sum()), n_mels, sr,
                    n_fft, fmin, fmax)
    return weights
