"""Sub-audio hygiene: a high-pass that removes DC and rumble below the lowest sung F0.

Singers sing down to about 60-80 Hz (a bass's lowest notes); the F0 trackers cover 50 Hz and up. Below that a
recording holds only room rumble, handling noise and DC, which a vocoder trained on it learns to reproduce
(PJS's studio takes carry -17 to -20 dB of their energy below 30 Hz). :data:`HIGHPASS_HZ` is the corner canora
uses everywhere: on the training audio of its models (targets and features) and on the audio a conversion
reads and writes. A 4th-order Butterworth magnitude applied forwards and backwards (zero phase, as
``scipy.signal.sosfiltfilt``): -1.3 dB at 50 Hz, -0.3 dB at 60 Hz, -21 dB at 30 Hz, DC removed exactly.

:func:`highpass` is the offline form (that magnitude as an FIR of its impulse response, run in FFT blocks, with
reflected edges; numpy only, so the ONNX path does not import scipy.signal). :class:`StreamingHighpass` is the
causal form for streams (the same Butterworth, one pass: -0.7 dB at 50 Hz), with state carried from block to block.
"""

from __future__ import annotations

import numpy as np

#: The high-pass corner (Hz) of canora's training audio and conversion input and output.
HIGHPASS_HZ = 40.0
#: Butterworth order of :data:`HIGHPASS_HZ` (applied twice offline: zero phase).
HIGHPASS_ORDER = 4


def highpass_gain(freqs: np.ndarray, cutoff_hz: float, order: int = HIGHPASS_ORDER) -> np.ndarray:
    """Amplitude gain (F,) of the zero-phase high-pass at ``freqs`` Hz: ``1 / (1 + (fc / f) ** (2 * order))``,
    a Butterworth's power gain per pass, which is its amplitude gain forwards and backwards; 0 at DC."""
    f = np.asarray(freqs, dtype=np.float64)
    with np.errstate(divide="ignore"):
        ratio = np.where(f > 0, cutoff_hz / np.maximum(f, 1e-12), np.inf)
    g = 1.0 / (1.0 + ratio ** (2 * order))
    return g


#: the zero-phase high-pass runs as an FIR of its impulse response, cut to this many seconds either side of its
#: centre: the response of a 40 Hz corner has decayed below 1e-12 of its peak well within it
HIGHPASS_RESPONSE_SECONDS = 0.75


def highpass_response(sr: int, cutoff_hz: float = HIGHPASS_HZ, order: int = HIGHPASS_ORDER) -> np.ndarray:
    """The zero-phase high-pass's impulse response (2 * half + 1,) float64, centred, ``half`` =
    :data:`HIGHPASS_RESPONSE_SECONDS` (longer for corners under 40 Hz): the inverse FFT of :func:`highpass_gain`."""
    half = int(HIGHPASS_RESPONSE_SECONDS * sr * max(1.0, HIGHPASS_HZ / max(cutoff_hz, 1e-3)))
    n_fft = 1 << int(np.ceil(np.log2(4 * half + 2)))
    h = np.fft.irfft(highpass_gain(np.fft.rfftfreq(n_fft, 1.0 / sr), cutoff_hz, order), n_fft)
    return np.concatenate([h[-half:], h[: half + 1]])


