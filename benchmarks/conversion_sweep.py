"""Conversion of singers the models never heard, across refiner settings: what to make the defaults.

For every non-PJS singer in ../shared/data (one clip each, the middle ``--clip-seconds``) and every setting
of the grid ``--samplers`` x ``--steps`` x ``--strengths``, with the key as given (``--key octave`` = no flags:
the default automatic key, whole octaves toward the target's range; ``none`` = ``--transpose 0``, the source's
pitch; ``free`` = ``--key-mode free``), it scores the conversion as `canora eval` does and adds the harmonic
detail of the refined mel against real recordings of the target:

* singer identification (``id``): the share of the conversion's 1.6-s windows that a singer panel gives to the
  target (``_panel.IdentityJudge``: PJS 089-090, the makam singers, and each source's own audio outside its clip),
  beside the source's own share (``id_src``) and the singer most windows go to (``id_top``);
* singer similarity: resemblyzer cosine to the centroid of the target's held-out recordings (PJS 089-090),
  beside the source's own similarity; and the same on voiced audio alone (``sim_voiced``: the voiced frames of
  the conversion against the centroid of the voiced frames of PJS 089-090, :func:`canora.analysis.evaluation.
  embed_voiced`), which does not depend on phrasing: cut to its voiced frames, PJS's own held-out song scores
  0.11-0.15 lower against the first centroid, so a source sung legato (a scale) is held to a mark that PJS
  herself does not reach when she sings legato; ``sim_voiced_lo`` / ``_hi``: the same over the output's frames
  below / above 250 Hz, beside a table of PJS 082-088's own (the measure depends on the pitches sung too: the
  upper half of PJS 087, at 382 Hz, scores 0.73 where its lower half scores 0.93); ``sim_voiced_self``: the
  target herself at the conversion's pitches, the same measure on pieces of her own voiced singing (PJS
  082-088, runs of at least 8 frames on one semitone) drawn to fill the conversion's histogram of semitones
  (:class:`PitchMatchedTarget`): what her own voice scores where the conversion sings, so a clip's gap to it
  (``self_gap`` = ``sim_voiced_self - sim_voiced``; its largest over the clips, ``self_gap_max``, in the means) is
  the conversion's or the material's, not the pitches';
* gross pitch error against the transposed source by harvest and by Praat, over frames both hear as voiced
  in the source, and (``gpe_agreed_*``) over those where the two also agree on the source's pitch, against their
  mean (where they disagree the reference itself is in doubt); frame-rate periodicity and lines and voiced HNR of
  the output beside the source's;
* harmonic detail ratio per band (0-1, 1-2, 2-4, 4-8 kHz): :func:`canora.dsp.metrics.harmonic_detail` of the
  refined mel over its voiced frames, divided by that of the target's real mels over frames of the same
  pitch (2-semitone bins of F0, weighted by the conversion's frames per bin), so a refiner that smooths the
  harmonics above 2 kHz into a noise band scores below 1;
* the same ratio as heard (``heard_*``): on the mel of the output audio (what the listener gets), after a moving
  average over 5 frames on both sides, so only ripple that lasts counts. The refined mel's own ratio also counts
  grain that the sampler leaves and the vocoder does not render: 20 steps instead of 10 raise ``detail_4-8k``
  from 0.53 to 0.87 while the output's mel does not change;
* harmonic contrast as heard on the waveform (``comb_*``, 1-2, 2-4, 4-8 kHz): how far the output's harmonics
  stand above the noise between them (:func:`canora.dsp.harmonics.harmonic_contrast`, at an F0 fitted to the
  output's own harmonics), divided by the same for the target's recordings at the same pitch (2-semitone bins),
  with ``comb_src_*`` the source's own (at its pitch), and ``comb_steady_*`` the same over held-note frames on
  both sides (a legato source has more of them than PJS's songs, and they are more harmonic). Above 2 kHz a
  mel band is wider than the spacing of a low voice's harmonics, so the mel ratios above cannot tell harmonics
  from a noise band there; this can;
* output hygiene: the tone held above 3 kHz off the notes and over the source (``tone_over_src_db``,
  :func:`canora.dsp.artifacts.held_tone_over_source`), energy below 30 Hz (``subsonic_db``, beside the source's
  ``subsonic_db_src``), the DC offset (``dc``), the true peak (``true_peak_dbtp``), samples at full scale
  (``full_scale``) and what the output stage limited (``limited_ms``);
* real-time factor of the conversion (wall / audio seconds, warm), with the load average in the JSON.

A second table gives the ceiling of the similarity: the target's own held-out songs (PJS 087-088, not in the
centroid) as recorded, resynthesised by the vocoder from their own mel and F0 (copy-synthesis), and converted
into the target at the first setting of the grid, also an octave down and up. What the vocoder loses there, no
refiner can win back; what the octaves lose is the similarity measure's pitch sensitivity (PJS 087 into PJS:
0.93 in its own range, 0.88 an octave down, 0.85 an octave up).

    .venv/bin/python benchmarks/conversion_sweep.py [--refiner EXPORT] [--vocoder EXPORT] \\
        [--samplers dpmpp] [--steps 4 10] [--strengths 0.6 0.8 1.0] [--key none octave] [--clip-seconds 10]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import print_table, write_json
from _panel import IdentityJudge

from canora.analysis.evaluation import (
    SpeakerEmbedder,
    centroid,
    cosine,
    embed_voiced,
    evaluate_conversion,
    voiced_frames,
)
from canora.dsp.harmonics import harmonic_contrast, refine_to_harmonics
from canora.dsp.mel import wav_to_mel
from canora.dsp.melmatch import MEL_MATCH_ITERS
from canora.dsp.metrics import DETAIL_BANDS
from canora.dsp.pitch import extract_f0
from canora.io.audio import load_audio
from canora.pipeline import Converter

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCES = ["vocadito/vocadito_1.wav", "vocadito/vocadito_10.wav", "vocadito/vocadito_14.wav",
           "nitsong070/nitech_jp_song070_f001_004.wav", "dagstuhl/*S1_DYN*.wav", "dagstuhl/*B1_LRX*.wav",
           "dagstuhl/*B2_DYN*.wav", "smstools/singing-female.wav", "smstools/vignesh.wav"]
# held out by both bundled models: the target's reference recordings (similarity centroid, real mels)
TARGET_REFS = ["pjs/pjs087_song.wav", "pjs/pjs088_song.wav", "pjs/pjs089_song.wav", "pjs/pjs090_song.wav"]
SIM_REFS = TARGET_REFS[2:]
#: the target's recordings that give its own voiced similarity in each pitch band (none is in the centroid)
BAND_REFS = [f"pjs/pjs0{k}_song.wav" for k in range(82, 89)]
#: voiced similarity is also reported below and above this pitch (Hz): the measure depends on the pitches sung
SIM_SPLIT_HZ = 250.0
#: the target's own pieces that stand in for her voice at a conversion's pitches: runs of this many frames or more
SELF_RUN_FRAMES = 8
#: frames the "heard" detail averages over before measuring ripple (5 frames = 58 ms)
HEARD_SMOOTH = 5
#: the bands of the waveform's harmonic contrast (below 1 kHz every voice's harmonics are resolved by the mel)
COMB_BANDS = ((1000, 2000), (2000, 4000), (4000, 8000))


def resolve(patterns: list[str]) -> list[Path]:
    out: list[Path] = []
    for pat in patterns:
        out += sorted(DATA.glob(pat))[:1] if "*" in pat else [DATA / pat]
    return [p for p in out if p.is_file()]


def _d2(mel: np.ndarray, spec: object, smooth: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(|second difference along frequency| (n_mels - 2, T), bin centres (n_mels - 2,) Hz) of a log-mel, after a
    moving average over ``smooth`` frames (ripple that lasts: harmonics hold for a note, grain does not)."""
    import librosa

    if smooth > 1:
        from scipy.ndimage import uniform_filter1d

        mel = uniform_filter1d(mel, smooth, axis=1, mode="nearest")
    c = librosa.mel_frequencies(n_mels=spec.n_mels + 2, fmin=spec.fmin, fmax=spec.fmax_hz)[1:-1]
    return np.abs(mel[2:] - 2 * mel[1:-1] + mel[:-2]), c[1:-1]


