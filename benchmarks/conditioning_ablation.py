"""Which of the refiner's inputs holds a conversion's similarity where it is: conversions of the sweep's clips with
one input replaced, scored by the voiced similarity of ``conversion_sweep.py``.

Each clip (the middle ``--clip-seconds`` of the sources of ``conversion_sweep.py``, ``--clips`` filters by name)
is converted at the defaults (key by octaves, the song at the singer's level), once per ``--modes`` entry, with the
refiner's input (after key and level) changed as named; the vocoder is driven by the song's own F0 throughout:

* ``base``: as is;
* ``content_target``: the content features of a song of the target (``--content-from``, from 5.8 s on, repeated
  to length): the target's own articulation, the source's words gone;
* ``content_zero``: all zeros (the clip's mean frame, by the per-utterance normalisation);
* ``content_smooth``: a moving average over 25 frames (0.3 s): no fast articulation;
* ``content_target_stats``: the un-normalised cepstra normalised by the target's statistics (mean and spread over
  every 8th of songs 001-081) instead of the clip's own: the vowel kept, and the source's timbre with it;
* ``content_mean_only``: the clip's mean removed, the target's spread instead of the clip's (no scaling up of a
  clip whose content hardly varies);
* ``loud_flat`` / ``loud_smooth``: the loudness of voiced frames set to their median / a 25-frame moving average.

Also printed per clip: how much its raw content varies per coefficient against the target's songs (c1-c5), since
the per-utterance normalisation scales every clip to unit variance.

    .venv/bin/python benchmarks/conditioning_ablation.py [--clips S1_DYN B1_LRX B2_DYN singing-female vocadito_10] \\
        [--modes base content_target content_zero] [--threads 1] [--out bench_out/conditioning_ablation.json]
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import print_table, write_json
from conversion_sweep import DATA, SIM_REFS, SOURCES, resolve
from scipy.ndimage import uniform_filter1d

from canora.analysis.evaluation import SpeakerEmbedder, centroid, cosine, embed_voiced, voiced_frames
from canora.conditioning import RefinerFeatures
from canora.dsp.content import CepstralContent
from canora.dsp.stft import stft_power
from canora.io.audio import load_audio
from canora.pipeline import Converter

MODES = ("base", "content_target", "content_zero", "content_smooth", "content_target_stats", "content_mean_only",
         "loud_flat", "loud_smooth")
SMOOTH_FRAMES = 25
#: songs of the target whose un-normalised cepstra give its statistics (every 8th of its training songs)
TARGET_STATS_SONGS = [f"pjs/pjs{k:03d}_song.wav" for k in range(1, 82, 8)]


class RawCepstra:
    """The DSP content before its per-utterance normalisation, with the frames the normalisation counts."""

    def __init__(self, sr: int, hop: int, frames_of: Any) -> None:
        self.enc = CepstralContent(normalize=False)
        self.sr, self.hop, self.frames_of = sr, hop, frames_of

    def __call__(self, wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """-> (cepstra (T, 19), active (T,) bool: within 40 dB of the loudest frame)."""
        n = self.frames_of(len(wav))
        power = stft_power(np.asarray(wav, np.float64), self.hop, self.enc.stft_size(self.sr, self.hop))
        ceps = self.enc.extract_from_power(power, self.sr, self.hop, n)
        frame_db = 10 * np.log10(power.sum(axis=0) + 1e-20)
        active = np.zeros(n, bool)
        m = min(n, len(frame_db))
        active[:m] = frame_db[:m] > frame_db.max() - 40.0
        return ceps, active


def changed(feats: RefinerFeatures, mode: str, raw: tuple[np.ndarray, np.ndarray], target_content: np.ndarray,
            stats: tuple[np.ndarray, np.ndarray]) -> RefinerFeatures:
    """``feats`` (in key and level) with the input ``mode`` names replaced (see the module docstring)."""
    t = feats.frames
    if mode == "content_target":
        c = np.tile(target_content, (1, t // target_content.shape[1] + 1))[:, :t]
        return replace(feats, content=np.ascontiguousarray(c, np.float32))
    if mode == "content_zero":
        return replace(feats, content=np.zeros_like(feats.content))
    if mode == "content_smooth":
        return replace(feats, content=uniform_filter1d(feats.content, SMOOTH_FRAMES, axis=1,
                                                       mode="nearest").astype(np.float32))
    if mode in ("content_target_stats", "content_mean_only"):
        ceps, active = raw
        mean = stats[0] if mode == "content_target_stats" else ceps[active].mean(axis=0)
        c = ((ceps - mean) / stats[1])[:t].T
        return replace(feats, content=np.ascontiguousarray(c, np.float32))
    if mode in ("loud_flat", "loud_smooth"):
        v = feats.voiced
        if mode == "loud_flat":
            level = float(np.median(feats.loudness[v])) if v.any() else 0.0
            loud = np.where(v, level, feats.loudness)
        else:
            loud = uniform_filter1d(feats.loudness, SMOOTH_FRAMES, mode="nearest")
        return replace(feats, loudness=np.asarray(loud, np.float32))
    return feats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="+", default=None, help="substrings of the sweep's source names (default: all)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--content-from", type=Path, default=DATA / "pjs" / "pjs085_song.wav",
                    help="the target's song whose content features content_target uses (default: PJS 085)")
    ap.add_argument("--clip-seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench_out/conditioning_ablation.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sources = [p for p in resolve(SOURCES) if not args.clips or any(c in p.name for c in args.clips)]
    if not sources or not args.content_from.is_file():
        raise SystemExit(f"{DATA}: the shared recordings are missing (or --content-from)")
    conv = Converter.from_pretrained(None, None)
    refiner, sr, hop = conv.refiner, conv.sample_rate, conv.spec.hop_length
    emb = SpeakerEmbedder()
    target_voiced = centroid([e for r in resolve(SIM_REFS)
                              if (e := embed_voiced(emb, load_audio(r, sr), sr, hop)) is not None])
    target_content = refiner.features(load_audio(args.content_from, sr), sr).content[:, int(5.8 * sr / hop):]
    raw_of = RawCepstra(sr, hop, conv.spec.num_frames)
    tstats = [raw_of(load_audio(p, sr)) for p in resolve(TARGET_STATS_SONGS)]
    stats = (np.mean([c[a].mean(axis=0) for c, a in tstats], axis=0),
             np.mean([c[a].std(axis=0) for c, a in tstats], axis=0))
    state: dict[str, Any] = {"raw": {}}
    plain, plain_analyse = refiner.refine_in_key, conv.analyse

    def analyse(region: np.ndarray, silent: bool, name: str) -> Any:
        """A slice's analysis, and the raw cepstra of that slice, found again by its content array (which the
        key and level leave as it is): a clip may be cut into several slices."""
        out = plain_analyse(region, silent, name)
        feats = getattr(out, "features", None)
        if feats is not None:
            state["raw"][id(feats.content)] = raw_of(region)
        return out

    def refine_in_key(feats: RefinerFeatures, singer: Any = None, **kwargs: Any) -> np.ndarray:
        raw = state["raw"][id(feats.content)]
        return plain(changed(feats, state["mode"], raw, target_content, stats), singer, **kwargs)

    conv.analyse = analyse  # the conversion's one call that analyses a slice ...
    refiner.refine_in_key = refine_in_key  # ... and its one call into the refiner
    rows = []
    load = [os.getloadavg()]
    for path in sources:
        wav = load_audio(path, sr)
        start = max(0, (len(wav) - int(args.clip_seconds * sr)) // 2)
        wav = wav[start: start + int(args.clip_seconds * sr)]
        voiced = voiced_frames(wav, sr, hop)
        raw = raw_of(wav)
        spread = raw[0][raw[1]].std(axis=0) / stats[1]
        row: dict[str, Any] = {"clip": path.stem[-22:], "content_spread_c1-5": "/".join(f"{v:.2f}" for v in spread[:5])}
        for mode in args.modes:
            state["mode"] = mode
            state["raw"].clear()
            res = conv.convert(wav, sr, name=path.stem, workers=1)
            e = embed_voiced(emb, res.audio[: len(wav)], sr, hop, voiced)
            row[mode] = float("nan") if e is None else cosine(e, target_voiced)
        rows.append(row)
        print(f"{path.name}: done", file=sys.stderr)
        load.append(os.getloadavg())
    print_table(rows, ["clip", "content_spread_c1-5", *args.modes])
    write_json(args.out, {"benchmark": "conditioning_ablation", "measure": "voiced similarity to the target's "
                          "voiced centroid (PJS 089-090)", "clip_seconds": args.clip_seconds,
                          "content_from": str(args.content_from), "modes": args.modes, "threads": args.threads,
                          "loadavg": load, "rows": rows})


if __name__ == "__main__":
    main()
