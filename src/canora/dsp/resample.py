"""Sample-rate conversion (soxr, very high quality), the one resampler every stage uses."""

from __future__ import annotations

import numpy as np


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """High-quality (soxr VHQ) resampling of (T,) float audio -> (T * sr_out / sr_in,) float32."""
    if sr_in == sr_out:
        return wav
    import soxr

    return soxr.resample(wav, sr_in, sr_out, quality="VHQ").astype(np.float32, copy=False)
