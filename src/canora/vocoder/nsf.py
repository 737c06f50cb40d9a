"""NSF-HiFi-GAN: a HiFi-GAN generator driven by an F0 sine source (neural source-filter), for singing.

A plain HiFi-GAN must infer the pitch of every harmonic from a mel whose bands are far wider than the
harmonic spacing at high singing pitches; that is where speech vocoders turn sung harmonics to noise. The
source-filter variant (Wang et al. 2019, as used by DDSP-SVC / so-vits-svc "nsf-hifigan") adds a
harmonic-plus-noise excitation built from F0 and injects it at every upsampling stage, so the network only
has to shape a spectrum whose pitch is given. Same mel interface as HiFi-GAN (log-mel (B, n_mels, T) in,
(B, 1, T * hop) out), plus frame-level F0 in Hz (B, T) with 0 at unvoiced frames.

Layer names follow the HiFi-GAN generator (``conv_pre``, ``ups``, ``resblocks``, ``conv_post``) plus
``noise_convs`` and ``source``; weight norm uses ``torch.nn.utils.parametrizations`` and is folded for
inference like the HiFi-GAN's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from canora.errors import CanoraError, CheckpointError
from canora.vocoder.hifigan import (
    LRELU_SLOPE,
    ResBlock1,
    ResBlock2,
    fold_weight_norm,
    generator_shape_problems,
    has_weight_norm,
    init_weights,
    shape_fields_from_json,
)


@dataclass(frozen=True)
class NSFConfig:
    """Hyper-parameters of an NSF-HiFi-GAN generator (defaults: the ~0.4M-parameter bundled singing vocoder)."""

    sample_rate: int = 22050
    n_mels: int = 80
    resblock: Literal["1", "2"] = "2"
    upsample_rates: tuple[int, ...] = (8, 8, 4)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 8)
    upsample_initial_channel: int = 128
    resblock_kernel_sizes: tuple[int, ...] = (3, 5, 7)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 2), (2, 6), (3, 12))
    harmonics: int = 8
    sine_amp: float = 0.1
    noise_std: float = 0.003

    def __post_init__(self) -> None:
        problems = generator_shape_problems(self)
        if self.harmonics < 1 or self.sample_rate < 1:
            problems.append("harmonics and sample_rate must be >= 1")
        if problems:
            raise CanoraError("invalid NSF generator config: " + "; ".join(problems))

    @property
    def hop_length(self) -> int:
        """Samples per mel frame = the product of the upsampling rates."""
        return math.prod(self.upsample_rates)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NSFConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise CheckpointError(f"NSF config has unknown keys {sorted(unknown)}; written by a newer canora?")
        return cls(**shape_fields_from_json(d))


def upsample_f0(f0: torch.Tensor, hop: int) -> torch.Tensor:
    """Frame F0 (B, T) -> sample F0 (B, T * hop): each frame's value held over its hop (0 stays 0)."""
    return f0.repeat_interleave(hop, dim=1)


