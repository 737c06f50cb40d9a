"""Loudness per frame on the HiFi-GAN frame grid: A-weighted (or plain RMS) level in dB."""

from __future__ import annotations

import numpy as np

from canora.dsp.stft import _fit_frames, check_wav, stft_power
from canora.errors import CanoraError

LOUDNESS_FLOOR_DB = -100.0


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
    ``n_fft`` defaults to 4 * hop (1024 for the HiFi-GAN hop 256). Silence is floored at ``floor_db``.
    """
    x = check_wav(wav, sr, hop)
    if kind not in ("a_weighted", "rms"):
        raise CanoraError(f"unknown loudness kind {kind!r}; choose 'a_weighted' or 'rms'")
    n_fft = int(n_fft or 4 * hop)
    power = stft_power(x, hop, n_fft)
    weight = np.full(power.shape[0], 2.0)  # one-sided spectrum: every bin but DC and Nyquist counts twice
    weight[0] = 1.0
    if n_fft % 2 == 0:
        weight[-1] = 1.0
    if kind == "a_weighted":
        import librosa

        freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
        weight *= 10.0 ** (librosa.A_weighting(np.maximum(freqs, 1e-3), min_db=None) / 10.0)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    ms = (weight @ power) / (n_fft * np.sum(win**2))  # Parseval: mean square of the windowed frame
    db = np.maximum(10.0 * np.log10(np.maximum(ms, 1e-30)), floor_db).astype(np.float32)
    return _fit_frames(db, len(wav) // hop if n_frames is None else int(n_frames))