class DetailReference:
    """Harmonic detail of the target's real mels per band and per 2-semitone F0 bin (``smooth``: see :func:`_d2`)."""

    def __init__(self, paths: list[Path], spec: object, smooth: int = 1) -> None:
        self.spec, self.smooth = spec, smooth
        d2s, bins = [], []
        for p in paths:
            wav = load_audio(p, spec.sample_rate)
            mel = wav_to_mel(wav, spec)
            f0 = extract_f0(wav, spec.sample_rate, spec.hop_length, mel.shape[1])
            d2, self.centres = _d2(mel, spec, smooth)
            v = f0 > 0
            d2s.append(d2[:, v])
            bins.append(self.bin_of(f0[v]))
        self.d2, self.bins = np.concatenate(d2s, axis=1), np.concatenate(bins)

    @staticmethod
    def bin_of(f0: np.ndarray) -> np.ndarray:
        return np.floor(12 * np.log2(np.maximum(f0, 1.0) / 55.0) / 2).astype(int)

    def ratio(self, mel: np.ndarray, f0: np.ndarray) -> list[float]:
        """Per band: detail of ``mel`` (n_mels, T) over its voiced frames (``f0`` (T,) > 0) / the reference's at
        the same pitch (bins without reference frames are left out)."""
        n = min(mel.shape[1], len(f0))
        d2, _ = _d2(mel[:, :n], self.spec, self.smooth)
        v = f0[:n] > 0
        b = self.bin_of(f0[:n][v])
        d2 = d2[:, v]
        out = []
        for lo, hi in DETAIL_BANDS:
            rows = (self.centres >= lo) & (self.centres < hi)
            num = den = 0.0
            for k in np.unique(b):
                ref = self.d2[rows][:, self.bins == k]
                if ref.shape[1] == 0:
                    continue
                mine = d2[rows][:, b == k]
                num += float(mine.mean()) * mine.shape[1]
                den += float(ref.mean()) * mine.shape[1]
            out.append(num / den if den > 0 else float("nan"))
        return out


