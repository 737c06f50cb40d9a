"""The refiner's frozen config (torch-free, so ONNX Runtime inference reads it without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from canora.config import Config
from canora.errors import CanoraError


@dataclass(frozen=True)
class RefinerConfig(Config):
    """Sizes of the denoiser. ``dilation_cycle``: layer ``i`` has dilation ``2 ** (i % dilation_cycle)``."""

    n_mels: int = 80
    residual_channels: int = 96
    layers: int = 20
    dilation_cycle: int = 4
    kernel_size: int = 3
    cond_channels: int = 96
    content_dim: int = 0
    n_singers: int = 1
    loudness_ref_db: float = -30.0
    loudness_scale_db: float = 20.0

    BOUNDS: ClassVar[dict[str, tuple[float, float]]] = {
        "n_mels": (1, 512), "residual_channels": (1, 1024), "layers": (1, 128), "dilation_cycle": (1, 16),
        "kernel_size": (1, 31), "cond_channels": (1, 1024), "content_dim": (0, 4096), "n_singers": (1, 4096),
        "loudness_ref_db": (-200, 200), "loudness_scale_db": (0.001, 200),
    }

    def __post_init__(self) -> None:
        problems = []
        for name in ("n_mels", "residual_channels", "layers", "dilation_cycle", "cond_channels", "n_singers"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)} must be >= 1")
        if self.content_dim < 0:
            problems.append(f"content_dim={self.content_dim} must be >= 0")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            problems.append(f"kernel_size={self.kernel_size} must be odd")
        if not self.loudness_scale_db > 0:
            problems.append(f"loudness_scale_db={self.loudness_scale_db} must be > 0")
        if problems:
            raise CanoraError("invalid RefinerConfig: " + "; ".join(problems))

    @property
    def receptive_field(self) -> int:
        """Frames seen by one output frame."""
        dil = sum(2 ** (i % self.dilation_cycle) for i in range(self.layers))
        return 1 + (self.kernel_size - 1) * dil

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> RefinerConfig:
        """``"tiny"`` (tests, ~50k parameters), ``"small"`` (~0.6M) or ``"default"`` (~2.3M, a 9 MB export)."""
        presets: dict[str, dict[str, Any]] = {
            "tiny": {"residual_channels": 32, "layers": 4, "dilation_cycle": 2, "cond_channels": 32},
            "small": {"residual_channels": 64, "layers": 12, "dilation_cycle": 4, "cond_channels": 64},
            "default": {},
        }
        if name not in presets:
            raise CanoraError(f"unknown refiner size {name!r}; expected one of {sorted(presets)}")
        return cls(**{**presets[name], **overrides})
