"""F0 extraction behind one interface, octave-jump repair, unvoiced interpolation, transpose and auto-key.

Every extractor returns F0 in Hz with 0 at unvoiced frames, frame-aligned to the HiFi-GAN mel: frame ``i``
is centred at sample ``i * hop + hop / 2`` (time ``(i + 0.5) * hop / sr``), so ``n_frames`` is normally
``len(wav) // hop``. Extractors: ``parselmouth`` (Praat autocorrelation), ``harvest`` (WORLD harvest +
stonemask), ``dio`` (WORLD dio + stonemask), ``pyin`` (librosa probabilistic YIN) and ``swift`` (SwiftF0, a
small CNN run by onnxruntime). ``benchmarks/f0_trackers.py`` measures them against each other.
"""

from __future__ import annotations

import functools
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from canora.config import Config
from canora.errors import AudioError, CanoraError

F0_MIN = 50.0  # Hz; the lowest bass notes
F0_MAX = 1100.0  # Hz; above a soprano's high C (C6 = 1047 Hz)
#: The default extractor, chosen by benchmarks/f0_trackers.py: no octave errors on PJS or other singers, the
#: fewest false voicings (5 % on vocadito; harvest 37 %) and ~10x faster than harvest.
DEFAULT_F0_METHOD = "swift"


# ------------------------------------------------------------ alignment
def frame_times(n_frames: int, sr: int, hop: int) -> np.ndarray:
    """Centre times (n_frames,) in seconds of the mel frames: ``(i + 0.5) * hop / sr``."""
    return (np.arange(n_frames) + 0.5) * (hop / sr)


def resample_track(times: np.ndarray, f0: np.ndarray, target_times: np.ndarray) -> np.ndarray:
    """Move an F0 track (N,) at ``times`` (N,) to ``target_times`` (M,) -> (M,) float32, 0 = unvoiced.

    Between two voiced frames F0 is interpolated linearly in log-frequency; next to an unvoiced frame the
    nearest frame wins (so voicing boundaries move by at most half a native frame). Edges are held.
    """
    f0 = np.nan_to_num(np.asarray(f0, dtype=np.float64), nan=0.0)
    f0 = np.where(f0 > 0, f0, 0.0)
    if f0.size == 0:
        return np.zeros(len(target_times), np.float32)
    if f0.size == 1:
        return np.full(len(target_times), f0[0], np.float32)
    pos = np.clip(np.interp(target_times, times, np.arange(len(times))), 0, len(times) - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), len(times) - 2)
    a = pos - lo
    f_lo, f_hi = f0[lo], f0[lo + 1]
    both = (f_lo > 0) & (f_hi > 0)
    with np.errstate(divide="ignore"):
        interp = np.exp((1 - a) * np.log(np.where(both, f_lo, 1.0)) + a * np.log(np.where(both, f_hi, 1.0)))
    nearest = np.where(a < 0.5, f_lo, f_hi)
    return np.where(both, interp, nearest).astype(np.float32)


def _check_wav(wav: np.ndarray, sr: int, hop: int, n_frames: int) -> np.ndarray:
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise AudioError(
            f"F0 extraction needs mono audio of shape (T,), got {wav.shape}; mix down to mono first"
        )
    if sr <= 0 or hop <= 0 or n_frames < 0:
        raise CanoraError(f"F0 extraction needs sr > 0, hop > 0, n_frames >= 0 (got {sr}, {hop}, {n_frames})")
    if not np.isfinite(wav).all():
        raise AudioError("audio holds NaN/inf samples; re-export it")
    return np.ascontiguousarray(wav, dtype=np.float64)


