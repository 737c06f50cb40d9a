"""The refiner's interface without its networks (torch-free): singers, features, key, transpose, and the checks
and sampling loop of :meth:`RefinerBase.refine` around a backend's two calls (encode the conditioning, run the
sampler on the denoiser).

Subclasses: :class:`canora.refiner.api.Refiner` (torch) and :class:`canora.refiner.ort.OrtRefiner` (ONNX
Runtime, no torch import). Shapes: mels are log-mels (n_mels, T) in the model's :class:`MelSpec`; F0 (T,) Hz;
loudness (T,) dB; content (content_dim, T).

Export layout (``kind = "refiner"``, see :mod:`canora.io.checkpoint`): ``config`` = :class:`RefinerConfig`;
``meta`` = refiner format version, mel normalisation, noise schedule, prediction type, singer names, each
singer's F0 statistics (for auto-transpose), feature extractor names and parameters.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from canora.conditioning import FeatureParams, RefinerFeatures, extract_features
from canora.dsp.mel import MelSpec
from canora.dsp.pitch import KeyChoice
from canora.dsp.spectral import griffin_lim, shift_mel_pitch
from canora.errors import CanoraError, CheckpointError, MelError
from canora.refiner.config import RefinerConfig
from canora.refiner.normalize import MelNormalizer
from canora.refiner.samplers import check_steps_strength
from canora.refiner.schedule import DEFAULT_PREDICTION_TYPE, NoiseSchedule, check_prediction_type

if TYPE_CHECKING:
    from canora.dsp.loudness import LevelChoice
    from canora.dsp.pitch import F0Stats

log = logging.getLogger(__name__)

EXPORT_KIND = "refiner"
REFINER_FORMAT_VERSION = 1
DEFAULT_SAMPLER = "dpmpp"
#: sampler steps of a conversion: 3 DPM-Solver++ steps from strength 0.6 give the output of 4 (conversion_sweep on
#: 9 unseen clips: similarity 0.825 vs 0.826, voiced 0.868 vs 0.868, pitch error within 0.1 points, harmonic
#: contrast and detail as heard within 0.5 %; the waveforms differ by 3 % RMS) in 0.89-0.94x the conversion's time
#: (30 s, one thread, alternating runs); 4 gave the output of 10 (similarity 0.812 vs 0.811), which only sharpened
#: grain in the refined mel that the vocoder does not render
DEFAULT_STEPS = 3
DEFAULT_STRENGTH = 0.6
BACKENDS = ("torch", "onnx")


def read_refiner_doc(
    path: Path, doc: dict[str, Any]
) -> tuple[RefinerConfig, MelSpec, MelNormalizer, NoiseSchedule, FeatureParams, dict[str, Any]]:
    """The parts of a refiner export's ``model.json`` (torch or ONNX), checked: (config, MelSpec, normaliser,
    schedule, feature parameters, meta)."""
    meta = doc.get("meta") or {}
    version = meta.get("refiner_format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: refiner export without a refiner_format_version; re-export it")
    if version > REFINER_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: refiner format version {version} is newer than this canora reads "
            f"({REFINER_FORMAT_VERSION}); upgrade canora"
        )
    where = str(Path(path) / "model.json") if Path(path).is_dir() else str(path)
    try:
        cfg = RefinerConfig.from_dict(doc["config"], where)
        spec = MelSpec.from_dict(doc["mel_spec"], where)
        normalizer = MelNormalizer.from_dict(meta["normalizer"])
        schedule = NoiseSchedule.from_dict(meta["schedule"])
        params = FeatureParams.from_dict(meta["features"], where)
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{where}: incomplete refiner export (missing {e}); re-export it") from None
    except (CanoraError, ValueError) as e:  # the normaliser's or schedule's own checks: name the file
        msg = " ".join(str(e).split())
        raise CheckpointError(msg if where in msg else f"{where}: {msg}") from None
    return cfg, spec, normalizer, schedule, params, meta


#: a target singer: a name, an index, None (one-singer models), or a mix ("a:0.7,b:0.3" or {"a": 0.7, "b": 0.3})
Singer = str | int | None | Mapping[str, float]


def parse_singer_mix(text: str) -> dict[str, float]:
    """``"a:0.7,b:0.3"`` -> ``{"a": 0.7, "b": 0.3}`` (a name without a weight counts 1)."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.strip().partition(":")
        if not name:
            raise CanoraError(f"singer mix {text!r}: an empty name; write it like a:0.7,b:0.3")
        try:
            mix[name.strip()] = mix.get(name.strip(), 0.0) + (float(weight) if weight.strip() else 1.0)
        except ValueError:
            raise CanoraError(f"singer mix {text!r}: {weight!r} is not a number; write it like a:0.7,b:0.3") from None
    return mix


