"""Mel conventions other systems use: make them from audio, and convert them back.

A *convention* is one way a mel differs from a :class:`~canora.dsp.mel.MelSpec`'s natural-log mel. Each has a
key (``CONVENTIONS``), a way to make it from audio (:func:`synthesize`, used by tests, the collapse
reproduction and the audio-assisted diagnosis) and, where the numbers allow, an exact inverse
(:func:`convert_to_ln`). All mels are (n_mels, T) unless the convention is the (T, n_mels) layout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from canora.dsp.mel import PEAK_NORMALIZE as PEAK
from canora.dsp.mel import MelSpec, mel_filterbank, wav_to_mel
from canora.errors import MelError

LN10 = math.log(10.0)
SPEC_MIN, SPEC_MAX = -12.0, 2.0  # DDSP-SVC / so-vits-svc [-1, 1] normalisation of the ln-mel
DB_AMIN = 1e-10  # librosa power_to_db default floor (power)
DB_TOP = 80.0  # librosa power_to_db default top_db


@dataclass(frozen=True)
class Convention:
    """One mel convention: its key, a human name, and how (or whether) it converts back to the spec's ln-mel."""

    key: str
    label: str
    invertible: str  # "exact", "approximate", "needs-ref" or "no"
    fix: str  # the conversion (or the reason there is none), for people


CONVENTIONS: dict[str, Convention] = {c.key: c for c in (
    Convention("ln", "natural-log mel (the spec's own convention)", "exact", "nothing to fix"),
    Convention("log10", "log10 mel instead of natural log", "exact", "ln = log10 * 2.302585 (= ln 10)"),
    Convention("clamp_1e-9", "natural-log mel clamped at 1e-9 instead of 1e-5", "exact",
               "ln = max(x, ln 1e-5 = -11.5129)"),
    Convention("log1p", "log1p(mel) instead of log(clamp(mel, 1e-5))", "exact",
               "ln = log(max(expm1(x), 1e-5))"),
    Convention("db_ref1", "power dB mel (librosa.power_to_db, ref=1.0)", "approximate",
               "ln_power = dB * ln(10) / 10; then power -> magnitude (approximate)"),
    Convention("db_refmax", "power dB mel (librosa.power_to_db, ref=np.max, values in [-80, 0])", "needs-ref",
               "ln_power = dB * ln(10) / 10 + ln(ref); ref (the file's max power) was discarded: "
               "give the audio (--audio) so it can be measured, or re-extract"),
    Convention("norm_pm1", f"ln-mel normalised to [-1, 1] with spec_min={SPEC_MIN:g}, spec_max={SPEC_MAX:g} "
               "(DDSP-SVC / so-vits-svc)", "exact",
               f"ln = (x + 1) / 2 * ({SPEC_MAX:g} - {SPEC_MIN:g}) + {SPEC_MIN:g}"),
    Convention("norm_pm1_stats", "mel normalised to [-1, 1] with per-bin or unknown minima/maxima (Diff-SVC, "
               "Amphion)", "no", "needs the minima/maxima stored with the model that wrote it; re-extract"),
    Convention("meanvar", "mean-variance normalised mel (mean ~0, std ~1)", "no",
               "needs the mean/std of the normaliser that wrote it; re-extract from the audio"),
    Convention("power", "power mel (|STFT|^2 through the filterbank) instead of magnitude", "approximate",
               "ln_mag ~= ln_power / 2 + 0.5 * ln(sum of each band's filter weights) (approximate)"),
    Convention("transposed", "(T, n_mels) layout instead of (n_mels, T)", "exact", "mel = mel.T"),
    Convention("center", "center=True STFT (n_fft/2 padding, one extra frame, frames shifted by hop/2)", "no",
               "frames sit half a hop apart from HiFi-GAN's; re-extract with padding='hifigan'"),
    Convention("fmax", "another fmax (filterbank upper edge)", "no",
               "the bands cover other frequencies; re-extract from the audio with the vocoder's fmax"),
    Convention("sample_rate", "another sample rate", "no",
               "frames and bands are at another rate; resample the audio and re-extract"),
    Convention("htk", "HTK mel scale instead of Slaney", "no", "the bands sit elsewhere; re-extract with Slaney"),
    Convention("peak_normalised", f"audio peak-normalised to {PEAK} before extraction (or raw vs normalised)",
               "exact", "ln = x - ln(gain) where gain = 0.95 / peak of the raw audio (needs the audio)"),
)}


# ---------------------------------------------------------------------- synthesis from audio
def linear_mel(wav: np.ndarray, spec: MelSpec, power: float = 1.0) -> np.ndarray:
    """Filterbank output before the log: (n_mels, frames), magnitude (power 1) or power (power 2) STFT."""
    return np.exp(wav_to_mel(wav, replace(spec, power=power, clamp=1e-30, log_base="e")).astype(np.float64))


def _db(wav: np.ndarray, spec: MelSpec, ref: str) -> np.ndarray:
    import librosa

    p = linear_mel(wav, spec, power=2.0)
    return librosa.power_to_db(p, ref=np.max if ref == "max" else 1.0, amin=DB_AMIN, top_db=DB_TOP).astype(np.float32)


def _norm_pm1(ln: np.ndarray) -> np.ndarray:
    return ((ln - SPEC_MIN) / (SPEC_MAX - SPEC_MIN) * 2.0 - 1.0).astype(np.float32)


def _meanvar(ln: np.ndarray) -> np.ndarray:
    return ((ln - ln.mean(axis=1, keepdims=True)) / (ln.std(axis=1, keepdims=True) + 1e-8)).astype(np.float32)