def highpass(wav: np.ndarray, sr: int, cutoff_hz: float = HIGHPASS_HZ, order: int = HIGHPASS_ORDER) -> np.ndarray:
    """Zero-phase high-pass of ``wav`` (N,) at ``sr`` -> (N,) float32 (``cutoff_hz`` <= 0: unchanged).

    The edges are reflected by a quarter second (or the whole signal, if shorter) so a note that starts at the
    first sample does not ring against a step. It runs as an FIR (:func:`highpass_response`) in FFT blocks
    (:func:`canora.dsp.fir.fir_blocks`), streamed: a long song costs time in proportion to its length and memory only
    for its output.
    """
    from canora.dsp.fir import fir_blocks

    x = np.asarray(wav, dtype=np.float32)
    if cutoff_hz <= 0 or len(x) < 2:
        return x
    n = len(x)
    pad = min(n - 1, int(0.25 * sr))

    def padded(a: int, b: int) -> np.ndarray:  # samples [a, b) of x reflected by ``pad`` at each end, float64
        if a >= pad and b <= pad + n:
            return x[a - pad: b - pad].astype(np.float64)
        i = np.arange(a, b) - pad
        i = np.abs(i)
        i = np.where(i >= n, 2 * (n - 1) - i, i)
        return x[i].astype(np.float64)

    h = highpass_response(sr, cutoff_hz, order)
    out = np.empty(n, np.float32)
    for off, block in fir_blocks(padded, n + 2 * pad, h, pad + len(h) // 2, n):
        out[off: off + len(block)] = block
    return out


def butterworth_highpass_sos(sr: int, cutoff_hz: float = HIGHPASS_HZ, order: int = HIGHPASS_ORDER) -> np.ndarray:
    """Second-order sections (order // 2, 6) of a digital Butterworth high-pass (bilinear transform with
    pre-warping; the layout of ``scipy.signal.butter(order, cutoff_hz, "highpass", fs=sr, output="sos")``)."""
    if order % 2:
        raise ValueError("order must be even")
    wc = 2.0 * sr * np.tan(np.pi * cutoff_hz / sr)  # pre-warped analog corner
    k = 2.0 * sr
    sos = []
    for i in range(order // 2):
        theta = np.pi * (2 * i + 1) / (2 * order)
        q2 = 2.0 * np.sin(theta)  # analog low-pass prototype: s^2 + q2 s + 1; high-pass: s^2 / (s^2 + q2 wc s + wc^2)
        a0 = k * k + q2 * wc * k + wc * wc
        b = np.array([k * k, -2 * k * k, k * k]) / a0
        a = np.array([a0, 2 * (wc * wc - k * k), k * k - q2 * wc * k + wc * wc]) / a0
        sos.append([*b, *a])
    return np.asarray(sos)


class StreamingHighpass:
    """The causal Butterworth high-pass over consecutive blocks (Direct Form II transposed, state carried):
    ``process(block (n,)) -> (n,) float32``. Its first block starts from rest."""

    def __init__(self, sr: int, cutoff_hz: float = HIGHPASS_HZ, order: int = HIGHPASS_ORDER) -> None:
        self.sos = butterworth_highpass_sos(sr, cutoff_hz, order)
        self.state = np.zeros((len(self.sos), 2))

    def process(self, block: np.ndarray) -> np.ndarray:
        from scipy.signal import sosfilt  # streams import scipy.signal anyway (their resampler)

        y, self.state = sosfilt(self.sos, np.asarray(block, dtype=np.float64), zi=self.state)
        return y.astype(np.float32)


def dc_offset(wav: np.ndarray) -> float:
    """The DC offset of ``wav`` (N,): its mean sample (0 for an empty signal)."""
    x = np.asarray(wav, dtype=np.float64)
    return float(x.mean()) if x.size else 0.0


def subsonic_db(wav: np.ndarray, sr: int, below_hz: float = 30.0) -> float:
    """Energy below ``below_hz`` relative to the whole signal, in dB: a 4th-order Butterworth low-pass applied
    forwards and backwards (``scipy.signal.sosfiltfilt``), DC included; NaN for silence, at least -120 dB. The
    first and last 50 ms are faded in and out first, so a clip cut mid-note is not read as a step of rumble."""
    from scipy.signal import butter, sosfiltfilt

    x = np.asarray(wav, dtype=np.float64).copy()
    fade = min(len(x) // 4, int(0.05 * sr))
    if fade > 1:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        x[:fade] *= ramp
        x[len(x) - fade:] *= ramp[::-1]
    total = float(np.sum(x * x))
    if total <= 0 or len(x) < 64:
        return float("nan")
    low = sosfiltfilt(butter(HIGHPASS_ORDER, below_hz, "lowpass", fs=sr, output="sos"), x)
    return float(10.0 * np.log10(max(float(np.sum(low * low)) / total, 1e-12)))
