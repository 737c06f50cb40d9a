"""The harmonic comb of a voiced frame: F0 fitted to it, and how far its harmonics stand above the noise.

Both look at ``k * F0`` in a Hann-windowed, zero-padded spectrum centred on a mel frame (frame ``i`` centred at
sample ``(i + 0.5) * hop``) and score the mean log-magnitude *contrast* between the harmonics ``k * F0`` and the
midpoints ``(k + 0.5) * F0`` between them (ln units; 1.0 = 8.7 dB). A mel cannot show this above a few kHz: its
bands there are wider than the spacing of a low voice's harmonics, so a vocoder that fills the valleys between
them with noise and one that does not can have the same mel.

* :func:`refine_to_harmonics`: a tracker's F0 is typically a few cents off the true pitch (SwiftF0 on PJS: a
  median of 3-7 cents, 10 % of frames more than 20 cents). That is inaudible as pitch, but at harmonic 30 (6 kHz
  at 200 Hz) 20 cents put ``k * F0`` a third of the way to the next harmonic, so a comb at the tracker's F0
  misses the harmonics it should score. This moves each voiced frame's F0 (within a few tens of cents) to where
  the comb best fits the frame's spectrum.
* :func:`harmonic_contrast`: the contrast per frame in a frequency band, the waveform measure of "harmonics up
  to 8 kHz" against "a noise band".
"""

from __future__ import annotations

import numpy as np

from canora.errors import CanoraError

#: search half-width and step, in cents around the tracker's F0
SEARCH_CENTS = 50.0
STEP_CENTS = 1.0
#: analysis window of the fit (samples: 46 ms at 22.05 kHz, two periods of 44 Hz) and the zero-padding factor
WINDOW = 1024
PAD = 8
#: the harmonics that decide the fit: those up to this frequency
BAND_HZ = 8000.0
#: a frame is moved only if its best fit has at least this contrast (1.0 = 8.7 dB): white noise reaches at most
#: 0.5, 95 % of PJS's voiced frames 1.05
MIN_CONTRAST = 1.0
#: the contrast metric's window: twice the fit's, so that it resolves the harmonics of low voices
METRIC_WINDOW = 2048
#: the metric's own fit of the comb's scale in the warped window (cents either way)
FIT_CENTS = 25.0
_BATCH = 256


