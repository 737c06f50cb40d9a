"""Post-processing of converted audio against its source: keep the source's loudness envelope, keep
silences silent (no vocoder hiss between phrases)."""

from __future__ import annotations

import numpy as np

from canora.dsp.slicing import frame_db


def _smooth(x: np.ndarray, n: int) -> np.ndarray:
    if n <= 1:
        return x
    k = np.hanning(n + 2)[1:-1]
    k /= k.sum()
    return np.convolve(np.pad(x, (n // 2, n - 1 - n // 2), mode="edge"), k, mode="valid")


#: samples interpolated at once by :func:`_frames_to_samples` (its memory is O(this) beyond its result)
BLOCK = 1 << 18


def _frames_to_samples(v: np.ndarray, hop: int, total: int, scale: np.ndarray | None = None) -> np.ndarray:
    """Per-frame values ``v`` interpolated to every sample (total,) float32 (frame centres at ``(i + 0.5) * hop``),
    a block at a time; with ``scale`` (total,), its product with them."""
    centres = (np.arange(len(v)) + 0.5) * hop
    out = np.empty(total, np.float32)
    for a in range(0, total, BLOCK):
        b = min(total, a + BLOCK)
        g = np.interp(np.arange(a, b), centres, v).astype(np.float32)
        out[a:b] = g if scale is None else scale[a:b] * g
    return out


def activity_mask(source: np.ndarray, hop: int, *, threshold_db: float = -50.0, smooth_frames: int = 5) -> np.ndarray:
    """(n_frames,) in [0, 1]: 1 where the source is above ``threshold_db`` relative to its loudest frame,
    0 in silence, with soft edges over ``smooth_frames`` frames."""
    db = frame_db(source, hop)
    active = (db > db.max() + threshold_db).astype(np.float64)
    # widen by one frame each side so onsets and releases are not cut, then soften
    widened = np.maximum(active, np.maximum(np.roll(active, 1), np.roll(active, -1)))
    return np.clip(_smooth(widened, smooth_frames), 0.0, 1.0)


def match_envelope(
    converted: np.ndarray,
    source: np.ndarray,
    *,
    hop: int = 256,
    max_gain_db: float = 12.0,
    smooth_frames: int = 9,
    threshold_db: float = -50.0,
) -> np.ndarray:
    """Give ``converted`` (T,) the frame loudness of ``source`` (T,) (same rate and length), and silence
    where the source is silent.

    The per-frame gain is the dB difference, limited to +-``max_gain_db`` and smoothed over
    ``smooth_frames`` frames (so it follows phrasing, not individual periods).
    """
    n = min(len(converted), len(source))
    converted, source = converted[:n], source[:n]
    if n == 0:
        return converted.astype(np.float32)
    src_db, out_db = frame_db(source, hop), frame_db(converted, hop)
    gain_db = np.clip(src_db - out_db, -max_gain_db, max_gain_db)
    mask = activity_mask(source, hop, threshold_db=threshold_db)
    gain_db = np.where(mask > 0, gain_db, 0.0)
    gain = 10 ** (_smooth(gain_db, smooth_frames) / 20) * mask
    return _frames_to_samples(gain, hop, n, np.asarray(converted, np.float32))
