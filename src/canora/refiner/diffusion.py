"""Noise schedule and training objective of the Diffusion Mel Refiner (variance-preserving diffusion).

Timestep semantics: an integer ``t`` in ``0..T`` (``T = num_train_timesteps``) counts noising steps, and
``t = 0`` is the clean sample: ``alphas_cumprod[0] == 1`` exactly, so ``q_sample(x0, noise, 0) == x0``.
Training draws ``t`` uniformly from ``1..T``; samplers step down from ``t_start <= T`` to ``0``. Every
schedule tensor therefore has ``T + 1`` entries, indexed directly by ``t``. With ``a = sqrt(alphas_cumprod[t])``
and ``s = sqrt(1 - alphas_cumprod[t])``: ``x_t = a * x0 + s * eps``.

Prediction type: the denoiser predicts either ``eps`` (the noise) or ``v = a * eps - s * x0``
(Salimans & Ho 2022). The default is **"v"**, because

* every sampler here (DDIM, DPM-Solver++, the DDPM posterior) works from the clean-data estimate, and
  ``x0 = a * x_t - s * v`` is well conditioned at every noise level, whereas from eps
  ``x0 = (x_t - s * eps) / a`` multiplies the model's error by ``1 / a`` (about 150 at ``t = T`` of the
  linear schedule). Few-step sampling (4-10 steps) and full-strength refinement take their first and largest
  step exactly there, so v gives much better early x0 estimates;
* shallow diffusion (``strength`` < 1) still works at mid noise, where both targets are equally easy;
* the plain MSE on v weights the x0 error by ``SNR + 1``, a balanced weighting that neither ignores high
  noise (like x0 prediction) nor over-weights low noise (like eps, weight ``SNR``), and v stays usable
  with a schedule that reaches zero terminal SNR.

Eps prediction remains available for models trained that way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from canora.errors import CanoraError

__all__ = [
    "DEFAULT_PREDICTION_TYPE",
    "PREDICTION_TYPES",
    "SCHEDULE_KINDS",
    "DenoiserFn",
    "NoiseSchedule",
    "check_prediction_type",
    "model_output_to_x0_eps",
    "q_sample",
    "sample_train_timesteps",
    "training_loss",
    "training_target",
]

PREDICTION_TYPES = ("epsilon", "v")
DEFAULT_PREDICTION_TYPE = "v"
SCHEDULE_KINDS = ("linear", "cosine", "scaled_linear")

#: The denoiser contract: ``model(x_t (B, n_mels, T), t (B,) long, **cond) -> (B, n_mels, T)``.
DenoiserFn = Callable[..., Tensor]


def check_prediction_type(prediction_type: str) -> str:
    """Return ``prediction_type`` if it is known, else raise :class:`CanoraError`."""
    if prediction_type not in PREDICTION_TYPES:
        raise CanoraError(f"unknown prediction type {prediction_type!r}; expected one of {PREDICTION_TYPES}")
    return prediction_type


def _betas(kind: str, n: int) -> Tensor:
    """Betas for steps ``1..n`` (float64, shape (n,))."""
    if kind == "linear":  # DDPM's 1e-4..0.02 for T=1000, rescaled so other T keep the same end point.
        scale = 1000.0 / n
        return torch.linspace(1e-4 * scale, 0.02 * scale, n, dtype=torch.float64)
    if kind == "scaled_linear":  # Stable Diffusion / LDM: linear in sqrt(beta).
        return torch.linspace(0.00085**0.5, 0.012**0.5, n, dtype=torch.float64) ** 2
    # cosine (Nichol & Dhariwal 2021), s = 0.008, betas clipped at 0.999.
    steps = torch.arange(n + 1, dtype=torch.float64) / n
    f = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=0.999)


@dataclass(frozen=True)
class NoiseSchedule:
    """A variance-preserving noise schedule; tensors have ``T + 1`` float64 entries indexed by ``t``.

    ``betas[0] = 0`` and ``alphas_cumprod[0] = 1`` (t = 0 is clean data); ``alphas_cumprod`` decreases
    strictly to ``alphas_cumprod[T] > 0``.
    """

    kind: str = "linear"
    num_train_timesteps: int = 1000
    betas: Tensor = field(init=False, repr=False, compare=False)
    alphas_cumprod: Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise CanoraError(f"unknown noise schedule {self.kind!r}; expected one of {SCHEDULE_KINDS}")
        if (
            isinstance(self.num_train_timesteps, bool)
            or not isinstance(self.num_train_timesteps, int)
            or (self.num_train_timesteps < 2)
        ):
            raise CanoraError(f"num_train_timesteps must be an integer >= 2, got {self.num_train_timesteps!r}")
        betas = torch.cat([torch.zeros(1, dtype=torch.float64), _betas(self.kind, self.num_train_timesteps)])
        if not bool(((betas[1:] > 0) & (betas[1:] < 1)).all()):
            raise CanoraError(
                f"{self.kind} schedule is invalid for num_train_timesteps={self.num_train_timesteps} "
                "(betas leave (0, 1)); use more timesteps"
            )
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alphas_cumprod", torch.cumprod(1 - betas, 0))

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

    def alpha_sigma(self, t: Tensor | int, like: Tensor) -> tuple[Tensor, Tensor]:
        """``(a_t, s_t)`` in ``like``'s dtype/device, broadcastable to ``like`` (B, ...).

        ``t`` is an int (same level for the batch) or a (B,) integer tensor, each in ``0..T``.
        """
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


def q_sample(schedule: NoiseSchedule, x0: Tensor, noise: Tensor, t: Tensor | int) -> Tensor:
    """Noise clean data: ``x_t = a_t * x0 + s_t * noise``; x0, noise (B, ...); t int or (B,)."""
    a, s = schedule.alpha_sigma(t, x0)
    return a * x0 + s * noise


def training_target(
    schedule: NoiseSchedule, x0: Tensor, noise: Tensor, t: Tensor | int, prediction_type: str
) -> Tensor:
    """What the denoiser should output at ``x_t = q_sample(x0, noise, t)``: ``noise`` or ``v``."""
    if check_prediction_type(prediction_type) == "epsilon":
        return noise
    a, s = schedule.alpha_sigma(t, x0)
    return a * noise - s * x0


def model_output_to_x0_eps(
    schedule: NoiseSchedule, model_output: Tensor, x_t: Tensor, t: Tensor | int, prediction_type: str
) -> tuple[Tensor, Tensor]:
    """Convert a denoiser output at ``(x_t, t)`` to ``(x0_pred, eps_pred)``, each shaped like ``x_t``."""
    a, s = schedule.alpha_sigma(t, x_t)
    if check_prediction_type(prediction_type) == "epsilon":
        return (x_t - s * model_output) / a, model_output
    return a * x_t - s * model_output, s * x_t + a * model_output


def sample_train_timesteps(
    schedule: NoiseSchedule, batch: int, generator: torch.Generator | None = None, device: Any = "cpu"
) -> Tensor:
    """Uniform training timesteps in ``1..T``, shape (batch,) long."""
    gen_device = generator.device if generator is not None else device
    t = torch.randint(1, schedule.num_train_timesteps + 1, (batch,), generator=generator, device=gen_device)
    return t.to(device)


def training_loss(
    model: DenoiserFn,
    schedule: NoiseSchedule,
    x0: Tensor,
    t: Tensor,
    noise: Tensor,
    prediction_type: str = DEFAULT_PREDICTION_TYPE,
    mask: Tensor | None = None,
    weights: Tensor | None = None,
    **cond: Any,
) -> Tensor:
    """Mean squared error between ``model(x_t, t, **cond)`` and the target for ``prediction_type``: the
    refiner's training loss.

    x0, noise: (B, n_mels, T); t: (B,) long in ``1..T``; mask: optional (B, 1, T) or (B, n_mels, T) with
    1 for real frames and 0 for padding, averaged over real elements only; weights: optional (B,) per-example
    weights (:func:`loss_weights`). Returns a scalar.
    """
    x_t = q_sample(schedule, x0, noise, t)
    err = (model(x_t, t, **cond) - training_target(schedule, x0, noise, t, prediction_type)) ** 2
    if weights is not None:
        err = err * weights.to(err.dtype)[:, None, None]
    if mask is None:
        return err.mean()
    mask = mask.to(err.dtype).expand_as(err)
    return (err * mask).sum() / mask.sum().clamp(min=1.0)


LOSS_WEIGHTINGS = ("min_snr", "none")


def loss_weights(schedule: NoiseSchedule, t: Tensor, prediction_type: str, weighting: str, gamma: float) -> Tensor:
    """Per-example weights (B,) of the squared error on the prediction target at timesteps ``t`` (B,).

    ``"min_snr"`` (Min-SNR-gamma, Hang et al. 2023): the implied x0 error is weighted by ``min(SNR, gamma)``,
    i.e. ``min(SNR, gamma) / (SNR + 1)`` on v and ``min(SNR, gamma) / SNR`` on eps. The plain v loss weights
    x0 errors by ``SNR + 1``, so the nearly-clean steps (SNR in the hundreds), whose error hardly moves
    what the samplers produce, dominate it and slow learning everywhere else. ``"none"``: weight 1.
    """
    if weighting not in LOSS_WEIGHTINGS:
        raise CanoraError(f"loss weighting {weighting!r} must be one of {', '.join(LOSS_WEIGHTINGS)}")
    if weighting == "none":
        return torch.ones(t.shape, dtype=torch.float32)
    acp = schedule.alphas_cumprod[t.cpu()]
    snr = acp / (1 - acp)
    w = snr.clamp(max=gamma) / (snr + 1 if check_prediction_type(prediction_type) == "v" else snr)
    return w.float()
