"""Diagnose a mel's convention against a :class:`MelSpec`, and fix it where the numbers allow.

:func:`diagnose` looks at a mel alone (layout, value scale, floor, dynamic range, empty top bands) and,
when the audio it was made from is given, also at the frame count (``center=True``, another sample rate)
and at which re-extraction of that audio it matches (fmax, HTK scale, power mel, peak normalisation, the
reference of a ``ref=np.max`` dB mel). :func:`apply_fix` applies the conversions of the findings, or raises
a :class:`~canora.errors.MelError` naming why the mel must be re-extracted instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from canora.analysis.conventions import CONVENTIONS, DB_TOP, LN10, PEAK, convert_to_ln
from canora.dsp.mel import MelSpec, wav_to_mel
from canora.errors import MelError

STANDARD_RATES = (8000, 16000, 22050, 24000, 32000, 40000, 44100, 48000)
VALUE_KEYS = ("log10", "clamp_1e-9", "log1p", "db_ref1", "db_refmax", "norm_pm1", "norm_pm1_stats", "meanvar")
MATCH_TOLERANCE = 0.05  # mean |ln difference| under which a mel "is" a re-extraction of its audio
POWER_FRAME_RANGE = 6.8  # median (frame max - frame median) above this (ln units) means a power mel
POWER_P995 = 2.5  # ... or a 99.5th percentile above this (a magnitude mel of full-scale audio stays below ~2)


@dataclass
class Finding:
    """One way the mel departs from the spec: a :data:`CONVENTIONS` key, the evidence, and parameters."""

    key: str
    evidence: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return CONVENTIONS[self.key].label if self.key in CONVENTIONS else self.key

    @property
    def invertible(self) -> str:
        if self.key == "db_refmax" and self.params.get("ref") is not None:
            return "approximate"
        if self.key == "peak_normalised" and self.params.get("gain") is None:
            return "needs-ref"
        return CONVENTIONS[self.key].invertible if self.key in CONVENTIONS else "no"

    @property
    def fix(self) -> str:
        base = CONVENTIONS[self.key].fix if self.key in CONVENTIONS else "re-extract the mel from the audio"
        if self.key == "db_refmax" and self.params.get("ref") is not None:
            return f"ln_power = dB * ln(10) / 10 + ln({self.params['ref']:.6g}); then power -> magnitude (approximate)"
        if self.key == "peak_normalised" and self.params.get("gain") is not None:
            return f"ln = x - ln({self.params['gain']:.6g}) = x - {math.log(self.params['gain']):.4f}"
        return base

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "evidence": self.evidence, "invertible": self.invertible,
                "fix": self.fix, "params": self.params}


@dataclass
class Diagnosis:
    """What :func:`diagnose` concluded about one mel. ``findings`` empty means it matches the spec."""

    name: str
    shape: tuple[int, ...]
    spec: MelSpec
    findings: list[Finding]
    stats: dict[str, float]
    audio_error: float | None = None  # mean |ln diff| to the spec's re-extraction of the audio, after the fixes

    @property
    def matches(self) -> bool:
        return not self.findings

    @property
    def keys(self) -> list[str]:
        return [f.key for f in self.findings]

    @property
    def fixable(self) -> bool:
        return all(f.invertible in ("exact", "approximate") for f in self.findings)

    def summary(self) -> str:
        """A few lines for people: the verdict, each finding with its evidence and its fix."""
        if self.matches:
            extra = f"; matches its audio to {self.audio_error:.3f}" if self.audio_error is not None else ""
            return f"{self.name}: OK, natural-log mel matching the spec ({self.spec.describe()}){extra}"
        lines = [f"{self.name}: does NOT match the spec ({self.spec.describe()})"]
        for f in self.findings:
            lines.append(f"  - {f.label} [{f.key}]")
            lines.append(f"      evidence: {f.evidence}")
            lines.append(f"      fix ({f.invertible}): {f.fix}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "matches": self.matches, "fixable": self.fixable,
                "findings": [f.to_dict() for f in self.findings], "stats": self.stats,
                "audio_error": self.audio_error, "spec": self.spec.to_dict()}


# ---------------------------------------------------------------------- blind (mel-only) checks
def _loud(mel: np.ndarray, margin: float = 6.0) -> np.ndarray:
    """(T,) frames whose loudest bin is within ``margin`` of the file's loudest bin (ln units)."""
    peak = mel.max(axis=0)
    return peak > peak.max() - margin