def _comb(wav: np.ndarray, f0: np.ndarray, sr: int, hop: int) -> np.ndarray:
    """Harmonic contrast (len(COMB_BANDS), T) of ``wav`` at ``f0`` (T,) refined to its own harmonics."""
    fit = refine_to_harmonics(wav, sr, hop, f0)
    return np.stack([harmonic_contrast(wav, sr, hop, fit, lo, hi) for lo, hi in COMB_BANDS])


#: a frame is steady (inside a held note) this many frames or more from any voicing change ...
STEADY_EDGE_FRAMES = 4
#: ... and with F0 within this many cents across its two neighbours
STEADY_CENTS = 30.0


def steady_frames(f0: np.ndarray) -> np.ndarray:
    """(T,) bool: voiced frames of ``f0`` (T,) Hz inside a held note: at least :data:`STEADY_EDGE_FRAMES` from a
    voicing change and F0 within :data:`STEADY_CENTS` across their neighbours (no onset, glide or note change)."""
    from scipy.ndimage import distance_transform_edt

    v = np.asarray(f0) > 0
    lf = np.log2(np.where(v, f0, 1.0))
    level = np.zeros(len(v), bool)
    level[1:-1] = np.abs(lf[2:] - lf[:-2]) * 1200 < STEADY_CENTS
    return v & (distance_transform_edt(v) >= STEADY_EDGE_FRAMES) & level


