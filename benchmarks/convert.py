"""End-to-end conversion quality and speed: source singers -> the bundled PJS models, against baselines.

For every source clip (singers the models never heard) and every system, the same scores `canora eval`
computes:

* F0 RMSE in cents and gross pitch error (> 50 cents) of the output against the source after the applied
  transpose, and voiced/unvoiced disagreement;
* singer similarity: resemblyzer GE2E cosine to the centroid of the target singer's held-out recordings,
  against the source's own similarity (the "source unchanged" baseline);
* mel cycle error of the vocoder on the mel it was given, and the real-time factor (wall / audio seconds,
  2 threads, warm).

Systems, side by side in one run: ``source`` (unchanged), ``world`` (WORLD analysis-resynthesis of the
source with the same transpose: the DSP baseline for pitch), ``lj_v2 copy`` (the official LJ_V2 speech
vocoder resynthesising the source's own mel), ``canora`` (refiner + bundled NSF vocoder) at each
``--steps`` / ``--strength``, and the first canora setting's refined mels through ``griffin-lim`` and
through ``lj_v2`` instead of the NSF vocoder.

    .venv/bin/python benchmarks/convert.py [--clip-seconds 8] [--steps 4 10] [--strength 0.6]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import print_table, write_json

from canora.analysis.evaluation import SpeakerEmbedder, centroid, evaluate_conversion
from canora.dsp.metrics import mel_cycle_error
from canora.io.audio import load_audio
from canora.pipeline import Converter

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCES = ["pjs/pjs087_song.wav", "pjs/pjs088_song.wav",
           "vocadito/vocadito_1.wav", "vocadito/vocadito_10.wav", "vocadito/vocadito_14.wav",
           "nitsong070/*.wav", "dagstuhl/*S1*DYN*.wav", "smstools/*female*.wav"]
# PJS 087-090 are held out by both bundled models: two are sources (PJS -> PJS), two the target's references
TARGET_REFS = ["pjs/pjs089_song.wav", "pjs/pjs090_song.wav"]


def world_resynth(wav: np.ndarray, sr: int, transpose: float) -> np.ndarray:
    import pyworld

    x = wav.astype(np.float64)
    f0, t = pyworld.harvest(x, sr, f0_floor=50.0, f0_ceil=1100.0, frame_period=5.0)
    sp = pyworld.cheaptrick(x, f0, t, sr)
    ap = pyworld.d4c(x, f0, t, sr)
    y = pyworld.synthesize(f0 * 2 ** (transpose / 12), sp, ap, sr, frame_period=5.0)
    return np.pad(y, (0, max(0, len(wav) - len(y))))[: len(wav)].astype(np.float32)


def resolve(patterns: list[str]) -> list[Path]:
    out: list[Path] = []
    for pat in patterns:
        out += sorted(DATA.glob(pat))[:1] if "*" in pat else [DATA / pat]
    return [p for p in out if p.is_file()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refiner", type=Path, default=None)
    ap.add_argument("--vocoder", type=Path, default=None)
    ap.add_argument("--lj-v2", type=Path, default=DATA / "hifigan" / "LJ_V2" / "generator_v2")
    ap.add_argument("--clip-seconds", type=float, default=8.0)
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 10])
    ap.add_argument("--strength", type=float, nargs="+", default=[0.6])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench_out/convert.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sources, refs = resolve(SOURCES), resolve(TARGET_REFS)
    if not sources or not refs:
        raise SystemExit(f"{DATA}: the shared recordings are missing")
    conv = Converter.from_pretrained(args.refiner, args.vocoder)
    sr = conv.sample_rate
    lj = None
    if args.lj_v2.exists():
        from canora.vocoder import Vocoder

        lj = Vocoder.from_pretrained(args.lj_v2)
    emb = SpeakerEmbedder()
    target = centroid([emb.embed(load_audio(r, 16000), 16000) for r in refs])
    rows = []
    for path in sources:
        wav = load_audio(path, sr)
        start = max(0, (len(wav) - int(args.clip_seconds * sr)) // 2)
        wav = wav[start: start + int(args.clip_seconds * sr)]
        secs = len(wav) / sr
        name = path.stem[:18]

        def score(system: str, out: np.ndarray, transpose: float, wall: float, cycle: float = float("nan"),
                  wav: np.ndarray = wav, name: str = name, secs: float = secs, **extra: object) -> None:
            s = evaluate_conversion(out, wav, sr, transpose=transpose, embedder=emb, target_centroid=target)
            rows.append({"clip": name, "system": system, "transpose": transpose, **extra,
                         "f0_rmse_cents": s["f0_rmse_cents"], "gpe": s["f0_gross_error_rate"],
                         "vuv_err": s["f0_vuv_error_rate"], "sim_target": s["similarity_converted"],
                         "sim_source": s["similarity_source"], "cycle_err": cycle, "rtf": wall / secs})

        score("source", wav, 0.0, 0.0)
        if lj is not None:
            from canora.dsp.mel import wav_to_mel

            t0 = time.perf_counter()
            src_mel = wav_to_mel(wav, lj.spec)
            out = lj.vocode(src_mel)
            score("lj_v2 copy", out, 0.0, time.perf_counter() - t0, mel_cycle_error(src_mel, out, lj.spec))
        conv.convert(wav[: sr], sr, steps=1)  # warm-up
        first = None
        for steps in args.steps:
            for strength in args.strength:
                t0 = time.perf_counter()
                res = conv.convert(wav, sr, auto_transpose=True, steps=steps, strength=strength, name=name,
                                   measure_cycle_error=True)
                wall = time.perf_counter() - t0
                score("canora", res.audio, res.transpose, wall, res.stats["mel_cycle_error"], steps=steps,
                      strength=strength)
                first = first or res
        t0 = time.perf_counter()
        score("world", world_resynth(wav, sr, first.transpose), first.transpose, time.perf_counter() - t0)
        from canora.dsp.spectral import griffin_lim

        t0 = time.perf_counter()
        out = griffin_lim(first.mel, conv.spec)
        score("canora mel+griffin-lim", out, first.transpose, time.perf_counter() - t0,
              mel_cycle_error(first.mel, out, conv.spec))
        if lj is not None:
            t0 = time.perf_counter()
            out = lj.vocode(first.mel)
            wall = time.perf_counter() - t0
            score("canora mel+lj_v2", out, first.transpose, wall, mel_cycle_error(first.mel, out, lj.spec))
        print(f"{path.name}: done", file=sys.stderr)
    cols = ["clip", "system", "steps", "strength", "transpose", "f0_rmse_cents", "gpe", "vuv_err", "sim_target",
            "sim_source", "cycle_err", "rtf"]
    print_table(rows, cols)
    systems = sorted({(r["system"], r.get("steps"), r.get("strength")) for r in rows}, key=str)
    means = []
    for system, steps, strength in systems:
        sel = [r for r in rows if (r["system"], r.get("steps"), r.get("strength")) == (system, steps, strength)]
        means.append({"clip": "MEAN", "system": system, "steps": steps, "strength": strength,
                      **{k: float(np.nanmean([r[k] for r in sel])) for k in cols[5:]}})
    print()
    print_table(means, cols)
    write_json(args.out, {"benchmark": "convert", "clip_seconds": args.clip_seconds,
                          "sources": [str(p) for p in sources], "target_refs": [str(p) for p in refs],
                          "refiner": str(args.refiner or "bundled"), "vocoder": str(args.vocoder or "bundled"),
                          "rows": rows, "means": means})


if __name__ == "__main__":
    main()