class SineSource(nn.Module):
    """Harmonic-plus-noise excitation: F0 per sample (B, N) Hz -> source (B, 1, N) in [-1, 1].

    Harmonics ``1..H`` of F0 (those above Nyquist silenced), amplitude ``sine_amp`` where voiced, plus
    Gaussian noise (``noise_std`` where voiced, ``sine_amp / 3`` where unvoiced); a learned linear merge of
    the H channels and a tanh give one source channel. Phases are accumulated in float64 and wrapped,
    so long inputs keep an exact pitch; ``generator`` makes the random start phases and noise repeatable.
    """

    def __init__(self, sample_rate: int, harmonics: int, sine_amp: float, noise_std: float) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.harmonics = harmonics
        self.sine_amp = sine_amp
        self.noise_std = noise_std
        self.merge = nn.Linear(harmonics, 1)

    def forward(
        self, f0: torch.Tensor, generator: torch.Generator | None = None, phase0: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``phase0`` (B, H) in cycles: each harmonic's phase before the first sample (random when None, as
        in training; given by inference so that consecutive pieces of one song continue each other)."""
        b, n = f0.shape
        mult = torch.arange(1, self.harmonics + 1, device=f0.device, dtype=torch.float64)
        fh = f0.double()[:, :, None] * mult  # (B, N, H)
        inc = fh / self.sample_rate
        if phase0 is None:
            start = torch.rand(b, 1, self.harmonics, generator=generator, dtype=torch.float64).to(f0.device)
            start[:, :, 0] = 0.0
        else:
            start = phase0.to(device=f0.device, dtype=torch.float64).reshape(b, 1, self.harmonics)
        phase = torch.remainder(torch.cumsum(inc, dim=1) + start, 1.0).to(f0.dtype)
        voiced = (f0 > 0).to(f0.dtype)[:, :, None]
        audible = (fh < self.sample_rate / 2).to(f0.dtype)
        sines = self.sine_amp * torch.sin(2 * math.pi * phase) * audible * voiced
        noise_amp = voiced * self.noise_std + (1 - voiced) * self.sine_amp / 3
        noise = torch.randn(sines.shape, generator=generator, dtype=sines.dtype).to(f0.device)
        x = sines * voiced + noise_amp * noise
        return torch.tanh(self.merge(x)).transpose(1, 2)


class NSFGenerator(nn.Module):
    """(log-mel (B, n_mels, T), F0 (B, T) Hz, 0 = unvoiced) -> waveform (B, 1, T * hop) in [-1, 1]."""

    def __init__(
        self,
        *,
        sample_rate: int,
        n_mels: int,
        resblock: Literal["1", "2"],
        upsample_rates: tuple[int, ...],
        upsample_kernel_sizes: tuple[int, ...],
        upsample_initial_channel: int,
        resblock_kernel_sizes: tuple[int, ...],
        resblock_dilation_sizes: tuple[tuple[int, ...], ...],
        harmonics: int,
        sine_amp: float,
        noise_std: float,
    ) -> None:
        super().__init__()
        self.hop = math.prod(upsample_rates)
        self.num_kernels = len(resblock_kernel_sizes)
        self.source = SineSource(sample_rate, harmonics, sine_amp, noise_std)
        self.conv_pre = weight_norm(nn.Conv1d(n_mels, upsample_initial_channel, 7, 1, padding=3))
        block = ResBlock1 if resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.noise_convs = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            c_in, ch = upsample_initial_channel // (2**i), upsample_initial_channel // (2 ** (i + 1))
            self.ups.append(weight_norm(nn.ConvTranspose1d(c_in, ch, k, u, padding=(k - u) // 2)))
            stride = math.prod(upsample_rates[i + 1:])  # source rate -> this stage's rate
            if stride > 1:
                self.noise_convs.append(nn.Conv1d(1, ch, stride * 2, stride, padding=(stride + 1) // 2))
            else:
                self.noise_convs.append(nn.Conv1d(1, ch, 1))
            for rk, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(block(ch, rk, tuple(d)))
        self.conv_post = weight_norm(nn.Conv1d(ch, 1, 7, 1, padding=3))
        self.ups.apply(init_weights)
        self.conv_post.apply(init_weights)

    @classmethod
    def from_config(cls, cfg: NSFConfig) -> NSFGenerator:
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cfg)})

    def forward(
        self, mel: torch.Tensor, f0: torch.Tensor, generator: torch.Generator | None = None,
        phase0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """mel (B, n_mels, T), f0 (B, T), optional start phases ``phase0`` (B, harmonics) -> (B, 1, T * hop)."""
        if f0.shape != (mel.shape[0], mel.shape[2]):
            raise CanoraError(f"F0 of shape {tuple(f0.shape)} does not fit the mel {tuple(mel.shape)}: need (B, T)")
        src = self.source(upsample_f0(f0.to(mel.dtype), self.hop), generator, phase0)
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            s = self.noise_convs[i](src)
            x = x + s[..., : x.shape[-1]]
            xs = self.resblocks[i * self.num_kernels](x)
            for j in range(1, self.num_kernels):
                xs = xs + self.resblocks[i * self.num_kernels + j](x)
            x = xs / self.num_kernels
        x = F.leaky_relu(x)
        return torch.tanh(self.conv_post(x))

    def remove_weight_norm(self) -> NSFGenerator:
        """Fold every weight norm into a plain weight, in place, for inference."""
        fold_weight_norm(self)
        return self

    @property
    def has_weight_norm(self) -> bool:
        return has_weight_norm(self)