@dataclass
class RefineResult:
    """Output of :meth:`Refiner.refine_audio`: the refined mel (n_mels, T), the F0 it was conditioned on
    (T,) in Hz after transpose with 0 at unvoiced frames, the transpose applied (semitones) and the level the
    refiner saw the recording at (None: its own)."""

    mel: np.ndarray
    f0: np.ndarray
    transpose: float
    level: LevelChoice | None = None


class RefinerBase(ABC):
    """A refiner's everything but its networks (see the module doc); subclasses run the networks."""

    def __init__(
        self,
        config: RefinerConfig,
        spec: MelSpec,
        normalizer: MelNormalizer,
        schedule: NoiseSchedule,
        *,
        prediction_type: str = DEFAULT_PREDICTION_TYPE,
        singers: list[str] | None = None,
        singer_f0_stats: dict[str, dict[str, Any]] | None = None,
        singer_level_db: dict[str, float] | None = None,
        feature_params: FeatureParams | None = None,
        info: dict[str, Any] | None = None,
        source: str = "",
    ) -> None:
        cfg = config
        singers = list(singers) if singers is not None else [f"singer{i}" for i in range(cfg.n_singers)]
        if len(singers) != cfg.n_singers or len(set(singers)) != len(singers):
            raise CheckpointError(f"{source}: {len(singers)} singer names for a model of {cfg.n_singers} singers")
        if normalizer.n_mels != spec.n_mels or cfg.n_mels != spec.n_mels:
            raise CheckpointError(f"{source}: model, normalisation and MelSpec disagree on n_mels")
        self.config = cfg
        self.spec = spec
        self.normalizer = normalizer
        self.schedule = schedule
        self.prediction_type = check_prediction_type(prediction_type)
        self.singers = singers
        self.singer_f0_stats = dict(singer_f0_stats or {})
        #: each singer's median A-weighted loudness (dB) over the voiced frames it was trained on
        self.singer_level_db: dict[str, float] = {}
        if not isinstance(singer_level_db or {}, Mapping):
            raise CheckpointError(f"{source}: singer_level_db is not a mapping of singer names to dB; re-export the "
                                  "refiner")
        for name, level in (singer_level_db or {}).items():
            if isinstance(level, bool) or not isinstance(level, (int, float)) or not math.isfinite(level):
                raise CheckpointError(f"{source}: singer_level_db[{name!r}] = {level!r} is not a level in dB; "
                                      "re-export the refiner")
            self.singer_level_db[str(name)] = float(level)
        self.feature_params = feature_params or FeatureParams()
        self.info = dict(info or {})
        self.source = source

    #: "torch" or "onnx"
    backend: str = ""

    @abstractmethod
    def _run_model(
        self, x0: np.ndarray, cond: dict[str, np.ndarray], singer: int | np.ndarray, *, sampler: str, steps: int,
        strength: float, generator: np.random.Generator,
    ) -> np.ndarray:
        """Encode ``cond`` (``f0``, ``voiced``, ``loudness`` (1, T) float32, ``content`` (1, content_dim, T) or
        absent) for ``singer`` (an index, or (n_singers,) mix weights) and run ``sampler`` on the denoiser from
        the normalised source ``x0`` (1, n_mels, T) float32 -> the clean estimate (1, n_mels, T), numpy."""

    def export_meta(self) -> dict[str, Any]:
        return {
            "refiner_format_version": REFINER_FORMAT_VERSION,
            "normalizer": self.normalizer.to_dict(),
            "schedule": self.schedule.to_dict(),
            "prediction_type": self.prediction_type,
            "singers": self.singers,
            "singer_f0_stats": self.singer_f0_stats,
            "singer_level_db": self.singer_level_db,
            "features": self.feature_params.to_dict(),
            "info": self.info,
        }

    # ------------------------------------------------------------------ helpers
    def singer_weights(self, singer: Singer) -> np.ndarray:
        """Weights (n_singers,) float64 summing to 1 over the model's singers: one-hot for a name, an index or
        None (one-singer models); a mix for ``"a:0.7,b:0.3"`` or a mapping ``{"a": 0.7, "b": 0.3}`` (weights
        are normalised; names must be the model's)."""
        mix = parse_singer_mix(singer) if isinstance(singer, str) and ":" in singer else singer
        w = np.zeros(len(self.singers))
        if isinstance(mix, Mapping):
            if not mix:
                raise CanoraError("an empty singer mix; give e.g. --singer a:0.7,b:0.3")
            for name, weight in mix.items():
                if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
                    raise CanoraError(f"singer mix weight of {name!r} must be a number >= 0, got {weight!r}")
                w[self.singer_index(name)] += float(weight)
            if w.sum() <= 0:
                raise CanoraError("the singer mix weights are all 0; give at least one weight > 0")
            return w / w.sum()
        w[self.singer_index(mix)] = 1.0
        return w

    def singer_label(self, singer: Singer) -> str:
        """A name for ``singer``: the singer's own, or ``"a:0.70,b:0.30"`` for a mix (sorted, weights to 2 dp)."""
        w = self.singer_weights(singer)
        nz = np.flatnonzero(w)
        if len(nz) == 1:
            return self.singers[int(nz[0])]
        return ",".join(f"{self.singers[i]}:{w[i]:.2f}" for i in nz)

    def singer_index(self, singer: str | int | None) -> int:
        """Index of ``singer`` (a name, an index, or None for a one-singer model)."""
        if isinstance(singer, str) and ":" in singer:
            w = self.singer_weights(singer)
            if np.count_nonzero(w) == 1:
                return int(np.flatnonzero(w)[0])
            raise CanoraError(f"{singer!r} is a mix of singers; this call takes one singer")
        if singer is None:
            if len(self.singers) == 1:
                return 0
            raise CanoraError(f"this refiner knows {len(self.singers)} singers; choose one with --singer: "
                              + ", ".join(self.singers))
        if isinstance(singer, int) and not isinstance(singer, bool) and 0 <= singer < len(self.singers):
            return singer
        if singer in self.singers:
            return self.singers.index(singer)
        raise CanoraError(f"unknown singer {singer!r}; this refiner knows: {', '.join(self.singers)}")

    def check_spec(self, spec: MelSpec, name: str = "mel") -> None:
        """Raise :class:`MelError` listing every field where ``spec`` differs from the model's MelSpec."""
        self.spec.require_same(
            spec, f"{name} (the refiner {self.source or 'model'} was trained on {self.spec.describe()})",
            "re-extract the mels with the model's MelSpec (its model.json holds it)",
        )

    def check_mel(self, mel: Any, spec: MelSpec | None = None, name: str = "mel") -> None:
        """Raise :class:`MelError` when ``mel`` was made with another MelSpec (``spec``) or has the wrong shape."""
        if spec is not None:
            self.check_spec(spec, name)
        if mel.ndim != 2 or mel.shape[0] != self.spec.n_mels:
            raise MelError(f"{name}: mel of shape {tuple(mel.shape)}; this refiner expects ({self.spec.n_mels}, T)")

    # ------------------------------------------------------------------ inference
    def refine(
        self,
        mel: np.ndarray,
        f0: np.ndarray,
        loudness: np.ndarray,
        content: np.ndarray | None,
        singer: str | int | None = None,
        *,
        voiced: np.ndarray | None = None,
        sampler: str = DEFAULT_SAMPLER,
        steps: int = DEFAULT_STEPS,
        strength: float = DEFAULT_STRENGTH,
        seed: int = 0,
        spec: MelSpec | None = None,
    ) -> np.ndarray:
        """Refine a log-mel (n_mels, T) toward ``singer``; returns a log-mel (n_mels, T) float32.

        ``f0`` (T,) Hz: either continuous with ``voiced`` (T,) bool given, or with 0 at unvoiced frames
        (then ``voiced = f0 > 0`` and the gaps are interpolated). ``loudness`` (T,) dB, ``content``
        (content_dim, T). ``spec``, when known, is the MelSpec the mel was made with (checked).
        ``strength`` in (0, 1]: the noise level the source is taken to (1 = from pure noise). ``seed`` seeds the
        sampler's noise (a numpy generator, so every backend draws the same noise).
        """
        check_steps_strength(steps, strength)
        self.check_mel(mel, spec)
        frames = mel.shape[1]
        weights = self.singer_weights(singer)
        f0 = np.asarray(f0, dtype=np.float32)
        if voiced is None:
            voiced = f0 > 0
            if not voiced.any():
                raise CanoraError("F0 has no voiced frames (all zero); nothing to condition the refiner on")
            from canora.dsp.pitch import interpolate_unvoiced

            f0, voiced = interpolate_unvoiced(f0)
        elif not np.asarray(voiced).any():
            raise CanoraError("the voiced flags are all false; nothing to condition the refiner on")
        arrays = {"f0": f0, "voiced": np.asarray(voiced), "loudness": np.asarray(loudness, dtype=np.float32)}
        for k, v in arrays.items():
            if v.shape != (frames,):
                raise CanoraError(f"{k} has shape {v.shape}; expected ({frames},) to match the mel's frames")
            if not np.isfinite(v.astype(np.float32)).all():
                raise CanoraError(f"{k} holds NaN/inf values")
        if not np.isfinite(mel).all():
            raise MelError("mel holds NaN/inf values")
        cond = {k: arrays[k].astype(np.float32)[None] for k in ("f0", "voiced", "loudness")}
        if self.config.content_dim:
            if content is None or np.shape(content) != (self.config.content_dim, frames):
                raise CanoraError(
                    f"content has shape {None if content is None else np.shape(content)}; expected "
                    f"({self.config.content_dim}, {frames}) from the {self.feature_params.content_method!r} "
                    "content extractor"
                )
            cond["content"] = np.ascontiguousarray(content, np.float32)[None]
        one = np.count_nonzero(weights) == 1  # one singer, else a mix of embeddings
        x0 = self.normalizer.normalize(np.ascontiguousarray(mel, np.float32)[None])
        out = self._run_model(x0, cond, int(np.argmax(weights)) if one else weights.astype(np.float32),
                              sampler=sampler, steps=int(steps), strength=float(strength),
                              generator=np.random.default_rng(int(seed)))
        mel_out = self.normalizer.denormalize(np.asarray(out, np.float32))[0]
        if not np.isfinite(mel_out).all():
            raise CanoraError("the refiner produced NaN/inf values; the model export may be corrupt")
        return mel_out

    def features(self, wav: np.ndarray, sr: int, name: str = "audio") -> RefinerFeatures:
        """All conditioning of ``wav`` (T,) at ``sr`` with this model's MelSpec and extractors."""
        from canora.io.audio import resample

        wav = resample(np.asarray(wav, dtype=np.float32), int(sr), self.spec.sample_rate)
        return extract_features(wav, self.spec, self.feature_params, name=name)

    def mel_features(
        self, mel: np.ndarray, wav: np.ndarray | None = None, sr: int | None = None, name: str = "mel"
    ) -> RefinerFeatures:
        """Conditioning for a given log-mel (n_mels, T): F0, loudness and content from ``wav`` (its source
        audio, at ``sr``) when given, else from a Griffin-Lim reconstruction of the mel. The mel itself is
        kept as the shallow-diffusion source. Frame counts must agree."""
        self.check_mel(mel, name=name)
        if wav is None:
            wav, sr = griffin_lim(mel, self.spec), self.spec.sample_rate
        feats = self.features(wav, int(sr or self.spec.sample_rate), name=name)
        if feats.frames != mel.shape[1]:
            raise MelError(
                f"{name}: the mel has {mel.shape[1]} frames but its audio gives {feats.frames} "
                f"({self.spec.describe()}); is it the mel of this audio?"
            )
        feats.mel = np.ascontiguousarray(mel, dtype=np.float32)
        return feats

    def singer_f0_range(self, singer: Singer) -> F0Stats:
        """``singer``'s stored pitch range (for auto-transpose; a mix: the weighted geometric mean of its singers'
        ranges); :class:`CanoraError` when there is none."""
        from canora.dsp.pitch import F0Stats

        w = self.singer_weights(singer)
        logs = np.zeros(3)
        for i in np.flatnonzero(w):
            name = self.singers[int(i)]
            stats = self.singer_f0_stats.get(name)
            if stats is None:
                raise CanoraError(f"this refiner has no F0 statistics for singer {name!r}; use --transpose instead")
            st = F0Stats.from_dict(stats)
            logs += w[i] * np.log([st.median, st.p5, st.p95])
        median, p5, p95 = np.exp(logs)
        return F0Stats(float(median), float(p5), float(p95))

    def singer_level(self, singer: Singer) -> float | None:
        """``singer``'s voiced level in dB as trained (a mix: the weighted mean of its singers'), or None when the
        refiner stores none for one of them (exports made before canora stored it)."""
        w = self.singer_weights(singer)
        levels = [self.singer_level_db.get(self.singers[int(i)]) for i in np.flatnonzero(w)]
        if any(level is None for level in levels):
            return None
        return float(sum(w[i] * lv for i, lv in zip(np.flatnonzero(w), levels)))

    def choose_level(
        self, feats: RefinerFeatures | Sequence[RefinerFeatures], singer: Singer
    ) -> LevelChoice | None:
        """The gain that puts the voiced level of ``feats`` (one recording, or all slices of one song, pooled) on
        ``singer``'s (:class:`~canora.dsp.loudness.LevelChoice`); None without a stored level or voiced frames."""
        from canora.dsp.loudness import choose_level

        target = self.singer_level(singer)
        parts = [feats] if isinstance(feats, RefinerFeatures) else list(feats)
        if target is None or not any(f.voiced.any() for f in parts):
            return None
        return choose_level(np.concatenate([f.loudness for f in parts]), np.concatenate([f.voiced for f in parts]),
                            target)

    def choose_key(
        self, feats: RefinerFeatures | Sequence[RefinerFeatures], singer: str | int | None, mode: str = "octave"
    ) -> KeyChoice:
        """The shift that moves the source's pitch toward ``singer``'s range (the stored F0 statistics), with
        its reason: whole octaves (``mode="octave"``, the key kept) or any semitone (``"free"``).

        ``feats``: one recording's features, or those of all the slices of one song (their voiced frames
        pooled, so the whole song gets one key).
        """
        from canora.dsp.pitch import choose_key

        parts = [feats] if isinstance(feats, RefinerFeatures) else list(feats)
        voiced_f0 = np.concatenate([f.f0[f.voiced] for f in parts])
        return choose_key(voiced_f0, self.singer_f0_range(singer), mode)

    def auto_transpose_for(
        self, feats: RefinerFeatures | Sequence[RefinerFeatures], singer: str | int | None, mode: str = "octave"
    ) -> float:
        """Semitones of :meth:`choose_key`."""
        return float(self.choose_key(feats, singer, mode).semitones)

    def transpose_features(self, feats: RefinerFeatures, semitones: float, gain_db: float = 0.0) -> RefinerFeatures:
        """``feats`` in another key: F0 (T,) x 2^(semitones / 12) (voiced flags kept) and the source mel
        (n_mels, T) moved along frequency (:func:`shift_mel_pitch`); content unchanged. ``gain_db`` makes them
        those of the recording ``gain_db`` louder: loudness + gain_db, the log-mel + ln(10^(gain_db / 20)) (kept
        above the log floor; bins on it stay there)."""
        if not math.isfinite(semitones):
            raise CanoraError(f"transpose must be a finite number of semitones, got {semitones!r}")
        if not math.isfinite(gain_db):
            raise CanoraError(f"gain must be a finite number of dB, got {gain_db!r}")
        f0 = (feats.f0 * 2.0 ** (semitones / 12.0)).astype(np.float32)
        mel = shift_mel_pitch(feats.mel, semitones, self.spec)
        loudness = feats.loudness
        if gain_db != 0.0:  # frames and bins on the floor (digital silence) stay there, as in louder audio
            from canora.dsp.loudness import LOUDNESS_FLOOR_DB

            mel = self.shift_mel_level(mel, gain_db)
            loudness = np.where(loudness > LOUDNESS_FLOOR_DB, loudness + np.float32(gain_db), loudness)
        return RefinerFeatures(mel.astype(np.float32), f0, feats.voiced, loudness.astype(np.float32), feats.content)

    def shift_mel_level(self, mel: np.ndarray, gain_db: float) -> np.ndarray:
        """A log-mel (n_mels, T) of this refiner's MelSpec as it would be ``gain_db`` louder: ``20 log10`` of the
        amplitude in the spec's log base and power, kept above the log floor; bins on the floor stay there."""
        from canora.refiner.normalize import _ln_to_spec_units

        floor = np.float32(self.spec.log_floor)
        shift = np.float32(_ln_to_spec_units(gain_db * math.log(10.0) / 20.0, self.spec))
        return np.where(mel > floor, np.maximum(mel + shift, floor), floor).astype(np.float32)

    def refine_in_key(self, feats: RefinerFeatures, singer: str | int | None = None, **kwargs: Any) -> np.ndarray:
        """Refine features already in the target key (no transpose here; see :meth:`transpose_features`)
        -> log-mel (n_mels, T); ``kwargs`` as in :meth:`refine`."""
        return self.refine(feats.mel, feats.f0, feats.loudness, feats.content, singer, voiced=feats.voiced, **kwargs)

    def refine_features(
        self,
        feats: RefinerFeatures,
        singer: str | int | None = None,
        *,
        transpose: float = 0.0,
        auto_transpose: bool = False,
        key_mode: str = "octave",
        match_level: bool = False,
        **kwargs: Any,
    ) -> RefineResult:
        """Refine precomputed features (see :meth:`refine` for ``kwargs``), transposing F0 (and the
        source mel, :func:`shift_mel_pitch`) by ``transpose`` semitones or automatically (``key_mode``:
        whole octaves, the key kept, or ``"free"``; :meth:`choose_key`). With ``match_level`` the refiner sees
        the recording at the singer's stored level (:meth:`choose_level`) and the refined mel is moved back to
        the recording's own level: the timbre of singing at the usual level, as loud as the source."""
        if auto_transpose:
            transpose = self.auto_transpose_for(feats, singer, key_mode)
        level = self.choose_level(feats, singer) if match_level else None
        gain = level.gain_db if level is not None else 0.0
        keyed = self.transpose_features(feats, transpose, gain)
        _, mel = self.refine_at_level(keyed, gain, singer, **kwargs)
        return RefineResult(mel, keyed.f0_with_zeros(), float(transpose), level)

    def refine_at_level(self, keyed: RefinerFeatures, gain_db: float, singer: str | int | None = None,
                        **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Refine features already in the song's key and moved ``gain_db`` to the singer's level
        (:meth:`transpose_features`) -> (the refined log-mel (n_mels, T) at that level, for the vocoder; the same
        mel moved back to the recording's level). The one refine step of :meth:`refine_features` and of every
        rendering (:func:`canora.render.render_sung`); ``kwargs`` as in :meth:`refine`."""
        mel = self.refine_in_key(keyed, singer, **kwargs)
        return mel, (self.shift_mel_level(mel, -gain_db) if gain_db != 0.0 else mel)

    def refine_audio(
        self,
        wav: np.ndarray,
        sr: int,
        singer: str | int | None = None,
        *,
        transpose: float = 0.0,
        auto_transpose: bool = False,
        key_mode: str = "octave",
        name: str = "audio",
        match_level: bool = False,
        **kwargs: Any,
    ) -> RefineResult:
        """Convert audio (T,) at ``sr``: extract all features, transpose, refine toward ``singer``
        (:meth:`refine_features`)."""
        feats = self.features(wav, sr, name=name)
        return self.refine_features(feats, singer, transpose=transpose, auto_transpose=auto_transpose,
                                    key_mode=key_mode, match_level=match_level, **kwargs)

    def reconstruct(
        self,
        wav: np.ndarray,
        sr: int,
        singer: str | int | None = None,
        *,
        strength: float = 0.5,
        steps: int = DEFAULT_STEPS,
        sampler: str = DEFAULT_SAMPLER,
        seed: int = 0,
    ) -> np.ndarray:
        """Reconstruction mode (target -> target): refine ``singer``'s own audio with its own id, no
        transpose. Returns the refined mel (n_mels, frames) aligned with ``wav`` resampled to the model's
        rate (``frames = spec.num_frames(samples)``): the input a vocoder is fine-tuned on against ``wav``."""
        return self.refine_audio(
            wav, sr, singer, strength=strength, steps=steps, sampler=sampler, seed=seed
        ).mel
