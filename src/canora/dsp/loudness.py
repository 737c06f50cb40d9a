"""Loudness per frame on the HiFi-GAN frame grid: A-weighted (or plain RMS) level in dB; a song's level against a
singer's (:func:`choose_level`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from canora.dsp.stft import _fit_frames, check_wav, stft_power
from canora.errors import CanoraError

LOUDNESS_FLOOR_DB = -100.0
LOUDNESS_KINDS = ("a_weighted", "rms")


def loudness(
    wav: np.ndarray,
    sr: int,
    hop: int,
    n_frames: int | None = None,
    kind: str = "a_weighted",
    n_fft: int | None = None,
    floor_db: float = LOUDNESS_FLOOR_DB,
) -> np.ndarray:
    """Level per frame (n_frames,) float32 in dB re full scale; ``n_frames`` defaults to ``len(wav) // hop``.

    ``kind="a_weighted"``: A-weighted mean-square power of the Hann-windowed frame; ``"rms"``: unweighted.
    Both read the level of a sine of amplitude A at 1 kHz as 20 log10(A / sqrt 2) (about -3 dB at A = 1).
    ``n_fft`` defaults to :func:`loudness_n_fft` (1024 for the HiFi-GAN hop 256). Silence is floored at
    ``floor_db``.
    """
    x = check_wav(wav, sr, hop)
    _check_kind(kind)
    n_fft = int(n_fft or loudness_n_fft(hop))
    db = loudness_from_power(stft_power(x, hop, n_fft), sr, n_fft, kind, floor_db)
    return _fit_frames(db, len(wav) // hop if n_frames is None else int(n_frames))


def a_weighting_db(freqs: np.ndarray) -> np.ndarray:
    """The A-weighting curve (IEC 61672-1) in dB at ``freqs`` Hz (any shape, > 0), float64: 0 dB at 1 kHz.

    The pole frequencies are the standard's 20.6, 107.7, 737.9 and 12194 Hz; the +2.0 dB normalises 1 kHz.
    (The numbers of ``librosa.A_weighting``, computed in the same order, without importing librosa.)"""
    f_sq = np.asarray(freqs, dtype=np.float64) ** 2.0
    p1, p2, p3, p4 = np.array([12194.217, 20.598997, 107.65265, 737.86223]) ** 2.0
    return 2.0 + 20.0 * (np.log10(p1) + 2 * np.log10(f_sq) - np.log10(f_sq + p1) - np.log10(f_sq + p2)
                         - 0.5 * np.log10(f_sq + p3) - 0.5 * np.log10(f_sq + p4))


def loudness_n_fft(hop: int) -> int:
    """The default STFT size of :func:`loudness`: 4 * hop."""
    return 4 * hop


def loudness_from_power(
    power: np.ndarray, sr: int, n_fft: int, kind: str = "a_weighted", floor_db: float = LOUDNESS_FLOOR_DB
) -> np.ndarray:
    """:func:`loudness` (T,) float32 dB of a power spectrogram (n_fft // 2 + 1, T) on the HiFi-GAN grid
    (:func:`canora.dsp.stft.stft_power` or ``hifigan_power``, periodic Hann of ``n_fft``)."""
    _check_kind(kind)
    weight = np.full(power.shape[0], 2.0)  # one-sided spectrum: every bin but DC and Nyquist counts twice
    weight[0] = 1.0
    if n_fft % 2 == 0:
        weight[-1] = 1.0
    if kind == "a_weighted":
        freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
        weight *= 10.0 ** (a_weighting_db(np.maximum(freqs, 1e-3)) / 10.0)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    ms = (weight @ np.asarray(power, dtype=np.float64)) / (n_fft * np.sum(win**2))  # Parseval: frame mean square
    return np.maximum(10.0 * np.log10(np.maximum(ms, 1e-30)), floor_db).astype(np.float32)


def _check_kind(kind: str) -> None:
    if kind not in LOUDNESS_KINDS:
        raise CanoraError(f"unknown loudness kind {kind!r}; choose 'a_weighted' or 'rms'")


# ------------------------------------------------------------ recording level
#: the level a song is conditioned at, above the singer's median voiced level (dB). Measured: singer similarity of
#: conversions into PJS (PJS's own held-out songs and 5 clips of other singers, each refined at -10..+10 dB
#: around her median) was 0.007-0.015 higher at +5 than at +0 on 5 of 7 clips and within 0.002 on the other two;
#: it peaked at +5 on 3, near it on 2, and was still rising at +10 on two loud choir recordings
LEVEL_ABOVE_MEDIAN_DB = 5.0
#: the largest gain a song is moved by (dB): beyond it the recording is near silence or far into clipping
MAX_LEVEL_GAIN_DB = 40.0


@dataclass(frozen=True)
class LevelChoice:
    """The gain (dB) that puts a song's voiced level on the singer's, and the two levels it came from.

    A recording's level is set by the microphone and the gain knob, not by how the singer sang, but a refiner
    conditioned on absolute loudness reads a quiet recording as soft singing (PJS's own song 087, converted
    into PJS 20 dB quieter than recorded, scores singer similarity 0.85 instead of 0.93). The conversion
    therefore sees the song as if recorded at the singer's usual level (``target_db``: the singer's median
    plus :data:`LEVEL_ABOVE_MEDIAN_DB`); its dynamics are kept. The refined mel is vocoded at that level too (the
    vocoder renders the singer best at her own level: vocoded at the recording's level instead, the 9-clip sweep's
    similarity fell from 0.827 to 0.822, a quiet recording's from 0.842 to 0.793) and the audio is then moved back
    by the gain, so the output has the recording's own level.
    """

    gain_db: float
    source_db: float  # median A-weighted loudness of the song's voiced frames
    singer_db: float  # the same over the singer's training recordings
    target_db: float  # the level the song is moved to

    @property
    def reason(self) -> str:
        capped = abs(self.target_db - self.source_db - self.gain_db) > 1e-6
        return (f"{self.gain_db:+.1f} dB: the song's voiced level {self.source_db:.1f} dB to {self.target_db:.1f} "
                f"dB (the singer's median {self.singer_db:.1f} dB {self.target_db - self.singer_db:+g})"
                + (f"; capped at {MAX_LEVEL_GAIN_DB:g} dB" if capped else ""))

    def to_dict(self) -> dict[str, float | str]:
        return {**asdict(self), "reason": self.reason}


def voiced_level_db(loudness_db: np.ndarray, voiced: np.ndarray) -> float:
    """Median of ``loudness_db`` (T,) over the ``voiced`` (T,) frames; :class:`CanoraError` if none is voiced."""
    loudness_db, voiced = np.asarray(loudness_db, np.float64), np.asarray(voiced, bool)
    if loudness_db.shape != voiced.shape:
        raise CanoraError(f"loudness {loudness_db.shape} and voicing {voiced.shape} differ in length")
    if not voiced.any():
        raise CanoraError("no voiced frame to measure the level on")
    return float(np.median(loudness_db[voiced]))


def choose_level(
    loudness_db: np.ndarray, voiced: np.ndarray, singer_db: float, above_db: float = LEVEL_ABOVE_MEDIAN_DB
) -> LevelChoice:
    """The :class:`LevelChoice` that moves the voiced level of ``loudness_db`` (T,) dB to ``singer_db`` (the
    singer's median voiced level) + ``above_db``, by at most :data:`MAX_LEVEL_GAIN_DB` either way."""
    if not (np.isfinite(singer_db) and np.isfinite(above_db)):
        raise CanoraError(f"levels must be finite numbers of dB, got {singer_db!r} and {above_db!r}")
    source = voiced_level_db(loudness_db, voiced)
    target = float(singer_db + above_db)
    gain = float(np.clip(target - source, -MAX_LEVEL_GAIN_DB, MAX_LEVEL_GAIN_DB))
    return LevelChoice(gain, source, float(singer_db), target)
