"""MelSpec: the single source of truth for what a mel spectrogram is, and the HiFi-GAN-exact mel.

The official HiFi-GAN mel (jik876/hifi-gan ``meldataset.py``) is reproduced on current torch/librosa:

1. float waveform in [-1, 1];
2. librosa's ``filters.mel`` (Slaney scale and norm), float32, computed bit for bit by
   :mod:`canora.dsp.melbank` (without importing librosa's filters and scipy.signal);
3. reflect padding of (n_fft - hop) / 2 on each side, then an STFT with ``center=False`` and a periodic
   Hann window, onesided, not normalised;
4. magnitude ``sqrt(re^2 + im^2 + 1e-9)``;
5. ``log(clamp(filter @ magnitude, min=1e-5))`` (natural log; the floor is ln(1e-5) = -11.5129).

Frames = floor(T / hop). Every other convention a :class:`MelSpec` can describe (log10, other clamp,
``center=True`` padding, power mels, HTK scale) is explicit in its fields, so two specs compare equal
exactly when they produce the same numbers.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from canora.config import Config, read_json_file
from canora.errors import CanoraError, MelError

if TYPE_CHECKING:
    import torch

#: official HiFi-GAN *training* audio is peak-normalised to this (inference and fine-tuning audio is not)
PEAK_NORMALIZE = 0.95

log = logging.getLogger(__name__)

LogBase = Literal["e", "10"]
Padding = Literal["hifigan", "center"]

# Keys of the official HiFi-GAN config JSON that MelSpec or the generator do not use; accepted silently.
_KNOWN_UNUSED_KEYS = {
    "num_gpus", "batch_size", "learning_rate", "adam_b1", "adam_b2", "lr_decay", "seed", "segment_size",
    "num_freq", "num_workers", "dist_config", "fmax_for_loss", "fmax_loss", "resblock", "upsample_rates",
    "upsample_kernel_sizes", "upsample_initial_channel", "resblock_kernel_sizes", "resblock_dilation_sizes",
    "num_mels", "n_fft", "hop_size", "win_size", "sampling_rate", "fmin", "fmax", "canora",
}


@dataclass(frozen=True)
class MelSpec(Config):
    """Every parameter that defines a log-mel spectrogram. Defaults are the official HiFi-GAN v1/v2/v3 mel.

    ``fmax=None`` means sr / 2. ``padding="hifigan"`` is reflect padding of (n_fft - hop) / 2 with
    ``center=False`` (frames = floor(T / hop)); ``"center"`` is reflect padding of n_fft / 2 (one more frame).
    ``power`` 1.0 is a magnitude mel, 2.0 a power mel.
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = 8000.0
    log_base: LogBase = "e"
    clamp: float = 1e-5
    padding: Padding = "hifigan"
    power: float = 1.0
    mel_scale: Literal["slaney", "htk"] = "slaney"

    BOUNDS: ClassVar[dict[str, tuple[float, float]]] = {
        "sample_rate": (1000, 384_000), "n_fft": (16, 16384), "hop_length": (1, 16384), "win_length": (1, 16384),
        "n_mels": (1, 512), "fmin": (0, 192_000), "fmax": (1, 192_000), "clamp": (1e-30, 1.0),
    }

    def __post_init__(self) -> None:
        problems = []
        if self.sample_rate <= 0:
            problems.append(f"sample_rate={self.sample_rate} must be > 0")
        if not 0 < self.win_length <= self.n_fft:
            problems.append(f"win_length={self.win_length} must be in (0, n_fft={self.n_fft}]")
        if not 0 < self.hop_length <= self.n_fft:
            problems.append(f"hop_length={self.hop_length} must be in (0, n_fft={self.n_fft}]")
        if (self.n_fft - self.hop_length) % 2:
            problems.append("n_fft - hop_length must be even for symmetric HiFi-GAN padding")
        if self.n_mels <= 0:
            problems.append(f"n_mels={self.n_mels} must be > 0")
        top = self.fmax if self.fmax is not None else self.sample_rate / 2
        if not 0 <= self.fmin < top <= self.sample_rate / 2:
            problems.append(f"need 0 <= fmin ({self.fmin}) < fmax ({top}) <= sr/2 ({self.sample_rate / 2})")
        if self.log_base not in ("e", "10"):
            problems.append(f"log_base={self.log_base!r} must be 'e' or '10'")
        if self.padding not in ("hifigan", "center"):
            problems.append(f"padding={self.padding!r} must be 'hifigan' or 'center'")
        if not self.clamp > 0:
            problems.append(f"clamp={self.clamp} must be > 0")
        if self.power not in (1.0, 2.0):
            problems.append(f"power={self.power} must be 1.0 (magnitude) or 2.0 (power)")
        if self.mel_scale not in ("slaney", "htk"):
            problems.append(f"mel_scale={self.mel_scale!r} must be 'slaney' or 'htk'")
        if problems:
            raise CanoraError("invalid MelSpec: " + "; ".join(problems))

    # ------------------------------------------------------------------ derived values
    @property
    def fmax_hz(self) -> float:
        """The upper filter edge in Hz (``fmax`` or sr / 2)."""
        return float(self.fmax) if self.fmax is not None else self.sample_rate / 2

    @property
    def log_floor(self) -> float:
        """The value of a silent bin: log(clamp) in this spec's log base."""
        return math.log(self.clamp) if self.log_base == "e" else math.log10(self.clamp)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a waveform of ``num_samples`` samples."""
        if self.padding == "hifigan":
            return num_samples // self.hop_length
        return num_samples // self.hop_length + 1

    def for_loss(self, fmax_for_loss: float | None = None) -> MelSpec:
        """The spec of HiFi-GAN's loss mel: the same, with ``fmax_for_loss`` (None = full band)."""
        return replace(self, fmax=fmax_for_loss)

    def describe(self) -> str:
        """A compact one-line description, for messages."""
        log = "ln" if self.log_base == "e" else "log10"
        return (
            f"sr={self.sample_rate} n_fft={self.n_fft} hop={self.hop_length} win={self.win_length} "
            f"n_mels={self.n_mels} fmin={self.fmin:g} fmax={self.fmax_hz:g} log={log} "
            f"clamp={self.clamp:g} padding={self.padding} power={self.power:g} scale={self.mel_scale}"
        )

    def diff(self, other: MelSpec) -> list[str]:
        """Fields that differ, as ``name: self != other`` strings."""
        return [
            f"{f.name}: {getattr(self, f.name)!r} != {getattr(other, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]

    def require_same(self, other: MelSpec, what: str, fix: str) -> None:
        """Raise :class:`MelError` naming every differing field when ``other`` is not this spec."""
        d = self.diff(other)
        if d:
            raise MelError(f"{what}: MelSpec mismatch ({'; '.join(d)}); {fix}")

    # ------------------------------------------------------------------ (de)serialisation
    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> MelSpec:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_hifigan_config(cls, cfg: dict[str, Any], source: str = "config") -> MelSpec:
        """The mel of an official HiFi-GAN ``config.json`` (or a canora one, which adds a ``canora`` section).

        Official configs imply natural log, clamp 1e-5, HiFi-GAN padding, magnitude, Slaney.
        """
        canora = cfg.get("canora") or {}
        if "mel_spec" in canora:
            return cls.from_dict(canora["mel_spec"])
        required = ("sampling_rate", "n_fft", "hop_size", "win_size", "num_mels", "fmin", "fmax")
        missing = [k for k in required if k not in cfg]
        if missing:
            raise CanoraError(f"{source}: not a HiFi-GAN config, missing keys {missing}")
        unknown = sorted(set(cfg) - _KNOWN_UNUSED_KEYS)
        if unknown:
            log.warning("%s: ignoring unknown config keys %s", source, unknown)
        return cls(
            sample_rate=int(cfg["sampling_rate"]),
            n_fft=int(cfg["n_fft"]),
            hop_length=int(cfg["hop_size"]),
            win_length=int(cfg["win_size"]),
            n_mels=int(cfg["num_mels"]),
            fmin=float(cfg["fmin"]),
            fmax=None if cfg["fmax"] is None else float(cfg["fmax"]),
        )


def hifigan_fmax_for_loss(cfg: dict[str, Any]) -> float | None:
    """``fmax_for_loss`` of an official config, accepting the ``fmax_loss`` spelling of released configs."""
    if "fmax_for_loss" in cfg:
        return cfg["fmax_for_loss"]
    return cfg.get("fmax_loss")


BUILTIN_CONFIGS = ("v1", "v2", "v3")


def read_config(name_or_path: str | Path) -> dict[str, Any]:
    """Read a HiFi-GAN config JSON: ``v1``/``v2``/``v3`` (shipped with canora) or a path."""
    key = str(name_or_path)
    if key in BUILTIN_CONFIGS or key in {f"config_{v}" for v in BUILTIN_CONFIGS}:
        path = Path(__file__).parents[1] / "configs" / f"config_{key.removeprefix('config_')}.json"
    else:
        path = Path(key)
    if not path.exists() and not path.is_symlink():
        raise CanoraError(f"{path}: config not found; pass v1, v2, v3 or the path of a HiFi-GAN config.json")
    cfg = read_json_file(path, "pass a HiFi-GAN config.json", what="config file")
    if not isinstance(cfg, dict):
        raise CanoraError(f"{path}: expected a JSON object; pass a HiFi-GAN config.json")
    return cfg


def load_spec(name_or_path: str | Path) -> MelSpec:
    """MelSpec of a config name (``v1``), a HiFi-GAN config JSON, or a saved MelSpec JSON."""
    cfg = read_config(name_or_path)
    if "sample_rate" in cfg and "hop_length" in cfg:
        return MelSpec.from_dict(cfg)
    return MelSpec.from_hifigan_config(cfg, source=str(name_or_path))


# ---------------------------------------------------------------------- the mel itself
_CACHE: dict[tuple[MelSpec, str, Any], tuple[torch.Tensor, torch.Tensor]] = {}


def mel_filterbank(spec: MelSpec) -> np.ndarray:
    """The mel filter matrix (n_mels, n_fft // 2 + 1) float32 for ``spec``: librosa's, bit for bit
    (:mod:`canora.dsp.melbank`)."""
    from canora.dsp import melbank

    return melbank.mel_filterbank(spec.sample_rate, spec.n_fft, spec.n_mels, spec.fmin, spec.fmax_hz,
                                  htk=spec.mel_scale == "htk", norm="slaney")


def _basis(spec: MelSpec, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(mel filter, Hann window) for ``spec`` on ``device``; cached on the whole spec, device and dtype."""
    import torch

    key = (spec, str(device), dtype)
    hit = _CACHE.get(key)
    if hit is None:
        with torch.inference_mode(False):  # normal tensors, usable by autograd even if first built in inference
            hit = _make_basis(spec, device, dtype)
        _CACHE[key] = hit
    return hit


def _make_basis(spec: MelSpec, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    fb = torch.from_numpy(mel_filterbank(spec)).to(device=device, dtype=dtype)
    win = torch.hann_window(spec.win_length, device=device, dtype=dtype)
    return fb, win


def mel_spectrogram(wav: torch.Tensor, spec: MelSpec) -> torch.Tensor:
    """Log-mel of ``wav`` (T,) or (B, T) float in [-1, 1] -> (n_mels, frames) or (B, n_mels, frames).

    Batched, on the waveform's device; differentiable (used in the vocoder's mel loss).
    """
    import torch

    squeeze = wav.dim() == 1
    x = wav.unsqueeze(0) if squeeze else wav
    if x.dim() != 2:
        raise MelError(f"mel_spectrogram expects (T,) or (B, T) audio, got shape {tuple(wav.shape)}")
    if not x.is_floating_point():
        raise MelError(f"mel_spectrogram expects float audio in [-1, 1], got {x.dtype}")
    pad = (spec.n_fft - spec.hop_length) // 2 if spec.padding == "hifigan" else spec.n_fft // 2
    if x.shape[-1] <= pad:
        raise MelError(
            f"audio of {x.shape[-1]} samples is too short for a mel (needs more than {pad} samples)"
        )
    fb, win = _basis(spec, x.device, x.dtype)
    x = torch.nn.functional.pad(x.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    stft = torch.stft(
        x, spec.n_fft, hop_length=spec.hop_length, win_length=spec.win_length, window=win,
        center=False, normalized=False, onesided=True, return_complex=True,
    )
    power = stft.real.pow(2) + stft.imag.pow(2)
    mag = torch.sqrt(power + 1e-9) if spec.power == 1.0 else power
    mel = torch.matmul(fb, mag)
    mel = torch.clamp(mel, min=spec.clamp)
    out = torch.log(mel) if spec.log_base == "e" else torch.log10(mel)
    return out.squeeze(0) if squeeze else out


def frame_padding(spec: MelSpec) -> int:
    """Samples reflected before the first frame (and after the last): (n_fft - hop) / 2, or n_fft / 2 for
    ``padding="center"``."""
    return (spec.n_fft - spec.hop_length) // 2 if spec.padding == "hifigan" else spec.n_fft // 2


def analysis_window(spec: MelSpec) -> np.ndarray:
    """(n_fft,) float64: a periodic Hann window of ``win_length`` centred in ``n_fft``, as ``torch.stft`` places it."""
    win = np.zeros(spec.n_fft)
    left = (spec.n_fft - spec.win_length) // 2
    win[left: left + spec.win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(spec.win_length) / spec.win_length)
    return win


def numpy_power(wav: np.ndarray, spec: MelSpec) -> np.ndarray:
    """The STFT power |X|^2 (n_fft // 2 + 1, frames) float64 of ``wav`` (T,) as ``spec`` frames it, in numpy: reflect
    padding ((n_fft - hop) / 2, or n_fft / 2 for ``padding="center"``), a periodic Hann window of ``win_length``
    centred in ``n_fft`` (as ``torch.stft`` places it), ``center=False``."""
    x = np.asarray(wav, dtype=np.float64)
    pad = frame_padding(spec)
    if x.ndim != 1 or len(x) <= pad:
        raise MelError(f"audio of shape {x.shape} is too short or not (T,) for a mel (needs more than {pad} samples)")
    x = np.pad(x, (pad, pad), mode="reflect")
    n = 1 + (len(x) - spec.n_fft) // spec.hop_length
    frames = np.lib.stride_tricks.sliding_window_view(x, spec.n_fft)[:: spec.hop_length][:n]
    win = analysis_window(spec)
    out = np.empty((spec.n_fft // 2 + 1, n))
    for a in range(0, n, 4096):  # in blocks: a long song's complex spectrum at once would be large
        block = np.fft.rfft(frames[a: a + 4096] * win, axis=1)
        out[:, a: a + 4096] = (block.real ** 2 + block.imag ** 2).T
    return out


def wav_to_mel(wav: np.ndarray, spec: MelSpec, impl: str = "numpy") -> np.ndarray:
    """(T,) float audio -> (n_mels, frames) float32 log-mel.

    ``impl`` is the caller's choice: ``"numpy"`` (the default; float64 STFT and filter, the power held in float32 as
    an analysis holds it: within 1e-6 of the official algorithm computed exactly, and no torch) or ``"torch"``
    (:func:`mel_spectrogram`, float32 as the official HiFi-GAN code computes it: its float32 FFT is off by up to
    1e-3 in bins 80-100 dB under a frame's loudest, where the log magnifies rounding)."""
    if impl == "torch":
        import torch

        with torch.inference_mode():
            return mel_spectrogram(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), spec).numpy()
    if impl != "numpy":
        raise CanoraError(f"mel implementation {impl!r}: choose 'numpy' or 'torch'")
    return mel_from_power(numpy_power(wav, spec).astype(np.float32), spec)  # stored as the analysis stores it


def mel_from_power(power: np.ndarray, spec: MelSpec) -> np.ndarray:
    """Log-mel (n_mels, T) float32 from a precomputed STFT power |X|^2 (n_fft // 2 + 1, T): magnitude
    ``sqrt(p + 1e-9)`` (or the power), the mel filter, the clamp and the log, in numpy float64 (float32 out).
    :func:`canora.dsp.stft.hifigan_power` gives the power :func:`wav_to_mel` reads when ``spec`` uses the
    HiFi-GAN grid's STFT (``padding="hifigan"``, ``win_length == n_fft``)."""
    if power.ndim != 2 or power.shape[0] != spec.n_fft // 2 + 1:
        raise MelError(f"STFT power of shape {power.shape}; expected ({spec.n_fft // 2 + 1}, T) for n_fft {spec.n_fft}")
    p = np.asarray(power, dtype=np.float64)
    mag = np.sqrt(p + 1e-9) if spec.power == 1.0 else p
    mel = np.maximum(_numpy_filter(spec) @ mag, spec.clamp)
    return (np.log(mel) if spec.log_base == "e" else np.log10(mel)).astype(np.float32)


_NP_FILTERS: dict[MelSpec, np.ndarray] = {}


def _numpy_filter(spec: MelSpec) -> np.ndarray:
    """:func:`mel_filterbank` of ``spec`` as float64, cached."""
    fb = _NP_FILTERS.get(spec)
    if fb is None:
        fb = _NP_FILTERS[spec] = mel_filterbank(spec).astype(np.float64)
    return fb
