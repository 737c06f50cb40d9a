"""FIR filtering of long signals in bounded memory: FFT overlap-add, numpy only (no scipy.signal in the conversion
path), and the impulse response of an IIR filter from its frequency response."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

#: FFT size of :func:`convolve`'s blocks (samples); each block carries ``BLOCK_FFT - len(h) + 1`` input samples
BLOCK_FFT = 1 << 16


def fir_blocks(read: Callable[[int, int], np.ndarray], n_in: int, h: np.ndarray, start: int, count: int,
               n_fft: int = BLOCK_FFT) -> Iterator[tuple[int, np.ndarray]]:
    """The samples ``[start, start + count)`` of the full convolution of an input of ``n_in`` samples with the FIR
    ``h`` (L,), as ``(offset, block)`` pairs (float64, in order; ``offset`` from ``start``). ``read(a, b)`` gives the
    input's samples ``[a, b)`` as float64. Overlap-add in blocks of ``n_fft``: memory O(n_fft) whatever the length,
    and the same sums in the same order as adding every block into one full-length array."""
    h = np.asarray(h, dtype=np.float64)
    taps = len(h)
    while n_fft < 2 * taps:
        n_fft *= 2
    step = n_fft - taps + 1
    spec_h = np.fft.rfft(h, n_fft)
    stop = start + count
    acc = np.zeros(step + taps - 1)  # full[a : a + step + taps - 1], the part after a still open
    for a in range(0, n_in, step):
        if a >= stop:
            return
        seg = read(a, min(a + step, n_in))
        y = np.fft.irfft(np.fft.rfft(seg, n_fft) * spec_h, n_fft)[: len(seg) + taps - 1]
        acc[: len(y)] += y
        done = step if a + step < n_in else len(seg) + taps - 1  # full[a : a + done] is final
        lo, hi = max(a, start), min(a + done, stop)
        if lo < hi:
            yield lo - start, acc[lo - a: hi - a].copy()
        acc = np.concatenate([acc[step:], np.zeros(step)])


def convolve(x: np.ndarray, h: np.ndarray, delay: int = 0, n_fft: int = BLOCK_FFT,
             dtype: type = np.float64) -> np.ndarray:
    """``x`` (N,) filtered by the FIR ``h`` (L,) -> (N,) ``dtype``: ``y[n] = sum_k h[k] x[n + delay - k]`` (zero
    outside ``x``), i.e. the full convolution shifted left by ``delay`` samples and cut to N (``delay = (L - 1) // 2``
    centres a symmetric ``h``). Overlap-add in blocks of ``n_fft`` (:func:`fir_blocks`), so memory stays O(n_fft)
    beyond the output."""
    x = np.asarray(x)
    h = np.asarray(h, dtype=np.float64)
    n, taps = len(x), len(h)
    out = np.zeros(n, dtype)
    if n == 0 or taps == 0:
        return out
    if not 0 <= delay < taps:
        raise ValueError(f"delay {delay} must lie in [0, {taps})")
    for off, block in fir_blocks(lambda a, b: x[a:b].astype(np.float64), n, h, delay, n, n_fft):
        out[off: off + len(block)] = block
    return out


def biquad_response(b: np.ndarray, a: np.ndarray, n_fft: int) -> np.ndarray:
    """The complex frequency response (n_fft // 2 + 1,) of the biquad ``b`` (3,), ``a`` (3,) on the rfft grid."""
    z = np.exp(-1j * np.pi * np.arange(n_fft // 2 + 1) / (n_fft // 2))  # z^-1 at each bin
    num = b[0] + b[1] * z + b[2] * z * z
    den = a[0] + a[1] * z + a[2] * z * z
    return num / den


def iir_impulse_response(sections: list[tuple[np.ndarray, np.ndarray]], length: int) -> np.ndarray:
    """The first ``length`` samples (length,) float64 of the impulse response of cascaded biquads ``(b, a)`` (a
    causal, stable IIR), from its frequency response on a grid of 4 * ``length`` points: exact wherever the
    response has decayed by ``length`` samples (time aliasing is all the error)."""
    n_fft = 1 << int(np.ceil(np.log2(4 * length)))
    resp = np.ones(n_fft // 2 + 1, complex)
    for b, a in sections:
        resp *= biquad_response(np.asarray(b, np.float64), np.asarray(a, np.float64), n_fft)
    return np.fft.irfft(resp, n_fft)[:length]
