"""The refiner's denoiser: a non-causal WaveNet-style residual stack over mel frames (DiffSinger / Diff-SVC).

``x_t (B, n_mels, T)`` and a diffusion step ``t (B,)`` go in, the model output (``v`` or ``eps``, see
:mod:`canora.refiner.diffusion`) comes out, same shape. Conditioning, frame-aligned with the mel:

* ``f0`` (B, T) Hz, continuous (unvoiced frames interpolated), fed as ``log2(f0 / 440)``;
* ``voiced`` (B, T) in {0, 1};
* ``loudness`` (B, T) dB, fed as ``(dB - loudness_ref_db) / loudness_scale_db``;
* ``content`` (B, content_dim, T), standardised with per-dimension statistics stored as buffers;
* ``singer`` (B,) long, an index into an ``nn.Embedding`` (one-singer models have one row), or (B, n_singers)
  float weights that mix the singers' embeddings (speaker mixing; rows summing to 1).

They are encoded once (:meth:`RefinerModel.encode`) into the per-layer conditioning of every residual
layer, so a sampling run of N steps pays for the conditioning once (:meth:`RefinerModel.denoise`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from canora.errors import CanoraError
from canora.refiner.config import RefinerConfig

__all__ = ["RefinerConfig", "RefinerModel", "step_embedding"]


def step_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of diffusion steps ``t`` (B,) -> (B, dim) (transformer positions, max period 1e4)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([args.sin(), args.cos()], dim=1)
    return nn.functional.pad(emb, (0, dim - 2 * half))


class ResidualLayer(nn.Module):
    """Gated dilated conv layer: x + step -> conv + cond -> tanh * sigmoid -> (residual, skip)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.step_proj = nn.Linear(channels, channels)
        self.dilated = nn.Conv1d(
            channels, 2 * channels, kernel_size, padding=dilation * (kernel_size - 1) // 2, dilation=dilation
        )
        self.out = nn.Conv1d(channels, 2 * channels, 1)

    def forward(self, x: Tensor, step: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, C, T), step (B, C), cond (B, 2C, T) -> (residual out (B, C, T), skip (B, C, T))."""
        y = self.dilated(x + self.step_proj(step)[:, :, None]) + cond
        gate, filt = y.chunk(2, dim=1)
        y = self.out(torch.sigmoid(gate) * torch.tanh(filt))
        res, skip = y.chunk(2, dim=1)
        return (x + res) * (1 / math.sqrt(2.0)), skip


class RefinerModel(nn.Module):
    """WaveNet denoiser; see the module docstring for inputs. Build with ``RefinerModel(config)``."""

    def __init__(self, config: RefinerConfig) -> None:
        super().__init__()
        self.config = config
        c, cc = config.residual_channels, config.cond_channels
        self.in_proj = nn.Conv1d(config.n_mels, c, 1)
        self.step_mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.Mish(), nn.Linear(4 * c, c))
        # conditioning encoder: [log-f0, voiced, loudness, content...] -> cc channels, + singer embedding
        self.cond_in = nn.Conv1d(3 + config.content_dim, cc, 3, padding=1)
        self.cond_mid = nn.Conv1d(cc, cc, 3, padding=1)
        self.singer = nn.Embedding(config.n_singers, cc)
        self.cond_proj = nn.Conv1d(cc, config.layers * 2 * c, 1)  # all layers' projections at once
        self.layers = nn.ModuleList(
            ResidualLayer(c, config.kernel_size, 2 ** (i % config.dilation_cycle)) for i in range(config.layers)
        )
        self.skip_proj = nn.Conv1d(c, c, 1)
        self.out_proj = nn.Conv1d(c, config.n_mels, 1)
        # a direct, per-bin, step-dependent linear path from x_t to the output: v = (a x_t - x0) / s needs
        # x_t passed through with a gain set by t, which the gated stack cannot carry at few channels
        self.x_gain = nn.Linear(c, config.n_mels)
        for lin in (self.out_proj, self.x_gain):  # start by predicting 0 (as DiffSinger)
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.register_buffer("content_mean", torch.zeros(config.content_dim))
        self.register_buffer("content_std", torch.ones(config.content_dim))

    def set_content_stats(self, mean: Tensor, std: Tensor) -> None:
        """Per-dimension content statistics (content_dim,) from the training data, for standardisation."""
        self.content_mean.copy_(mean.to(self.content_mean))
        self.content_std.copy_(std.clamp(min=1e-4).to(self.content_std))

    def encode(self, f0: Tensor, voiced: Tensor, loudness: Tensor, content: Tensor | None, singer: Tensor) -> Tensor:
        """Conditioning -> per-layer projections (B, layers * 2C, T). Shapes: see the module docstring."""
        cfg = self.config
        lf0 = torch.log2(f0.clamp(min=1.0) / 440.0)
        loud = (loudness - cfg.loudness_ref_db) / cfg.loudness_scale_db
        parts = [lf0[:, None], voiced.to(lf0.dtype)[:, None], loud[:, None]]
        if cfg.content_dim:
            if content is None or content.shape[1] != cfg.content_dim:
                got = None if content is None else tuple(content.shape)
                raise CanoraError(f"refiner expects content features of dim {cfg.content_dim}, got shape {got}")
            parts.append((content - self.content_mean[:, None]) / self.content_std[:, None])
        h = nn.functional.silu(self.cond_in(torch.cat(parts, dim=1)))
        if singer.dim() == 2:  # a mix: weights (B, n_singers) over the embedding rows
            emb = singer.to(self.singer.weight.dtype) @ self.singer.weight
        else:
            emb = self.singer(singer)
        h = self.cond_mid(h) + emb[:, :, None]
        return self.cond_proj(nn.functional.silu(h))

    def denoise(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """x (B, n_mels, T), t (B,) long, cond = :meth:`encode` output -> (B, n_mels, T)."""
        h = nn.functional.relu(self.in_proj(x))
        step = self.step_mlp(step_embedding(t, self.config.residual_channels))
        skip = torch.zeros_like(h)
        for layer, c in zip(self.layers, cond.chunk(len(self.layers), dim=1)):
            h, s = layer(h, step, c)
            skip = skip + s
        skip = skip * (1 / math.sqrt(len(self.layers)))
        return self.out_proj(nn.functional.relu(self.skip_proj(skip))) + self.x_gain(step)[:, :, None] * x

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        *,
        f0: Tensor,
        voiced: Tensor,
        loudness: Tensor,
        singer: Tensor,
        content: Tensor | None = None,
    ) -> Tensor:
        """Denoiser output at ``(x_t, t)`` given the conditioning; (B, n_mels, T)."""
        return self.denoise(x, t, self.encode(f0, voiced, loudness, content, singer))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
