"""Samplers for the Diffusion Mel Refiner: small objects outside the model with one contract.

Contract (as diffusers schedulers)::

    sampler = get_sampler("dpmpp", schedule, prediction_type="v")
    sampler.set_timesteps(steps, strength)          # strength in (0, 1]; 1 = from pure noise
    x = sampler.add_noise(source, noise, sampler.start_timestep)   # or pure noise when strength == 1
    for t in sampler.timesteps:                     # descending, length == steps, all in 1..T
        x = sampler.step(model(x, t_batch, **cond), t, x, generator)
    # x is now the clean-sample estimate (the last step always lands on t = 0)

Timesteps follow :mod:`canora.refiner.diffusion`: integers in ``0..T`` with ``t = 0`` clean, so
``add_noise(x0, noise, 0) == x0``. ``strength`` picks the starting level
``t_start = max(1, floor(strength * T + 0.5))``; the ``steps`` timesteps are ``t_start`` and evenly spaced
levels below it, each ``step`` moving from its ``t`` to the next listed one (0 after the last). Samplers
keep per-run state (DPM-Solver++ remembers the previous x0 estimate), so call ``set_timesteps`` before
every run and ``step`` in order.

Euler on the probability-flow ODE in this parameterisation is exactly DDIM with eta = 0, so it is not
registered separately.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from canora.errors import CanoraError
from canora.refiner.schedule import (
    DEFAULT_PREDICTION_TYPE,
    NoiseSchedule,
    check_prediction_type,
    x0_eps_from_output,
)

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from canora.refiner.diffusion import DenoiserFn

#: what a sampler draws its noise from: a torch.Generator (torch arrays) or a numpy Generator (either kind)
Generator = Any

__all__ = [
    "DDIMSampler",
    "DDPMSampler",
    "DPMSolverPPSampler",
    "Sampler",
    "available_samplers",
    "check_steps_strength",
    "get_sampler",
    "sample",
    "sample_numpy",
]


#: the most sampler steps: the noise schedule has 1000 levels, and 3-10 steps is what canora uses
MAX_STEPS = 1000


def check_steps_strength(steps: int, strength: float, names: tuple[str, str] = ("steps", "strength")) -> None:
    """Raise :class:`CanoraError` unless ``steps`` is a whole number in 1..:data:`MAX_STEPS` (2.5 is refused, not
    taken as 2) and ``strength`` a number in (0, 1]; ``names`` say what to call them (``--steps``, ``--strength``)."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= MAX_STEPS:
        raise CanoraError(f"{names[0]} must be a whole number in 1..{MAX_STEPS}, got {steps!r}")
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or not 0.0 < strength <= 1.0:
        raise CanoraError(f"{names[1]} must be a number in (0, 1] (1 = from pure noise), got {strength!r}")


def _randn_like(x: Any, generator: Generator | None) -> Any:
    """Standard normal noise shaped like ``x`` (numpy or torch, its dtype and device). A numpy ``Generator``
    draws in float32 with numpy for either kind of ``x`` (so torch and ONNX Runtime runs of one seed draw the same
    noise); a torch one (or None, with torch) on its own device."""
    if isinstance(generator, np.random.Generator):
        z = generator.standard_normal(tuple(x.shape), dtype=np.float32)
        if isinstance(x, np.ndarray):
            return z.astype(x.dtype, copy=False)
        import torch

        return torch.from_numpy(z).to(device=x.device, dtype=x.dtype)
    if isinstance(x, np.ndarray):
        raise CanoraError("numpy samples need a numpy Generator (np.random.default_rng(seed))")
    import torch

    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


