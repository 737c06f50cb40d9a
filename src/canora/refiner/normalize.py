"""Mel normalisation for the diffusion space: log-mel <-> roughly [-1, 1], stored with the model.

Two kinds, both a per-bin affine map ``x = 2 * (mel - lo) / (hi - lo) - 1``:

* ``"fixed"`` (the default): ``lo`` = the MelSpec's log floor (ln 1e-5 = -11.51 for HiFi-GAN mels) and
  ``hi`` = +2 in ln units (the DDSP-SVC / so-vits-svc range -12..2, with the exact floor). Chosen because
  silence maps to exactly -1 in every bin; the space does not depend on the training data, so models
  trained on different singers or fine-tuned on new data share it; and with minutes of data a per-bin
  maximum is set by a few outlier frames, while a narrow per-bin range in the quiet top bins blows a
  brighter source singer's values far outside [-1, 1] there (the diffusion noise then swamps them less
  evenly across bins).
* ``"per_bin"`` (Diff-SVC, Amphion): ``lo``/``hi`` = per-bin min/max of the training mels (with a minimum
  range), available for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from canora.dsp.mel import MelSpec
from canora.errors import CheckpointError

if TYPE_CHECKING:
    from torch import Tensor

Array = TypeVar("Array", np.ndarray, "Tensor")

NORM_KINDS = ("fixed", "per_bin")
FIXED_TOP_LN = 2.0  # ln-magnitude headroom above any real HiFi-GAN mel value
MIN_RANGE_LN = 1.0  # per-bin ranges narrower than this (in ln units) are widened


def _ln_to_spec_units(value_ln: float, spec: MelSpec) -> float:
    """A ln-magnitude amount in ``spec``'s units (log10 and/or power mels scale it)."""
    v = value_ln * (2.0 if spec.power == 2.0 else 1.0)
    return v / math.log(10.0) if spec.log_base == "10" else v


@dataclass(frozen=True)
class MelNormalizer:
    """Per-bin affine map between log-mel values and the diffusion space. ``lo``/``hi``: (n_mels,) floats;
    ``floor``: the MelSpec's log floor, below which denormalised values are clamped."""

    kind: str
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    floor: float

    def __post_init__(self) -> None:
        if self.kind not in NORM_KINDS:
            raise CheckpointError(f"unknown mel normalisation {self.kind!r}; expected one of {NORM_KINDS}")
        if len(self.lo) != len(self.hi) or not self.lo:
            raise CheckpointError("mel normalisation: lo and hi need the same non-zero length")
        if any(not (h > lo) for lo, h in zip(self.lo, self.hi)):
            raise CheckpointError("mel normalisation: every hi must be greater than its lo")

    @property
    def n_mels(self) -> int:
        return len(self.lo)

    @classmethod
    def fixed(cls, spec: MelSpec) -> MelNormalizer:
        """Floor -> -1, floor + (2 - ln 1e-5) ln-units -> +1, the same in every bin."""
        lo, hi = spec.log_floor, _ln_to_spec_units(FIXED_TOP_LN, spec)
        return cls("fixed", (lo,) * spec.n_mels, (hi,) * spec.n_mels, lo)

    @classmethod
    def per_bin(cls, mels: Iterable[np.ndarray], spec: MelSpec) -> MelNormalizer:
        """Per-bin min/max over ``mels`` (each (n_mels, T)), ranges widened to at least 1 ln unit."""
        lo = np.full(spec.n_mels, np.inf)
        hi = np.full(spec.n_mels, -np.inf)
        for m in mels:
            lo = np.minimum(lo, m.min(axis=1))
            hi = np.maximum(hi, m.max(axis=1))
        if not np.isfinite(lo).all():
            raise CheckpointError("mel normalisation: no training mels to take per-bin statistics from")
        lo = np.maximum(lo, spec.log_floor)
        min_range = _ln_to_spec_units(MIN_RANGE_LN, spec)
        hi = np.maximum(hi, lo + min_range)
        return cls("per_bin", tuple(float(x) for x in lo), tuple(float(x) for x in hi), spec.log_floor)

    def _lo_hi(self, like: Array) -> tuple[Array, Array]:
        """(lo, hi) as (n_mels, 1) columns in ``like``'s kind of array (numpy, or torch on its device), dtype."""
        if isinstance(like, np.ndarray):
            return (np.asarray(self.lo, like.dtype)[:, None], np.asarray(self.hi, like.dtype)[:, None])
        import torch

        lo = torch.tensor(self.lo, dtype=like.dtype, device=like.device)[:, None]
        hi = torch.tensor(self.hi, dtype=like.dtype, device=like.device)[:, None]
        return lo, hi

    def normalize(self, mel: Array) -> Array:
        """Log-mel (..., n_mels, T) -> diffusion space (same shape); numpy or torch."""
        lo, hi = self._lo_hi(mel)
        return (mel - lo) / (hi - lo) * 2.0 - 1.0

    def denormalize(self, x: Array) -> Array:
        """Diffusion space (..., n_mels, T) -> log-mel, clamped below at the MelSpec's floor (as a real mel is);
        numpy or torch."""
        lo, hi = self._lo_hi(x)
        out = (x + 1.0) * 0.5 * (hi - lo) + lo
        if isinstance(out, np.ndarray):
            return np.maximum(out, out.dtype.type(self.floor))
        return out.clamp(min=self.floor)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "lo": list(self.lo), "hi": list(self.hi), "floor": self.floor}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MelNormalizer:
        unknown = set(d) - {"kind", "lo", "hi", "floor"}
        if unknown:
            raise CheckpointError(f"mel normalisation has unknown keys {sorted(unknown)}; written by a newer canora?")
        lo, hi = (tuple(float(x) for x in d[k]) for k in ("lo", "hi"))
        floor = float(d["floor"])
        if not all(math.isfinite(x) for x in (*lo, *hi, floor)):
            raise CheckpointError("mel normalisation holds NaN or infinity; re-export the model")
        return cls(str(d["kind"]), lo, hi, floor)