def synthesize(wav: np.ndarray, spec: MelSpec, key: str, **kw: float) -> np.ndarray:
    """The mel of ``wav`` (T,) at ``spec.sample_rate`` in convention ``key`` (a key of :data:`CONVENTIONS`).

    Structural conventions take a value: ``fmax`` (Hz or ``None`` for sr/2, default 7600), ``sample_rate``
    (default 24000; ``wav`` is resampled). Returns float32 (n_mels, T) (or (T, n_mels) for ``transposed``).
    """
    ln = lambda s=spec, w=wav: wav_to_mel(w, s)  # noqa: E731
    makers: dict[str, Callable[[], np.ndarray]] = {
        "ln": ln,
        "log10": lambda: ln(replace(spec, log_base="10")),
        "clamp_1e-9": lambda: ln(replace(spec, clamp=1e-9)),
        "log1p": lambda: np.log1p(linear_mel(wav, spec)).astype(np.float32),
        "db_ref1": lambda: _db(wav, spec, "1"),
        "db_refmax": lambda: _db(wav, spec, "max"),
        "norm_pm1": lambda: _norm_pm1(ln()),
        "meanvar": lambda: _meanvar(ln()),
        "power": lambda: ln(replace(spec, power=2.0)),
        "transposed": lambda: np.ascontiguousarray(ln().T),
        "center": lambda: ln(replace(spec, padding="center")),
        "fmax": lambda: ln(replace(spec, fmax=kw.get("fmax", 7600.0))),
        "htk": lambda: ln(replace(spec, mel_scale="htk")),
        "peak_normalised": lambda: ln(spec, (wav * (PEAK / max(float(np.abs(wav).max()), 1e-9))).astype(np.float32)),
    }
    if key == "sample_rate":
        from canora.io.audio import resample

        sr = int(kw.get("sample_rate", 24000))
        return wav_to_mel(resample(wav, spec.sample_rate, sr), replace(spec, sample_rate=sr,
                                                                        fmax=min(spec.fmax_hz, sr / 2)))
    if key not in makers:
        raise MelError(f"unknown mel convention {key!r}; known: {', '.join(CONVENTIONS)}")
    return np.asarray(makers[key](), dtype=np.float32)


# ---------------------------------------------------------------------- conversion back to ln
def band_weight_offset(spec: MelSpec) -> np.ndarray:
    """(n_mels,) 0.5 * ln(sum of each band's filter weights): ln_mag ~= ln_power / 2 + this (flat spectrum)."""
    return 0.5 * np.log(mel_filterbank(spec).astype(np.float64).sum(axis=1))


def power_to_magnitude(ln_power: np.ndarray, spec: MelSpec) -> np.ndarray:
    """Approximate ln magnitude mel from an ln power mel (n_mels, T). Exact only for flat spectra within a band."""
    out = 0.5 * ln_power + band_weight_offset(spec)[:, None]
    return np.maximum(out, math.log(spec.clamp)).astype(np.float32)


def convert_to_ln(
    mel: np.ndarray, key: str, spec: MelSpec, *, ref: float | None = None, gain: float | None = None,
    allow_approximate: bool = False,
) -> np.ndarray:
    """Convert ``mel`` in convention ``key`` to ``spec``'s natural-log magnitude mel (n_mels, T), float32.

    ``ref`` is the power reference of a dB mel (``db_refmax``), ``gain`` the factor the audio was scaled by
    (``peak_normalised``). Raises :class:`MelError` naming the reason when the conversion is impossible, or
    approximate and ``allow_approximate`` is false.
    """
    conv = CONVENTIONS.get(key)
    if conv is None:
        raise MelError(f"unknown mel convention {key!r}; known: {', '.join(CONVENTIONS)}")
    if spec.log_base != "e":
        raise MelError("conversion targets a natural-log MelSpec; this spec uses log10")
    floor = math.log(spec.clamp)
    x = np.asarray(mel, dtype=np.float64)
    if conv.invertible == "no":
        raise MelError(f"{conv.label}: not invertible from the mel alone ({conv.fix})")
    if (conv.invertible == "approximate" or key.startswith("db_")) and not allow_approximate:
        raise MelError(f"{conv.label}: only an approximate conversion exists ({conv.fix}); "
                       "pass --allow-approximate to apply it, or re-extract from the audio")
    if key == "ln":
        out = x
    elif key == "log10":
        out = np.maximum(x * LN10, floor)
    elif key == "clamp_1e-9":
        out = np.maximum(x, floor)
    elif key == "log1p":
        out = np.log(np.maximum(np.expm1(x), spec.clamp))
    elif key in ("db_ref1", "db_refmax"):
        r = 1.0 if key == "db_ref1" else ref
        if r is None:
            raise MelError(f"{conv.label}: the dB reference (the original max power) is unknown; {conv.fix}")
        return power_to_magnitude(x * LN10 / 10.0 + math.log(r), spec)
    elif key == "norm_pm1":
        out = np.maximum((x + 1.0) / 2.0 * (SPEC_MAX - SPEC_MIN) + SPEC_MIN, floor)
    elif key == "power":
        return power_to_magnitude(x, spec)
    elif key == "transposed":
        out = x.T
    elif key == "peak_normalised":
        if gain is None:
            raise MelError(f"{conv.label}: the gain is unknown; give the raw audio (--audio) to measure it")
        out = np.maximum(x - math.log(gain), floor)
    else:  # pragma: no cover - every key is handled above
        raise MelError(f"no conversion for {key!r}")
    return np.ascontiguousarray(out, dtype=np.float32)

