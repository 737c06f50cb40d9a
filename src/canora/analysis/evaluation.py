"""Objective evaluation of conversions: F0 error, voicing error, singer similarity.

Pure functions over arrays; :mod:`canora.cli.eval` wires them to files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class F0Scores:
    """F0 agreement of an estimate with a reference, over frames voiced in both."""

    rmse_cents: float  # RMSE in cents over frames voiced in both
    gross_error_rate: float  # share of those frames more than 50 cents off
    vuv_error_rate: float  # share of all frames whose voiced/unvoiced decision differs
    pearson: float  # correlation of log-F0 over frames voiced in both
    voiced_frames: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def f0_scores(reference: np.ndarray, estimate: np.ndarray, transpose: float = 0.0) -> F0Scores:
    """Compare frame-aligned F0 tracks (Hz, 0 = unvoiced); ``reference`` is shifted by ``transpose``
    semitones first (a conversion that transposed should follow the transposed source)."""
    n = min(len(reference), len(estimate))
    ref, est = np.asarray(reference[:n], float), np.asarray(estimate[:n], float)
    ref = np.where(ref > 0, ref * 2 ** (transpose / 12), 0.0)
    both = (ref > 0) & (est > 0)
    vuv = float(np.mean((ref > 0) != (est > 0))) if n else float("nan")
    if both.sum() < 2:
        return F0Scores(float("nan"), float("nan"), vuv, float("nan"), int(both.sum()))
    cents = 1200 * np.log2(est[both] / ref[both])
    lr, le = np.log(ref[both]), np.log(est[both])
    pearson = float(np.corrcoef(lr, le)[0, 1]) if lr.std() > 0 and le.std() > 0 else float("nan")
    return F0Scores(
        rmse_cents=float(np.sqrt(np.mean(cents**2))),
        gross_error_rate=float(np.mean(np.abs(cents) > 50)),
        vuv_error_rate=vuv,
        pearson=pearson,
        voiced_frames=int(both.sum()),
    )


class SpeakerEmbedder:
    """GE2E speaker embeddings from resemblyzer (weights ship inside its wheel; no network)."""

    SAMPLE_RATE = 16000

    def __init__(self) -> None:
        try:
            from resemblyzer import VoiceEncoder
        except ImportError as e:  # optional extra
            from canora.errors import CanoraError

            raise CanoraError(f"singer similarity needs resemblyzer ({e}); pip install 'canora[eval]'") from None
        self.encoder = VoiceEncoder("cpu", verbose=False)

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """(T,) audio -> (256,) unit-norm embedding."""
        from canora.io.audio import resample

        x = resample(np.asarray(wav, np.float32), sample_rate, self.SAMPLE_RATE)
        peak = float(np.abs(x).max())
        if peak > 0:
            x = x / peak * 0.9
        e = self.encoder.embed_utterance(x)
        return e / (np.linalg.norm(e) + 1e-9)


#: the least voiced audio (s) a voiced-only similarity is computed from; less gives NaN
MIN_VOICED_SECONDS = 1.0
#: the raised-cosine ramp (s) at each end of a voiced run when :func:`voiced_parts` joins them
JOIN_RAMP_SECONDS = 0.01


def voiced_frames(wav: np.ndarray, sample_rate: int, hop: int = 256) -> np.ndarray:
    """(len(wav) // hop,) bool: the frames of ``wav`` (N,) that harvest and Praat both hear voiced and that are
    audible (the artifact metrics' reference mask, :func:`canora.dsp.artifacts.reference_masks`)."""
    from canora.dsp.artifacts import reference_masks

    return reference_masks(np.asarray(wav, np.float64), sample_rate, hop).voiced


def voiced_parts(wav: np.ndarray, sample_rate: int, hop: int, voiced: np.ndarray) -> np.ndarray:
    """The samples of ``wav`` (N,) under ``voiced`` (T,) bool frames (frame i: samples i*hop .. (i+1)*hop), the
    runs joined one after another with a 10-ms raised-cosine ramp at each end (no click at a join) -> (M,) float32.
    """
    from canora.dsp.pitch import true_runs
    from canora.errors import CanoraError

    x = np.asarray(wav, np.float32)
    if x.ndim != 1:
        raise CanoraError(f"voiced_parts takes mono audio (N,), got shape {x.shape}")
    v = np.asarray(voiced, bool)[: -(-len(x) // hop)]
    ramp = max(1, int(JOIN_RAMP_SECONDS * sample_rate))
    parts = []
    for a, b in true_runs(v):
        seg = x[a * hop: b * hop].copy()
        r = min(ramp, len(seg) // 2)
        if r > 0:
            w = 0.5 - 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / r)
            seg[:r] *= w
            seg[len(seg) - r:] *= w[::-1]
        parts.append(seg)
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def embed_voiced(
    embedder: SpeakerEmbedder, wav: np.ndarray, sample_rate: int, hop: int = 256, voiced: np.ndarray | None = None
) -> np.ndarray | None:
    """The embedding (256,) of the voiced parts of ``wav`` (N,) alone (:func:`voiced_parts`; ``voiced`` (T,) bool,
    default :func:`voiced_frames` of ``wav``), or None when they last under :data:`MIN_VOICED_SECONDS`.

    Why: the GE2E embedding of singing depends on its phrasing as well as on the voice. PJS's own held-out songs
    score 0.11-0.15 lower against the centroid of her songs once their pauses and consonants are cut out, and
    conversions of legato sources (a scale sung through) 0.08-0.09 higher once PJS's pauses are cut in. Comparing
    voiced parts with the centroid of the target's voiced parts measures the voice without the phrasing."""
    if voiced is None:
        voiced = voiced_frames(wav, sample_rate, hop)
    x = voiced_parts(wav, sample_rate, hop, voiced)
    if len(x) < MIN_VOICED_SECONDS * sample_rate:
        return None
    return embedder.embed(x, sample_rate)


def singer_centroids(
    embedder: SpeakerEmbedder, recordings: Sequence[np.ndarray], sample_rate: int, hop: int = 256
) -> tuple[np.ndarray, np.ndarray | None]:
    """(centroid of the recordings (N,) as they are, centroid of their voiced parts (:func:`embed_voiced`), None
    when none has enough voiced audio): what :func:`evaluate_conversion` measures similarity against."""
    if not recordings:
        from canora.errors import CanoraError

        raise CanoraError("no recordings of the target singer to build its centroid from")
    full = centroid([embedder.embed(w, sample_rate) for w in recordings])
    voiced = [e for e in (embed_voiced(embedder, w, sample_rate, hop) for w in recordings) if e is not None]
    return full, (centroid(voiced) if voiced else None)


def centroid(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    c = np.mean(np.stack(embeddings), axis=0)
    return c / (np.linalg.norm(c) + 1e-9)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


#: the bands of :func:`harmonics_by_band` (Hz): where a mel band is as wide as a low voice's harmonic spacing
HARMONIC_BANDS: tuple[tuple[float, float], ...] = ((2000.0, 4000.0), (4000.0, 8000.0))


def harmonics_by_band(
    x: np.ndarray, sample_rate: int, hop: int, f0: np.ndarray, frames: np.ndarray,
    bands: tuple[tuple[float, float], ...] = HARMONIC_BANDS,
) -> list[float]:
    """Mean harmonic contrast (ln) of ``x`` (N,) per band over ``frames`` (T,) bool where ``f0`` (T,) Hz is voiced,
    at ``f0`` fitted to the signal's own harmonics; NaN for a band with no such frame."""
    from canora.dsp.harmonics import harmonic_contrast, refine_to_harmonics

    n = min(len(f0), len(frames))
    f0 = np.where(np.asarray(frames[:n], bool) & (np.nan_to_num(f0[:n]) > 0), np.nan_to_num(f0[:n]), 0.0)
    fit = refine_to_harmonics(x, sample_rate, hop, f0)
    out = []
    for lo, hi in bands:
        c = harmonic_contrast(x, sample_rate, hop, fit, lo, min(hi, 0.49 * sample_rate))
        out.append(float(np.nanmean(c)) if np.isfinite(c).any() else float("nan"))
    return out


def output_hygiene(converted: np.ndarray, source: np.ndarray, sample_rate: int) -> dict[str, float]:
    """What a mastering engineer checks first, of the conversion and of the source (both (N,) at ``sample_rate``):
    energy below 30 Hz relative to the whole in dB (``subsonic_db_*``, :func:`canora.dsp.filters.subsonic_db`), the
    DC offset (``dc_offset_*``, the mean sample), the true peak in dBTP (``true_peak_dbtp_*``, 4x oversampled) and the
    samples at full scale (``full_scale_samples_*``, |x| >= 0.999)."""
    from canora.dsp.filters import dc_offset, subsonic_db
    from canora.dsp.level import full_scale_samples, true_peak_db

    out: dict[str, float] = {}
    for name, x in (("converted", converted), ("source", source)):
        out[f"subsonic_db_{name}"] = subsonic_db(x, sample_rate)
        out[f"dc_offset_{name}"] = dc_offset(x)
        out[f"true_peak_dbtp_{name}"] = true_peak_db(x)
        out[f"full_scale_samples_{name}"] = full_scale_samples(x)
    return out


def evaluate_conversion(
    converted: np.ndarray,
    source: np.ndarray,
    sample_rate: int,
    *,
    transpose: float = 0.0,
    hop: int = 256,
    f0_method: str = "harvest",
    embedder: SpeakerEmbedder | None = None,
    target_centroid: np.ndarray | None = None,
    target_centroid_voiced: np.ndarray | None = None,
) -> dict[str, float]:
    """Scores of one conversion (both signals (N,) at ``sample_rate``, time-aligned, as the pipeline makes
    them): F0 agreement with the source after ``transpose`` (``f0_*``, by ``f0_method``); the waveform artifact
    metrics of :mod:`canora.dsp.artifacts` of the conversion and of the source on the source's frames
    (``periodicity_*``, ``frame_rate_line_db_*``, ``hnr_db_*``, ``held_tone_db_*``), the tone held in the conversion
    off its notes' harmonics and above what the source holds there (``held_tone_over_source_db`` / ``_hz``:
    :func:`canora.dsp.artifacts.held_tone_over_source`), the output hygiene of each (:func:`output_hygiene`:
    ``subsonic_db_*``, ``dc_offset_*``, ``true_peak_dbtp_*``, ``full_scale_samples_*``) and the gross pitch error by
    harvest and by Praat (``gpe_harvest``, ``gpe_praat``); the harmonic contrast of each at 2-4 and 4-8 kHz on the
    source's voiced frames (``harmonics_2-4k_*``, ``harmonics_4-8k_*``: ln magnitude of the harmonics over the
    midpoints between them, at each signal's harvest F0 fitted to its own harmonics; see
    :func:`canora.dsp.harmonics.harmonic_contrast`); the gross pitch errors again over the frames where harvest and
    Praat agree on the source's pitch, against their mean (``gpe_agreed_*``); with an embedder and the target
    singer's centroid, the singer similarity of the conversion and of the source (cosine to the centroid); with
    ``target_centroid_voiced`` (the centroid of the target's voiced parts, :func:`singer_centroids`), the same for
    the voiced parts of each alone (``similarity_voiced_*``: the source's voiced frames, the measure that does not
    depend on phrasing; NaN when under :data:`MIN_VOICED_SECONDS` are voiced)."""
    from canora.dsp import artifacts
    from canora.dsp.pitch import extract_f0, repair_octave_jumps

    n = min(len(converted), len(source))
    conv, src = np.asarray(converted[:n], np.float64), np.asarray(source[:n], np.float64)
    masks = artifacts.reference_masks(src, sample_rate, hop)
    frames = len(masks.voiced)
    tracks = (artifacts.track_f0(conv, sample_rate, hop, frames, "harvest"),
              artifacts.track_f0(conv, sample_rate, hop, frames, "praat"))
    if f0_method == "harvest":  # the artifact metrics' own harvest tracks, octave-repaired as extract_f0's are
        f0_src, f0_out = repair_octave_jumps(masks.f0_harvest), repair_octave_jumps(tracks[0])
    else:
        f0_src = extract_f0(src, sample_rate, hop_length=hop, method=f0_method)
        f0_out = extract_f0(conv, sample_rate, hop_length=hop, method=f0_method)
    out: dict[str, float] = {f"f0_{k}": v for k, v in f0_scores(f0_src, f0_out, transpose).to_dict().items()}
    m_conv = artifacts.artifact_metrics(conv, sample_rate, hop, masks, transpose, tracks=tracks)
    m_src = artifacts.artifact_metrics(src, sample_rate, hop, masks, is_reference=True)
    for key, attr in (("periodicity", "frame_rate_periodicity"), ("frame_rate_line_db", "frame_rate_line_db"),
                      ("hnr_db", "hnr_db"), ("held_tone_db", "held_tone_db")):
        out[f"{key}_converted"], out[f"{key}_source"] = getattr(m_conv, attr), getattr(m_src, attr)
    out["held_tone_over_source_db"], out["held_tone_over_source_hz"] = artifacts.held_tone_over_source(
        conv, src, sample_rate, transpose, list(tracks), [masks.f0_harvest, masks.f0_praat])
    out.update(output_hygiene(conv, src, sample_rate))
    out["gpe_harvest"], out["gpe_praat"] = m_conv.gpe_harvest, m_conv.gpe_praat
    # the same over the frames where harvest and Praat agree on the source's pitch, against their mean: where
    # they disagree the reference itself is in doubt
    h, p = np.maximum(masks.f0_harvest, 0.0), np.maximum(masks.f0_praat, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        agreed = masks.voiced & (np.abs(1200 * np.log2(h / p)) <= artifacts.GROSS_CENTS)
    for name, track in zip(("harvest", "praat"), tracks):
        out[f"gpe_agreed_{name}"] = artifacts.gross_pitch_error(np.sqrt(h * p), track, transpose, agreed)
    for name, x, f0 in (("converted", conv, tracks[0]), ("source", src, masks.f0_harvest)):
        f0 = repair_octave_jumps(np.nan_to_num(f0))
        for (lo, hi), value in zip(HARMONIC_BANDS, harmonics_by_band(x, sample_rate, hop, f0, masks.voiced)):
            out[f"harmonics_{int(lo / 1000)}-{int(hi / 1000)}k_{name}"] = value
    if embedder is not None and target_centroid is not None:
        out["similarity_converted"] = cosine(embedder.embed(converted[:n], sample_rate), target_centroid)
        out["similarity_source"] = cosine(embedder.embed(source[:n], sample_rate), target_centroid)
    if embedder is not None and target_centroid_voiced is not None:
        for name, x in (("converted", conv), ("source", src)):
            e = embed_voiced(embedder, x, sample_rate, hop, masks.voiced)
            out[f"similarity_voiced_{name}"] = float("nan") if e is None else cosine(e, target_centroid_voiced)
    return out


def mean_scores(rows: Sequence[dict], keys: Sequence[str]) -> dict[str, float | None]:
    """The mean of each score in ``keys`` over the ``rows`` (one dict of scores per file) that have a finite value
    for it; None where none has."""
    import math

    def mean(k: str) -> float | None:
        vals = [r[k] for r in rows if isinstance(r.get(k), (int, float)) and math.isfinite(r[k])]
        return float(np.mean(vals)) if vals else None

    return {k: mean(k) for k in keys}