class CombReference:
    """The target's harmonic contrast per band and 2-semitone F0 bin, from its recordings (swift F0, fitted), with
    which of its frames are steady (:func:`steady_frames`)."""

    def __init__(self, paths: list[Path], sr: int, hop: int) -> None:
        self.sr, self.hop = sr, hop
        combs, bins, steady = [], [], []
        for p in paths:
            wav = load_audio(p, sr)
            f0 = extract_f0(wav, sr, hop)
            combs.append(_comb(wav, f0, sr, hop)[:, f0 > 0])
            bins.append(DetailReference.bin_of(f0[f0 > 0]))
            steady.append(steady_frames(f0)[f0 > 0])
        self.comb, self.bins, self.steady = np.concatenate(combs, axis=1), np.concatenate(bins), np.concatenate(steady)

    def ratio(self, wav: np.ndarray, f0: np.ndarray) -> tuple[list[float], list[float]]:
        """Per band of COMB_BANDS, two ratios of ``wav`` (N,)'s mean contrast at its voiced frames (``f0`` (T,) > 0,
        the F0 it should have) to the reference's at the same pitch, weighted by ``wav``'s frames per bin: over
        all voiced frames, and over steady frames on both sides (:func:`steady_frames`). Held notes are more
        harmonic than onsets and note changes (PJS: 3.6 against 3.2 at 2-4 kHz), so a source sung legato, with
        84-94 % steady frames against PJS's 53 %, scores above 1 on the first ratio at the same quality."""
        n = min(len(f0), len(wav) // self.hop)
        f0 = f0[:n]
        mine = _comb(wav, np.where(f0 > 0, f0, 0.0), self.sr, self.hop)
        v = f0 > 0
        b = DetailReference.bin_of(f0[v])
        mine, steady = mine[:, v], steady_frames(f0)[v]
        return self._ratio(mine, b, None), self._ratio(mine, b, steady)

    def _ratio(self, mine: np.ndarray, b: np.ndarray, steady: np.ndarray | None) -> list[float]:
        out = []
        for band in range(len(COMB_BANDS)):
            num = den = 0.0
            for k in np.unique(b):
                sel_ref = self.bins == k if steady is None else (self.bins == k) & self.steady
                sel = b == k if steady is None else (b == k) & steady
                ref = self.comb[band, sel_ref]
                ref = ref[~np.isnan(ref)]
                m = mine[band, sel]
                m = m[~np.isnan(m)]
                if len(ref) == 0 or len(m) == 0:
                    continue
                num += float(m.mean()) * len(m)
                den += float(ref.mean()) * len(m)
            out.append(num / den if den > 0 else float("nan"))
        return out


def sim_voiced_bands(emb: SpeakerEmbedder, x: np.ndarray, sr: int, hop: int, voiced: np.ndarray, f0: np.ndarray,
                     centre: np.ndarray) -> list[float]:
    """Voiced similarity of ``x`` (N,) to ``centre`` on its ``voiced`` (T,) frames below and at or above
    :data:`SIM_SPLIT_HZ` by ``f0`` (T,) Hz (NaN for a band with under 1 s of voiced audio)."""
    n = min(len(voiced), len(f0))
    v, f = np.asarray(voiced[:n], bool), np.asarray(f0[:n])
    out = []
    for band in (v & (f > 0) & (f < SIM_SPLIT_HZ), v & (f >= SIM_SPLIT_HZ)):
        e = embed_voiced(emb, x, sr, hop, band)
        out.append(float("nan") if e is None else cosine(e, centre))
    return out


class PitchMatchedTarget:
    """The target's own singing at a conversion's pitches: runs of at least :data:`SELF_RUN_FRAMES` frames that
    harvest and Praat hear voiced and SwiftF0 puts on one semitone, from ``paths`` (not in the centroid)."""

    def __init__(self, paths: list[Path], sr: int, hop: int) -> None:
        from canora.dsp.pitch import true_runs

        self.sr, self.hop = sr, hop
        self.songs: list[np.ndarray] = []
        runs = []  # (song, start, end, semitone)
        for p in paths:
            wav = load_audio(p, sr)
            f0 = extract_f0(wav, sr, hop)
            v = voiced_frames(wav, sr, hop)
            n = min(len(f0), len(v))
            semi = self.semitone(f0[:n])
            self.songs.append(wav)
            for a, b in true_runs(v[:n] & (f0[:n] > 0)):
                k = a
                for i in range(a + 1, b + 1):
                    if i == b or semi[i] != semi[k]:
                        if i - k >= SELF_RUN_FRAMES:
                            runs.append((len(self.songs) - 1, k, i, int(semi[k])))
                        k = i
        self.runs = runs
        self.semis = np.array([r[3] for r in runs], int)

    @staticmethod
    def semitone(f0: np.ndarray) -> np.ndarray:
        return np.round(12 * np.log2(np.maximum(f0, 1.0) / 440.0)).astype(int)

    def audio(self, f0: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """(the target's voiced audio filling the semitone histogram of ``f0`` (N,) Hz, all voiced; the share of
        those frames whose semitone she sings (the rest take her nearest within 2 semitones))."""
        from canora.analysis.evaluation import voiced_parts

        semis = self.semitone(f0)
        parts, exact = [], 0
        for s, n in zip(*np.unique(semis, return_counts=True)):
            for d in (0, 1, -1, 2, -2):
                cand = np.flatnonzero(self.semis == s + d)
                if len(cand):
                    break
            if not len(cand):
                continue
            exact += int(n) if d == 0 else 0
            order, got, i = rng.permutation(cand), 0, 0
            while got < n:
                song, a, b, _ = self.runs[order[i % len(order)]]
                b = min(b, a + int(n) - got)
                mask = np.zeros(b, bool)
                mask[a:b] = True
                parts.append(voiced_parts(self.songs[song][: b * self.hop], self.sr, self.hop, mask))
                got, i = got + b - a, i + 1
        return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), exact / max(1, len(semis))

    def similarity(self, emb: SpeakerEmbedder, f0: np.ndarray, centre: np.ndarray, draws: int = 3
                   ) -> tuple[float, float]:
        """(mean over ``draws`` seeded draws of the voiced similarity to ``centre`` of :meth:`audio` for the
        voiced ``f0`` (N,) Hz, the share of exact semitones); NaN under 1 s of audio."""
        sims, share = [], float("nan")
        for seed in range(draws):
            x, share = self.audio(f0, np.random.default_rng(seed))
            if len(x) < self.sr:
                return float("nan"), share
            sims.append(cosine(emb.embed(x, self.sr), centre))
        return float(np.mean(sims)), share


def ceiling(conv: Converter, emb: SpeakerEmbedder, target: np.ndarray, target_voiced: np.ndarray, clip_seconds: float,
            sampler: str, steps: int, strength: float) -> list[dict[str, object]]:
    """Similarity to the target's centroid of its own held-out songs: recorded, copy-synthesised, converted, and
    converted an octave down and up (the similarity measure's own pitch sensitivity: a conversion that keeps a
    source's key lands an octave away from the target's range as often as not); ``*_voiced``: the voiced parts
    against the centroid of the target's voiced parts, and ``recording_legato`` the recording's voiced parts
    against the first centroid (what phrasing is worth to that measure)."""
    from canora.conditioning import extract_features

    sr, rows = conv.sample_rate, []

    def sim(x: np.ndarray) -> float:
        e = emb.embed(x, sr)
        return cosine(e, target)

    def sim_voiced(x: np.ndarray, voiced: np.ndarray, centre: np.ndarray) -> float:
        e = embed_voiced(emb, x, sr, conv.spec.hop_length, voiced)
        return float("nan") if e is None else cosine(e, centre)

    for path in resolve(TARGET_REFS[:2]):
        wav = load_audio(path, sr)
        start = max(0, (len(wav) - int(clip_seconds * sr)) // 2)
        wav = wav[start: start + int(clip_seconds * sr)]
        feats = extract_features(wav, conv.spec, conv.refiner.feature_params)
        copy = conv.vocoder.vocode(feats.mel, feats.f0_with_zeros(), 0.0)
        res = conv.convert(wav, sr, transpose=0.0, sampler=sampler, steps=steps, strength=strength, name=path.stem)
        row = {"clip": path.stem, "recording": sim(wav), "vocoder_copy": sim(copy), "converted": sim(res.audio)}
        voiced = voiced_frames(wav, sr, conv.spec.hop_length)
        row.update({"recording_legato": sim_voiced(wav, voiced, target),
                    "recording_voiced": sim_voiced(wav, voiced, target_voiced),
                    "converted_voiced": sim_voiced(res.audio[: len(wav)], voiced, target_voiced)})
        for tr in (-12, 12):
            row[f"converted_{tr:+d}"] = sim(conv.convert(wav, sr, transpose=float(tr), sampler=sampler, steps=steps,
                                                         strength=strength, name=path.stem).audio)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refiner", type=Path, default=None)
    ap.add_argument("--vocoder", type=Path, default=None)
    ap.add_argument("--samplers", nargs="+", default=["dpmpp"])
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 10])
    ap.add_argument("--strengths", type=float, nargs="+", default=[0.6, 0.8, 1.0])
    ap.add_argument("--key", nargs="+", default=["none", "octave"], choices=("none", "octave", "free"))
    ap.add_argument("--clip-seconds", type=float, default=10.0)
    ap.add_argument("--mel-match", type=int, nargs="+", default=[None], metavar="N",
                    help="rounds of mel matching after the vocoder (a grid dimension; default: the conversions' own "
                    f"rule, {MEL_MATCH_ITERS} unless the target is the vocoder's own singer)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench_out/conversion_sweep.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sources, refs = resolve(SOURCES), resolve(TARGET_REFS)
    if not sources or not refs:
        raise SystemExit(f"{DATA}: the shared recordings are missing")
    conv = Converter.from_pretrained(args.refiner, args.vocoder)
    sr, spec = conv.sample_rate, conv.spec
    emb = SpeakerEmbedder()
    target = centroid([emb.embed(load_audio(r, 16000), 16000) for r in resolve(SIM_REFS)])
    target_voiced = centroid([e for r in resolve(SIM_REFS)
                              if (e := embed_voiced(emb, load_audio(r, sr), sr, spec.hop_length)) is not None])
    detail = DetailReference(refs, spec)
    heard = DetailReference(refs, spec, smooth=HEARD_SMOOTH)
    comb = CombReference(refs, sr, spec.hop_length)
    self_ref = PitchMatchedTarget(resolve(BAND_REFS), sr, spec.hop_length)
    judge = IdentityJudge("pjs", resolve(SIM_REFS), sources, args.clip_seconds)
    load = [os.getloadavg()]
    rows = []
    conv.convert(load_audio(sources[0], sr)[: sr], sr, steps=1)  # warm-up
    for path in sources:
        wav = load_audio(path, sr)
        start = max(0, (len(wav) - int(args.clip_seconds * sr)) // 2)
        wav = wav[start: start + int(args.clip_seconds * sr)]
        secs = len(wav) / sr
        src_scores = None
        src_comb = comb.ratio(wav, extract_f0(wav, sr, spec.hop_length))[0]
        voiced = voiced_frames(wav, sr, spec.hop_length)
        id_src, _ = judge.share(wav)
        for key in args.key:
            for sampler in args.samplers:
                for steps, strength, mm in itertools.product(args.steps, args.strengths, args.mel_match):
                    t0 = time.perf_counter()
                    res = conv.convert(wav, sr, auto_transpose=key != "none",
                                       key_mode="free" if key == "free" else "octave", sampler=sampler,
                                       steps=steps, strength=strength, name=path.stem, mel_match=mm)
                    wall = time.perf_counter() - t0
                    s = evaluate_conversion(res.audio, wav, sr, transpose=res.transpose, embedder=emb,
                                            target_centroid=target, target_centroid_voiced=target_voiced)
                    src_scores = src_scores or s
                    bands = sim_voiced_bands(emb, res.audio[: len(wav)], sr, spec.hop_length, voiced, res.f0,
                                             target_voiced)
                    ratio = detail.ratio(res.mel, res.f0)
                    heard_ratio = heard.ratio(wav_to_mel(res.audio, spec), res.f0)
                    comb_ratio, comb_steady = comb.ratio(res.audio, res.f0)
                    n_v = min(len(voiced), len(res.f0))
                    sung = res.f0[:n_v][voiced[:n_v] & (res.f0[:n_v] > 0)]
                    sim_self, self_exact = self_ref.similarity(emb, sung, target_voiced)
                    id_conv, id_top = judge.share(res.audio[: len(wav)])
                    rows.append({
                        "clip": path.stem[:20], "key": key, "sampler": sampler, "steps": steps,
                        "strength": strength, "mel_match": res.stats.get("mel_match", mm), "transpose": res.transpose,
                        "sim": s["similarity_converted"], "sim_source": s["similarity_source"],
                        "sim_voiced": s["similarity_voiced_converted"],
                        "sim_voiced_src": s["similarity_voiced_source"],
                        "sim_voiced_lo": bands[0], "sim_voiced_hi": bands[1],
                        "sim_voiced_self": sim_self, "self_exact_semitones": self_exact,
                        "id": id_conv, "id_src": id_src, "id_top": id_top,
                        "self_gap": sim_self - s["similarity_voiced_converted"],
                        "gpe_harvest": s["gpe_harvest"], "gpe_praat": s["gpe_praat"],
                        "gpe_agreed_harvest": s["gpe_agreed_harvest"], "gpe_agreed_praat": s["gpe_agreed_praat"],
                        "periodicity": s["periodicity_converted"], "periodicity_src": s["periodicity_source"],
                        "line_db": s["frame_rate_line_db_converted"], "line_db_src": s["frame_rate_line_db_source"],
                        "hnr_db": s["hnr_db_converted"], "hnr_db_src": s["hnr_db_source"],
                        "tone_over_src_db": s["held_tone_over_source_db"],
                        "subsonic_db": s["subsonic_db_converted"], "subsonic_db_src": s["subsonic_db_source"],
                        "dc": s["dc_offset_converted"], "true_peak_dbtp": s["true_peak_dbtp_converted"],
                        "full_scale": s["full_scale_samples_converted"],
                        "limited_ms": res.stats["output"]["limited_ms"],
                        **{f"detail_{int(lo / 1000)}-{int(hi / 1000)}k": r for (lo, hi), r in
                           zip(DETAIL_BANDS, ratio)},
                        **{f"heard_{int(lo / 1000)}-{int(hi / 1000)}k": r for (lo, hi), r in
                           zip(DETAIL_BANDS, heard_ratio)},
                        **{f"comb_{int(lo / 1000)}-{int(hi / 1000)}k": r for (lo, hi), r in
                           zip(COMB_BANDS, comb_ratio)},
                        **{f"comb_steady_{int(lo / 1000)}-{int(hi / 1000)}k": r for (lo, hi), r in
                           zip(COMB_BANDS, comb_steady)},
                        **{f"comb_src_{int(lo / 1000)}-{int(hi / 1000)}k": r for (lo, hi), r in
                           zip(COMB_BANDS, src_comb)},
                        "rtf": wall / secs})
        print(f"{path.name}: done", file=sys.stderr)
        load.append(os.getloadavg())
    cols = ["clip", "key", "sampler", "steps", "strength", "mel_match", "transpose", "id", "id_src", "sim",
            "sim_source", "sim_voiced",
            "sim_voiced_src", "sim_voiced_self", "self_exact_semitones", "self_gap", "sim_voiced_lo", "sim_voiced_hi",
            "gpe_harvest", "gpe_praat", "gpe_agreed_harvest",
            "gpe_agreed_praat", "periodicity", "periodicity_src", "hnr_db", "hnr_db_src", "tone_over_src_db",
            "subsonic_db", "subsonic_db_src", "dc", "true_peak_dbtp", "full_scale", "limited_ms", "detail_0-1k",
            "detail_1-2k",
            "detail_2-4k", "detail_4-8k", "heard_0-1k", "heard_1-2k", "heard_2-4k", "heard_4-8k", "comb_1-2k",
            "comb_2-4k", "comb_4-8k", "comb_steady_1-2k", "comb_steady_2-4k", "comb_steady_4-8k", "comb_src_1-2k",
            "comb_src_2-4k", "comb_src_4-8k", "rtf"]
    print_table(rows, cols)
    def setting(r: dict) -> tuple:
        return r["key"], r["sampler"], r["steps"], r["strength"], r["mel_match"]

    means = []
    for key, sampler, steps, strength, mm in sorted({setting(r) for r in rows}, key=str):
        sel = [r for r in rows if setting(r) == (key, sampler, steps, strength, mm)]
        means.append({"clip": f"MEAN of {len(sel)}", "key": key, "sampler": sampler, "steps": steps,
                      "strength": strength, "mel_match": mm,
                      **{k: float(np.nanmean([r[k] for r in sel])) for k in cols[6:]},
                      "sim_min": float(np.nanmin([r["sim"] for r in sel])),
                      "id_min": float(np.nanmin([r["id"] for r in sel])),
                      "sim_voiced_min": float(np.nanmin([r["sim_voiced"] for r in sel])),
                      "self_gap_max": float(np.nanmax([r["self_gap"] for r in sel])),
                      "gpe_max": float(np.nanmax([max(r["gpe_harvest"], r["gpe_praat"]) for r in sel])),
                      "gpe_agreed_max": float(np.nanmax([max(r["gpe_agreed_harvest"], r["gpe_agreed_praat"])
                                                         for r in sel]))})
    print()
    print_table(means, ["key", "sampler", "steps", "strength", "mel_match", "id", "id_min", "id_src", "sim",
                        "sim_min", "sim_source", "sim_voiced",
                        "sim_voiced_min", "sim_voiced_src", "sim_voiced_self", "self_gap_max", "sim_voiced_lo",
                        "sim_voiced_hi",
                        "gpe_harvest",
                        "gpe_agreed_harvest", "gpe_agreed_praat", "gpe_agreed_max",
                        "gpe_praat", "gpe_max", "hnr_db", "hnr_db_src", "detail_0-1k", "detail_1-2k",
                        "detail_2-4k", "detail_4-8k", "heard_2-4k", "heard_4-8k", "comb_2-4k", "comb_4-8k",
                        "comb_steady_2-4k", "comb_steady_4-8k", "comb_src_4-8k", "tone_over_src_db", "subsonic_db",
                        "subsonic_db_src", "true_peak_dbtp", "full_scale", "rtf"])
    top = ceiling(conv, emb, target, target_voiced, args.clip_seconds, args.samplers[0], args.steps[0],
                  args.strengths[0])
    band_ref = []
    for path in resolve(BAND_REFS):
        wav = load_audio(path, sr)
        lo, hi = sim_voiced_bands(emb, wav, sr, spec.hop_length, voiced_frames(wav, sr, spec.hop_length),
                                  extract_f0(wav, sr, spec.hop_length), target_voiced)
        band_ref.append({"clip": path.stem, "sim_voiced_lo": lo, "sim_voiced_hi": hi})
    print(f"\nthe target's own recordings, voiced similarity below / above {SIM_SPLIT_HZ:g} Hz")
    print_table(band_ref, ["clip", "sim_voiced_lo", "sim_voiced_hi"])
    print("\nceiling: the target's own held-out songs, similarity to its centroid")
    print_table(top, ["clip", "recording", "vocoder_copy", "converted", "converted_-12", "converted_+12",
                      "recording_legato", "recording_voiced", "converted_voiced"])
    write_json(args.out, {"benchmark": "conversion_sweep", "clip_seconds": args.clip_seconds,
                          "sources": [str(p) for p in sources], "target_refs": [str(p) for p in refs],
                          "refiner": str(args.refiner or "bundled"), "vocoder": str(args.vocoder or "bundled"),
                          "threads": args.threads, "loadavg": load, "rows": rows, "means": means, "ceiling": top,
                          "band_reference": band_ref})


if __name__ == "__main__":
    main()
