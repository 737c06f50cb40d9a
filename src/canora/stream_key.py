"""The key of a live stream: the offline rule (:func:`canora.dsp.pitch.choose_key`, whole octaves toward the target
singer's range) applied to a running pitch estimate, changed only between phrases.

A live input cannot be looked at ahead, so the key follows what has been sung so far: the source's voiced F0 of the
last :data:`KEY_MAX_FRAMES` frames (about a minute). The first choice is made as soon as :data:`KEY_MIN_FRAMES`
voiced frames (a second of singing) have been heard; after that the key is
chosen again only in a pause (no voiced frame in the block about to be rendered, and none for
:data:`KEY_PAUSE_FRAMES` before it), so a phrase is never moved by an octave in its middle.
"""

from __future__ import annotations

import numpy as np

from canora.dsp.pitch import F0Stats, KeyChoice, choose_key

#: voiced frames heard before the first choice (1 s at 86 frames/s: the first notes alone can mislead, e.g. a scale
#: that starts at its bottom)
KEY_MIN_FRAMES = 86
#: unvoiced frames (0.2 s, a breath) that make a pause, where the key may change (benchmarks/running_key.py: 0.3 s
#: left 16.5 % of voiced frames in another key than the offline one on 23 clips, 0.2 s 14.2 %)
KEY_PAUSE_FRAMES = 17
#: the running estimate covers the voiced frames of about the last minute
KEY_MAX_FRAMES = 5168


class RunningKey:
    """The running key toward ``target`` (the singer's stored range) in ``mode`` (``"octave"`` or ``"free"``, as
    offline). :attr:`semitones` is the shift in force (``initial`` until the first choice); :attr:`choice` the last
    :class:`~canora.dsp.pitch.KeyChoice` (None before the first) and :attr:`changes` how often it moved."""

    def __init__(self, target: F0Stats, mode: str = "octave", initial: float = 0.0) -> None:
        self.target, self.mode = target, mode
        self.initial = float(initial)
        self.reset()

    def reset(self) -> None:
        self.semitones = self.initial
        self.choice: KeyChoice | None = None
        self.changes = 0
        self._f0 = np.zeros(0, np.float32)  # voiced source F0 heard (Hz), the last KEY_MAX_FRAMES
        self._heard_to = 0  # song frames [0, _heard_to) are counted
        self._last_voiced = -(10**9)  # the last voiced song frame heard

    def hear(self, f0: np.ndarray, voiced: np.ndarray, first_frame: int) -> None:
        """Add the frames of an analysed window (song frames ``[first_frame, first_frame + T)``; ``f0`` (T,) Hz and
        ``voiced`` (T,) bool, the source's, before any transpose) not heard before."""
        new = max(0, self._heard_to - first_frame)
        if new >= len(f0):
            return
        v = np.asarray(voiced[new:], bool)
        fresh = np.asarray(f0[new:], np.float32)[v]
        if len(fresh):
            self._f0 = np.concatenate([self._f0, fresh])[-KEY_MAX_FRAMES:]
            self._last_voiced = first_frame + new + int(np.flatnonzero(v)[-1])
        self._heard_to = first_frame + len(f0)

    def update(self, block_start: int, block_end: int) -> float:
        """The shift for the block of song frames ``[block_start, block_end)`` (its window already heard): the first
        choice once enough is heard, a new one only in a pause -> semitones."""
        if len(self._f0) < KEY_MIN_FRAMES:
            return self.semitones
        in_pause = self._last_voiced < block_start - KEY_PAUSE_FRAMES
        if self.choice is None or in_pause:
            choice = choose_key(self._f0, self.target, self.mode)
            if choice.semitones != self.semitones:
                self.changes += 1
            self.choice, self.semitones = choice, float(choice.semitones)
        return self.semitones
