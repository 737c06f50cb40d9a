"""Objective metrics shared by tests, benchmarks and reports (DESIGN.md section 5)."""

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
