"""One STFT on the HiFi-GAN frame grid (frame i centred at i*hop + hop/2), shared by every frame feature.

Two implementations of the same grid: :func:`stft_power` (numpy, float64: the reference the standalone
loudness and content functions read) and :func:`hifigan_power` (torch, float32, computed exactly as the
HiFi-GAN mel computes its STFT, so :func:`canora.dsp.mel.mel_from_power` of it is that mel bit for bit).
:class:`canora.conditioning.Analysis` computes the second once per waveform and derives the mel, loudness
and content from it.
"""

from __future__ import annotations

import sys

import numpy as np

from canora.errors import AudioError, CanoraError


def torch_loaded() -> bool:
    """True when torch is already imported in this process. Feature code that has an exact torch form and a
    numpy one (:func:`canora.dsp.mel.mel_from_power`, :func:`hifigan_power`) takes numpy otherwise, so the ONNX
    Runtime path never imports torch; the two agree to float32 rounding."""
    return sys.modules.get("torch") is not None


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
    """:func:`stft_power` as the HiFi-GAN mel computes it: (n_fft // 2 + 1, len(wav) // hop) float32 |X|^2.

    torch, float32: reflect padding of (n_fft - hop) / 2 each side, periodic Hann of n_fft, ``center=False``,
    ``re^2 + im^2`` (before the mel's + 1e-9). Signals too short to reflect-pad take :func:`stft_power`, and so
    does every signal when torch is not imported in this process (:func:`torch_loaded`: the ONNX
    Runtime path), in float64 and then rounded (within float32 rounding of torch's).
    """
    _check_sizes(hop, n_fft)
    if (n_fft - hop) % 2 or len(wav) <= (n_fft - hop) // 2 or not torch_loaded():
        return stft_power(np.asarray(wav, dtype=np.float64), hop, n_fft).astype(np.float32)
    import torch

    pad = (n_fft - hop) // 2
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None]
        x = torch.nn.functional.pad(x.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        win = torch.hann_window(n_fft, dtype=torch.float32)
        st = torch.stft(x, n_fft, hop_length=hop, win_length=n_fft, window=win, center=False, normalized=False,
                        onesided=True, return_complex=True)
        return (st.real.pow(2) + st.imag.pow(2))[0].numpy()


def _fit_frames(x: np.ndarray, n_frames: int) -> np.ndarray:
    """Trim or edge-pad ``x`` (N, ...) along axis 0 to ``n_frames`` rows."""
    if len(x) >= n_frames:
        return x[:n_frames]
    if len(x) == 0:
        return np.zeros((n_frames, *x.shape[1:]), x.dtype)
    return np.concatenate([x, np.repeat(x[-1:], n_frames - len(x), axis=0)])