def value_stats(mel: np.ndarray) -> dict[str, float]:
    """Summary numbers of a (n_mels, T) mel used by the value-scale rules."""
    x = mel.astype(np.float64)
    return {"min": float(x.min()), "max": float(x.max()), "mean": float(x.mean()), "std": float(x.std()),
            "p50": float(np.median(x)), "p995": float(np.percentile(x, 99.5))}


def frame_range(ln: np.ndarray) -> float:
    """Median over loud frames of (frame max - frame median) of an ln-mel: ~3.5-6.5 magnitude, ~6-13 power."""
    fr = ln[:, _loud(ln)]
    return float(np.median(fr.max(axis=0) - np.median(fr, axis=0)))


def _value_finding(st: dict[str, float], spec: MelSpec) -> Finding | None:
    lo, hi = st["min"], st["max"]
    floor = math.log(spec.clamp)
    if lo >= -1.0001 and hi <= 1.5 and lo < -0.5:
        pm1_floor = (floor - (-12.0)) / 14.0 * 2.0 - 1.0
        if lo >= pm1_floor - 1e-3:
            return Finding("norm_pm1", f"values in [{lo:.3f}, {hi:.3f}], never below {pm1_floor:.4f} = ln(1e-5) "
                           "mapped by spec_min=-12, spec_max=2")
        return Finding("norm_pm1_stats", f"values in [{lo:.3f}, {hi:.3f}] reach below {pm1_floor:.4f}, so not "
                       "spec_min=-12/spec_max=2: normalised with other (per-bin) minima and maxima")
    if abs(st["mean"]) < 0.15 and 0.7 < st["std"] < 1.3 and lo > -10 and hi < 10:
        return Finding("meanvar", f"mean {st['mean']:.3f}, std {st['std']:.3f}: zero-mean unit-variance values")
    if hi > 6.0 or lo < floor - 12:
        if abs(hi) < 1e-3 and lo >= -DB_TOP - 1e-3:
            return Finding("db_refmax", f"max exactly {hi:.4f} dB and min {lo:.2f} >= -80: power_to_db(ref=np.max)")
        clip = " (bins below max - 80 dB were clipped by top_db)" if abs(hi - lo - DB_TOP) < 1e-2 else ""
        return Finding("db_ref1", f"values {lo:.1f}..{hi:.1f}: a dB scale with an absolute reference{clip}")
    if lo >= -1e-6 and hi < 10:
        return Finding("log1p", f"no negative values (min {lo:.2e}, max {hi:.3f}): log1p of a linear mel")
    if lo >= math.log10(spec.clamp) - 1e-4 and hi < 1.5 and spec.log_base == "e":
        return Finding("log10", f"min {lo:.4f} >= log10(1e-5) = -5 and max {hi:.3f}: a log10 mel "
                       "(a natural-log mel of real audio reaches below -7)")
    if lo < floor - 1e-3 and lo >= math.log(1e-9) - 1e-2:
        return Finding("clamp_1e-9", f"min {lo:.3f} below ln(1e-5) = {floor:.4f} and >= ln(1e-9) = -20.72")
    if lo < floor - 1e-3:
        return Finding("db_ref1", f"min {lo:.2f} far below any log floor: an unknown scale")
    return None


def _power_finding(ln: np.ndarray, st: dict[str, float]) -> Finding | None:
    rng = frame_range(ln)
    p995 = float(np.percentile(ln, 99.5))
    if rng > POWER_FRAME_RANGE or p995 > POWER_P995:
        return Finding("power", f"frame dynamic range {rng:.2f} (magnitude mels: 3.5-6.5) and 99.5th percentile "
                       f"{p995:.2f} (magnitude mels: < 2): twice the log range of a magnitude mel",
                       {"frame_range": rng, "p995": p995})
    return None


def _empty_top_finding(ln: np.ndarray, spec: MelSpec) -> Finding | None:
    loud = ln[:, _loud(ln)]
    prof = loud.mean(axis=1)
    floor = math.log(spec.clamp)
    empty = 0
    for v in prof[::-1]:
        if v > floor + 0.5:
            break
        empty += 1
    if 0 < empty < ln.shape[0] // 2:
        return Finding("fmax", f"the top {empty} band(s) hold no energy in loud frames: the mel's fmax lies above "
                       "the audio's bandwidth (fmax = sr/2 on band-limited or upsampled audio)", {"empty_bands": empty})
    return None


# ---------------------------------------------------------------------- audio-assisted checks
def _compare(a: np.ndarray, b: np.ndarray, spec: MelSpec) -> float:
    """Mean |a - b| over frames of ``b`` louder than the floor, on the common frame count."""
    n = min(a.shape[1], b.shape[1])
    a, b = a[:, :n], b[:, :n]
    mask = b.max(axis=0) > math.log(spec.clamp) + 4
    if not mask.any():
        return float("nan")
    return float(np.abs(a - b)[:, mask].mean())


