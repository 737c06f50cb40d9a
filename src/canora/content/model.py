"""The content encoder in torch (training and ONNX export); :mod:`canora.content.net` is the same in numpy.

``ContentNet(config)(mel (B, n_mels, T)) -> content (B, dim, T)``: the log-mel is clamped to its floor, each
frame's mean over bands removed and scaled (:func:`canora.content.net.prepare_mel`), then a convolution, a stack
of pre-norm residual blocks (LayerNorm over channels, a dilated convolution, SiLU, a 1x1 mix) and a final
LayerNorm + SiLU + 1x1 projection to ``dim`` channels, all zero-padded at the sequence edges.
"""

from __future__ import annotations

from torch import Tensor, nn

from canora.content.config import ContentNetConfig
from canora.content.net import INPUT_SCALE, LN_EPS, MEL_FLOOR


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of (B, C, T)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class Block(nn.Module):
    """x + mix(silu(conv_dilated(norm(x)))) over (B, C, T)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.norm = ChannelNorm(channels, eps=LN_EPS)
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=dilation * (kernel_size - 1) // 2,
                              dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mix(nn.functional.silu(self.conv(self.norm(x))))


class ContentNet(nn.Module):
    """The content encoder; see the module docstring."""

    def __init__(self, config: ContentNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.conv_in = nn.Conv1d(config.n_mels, c, config.in_kernel, padding=(config.in_kernel - 1) // 2)
        self.blocks = nn.ModuleList(Block(c, config.kernel_size, d) for d in config.dilations)
        self.norm_out = ChannelNorm(c, eps=LN_EPS)
        self.proj = nn.Conv1d(c, config.dim, 1)

    @staticmethod
    def prepare(mel: Tensor) -> Tensor:
        """Log-mel (B, n_mels, T) -> network input (as :func:`canora.content.net.prepare_mel`)."""
        x = mel.clamp(min=MEL_FLOOR)
        return (x - x.mean(dim=1, keepdim=True)) / INPUT_SCALE

    def forward(self, mel: Tensor) -> Tensor:
        """Log-mel (B, n_mels, T) -> content (B, dim, T)."""
        h = self.conv_in(self.prepare(mel))
        for block in self.blocks:
            h = block(h)
        return self.proj(nn.functional.silu(self.norm_out(h)))

    def numpy_state(self) -> dict[str, object]:
        """The weights as float32 numpy arrays (what :class:`canora.content.net.NumpyContentNet` reads)."""
        return {k: v.detach().cpu().float().numpy() for k, v in self.state_dict().items()}