# ------------------------------------------------------------ extractors
class F0Extractor(ABC):
    """F0 of a waveform on the mel's frame grid; subclasses implement :meth:`_track` on their own grid."""

    name: ClassVar[str] = ""

    def __init__(self, f0_min: float = F0_MIN, f0_max: float = F0_MAX) -> None:
        if not 0 < f0_min < f0_max:
            raise CanoraError(f"F0 range must satisfy 0 < f0_min < f0_max, got {f0_min}..{f0_max} Hz")
        self.f0_min = float(f0_min)
        self.f0_max = float(f0_max)

    def extract(self, wav: np.ndarray, sr: int, hop: int, n_frames: int) -> np.ndarray:
        """F0 (n_frames,) float32 Hz, 0 = unvoiced, of ``wav`` (T,) at ``sr``; frame i at (i+.5)*hop/sr."""
        x = _check_wav(wav, sr, hop, n_frames)
        if n_frames == 0:
            return np.zeros(0, np.float32)
        if len(x) < 3.2 * sr / self.f0_min:  # too short for one analysis window at the lowest pitch
            return np.zeros(n_frames, np.float32)
        times, f0 = self._track(x, int(sr), hop / sr)
        out = resample_track(times, f0, frame_times(n_frames, sr, hop))
        return np.where((out >= self.f0_min * 0.97) & (out <= self.f0_max * 1.03), out, 0.0).astype(
            np.float32
        )

    @abstractmethod
    def _track(self, x: np.ndarray, sr: int, step: float) -> tuple[np.ndarray, np.ndarray]:
        """(times (N,) s, f0 (N,) Hz with 0/NaN unvoiced) of float64 ``x`` at about ``step`` seconds."""


_REGISTRY: dict[str, type[F0Extractor]] = {}


def register_f0_extractor(cls: type[F0Extractor]) -> type[F0Extractor]:
    """Class decorator: make ``cls`` available to :func:`get_f0_extractor` under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def available_f0_extractors() -> list[str]:
    """Names accepted by :func:`get_f0_extractor`."""
    return sorted(_REGISTRY)


def get_f0_extractor(name: str, **kwargs: Any) -> F0Extractor:
    """The extractor registered as ``name`` (``f0_min``, ``f0_max`` and extractor options as keywords)."""
    if name not in _REGISTRY:
        raise CanoraError(
            f"unknown F0 extractor {name!r}; choose one of {', '.join(available_f0_extractors())}"
        )
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as e:
        raise CanoraError(f"F0 extractor {name!r}: bad options {sorted(kwargs)} ({e})") from None


@register_f0_extractor
class PraatF0(F0Extractor):
    """Praat's autocorrelation pitch (praat-parselmouth); ``voicing_threshold`` as in Praat (0.45)."""

    name = "parselmouth"

    def __init__(
        self,
        f0_min: float = F0_MIN,
        f0_max: float = F0_MAX,
        voicing_threshold: float = 0.45,
        octave_jump_cost: float = 0.35,
    ) -> None:
        super().__init__(f0_min, f0_max)
        self.voicing_threshold = voicing_threshold
        self.octave_jump_cost = octave_jump_cost

    def _track(self, x: np.ndarray, sr: int, step: float) -> tuple[np.ndarray, np.ndarray]:
        import parselmouth

        pitch = parselmouth.Sound(x, sampling_frequency=sr).to_pitch_ac(
            time_step=step,
            pitch_floor=self.f0_min,
            pitch_ceiling=self.f0_max,
            voicing_threshold=self.voicing_threshold,
            octave_jump_cost=self.octave_jump_cost,
        )
        return np.asarray(pitch.xs()), np.asarray(pitch.selected_array["frequency"])


