"""Content features, frame-aligned to the HiFi-GAN mel (frame i centred at i*hop + hop/2).

* Content encoders behind a registry (:func:`get_content_encoder`): ``"dsp"`` (no weights): mel-cepstral
  coefficients 1..19 with per-utterance mean-variance normalisation, chosen by ``benchmarks/content_identity.py``
  among DSP features to carry little singer identity but keep phonetic content; ``"hubert"``: a HuBERT-style
  encoder loaded from a local directory with ``transformers``; and ``"learned"``, canora's own trained encoder,
  which :mod:`canora.content` registers when it is imported (``canora.conditioning`` imports it).
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from canora.dsp.stft import _fit_frames, check_wav, stft_power
from canora.errors import CanoraError, CheckpointError


# ------------------------------------------------------------ content encoders
class ContentEncoder(ABC):
    """Frame-aligned content features: ``extract(wav (T,), sr, hop, n_frames) -> (n_frames, dim) float32``."""

    name: ClassVar[str] = ""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Feature dimension."""

    @abstractmethod
    def extract(self, wav: np.ndarray, sr: int, hop: int, n_frames: int) -> np.ndarray:
        """Content (n_frames, dim) float32 of ``wav`` (T,) at ``sr``; frame i centred at i*hop + hop/2."""

    def config(self) -> dict[str, Any]:
        """Constructor arguments, to store with a model."""
        return {}

    def stft_size(self, sr: int, hop: int) -> int | None:
        """n_fft of the HiFi-GAN-grid power spectrogram :meth:`extract_from_power` reads at ``sr`` and ``hop``,
        or None when the encoder reads the waveform itself (then only :meth:`extract` works)."""
        return None

    def extract_from_power(self, power: np.ndarray, sr: int, hop: int, n_frames: int) -> np.ndarray:
        """:meth:`extract` from a power spectrogram (n_fft // 2 + 1, T) on the HiFi-GAN grid, n_fft =
        :meth:`stft_size` (``canora.dsp.stft.stft_power`` / ``hifigan_power``) -> (n_frames, dim) float32."""
        raise CanoraError(f"content encoder {self.name!r} reads audio, not a spectrogram; call extract()")

    def reads_mel(self, spec: Any) -> bool:
        """True when the encoder reads the log-mel of MelSpec ``spec`` (:meth:`extract_from_mel`), which an
        analysis has computed already."""
        return False

    def extract_from_mel(self, mel: np.ndarray, spec: Any) -> np.ndarray:
        """Content (T, dim) float32 from the log-mel (n_mels, T) of ``spec`` (encoders whose :meth:`reads_mel`)."""
        raise CanoraError(f"content encoder {self.name!r} does not read a log-mel; call extract()")


_REGISTRY: dict[str, type[ContentEncoder]] = {}