def _audio_findings(
    mel: np.ndarray, value: Finding | None, spec: MelSpec, audio: np.ndarray, audio_sr: int
) -> tuple[list[Finding], Finding | None]:
    """Findings from the audio (frame count, which re-extraction fits) -> (findings, refined value finding)."""
    from canora.io.audio import resample

    out: list[Finding] = []
    n = mel.shape[1]
    dur = len(audio) / audio_sr
    wav = resample(audio, audio_sr, spec.sample_rate)
    n0 = spec.num_frames(len(wav))
    if n != n0:
        if spec.padding == "hifigan" and n == n0 + 1:
            out.append(Finding("center", f"{n} frames for {len(wav)} samples: floor(T/hop) + 1 = {n0 + 1} "
                               f"(HiFi-GAN padding gives floor(T/hop) = {n0})"))
        else:
            implied = n * spec.hop_length / dur
            rate = min(STANDARD_RATES, key=lambda r: abs(r - implied))
            if abs(rate - implied) / rate < 0.01 and rate != spec.sample_rate:
                out.append(Finding("sample_rate", f"{n} frames for {dur:.3f} s of audio implies "
                                   f"{implied:.0f} Hz x hop {spec.hop_length}: made at {rate} Hz, not "
                                   f"{spec.sample_rate} Hz", {"sample_rate": rate}))
                return out, value
            out.append(Finding("sample_rate", f"{n} frames do not fit {dur:.3f} s of audio at hop {spec.hop_length} "
                               f"({n0} expected); another hop or sample rate, or not this audio's mel",
                               {"implied_rate": implied}))
            return out, value

    base = replace(spec, padding="center") if out else spec
    # the dB reference of a ref=np.max mel: measured from the audio's power mel
    if value is not None and value.key in ("db_refmax", "db_ref1"):
        p = wav_to_mel(wav, replace(base, power=2.0, clamp=1e-30))
        given = mel.astype(np.float64) * LN10 / 10.0
        loud = given > given.max() - 0.8 * DB_TOP * LN10 / 10.0
        ln_ref = float(np.median((p[:, :n] - given)[loud[:, : p.shape[1]]]))
        if value.key == "db_refmax":
            value = Finding("db_refmax", value.evidence + f"; the audio puts ref at {math.exp(ln_ref):.6g}",
                            {"ref": math.exp(ln_ref)})
        elif abs(ln_ref) > 0.05:
            value = Finding("db_refmax", f"a dB mel whose reference is {math.exp(ln_ref):.6g}, not 1 (measured on "
                            "the audio)", {"ref": math.exp(ln_ref)})
    ln = _to_ln_for_scoring(mel, value, spec)
    if ln is None:
        return out, value
    candidates: dict[str, tuple[np.ndarray, dict[str, Any]]] = {"ln": (wav_to_mel(wav, base), {})}
    for fmax in (7600.0, None):
        if fmax != spec.fmax:
            candidates[f"fmax={fmax or 'sr/2'}"] = (wav_to_mel(wav, replace(base, fmax=fmax)), {"fmax": fmax})
    candidates["htk"] = (wav_to_mel(wav, replace(base, mel_scale="htk")), {})
    if value is None or value.key not in ("db_ref1", "db_refmax"):
        candidates["power"] = (wav_to_mel(wav, replace(base, power=2.0)), {})
    scores = {k: _compare(ln, c, spec) for k, (c, _) in candidates.items()}
    # a constant offset (gain) against the spec's own re-extraction: peak normalisation or another level
    ref_mel = candidates["ln"][0]
    k = min(ln.shape[1], ref_mel.shape[1])
    floor = math.log(spec.clamp)
    both = (ln[:, :k] > floor + 3) & (ref_mel[:, :k] > floor + 3)
    if both.sum() > 100:
        d = ln[:, :k][both] - ref_mel[:, :k][both]
        off = float(np.median(d))
        if abs(off) > 0.05 and float(np.median(np.abs(d - off))) < 0.05:
            gain = math.exp(off)
            peak = float(np.abs(wav).max())
            what = (f"peak-normalised to {PEAK}" if abs(off - math.log(PEAK / max(peak, 1e-9))) < 0.02
                    else "scaled")
            out.append(Finding("peak_normalised", f"a constant offset of {off:+.4f} ln ({gain:.4g}x) against the "
                               f"audio's own mel: the audio was {what} before extraction", {"gain": gain}))
            return out, value
    best = min(scores, key=lambda key: scores[key] if math.isfinite(scores[key]) else math.inf)
    if best != "ln" and scores[best] < scores["ln"] - MATCH_TOLERANCE:
        table = ", ".join(f"{key} {v:.3f}" for key, v in sorted(scores.items(), key=lambda kv: kv[1]))
        key = "fmax" if best.startswith("fmax") else best
        out.append(Finding(key, f"re-extracting the audio fits best with {best} (mean |ln diff|: {table})",
                           candidates[best][1]))
    return out, value


