"""Objective metrics shared by tests, benchmarks and reports."""

from __future__ import annotations

import numpy as np

from canora.dsp.mel import MelSpec, wav_to_mel

LOUD_MARGIN = 4.0  # a frame counts as "louder than the floor" when its loudest bin is this far above it (ln units)


def loud_frames(mel: np.ndarray, spec: MelSpec, margin: float = LOUD_MARGIN) -> np.ndarray:
    """Boolean (T,) mask of frames of ``mel`` (n_mels, T) whose loudest bin is ``margin`` above the log floor."""
    return mel.max(axis=0) > spec.log_floor + margin


def mel_cycle_error(mel: np.ndarray, wav: np.ndarray, spec: MelSpec) -> float:
    """Mean |mel - mel(wav)| over frames of ``mel`` louder than the floor (log-mel units).

    ``mel`` (n_mels, T) is what a vocoder was given, ``wav`` (T * hop,) what it produced. A vocoder that
    reproduces its input scores ~0.3-0.6 on material it knows; a collapsed one scores > 1.5.
    """
    got = wav_to_mel(np.asarray(wav, dtype=np.float32), spec)
    n = min(mel.shape[1], got.shape[1])
    a, b = mel[:, :n], got[:, :n]
    mask = loud_frames(a, spec)
    if not mask.any():
        return float("nan")
    return float(np.abs(a - b)[:, mask].mean())


#: frequency bands (Hz) of :func:`harmonic_detail`
DETAIL_BANDS: tuple[tuple[float, float], ...] = ((0.0, 1000.0), (1000.0, 2000.0), (2000.0, 4000.0), (4000.0, 8000.0))


def harmonic_detail(
    mel: np.ndarray, voiced: np.ndarray, spec: MelSpec, bands: tuple[tuple[float, float], ...] = DETAIL_BANDS
) -> list[float]:
    """Harmonic structure of a log-mel (n_mels, T) in its ``voiced`` (T,) frames, per frequency band: the mean
    |second difference along frequency| of the log-mel (ln units), over the bins whose centre lies in the band.

    Resolved harmonics make the mel ripple from band to band; a mel smoothed by a model is flat. Depends on
    pitch (higher notes resolve further up), so compare mels of similar pitch ranges: a refined mel against real
    recordings of the target singer. NaN for a band without bins or voiced frames.

    It cannot tell harmonics from noise where a mel band is wider than the harmonic spacing (4-8 kHz below about
    300 Hz): there a noise band ripples *more* than clean harmonics do. Judge the audio there with
    :func:`canora.dsp.harmonics.harmonic_contrast`.
    """
    import librosa

    voiced = np.asarray(voiced, bool)[: mel.shape[1]]
    centres = librosa.mel_frequencies(n_mels=spec.n_mels + 2, fmin=spec.fmin, fmax=spec.fmax_hz,
                                      htk=spec.mel_scale == "htk")[1:-1]
    d2 = np.abs(mel[2:] - 2 * mel[1:-1] + mel[:-2])[:, : len(voiced)]
    c = centres[1:-1]
    out = []
    for lo, hi in bands:
        rows = (c >= lo) & (c < hi)
        out.append(float(d2[rows][:, voiced].mean()) if rows.any() and voiced.any() else float("nan"))
    return out
