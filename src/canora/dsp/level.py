"""Peak level: the true peak (4x oversampled, as ITU-R BS.1770-4 Annex 2) and a look-ahead peak limiter, numpy only.

:func:`true_peak_envelope` reconstructs the signal between its samples with a windowed-sinc interpolator (three
fractional phases, 32 taps each) and keeps, per sample, the largest magnitude from it to the next sample: what a
DAC or a lossy encoder's decoder can output, up to 3 dB above the largest sample.

:func:`limit` keeps that envelope at or below a ceiling with a smooth gain computed on the whole signal (offline, so
the look-ahead costs no latency): each sample's required gain in dB is held for the look-ahead before it (the
attack: a linear ramp in dB over :data:`LOOKAHEAD_MS` that reaches the required gain at the peak, never later) and
:data:`HOLD_MS` after it (one period of the lowest sung note, so the gain does not ripple at the pitch), then
released exponentially in dB with time constant :data:`RELEASE_MS`. The gain is never above what a sample needs,
so no overshoot is left for clipping to catch; :func:`limit` still measures its result and trims the last
hundredths of a dB a fast gain change can leave between samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

OVERSAMPLE = 4
#: taps of each fractional phase of the interpolator, and its Kaiser window's beta
PHASE_TAPS = 32
KAISER_BETA = 8.0
#: the limiter's look-ahead (= attack), hold and release time constant
LOOKAHEAD_MS = 5.0
HOLD_MS = 20.0
RELEASE_MS = 150.0
#: a sample at or above this magnitude is at full scale: clipped, or about to be
FULL_SCALE = 0.999
#: a gain reduction smaller than this (dB) does not count as limiting in :attr:`Limiting.limited_ms`
LIMIT_COUNT_DB = 0.01


def _phases(oversample: int = OVERSAMPLE, taps: int = PHASE_TAPS) -> np.ndarray:
    """(oversample - 1, taps) windowed-sinc filters: row p - 1 reads the signal at ``n + p / oversample`` from
    ``x[n - taps // 2 + 1 .. n + taps // 2]`` (as ``np.convolve(x, row)[taps // 2:][:len(x)]``), unit gain at DC."""
    half = taps // 2
    m = np.arange(half, -half, -1)  # h[k] weighs x[n + m[k]]
    rows = []
    for p in range(1, oversample):
        t = m - p / oversample
        h = np.sinc(t) * np.i0(KAISER_BETA * np.sqrt(np.clip(1 - (t / half) ** 2, 0, 1))) / np.i0(KAISER_BETA)
        rows.append(h / h.sum())
    return np.asarray(rows)


#: samples per block of the true-peak envelope and the limiter (their memory is O(block) beyond the signal)
BLOCK = 1 << 18


def true_peak_envelope(wav: np.ndarray, oversample: int = OVERSAMPLE) -> np.ndarray:
    """Per sample n, the largest magnitude of ``wav`` (N,) reconstructed at ``n, n + 1/4, n + 2/4, n + 3/4`` ->
    (N,) float32 (>= |wav|). Computed a block at a time (with the interpolator's reach either side)."""
    x = np.asarray(wav)
    n = len(x)
    env = np.abs(x).astype(np.float32)
    if n < 2:
        return env
    half = PHASE_TAPS // 2
    phases = _phases(oversample)
    for a in range(0, n, BLOCK):
        b = min(n, a + BLOCK)
        a0, b0 = max(0, a - half), min(n, b + half)
        xs = x[a0:b0].astype(np.float64)
        for h in phases:  # 32 taps: direct convolution is faster than FFT blocks
            part = np.abs(np.convolve(xs, h)[half + a - a0: half + b - a0]).astype(np.float32)
            np.maximum(env[a:b], part, out=env[a:b])
    return env


def db(value: float) -> float:
    """20 log10(value), -inf for 0."""
    return float(20.0 * np.log10(value)) if value > 0 else float("-inf")


def true_peak_db(wav: np.ndarray) -> float:
    """The true peak of ``wav`` (N,) in dBTP (dB re full scale, 4x oversampled); -inf for silence."""
    return db(float(true_peak_envelope(wav).max())) if len(wav) else float("-inf")


def full_scale_samples(wav: np.ndarray, level: float = FULL_SCALE) -> int:
    """How many samples of ``wav`` (N,) are at full scale (|x| >= ``level``): clipped, or about to be."""
    return int(np.count_nonzero(np.abs(np.asarray(wav)) >= level))


@dataclass(frozen=True)
class Limiting:
    """What :func:`limit` did: the time the gain was reduced (``limited_ms``, summed over the signal), the deepest
    reduction (``max_reduction_db`` >= 0), and the trim (dB <= 0) applied after it, if any was needed."""

    limited_ms: float
    max_reduction_db: float
    trim_db: float = 0.0


def running_min(x: np.ndarray, before: int, after: int) -> np.ndarray:
    """``min(x[n - before .. n + after])`` for each n of ``x`` (N,) (the window cut at the ends) -> (N,) float64, in
    O(N) (van Herk / Gil-Werman: prefix and suffix minima in blocks of the window's length)."""
    x = np.asarray(x, dtype=np.float64)
    n, w = len(x), before + after + 1
    if n == 0 or w == 1:
        return x.copy()
    total = -(-(n + w - 1) // w) * w
    p = np.full(total, np.inf)
    p[before: before + n] = x
    blocks = p.reshape(-1, w)
    prefix = np.minimum.accumulate(blocks, axis=1).ravel()
    suffix = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].ravel()
    return np.minimum(suffix[:n], prefix[w - 1: w - 1 + n])


def _release(reduction_db: np.ndarray, samples: float) -> np.ndarray:
    """``u[n] = max_k<=n r[k] * a^(n - k)`` for the reductions ``r`` (N,) dB >= 0, with ``a = exp(-1 / samples)``:
    every reduction decays exponentially (in dB) after it, computed as a running maximum of logarithms."""
    r = np.asarray(reduction_db, dtype=np.float64)
    if not (r > 0).any():
        return np.zeros_like(r)
    k = np.arange(len(r)) / samples
    with np.errstate(divide="ignore"):
        lr = np.where(r > 0, np.log(np.maximum(r, 1e-300)), -np.inf)
    return np.exp(np.maximum.accumulate(lr + k) - k)


def limiter_gain_db(envelope: np.ndarray, sr: int, ceiling_db: float, lookahead_ms: float = LOOKAHEAD_MS,
                    hold_ms: float = HOLD_MS, release_ms: float = RELEASE_MS) -> np.ndarray:
    """The limiter's gain (N,) float64 in dB (<= 0) for a true-peak ``envelope`` (N,): at every sample at most
    ``ceiling_db`` minus the envelope's level there, reached by a linear ramp over the look-ahead, held, released."""
    out = np.zeros(len(envelope))
    for a, g in limiter_gain_blocks(envelope, sr, ceiling_db, lookahead_ms, hold_ms, release_ms):
        out[a: a + len(g)] = g
    return out


def limiter_gain_blocks(envelope: np.ndarray, sr: int, ceiling_db: float, lookahead_ms: float = LOOKAHEAD_MS,
                        hold_ms: float = HOLD_MS, release_ms: float = RELEASE_MS,
                        block: int = BLOCK) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`limiter_gain_db` as ``(start, gain dB float64)`` blocks in order: the hold's window reads its reach
    either side of a block, and the release and the look-ahead ramp carry their state from one block to the next,
    so memory is O(block) beyond the envelope."""
    env = np.asarray(envelope)
    n = len(env)
    look = max(1, int(round(lookahead_ms * sr / 1000)))
    hold = int(round(hold_ms * sr / 1000))
    decay = math.exp(-1.0 / (release_ms * sr / 1000))
    carry, tail = 0.0, np.zeros(look - 1)  # the released reduction before the block, and its last look - 1 values

    def need(a: int, b: int) -> np.ndarray:  # reduction each sample needs, dB >= 0
        e = np.maximum(env[a:b].astype(np.float64), 1e-12)
        return np.maximum(20.0 * np.log10(e) - ceiling_db, 0.0)

    for a in range(0, n, block):
        b = min(n, a + block)
        a0, b0 = max(0, a - hold), min(n, b + look - 1)
        held = -running_min(-need(a0, b0), hold, look - 1)[a - a0: b - a0]  # max over [n - hold, n + look - 1]
        released = _release(held, release_ms * sr / 1000)
        if carry > 0:  # the reduction released before this block goes on decaying into it
            released = np.maximum(released, carry * decay ** np.arange(1, b - a + 1))
        carry = float(released[-1])
        c = np.concatenate([np.zeros(1), np.cumsum(np.concatenate([tail, released]))])
        yield a, -(c[look:] - c[:-look]) / look  # mean of released[n - look + 1 .. n]
        tail = np.concatenate([tail, released])[-(look - 1):] if look > 1 else tail


def limit(wav: np.ndarray, sr: int, ceiling_db: float = -1.0, lookahead_ms: float = LOOKAHEAD_MS,
          hold_ms: float = HOLD_MS, release_ms: float = RELEASE_MS) -> tuple[np.ndarray, Limiting]:
    """``wav`` (N,) with its true peak at or below ``ceiling_db`` dBTP -> ((N,) float32, :class:`Limiting`); audio
    already below the ceiling comes back unchanged (the same values)."""
    x = np.asarray(wav, dtype=np.float32)
    env = true_peak_envelope(x)
    if len(x) == 0 or db(float(env.max())) <= ceiling_db:
        return x, Limiting(0.0, 0.0)
    y = np.empty_like(x)
    counted, deepest = 0, 0.0
    for a, g in limiter_gain_blocks(env, sr, ceiling_db, lookahead_ms, hold_ms, release_ms):
        y[a: a + len(g)] = x[a: a + len(g)] * 10.0 ** (g / 20.0)
        counted += int(np.count_nonzero(g < -LIMIT_COUNT_DB))
        deepest = max(deepest, float(-g.min()))
    del env
    over = true_peak_db(y) - ceiling_db
    trim = 0.0
    if over > 0:  # a fast gain change can lift a peak between samples by hundredths of a dB
        trim = -over - 1e-4
        y *= np.float32(10.0 ** (trim / 20.0))
    return y, Limiting(counted * 1000.0 / sr, deepest, trim)
