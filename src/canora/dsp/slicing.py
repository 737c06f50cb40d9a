"""Slice long audio at silences (with a maximum slice length), and join processed slices with cross-fades.

Slices partition the signal: ``[start, end)`` ranges that touch. Each slice is processed with ``overlap``
samples of context on both sides (its *region*), and :func:`join` blends neighbouring regions with
complementary linear ramps of 2 x overlap samples centred on every boundary, so a boundary that falls
inside a note (a forced cut of an over-long phrase) leaves no click, and one inside a silence no gap.
Boundaries sit on multiples of ``hop`` so slice mels line up with the whole signal's mel frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Slice:
    """One slice: samples ``[start, end)`` of the signal; ``silent`` when nothing in it is above the gate."""

    start: int
    end: int
    silent: bool

    def region(self, overlap: int, total: int) -> tuple[int, int]:
        """The slice plus ``overlap`` samples of context on each side, clipped to ``[0, total)``."""
        return max(0, self.start - overlap), min(total, self.end + overlap)


#: frames measured at once by :func:`frame_db` (its memory is O(this) beyond its result)
FRAMES_PER_BLOCK = 4096


def frame_db(wav: np.ndarray, hop: int) -> np.ndarray:
    """RMS level in dBFS of consecutive ``hop``-sample frames of ``wav`` (T,) -> (ceil(T / hop),); measured a block
    of frames at a time."""
    n = -(-len(wav) // hop)
    rms = np.empty(n)
    for f0 in range(0, n, FRAMES_PER_BLOCK):
        f1 = min(n, f0 + FRAMES_PER_BLOCK)
        padded = np.zeros((f1 - f0) * hop, dtype=np.float64)
        part = wav[f0 * hop: f1 * hop]
        padded[: len(part)] = part
        rms[f0:f1] = np.sqrt(np.mean(padded.reshape(f1 - f0, hop) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-10))


def plan_slices(
    wav: np.ndarray,
    sample_rate: int,
    *,
    hop: int = 256,
    max_seconds: float = 30.0,
    min_silence_seconds: float = 0.3,
    threshold_db: float = -45.0,
    overlap: int = 1024,
) -> list[Slice]:
    """Cut ``wav`` (T,) in the middle of silences (frames ``threshold_db`` below the peak frame, lasting at
    least ``min_silence_seconds``); cut phrases longer than ``max_seconds`` at their quietest frame.

    Every slice is at least 2 x ``overlap`` samples long (shorter ones merge with a neighbour) except when
    the signal itself is shorter.
    """
    total = len(wav)
    if total == 0:
        return []
    db = frame_db(wav, hop)
    gate = db.max() + threshold_db if np.isfinite(db.max()) else 0.0
    quiet = db < max(gate, -90.0)
    min_run = max(1, int(round(min_silence_seconds * sample_rate / hop)))
    # middle frames of long quiet runs are the preferred cut points
    cuts: list[int] = []
    run_start = None
    for i, q in enumerate(np.append(quiet, False)):
        if q and run_start is None:
            run_start = i
        elif not q and run_start is not None:
            if i - run_start >= min_run and run_start > 0 and i < len(quiet):
                cuts.append((run_start + i) // 2)
            run_start = None
    max_frames = max(2, int(max_seconds * sample_rate / hop))
    bounds = [0, *cuts, len(db)]
    split: list[int] = [0]
    for a, b in zip(bounds[:-1], bounds[1:]):
        while b - a > max_frames:  # forced cut at the quietest frame in the allowed window's second half
            lo = a + max_frames // 2
            hi = a + max_frames
            c = lo + int(np.argmin(db[lo:hi]))
            split.append(c)
            a = c
        split.append(b)
    min_len = -(-2 * overlap // hop)
    merged = [split[0]]
    for c in split[1:]:
        if c - merged[-1] < min_len and c != split[-1]:
            continue
        merged.append(c)
    if len(merged) > 2 and merged[-1] - merged[-2] < min_len:
        del merged[-2]
    slices = []
    for a, b in zip(merged[:-1], merged[1:]):
        start, end = a * hop, min(total, b * hop)
        if end <= start:
            continue
        slices.append(Slice(start, end, bool(quiet[a:b].all())))
    if slices and slices[-1].end != total:
        last = slices[-1]
        slices[-1] = Slice(last.start, total, last.silent)
    return slices


def join(pieces: list[np.ndarray], slices: list[Slice], total: int, overlap: int, context: int | None = None
         ) -> np.ndarray:
    """Blend processed regions back into one (total,) signal.

    ``pieces[i]`` is the processed ``slices[i].region(context, total)`` (``context`` defaults to ``overlap``);
    a piece shorter than its region (vocoders emit whole frames) is zero-padded, a longer one trimmed.
    Neighbouring pieces cross-fade linearly over ``[cut - overlap, cut + overlap)``; a piece's context beyond
    that (``context > overlap``: room for the models' edge effects) is rendered but not used.
    """
    context = overlap if context is None else context
    if context < overlap:
        raise ValueError(f"context ({context}) must cover the cross-fade overlap ({overlap})")
    out = np.zeros(total, dtype=np.float32)
    weight = np.zeros(total, dtype=np.float32)
    for k, (piece, s) in enumerate(zip(pieces, slices)):
        r0, r1 = s.region(context, total)
        n = r1 - r0
        seg = np.zeros(n, dtype=np.float32)
        m = min(n, len(piece))
        seg[:m] = piece[:m]
        w = np.ones(n, dtype=np.float32)
        ramp = np.linspace(0, 1, 2 * overlap, endpoint=False, dtype=np.float32)
        if k > 0:  # ramp up across the left boundary: [start - ov, start + ov), nothing before it
            w[: max(0, s.start - overlap - r0)] = 0.0
            _put(w, s.start - overlap - r0, ramp)
        if k < len(slices) - 1:  # ramp down across the right boundary, complementary to the next slice's
            _put(w, s.end - overlap - r0, 1 - ramp)
            w[max(0, s.end + overlap - r0):] = 0.0
        out[r0:r1] += seg * w
        weight[r0:r1] += w
    nz = weight > 1e-6
    out[nz] /= weight[nz]  # exact 1 where ramps are complementary; guards clipped edges
    return out


def _put(w: np.ndarray, a: int, values: np.ndarray) -> None:
    """``w[a : a + len(values)] = values``, clipped to ``w``'s bounds."""
    lo, hi = max(0, a), min(len(w), a + len(values))
    if hi > lo:
        w[lo:hi] = values[lo - a : hi - a]
