"""The output stage of an offline conversion: no DC or rumble, an optional loudness target, and a true peak at or
below :data:`CEILING_DBTP`, so no sample is ever clipped.

1. The zero-phase high-pass of :mod:`canora.dsp.filters` (:data:`~canora.dsp.filters.HIGHPASS_HZ`): whatever the
   vocoder makes below the lowest sung note (a vocoder trained on studio takes reproduces their room rumble) and
   any DC offset are removed.
2. The level. With a loudness target (LUFS, :mod:`canora.dsp.lufs`) one gain puts the whole song on it. Without one
   the song keeps the recording's level (the envelope the pipeline gave it).
3. The ceiling. When the true peak (:mod:`canora.dsp.level`) would pass :data:`CEILING_DBTP`, a song without a
   loudness target is first lowered by a plain gain of up to :data:`MAX_TRIM_DB` (no distortion at all); only what
   is left above the ceiling after that, or anything above it with a loudness target (which a plain gain would
   miss), goes through the look-ahead limiter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from canora.errors import CanoraError

#: the highest true peak of a conversion (dBTP): 1 dB of room for a lossy encoder's or a resampler's overshoot
CEILING_DBTP = -1.0
#: the largest plain gain (dB) a song without a loudness target is lowered by to fit under the ceiling before the
#: limiter takes the rest (the README's 16 clips: 10 needed 0.2-2.5 dB, the two hottest takes 3.5 and 4.6 dB)
MAX_TRIM_DB = 3.0
#: the trim and the limiter aim this far (dB) below the ceiling: 4x-oversampling meters with other interpolation
#: filters read the same audio up to about 0.01 dB apart (scipy's resample_poly against canora.dsp.level)
PEAK_MARGIN_DB = 0.05
#: with a loudness target, the gain is raised again after limiting (which lowers the loudness) up to this many
#: times, until the song is within TARGET_TOLERANCE_LU of the target or the limiter reduces by LIMIT_WARN_DB
TARGET_ROUNDS = 4
TARGET_TOLERANCE_LU = 0.02
#: the loudness targets accepted (LUFS); beyond -5 singing needs more limiting than is clean
LOUDNESS_RANGE = (-50.0, -5.0)
#: a limiter that reduced the gain by more than this (dB) is worth a warning: the target is too loud for the song
LIMIT_WARN_DB = 6.0


def check_loudness(value: float | None, what: str = "loudness") -> float | None:
    """``value`` (LUFS) as a float, None for None; one :class:`CanoraError` line when it is not a finite number in
    :data:`LOUDNESS_RANGE`."""
    if value is None:
        return None
    lo, hi = LOUDNESS_RANGE
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise CanoraError(f"{what} must be a loudness in LUFS, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v) or not lo <= v <= hi:
        raise CanoraError(f"{what} {v:g} is not a loudness from {lo:g} to {hi:g} LUFS; streaming services play "
                          "at about -14, broadcast at -23")
    return v


@dataclass(frozen=True)
class OutputLevel:
    """What the output stage did to a conversion: ``gain_db``, the plain gain on the whole song (to the loudness
    target, or a trim under the ceiling); ``limited_ms`` and ``max_reduction_db``, the look-ahead limiter's work
    (0 when it did nothing); the true peak before (``input_true_peak_dbtp``, after the gain) and after
    (``true_peak_dbtp``), the loudness after (``loudness_lufs``), and the target (``target_lufs``, None without)."""

    gain_db: float
    limited_ms: float
    max_reduction_db: float
    input_true_peak_dbtp: float
    true_peak_dbtp: float
    loudness_lufs: float
    target_lufs: float | None = None
    ceiling_dbtp: float = CEILING_DBTP

    @property
    def acted(self) -> bool:
        """Whether the level was changed (a gain, or limiting)."""
        return abs(self.gain_db) > 1e-3 or self.limited_ms > 0

    @property
    def reason(self) -> str:
        parts = []
        if self.target_lufs is not None:
            parts.append(f"{self.gain_db:+.1f} dB to {self.target_lufs:g} LUFS")
        elif abs(self.gain_db) > 1e-3:
            parts.append(f"{self.gain_db:+.1f} dB so the true peak stays at {self.ceiling_dbtp:g} dBTP")
        if self.limited_ms > 0:
            parts.append(f"limited {self.limited_ms:.0f} ms of peaks by up to {self.max_reduction_db:.1f} dB "
                         f"(would reach {self.input_true_peak_dbtp:+.1f} dBTP)")
        if not parts:
            return f"unchanged (true peak {self.true_peak_dbtp:.2f} dBTP)"
        return "; ".join(parts) + f"; true peak {self.true_peak_dbtp:.2f} dBTP, {self.loudness_lufs:.1f} LUFS"

    def to_dict(self) -> dict[str, float | str | None]:
        return {**asdict(self), "reason": self.reason}


def _scaled(x: np.ndarray, gain_db: float) -> np.ndarray:
    return (x * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32) if gain_db else x


def finish_output(audio: np.ndarray, sr: int, *, loudness: float | None = None, ceiling_dbtp: float = CEILING_DBTP,
                  highpass_hz: float | None = None) -> tuple[np.ndarray, OutputLevel]:
    """The output stage (module doc) of a conversion ``audio`` (N,) at ``sr`` -> ((N,) float32 with its true peak
    at or below ``ceiling_dbtp``, :class:`OutputLevel`). ``loudness``: a target in LUFS (None: keep the level);
    ``highpass_hz``: the guard's corner (None: :data:`~canora.dsp.filters.HIGHPASS_HZ`, 0: no guard)."""
    from canora.dsp.filters import HIGHPASS_HZ, highpass
    from canora.dsp.level import db, limit, true_peak_envelope
    from canora.dsp.lufs import integrated_loudness

    target = check_loudness(loudness)
    x = highpass(np.asarray(audio, np.float32), sr, HIGHPASS_HZ if highpass_hz is None else highpass_hz)
    peak_in = db(float(true_peak_envelope(x).max())) if len(x) else float("-inf")
    aim = ceiling_dbtp - PEAK_MARGIN_DB
    gain, limited, reduction = 0.0, 0.0, 0.0
    if target is None:
        if peak_in > ceiling_dbtp:  # a plain gain first: it cannot distort
            gain = -min(peak_in - aim, MAX_TRIM_DB)
        y = _scaled(x, gain)
        if peak_in + gain > aim:  # what the plain gain left above the ceiling
            y, lim = limit(y, sr, aim)
            limited, reduction, gain = lim.limited_ms, lim.max_reduction_db, gain + lim.trim_db
    else:
        measured = integrated_loudness(x, sr)
        gain = target - measured if math.isfinite(measured) else 0.0
        for _ in range(TARGET_ROUNDS):  # the gates move with the gain, and limiting lowers the loudness
            y = _scaled(x, gain)
            lim = None
            if peak_in + gain > aim:
                y, lim = limit(y, sr, aim)
            short = target - integrated_loudness(y, sr)
            if not abs(short) > TARGET_TOLERANCE_LU or (lim is not None and lim.max_reduction_db > LIMIT_WARN_DB):
                break
            gain += short
        peak_in += gain  # the song's true peak at the target's level
        if lim is not None:
            limited, reduction, gain = lim.limited_ms, lim.max_reduction_db, gain + lim.trim_db
    if limited or reduction:  # measured again only where the limiter shaped the peaks; a gain moves them exactly
        tp = db(float(true_peak_envelope(y).max()))
    else:
        tp = (peak_in if target is not None else peak_in + gain) if len(y) else float("-inf")
    return y, OutputLevel(float(gain), float(limited), float(reduction), float(peak_in), float(tp),
                          float(integrated_loudness(y, sr)), target, float(ceiling_dbtp))