class Sampler(ABC):
    """Base class: timestep bookkeeping, ``add_noise`` and the model-output conversion.

    ``prediction_type`` ("v" or "epsilon") must match what the denoiser was trained to predict.
    """

    name: ClassVar[str]

    def __init__(self, schedule: NoiseSchedule, prediction_type: str = DEFAULT_PREDICTION_TYPE) -> None:
        self.schedule = schedule
        self.prediction_type = check_prediction_type(prediction_type)
        self._timesteps: list[int] | None = None
        self._index: dict[int, int] = {}
        self.strength = 1.0

    def set_timesteps(self, steps: int, strength: float = 1.0) -> None:
        """Choose ``steps`` descending timesteps starting at ``floor(strength * T + 0.5)`` (at least 1)."""
        check_steps_strength(steps, strength)
        steps, strength = int(steps), float(strength)
        t_max = self.schedule.num_train_timesteps
        t_start = max(1, math.floor(strength * t_max + 0.5))
        if steps > t_start:
            raise CanoraError(
                f"steps={steps} exceeds the {t_start} noise levels below strength={strength}; "
                f"use steps <= {t_start} or a higher strength"
            )
        # Round half up: monotone, so a spacing >= 1 (steps <= t_start) gives distinct integers.
        levels = np.linspace(float(t_start), 0.0, steps + 1, dtype=np.float64)[:-1]
        self._timesteps = [int(t) for t in np.floor(levels + 0.5)]
        self._index = {t: i for i, t in enumerate(self._timesteps)}
        self.strength = float(strength)

    @property
    def timestep_list(self) -> list[int]:
        """Descending timesteps of this run (steps,), values in ``1..T``."""
        if self._timesteps is None:
            raise RuntimeError("call set_timesteps() before using the sampler")
        return list(self._timesteps)

    @property
    def timesteps(self) -> Tensor:
        """:attr:`timestep_list` as a LongTensor (steps,) (imports torch)."""
        import torch

        return torch.tensor(self.timestep_list, dtype=torch.long)

    @property
    def num_inference_steps(self) -> int:
        """Number of model evaluations in this run."""
        return len(self.timestep_list)

    @property
    def start_timestep(self) -> int:
        """The noise level the run starts from: noise the source with ``add_noise(x0, noise, this)``."""
        return self.timestep_list[0]

    def _indices(self, t: Tensor | int) -> tuple[int, int, int]:
        """``(index, t, t_prev)`` for the current timestep ``t``; ``t_prev`` is 0 after the last one."""
        t_int = int(t)
        i = self._index.get(t_int)
        if self._timesteps is None or i is None:
            raise RuntimeError(f"timestep {t_int} is not in this run's timesteps; call set_timesteps() first")
        t_prev = self._timesteps[i + 1] if i + 1 < len(self._timesteps) else 0
        return i, t_int, t_prev

    def add_noise(self, x0: Any, noise: Any, t: Tensor | int) -> Any:
        """``sqrt(acp[t]) * x0 + sqrt(1 - acp[t]) * noise``; t = 0 returns ``x0``. t: int (numpy or torch) or
        (B,) tensor (torch)."""
        if isinstance(t, (int, np.integer)) or (isinstance(x0, np.ndarray) and np.ndim(t) == 0):
            if int(t) == 0:
                return x0
            a, s = self.schedule.scalars(int(t))
            return a * x0 + s * noise
        from canora.refiner.diffusion import q_sample

        return q_sample(self.schedule, x0, noise, t)

    def predict_x0_eps(self, model_output: Any, t: int, sample: Any) -> tuple[Any, Any]:
        """``(x0_pred, eps_pred)`` from the denoiser output at ``(sample, t)`` (numpy or torch)."""
        a, s = self.schedule.scalars(t)
        return x0_eps_from_output(model_output, sample, a, s, self.prediction_type)

    def _acp(self, t: int) -> float:
        return float(self.schedule.acp[t])

    @abstractmethod
    def step(
        self, model_output: Tensor, t: Tensor | int, sample: Tensor, generator: Generator | None = None
    ) -> Tensor:
        """Move ``sample`` (B, n_mels, T) from timestep ``t`` to the next one of :attr:`timesteps`.

        ``model_output`` is the denoiser's output at ``(sample, t)``, same shape; ``t`` is one element of
        :attr:`timesteps` (same for the whole batch). Returns the less noisy sample, same shape.
        """


