"""Integrated loudness after ITU-R BS.1770-4 (LUFS) of mono audio, numpy only.

K-weighting (a +4 dB high shelf near 1.7 kHz and a 38 Hz high-pass), then the mean square of 400-ms blocks every
100 ms, gated at -70 LUFS and then at 10 LU below the mean of the blocks above that. The two filters are the
standard's, derived from their analog prototypes for any sample rate (as libebur128 does; at 48 kHz they are the
coefficients printed in the standard), and run as one FIR of their impulse response (:mod:`canora.dsp.fir`).
"""

from __future__ import annotations

import math

import numpy as np

from canora.dsp.fir import fir_blocks, iir_impulse_response

#: gating block (s), its step (s), and the two gates of BS.1770-4
BLOCK_SECONDS = 0.4
STEP_SECONDS = 0.1
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
#: the impulse response of the K-weighting is cut here (s); it has decayed below 1e-12 well before
K_RESPONSE_SECONDS = 0.5


def k_weighting(sr: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two K-weighting biquads ``[(b, a), (b, a)]`` (shelf, then high-pass) at ``sr`` Hz."""
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sr)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh ** 0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = (np.array([(vh + vb * k / q + k * k), 2.0 * (k * k - vh), (vh - vb * k / q + k * k)]) / a0,
             np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]))
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sr)
    a0 = 1.0 + k / q + k * k
    high = (np.array([1.0, -2.0, 1.0]), np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]))
    return [shelf, high]


def _energy_at(x: np.ndarray, sr: int, at: np.ndarray) -> np.ndarray:
    """The K-weighted energy of ``x`` (N,) before each sample index in ``at`` (``sum(y[:k] ** 2)``), the filter and
    the running sum streamed a block at a time (memory O(block), the same sums as over the whole signal at once)."""
    h = iir_impulse_response(k_weighting(sr), int(K_RESPONSE_SECONDS * sr))
    order = np.argsort(at, kind="stable")
    want = at[order]
    out = np.zeros(len(at))
    total, i = 0.0, int(np.searchsorted(want, 0, side="right"))  # energy before sample 0 is 0
    for off, y in fir_blocks(lambda a, b: x[a:b].astype(np.float64), len(x), h, 0, len(x)):
        e = np.cumsum(np.concatenate([[total], y * y]))  # e[m] = energy before sample off + m
        j = int(np.searchsorted(want, off + len(y), side="right"))
        out[order[i:j]] = e[want[i:j] - off]
        total, i = float(e[-1]), j
    return out


def block_loudness(wav: np.ndarray, sr: int) -> np.ndarray:
    """The loudness (B,) in LUFS of each 400-ms block (every 100 ms) of the K-weighted ``wav`` (N,) at ``sr``;
    -inf for a silent block, none for audio shorter than one block."""
    x = np.asarray(wav)
    length = len(x)
    if length < BLOCK_SECONDS * sr:
        return np.zeros(0)
    blocks = int(round((length / sr - BLOCK_SECONDS) / STEP_SECONDS)) + 1
    j = np.arange(blocks) * (STEP_SECONDS / BLOCK_SECONDS)
    lo = (BLOCK_SECONDS * j * sr).astype(int)
    hi = np.minimum((BLOCK_SECONDS * (j + 1) * sr).astype(int), length)
    energy = _energy_at(x, sr, np.concatenate([lo, hi]))
    z = (energy[blocks:] - energy[:blocks]) / (BLOCK_SECONDS * sr)
    with np.errstate(divide="ignore"):
        return -0.691 + 10.0 * np.log10(np.maximum(z, 0.0))


def integrated_loudness(wav: np.ndarray, sr: int) -> float:
    """Integrated loudness (LUFS) of mono ``wav`` (N,) float in [-1, 1] at ``sr`` Hz (BS.1770-4 gating); -inf when
    no block is above -70 LUFS (silence), NaN for audio shorter than one 400-ms block. A full-scale 997 Hz sine
    reads -3.01 LUFS."""
    lk = block_loudness(wav, sr)
    if len(lk) == 0:
        return float("nan")
    z = 10.0 ** ((lk + 0.691) / 10.0)
    above = lk >= ABSOLUTE_GATE_LUFS
    if not above.any():
        return float("-inf")
    relative = -0.691 + 10.0 * math.log10(float(z[above].mean())) + RELATIVE_GATE_LU
    gated = above & (lk > relative)
    return -0.691 + 10.0 * math.log10(float(z[gated].mean()))
