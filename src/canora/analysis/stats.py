"""Distribution statistics of mel sets: per-band mean/std, pooled histograms, per-band 1-D Wasserstein distance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class BandStats:
    """Per-band statistics of a set of (n_mels, T) mels, pooled over all frames of all files."""

    mean: np.ndarray  # (n_mels,)
    std: np.ndarray  # (n_mels,)
    frames: int


def pool(mels: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate (n_mels, T_i) mels along time -> (n_mels, sum T_i) float64."""
    if not mels:
        raise ValueError("no mels to pool")
    return np.concatenate([np.asarray(m, dtype=np.float64) for m in mels], axis=1)


def band_stats(mels: Sequence[np.ndarray]) -> BandStats:
    x = pool(mels)
    return BandStats(x.mean(axis=1), x.std(axis=1), x.shape[1])


def wasserstein_1d(a: np.ndarray, b: np.ndarray, quantiles: int = 512) -> float:
    """1-D Wasserstein-1 distance between two samples (same units as the values), via matched quantiles."""
    q = (np.arange(quantiles) + 0.5) / quantiles
    return float(np.mean(np.abs(np.quantile(a, q) - np.quantile(b, q))))


def band_wasserstein(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
    """(n_mels,) Wasserstein-1 distance between the value distributions of each band in set ``a`` and ``b``."""
    pa, pb = pool(a), pool(b)
    if pa.shape[0] != pb.shape[0]:
        raise ValueError(f"band counts differ: {pa.shape[0]} vs {pb.shape[0]}")
    return np.array([wasserstein_1d(pa[i], pb[i]) for i in range(pa.shape[0])])


def histogram(mels: Sequence[np.ndarray], edges: np.ndarray) -> np.ndarray:
    """Density histogram of all values of all mels over ``edges`` -> (len(edges) - 1,)."""
    h, _ = np.histogram(pool(mels).ravel(), bins=edges, density=True)
    return h


def common_edges(a: Sequence[np.ndarray], b: Sequence[np.ndarray], bins: int = 80) -> np.ndarray:
    """Histogram edges covering both sets (0.1th to 99.9th percentile, then the extremes clipped into range)."""
    both = np.concatenate([pool(a).ravel(), pool(b).ravel()])
    lo, hi = np.percentile(both, [0.1, 99.9])
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, bins + 1)


def top_bands(distance: np.ndarray, k: int = 5) -> list[int]:
    """Indices of the ``k`` bands with the largest distance, largest first."""
    return [int(i) for i in np.argsort(distance)[::-1][:k]]
