"""Is this vocoder output a collapse? Objective checks of generated audio against the mel it came from.

A pretrained HiFi-GAN fed mels in a convention it was not trained on does not fail loudly: it outputs
noise, near-silence or a clipped square wave. :func:`check_output` measures the symptoms (mel cycle error,
spectral flatness, energy against the mel's, clipping, NaN) and names the verdict; :func:`collapse_check` is the
cheap check every conversion gets (an untrained or mismatched refiner).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from canora.dsp.mel import MelSpec, wav_to_mel
from canora.dsp.metrics import loud_frames, mel_cycle_error

# Thresholds, measured on real singing and speech through the official LJ_V2 generator (see tests/test_collapse.py
# and examples/collapse_reproduction.md): matched mels give cycle error 0.3-0.9, flatness < 0.15, level within 1.
MAX_CYCLE_ERROR = 1.5  # mean |ln diff| over loud frames
MAX_FLATNESS = 0.1  # spectral flatness (geometric / arithmetic mean of power) of loud output frames
MAX_CLIPPED = 0.01  # fraction of samples with |x| >= CLIP_LEVEL
CLIP_LEVEL = 0.99
MAX_LEVEL_DROP = 3.0  # ln units: the output's mel is this much quieter than its input mel (e^-3 ~ -26 dB)
MAX_LEVEL_RISE = 3.0
FLATNESS_FRAMES = 5.0  # flatness is measured on frames whose loudest input bin is within this of the peak (ln)


@dataclass
class CollapseReport:
    """Measurements of one generated waveform and the verdict. ``reasons`` empty means it looks healthy."""

    cycle_error: float
    flatness: float
    rms_dbfs: float
    level_change: float  # mean (re-extracted - input) ln-mel over loud frames: < 0 quieter, > 0 louder
    clipping_ratio: float
    nan: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def collapsed(self) -> bool:
        return bool(self.reasons)

    @property
    def verdict(self) -> str:
        return "collapsed: " + "; ".join(self.reasons) if self.reasons else "ok"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(collapsed=self.collapsed, verdict=self.verdict)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def spectral_flatness(wav: np.ndarray, spec: MelSpec, frames: np.ndarray | None = None) -> float:
    """Median spectral flatness (0 tonal .. ~0.56 white noise) of ``wav`` (T,) over ``frames`` (bool (F,)).

    Computed on the spec's STFT grid (n_fft, hop, Hann), power spectrum up to ``spec.fmax``.
    """
    x = np.asarray(wav, dtype=np.float64)
    n, hop = spec.n_fft, spec.hop_length
    pad = (n - hop) // 2
    if len(x) <= pad:
        return float("nan")
    x = np.pad(x, pad, mode="reflect")
    count = 1 + (len(x) - n) // hop
    if count < 1:
        return float("nan")
    idx = np.arange(n)[None, :] + hop * np.arange(count)[:, None]
    p = np.abs(np.fft.rfft(x[idx] * np.hanning(n + 1)[:-1], axis=1)) ** 2
    top = int(spec.fmax_hz / spec.sample_rate * n) + 1
    p = p[:, 1:top] + 1e-12
    flat = np.exp(np.log(p).mean(axis=1)) / p.mean(axis=1)
    if frames is not None:
        m = min(len(flat), len(frames))
        sel = flat[:m][frames[:m]]
        flat = sel if sel.size else flat
    return float(np.median(flat))


def check_output(mel: np.ndarray, wav: np.ndarray, spec: MelSpec) -> CollapseReport:
    """Measure ``wav`` (T,) that a vocoder made from ``mel`` (n_mels, F), both in ``spec``; give a verdict."""
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    if not np.isfinite(wav).all():
        return CollapseReport(math.nan, math.nan, math.nan, math.nan, math.nan, True,
                              [f"NaN/inf in {int((~np.isfinite(wav)).sum())} output samples"])
    rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2)))
    rms_dbfs = 20 * math.log10(max(rms, 1e-10))
    clipped = float(np.mean(np.abs(wav) >= CLIP_LEVEL))
    loud = loud_frames(mel, spec)
    got = wav_to_mel(wav, spec) if len(wav) > spec.n_fft else np.full_like(mel, spec.log_floor)
    n = min(mel.shape[1], got.shape[1])
    mask = loud[:n]
    if mask.any():
        diff = got[:, :n][:, mask] - mel[:, :n][:, mask]
        cycle = float(np.abs(diff).mean())
        level = float(diff.mean())
    else:
        cycle = level = math.nan
    peak = mel.max(axis=0)
    flat = spectral_flatness(wav, spec, peak > peak.max() - FLATNESS_FRAMES)
    reasons = []
    if level < -MAX_LEVEL_DROP:
        reasons.append(f"energy collapse: output mel {level:+.2f} ln ({20 * level / math.log(10):+.0f} dB) below "
                       "its input")
    elif level > MAX_LEVEL_RISE:
        reasons.append(f"energy blow-up: output mel {level:+.2f} ln above its input")
    if clipped > MAX_CLIPPED:
        reasons.append(f"clipped output: {100 * clipped:.1f}% of samples at |x| >= {CLIP_LEVEL}")
    if flat > MAX_FLATNESS:
        reasons.append(f"noise-like output: spectral flatness {flat:.2f} (> {MAX_FLATNESS})")
    if cycle > MAX_CYCLE_ERROR:
        reasons.append(f"large mel cycle error {cycle:.2f} (> {MAX_CYCLE_ERROR})")
    return CollapseReport(cycle, flat, rms_dbfs, level, clipped, False, reasons)


# ---------------------------------------------------------------------- a cheap check of a conversion
#: the refined mel differs from the source mel by more than this (mean |ln| over loud frames): not a refinement
MAX_MEL_CHANGE = 3.0
CHECK_SECONDS = 5.0


def collapse_check(res: Any, spec: Any) -> dict[str, Any] | None:
    """A cheap sanity check of a conversion (:class:`canora.pipeline.Conversion`), on its first sung stretch only
    (at most :data:`CHECK_SECONDS`): the mel cycle error of the output audio against the refined mel, and how far
    the refined mel moved from the source mel. An untrained or collapsed refiner scores far above the thresholds
    (cycle error > :data:`MAX_CYCLE_ERROR`, change > :data:`MAX_MEL_CHANGE`); a trained one
    well below. -> ``{"cycle_error", "mel_change", "seconds", "ok"}``, or None when nothing was sung."""
    voiced = np.flatnonzero(np.asarray(res.f0) > 0)
    if voiced.size == 0:
        return None
    hop = spec.hop_length
    a = int(voiced[0])
    b = min(res.mel.shape[1], a + int(CHECK_SECONDS * spec.sample_rate / hop))
    mel, src = res.mel[:, a:b], res.source_mel[:, a:b]
    audio = res.audio[a * hop: b * hop]
    gain = (res.stats.get("output") or {}).get("gain_db") or 0.0
    if gain:  # the output stage's plain gain (a trim, or a loudness target) is no part of the vocoder's error
        audio = audio * np.float32(10.0 ** (-gain / 20.0))
    if mel.shape[1] < 8 or len(audio) < spec.n_fft:
        return None
    err = mel_cycle_error(mel, audio, spec)
    mask = loud_frames(src, spec)
    change = float(np.abs(mel - src)[:, mask].mean()) if mask.any() else float("nan")
    ok = not ((math.isfinite(err) and err > MAX_CYCLE_ERROR) or (math.isfinite(change) and change > MAX_MEL_CHANGE))
    return {"cycle_error": None if not math.isfinite(err) else round(err, 4),
            "mel_change": None if not math.isfinite(change) else round(change, 4),
            "seconds": round((b - a) * hop / spec.sample_rate, 2), "ok": ok,
            "cycle_error_limit": MAX_CYCLE_ERROR, "mel_change_limit": MAX_MEL_CHANGE}
