"""A causal peak limiter for streams: no output sample reaches full scale, without clipping.

The gain is computed per segment of :data:`SEGMENT` samples: each segment boundary takes the gain that keeps both
neighbouring segments' peaks under the ceiling (so the gain is already down when a peak's segment starts: a look-ahead
of one segment inside the block given, none across blocks), recovers toward 1 at ``release_ms`` per full swing,
and is interpolated linearly between boundaries. Inside a segment the gain is then a mix of two values each low
enough for that segment's peak, so ``|y| <= ceiling`` holds for every sample (a final guard keeps it exact).
"""

from __future__ import annotations

import numpy as np

#: samples per gain segment
SEGMENT = 64
#: the ceiling (linear): -0.18 dBFS
CEILING = 0.98


class StreamingLimiter:
    """``process(block (n,)) -> (n,) float32`` with ``|y| <= ceiling``; the gain is carried from block to block.
    :attr:`min_gain` is the lowest gain applied so far (1.0: the limiter never acted)."""

    def __init__(self, sr: int, ceiling: float = CEILING, release_ms: float = 80.0) -> None:
        self.ceiling = float(ceiling)
        segs_per_release = max(1.0, release_ms / 1000.0 * sr / SEGMENT)
        self.release = 1.0 / segs_per_release  # gain recovered per segment
        self.gain = 1.0
        self.min_gain = 1.0

    def process(self, block: np.ndarray) -> np.ndarray:
        x = np.asarray(block, np.float32)
        n = len(x)
        if n == 0:
            return x.copy()
        segs = -(-n // SEGMENT)
        pad = np.zeros(segs * SEGMENT, np.float32)
        pad[:n] = np.abs(x)
        peak = pad.reshape(segs, SEGMENT).max(axis=1)
        need = np.minimum(1.0, self.ceiling / np.maximum(peak, 1e-12))  # (segs,)
        # boundary j (j = 0..segs) sits between segments j - 1 and j: low enough for both
        bound = np.minimum(np.concatenate([need, [1.0]]), np.concatenate([[need[0]], need]))
        g = np.empty(segs + 1)
        prev = self.gain
        for j in range(segs + 1):
            prev = min(bound[j], prev + self.release)
            g[j] = prev
        g[0] = min(g[0], self.gain, need[0])
        ramp = (np.arange(SEGMENT) + 0.5) / SEGMENT
        gains = (g[:-1, None] * (1.0 - ramp) + g[1:, None] * ramp).reshape(-1)[:n]
        y = x * gains.astype(np.float32)
        over = np.abs(y) > self.ceiling  # float rounding only
        if over.any():
            y[over] = np.sign(y[over]) * self.ceiling
        self.gain = float(gains[-1])
        self.min_gain = min(self.min_gain, float(gains.min()))
        return y.astype(np.float32)
