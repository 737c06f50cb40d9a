"""Generator configs of the vocoders (HiFi-GAN and NSF-HiFi-GAN), without torch: what a vocoder export's
``config`` holds, so that an ONNX vocoder is described and checked without importing the models."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from canora.config import Config
from canora.errors import CanoraError

#: ``kind`` of a HiFi-GAN export and of an NSF-HiFi-GAN export (torch or ONNX)
EXPORT_KIND = "hifigan"
NSF_KIND = "nsf-hifigan"


def generator_shape_problems(cfg: Any) -> list[str]:
    """What is wrong with the upsampling / resblock fields of a generator config (HiFi-GAN or NSF)."""
    problems = []
    if cfg.resblock not in ("1", "2"):
        problems.append(f"resblock={cfg.resblock!r} must be '1' or '2'")
    if len(cfg.upsample_rates) != len(cfg.upsample_kernel_sizes) or not cfg.upsample_rates:
        problems.append("upsample_rates and upsample_kernel_sizes need the same non-zero length")
    for u, k in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes):
        if u < 1 or k < u or (k - u) % 2:
            problems.append(f"upsample kernel {k} / rate {u}: need kernel >= rate and kernel - rate even")
    if len(cfg.resblock_kernel_sizes) != len(cfg.resblock_dilation_sizes) or not cfg.resblock_kernel_sizes:
        problems.append("resblock_kernel_sizes and resblock_dilation_sizes need the same non-zero length")
    if cfg.resblock == "1" and any(len(d) != 3 for d in cfg.resblock_dilation_sizes):
        problems.append("resblock '1' takes exactly three dilations per kernel")
    if cfg.upsample_initial_channel >> len(cfg.upsample_rates) < 1:
        problems.append("upsample_initial_channel is too small for the number of upsampling stages")
    return problems


def shape_fields_from_json(d: dict[str, Any]) -> dict[str, Any]:
    """A config dict read from JSON with its list fields as the tuples the frozen configs hold."""
    d = dict(d)
    for key in ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes"):
        if key in d:
            d[key] = tuple(int(x) for x in d[key])
    if "resblock_dilation_sizes" in d:
        d["resblock_dilation_sizes"] = tuple(tuple(int(x) for x in row) for row in d["resblock_dilation_sizes"])
    if "resblock" in d:
        d["resblock"] = str(d["resblock"])
    return d


class UpsamplingConfig(Config):
    """Shared by the HiFi-GAN and NSF generator configs: the hop is the product of the upsampling rates, and
    one shape check (:func:`generator_shape_problems`) covers both."""

    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    resblock: str
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]

    BOUNDS: ClassVar[dict[str, tuple[float, float]]] = {
        "upsample_rates": (1, 64), "upsample_kernel_sizes": (1, 128), "upsample_initial_channel": (1, 4096),
        "resblock_kernel_sizes": (1, 64), "resblock_dilation_sizes": (1, 256), "n_mels": (1, 512),
        "sample_rate": (1000, 384_000), "harmonics": (1, 512), "sine_amp": (0, 10), "noise_std": (0, 10),
        "interp_kernel": (1, 63), "voiced_noise": (0, 1),
    }

    @property
    def hop_length(self) -> int:
        """Samples per mel frame = the product of the upsampling rates."""
        return math.prod(self.upsample_rates)

    def receptive_frames(self) -> int:
        """Mel frames either side of a frame that can reach its output samples (an upper bound from the layer
        shapes): inputs cut into pieces with this much context each side vocode as the whole input does."""
        interpolate = getattr(self, "upsample", "transposed") == "interpolate"
        reach, rate = 3.0, 1  # conv_pre: kernel 7 at the frame rate
        for u, k in zip(self.upsample_rates, self.upsample_kernel_sizes):
            if interpolate:  # linear interpolation (one input either side), then a conv at the output rate
                reach += (1 + getattr(self, "interp_kernel", 1) // 2 / u) / rate
            else:  # a transposed conv: each output sees ceil(k / u) inputs
                reach += math.ceil(k / u) / rate
            rate *= u
            blocks = []
            for rk, dil in zip(self.resblock_kernel_sizes, self.resblock_dilation_sizes):
                half = (rk - 1) // 2  # ResBlock1 follows each dilated conv with an undilated one
                blocks.append(sum(half * d for d in dil) + (half * len(dil) if self.resblock == "1" else 0))
            reach += max(blocks, default=0) / rate
        return math.ceil(reach + 3 / rate + 1)  # conv_post (kernel 7), and one frame for the NSF noise convs

    def check_shape(self, what: str, problems: list[str] | None = None) -> None:
        """Raise one :class:`CanoraError` listing the shape ``problems`` (and any given ones) of this config."""
        problems = generator_shape_problems(self) + (problems or [])
        if problems:
            raise CanoraError(f"invalid {what} config: " + "; ".join(problems))


@dataclass(frozen=True)
class GeneratorConfig(UpsamplingConfig):
    """Hyper-parameters of a HiFi-GAN generator (the generator part of an official config JSON)."""

    resblock: Literal["1", "2"] = "1"
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    n_mels: int = 80

    def __post_init__(self) -> None:
        self.check_shape("HiFi-GAN generator")

    @classmethod
    def from_hifigan_config(cls, cfg: dict[str, Any]) -> GeneratorConfig:
        """The generator part of an official HiFi-GAN config JSON (unknown keys are ignored)."""
        keys = ("resblock", "upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel",
                "resblock_kernel_sizes", "resblock_dilation_sizes")
        missing = [k for k in keys if k not in cfg]
        if missing:
            raise CanoraError(f"not a HiFi-GAN config: missing generator keys {missing}")
        d = {k: cfg[k] for k in keys}
        d["n_mels"] = int(cfg.get("num_mels", 80))
        return cls.from_dict(d)

    def to_hifigan_config(self) -> dict[str, Any]:
        """The generator keys in the official JSON spelling."""
        d = self.to_dict()
        d["num_mels"] = d.pop("n_mels")
        d["upsample_rates"] = list(self.upsample_rates)
        d["upsample_kernel_sizes"] = list(self.upsample_kernel_sizes)
        d["resblock_kernel_sizes"] = list(self.resblock_kernel_sizes)
        d["resblock_dilation_sizes"] = [list(r) for r in self.resblock_dilation_sizes]
        return d


@dataclass(frozen=True)
class NSFConfig(UpsamplingConfig):
    """Hyper-parameters of an NSF-HiFi-GAN generator (defaults: the ~0.3M-parameter bundled singing vocoder's
    design, trained from scratch with ``voiced_noise`` 1; the bundled one was then fine-tuned with 0.3, 0.5 and 0.4)."""

    sample_rate: int = 22050
    n_mels: int = 80
    resblock: Literal["1", "2"] = "2"
    upsample_rates: tuple[int, ...] = (8, 8, 4)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 8)
    upsample_initial_channel: int = 128
    resblock_kernel_sizes: tuple[int, ...] = (3, 5, 7)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 2), (2, 6), (3, 12))
    harmonics: int = 64  # up to Nyquist for F0 >= 172 Hz; 6.4 kHz at 100 Hz (canora 0.1: 8, i.e. ~2 kHz)
    sine_amp: float = 0.1
    noise_std: float = 0.003
    upsample: Literal["transposed", "interpolate"] = "interpolate"
    source: Literal["step", "smooth"] = "smooth"
    interp_kernel: int = 5  # kernel of the convolution after each linear interpolation ("interpolate" only)
    # "smooth" source only: its noise channel's level where voiced, relative to unvoiced (1 = the same everywhere)
    voiced_noise: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if self.harmonics < 1 or self.sample_rate < 1:
            problems.append("harmonics and sample_rate must be >= 1")
        if not 0.0 <= self.voiced_noise <= 1.0:
            problems.append(f"voiced_noise={self.voiced_noise} must be in [0, 1]")
        elif self.voiced_noise != 1.0 and self.source != "smooth":
            problems.append(f"voiced_noise={self.voiced_noise} needs the smooth source (the step source has its "
                            "own noise_std inside notes)")
        if self.upsample not in ("transposed", "interpolate"):
            problems.append(f"upsample={self.upsample!r} must be 'transposed' or 'interpolate'")
        if self.source not in ("step", "smooth"):
            problems.append(f"source={self.source!r} must be 'step' or 'smooth'")
        if self.interp_kernel < 1 or self.interp_kernel % 2 == 0:
            problems.append(f"interp_kernel={self.interp_kernel} must be odd and >= 1")
        self.check_shape("NSF generator", problems)

    @classmethod
    def upgrade(cls, d: dict[str, Any]) -> dict[str, Any]:
        """A dict without ``upsample``/``source`` (canora 0.1) is the legacy design."""
        return {**LEGACY_DESIGN, **d} if "upsample" not in d and "source" not in d else d


LEGACY_DESIGN: dict[str, Any] = {"upsample": "transposed", "source": "step", "harmonics": 8}
