"""What a live session plays where no converted audio is ready: the dry input, on the same schedule, cross-faded.

A live session must never play silence for want of compute. :class:`DryFill` keeps the recent input (high-passed,
at the device rate) in a ring, so the audio thread can play, at output position ``d``, the input sample that the
converted audio of that position comes from (``d - delay``, where ``delay`` is the converter's latency plus the
headroom); the switch between converted and dry audio is a linear cross-fade of :data:`FADE_MS`, and the dry audio
is scaled to stay under the output's ceiling. All of it runs in the audio callback: numpy on a few hundred samples.
"""

from __future__ import annotations

import numpy as np

from canora.dsp.limiter import CEILING

#: the cross-fade between converted and dry audio (ms)
FADE_MS = 3.0


def _ramp(target: np.ndarray, start: float, step: float) -> np.ndarray:
    """The wet share (n,) that follows the 0/1 ``target`` (n,) from ``start``, moving at most ``step`` a sample."""
    out = np.empty(len(target), np.float32)
    i, cur = 0, float(start)
    edges = np.flatnonzero(np.diff(target)) + 1
    for j in [*edges.tolist(), len(target)]:
        t = float(target[i])
        k = np.arange(1, j - i + 1, dtype=np.float32)
        seg = np.minimum(cur + step * k, t) if t >= cur else np.maximum(cur - step * k, t)
        out[i:j] = seg
        cur, i = float(seg[-1]), j
    return out


class DryFill:
    """The input ring and the wet/dry mix of one session at ``rate`` Hz; ``delay`` = device samples between an
    input sample and the output position its conversion plays at. ``push`` the input as it comes (in order),
    then ``mix`` each callback's output."""

    def __init__(self, rate: int, delay: int, max_frames: int = 8192) -> None:
        self.delay = int(delay)
        size = 1
        while size < self.delay + 2 * max_frames + 1:
            size *= 2
        self.ring = np.zeros(size, np.float32)
        self.pushed = 0  # input samples pushed
        self.step = 1.0 / max(1.0, FADE_MS / 1000.0 * rate)
        self.wet = 1.0  # the wet share at the last sample played
        self.dry_samples = 0  # output samples with any dry audio in them

    def push(self, x: np.ndarray) -> None:
        n, size = len(x), len(self.ring)
        if n >= size:
            x, n = x[-size:], size
        i = self.pushed % size
        head = min(n, size - i)
        self.ring[i: i + head] = x[:head]
        self.ring[: n - head] = x[head:]
        self.pushed += len(x)

    def dry(self, d0: int, n: int) -> np.ndarray:
        """The dry audio (n,) for output positions ``[d0, d0 + n)`` (zeros before the input began)."""
        size = len(self.ring)
        idx = np.arange(d0 - self.delay, d0 - self.delay + n)
        ok = (idx >= 0) & (idx < self.pushed) & (idx >= self.pushed - size)
        out = np.zeros(n, np.float32)
        out[ok] = self.ring[idx[ok] % size]
        return out

    def mix(self, wet: np.ndarray, ready: np.ndarray, d0: int) -> np.ndarray:
        """Output positions ``[d0, d0 + n)``: ``wet`` (n,) where ``ready`` (n,) bool, else the dry audio, with a
        cross-fade at each switch -> (n,) float32 under the ceiling."""
        if self.wet >= 1.0 and ready.all():
            return wet
        share = _ramp(ready.astype(np.float32), self.wet, self.step)
        self.wet = float(share[-1])
        dry = self.dry(d0, len(wet))
        peak = float(np.abs(dry).max()) if len(dry) else 0.0
        if peak > CEILING:
            dry *= CEILING / peak
        self.dry_samples += int((share < 1.0).sum())
        return (wet * share + dry * (1.0 - share)).astype(np.float32)
