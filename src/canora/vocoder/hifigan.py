"""The HiFi-GAN generator (jik876/hifi-gan), written anew for current torch, with official checkpoint I/O.

Official checkpoints use the legacy ``torch.nn.utils.weight_norm`` names (``<layer>.weight_g``,
``<layer>.weight_v``); this model uses ``torch.nn.utils.parametrizations.weight_norm`` whose tensors are
``<layer>.parametrizations.weight.original0/1``. :func:`to_official_keys` / :func:`from_official_keys`
map between the two, so files load strictly in both directions.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from canora.errors import CanoraError, CheckpointError
from canora.vocoder.config import (  # noqa: F401 (re-exported: the configs moved to the torch-free module)
    GeneratorConfig,
    UpsamplingConfig,
    generator_shape_problems,
    shape_fields_from_json,
)

LRELU_SLOPE = 0.1


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


def init_weights(m: nn.Module, mean: float = 0.0, std: float = 0.01) -> None:
    if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
        m.weight.data.normal_(mean, std)


def fold_weight_norm(module: nn.Module) -> None:
    """Fold every weight norm in ``module`` (w = g * v / ||v||) into a plain weight, in place."""
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)


def has_weight_norm(module: nn.Module) -> bool:
    return any(parametrize.is_parametrized(m, "weight") for m in module.modules())


class ResBlock1(nn.Module):
    """Three (dilated conv, conv) pairs: x = x + c2(lrelu(c1(lrelu(x))))."""

    def __init__(self, channels: int, kernel_size: int, dilation: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=get_padding(kernel_size, d)))
            for d in dilation
        )
        self.convs2 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=1, padding=get_padding(kernel_size)))
            for _ in dilation
        )
        self.convs1.apply(init_weights)
        self.convs2.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    """Dilated convs: x = x + c(lrelu(x))."""

    def __init__(self, channels: int, kernel_size: int, dilation: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=get_padding(kernel_size, d)))
            for d in dilation
        )
        self.convs.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c in self.convs:
            x = x + c(F.leaky_relu(x, LRELU_SLOPE))
        return x


class GeneratorBase(nn.Module):
    """What every HiFi-GAN-family generator shares: the multi-receptive-field fusion of each stage (the mean of
    its resblocks), the output layer, and weight-norm folding. Subclasses set ``num_kernels``, ``resblocks``
    (a flat list, ``resblocks[i * num_kernels + j]``) and ``conv_post``."""

    num_kernels: int
    resblocks: nn.ModuleList
    conv_post: nn.Module

    def fuse(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Stage ``i``'s resblocks on ``x`` (B, C, N), averaged."""
        xs = self.resblocks[i * self.num_kernels](x)
        for j in range(1, self.num_kernels):
            xs = xs + self.resblocks[i * self.num_kernels + j](x)
        return xs / self.num_kernels

    def network(self, mel: torch.Tensor, src: torch.Tensor | None = None) -> torch.Tensor:
        """The layers from mel (B, n_mels, T) to waveform (B, 1, T * hop); an NSF generator also takes its
        source's excitation ``src`` (B, C, T * hop), computed over the whole input before it is cut."""
        raise NotImplementedError

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, N) -> waveform (B, 1, N): leaky ReLU with the default slope 0.01 (as in the official model),
        ``conv_post``, tanh."""
        return torch.tanh(self.conv_post(F.leaky_relu(x)))

    def remove_weight_norm(self) -> GeneratorBase:
        """Fold every weight norm (w = g * v / ||v||) into a plain weight, in place, for inference."""
        fold_weight_norm(self)
        return self

    def load_folded(self, folded: dict[str, torch.Tensor], source: str) -> None:
        """Load folded (inference, export) weights into this weight-normed generator: g = ||w|| per output
        slice and v = w, so it computes exactly what the export computes and can train on."""
        from torch.nn.utils.parametrizations import weight_norm as wn

        wrapped = [name for name, m in self.named_modules() if parametrize.is_parametrized(m, "weight")]
        self.remove_weight_norm()
        check_state_dict(self, folded, source)
        self.load_state_dict(folded, strict=True)
        for name in wrapped:
            wn(self.get_submodule(name))

    @property
    def has_weight_norm(self) -> bool:
        return has_weight_norm(self)


class Generator(GeneratorBase):
    """HiFi-GAN generator: log-mel (B, n_mels, frames) -> waveform (B, 1, frames * hop) in [-1, 1]."""

    def __init__(
        self,
        *,
        n_mels: int,
        resblock: Literal["1", "2"],
        upsample_rates: tuple[int, ...],
        upsample_kernel_sizes: tuple[int, ...],
        upsample_initial_channel: int,
        resblock_kernel_sizes: tuple[int, ...],
        resblock_dilation_sizes: tuple[tuple[int, ...], ...],
    ) -> None:
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        self.num_upsamples = len(upsample_rates)
        self.conv_pre = weight_norm(nn.Conv1d(n_mels, upsample_initial_channel, 7, 1, padding=3))
        block = ResBlock1 if resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            c_in, c_out = upsample_initial_channel // (2**i), upsample_initial_channel // (2 ** (i + 1))
            self.ups.append(weight_norm(nn.ConvTranspose1d(c_in, c_out, k, u, padding=(k - u) // 2)))
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for i in range(len(self.ups)):
            ch = upsample_initial_channel // (2 ** (i + 1))
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(block(ch, k, tuple(d)))
        self.conv_post = weight_norm(nn.Conv1d(ch, 1, 7, 1, padding=3))
        self.ups.apply(init_weights)
        self.conv_post.apply(init_weights)

    @classmethod
    def from_config(cls, cfg: GeneratorConfig) -> Generator:
        return cls(
            n_mels=cfg.n_mels,
            resblock=cfg.resblock,
            upsample_rates=cfg.upsample_rates,
            upsample_kernel_sizes=cfg.upsample_kernel_sizes,
            upsample_initial_channel=cfg.upsample_initial_channel,
            resblock_kernel_sizes=cfg.resblock_kernel_sizes,
            resblock_dilation_sizes=cfg.resblock_dilation_sizes,
        )

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, frames) -> (B, 1, frames * hop)."""
        return self.network(mel)

    def network(self, mel: torch.Tensor, src: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n_mels, frames) -> (B, 1, frames * hop); a HiFi-GAN has no source (``src`` must be None)."""
        if src is not None:
            raise CanoraError("a HiFi-GAN generator takes no source excitation")
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = self.fuse(i, up(F.leaky_relu(x, LRELU_SLOPE)))
        return self.output(x)


# ---------------------------------------------------------------------- official key names
_G, _V = ".parametrizations.weight.original0", ".parametrizations.weight.original1"


def from_official_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Legacy weight-norm names (``x.weight_g`` / ``x.weight_v``) -> parametrization names."""
    out = {}
    for k, v in state.items():
        if k.endswith(".weight_g"):
            k = k[: -len(".weight_g")] + _G
        elif k.endswith(".weight_v"):
            k = k[: -len(".weight_v")] + _V
        out[k] = v
    return out


def to_official_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Parametrization names -> the legacy names official HiFi-GAN files use."""
    out = {}
    for k, v in state.items():
        if k.endswith(_G):
            k = k[: -len(_G)] + ".weight_g"
        elif k.endswith(_V):
            k = k[: -len(_V)] + ".weight_v"
        out[k] = v
    return out


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise one clear :class:`CheckpointError` when ``state`` does not fit ``model`` exactly (keys and shapes)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if len(got) != len(state):
        raise CheckpointError(f"{source}: state dict holds non-tensor values; not a generator checkpoint")
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = [f"{k} {got[k]} vs {expected[k]}" for k in expected if k in got and got[k] != expected[k]]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} tensors of other shapes (first: {wrong[0]})")
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise CheckpointError(
            f"{source}: checkpoint does not match the model config: {'; '.join(parts)}; "
            "pass the config.json the checkpoint was trained with"
        )