def _to_ln_for_scoring(mel: np.ndarray, value: Finding | None, spec: MelSpec) -> np.ndarray | None:
    if value is None:
        return mel.astype(np.float32)
    if value.key in ("db_ref1", "db_refmax"):
        ref = value.params.get("ref", 1.0)
        return np.maximum(mel * LN10 / 10.0 + math.log(ref), math.log(spec.clamp)).astype(np.float32)
    try:
        return convert_to_ln(mel, value.key, spec, allow_approximate=True)
    except MelError:
        return None


# ---------------------------------------------------------------------- the public API
def diagnose(
    mel: np.ndarray, spec: MelSpec, *, name: str = "mel", audio: np.ndarray | None = None, audio_sr: int | None = None
) -> Diagnosis:
    """Diagnose ``mel`` ((n_mels, T), (T, n_mels) or (1, n_mels, T)) against ``spec``.

    ``audio`` (T,) at ``audio_sr`` is the recording the mel was made from (any rate), enabling the frame-count
    and re-extraction checks. Raises :class:`MelError` only when the array cannot be a mel at all.
    """
    x = np.asarray(mel)
    shape = tuple(x.shape)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise MelError(f"{name}: array of shape {shape} is not a mel; expected ({spec.n_mels}, T)")
    if not np.issubdtype(x.dtype, np.floating):
        raise MelError(f"{name}: dtype {x.dtype} is not a float log-mel")
    findings: list[Finding] = []
    if x.shape[0] != spec.n_mels:
        if x.shape[1] == spec.n_mels:
            findings.append(Finding("transposed", f"shape {shape}: {spec.n_mels} columns, {x.shape[0]} rows"))
            x = x.T
        else:
            raise MelError(f"{name}: shape {shape} has no axis of {spec.n_mels} bands; this spec expects "
                           f"({spec.n_mels}, T) ({spec.describe()})")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise MelError(f"{name}: {bad} NaN/inf values; nothing to diagnose, re-extract it with `canora mel`")
    st = value_stats(x)
    value = _value_finding(st, spec)
    audio_findings: list[Finding] = []
    if audio is not None:
        audio_findings, value = _audio_findings(x, value, spec, audio, int(audio_sr or spec.sample_rate))
    if value is not None:
        findings.append(value)
    ln = _to_ln_for_scoring(x, value, spec)
    if ln is not None and (value is None or value.key not in ("db_ref1", "db_refmax")):
        st["frame_range"] = frame_range(ln)
        if audio is None:
            for check in (_power_finding(ln, st), _empty_top_finding(ln, spec)):
                if check is not None:
                    findings.append(check)
    findings.extend(audio_findings)
    diag = Diagnosis(name, shape, spec, findings, st)
    if audio is not None and diag.fixable:
        try:
            fixed = apply_fix(np.asarray(mel), diag, allow_approximate=True)
            from canora.io.audio import resample

            ref = wav_to_mel(resample(audio, int(audio_sr or spec.sample_rate), spec.sample_rate), spec)
            diag.audio_error = _compare(fixed, ref, spec)
        except MelError:
            pass
    return diag


def apply_fix(mel: np.ndarray, diag: Diagnosis, *, allow_approximate: bool = False) -> np.ndarray:
    """Apply the conversions of ``diag``'s findings -> (n_mels, T) float32 ln-mel of ``diag.spec``.

    Raises :class:`MelError` with the reason when a finding has no (or only an approximate, unless
    ``allow_approximate``) conversion.
    """
    x = np.asarray(mel, dtype=np.float32)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    spec = diag.spec
    order = ["transposed", *VALUE_KEYS, "power", "peak_normalised"]
    blocked = [f for f in diag.findings if f.key not in order or f.invertible in ("no", "needs-ref")]
    if blocked:
        raise MelError(f"{diag.name}: cannot be fixed in place: " + "; ".join(f"{f.label} ({f.fix})" for f in blocked))
    for f in sorted(diag.findings, key=lambda f: order.index(f.key)):
        x = convert_to_ln(x, f.key, spec, ref=f.params.get("ref"), gain=f.params.get("gain"),
                          allow_approximate=allow_approximate)
    return x
