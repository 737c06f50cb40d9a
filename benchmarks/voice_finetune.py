"""Your own voice from little data: `canora train-voice` for a singer neither base has heard, scored on
conversions of other unseen singers into it.

The target singer's recordings are split by song: ``--train`` files make the voice (their first
``--data-seconds`` seconds, cut at a frame boundary into a scratch folder), ``--holdout`` files are never
trained on and give the similarity centroid. For every base (``--base NAME=EXPORT|bundled``), data size and
fine-tuning budget (``--minutes``, wall minutes of `train-voice` on ``--threads`` threads), the voice is made
with :func:`canora.training.voice.train_voice` (kept under ``--work`` and reused when the benchmark runs
again, so budgets can be trained in parallel processes and scored together), then every ``--sources`` clip
(singers that neither base trained on) is converted into it with the key kept (``--key octave``: whole
octaves toward the voice's range) at the refiner's default settings, and scored as `canora eval` scores it:

* singer similarity: resemblyzer cosine of the conversion to the centroid of the held-out recordings,
  beside the source's own (``sim_src``) and beside the base alone (rows ``minutes = 0``: the base refiner
  with its first singer, or the mix of all its singers for ``--base-singer mean``);
* gross pitch error against the transposed source by harvest and by Praat;
* frame-rate periodicity and voiced HNR of the conversion (the artifact metrics of the vocoder issue).

A last line gives the ceiling for voices that keep the bundled vocoder: the target's training songs as recorded
and as copy-synthesised by the bundled vocoder (own mel and F0, a singer it never heard), scored against the
centroid of the held-out songs (other utterances, as the conversions are).

    .venv/bin/python benchmarks/voice_finetune.py --base pjs=bundled --base multi=EXPORT \\
        --minutes 10 30 --data-seconds 40 [--work bench_out/voices] [--threads 1] [--train-only]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from _common import print_table, write_json

from canora.analysis.evaluation import SpeakerEmbedder, centroid, evaluate_conversion
from canora.io.audio import load_audio
from canora.pipeline import Converter

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAIN = ["nitsong070/nitech_jp_song070_f001_007.wav"]
HOLDOUT = ["nitsong070/nitech_jp_song070_f001_004.wav"]
# singers kept out of the multi-singer base (and never in the PJS refiner): conversion sources
SOURCES = ["vocadito/vocadito_10.wav", "vocadito/vocadito_14.wav", "smstools/singing-female.wav"]


def _data_folder(train: list[Path], seconds: float, out: Path, sr: int, hop: int) -> Path:
    """The first ``seconds`` of the training songs (in order) as wav files in ``out`` (made once)."""
    if out.is_dir() and any(out.glob("*.wav")):
        return out
    out.mkdir(parents=True, exist_ok=True)
    left = int(seconds * sr) // hop * hop
    for p in train:
        if left <= 0:
            break
        wav = load_audio(p, sr)[:left]
        left -= len(wav)
        sf.write(out / f"{p.stem}.wav", wav.astype(np.float32), sr, subtype="FLOAT")
    return out


def make_voice(base: str, base_name: str, seconds: float, minutes: float, train: list[Path], work: Path,
               threads: int, steps_per_minute: int = 0, vocoder_share: float = 0.0) -> Path:
    """The voice for one (base, data, budget), trained unless its folder exists; returns its folder.
    ``steps_per_minute`` > 0 turns the budget into ``minutes * steps_per_minute`` steps (with a generous clock),
    so that voices trained side by side on a busy machine get the same work as on an idle one; with a
    ``vocoder_share`` (the NSF vocoder fine-tuned too, which train-voice budgets by the clock) the budget is
    wall-clock minutes."""
    from canora.refiner import Refiner
    from canora.training.voice import train_voice

    name = f"{base_name}_{seconds:g}s_{minutes:g}min" + (f"_voc{vocoder_share:g}" if vocoder_share else "")
    voices = work / "voices"
    if (voices / name).is_dir():
        return voices / name
    spec = Refiner.from_pretrained(base).spec
    data = _data_folder(train, seconds, work / "data" / f"{seconds:g}s", spec.sample_rate, spec.hop_length)
    torch.set_num_threads(threads)
    t0 = time.monotonic()
    budget = dict(minutes=minutes, steps=100_000) if steps_per_minute <= 0 or vocoder_share else \
        dict(minutes=4 * minutes, steps=int(minutes * steps_per_minute))
    folder = train_voice(data, name, work=work / "runs" / name, voices=voices, base=base, vocoder_share=vocoder_share,
                         progress=sys.stderr.isatty(), **budget)
    print(f"{name}: trained in {(time.monotonic() - t0) / 60:.1f} min", file=sys.stderr)
    return folder


def score(conv: Converter, singer: str, sources: list[Path], emb: SpeakerEmbedder, target: np.ndarray,
          key: str) -> list[dict[str, float]]:
    """Every source converted by ``conv`` into ``singer`` and scored against the target's centroid."""
    rows = []
    conv.convert(load_audio(sources[0], conv.sample_rate)[: conv.sample_rate], conv.sample_rate, singer=singer,
                 steps=1)  # warm-up: the first call's one-time costs stay out of the rtf
    for p in sources:
        wav = load_audio(p, conv.sample_rate)
        t0 = time.perf_counter()
        res = conv.convert(wav, conv.sample_rate, singer=singer, auto_transpose=key != "none",
                           key_mode="octave" if key == "none" else key)
        dt = time.perf_counter() - t0
        s = evaluate_conversion(res.audio, wav, conv.sample_rate, transpose=res.transpose, embedder=emb,
                                target_centroid=target)
        rows.append({"source": p.stem, "transpose": res.transpose, "rtf": dt / (len(wav) / conv.sample_rate), **s})
    return rows