def _check(x: np.ndarray, f0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, f0 = np.asarray(x, dtype=np.float64), np.asarray(f0, dtype=np.float64)
    if x.ndim != 1 or f0.ndim != 1:
        raise CanoraError(f"harmonic analysis needs mono audio (N,) and F0 (T,), got {x.shape} and {f0.shape}")
    return x, f0


def _log_spectra(x: np.ndarray, hop: int, frames: np.ndarray, window: int):
    """Yield (frame indices (B,), ln magnitude (B, window * PAD / 2 + 1)) of Hann windows centred on ``frames``."""
    half = window // 2
    xp = np.pad(x, (half, half + window))  # every window inside, zeros beyond the signal
    win = np.hanning(window)
    for b in range(0, len(frames), _BATCH):
        idx = frames[b: b + _BATCH]
        starts = ((idx + 0.5) * hop).astype(np.int64)  # window centred on the frame centre (offset by the pad)
        segs = xp[starts[:, None] + np.arange(window)[None, :]] * win
        yield idx, np.log(np.abs(np.fft.rfft(segs, window * PAD, axis=1)) + 1e-7)


def _contrast(logmag: np.ndarray, f0s: np.ndarray, bin_hz: float, lo: float, hi: float) -> np.ndarray:
    """Comb contrast (C,) of one frame's ln spectrum (F,) at candidate F0s (C,), harmonics within [lo, hi] Hz of
    the largest candidate's comb (NaN where none falls in the band)."""
    k0, k1 = max(1, int(np.ceil(lo / f0s.min()))), int(hi // f0s.max())
    if k1 < k0:
        return np.full(len(f0s), np.nan)
    ks = np.arange(k0, k1 + 1, dtype=np.float64)
    on = _interp(logmag, f0s[:, None] * ks[None, :] / bin_hz)  # (C, K)
    off = _interp(logmag, f0s[:, None] * (ks[None, :] + 0.5) / bin_hz)
    return (on - off).mean(axis=1)


def _best_fit(
    logmag: np.ndarray, f0s: np.ndarray, bin_hz: float, top: float, min_contrast: float, interior: bool
) -> float | None:
    """The candidate of ``f0s`` (C,) whose comb over the harmonics up to ``top`` Hz fits ``logmag`` best, or None
    when no fit reaches ``min_contrast`` (or, with ``interior``, the best lies on the edge of the candidates)."""
    score = _contrast(logmag, f0s, bin_hz, 0.0, top)
    if np.isnan(score).all():
        return None
    best = int(np.nanargmax(score))
    if score[best] < min_contrast or (interior and not 0 < best < len(f0s) - 1):
        return None
    return float(f0s[best])


def refine_to_harmonics(
    wav: np.ndarray,
    sr: int,
    hop: int,
    f0: np.ndarray,
    search_cents: float = SEARCH_CENTS,
    step_cents: float = STEP_CENTS,
    window: int = WINDOW,
    band_hz: float = BAND_HZ,
    min_contrast: float = MIN_CONTRAST,
) -> np.ndarray:
    """F0 (T,) float32 Hz with each voiced frame moved to its best harmonic fit; 0 (unvoiced) stays 0.

    ``wav`` (N,) at ``sr``; ``f0`` (T,) on the mel's frames. For each voiced frame the candidates
    ``f0 * 2 ** (c / 1200)``, ``|c| <= search_cents``, are scored by their comb contrast over the harmonics up to
    ``band_hz`` in a window of ``window`` samples; the best one is kept. A frame whose best fit lies on the edge
    of the search (no peak inside it) or has a contrast below ``min_contrast`` (no clear comb: breath, noise)
    keeps the tracker's value.
    """
    x, f0 = _check(wav, f0)
    if not 0 < step_cents <= search_cents:
        raise CanoraError(f"F0 refinement needs 0 < step_cents <= search_cents, got {step_cents}, {search_cents}")
    out = f0.copy()
    frames = np.nonzero(f0 > 0)[0]
    if len(frames) == 0 or len(x) == 0:
        return out.astype(np.float32)
    top = min(band_hz, 0.95 * sr / 2)
    cents = np.arange(-search_cents, search_cents + step_cents / 2, step_cents)
    ratios = 2.0 ** (cents / 1200.0)  # (C,)
    for idx, logmag in _log_spectra(x, hop, frames, window):
        for j, i in enumerate(idx):
            fit = _best_fit(logmag[j], f0[i] * ratios, sr / (window * PAD), top, min_contrast, interior=True)
            if fit is not None:
                out[i] = fit
    return out.astype(np.float32)


def harmonic_contrast(
    wav: np.ndarray, sr: int, hop: int, f0: np.ndarray, lo: float, hi: float, window: int = METRIC_WINDOW,
    warp: bool = True, fit_cents: float = FIT_CENTS,
) -> np.ndarray:
    """Comb contrast (T,) float64 in ln units of each voiced frame's harmonics within [lo, hi] Hz at ``f0`` (T,)
    Hz; NaN where unvoiced (0) or no harmonic falls in the band. ``wav`` (N,) at ``sr``.

    With ``warp`` (the default) each window is first resampled along time so that the pitch the ``f0`` track
    traces through it becomes constant (:func:`_warped_log_spectra`): vibrato sweeps the harmonics at 8 kHz across a
    93-ms window and would otherwise count as noise between them (a ±50-cent vibrato tone: 1.4 on the plain
    window, 4.7 warped, a steady tone 5.4). ``fit_cents`` > 0 then fits the comb's scale within that many cents, on the
    harmonics up to 8 kHz (a fit below :data:`MIN_CONTRAST` keeps ``f0``). Score a signal at an F0 that fits
    its own harmonics (:func:`refine_to_harmonics`). Real singing at 4-8 kHz: about 1.3-1.6 under 250 Hz,
    2.2-2.5 above; noise: 0.
    """
    x, f0 = _check(wav, f0)
    if hi > sr / 2:
        raise CanoraError(f"harmonic contrast up to {hi:g} Hz needs a sample rate above {2 * hi:g} Hz, got {sr}")
    out = np.full(len(f0), np.nan)
    frames = np.nonzero(f0 > 0)[0]
    if len(frames) == 0 or len(x) == 0:
        return out
    bin_hz = sr / (window * PAD)
    top = min(BAND_HZ, 0.95 * sr / 2)
    ratios = 2.0 ** (np.arange(-fit_cents, fit_cents + STEP_CENTS / 2, STEP_CENTS) / 1200.0) if fit_cents > 0 \
        else np.ones(1)
    spectra = _warped_log_spectra(x, hop, frames, window, f0) if warp else _log_spectra(x, hop, frames, window)
    for idx, logmag in spectra:
        for j, i in enumerate(idx):
            fit = _best_fit(logmag[j], f0[i] * ratios, bin_hz, top, MIN_CONTRAST, interior=False) \
                if len(ratios) > 1 else None
            out[i] = _contrast(logmag[j], np.array([f0[i] if fit is None else fit]), bin_hz, lo, hi)[0]
    return out


def _warped_log_spectra(x: np.ndarray, hop: int, frames: np.ndarray, window: int, f0: np.ndarray):
    """As :func:`_log_spectra`, each window resampled (cubic) so that the pitch of the ``f0`` (T,) track through it
    is constant at its centre's value: sample times ``t(tau)`` with ``d tau / dt = f(t) / f(centre)``."""
    from scipy.interpolate import CubicSpline

    voiced = np.nonzero(f0 > 0)[0]
    centres = (voiced + 0.5) * hop
    spline = CubicSpline(np.arange(len(x)), x)
    win = np.hanning(window)
    half = window // 2
    grid = np.arange(window) - half
    for b in range(0, len(frames), _BATCH):
        idx = frames[b: b + _BATCH]
        segs = np.empty((len(idx), window))
        for j, i in enumerate(idx):
            c = (i + 0.5) * hop
            t = c + grid
            ratio = np.interp(t, centres, f0[voiced]) / f0[i]  # the track's pitch relative to the centre
            tau = np.cumsum(ratio)
            tau -= tau[half]
            at = np.interp(grid, tau, t)  # the times whose warped position is each grid point
            inside = (at >= 0) & (at <= len(x) - 1)
            segs[j] = np.where(inside, spline(np.clip(at, 0, len(x) - 1)), 0.0)
        yield idx, np.log(np.abs(np.fft.rfft(segs * win, window * PAD, axis=1)) + 1e-7)


def _interp(row: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``row`` (F,) at fractional bin positions ``pos`` (any shape)."""
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, len(row) - 2)
    w = np.clip(pos - i0, 0.0, 1.0)
    return row[i0] * (1.0 - w) + row[i0 + 1] * w