def register_content_encoder(cls: type[ContentEncoder]) -> type[ContentEncoder]:
    """Class decorator: make ``cls`` available to :func:`get_content_encoder` under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def available_content_encoders() -> list[str]:
    """Names accepted by :func:`get_content_encoder`."""
    return sorted(_REGISTRY)


def get_content_encoder(name: str, **kwargs: Any) -> ContentEncoder:
    """The content encoder registered as ``name``, built with ``kwargs``."""
    if name not in _REGISTRY:
        raise CanoraError(
            f"unknown content encoder {name!r}; choose one of {', '.join(available_content_encoders())}"
        )
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as e:
        raise CanoraError(f"content encoder {name!r}: bad options {sorted(kwargs)} ({e})") from None


def get_content_extractor(name: str, **kwargs: Any) -> Any:
    """For the refiner: a function ``(wav, sr, hop_length, n_frames) -> (dim, n_frames)`` (channels first)."""
    enc = get_content_encoder(name, **kwargs)

    def run(wav: np.ndarray, sr: int, hop_length: int, n_frames: int) -> np.ndarray:
        return np.ascontiguousarray(enc.extract(wav, sr, hop_length, n_frames).T)

    return run


def cmvn(x: np.ndarray, mask: np.ndarray | None = None, eps: float = 1e-5) -> np.ndarray:
    """Per-utterance mean-variance normalisation of ``x`` (T, D), statistics over rows where ``mask`` (T,)."""
    ref = x if mask is None or mask.sum() < 2 else x[mask]
    return (x - ref.mean(axis=0)) / (ref.std(axis=0) + eps)


def warp_spectrum(power: np.ndarray, freqs: np.ndarray, alpha: float, top: float) -> np.ndarray:
    """Piecewise-linear VTLN warp of ``power`` (F, N): output at f reads input at ``alpha * f`` below a knee,
    then a straight line to ``top`` so the band edge stays put (formants at F move to F / alpha)."""
    knee = 0.8 * top / max(alpha, 1.0)
    src = np.where(
        freqs <= knee, alpha * freqs, alpha * knee + (freqs - knee) * (top - alpha * knee) / (top - knee)
    )
    src = np.where(freqs <= top, src, freqs)
    lo = np.clip(np.searchsorted(freqs, src) - 1, 0, len(freqs) - 2)
    a = np.clip((src - freqs[lo]) / (freqs[lo + 1] - freqs[lo]), 0.0, 1.0)[:, None]
    return (1 - a) * power[lo] + a * power[lo + 1]


@functools.lru_cache(maxsize=8)
def _dct2_ortho(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix (n, n) float64: ``x @ D.T`` is ``scipy.fft.dct(x, 2, norm="ortho")`` along
    the last axis (to rounding; scipy.fft's import costs a fifth of a second of start-up)."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    d = np.cos(np.pi * k * (2 * i + 1) / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    d.flags.writeable = False  # shared by every caller (cached)
    return d


@register_content_encoder
class CepstralContent(ContentEncoder):
    """DSP content: mel-frequency cepstral coefficients ``first..last`` of a log-mel envelope, CMVN'd.

    The envelope is an ``n_mels``-band power mel over 0..``fmax`` Hz from a ~46 ms Hann window on the mel
    grid. Coefficient 0 (level) is dropped and per-utterance mean-variance normalisation (statistics over
    frames within 40 dB of the loudest) removes each recording's average envelope: its static timbre,
    vocal-tract and microphone colour. ``benchmarks/content_identity.py`` measured this default to cut
    singer classification from 80% (raw log-mel) to 19% per 1 s window and 12% per frame (chance 10%,
    10 singers) while keeping the most phonetic content of the candidates. ``vtln`` adds a per-utterance
    piecewise-linear frequency warp (from the median spectral centroid against ``vtln_ref_hz``); measured,
    it lost phonetic content without a clear identity gain, so it is off by default.
    """

    name = "dsp"

    def __init__(
        self,
        n_mels: int = 40,
        first: int = 1,
        last: int = 19,
        fmax: float = 8000.0,
        vtln: bool = False,
        vtln_ref_hz: float = 1800.0,
        normalize: bool = True,
    ) -> None:
        if not 0 <= first <= last < n_mels:
            raise CanoraError(
                f"cepstral content needs 0 <= first <= last < n_mels, got {first}, {last}, {n_mels}"
            )
        self.n_mels, self.first, self.last, self.fmax = int(n_mels), int(first), int(last), float(fmax)
        self.vtln, self.vtln_ref_hz, self.normalize = bool(vtln), float(vtln_ref_hz), bool(normalize)

    @property
    def dim(self) -> int:
        return self.last - self.first + 1

    def config(self) -> dict[str, Any]:
        return {
            "n_mels": self.n_mels,
            "first": self.first,
            "last": self.last,
            "fmax": self.fmax,
            "vtln": self.vtln,
            "vtln_ref_hz": self.vtln_ref_hz,
            "normalize": self.normalize,
        }

    def warp_factor(self, power: np.ndarray, freqs: np.ndarray, active: np.ndarray) -> float:
        """Per-utterance frequency stretch from the median spectral centroid of the ``active`` frames."""
        band = (freqs >= 300) & (freqs <= 5000)
        p = power[band][:, active] if active.any() else power[band]
        db = 10 * np.log10(p + 1e-20)
        w = np.clip(db - (db.max(axis=0) - 50.0), 0.0, None)  # dB above a 50 dB floor: level-invariant
        centroid = (freqs[band] @ w) / np.maximum(w.sum(axis=0), 1e-20)
        return float(np.clip(np.median(centroid) / self.vtln_ref_hz, 0.7, 1.4))

    def stft_size(self, sr: int, hop: int) -> int:
        """A ~46 ms window: the power of two nearest 0.0464 * sr (1024 at 22050 Hz), at least ``hop``."""
        return max(hop, 1 << round(math.log2(0.0464 * sr)))

    def extract(self, wav: np.ndarray, sr: int, hop: int, n_frames: int) -> np.ndarray:
        x = check_wav(wav, sr, hop)
        return self.extract_from_power(stft_power(x, hop, self.stft_size(sr, hop)), sr, hop, n_frames)

    def extract_from_power(self, power: np.ndarray, sr: int, hop: int, n_frames: int) -> np.ndarray:
        from canora.dsp.melbank import mel_filterbank

        n_fft = self.stft_size(sr, hop)
        if power.shape[0] != n_fft // 2 + 1:
            raise CanoraError(f"cepstral content got {power.shape[0]} STFT bins; give an n_fft={n_fft} spectrogram")
        power = np.asarray(power, dtype=np.float64)
        if power.shape[1] == 0:
            return np.zeros((n_frames, self.dim), np.float32)
        freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
        frame_db = 10 * np.log10(power.sum(axis=0) + 1e-20)
        active = frame_db > frame_db.max() - 40.0
        top = min(self.fmax, sr / 2)
        if self.vtln:
            power = warp_spectrum(power, freqs, self.warp_factor(power, freqs, active), top)
        fb = mel_filterbank(sr, n_fft, self.n_mels, 0.0, top)
        logmel = np.log(fb @ power + 1e-10).T  # (frames, n_mels)
        ceps = logmel @ _dct2_ortho(self.n_mels)[self.first: self.last + 1].T
        if self.normalize:
            ceps = cmvn(ceps, active)
        return _fit_frames(ceps.astype(np.float32), n_frames)


@register_content_encoder
class HubertContent(ContentEncoder):
    """A HuBERT-style encoder from a local directory (``transformers``; never downloads).

    ``model_dir`` holds a ``HubertModel.save_pretrained`` folder. Audio is resampled to 16 kHz, the hidden
    state after transformer layer ``layer`` (0 = the CNN features after projection; default: the last
    layer) is taken, and linearly interpolated from its 20 ms grid to the mel's frame centres.
    """

    name = "hubert"
    sample_rate: ClassVar[int] = 16000

    def __init__(self, model_dir: str | Path, layer: int | None = None, device: str = "cpu") -> None:
        try:
            from transformers import HubertModel
        except ImportError:
            raise CanoraError(
                "the 'hubert' content encoder needs transformers: pip install 'canora[hubert]'"
            ) from None
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise CheckpointError(
                f"{self.model_dir}: no config.json; point model_dir at a saved HubertModel folder"
            )
        try:
            self.model = (
                HubertModel.from_pretrained(str(self.model_dir), local_files_only=True).eval().to(device)
            )
        except (OSError, ValueError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(f"{self.model_dir}: cannot load a HubertModel ({msg})") from None
        n_layers = int(self.model.config.num_hidden_layers)
        self.layer = n_layers if layer is None else int(layer)
        if not 0 <= self.layer <= n_layers:
            raise CanoraError(f"hubert layer {self.layer} out of range 0..{n_layers} for {self.model_dir}")
        self.device = device
        self._stride = int(np.prod(self.model.config.conv_stride))

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def config(self) -> dict[str, Any]:
        return {"model_dir": str(self.model_dir), "layer": self.layer}

    def extract(self, wav: np.ndarray, sr: int, hop: int, n_frames: int) -> np.ndarray:
        import torch

        from canora.dsp.resample import resample

        x = resample(check_wav(wav, sr, hop).astype(np.float32), sr, self.sample_rate)
        x = (x - x.mean()) / (x.std() + 1e-7)
        min_len = int(np.prod(self.model.config.conv_kernel))  # shorter input gives no frames
        x = np.pad(x, (0, max(0, min_len - len(x))))
        with torch.inference_mode():
            out = self.model(torch.from_numpy(x)[None].to(self.device), output_hidden_states=True)
            h = (
                out.hidden_states[self.layer][0].float().cpu().numpy()
            )  # (N, dim), frame j ~ centre (j+.5)*stride
        src_t = (np.arange(len(h)) + 0.5) * self._stride / self.sample_rate
        dst_t = (np.arange(n_frames) + 0.5) * hop / sr
        cols = [np.interp(dst_t, src_t, h[:, d]) for d in range(h.shape[1])]
        return np.stack(cols, axis=1).astype(np.float32) if cols else np.zeros((n_frames, 0), np.float32)