class _WorldF0(F0Extractor):
    """Shared WORLD plumbing: a coarse tracker refined by stonemask."""

    def _track(self, x: np.ndarray, sr: int, step: float) -> tuple[np.ndarray, np.ndarray]:
        import pyworld

        f0, t = self._coarse(pyworld, x, sr, 1000.0 * step)
        return t, pyworld.stonemask(x, f0, t, sr)

    @abstractmethod
    def _coarse(
        self, pyworld: Any, x: np.ndarray, sr: int, period_ms: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(f0 (N,), times (N,)) from a WORLD tracker."""


@register_f0_extractor
class HarvestF0(_WorldF0):
    """WORLD harvest (robust, slower) refined by stonemask (pyworld).

    Harvest costs about 0.15-0.3 s per second of audio and runs on one core; pyworld releases the GIL, so
    signals longer than ``2 * PARALLEL_MIN_SECONDS`` are tracked in chunks (with ``CHUNK_CONTEXT_SECONDS``
    of context on each side, far more than harvest's analysis window) on up to ``workers`` threads
    (default: the CPU count, at most 4) and stitched on the frame grid.
    """

    name = "harvest"
    PARALLEL_MIN_SECONDS: ClassVar[float] = 4.0
    CHUNK_CONTEXT_SECONDS: ClassVar[float] = 0.3

    def __init__(self, f0_min: float = F0_MIN, f0_max: float = F0_MAX, workers: int | None = None) -> None:
        super().__init__(f0_min, f0_max)
        self.workers = max(1, min(4, os.cpu_count() or 1) if workers is None else int(workers))

    def _coarse(
        self, pyworld: Any, x: np.ndarray, sr: int, period_ms: float
    ) -> tuple[np.ndarray, np.ndarray]:
        def run(seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return pyworld.harvest(seg, sr, f0_floor=self.f0_min, f0_ceil=self.f0_max, frame_period=period_ms)

        n_chunks = min(self.workers, int(len(x) / (sr * self.PARALLEL_MIN_SECONDS)))
        if n_chunks < 2:
            return run(x)
        from concurrent.futures import ThreadPoolExecutor

        step = period_ms / 1000.0
        n_frames = int(len(x) / sr / step) + 1
        bounds = np.linspace(0, n_frames, n_chunks + 1).round().astype(int)  # core frames of each chunk
        ctx = math.ceil(self.CHUNK_CONTEXT_SECONDS / step)  # context in frames: chunks start on the frame grid
        jobs = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            s0 = int(round(max(0, a - ctx) * step * sr))
            s1 = min(len(x), int(round((b + ctx) * step * sr)))
            jobs.append((a, b, s0, x[s0:s1]))
        with ThreadPoolExecutor(n_chunks) as ex:
            results = list(ex.map(lambda j: run(j[3]), jobs))
        f0 = np.zeros(n_frames)
        for (a, b, s0, _), (f, t) in zip(jobs, results):
            idx = np.rint((t + s0 / sr) / step).astype(int)  # chunk frames on the whole signal's grid
            keep = (idx >= a) & (idx < b)
            f0[idx[keep]] = f[keep]
        return f0, np.arange(n_frames) * step


@register_f0_extractor
class DioF0(_WorldF0):
    """WORLD dio (fast) refined by stonemask (pyworld)."""

    name = "dio"

    def _coarse(
        self, pyworld: Any, x: np.ndarray, sr: int, period_ms: float
    ) -> tuple[np.ndarray, np.ndarray]:
        return pyworld.dio(x, sr, f0_floor=self.f0_min, f0_ceil=self.f0_max, frame_period=period_ms)


@register_f0_extractor
class PyinF0(F0Extractor):
    """librosa pYIN, run at 16 kHz with a 5 ms step (enough for F0 up to 1100 Hz, and much faster)."""

    name = "pyin"
    analysis_sr: ClassVar[int] = 16000

    def _track(self, x: np.ndarray, sr: int, step: float) -> tuple[np.ndarray, np.ndarray]:
        import librosa

        from canora.dsp.resample import resample

        y = resample(x.astype(np.float32), sr, self.analysis_sr)
        hop = max(1, min(80, int(step * self.analysis_sr)))
        frame = 1 << int(math.ceil(math.log2(2.2 * self.analysis_sr / self.f0_min)))  # >= 2 periods of f0_min
        f0, _, _ = librosa.pyin(
            y,
            fmin=self.f0_min,
            fmax=self.f0_max,
            sr=self.analysis_sr,
            frame_length=frame,
            hop_length=hop,
            center=True,
        )
        return np.arange(len(f0)) * hop / self.analysis_sr, f0


@functools.lru_cache(maxsize=4)
def _swift_detector(threads: int) -> Any:
    """One SwiftF0 ONNX session per thread count (building one costs ~20 ms; ``detect`` is thread-safe)."""
    try:
        import swift_f0
    except ImportError as e:
        raise CanoraError(
            f"the 'swift' F0 extractor needs swift-f0, a canora dependency missing here ({e}); reinstall canora "
            "(pip install -e .) or pip install 'swift-f0>=0.3'"
        ) from None
    return swift_f0.SwiftF0(threads=threads, spin=False)  # no spinning: don't hold a core between calls


#: a SwiftF0 gap (unvoiced frames between two voiced ones) of at most this many frames is checked with Praat ...
GAP_FRAMES = 8
#: ... and takes Praat's pitch when Praat hears it voiced throughout, within this many semitones of the line (in
#: log F0) between the gap's voiced neighbours
GAP_SEMITONES = 2.0
#: a voiced run is extended by at most this many frames at each end ...
EDGE_FRAMES = 3
#: ... while Praat hears the note go on there, within this many semitones of the run's pitch at that end
EDGE_SEMITONES = 1.0


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The runs ``[start, end)`` of True in ``mask`` (T,) bool, in order."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(mask, bool).astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def interior_gaps(voiced: np.ndarray, max_frames: int = GAP_FRAMES) -> list[tuple[int, int]]:
    """The unvoiced runs ``[start, end)`` of ``voiced`` (T,) bool of at most ``max_frames`` with a voiced frame on
    both sides."""
    v = np.asarray(voiced, bool)
    return [(a, b) for a, b in true_runs(~v) if a > 0 and b < len(v) and b - a <= max_frames]


def _second_track(f0: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``second`` as float64 (T,), checked to be on ``f0``'s frames."""
    second = np.asarray(second, np.float64)
    if f0.ndim != 1 or second.shape != f0.shape:
        raise CanoraError(f"the second F0 track {second.shape} must be on the first one's frames {f0.shape}")
    return second


def fill_voicing_gaps(
    f0: np.ndarray, second: np.ndarray, max_frames: int = GAP_FRAMES, semitones: float = GAP_SEMITONES
) -> tuple[np.ndarray, int]:
    """(``f0`` (T,) Hz, 0 = unvoiced, with its short interior gaps (:func:`interior_gaps`) taken from ``second``
    (T,), another tracker's F0, where ``second`` is voiced throughout the gap within ``semitones`` of the line in
    log F0 between the gap's neighbours; how many frames were filled). A legato note change or a voiced consonant
    that one tracker drops keeps its voice; a gap the other tracker does not hear as the same line stays."""
    out = np.array(f0, np.float32, copy=True)
    second = _second_track(out, second)
    filled = 0
    for a, b in interior_gaps(out > 0, max_frames):
        seg = second[a:b]
        if not (np.isfinite(seg).all() and (seg > 0).all()):
            continue
        lo, hi = math.log2(out[a - 1]), math.log2(out[b])
        line = lo + (hi - lo) * (np.arange(a, b) - (a - 1)) / (b - (a - 1))
        if np.all(np.abs(np.log2(seg) - line) * 12.0 <= semitones):
            out[a:b] = seg
            filled += b - a
    return out, filled


def extend_voicing_edges(
    f0: np.ndarray, second: np.ndarray, max_frames: int = EDGE_FRAMES, semitones: float = EDGE_SEMITONES
) -> tuple[np.ndarray, int]:
    """(``f0`` (T,) Hz, 0 = unvoiced, with each voiced run extended by up to ``max_frames`` unvoiced frames at
    either end, frame by frame while ``second`` (T,), another tracker's F0, is voiced within ``semitones`` of the
    run's own pitch at that end; how many frames were added). A note whose end or start one tracker hears a few
    frames short keeps them where the other hears the same note; a consonant or breath beside it does not."""
    src = np.asarray(f0, np.float32)
    out = src.copy()
    second = _second_track(src, second)
    added = 0
    for a, b in true_runs(src > 0):  # the voiced run [a, b)
        for step, t, ref in ((1, b, float(src[b - 1])), (-1, a - 1, float(src[a]))):
            for _ in range(max_frames):
                if not 0 <= t < len(out) or out[t] > 0:
                    break
                s = second[t]
                if not (np.isfinite(s) and s > 0 and abs(12.0 * math.log2(s / ref)) <= semitones):
                    break
                out[t] = s
                added += 1
                t += step
    return out, added


@register_f0_extractor
class SwiftF0(F0Extractor):
    """SwiftF0 (swift-f0): a 135 KB CNN run by onnxruntime on 16 kHz audio, 46.9-2093 Hz.

    The model gives one pitch and one voicing confidence per 256-sample hop at 16 kHz (16 ms; frame ``k``
    centred at ``k * 16`` ms); a frame is voiced when its confidence is at least ``voicing_threshold`` (the
    model is calibrated for 0.5). Hops whose audio peaks below 1e-3 are unvoiced. ``threads`` is the size of
    the onnxruntime pool (default 1: already ~100x faster than real time on one core).

    SwiftF0 hears some voice as unvoiced where harvest and Praat both hear it: a few frames at legato note changes
    and voiced consonants (every syllable of a Dagstuhl bass scale; 6 of 131 gaps in PJS 001-020), and the last
    (sometimes first) 1-3 frames of a note. With ``praat_voicing`` (default) Praat's track is the second opinion:
    short gaps are filled (:func:`fill_voicing_gaps`) and voiced runs are extended at their ends where Praat hears
    the same note go on (:func:`extend_voicing_edges`). Praat costs about 5 ms per second of audio.
    """

    name = "swift"
    analysis_sr: ClassVar[int] = 16000

    def __init__(
        self,
        f0_min: float = F0_MIN,
        f0_max: float = F0_MAX,
        voicing_threshold: float = 0.5,
        threads: int = 1,
        praat_voicing: bool = True,
    ) -> None:
        super().__init__(f0_min, f0_max)
        self.voicing_threshold = float(voicing_threshold)
        self.threads = max(1, int(threads))
        self.praat_voicing = bool(praat_voicing)

    def extract(self, wav: np.ndarray, sr: int, hop: int, n_frames: int) -> np.ndarray:
        """As :meth:`F0Extractor.extract`, with Praat's second opinion on the voicing (``praat_voicing``)."""
        f0 = super().extract(wav, sr, hop, n_frames)
        if self.praat_voicing and (f0 > 0).any() and not (f0 > 0).all():
            second = PraatF0(self.f0_min, self.f0_max).extract(wav, sr, hop, n_frames)
            f0, _ = fill_voicing_gaps(f0, second)
            f0, _ = extend_voicing_edges(f0, second)
        return f0

    def _track(self, x: np.ndarray, sr: int, step: float) -> tuple[np.ndarray, np.ndarray]:
        from canora.dsp.resample import resample

        detector = _swift_detector(self.threads)
        y = resample(x.astype(np.float32), sr, self.analysis_sr)
        try:
            res = detector.detect(y, self.analysis_sr, fmin=self.f0_min, fmax=self.f0_max)
        except ValueError as e:  # e.g. a band narrower than one of the model's pitch bins
            raise CanoraError(f"swift F0 extractor: {e}") from None
        return res.timestamps, np.where(res.confidence >= self.voicing_threshold, res.pitch_hz, 0.0)


def extract_f0(
    wav: np.ndarray,
    sr: int,
    hop_length: int,
    n_frames: int | None = None,
    method: str = DEFAULT_F0_METHOD,
    f0_min: float = F0_MIN,
    f0_max: float = F0_MAX,
    repair_octaves: bool = True,
    **options: Any,
) -> np.ndarray:
    """One call: F0 (n_frames,) float32 Hz (0 = unvoiced) with extractor ``method``, octave jumps repaired.

    ``n_frames`` defaults to ``len(wav) // hop_length`` (the HiFi-GAN mel's frame count).
    """
    n = len(wav) // hop_length if n_frames is None else int(n_frames)
    f0 = get_f0_extractor(method, f0_min=f0_min, f0_max=f0_max, **options).extract(wav, sr, hop_length, n)
    return repair_octave_jumps(f0) if repair_octaves else f0


# ------------------------------------------------------------ post-processing
def require_voiced(f0: np.ndarray, source_name: str) -> np.ndarray:
    """Voiced mask (T,) bool of ``f0`` (T,); :class:`AudioError` naming ``source_name`` if none is voiced."""
    f0 = np.asarray(f0)
    voiced = np.isfinite(f0) & (f0 > 0)
    if not voiced.any():
        raise AudioError(
            f"{source_name}: no voiced frames found (no pitch between {F0_MIN:g} and {F0_MAX:g} Hz in "
            f"{f0.size} frames); give it audio with singing, or try another F0 extractor"
        )
    return voiced


def running_median(x: np.ndarray, size: int) -> np.ndarray:
    """Median of each odd ``size`` window centred on every sample of ``x`` (T,), the ends extended with their
    edge values (``scipy.ndimage.median_filter(x, size, mode="nearest")``, without importing scipy.ndimage)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"running median window {size} must be odd and positive")
    half = size // 2
    padded = np.pad(np.asarray(x), half, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, size), axis=1)


def repair_octave_jumps(
    f0: np.ndarray, window: int = 31, tolerance: float = 0.2, passes: int = 2
) -> np.ndarray:
    """Fix isolated frames/segments an octave (or two) off their neighbours -> (T,) float32, 0 kept as 0.

    Over the voiced frames (gaps removed), each frame's log2-F0 is compared with a running median over
    ``window`` voiced frames; a deviation within ``tolerance`` octaves of a nonzero whole number of octaves
    is folded back. Runs shorter than about ``window // 2`` voiced frames are repaired; longer ones (a real
    octave leap held for a note) move the median with them and are kept.
    """
    f0 = np.asarray(f0, dtype=np.float32).copy()
    voiced = np.isfinite(f0) & (f0 > 0)
    if voiced.sum() < 3:
        return np.where(voiced, f0, 0.0).astype(np.float32)
    lf = np.log2(f0[voiced].astype(np.float64))
    for _ in range(passes):
        ref = running_median(lf, min(window, len(lf)) | 1)
        octaves = np.round(lf - ref)
        fix = (octaves != 0) & (np.abs(lf - ref - octaves) < tolerance)
        if not fix.any():
            break
        lf = lf - np.where(fix, octaves, 0.0)
    out = np.zeros_like(f0)
    out[voiced] = np.exp2(lf)
    return out


def interpolate_unvoiced(f0: np.ndarray, source_name: str = "F0") -> tuple[np.ndarray, np.ndarray]:
    """(f0_continuous (T,) float32, voiced (T,) bool) from ``f0`` (T,) with 0/NaN at unvoiced frames.

    Gaps are filled by linear interpolation of log-F0 between the voiced frames around them; leading and
    trailing gaps hold the first/last voiced value. No voiced frame at all raises :class:`AudioError`.
    """
    f0 = np.asarray(f0, dtype=np.float64)
    voiced = require_voiced(f0, source_name)
    idx = np.flatnonzero(voiced)
    filled = np.exp(np.interp(np.arange(len(f0)), idx, np.log(f0[idx])))
    return filled.astype(np.float32), voiced


def transpose(f0: np.ndarray, semitones: float) -> np.ndarray:
    """``f0`` (T,) shifted by ``semitones`` (x 2^(s/12)); unvoiced zeros stay 0. -> (T,) float32."""
    f0 = np.asarray(f0, dtype=np.float32)
    return np.where(f0 > 0, f0 * np.float32(2.0 ** (float(semitones) / 12.0)), 0.0).astype(np.float32)


# ------------------------------------------------------------ statistics, auto-key
@dataclass(frozen=True)
class F0Stats(Config):
    """A singer's pitch range over voiced frames (Hz): median, 5th and 95th percentile."""

    median: float
    p5: float
    p95: float

    @classmethod
    def from_f0(cls, f0: np.ndarray, source_name: str = "F0") -> F0Stats:
        """Statistics of the voiced (> 0) frames of ``f0`` (T,) Hz; :class:`AudioError` if none is voiced."""
        f0 = np.asarray(f0, dtype=np.float64)
        v = f0[require_voiced(f0, source_name)]
        p5, med, p95 = np.exp(np.percentile(np.log(v), [5, 50, 95]))
        return cls(median=float(med), p5=float(p5), p95=float(p95))


def f0_stats(f0: np.ndarray, source_name: str = "F0") -> F0Stats:
    """:class:`F0Stats` of the voiced frames of ``f0`` (T,) Hz (0 = unvoiced)."""
    return F0Stats.from_f0(f0, source_name)


KEY_MODES = ("octave", "free")


@dataclass(frozen=True)
class KeyChoice:
    """The shift chosen for a song: ``semitones``, the ``mode`` it was chosen in, and why."""

    semitones: int
    mode: str
    source_median: float
    target_median: float
    ideal: float  # the shift that would put the source's median on the target's, in semitones

    @property
    def reason(self) -> str:
        kept = "the key kept (whole octaves only)" if self.mode == "octave" else "any semitone allowed"
        return (f"{self.semitones:+d} semitones: source median {self.source_median:.0f} Hz, singer's median "
                f"{self.target_median:.0f} Hz (ideal {self.ideal:+.1f}); {kept}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reason": self.reason}


def choose_key(
    source_f0: np.ndarray,
    target: float | F0Stats | Mapping[str, float],
    mode: str = "octave",
    max_shift: int = 24,
) -> KeyChoice:
    """The transpose that moves the source's median voiced pitch toward the target singer's.

    ``mode="octave"`` (the default) keeps the key: whole octaves only (0, +-12, +-24 within ``max_shift``), the
    one nearest the ideal shift, so a song with accompaniment still fits; ``"free"``: the nearest whole
    semitone. ``source_f0`` (T,) Hz (0 = unvoiced); ``target`` the singer's median in Hz, an :class:`F0Stats`
    or its dict.
    """
    if mode not in KEY_MODES:
        raise CanoraError(f"unknown key mode {mode!r}; choose one of {', '.join(KEY_MODES)}")
    if isinstance(target, Mapping):
        target = F0Stats.from_dict(target)
    target_median = target.median if isinstance(target, F0Stats) else float(target)
    if not target_median > 0:
        raise CanoraError(f"target median pitch must be > 0 Hz, got {target_median}")
    source_median = f0_stats(source_f0, "source F0").median
    ideal = 12.0 * math.log2(target_median / source_median)
    if mode == "octave":
        shifts = [s for s in range(-24, 25, 12) if abs(s) <= max_shift]
        shift = min(shifts, key=lambda s: (abs(s - ideal), abs(s)))
    else:
        shift = int(np.clip(round(ideal), -max_shift, max_shift))
    return KeyChoice(int(shift), mode, float(source_median), float(target_median), float(ideal))


def auto_transpose_semitones(
    source_f0: np.ndarray, target: float | F0Stats | Mapping[str, float], mode: str = "octave", max_shift: int = 24
) -> int:
    """Whole semitones toward the target singer's range (:func:`choose_key`)."""
    return choose_key(source_f0, target, mode, max_shift).semitones


def auto_transpose(source_f0: np.ndarray, target: float | F0Stats | Mapping[str, float], **kw: Any) -> int:
    """Alias of :func:`auto_transpose_semitones`."""
    return auto_transpose_semitones(source_f0, target, **kw)


def periodicity(wav: np.ndarray, f0: np.ndarray, sr: int, hop: int) -> np.ndarray:
    """Normalised autocorrelation of ``wav`` (N,) at each frame's F0 period -> (T,) in [-1, 1] (0 where
    ``f0`` (T,) is 0). Sung notes score ~0.8-1; noise that a tracker mistook for pitch scores near 0."""
    wav = np.asarray(wav, dtype=np.float64)
    out = np.zeros(len(f0), dtype=np.float32)
    for t in np.flatnonzero(np.asarray(f0) > 0):
        lag = int(round(sr / float(f0[t])))
        width = max(3 * lag, 512)
        a = int(t * hop + hop // 2 - width // 2)
        if a < 0 or a + width + lag > len(wav):
            a = min(max(0, a), max(0, len(wav) - width - lag))
        x, y = wav[a: a + width], wav[a + lag: a + lag + width]
        if len(y) < len(x) or len(x) == 0:
            continue
        den = np.sqrt(np.dot(x, x) * np.dot(y, y))
        out[t] = float(np.dot(x, y) / den) if den > 0 else 0.0
    return out
