"""Waveform artifact metrics that mel-domain metrics miss.

An 80-band mel at hop 256 cannot see a pulse train at the frame rate (sr / hop = 86.13 Hz at 22050 Hz):
a vocoder can score a low mel L1 and a low mel cycle error and still buzz. Each metric here looks at the
waveform, and is meant to be read beside the same figure for the reference (the recording for
copy-synthesis, the source for a conversion):

* :func:`frame_rate_periodicity`: normalised autocorrelation at lag = hop in frames that are audible but
  unvoiced (consonants, breaths). Recordings score about 0.1-0.5; a vocoder that turns noise into a
  frame-rate pulse train scores near 1.
* :func:`frame_rate_lines`: the long-term spectrum of voiced frames at k * sr / hop (k = 1..4) against
  the median of nearby bins, in dB, leaving out frames whose own harmonics come near the line. Recordings:
  about -3..+3 dB; a frame-rate comb: 10-30 dB.
* :func:`voiced_hnr`: Praat's harmonics-to-noise ratio (cross-correlation method) over voiced frames, dB.
  Singing: 14-28 dB.
* :func:`gross_pitch_error`: the share of frames voiced in both signals whose F0 differs by more than
  50 cents, by two independent trackers (WORLD harvest and Praat autocorrelation, without octave repair):
  one tracker can follow the intended notes through an artifact that the other reads as the pitch. Only
  frames where both trackers hear the reference as voiced count: harvest alone calls many breaths and
  consonants "voiced" (37 % false voicing on vocadito), and a "pitch" of noise is no reference.
* :func:`held_tone`: the strongest tone held through the whole signal above 3 kHz, in dB above the
  neighbouring bins (median over frames, so harmonics that move with the notes score low). Recordings and
  clean conversions: about +2 dB; a fixed whistle (e.g. one noise pattern repeated per vocoded piece):
  +5 dB and more. A long held note, or a tune that keeps returning to notes sharing a harmonic (C, G and C' of a
  C-major tune all have one at 3.14 kHz), holds its harmonics too: +10..+19 dB on recordings.
  :func:`held_tone_over_source` reads a conversion against its source instead: off each signal's own notes'
  harmonics (from the F0) and above what the source holds where the output's frequency came from (after the
  transpose). Clean conversions: about +1..+4 dB; a whistle 30 dB under the singing: +6 dB and more.

:func:`artifact_metrics` computes all of them for one signal against a reference; the voicing masks come
from the reference so that both are measured on the same frames. All signals are mono (N,) float arrays.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

# Praat's autocorrelation settings for the second tracker.
PRAAT_FLOOR = 60.0
PRAAT_CEILING = 1100.0
GROSS_CENTS = 50.0
AUDIBLE_DB = 45.0  # a frame is audible when its RMS is within this many dB of the signal's loudest frames
TONE_ABOVE_HZ = 3000.0  # held tones are looked for above this (below it, held notes are tones too)
HIGHPASS_HZ = 100.0  # mains hum, rumble and DC below this would correlate at any lag; the buzz's harmonics pass


def _frame_rms_db(x: np.ndarray, hop: int, n_frames: int) -> np.ndarray:
    """RMS level (n_frames,) in dB of each hop-long frame of ``x`` (frame i = samples [i*hop, (i+1)*hop))."""
    x = np.pad(x, (0, max(0, n_frames * hop - len(x))))[: n_frames * hop].reshape(n_frames, hop)
    return 10 * np.log10(np.mean(x.astype(np.float64) ** 2, axis=1) + 1e-20)


def audible_frames(
    x: np.ndarray, hop: int, n_frames: int | None = None, below_peak_db: float = AUDIBLE_DB
) -> np.ndarray:
    """(n_frames,) bool: frames whose RMS is within ``below_peak_db`` of the 99th-percentile frame level."""
    n = len(x) // hop if n_frames is None else n_frames
    if n == 0:
        return np.zeros(0, bool)
    db = _frame_rms_db(x, hop, n)
    return db > np.percentile(db, 99) - below_peak_db


def _highpass(x: np.ndarray, sr: int, cutoff: float = HIGHPASS_HZ) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    if len(x) < 64:
        return np.asarray(x, np.float64)
    sos = butter(4, cutoff, btype="highpass", fs=sr, output="sos")
    return sosfiltfilt(sos, np.asarray(x, np.float64))


def frame_rate_periodicity(
    x: np.ndarray, sr: int, hop: int, mask: np.ndarray, window: int = 2048
) -> float:
    """Median normalised autocorrelation of ``x`` at lag ``hop`` over ``window``-sample windows centred on the
    frames where ``mask`` (n_frames,) is True (audible, unvoiced frames). NaN when no frame qualifies.

    The signal is high-passed at 100 Hz first (hum, rumble or DC would correlate at any lag; a pulse train's
    harmonics above its fundamental still repeat every hop). A frame-rate pulse
    train scores near 1; breath and consonant noise in a recording about 0.1-0.5.
    """
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return float("nan")
    y = _highpass(x, sr)
    vals = []
    for t in idx:
        c = t * hop + hop // 2
        a = c - window // 2
        if a < 0 or a + window + hop > len(y):
            continue
        u, v = y[a: a + window], y[a + hop: a + hop + window]
        den = np.sqrt(np.dot(u, u) * np.dot(v, v))
        if den > 0:
            vals.append(float(np.dot(u, v) / den))
    return float(np.median(vals)) if vals else float("nan")


def frame_rate_lines(
    x: np.ndarray, sr: int, hop: int, mask: np.ndarray, f0: np.ndarray | None = None, harmonics: int = 4,
    n_fft: int = 4096, near_hz: tuple[float, float] = (12.0, 40.0), clearance_hz: float = 45.0,
) -> list[float]:
    """Level in dB of the long-term spectrum of the ``mask`` frames (voiced frames) at ``k * sr / hop`` for
    k = 1..``harmonics``, relative to the floor there: the mean (in dB) of the medians of the bins
    ``near_hz[0]``..``near_hz[1]`` Hz below and above.

    With ``f0`` (n_frames,) Hz, the average for line k takes only frames whose own harmonics (of ``f0``) all
    stay ``clearance_hz`` away from it, so a held note that happens to sit on a multiple of 86 Hz is not
    mistaken for a line. A recording scores about -3..+3 dB; a stationary comb at the frame rate stands 10-30
    dB above its neighbours. NaN for a line no frame qualifies for.
    """
    x = np.asarray(x, np.float64)
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    bin_hz = sr / n_fft
    lines = np.arange(1, harmonics + 1) * sr / hop
    win = np.hanning(n_fft)
    acc = np.zeros((harmonics, n_fft // 2 + 1))
    count = np.zeros(harmonics)
    for t in np.flatnonzero(mask)[::2]:
        a = t * hop + hop // 2 - n_fft // 2
        if a < 0 or a + n_fft > len(x):
            continue
        ok = np.ones(harmonics, bool)
        if f0 is not None and f0[t] > 0:
            h = np.arange(1, int(lines[-1] / f0[t]) + 3) * f0[t]
            ok = np.abs(lines[:, None] - h[None, :]).min(axis=1) > clearance_hz
        if not ok.any():
            continue
        power = np.abs(np.fft.rfft(x[a: a + n_fft] * win)) ** 2
        acc[ok] += power
        count[ok] += 1
    out = []
    for k, f in enumerate(lines):
        if count[k] == 0:
            out.append(float("nan"))
            continue
        spec = acc[k] / count[k]
        line = spec[np.abs(freqs - f) <= 1.5 * bin_hz].max()
        dist = np.abs(freqs - f)
        ring = (dist >= near_hz[0]) & (dist <= near_hz[1])
        below, above = np.median(spec[ring & (freqs < f)]), np.median(spec[ring & (freqs > f)])
        base_db = 5 * (np.log10(below + 1e-30) + np.log10(above + 1e-30))  # a sloping floor: mean of both sides
        out.append(float(10 * np.log10(line + 1e-30) - base_db))
    return out


def voiced_hnr(x: np.ndarray, sr: int, hop: int, mask: np.ndarray) -> float:
    """Median harmonics-to-noise ratio (dB, Praat ``to_harmonicity_cc``) over the ``mask`` frames (voiced),
    frames Praat itself finds unvoiced (-200 dB) left out. NaN when none qualifies."""
    import parselmouth

    from canora.dsp.pitch import frame_times

    if not mask.any() or len(x) < sr * 0.1:
        return float("nan")
    h = parselmouth.Sound(np.asarray(x, np.float64), sampling_frequency=sr).to_harmonicity_cc(
        time_step=hop / sr, minimum_pitch=PRAAT_FLOOR
    )
    vals = np.asarray(h.values[0], np.float64)
    times = np.asarray(h.xs())
    if vals.size == 0:
        return float("nan")
    ft = frame_times(len(mask), sr, hop)
    idx = np.clip(np.searchsorted(times, ft), 0, len(times) - 1)
    per_frame = vals[idx]
    good = mask & (per_frame > -100) & (ft >= times[0]) & (ft <= times[-1])
    return float(np.median(per_frame[good])) if good.any() else float("nan")


def track_f0(x: np.ndarray, sr: int, hop: int, n_frames: int, tracker: str) -> np.ndarray:
    """F0 (n_frames,) Hz, 0 = unvoiced, by ``tracker`` ("harvest" or "praat"), without octave repair (repair
    would hide exactly the errors these metrics look for)."""
    from canora.dsp.pitch import extract_f0

    if tracker == "praat":
        return extract_f0(x, sr, hop, n_frames, method="parselmouth", f0_min=PRAAT_FLOOR, f0_max=PRAAT_CEILING,
                          repair_octaves=False)
    return extract_f0(x, sr, hop, n_frames, method=tracker, repair_octaves=False)


def gross_pitch_error(
    f0_ref: np.ndarray, f0_out: np.ndarray, transpose: float = 0.0, mask: np.ndarray | None = None
) -> float:
    """Share of frames voiced in both (and in ``mask``, when given) whose F0 differs by more than 50 cents after
    shifting ``f0_ref`` by ``transpose`` semitones. NaN when fewer than 2 frames qualify."""
    n = min(len(f0_ref), len(f0_out))
    ref = np.asarray(f0_ref[:n], np.float64) * 2 ** (transpose / 12)
    out = np.asarray(f0_out[:n], np.float64)
    both = (ref > 0) & (out > 0)
    if mask is not None:
        both &= np.asarray(mask[:n], bool)
    if both.sum() < 2:
        return float("nan")
    return float(np.mean(np.abs(1200 * np.log2(out[both] / ref[both])) > GROSS_CENTS))


#: the held-tone STFT: 2048 points (10.8 Hz bins at 22050 Hz), hop 256, Hann; a bin's floor is the median of 31 bins
TONE_N_FFT, TONE_HOP, TONE_NEIGHBOURS = 2048, 256, 31
#: a bin within this many bins of a harmonic's path through a frame's window is under the note (Hann main lobe)
HARMONIC_GUARD_BINS = 2.0
#: F0 tracks are read as uncertain by this fraction (about 17 cents) when placing the harmonics
F0_TOLERANCE = 0.003
#: a bin is judged off the notes only when at least this many audible frames leave it clear of every harmonic
MIN_CLEAR_FRAMES = 20
#: the source is read this far (cents, or 1.5 bins if wider) either side of the frequency an output tone maps to
SOURCE_MATCH_CENTS = 20.0


def _excess(x: np.ndarray, sr: int, lo_bin: int, f0: list[np.ndarray] | None = None
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """(excess, clear): ``excess`` (bins from ``lo_bin``, frames) float32, each STFT bin's level above the median of
    its neighbours frame by frame (``TONE_N_FFT`` points, hop ``TONE_HOP``); ``clear`` (same shape) bool, with
    ``f0`` (tracks of ``x``'s F0, (T,) Hz at hop ``TONE_HOP``, 0 = unvoiced), True where the frame is audible (within
    :data:`AUDIBLE_DB` of the loudest) and no harmonic of any track passes near the bin during the frame's window."""
    from scipy.ndimage import median_filter

    n_fft, hop, block = TONE_N_FFT, TONE_HOP, 256
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(x, np.float32), n_fft)[::hop]
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)[lo_bin:, None]
    first = max(0, lo_bin - TONE_NEIGHBOURS // 2)
    guard = HARMONIC_GUARD_BINS * sr / n_fft
    ranges = [_harmonic_ranges(f, len(frames), n_fft // hop) for f in (f0 or [])]
    if f0 is not None:
        level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-20)
        audible = level > np.percentile(level, 99) - AUDIBLE_DB
    excess, clear = [], []
    for i in range(0, len(frames), block):
        db = 20 * np.log10(np.abs(np.fft.rfft(frames[i: i + block] * window, axis=1)).T[first:] + 1e-9)
        excess.append((db - median_filter(db, size=(TONE_NEIGHBOURS, 1), mode="nearest"))[lo_bin - first:]
                      .astype(np.float32))
        if f0 is None:
            continue
        ok = np.broadcast_to(audible[i: i + block][None, :], excess[-1].shape).copy()
        for lo, hi in ranges:
            a, b = lo[i: i + block][None, :], hi[i: i + block][None, :]
            with np.errstate(divide="ignore", invalid="ignore"):
                top = np.floor((freqs + guard) / a)  # the highest harmonic that can reach the bin from below ...
                ok &= ~((a > 0) & (top >= 1) & (np.ceil(np.maximum(freqs - guard, 0) / b) <= top))  # ... and above
        clear.append(ok)
    empty = np.zeros((len(freqs), 0))
    return (np.concatenate(excess, axis=1) if excess else empty.astype(np.float32),
            (np.concatenate(clear, axis=1) if clear else empty.astype(bool)) if f0 is not None else None)


def _harmonic_ranges(f0: np.ndarray, frames: int, span: int) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) F0 (frames,) Hz voiced within each STFT frame's window (``span`` F0 frames from the
    frame's start), widened by :data:`F0_TOLERANCE`; 0 where nothing in the window is voiced."""
    from canora.dsp.level import running_min

    f = np.asarray(f0, np.float64)
    f = np.pad(f, (0, max(0, frames + span - len(f))))[: frames + span]
    voiced = f > 0
    lo = running_min(np.where(voiced, f, np.inf), 0, span - 1)[:frames]
    hi = -running_min(np.where(voiced, -f, 0.0), 0, span - 1)[:frames]
    lo = np.where(np.isfinite(lo), lo * (1 - F0_TOLERANCE), 0.0)
    return lo, np.where(lo > 0, hi * (1 + F0_TOLERANCE), 0.0)


def held_profile(x: np.ndarray, sr: int, above_hz: float = 0.0, f0: list[np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(freqs (F,) Hz, held (F,) dB, off_notes (F,) dB or None) of ``x`` (N,) at the bins above ``above_hz``: each
    bin's median over frames of its level above its neighbours (:func:`held_tone`), and with ``f0`` (tracks of
    ``x``'s own F0, (T,) Hz at hop 256) the same over only the audible frames in which no harmonic of the note passes
    the bin: a harmonic of the melody is left out wherever it is, a fixed tone stays (NaN for a bin with fewer than
    :data:`MIN_CLEAR_FRAMES` such frames). Empty when ``x`` is shorter than one frame."""
    freqs = np.fft.rfftfreq(TONE_N_FFT, 1 / sr)
    lo_bin = int(np.searchsorted(freqs, above_hz, side="right"))
    if len(x) < TONE_N_FFT or lo_bin >= len(freqs):
        return np.zeros(0), np.zeros(0), None if f0 is None else np.zeros(0)
    ex, clear = _excess(x, sr, lo_bin, f0)
    held = np.median(ex, axis=1).astype(np.float64)
    if clear is None:
        return freqs[lo_bin:], held, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: bins always under a harmonic
        off = np.nanmedian(np.where(clear, ex, np.nan), axis=1)
    return freqs[lo_bin:], held, np.where(clear.sum(axis=1) >= MIN_CLEAR_FRAMES, off, np.nan)


def held_tone(x: np.ndarray, sr: int, above_hz: float = TONE_ABOVE_HZ) -> tuple[float, float]:
    """(dB, Hz) of the strongest tone held through ``x`` (N,) above ``above_hz``: per STFT frame (2048 points,
    hop 256, Hann), each bin's level above the median of its 31 neighbours, then the median over frames. A
    harmonic that moves with the notes has a low median; a fixed tone keeps its excess (and so does a harmonic of
    a note held for most of the clip, or one the melody keeps returning to: :func:`held_tone_over_source` reads
    those against the source). (NaN, NaN) when ``x`` is shorter than one frame or no bin lies above ``above_hz``.
    Frames are taken a block at a time, so memory stays small for long songs."""
    freqs, held, _ = held_profile(x, sr, above_hz)
    if len(held) == 0:
        return float("nan"), float("nan")
    i = int(np.argmax(held))
    return float(held[i]), float(freqs[i])


def held_tone_over_source(
    out: np.ndarray, ref: np.ndarray, sr: int, transpose: float = 0.0, f0_out: list[np.ndarray] | None = None,
    f0_ref: list[np.ndarray] | None = None, above_hz: float = TONE_ABOVE_HZ,
) -> tuple[float, float]:
    """(dB, Hz) of the tone held through ``out`` (N,) above ``above_hz`` that its source ``ref`` (N,) does not hold:
    the largest, over the bins, of the output's held level minus the source's where that frequency came from.

    * The melody moves with the transpose: an output bin at ``f`` is read against the source at
      ``f / 2^(transpose / 12)`` (within :data:`SOURCE_MATCH_CENTS`), and only where the source holds more than its
      floor (0 dB) does it lower the output's figure.
    * With the F0 tracks (``f0_out`` of ``out``, ``f0_ref`` of ``ref``), each signal's held level is taken off its
      own notes' harmonics (:func:`held_profile`): the harmonics of a held note, which a transposed or brighter voice
      holds more strongly than the source did (an octave down, half of them have no counterpart in the source at
      all), are then not read as a tone. A bin that is under a harmonic in all but a few frames is not judged (a
      tone there is masked by the voice as much as it is hidden from the measure).

    A whistle the vocoder adds scores its own level above the neighbouring bins; the melody about +2 dB, as a
    recording does. (NaN, NaN) when ``out`` is shorter than one frame or no bin can be judged."""
    ratio = 2.0 ** (-transpose / 12.0)
    freqs, held, off = held_profile(out, sr, above_hz, f0_out)
    if len(held) == 0:
        return float("nan"), float("nan")
    if off is not None:
        held = off
        if not np.isfinite(held).any():
            return float("nan"), float("nan")
    low = above_hz * ratio * 2 ** (-SOURCE_MATCH_CENTS / 1200) - 2 * sr / TONE_N_FFT
    src_freqs, src_held, src_off = held_profile(ref, sr, max(0.0, low), f0_ref)
    if src_off is not None:
        src_held = np.where(np.isfinite(src_off), src_off, src_held)
    bin_hz = sr / TONE_N_FFT
    rel = np.empty(len(freqs))
    for i, f in enumerate(freqs * ratio):
        near = np.abs(src_freqs - f) <= max(1.5 * bin_hz, f * (2 ** (SOURCE_MATCH_CENTS / 1200) - 1))
        src = src_held[near][np.isfinite(src_held[near])]
        rel[i] = held[i] - max(float(src.max()) if len(src) else 0.0, 0.0)
    i = int(np.nanargmax(rel))
    return float(rel[i]), float(freqs[i])


@dataclass(frozen=True)
class ArtifactMetrics:
    """The waveform artifact metrics of one signal (see the module doc); NaN where no frame qualified."""

    frame_rate_periodicity: float  # median autocorrelation at lag = hop, audible unvoiced frames
    frame_rate_line_db: float  # max over k = 1..4 of the line level at k * sr / hop, voiced frames
    frame_rate_lines_db: tuple[float, ...]  # per k
    hnr_db: float  # median voiced harmonics-to-noise ratio
    gpe_harvest: float  # gross pitch error against the reference (NaN for the reference itself)
    gpe_praat: float
    held_tone_db: float = float("nan")  # the strongest tone held through the signal above 3 kHz
    held_tone_hz: float = float("nan")
    held_tone_over_source_db: float = float("nan")  # the same off the notes and over the source (NaN: not compared)
    held_tone_over_source_hz: float = float("nan")

    def to_dict(self) -> dict[str, float | list[float]]:
        d = asdict(self)
        d["frame_rate_lines_db"] = list(self.frame_rate_lines_db)
        return d


@dataclass(frozen=True)
class Masks:
    """Frame masks (n_frames,) taken from a reference signal, shared by every signal measured against it."""

    audible_unvoiced: np.ndarray
    voiced: np.ndarray
    f0_harvest: np.ndarray
    f0_praat: np.ndarray


def reference_masks(ref: np.ndarray, sr: int, hop: int) -> Masks:
    """Voicing (both trackers agree a frame is voiced, or that it is not) and audibility of ``ref`` (N,)."""
    n = len(ref) // hop
    f0_h = track_f0(ref, sr, hop, n, "harvest")
    f0_p = track_f0(ref, sr, hop, n, "praat")
    audible = audible_frames(ref, hop, n)
    voiced = (f0_h > 0) & (f0_p > 0) & audible
    unvoiced = (f0_h == 0) & (f0_p == 0) & audible
    return Masks(unvoiced, voiced, f0_h, f0_p)


def artifact_metrics(
    x: np.ndarray, sr: int, hop: int, masks: Masks, transpose: float = 0.0, is_reference: bool = False,
    tracks: tuple[np.ndarray, np.ndarray] | None = None,
) -> ArtifactMetrics:
    """All metrics of ``x`` (N,) on the frames of ``masks`` (from :func:`reference_masks` of the reference);
    gross pitch errors compare ``x``'s F0 with the reference's, shifted by ``transpose`` semitones.
    ``tracks``: ``x``'s own (harvest, Praat) F0 (:func:`track_f0`) when the caller has them already."""
    x = np.asarray(x, np.float64)
    n = len(masks.voiced)
    x = np.pad(x, (0, max(0, n * hop - len(x))))[: n * hop]
    lines = frame_rate_lines(x, sr, hop, masks.voiced, masks.f0_harvest * 2 ** (transpose / 12))
    if is_reference:
        gpe_h = gpe_p = float("nan")
    else:
        f0_h, f0_p = tracks or (track_f0(x, sr, hop, n, "harvest"), track_f0(x, sr, hop, n, "praat"))
        gpe_h = gross_pitch_error(masks.f0_harvest, f0_h, transpose, masks.voiced)
        gpe_p = gross_pitch_error(masks.f0_praat, f0_p, transpose, masks.voiced)
    return ArtifactMetrics(
        frame_rate_periodicity=frame_rate_periodicity(x, sr, hop, masks.audible_unvoiced),
        frame_rate_line_db=float(np.nanmax(lines)) if np.isfinite(lines).any() else float("nan"),
        frame_rate_lines_db=tuple(lines),
        hnr_db=voiced_hnr(x, sr, hop, masks.voiced),
        gpe_harvest=gpe_h,
        gpe_praat=gpe_p,
        **dict(zip(("held_tone_db", "held_tone_hz"), held_tone(x, sr), strict=True)),
    )


def compare(
    out: np.ndarray, ref: np.ndarray, sr: int, hop: int, transpose: float = 0.0
) -> tuple[ArtifactMetrics, ArtifactMetrics]:
    """(metrics of ``out``, metrics of ``ref``) on the reference's frames: read each beside the other."""
    from dataclasses import replace

    n = min(len(out), len(ref))
    out, ref = np.asarray(out[:n], np.float64), np.asarray(ref[:n], np.float64)
    masks = reference_masks(ref, sr, hop)
    frames = len(masks.voiced)
    tracks = (track_f0(out, sr, hop, frames, "harvest"), track_f0(out, sr, hop, frames, "praat"))
    m_out = artifact_metrics(out, sr, hop, masks, transpose, tracks=tracks)
    tone = held_tone_over_source(out, ref, sr, transpose, list(tracks), [masks.f0_harvest, masks.f0_praat])
    return (replace(m_out, held_tone_over_source_db=tone[0], held_tone_over_source_hz=tone[1]),
            artifact_metrics(ref, sr, hop, masks, is_reference=True))


# Tolerances of a clean output against its reference (issue targets): used by verdicts and tests.
TOLERANCE = {"frame_rate_periodicity": 0.1, "frame_rate_line_db": 3.0, "hnr_db": 3.0, "gpe": 0.05,
             "held_tone_db": 2.0}


def problems(out: ArtifactMetrics, ref: ArtifactMetrics) -> list[str]:
    """Human-readable findings where ``out`` is worse than ``ref`` by more than :data:`TOLERANCE`."""
    found = []
    if out.frame_rate_periodicity > ref.frame_rate_periodicity + TOLERANCE["frame_rate_periodicity"]:
        found.append(f"frame-rate buzz in unvoiced sounds (periodicity {out.frame_rate_periodicity:.2f} vs "
                     f"{ref.frame_rate_periodicity:.2f})")
    if out.frame_rate_line_db > max(ref.frame_rate_line_db, 0.0) + TOLERANCE["frame_rate_line_db"]:
        found.append(f"frame-rate lines under notes ({out.frame_rate_line_db:+.1f} dB vs "
                     f"{ref.frame_rate_line_db:+.1f})")
    if out.hnr_db < ref.hnr_db - TOLERANCE["hnr_db"]:
        found.append(f"noisy voiced sound (HNR {out.hnr_db:.1f} dB vs {ref.hnr_db:.1f})")
    if np.isfinite(out.held_tone_over_source_db):  # read against the source, off the notes' harmonics
        if out.held_tone_over_source_db > 2.0 + TOLERANCE["held_tone_db"]:
            found.append(f"a fixed tone at {out.held_tone_over_source_hz:.0f} Hz ({out.held_tone_over_source_db:+.1f} "
                         "dB above its neighbours, more than the source holds there)")
    elif out.held_tone_db > max(ref.held_tone_db, 2.0) + TOLERANCE["held_tone_db"]:
        found.append(f"a fixed tone at {out.held_tone_hz:.0f} Hz ({out.held_tone_db:+.1f} dB above its "
                     f"neighbours vs {ref.held_tone_db:+.1f})")
    for name, v in (("harvest", out.gpe_harvest), ("Praat", out.gpe_praat)):
        if v > TOLERANCE["gpe"]:
            found.append(f"pitch off by > 50 cents in {100 * v:.0f} % of frames ({name})")
    return found
