"""Timbre perturbation of the refiner's conditioning (information perturbation in the spirit of NANSY).

During refiner training, the content and loudness features of a crop often come from a copy of the
recording whose timbre was changed: its spectrum warped along frequency (formants and harmonics move by a
random factor, as between voices) and tilted by a random smooth EQ. The mel the refiner must produce stays
the original. So the refiner cannot copy the timbre it sees in its conditioning; it must make the target
singer's own, which is what converting another singer requires.

The variants are computed once per file from one STFT (the content feature's, which is also the loudness
STFT on the HiFi-GAN grid) and cached beside the features, keyed on the features' key and every
perturbation parameter.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from canora.conditioning import FeatureParams
from canora.dsp.mel import MelSpec

log = logging.getLogger(__name__)
AUGMENT_VERSION = 1


@dataclass(frozen=True)
class TimbrePerturbation:
    """How to perturb: ``variants`` copies per file, warp factor log-uniform in ``warp``, EQ up to ``eq_db``."""

    variants: int = 4
    warp: tuple[float, float] = (0.85, 1.18)
    eq_db: float = 6.0
    seed: int = 0

    def key(self, spec: MelSpec, params: FeatureParams) -> str:
        doc = {"version": AUGMENT_VERSION, "features": params.cache_key(spec), "variants": self.variants,
               "warp": list(self.warp), "eq_db": self.eq_db, "seed": self.seed}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


def random_eq_db(freqs: np.ndarray, rng: np.random.Generator, max_db: float, top: float) -> np.ndarray:
    """A smooth random gain curve (F,) in dB over log-frequency (50 Hz .. ``top``), within +-``max_db``."""
    u = np.clip(np.log(np.maximum(freqs, 50.0) / 50.0) / np.log(top / 50.0), 0.0, 1.0)
    curve = sum(rng.normal(0.0, max_db / 3) * np.cos(np.pi * j * u + rng.uniform(0, 2 * np.pi)) / j
                for j in range(1, 5))
    return np.clip(curve, -max_db, max_db)


def perturb_power(
    power: np.ndarray, sr: int, rng: np.random.Generator, warp: tuple[float, float], eq_db: float, top: float
) -> tuple[np.ndarray, float]:
    """(perturbed power (F, T), warp factor): a frequency warp (VTLN-style, formants move by 1/alpha) and a
    random EQ of ``power`` (F, T) with F = n_fft // 2 + 1."""
    from canora.dsp.content import warp_spectrum

    n_fft = 2 * (power.shape[0] - 1)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    alpha = float(np.exp(rng.uniform(np.log(warp[0]), np.log(warp[1]))))
    warped = warp_spectrum(power, freqs, alpha, top)
    gain = 10.0 ** (random_eq_db(freqs, rng, eq_db, top) / 10.0)
    return warped * gain[:, None], alpha


