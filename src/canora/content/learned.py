"""The learned content encoder as a :class:`canora.dsp.content.ContentEncoder` named ``"learned"``.

It reads the HiFi-GAN log-mel a conversion computes anyway (:meth:`LearnedContent.extract_from_mel`) and runs the
network in numpy (:mod:`canora.content.net`), so the ONNX Runtime conversion path stays free of torch. Weights
come from an export directory (``model.json`` of kind ``content-encoder`` + ``model.safetensors``); ``"bundled"``
is the one shipped in ``canora/pretrained/content``. A refiner stores the encoder's name and the sha256 of its
weights in its feature parameters, so a refiner is never fed content from an encoder it was not trained on.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from canora.content.config import ContentNetConfig
from canora.content.net import NumpyContentNet
from canora.dsp.content import ContentEncoder, register_content_encoder
from canora.dsp.mel import MelSpec
from canora.errors import CanoraError, CheckpointError

KIND = "content-encoder"
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "pretrained" / "content"


def resolve(model: str | Path) -> Path:
    """``"bundled"`` -> the bundled encoder's directory; anything else is a path that must be an export."""
    if isinstance(model, str) and model.strip().lower() == "bundled":
        if not BUNDLED_DIR.is_dir():
            raise CheckpointError(f"{BUNDLED_DIR}: the bundled content encoder is missing; reinstall canora")
        return BUNDLED_DIR
    path = Path(model)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a content encoder export (a directory with model.json and "
                              "model.safetensors); pass one, or 'bundled'")
    return path


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> tuple[ContentNetConfig, MelSpec, NumpyContentNet, str]:
    """(config, MelSpec, numpy network, sha256 of the weights) of the export at ``path`` (cached on its mtime)."""
    from safetensors.numpy import load as st_load

    from canora.io.checkpoint import EXPORT_WEIGHTS, read_export_meta
    from canora.io.inputs import read_bytes_capped

    doc = read_export_meta(path, KIND)
    wpath = Path(path) / EXPORT_WEIGHTS
    blob = read_bytes_capped(wpath, "weights file", CheckpointError)
    digest = hashlib.sha256(blob).hexdigest()
    if doc.get("sha256") != digest:
        raise CheckpointError(f"{wpath}: weights do not match the hash in model.json (corrupt or replaced)")
    config = ContentNetConfig.from_dict(doc.get("config", {}), f"{path}/model.json")
    spec = MelSpec.from_dict(doc.get("mel_spec", {}), f"{path}/model.json")
    try:
        state = st_load(blob)
    except Exception as e:  # safetensors raises its own error type
        raise CheckpointError(f"{wpath}: unreadable safetensors file ({e})") from None
    return config, spec, NumpyContentNet(config, state, str(wpath)), digest


@register_content_encoder
class LearnedContent(ContentEncoder):
    """Content from a trained :class:`canora.content.model.ContentNet` (``model``: an export or ``"bundled"``).

    ``sha256``: the weights a refiner was trained with; loading other weights is an error naming both.
    ``normalize``: per-recording mean-variance normalisation of the output (statistics over the frames within 40 dB
    of the loudest, as the DSP feature's), which removes what stays constant through a recording: its microphone,
    room and the static part of the voice.
    """

    name = "learned"

    def __init__(self, model: str = "bundled", sha256: str | None = None, normalize: bool = True) -> None:
        path = resolve(model)
        try:
            mtime = (path / "model.safetensors").stat().st_mtime_ns
        except OSError:
            mtime = 0
        self.model = str(model)
        self.normalize = bool(normalize)
        self.config_, self.spec, self.net, self.sha256 = _load(str(path), mtime)
        if sha256 is not None and sha256 != self.sha256:
            raise CheckpointError(
                f"{path}: this content encoder (weights {self.sha256[:12]}) is not the one the model was trained "
                f"with ({sha256[:12]}); use the model's own encoder, or retrain the refiner on this one")

    @property
    def dim(self) -> int:
        return self.config_.dim

    def config(self) -> dict[str, Any]:
        return {"model": self.model, "sha256": self.sha256, "normalize": self.normalize}

    @property
    def context(self) -> int:
        """Frames each content frame depends on, on each side."""
        return self.config_.context

    def reads_mel(self, spec: MelSpec) -> bool:
        """True: this encoder reads the log-mel of ``spec`` (it must be the encoder's own MelSpec)."""
        return True

    def extract_from_mel(self, mel: np.ndarray, spec: MelSpec) -> np.ndarray:
        """Log-mel (n_mels, T) of ``spec`` -> content (T, dim) float32."""
        self.spec.require_same(spec, "the content encoder's MelSpec vs the audio's",
                               "analyse the audio with the encoder's MelSpec")
        mel = np.asarray(mel, dtype=np.float32)
        if mel.ndim != 2 or mel.shape[0] != self.config_.n_mels:
            raise CanoraError(f"the content encoder reads a log-mel of shape ({self.config_.n_mels}, T), got "
                              f"{mel.shape}")
        out = self.net(mel).T
        if self.normalize:
            from canora.dsp.content import cmvn

            energy_db = 10.0 * np.log10(np.exp(2.0 * mel.astype(np.float64)).sum(axis=0) + 1e-20)
            out = cmvn(out, energy_db > energy_db.max() - 40.0)
        return np.ascontiguousarray(out, dtype=np.float32)

    def extract(self, wav: np.ndarray, sr: int, hop: int, n_frames: int) -> np.ndarray:
        from canora.dsp.mel import wav_to_mel
        from canora.dsp.resample import resample
        from canora.dsp.stft import _fit_frames

        if hop * self.spec.sample_rate != self.spec.hop_length * sr:
            raise CanoraError(f"the content encoder's frames are {self.spec.hop_length} samples at "
                              f"{self.spec.sample_rate} Hz; hop {hop} at {sr} Hz is another frame rate")
        x = resample(np.asarray(wav, dtype=np.float32), sr, self.spec.sample_rate)
        return _fit_frames(self.extract_from_mel(wav_to_mel(x, self.spec), self.spec), n_frames)
