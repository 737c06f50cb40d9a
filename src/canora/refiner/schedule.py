"""The refiner's noise schedule and prediction types, torch-free (see :mod:`canora.refiner.diffusion` for the
timestep semantics and the training objective). The schedule is numpy float64; its torch views
(:attr:`NoiseSchedule.alphas_cumprod` etc.) import torch on first use, so ONNX Runtime inference never does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from canora.errors import CanoraError

if TYPE_CHECKING:
    from torch import Tensor

PREDICTION_TYPES = ("epsilon", "v")
DEFAULT_PREDICTION_TYPE = "v"
SCHEDULE_KINDS = ("linear", "cosine", "scaled_linear")

Array = TypeVar("Array")

#: how the training loss weighs timesteps (:func:`canora.refiner.diffusion.loss_weights`): Min-SNR or plain MSE
LOSS_WEIGHTINGS = ("min_snr", "none")


def check_prediction_type(prediction_type: str) -> str:
    """Return ``prediction_type`` if it is known, else raise :class:`CanoraError`."""
    if prediction_type not in PREDICTION_TYPES:
        raise CanoraError(f"unknown prediction type {prediction_type!r}; expected one of {PREDICTION_TYPES}")
    return prediction_type


def _betas(kind: str, n: int) -> np.ndarray:
    """Betas for steps ``1..n`` (float64, shape (n,))."""
    if kind == "linear":  # DDPM's 1e-4..0.02 for T=1000, rescaled so other T keep the same end point.
        scale = 1000.0 / n
        return np.linspace(1e-4 * scale, 0.02 * scale, n, dtype=np.float64)
    if kind == "scaled_linear":  # Stable Diffusion / LDM: linear in sqrt(beta).
        return np.linspace(0.00085**0.5, 0.012**0.5, n, dtype=np.float64) ** 2
    # cosine (Nichol & Dhariwal 2021), s = 0.008, betas clipped at 0.999.
    steps = np.arange(n + 1, dtype=np.float64) / n
    f = np.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
    return np.minimum(1 - f[1:] / f[:-1], 0.999)


@dataclass(frozen=True)
class NoiseSchedule:
    """A variance-preserving noise schedule; arrays have ``T + 1`` float64 entries indexed by ``t``.

    ``betas[0] = 0`` and ``alphas_cumprod[0] = 1`` (t = 0 is clean data); ``alphas_cumprod`` decreases
    strictly to ``alphas_cumprod[T] > 0``. ``acp`` is ``alphas_cumprod`` as numpy; the tensor properties are
    torch views of the same numbers.
    """

    kind: str = "linear"
    num_train_timesteps: int = 1000
    betas_np: np.ndarray = field(init=False, repr=False, compare=False)
    acp: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise CanoraError(f"unknown noise schedule {self.kind!r}; expected one of {SCHEDULE_KINDS}")
        if (
            isinstance(self.num_train_timesteps, bool)
            or not isinstance(self.num_train_timesteps, int)
            or (self.num_train_timesteps < 2)
        ):
            raise CanoraError(f"num_train_timesteps must be an integer >= 2, got {self.num_train_timesteps!r}")
        betas = np.concatenate([[0.0], _betas(self.kind, self.num_train_timesteps)])
        if not bool(((betas[1:] > 0) & (betas[1:] < 1)).all()):
            raise CanoraError(
                f"{self.kind} schedule is invalid for num_train_timesteps={self.num_train_timesteps} "
                "(betas leave (0, 1)); use more timesteps"
            )
        betas.setflags(write=False)
        acp = np.cumprod(1 - betas)
        acp.setflags(write=False)
        object.__setattr__(self, "betas_np", betas)
        object.__setattr__(self, "acp", acp)

    @property
    def betas(self) -> Tensor:
        """Betas (T + 1,) float64 tensor."""
        import torch

        return torch.tensor(self.betas_np)

    @property
    def alphas_cumprod(self) -> Tensor:
        """Cumulative products of ``1 - beta``, (T + 1,) float64 tensor."""
        import torch

        return torch.tensor(self.acp)

    @property
    def alphas(self) -> Tensor:
        """``sqrt(alphas_cumprod)``: the signal scale ``a_t``, shape (T + 1,)."""
        return self.alphas_cumprod.sqrt()

    @property
    def sigmas(self) -> Tensor:
        """``sqrt(1 - alphas_cumprod)``: the noise scale ``s_t``, shape (T + 1,)."""
        return (1 - self.alphas_cumprod).sqrt()

    @property
    def log_snr(self) -> Tensor:
        """``log(a_t^2 / s_t^2)``, shape (T + 1,); ``+inf`` at t = 0."""
        return self.alphas_cumprod.log() - (1 - self.alphas_cumprod).log()

    def check_timestep(self, t: int) -> int:
        """``t`` if it is a level ``0..T``, else :class:`CanoraError`."""
        if not 0 <= int(t) <= self.num_train_timesteps:
            raise CanoraError(f"timestep out of range 0..{self.num_train_timesteps}: {int(t)}")
        return int(t)

    def scalars(self, t: int) -> tuple[float, float]:
        """``(a_t, s_t)`` of one level ``t`` as Python floats (any array type multiplies by them)."""
        acp = float(self.acp[self.check_timestep(t)])
        return math.sqrt(acp), math.sqrt(1.0 - acp)

    def alpha_sigma(self, t: Tensor | int, like: Tensor) -> tuple[Tensor, Tensor]:
        """``(a_t, s_t)`` in ``like``'s dtype/device, broadcastable to ``like`` (B, ...) (torch).

        ``t`` is an int (same level for the batch) or a (B,) integer tensor, each in ``0..T``.
        """
        import torch

        t = torch.as_tensor(t, dtype=torch.long)
        if bool((t < 0).any()) or bool((t > self.num_train_timesteps).any()):
            raise CanoraError(f"timestep out of range 0..{self.num_train_timesteps}: {t.tolist()}")
        acp = self.alphas_cumprod[t.cpu()]
        if acp.ndim == 1:
            acp = acp.view(-1, *([1] * (like.ndim - 1)))
        acp = acp.to(device=like.device)
        return acp.sqrt().to(like.dtype), (1 - acp).sqrt().to(like.dtype)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description, stored with a model."""
        return {"kind": self.kind, "num_train_timesteps": self.num_train_timesteps}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NoiseSchedule:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(d) - {"kind", "num_train_timesteps"}
        if unknown:
            raise CanoraError(f"unknown noise schedule keys {sorted(unknown)}")
        return cls(**d)


def x0_eps_from_output(model_output: Array, x_t: Array, a: Any, s: Any, prediction_type: str) -> tuple[Array, Array]:
    """``(x0_pred, eps_pred)`` from a denoiser output at ``x_t = a * x0 + s * eps`` (numpy or torch; ``a``, ``s``
    scalars or broadcastable arrays)."""
    if check_prediction_type(prediction_type) == "epsilon":
        return (x_t - s * model_output) / a, model_output
    return a * x_t - s * model_output, s * x_t + a * model_output
