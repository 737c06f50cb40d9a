"""The learned content encoder's frozen config (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from canora.config import Config
from canora.errors import CanoraError

#: bounds that keep a hand-edited model.json from allocating absurd layers
MAX_CHANNELS = 1024
MAX_LAYERS = 16


@dataclass(frozen=True)
class ContentNetConfig(Config):
    """Sizes of the content encoder: a residual stack of dilated convolutions over log-mel frames.

    ``dilations``: one residual block per entry (kernel ``kernel_size``, that dilation); ``dim``: the content
    feature's dimension (the bottleneck). Each output frame sees :attr:`context` frames on each side.
    """

    n_mels: int = 80
    channels: int = 128
    in_kernel: int = 5
    kernel_size: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 1, 2)
    dim: int = 32

    def __post_init__(self) -> None:
        problems = []
        for name in ("n_mels", "channels", "dim"):
            v = getattr(self, name)
            if not 1 <= v <= MAX_CHANNELS:
                problems.append(f"{name}={v} must be in 1..{MAX_CHANNELS}")
        for name in ("in_kernel", "kernel_size"):
            v = getattr(self, name)
            if not (1 <= v <= 31 and v % 2 == 1):
                problems.append(f"{name}={v} must be odd and in 1..31")
        if not 1 <= len(self.dilations) <= MAX_LAYERS or any(not 1 <= d <= 64 for d in self.dilations):
            problems.append(f"dilations={self.dilations} must be 1..{MAX_LAYERS} values in 1..64")
        if problems:
            raise CanoraError("invalid ContentNetConfig: " + "; ".join(problems))

    @property
    def context(self) -> int:
        """Frames each output frame sees on each side (its receptive field is ``2 * context + 1``)."""
        return (self.in_kernel - 1) // 2 + sum((self.kernel_size - 1) // 2 * d for d in self.dilations)