def timbre_variants(
    wav: np.ndarray, spec: MelSpec, params: FeatureParams, how: TimbrePerturbation, name: str, n_frames: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``how.variants`` pairs of (content (D, T), loudness (T,)) of ``wav`` (N,) at ``spec.sample_rate`` with
    its timbre perturbed; ``n_frames`` = T of the features. Empty for content encoders without a spectral
    front end (those cannot be perturbed here)."""
    from canora.dsp.content import CepstralContent, get_content_encoder
    from canora.dsp.loudness import loudness_from_power, loudness_n_fft
    from canora.dsp.stft import check_wav, stft_power

    enc = get_content_encoder(params.content_method, **dict(params.content_params))
    sr, hop = spec.sample_rate, spec.hop_length
    if enc.reads_mel(spec):
        return _mel_variants(wav, spec, enc, how, name, n_frames)
    if not isinstance(enc, CepstralContent):
        return []
    n_fft = enc.stft_size(sr, hop)
    if n_fft != loudness_n_fft(hop):
        return []
    power = stft_power(check_wav(wav, sr, hop), hop, n_fft)
    top = min(enc.fmax, sr / 2)
    seed = int(hashlib.sha256(f"{how.seed}:{name}".encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(how.variants):
        p, _alpha = perturb_power(power, sr, rng, how.warp, how.eq_db, top)
        content = enc.extract_from_power(p, sr, hop, n_frames).T.astype(np.float32)
        loud = loudness_from_power(p, sr, n_fft)
        loud = np.pad(loud, (0, max(0, n_frames - len(loud))), mode="edge")[:n_frames]
        out.append((content, loud.astype(np.float32)))
    return out


def _mel_variants(wav: np.ndarray, spec: MelSpec, enc: object, how: TimbrePerturbation, name: str,
                  n_frames: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`timbre_variants` for an encoder that reads the log-mel: the HiFi-GAN-grid STFT is perturbed, and the
    content is read from its mel; loudness from the same STFT when it is the loudness STFT (else unperturbed)."""
    from canora.dsp.loudness import loudness_from_power, loudness_n_fft
    from canora.dsp.mel import mel_from_power
    from canora.dsp.stft import hifigan_power

    sr, hop = spec.sample_rate, spec.hop_length
    power = hifigan_power(np.asarray(wav, dtype=np.float32), hop, spec.n_fft).astype(np.float64)
    seed = int(hashlib.sha256(f"{how.seed}:{name}".encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(how.variants):
        p, _alpha = perturb_power(power, sr, rng, how.warp, how.eq_db, min(spec.fmax or sr / 2, sr / 2))
        mel = mel_from_power(p.astype(np.float32), spec)
        content = enc.extract_from_mel(mel, spec)  # type: ignore[attr-defined]
        content = np.pad(content, ((0, max(0, n_frames - len(content))), (0, 0)), mode="edge")[:n_frames]
        if loudness_n_fft(hop) == spec.n_fft:
            loud = loudness_from_power(p, sr, spec.n_fft)
            loud = np.pad(loud, (0, max(0, n_frames - len(loud))), mode="edge")[:n_frames].astype(np.float32)
        else:
            from canora.dsp.loudness import loudness

            loud = loudness(np.asarray(wav, dtype=np.float32), sr, hop)[:n_frames].astype(np.float32)
        out.append((content.T.astype(np.float32), loud))
    return out


def load_variants(
    path: str | Path, spec: MelSpec, params: FeatureParams, how: TimbrePerturbation, n_frames: int,
    cache_dir: Path | None, highpass_hz: float = 0.0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`timbre_variants` of an audio file (high-passed at ``highpass_hz`` when > 0, as the trainers read it),
    cached in ``cache_dir`` (keyed on the file's bytes too)."""
    from canora.conditioning import _file_digest, load_training_audio
    from canora.io.files import atomic_write_with

    path = Path(path)
    cache_file = None
    if cache_dir is not None:
        hp = f"hp{highpass_hz:g}" if highpass_hz > 0 else ""
        key = hashlib.sha256((_file_digest(path) + how.key(spec, params) + hp).encode()).hexdigest()[:40]
        cache_file = Path(cache_dir) / f"{path.stem}.{key}.timbre.npz"
        if cache_file.is_file():
            try:
                with np.load(cache_file, allow_pickle=False) as z:
                    return [(z[f"content{i}"], z[f"loudness{i}"]) for i in range(how.variants)]
            except (OSError, ValueError, KeyError) as e:
                log.warning("%s: unreadable cache entry (%s); recomputing", cache_file, e)
    variants = timbre_variants(load_training_audio(path, spec, highpass_hz), spec, params, how, path.stem, n_frames)
    if cache_file is not None and variants:
        arrays = {**{f"content{i}": c for i, (c, _) in enumerate(variants)},
                  **{f"loudness{i}": v for i, (_, v) in enumerate(variants)}}
        atomic_write_with(cache_file, lambda f: np.savez(f, **arrays))
    return variants