class DDPMSampler(Sampler):
    """Ancestral DDPM sampling (Ho et al. 2020) with the posterior ``q(x_s | x_t, x0_pred)`` for skipped steps.

    Stochastic: fresh noise from ``generator`` at every step except the last, which returns ``x0_pred``.
    """

    name = "ddpm"

    def step(
        self, model_output: Tensor, t: Tensor | int, sample: Tensor, generator: Generator | None = None
    ) -> Tensor:
        _, t, s = self._indices(t)
        x0, _ = self.predict_x0_eps(model_output, t, sample)
        if s == 0:
            return x0
        acp_t, acp_s = self._acp(t), self._acp(s)
        beta = 1 - acp_t / acp_s  # effective beta of the jump t -> s
        mean = (math.sqrt(acp_s) * beta / (1 - acp_t)) * x0 + (
            math.sqrt(acp_t / acp_s) * (1 - acp_s) / (1 - acp_t)
        ) * sample
        std = math.sqrt(beta * (1 - acp_s) / (1 - acp_t))
        return mean + std * _randn_like(sample, generator)


class DDIMSampler(Sampler):
    """DDIM (Song et al. 2021); ``eta = 0`` (the default) is deterministic, ``eta = 1`` is DDPM-like."""

    name = "ddim"

    def __init__(
        self, schedule: NoiseSchedule, prediction_type: str = DEFAULT_PREDICTION_TYPE, eta: float = 0.0
    ) -> None:
        super().__init__(schedule, prediction_type)
        if not 0.0 <= eta <= 1.0:
            raise CanoraError(f"eta must be in [0, 1], got {eta!r}")
        self.eta = float(eta)

    def step(
        self, model_output: Tensor, t: Tensor | int, sample: Tensor, generator: Generator | None = None
    ) -> Tensor:
        _, t, s = self._indices(t)
        x0, eps = self.predict_x0_eps(model_output, t, sample)
        acp_t, acp_s = self._acp(t), self._acp(s)
        var = self.eta**2 * (1 - acp_s) / (1 - acp_t) * (1 - acp_t / acp_s)
        out = math.sqrt(acp_s) * x0 + math.sqrt(max(1 - acp_s - var, 0.0)) * eps
        if var > 0:
            out = out + math.sqrt(var) * _randn_like(sample, generator)
        return out


class DPMSolverPPSampler(Sampler):
    """DPM-Solver++(2M) (Lu et al. 2022): multistep, data (x0) prediction, deterministic.

    The first step is first order (warm-up, no history yet); later steps use the previous x0 estimate for
    a second-order correction; the final step, to t = 0 where log-SNR is infinite, is first order, whose
    limit there is exactly ``x0_pred`` ("lower-order final").
    """

    name = "dpmpp"

    def __init__(self, schedule: NoiseSchedule, prediction_type: str = DEFAULT_PREDICTION_TYPE) -> None:
        super().__init__(schedule, prediction_type)
        self._prev: tuple[int, Any, float] | None = None  # (index, x0_pred, lambda) of the last step

    def set_timesteps(self, steps: int, strength: float = 1.0) -> None:
        super().set_timesteps(steps, strength)
        self._prev = None

    def _lambda(self, t: int) -> float:
        acp = self._acp(t)
        return 0.5 * (math.log(acp) - math.log1p(-acp))

    def step(
        self, model_output: Tensor, t: Tensor | int, sample: Tensor, generator: Generator | None = None
    ) -> Tensor:
        i, t, s = self._indices(t)
        prev = self._prev if self._prev is not None and self._prev[0] == i - 1 else None
        if i > 0 and prev is None:
            raise RuntimeError("dpmpp steps must be taken in order after set_timesteps()")
        x0, _ = self.predict_x0_eps(model_output, t, sample)
        lam_t = self._lambda(t)
        self._prev = (i, x0, lam_t)
        if s == 0:
            return x0
        lam_s = self._lambda(s)
        h = lam_s - lam_t
        a_s, sig_s, sig_t = math.sqrt(self._acp(s)), math.sqrt(1 - self._acp(s)), math.sqrt(1 - self._acp(t))
        c = -a_s * math.expm1(-h)  # alpha_s * (1 - e^{-h}) > 0
        d = x0
        if prev is not None:
            r = (lam_t - prev[2]) / h
            d = x0 + (0.5 / r) * (x0 - prev[1])
        return (sig_s / sig_t) * sample + c * d


