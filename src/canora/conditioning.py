"""Frame-aligned conditioning for the refiner: audio + MelSpec -> mel, F0, voiced, loudness, content.

One function, :func:`extract_features`, computes everything the refiner needs from a waveform, all with
exactly ``spec.num_frames(len(wav))`` frames (the mel's frames); :func:`load_features` does the same from
an audio file with an on-disk cache keyed on the file's bytes and on every parameter that affects the
result (MelSpec, extractor names and parameters, this module's feature version).

The extractors themselves live in :mod:`canora.dsp.pitch` (F0) and :mod:`canora.dsp.content` (loudness, content);
this module only chooses them by name, aligns them to the mel and packs the result.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from canora.config import Config
from canora.dsp.mel import MelSpec, wav_to_mel
from canora.dsp.pitch import DEFAULT_F0_METHOD
from canora.errors import AudioError

log = logging.getLogger(__name__)

#: Bump when the meaning of cached features changes (invalidates every cache entry).
FEATURE_VERSION = 1


@dataclass(frozen=True)
class FeatureParams(Config):
    """Which extractors make the conditioning, with their parameters (stored with the model)."""

    f0_method: str = DEFAULT_F0_METHOD
    f0_min: float = 50.0
    f0_max: float = 1100.0
    f0_params: Mapping[str, Any] = field(default_factory=dict)
    content_method: str = "dsp"
    content_params: Mapping[str, Any] = field(default_factory=dict)

    def cache_key(self, spec: MelSpec) -> str:
        """A hex digest of everything (besides the audio) that determines the features."""
        doc = {"version": FEATURE_VERSION, "spec": spec.to_dict(), "params": self.to_dict()}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass
class RefinerFeatures:
    """Conditioning of one recording; T = mel frames.

    mel (n_mels, T) log-mel; f0 (T,) Hz, continuous (unvoiced frames interpolated); voiced (T,) bool;
    loudness (T,) dB; content (content_dim, T) (content_dim may be 0).
    """

    mel: np.ndarray
    f0: np.ndarray
    voiced: np.ndarray
    loudness: np.ndarray
    content: np.ndarray

    @property
    def frames(self) -> int:
        return int(self.mel.shape[1])

    def crop(self, start: int, length: int) -> RefinerFeatures:
        """Frames ``start:start + length`` (fewer at the end)."""
        s = slice(start, start + length)
        return RefinerFeatures(self.mel[:, s], self.f0[s], self.voiced[s], self.loudness[s], self.content[:, s])

    def f0_with_zeros(self) -> np.ndarray:
        """F0 in Hz with 0 at unvoiced frames (the convention F0-driven vocoders read), float32 (T,)."""
        return np.where(self.voiced, self.f0, 0.0).astype(np.float32)

    def save(self, path: Path) -> None:
        from canora.io.files import atomic_write_with

        arrays = {k: getattr(self, k) for k in ("mel", "f0", "voiced", "loudness", "content")}
        atomic_write_with(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: Path) -> RefinerFeatures:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["mel"], z["f0"], z["voiced"].astype(bool), z["loudness"], z["content"])


def _fit(x: np.ndarray, frames: int, axis: int = -1) -> np.ndarray:
    """Trim or edge-pad ``x`` along ``axis`` to ``frames`` (extractors may differ from the mel by a frame)."""
    n = x.shape[axis]
    if n == frames:
        return x
    if n > frames:
        return np.take(x, np.arange(frames), axis=axis)
    if n == 0:
        raise AudioError(f"feature extractor returned no frames (expected {frames})")
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, frames - n)
    return np.pad(x, pad, mode="edge")


def extract_features(wav: np.ndarray, spec: MelSpec, params: FeatureParams, name: str = "audio") -> RefinerFeatures:
    """All conditioning of ``wav`` (T,) float32 at ``spec.sample_rate``; every array has the mel's frames.

    Raises :class:`AudioError` naming ``name`` when the audio has no voiced frames.
    """
    from canora.dsp import content as feat
    from canora.dsp import pitch
    from canora.dsp.loudness import loudness

    wav = np.ascontiguousarray(wav, dtype=np.float32)
    mel = wav_to_mel(wav, spec)
    frames = mel.shape[1]
    track = pitch.extract_f0(
        wav, spec.sample_rate, hop_length=spec.hop_length, n_frames=frames, method=params.f0_method,
        f0_min=params.f0_min, f0_max=params.f0_max, **dict(params.f0_params),
    )
    f0_raw = _fit(np.asarray(track, dtype=np.float32), frames)
    voiced = f0_raw > 0
    if not voiced.any():
        raise AudioError(
            f"{name}: no voiced frames found ({params.f0_method} F0 between {params.f0_min:g} and "
            f"{params.f0_max:g} Hz); is it singing? try another --f0-method"
        )
    f0, voiced = pitch.interpolate_unvoiced(f0_raw, name)
    loud = _fit(np.asarray(loudness(wav, spec.sample_rate, spec.hop_length, n_frames=frames), np.float32), frames)
    content = feat.get_content_extractor(params.content_method, **dict(params.content_params))(
        wav, spec.sample_rate, hop_length=spec.hop_length, n_frames=frames
    )
    content = _fit(np.asarray(content, dtype=np.float32).reshape(-1, np.shape(content)[-1]), frames)
    return RefinerFeatures(mel, f0, voiced, loud, content)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_features(
    path: str | Path, spec: MelSpec, params: FeatureParams, cache_dir: str | Path | None = None
) -> RefinerFeatures:
    """:func:`extract_features` of an audio file (loaded at the spec's rate), cached in ``cache_dir``.

    The cache file name is a hash of the file's bytes and :meth:`FeatureParams.cache_key`, so any change
    to the audio, the MelSpec or an extractor parameter misses the cache.
    """
    from canora.io.audio import load_audio

    path = Path(path)
    cache_file = None
    if cache_dir is not None:
        key = hashlib.sha256((_file_digest(path) + params.cache_key(spec)).encode()).hexdigest()[:40]
        cache_file = Path(cache_dir) / f"{path.stem}.{key}.npz"
        if cache_file.is_file():
            try:
                return RefinerFeatures.load(cache_file)
            except (OSError, ValueError, KeyError) as e:
                log.warning("%s: unreadable cache entry (%s); recomputing", cache_file, e)
    feats = extract_features(load_audio(path, spec.sample_rate), spec, params, name=str(path))
    if cache_file is not None:
        feats.save(cache_file)
    return feats
