"""Frame-aligned conditioning for the refiner: audio + MelSpec -> mel, F0, voiced, loudness, content.

:func:`analyse` computes one STFT of a waveform on the HiFi-GAN frame grid (an :class:`Analysis`); the
log-mel, the loudness and the DSP content feature are all derived from it (each falls back to an STFT of
its own when its parameters differ: a MelSpec with other padding or window, a content encoder that reads
audio such as HuBERT). :func:`extract_features` computes everything the refiner needs from a waveform, all
with exactly ``spec.num_frames(len(wav))`` frames (the mel's frames); :func:`source_f0` and
:func:`features_from` are its two halves, for callers that look at the F0 before paying for the rest.
:func:`load_features` does the same from an audio file with an on-disk cache keyed on the file's bytes and
on every parameter that affects the result (MelSpec, extractor names and parameters, this module's
feature version).

The extractors themselves live in :mod:`canora.dsp.pitch` (F0), :mod:`canora.dsp.loudness` and
:mod:`canora.dsp.content`; this module only chooses them by name, aligns them to the mel and packs the result.
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

import canora.content  # noqa: F401 (registers the "learned" content encoder)
from canora.config import Config
from canora.dsp.mel import MelSpec, mel_from_power, wav_to_mel
from canora.dsp.pitch import DEFAULT_F0_METHOD
from canora.errors import AudioError

log = logging.getLogger(__name__)

#: Bump when the meaning of cached features changes (invalidates every cache entry). Not bumped for the
#: one-STFT analysis: its mel is bit-identical and loudness / content move by float32 rounding only
#: (< 1e-4 dB and < 1e-4 of a normalised coefficient on real singing; tests/test_features.py). 3: SwiftF0's
#: short voicing gaps are filled and notes' ends extended where Praat hears the voice go on
#: (``canora.dsp.pitch.SwiftF0``, ``praat_voicing``; 2 filled the gaps only). 4: the analysis STFT and mel are
#: numpy float64 in every process (they were torch float32 when torch was imported: up to 1e-3 apart in quiet bins).
FEATURE_VERSION = 4


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


@dataclass(frozen=True)
class Analysis:
    """One waveform and its STFT on the HiFi-GAN frame grid, computed once (:func:`analyse`).

    ``wav`` (N,) float32 at ``spec.sample_rate``; ``power`` (spec.n_fft // 2 + 1, N // hop) float32
    |X|^2 (periodic Hann of n_fft, reflect padding (n_fft - hop) / 2, ``center=False``, frame i centred at
    i*hop + hop/2; :func:`canora.dsp.stft.hifigan_power`); ``mel`` (n_mels, spec.num_frames(N)) the
    log-mel, from ``power`` when the MelSpec uses that STFT (then equal to ``wav_to_mel``) else its own.
    """

    wav: np.ndarray
    spec: MelSpec
    power: np.ndarray
    mel: np.ndarray

    @property
    def frames(self) -> int:
        """Mel frames (the frame count of every feature)."""
        return int(self.mel.shape[1])

    def power_for(self, n_fft: int) -> np.ndarray:
        """Power spectrogram (n_fft // 2 + 1, N // hop) on the grid: the shared one when ``n_fft`` matches,
        else an STFT of its own (:func:`canora.dsp.stft.stft_power`, float64)."""
        from canora.dsp.stft import stft_power

        if n_fft == self.spec.n_fft:
            return self.power
        return stft_power(self.wav.astype(np.float64), self.spec.hop_length, n_fft)

    def loudness(self) -> np.ndarray:
        """A-weighted loudness (T,) float32 dB (:func:`canora.dsp.loudness.loudness`) from the shared STFT."""
        from canora.dsp.loudness import loudness_from_power, loudness_n_fft
        from canora.dsp.stft import _fit_frames

        n_fft = loudness_n_fft(self.spec.hop_length)
        return _fit_frames(loudness_from_power(self.power_for(n_fft), self.spec.sample_rate, n_fft), self.frames)

    def content(self, params: FeatureParams) -> np.ndarray:
        """Content (content_dim, T) float32 of ``params``' encoder: from the analysis's log-mel when the encoder
        reads one (the learned encoder), from the shared STFT when it reads a spectrogram
        (:meth:`ContentEncoder.stft_size`), else from the waveform (e.g. HuBERT)."""
        from canora.dsp.content import get_content_encoder

        sr, hop = self.spec.sample_rate, self.spec.hop_length
        enc = get_content_encoder(params.content_method, **dict(params.content_params))
        n_fft = enc.stft_size(sr, hop)
        if enc.reads_mel(self.spec):
            out = enc.extract_from_mel(self.mel, self.spec)
        elif n_fft is None:
            out = enc.extract(self.wav, sr, hop, self.frames)
        else:
            out = enc.extract_from_power(self.power_for(n_fft), sr, hop, self.frames)
        out = np.ascontiguousarray(np.asarray(out, dtype=np.float32).T)  # (T, dim) -> channels first
        return _fit(out.reshape(-1, out.shape[-1]), self.frames)


def shares_stft(spec: MelSpec) -> bool:
    """True when ``spec``'s mel is computed from the grid's STFT (HiFi-GAN padding, window = n_fft)."""
    return spec.padding == "hifigan" and spec.win_length == spec.n_fft


def analyse(wav: np.ndarray, spec: MelSpec) -> Analysis:
    """The :class:`Analysis` of ``wav`` (N,) float at ``spec.sample_rate``: one STFT, and the mel from it."""
    from canora.dsp.stft import hifigan_power

    wav = np.ascontiguousarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise AudioError(f"features need mono audio of shape (T,), got {wav.shape}; mix down to mono first")
    power = hifigan_power(wav, spec.hop_length, spec.n_fft)
    too_short = len(wav) <= (spec.n_fft - spec.hop_length) // 2  # wav_to_mel says so
    mel = mel_from_power(power, spec) if shares_stft(spec) and not too_short else wav_to_mel(wav, spec)
    return Analysis(wav, spec, power, mel)


def source_f0(analysis: Analysis, params: FeatureParams) -> np.ndarray:
    """F0 (T,) float32 Hz of the analysed waveform, 0 = unvoiced, on the mel's T frames (octaves repaired)."""
    from canora.dsp import pitch

    spec = analysis.spec
    track = pitch.extract_f0(
        analysis.wav, spec.sample_rate, hop_length=spec.hop_length, n_frames=analysis.frames,
        method=params.f0_method, f0_min=params.f0_min, f0_max=params.f0_max, **dict(params.f0_params),
    )
    return _fit(np.asarray(track, dtype=np.float32), analysis.frames)


def features_from(analysis: Analysis, params: FeatureParams, f0: np.ndarray, name: str = "audio") -> RefinerFeatures:
    """The refiner's conditioning from an analysis and its :func:`source_f0` ``f0`` (T,) (0 = unvoiced).

    Raises :class:`AudioError` naming ``name`` when no frame is voiced.
    """
    from canora.dsp import pitch

    if not (f0 > 0).any():
        raise AudioError(
            f"{name}: no voiced frames found ({params.f0_method} F0 between {params.f0_min:g} and "
            f"{params.f0_max:g} Hz); is it singing? try another --f0-method"
        )
    f0, voiced = pitch.interpolate_unvoiced(f0, name)
    return RefinerFeatures(analysis.mel, f0, voiced, analysis.loudness(), analysis.content(params))


def extract_features(wav: np.ndarray, spec: MelSpec, params: FeatureParams, name: str = "audio") -> RefinerFeatures:
    """All conditioning of ``wav`` (T,) float32 at ``spec.sample_rate``; every array has the mel's frames.

    Raises :class:`AudioError` naming ``name`` when the audio has no voiced frames.
    """
    analysis = analyse(wav, spec)
    return features_from(analysis, params, source_f0(analysis, params), name)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_training_audio(path: str | Path, spec: MelSpec, highpass_hz: float = 0.0) -> np.ndarray:
    """An audio file as the trainers read it: mono float32 (N,) at the spec's rate, high-passed at
    ``highpass_hz`` when > 0 (:func:`canora.dsp.filters.highpass`: no DC or rumble for a model to learn)."""
    from canora.dsp.filters import highpass
    from canora.io.audio import load_audio

    wav = load_audio(path, spec.sample_rate)
    return highpass(wav, spec.sample_rate, highpass_hz) if highpass_hz > 0 else wav


def load_features(
    path: str | Path, spec: MelSpec, params: FeatureParams, cache_dir: str | Path | None = None,
    highpass_hz: float = 0.0,
) -> RefinerFeatures:
    """:func:`extract_features` of an audio file (loaded at the spec's rate, high-passed at ``highpass_hz`` when
    > 0, as :func:`load_training_audio`), cached in ``cache_dir``.

    The cache file name is a hash of the file's bytes, :meth:`FeatureParams.cache_key` and the high-pass, so any
    change to the audio, the MelSpec or an extractor parameter misses the cache.
    """
    path = Path(path)
    cache_file = None
    if cache_dir is not None:
        hp = f"hp{highpass_hz:g}" if highpass_hz > 0 else ""
        key = hashlib.sha256((_file_digest(path) + params.cache_key(spec) + hp).encode()).hexdigest()[:40]
        cache_file = Path(cache_dir) / f"{path.stem}.{key}.npz"
        if cache_file.is_file():
            try:
                return RefinerFeatures.load(cache_file)
            except (OSError, ValueError, KeyError) as e:
                log.warning("%s: unreadable cache entry (%s); recomputing", cache_file, e)
    feats = extract_features(load_training_audio(path, spec, highpass_hz), spec, params, name=str(path))
    if cache_file is not None:
        feats.save(cache_file)
    return feats