def summary(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = ["similarity_converted", "similarity_source", "gpe_harvest", "gpe_praat", "periodicity_converted",
            "periodicity_source", "hnr_db_converted", "hnr_db_source", "rtf"]
    out = {}
    for k in keys:
        v = [r[k] for r in rows if k in r and np.isfinite(r[k])]
        out[k] = float(np.mean(v)) if v else float("nan")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", action="append", default=None, metavar="NAME=EXPORT|bundled",
                    help="a refiner to fine-tune from (repeatable; default pjs=bundled)")
    ap.add_argument("--base-singer", default="first", choices=("first", "mean"),
                    help="the singer of the base-alone rows: its first singer, or the mix of all of them")
    ap.add_argument("--minutes", type=float, nargs="+", default=[10.0, 30.0], help="fine-tuning budgets")
    ap.add_argument("--data-seconds", type=float, nargs="+", default=[40.0], help="seconds of the target to train on")
    ap.add_argument("--train", nargs="+", default=TRAIN, help="the target's training songs (under the data folder)")
    ap.add_argument("--holdout", nargs="+", default=HOLDOUT, help="the target's held-out songs")
    ap.add_argument("--sources", nargs="+", default=SOURCES, help="clips of other singers to convert")
    ap.add_argument("--key", default="octave", choices=("none", "octave", "free"), help="key handling")
    ap.add_argument("--steps-per-minute", type=int, default=0,
                    help="budget in steps: minutes x this (0 = wall-clock minutes); for runs on a busy machine")
    ap.add_argument("--vocoder-share", type=float, nargs="+", default=[0.0],
                    help="share of the budget for fine-tuning the NSF vocoder too (0 = keep the bundled one)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training and conversion")
    ap.add_argument("--work", type=Path, default=Path("bench_out/voice_finetune"), help="voices and scratch data")
    ap.add_argument("--train-only", action="store_true", help="make the voices, score nothing")
    ap.add_argument("--out", type=Path, default=Path("bench_out/voice_finetune.json"))
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"no data folder at {DATA}; nothing to measure", file=sys.stderr)
        return 0
    if any("=" not in b for b in args.base or []):
        ap.error("--base takes NAME=EXPORT (or NAME=bundled / NAME=bundled-base)")
    bases = dict(b.split("=", 1) for b in (args.base or ["pjs=bundled"]))
    train = [DATA / p for p in args.train]
    voices = {(b, s, m, v): make_voice(path, b, s, m, train, args.work, args.threads, args.steps_per_minute, v)
              for b, path in bases.items() for s in args.data_seconds for m in args.minutes
              for v in args.vocoder_share}
    if args.train_only:
        return 0
    torch.set_num_threads(args.threads)
    emb = SpeakerEmbedder()
    target = centroid([emb.embed(load_audio(DATA / p, 16000), 16000) for p in args.holdout])
    sources = [DATA / p for p in args.sources if (DATA / p).is_file()]
    missing = [p for p in args.sources if not (DATA / p).is_file()]
    if missing:
        print(f"missing source clips left out: {missing}", file=sys.stderr)
    if not sources:
        ap.error("none of the --sources clips exists")
    table, per_clip = [], []
    for b, path in bases.items():
        conv = Converter.from_pretrained(path)
        singer = (",".join(f"{s}:1" for s in conv.singers) if args.base_singer == "mean" and len(conv.singers) > 1
                  else conv.singers[0])
        rows = score(conv, singer, sources, emb, target, args.key)
        table.append({"base": b, "data_s": 0, "minutes": 0, "steps": 0, **summary(rows)})
        per_clip += [{"base": b, "minutes": 0, **r} for r in rows]
    for (b, s, m, v), folder in voices.items():
        conv = Converter.from_pretrained(voice=folder)
        doc = json.loads((folder / "voice.json").read_text())
        rows = score(conv, conv.default_singer or folder.name, sources, emb, target, args.key)
        t = doc["trained"]
        table.append({"base": b, "data_s": s, "minutes": m, "vocoder_share": v, "steps": t.get("refiner_steps"),
                      "vocoder_steps": t.get("vocoder_steps"), "train_min": t.get("refiner_minutes"), **summary(rows)})
        per_clip += [{"base": b, "data_s": s, "minutes": m, "vocoder_share": v, **r} for r in rows]
    from canora.conditioning import extract_features

    conv = Converter.from_pretrained()
    for p in args.train:
        wav = load_audio(DATA / p, conv.sample_rate)
        feats = extract_features(wav, conv.spec, conv.refiner.feature_params)
        copy = conv.vocoder.vocode(feats.mel, feats.f0_with_zeros(), 0.0)
        sims = [float(e @ target / (np.linalg.norm(e) * np.linalg.norm(target)))
                for e in (emb.embed(wav, conv.sample_rate), emb.embed(copy, conv.sample_rate))]
        print(f"ceiling, {Path(p).stem}: recording {sims[0]:.3f}, bundled-vocoder copy-synthesis {sims[1]:.3f}")
        per_clip.append({"base": "ceiling", "source": Path(p).stem, "similarity_recording": sims[0],
                         "similarity_vocoder_copy": sims[1]})
    cols = ["base", "data_s", "minutes", "vocoder_share", "steps", "vocoder_steps", "similarity_converted",
            "similarity_source", "gpe_harvest", "gpe_praat", "periodicity_converted", "periodicity_source",
            "hnr_db_converted", "hnr_db_source", "rtf"]
    print_table(table, cols)
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    write_json(args.out, {"target_train": args.train, "target_holdout": args.holdout, "sources": args.sources,
                          "key": args.key, "threads": args.threads, "load_average": load, "rows": table,
                          "per_clip": per_clip})
    return 0


if __name__ == "__main__":
    sys.exit(main())