_SAMPLERS: dict[str, type[Sampler]] = {cls.name: cls for cls in (DDPMSampler, DDIMSampler, DPMSolverPPSampler)}


def available_samplers() -> list[str]:
    """Names accepted by :func:`get_sampler`, sorted."""
    return sorted(_SAMPLERS)


def get_sampler(
    name: str, schedule: NoiseSchedule, prediction_type: str = DEFAULT_PREDICTION_TYPE, **kwargs: Any
) -> Sampler:
    """A new sampler by name (see :func:`available_samplers`); ``kwargs`` go to its constructor."""
    try:
        cls = _SAMPLERS[name]
    except KeyError:
        raise CanoraError(f"unknown sampler {name!r}; expected one of {available_samplers()}") from None
    return cls(schedule, prediction_type, **kwargs)


def sample(
    model: DenoiserFn,
    sampler: Sampler,
    *,
    steps: int,
    strength: float = 1.0,
    shape: tuple[int, ...] | None = None,
    source: Tensor | None = None,
    cond: Mapping[str, Any] | None = None,
    generator: Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> Tensor:
    """Run a full sampling loop on torch and return the clean estimate, shape (B, n_mels, T).

    ``strength == 1``: start from pure noise of ``shape`` (or ``source.shape``; the source itself is then
    unused). ``strength < 1`` (shallow diffusion): start from ``add_noise(source, noise, t_start)``, which
    needs ``source``. ``model(x_t, t, **cond)`` gets ``t`` as a (B,) long tensor. Noise (initial and
    per-step) comes from ``generator`` (torch or numpy, :func:`_randn_like`), so a seeded generator makes the
    result reproducible. :func:`sample_numpy` is the same loop on numpy arrays.
    """
    import torch

    if source is not None:
        shape, dtype, device = tuple(source.shape), source.dtype, source.device
    elif shape is None:
        raise ValueError("sample() needs shape or source")
    sampler.set_timesteps(steps, strength)
    if source is None and strength < 1.0:
        raise CanoraError(f"strength={strength} < 1 needs a source mel to start from")
    device = torch.device(device) if device is not None else torch.device("cpu")
    x = _randn_like(torch.empty(shape, dtype=dtype or torch.float32, device=device), generator)
    if source is not None and strength < 1.0:
        x = sampler.add_noise(source, x, sampler.start_timestep)
    with torch.no_grad():
        return _run(model, sampler, x, cond, generator, progress,
                    lambda t: torch.full((shape[0],), t, dtype=torch.long, device=device))


def sample_numpy(
    model: DenoiserFn,
    sampler: Sampler,
    *,
    steps: int,
    strength: float,
    source: np.ndarray,
    cond: Mapping[str, Any] | None = None,
    generator: np.random.Generator,
    progress: bool = False,
) -> np.ndarray:
    """:func:`sample` on numpy arrays (ONNX Runtime): ``source`` (B, n_mels, T) float32 (its shape only when
    ``strength == 1``), ``model(x_t, t (B,) int64, **cond)``; noise from the numpy ``generator``, drawn as
    :func:`sample` draws it from the same generator, so both give the same result for one seed."""
    sampler.set_timesteps(steps, strength)
    x = _randn_like(source, generator)
    if strength < 1.0:
        x = sampler.add_noise(source, x, sampler.start_timestep)
    return _run(model, sampler, x, cond, generator, progress, lambda t: np.full((source.shape[0],), t, np.int64))


def _run(model: DenoiserFn, sampler: Sampler, x: Any, cond: Mapping[str, Any] | None, generator: Generator | None,
         progress: bool, t_batch: Any) -> Any:
    """The steps of a run set up by ``set_timesteps``, from ``x`` at its first level; ``t_batch(t)`` makes the
    (B,) timestep array the model takes."""
    cond = dict(cond or {})
    timesteps: Any = sampler.timestep_list
    if progress:
        from tqdm.auto import tqdm

        timesteps = tqdm(timesteps, desc=f"{sampler.name} x{len(timesteps)}", leave=False)
    for t in timesteps:
        x = sampler.step(model(x, t_batch(t), **cond), t, x, generator=generator)
    return x
