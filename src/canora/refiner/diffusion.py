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

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from canora.errors import CanoraError
from canora.refiner.schedule import (  # noqa: F401 (LOSS_WEIGHTINGS: re-exported)
    DEFAULT_PREDICTION_TYPE,
    LOSS_WEIGHTINGS,
    PREDICTION_TYPES,
    SCHEDULE_KINDS,
    NoiseSchedule,
    check_prediction_type,
    x0_eps_from_output,
)

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

#: The denoiser contract: ``model(x_t (B, n_mels, T), t (B,) long, **cond) -> (B, n_mels, T)``.
DenoiserFn = Callable[..., Tensor]


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
    return x0_eps_from_output(model_output, x_t, a, s, prediction_type)


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
