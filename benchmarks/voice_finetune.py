"""Your own voice from minutes of a singer: `canora train-voice` on 1, 2 and 5 minutes of a singer no model heard,
scored on conversions of the conversion sweep's unseen singers into it.

The target is idil (``../shared/data/makam/idil``: four songs, 36 sections, 9.4 minutes; she is held out of the
bundled base refiner, the content encoder and the vocoder). One whole song (``--holdout-song``, Kimseye, 7 sections)
is never trained on: it is what the conversions are compared with. The voices are made from the first
``--data-minutes`` of the other three songs, their sections taken in turn from each song, with ``--minutes`` of
training each (:func:`canora.training.voice.train_voice`, kept under ``--work`` and reused when the benchmark runs
again; ``--train-only`` makes them without scoring, so budgets can be trained in parallel processes).

Every voice converts the nine clips of ``conversion_sweep.py`` (the middle 10 s of singers no model heard, male and
female) with no flags (the automatic key), and each conversion is scored:

* **identification** (``id``): the share of the output's 1.6-s windows that a singer panel gives to the target
  (:class:`canora.analysis.singer_id.SingerPanel`, trained on the target's held-out song, PJS 082-090, the three
  other makam singers, and each source singer's own audio outside the converted 10 s), beside the same share for the
  source itself (``id_src``) and the singer most windows go to (``top``);
* **similarity**: resemblyzer cosine to the centroid of the held-out song, whole clip and voiced frames alone
  (``sim``, ``sim_v``), each beside the source's;
* gross pitch error against the transposed source by harvest and by Praat.

Rows ``minutes = 0`` score the base refiner alone (its mean singer) and the bundled PJS voice, for reference; a last
table gives the ceiling: the held-out song as recorded and as copy-synthesised by the vocoder (as it comes, and after
``--mel-match`` rounds of mel matching, which every conversion gets by default), identified the same way.

    .venv/bin/python benchmarks/voice_finetune.py --base multi=bundled-base --data-minutes 1 2 5 --minutes 10 30 \\
        [--work bench_out/voices] [--threads 1] [--train-only] [--steps-per-minute N]
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
from _panel import DATA, IdentityJudge, glob, middle  # noqa: F401

from canora.analysis.evaluation import SpeakerEmbedder, centroid, embed_voiced, evaluate_conversion
from canora.dsp.melmatch import MEL_MATCH_ITERS, mel_match
from canora.io.audio import load_audio
from canora.pipeline import Converter

TARGET = "makam/idil"
HOLDOUT_SONG = "Kimseye"
SR = 22050
CLIP_SECONDS = 10.0
# the conversion sweep's clips: singers no bundled model trained on
SOURCES = ["vocadito/vocadito_1.wav", "vocadito/vocadito_10.wav", "vocadito/vocadito_14.wav",
           "nitsong070/nitech_jp_song070_f001_004.wav", "dagstuhl/*S1_DYN*.wav", "dagstuhl/*B1_LRX*.wav",
           "dagstuhl/*B2_DYN*.wav", "smstools/singing-female.wav", "smstools/vignesh.wav"]


def target_split(holdout_song: str) -> tuple[list[Path], list[Path]]:
    """(training pool: the other songs' sections taken in turn from each song, held-out song's sections)."""
    files = sorted((DATA / TARGET).glob("*.flac"))
    held = [p for p in files if p.name.startswith(holdout_song)]
    songs: dict[str, list[Path]] = {}
    for p in files:
        if p not in held:
            songs.setdefault(p.name.split("_")[0], []).append(p)
    pool, k = [], 0
    while any(k < len(v) for v in songs.values()):
        pool += [v[k] for v in songs.values() if k < len(v)]
        k += 1
    return pool, held


def data_folder(pool: list[Path], minutes: float, out: Path) -> Path:
    """The first ``minutes`` of the pool as wav files in ``out`` (made once)."""
    if out.is_dir() and any(out.glob("*.wav")):
        return out
    out.mkdir(parents=True, exist_ok=True)
    left = int(minutes * 60 * SR) // 256 * 256
    for p in pool:
        if left <= 0:
            break
        wav = load_audio(p, SR)[:left]
        left -= len(wav)
        sf.write(out / f"{p.stem}.wav", wav.astype(np.float32), SR, subtype="FLOAT")
    return out


def make_voice(base: str, base_name: str, data_min: float, minutes: float, pool: list[Path], work: Path,
               steps_per_minute: int) -> Path:
    """The voice for one (base, data, budget), trained unless its folder exists; returns its folder.
    ``steps_per_minute`` > 0 budgets ``minutes * steps_per_minute`` steps (with a generous clock), so voices trained
    side by side on a busy machine get the work they would get on an idle one."""
    from canora.training.voice import train_voice

    name = f"{base_name}_{data_min:g}min_{minutes:g}cpu"
    voices = work / "voices"
    if (voices / name).is_dir():
        return voices / name
    data = data_folder(pool, data_min, work / "data" / f"{data_min:g}min")
    budget = dict(minutes=minutes, steps=100_000) if steps_per_minute <= 0 else \
        dict(minutes=4 * minutes, steps=int(minutes * steps_per_minute))
    t0 = time.monotonic()
    folder = train_voice(data, name, work=work / "runs" / name, voices=voices, base=base,
                         progress=sys.stderr.isatty(), **budget)
    print(f"{name}: trained in {(time.monotonic() - t0) / 60:.1f} min", file=sys.stderr)
    return folder


class Judge:
    """The identity panel (target: the held-out song; ``_panel.IdentityJudge``) and the similarity centroids."""

    def __init__(self, held: list[Path], sources: list[Path]) -> None:
        self.emb = SpeakerEmbedder()
        target = [load_audio(p, SR) for p in held]
        self.centroid = centroid([self.emb.embed(w, SR) for w in target])
        voiced = [e for e in (embed_voiced(self.emb, w, SR) for w in target) if e is not None]
        self.centroid_voiced = centroid(voiced)
        # the target's training songs stay out of the panel's "other singers" (they are her own voice)
        self.ident = IdentityJudge("idil", held, sources, CLIP_SECONDS,
                                   exclude=tuple(p for p in (DATA / TARGET).glob("*.flac") if p not in held))
        self.clips = {p.stem: middle(load_audio(p, SR), CLIP_SECONDS)[0] for p in sources}
        self.panel = self.ident.panel

    def identify(self, wav: np.ndarray) -> tuple[float, str]:
        return self.ident.share(wav)


def score(conv: Converter, singer: str | None, judge: Judge, mel_match: int | None = None) -> list[dict]:
    rows = []
    for name, clip in judge.clips.items():
        res = conv.convert(clip, SR, singer=singer, mel_match=mel_match)
        s = evaluate_conversion(res.audio, clip, SR, transpose=res.transpose, embedder=judge.emb,
                                target_centroid=judge.centroid, target_centroid_voiced=judge.centroid_voiced)
        idc, top = judge.identify(res.audio)
        ids, _ = judge.identify(clip)
        rows.append({"source": name, "transpose": res.transpose, "id": idc, "id_src": ids, "top": top,
                     "sim": s.get("similarity_converted"), "sim_src": s.get("similarity_source"),
                     "sim_v": s.get("similarity_voiced_converted"), "sim_v_src": s.get("similarity_voiced_source"),
                     "gpe_harvest": s["gpe_harvest"], "gpe_praat": s["gpe_praat"]})
    return rows


def summary(rows: list[dict]) -> dict:
    def m(k: str, f=np.nanmean) -> float:
        v = [r[k] for r in rows if isinstance(r.get(k), float)]
        return float(f(v)) if v else float("nan")

    return {"id": m("id"), "id_min": m("id", np.nanmin), "id_src": m("id_src"), "sim": m("sim"),
            "sim_src": m("sim_src"), "sim_v": m("sim_v"), "sim_v_src": m("sim_v_src"), "gpe_harvest": m("gpe_harvest"),
            "gpe_harvest_max": m("gpe_harvest", np.nanmax), "gpe_praat": m("gpe_praat"),
            "gpe_praat_max": m("gpe_praat", np.nanmax)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", action="append", default=None, metavar="NAME=EXPORT|bundled-base",
                    help="a refiner to fine-tune from (repeatable; default multi=bundled-base)")
    ap.add_argument("--minutes", type=float, nargs="+", default=[10.0, 30.0], help="training budgets (CPU minutes)")
    ap.add_argument("--data-minutes", type=float, nargs="+", default=[1.0, 2.0, 5.0],
                    help="minutes of the target's audio to make each voice from")
    ap.add_argument("--holdout-song", default=HOLDOUT_SONG, help="the target's song kept out of every voice")
    ap.add_argument("--steps-per-minute", type=int, default=0,
                    help="budget in steps: minutes x this (0 = wall-clock minutes); for runs on a busy machine")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training and conversion")
    ap.add_argument("--work", type=Path, default=Path("bench_out/voices"), help="voices and scratch data")
    ap.add_argument("--train-only", action="store_true", help="make the voices, score nothing")
    ap.add_argument("--no-reference", action="store_true", help="skip the base-alone and bundled-PJS rows")
    ap.add_argument("--mel-match", type=int, default=None, metavar="N",
                    help="mel matching rounds of every conversion (default: the conversions' own rule, "
                    f"{MEL_MATCH_ITERS} unless the target is the vocoder's own singer); the ceiling's copy gets N "
                    f"or {MEL_MATCH_ITERS}")
    ap.add_argument("--out", type=Path, default=Path("bench_out/voice_finetune.json"))
    args = ap.parse_args()
    if not (DATA / TARGET).is_dir():
        print(f"no {DATA / TARGET}; nothing to measure", file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)
    bases = dict(b.split("=", 1) for b in (args.base or ["multi=bundled-base"]))
    pool, held = target_split(args.holdout_song)
    voices = {(b, d, m): make_voice(path, b, d, m, pool, args.work, args.steps_per_minute)
              for b, path in bases.items() for d in args.data_minutes for m in args.minutes}
    if args.train_only:
        return 0
    sources = [p for pat in SOURCES for p in sorted(DATA.glob(pat))][: len(SOURCES)]
    judge = Judge(held, sources)
    table, per_clip = [], []
    if not args.no_reference:
        for label, ref in [*((f"{b} alone (mean singer)", p) for b, p in bases.items()), ("bundled PJS", "bundled")]:
            conv = Converter.from_pretrained(ref)
            singer = ",".join(f"{s}:1" for s in conv.singers) if len(conv.singers) > 1 else None
            rows = score(conv, singer, judge, args.mel_match)
            table.append({"voice": label, "data_min": 0, "minutes": 0, **summary(rows)})
            per_clip += [{"voice": label, **r} for r in rows]
    for (_base, d, m), folder in voices.items():
        conv = Converter.from_pretrained(voice=folder)
        doc = json.loads((folder / "voice.json").read_text())
        rows = score(conv, None, judge, args.mel_match)
        t = doc["trained"]
        table.append({"voice": folder.name, "data_min": d, "minutes": m, "steps": t.get("refiner_steps"),
                      "train_min": t.get("refiner_minutes"), **summary(rows)})
        per_clip += [{"voice": folder.name, **r} for r in rows]
    # the ceiling: the held-out song as recorded and as the vocoder renders it from its own mel and F0
    from canora.conditioning import extract_features

    conv = Converter.from_pretrained()
    ceiling = []
    for p in held[:3]:
        wav = load_audio(p, SR)
        feats = extract_features(wav, conv.spec, conv.refiner.feature_params)
        copy = conv.vocoder.vocode(feats.mel, feats.f0_with_zeros(), 0.0)
        rounds = MEL_MATCH_ITERS if args.mel_match is None else args.mel_match
        matched = mel_match(copy, feats.mel, conv.spec, rounds) if rounds else copy
        ceiling.append({"clip": p.stem[:40], "id_recording": judge.identify(wav)[0],
                        "id_vocoder_copy": judge.identify(copy)[0],
                        "id_vocoder_copy_matched": judge.identify(matched)[0]})
    cols = ["voice", "data_min", "minutes", "steps", "id", "id_min", "id_src", "sim", "sim_src", "sim_v", "sim_v_src",
            "gpe_harvest", "gpe_harvest_max", "gpe_praat", "gpe_praat_max"]
    print_table(table, cols)
    print_table(ceiling, ["clip", "id_recording", "id_vocoder_copy", "id_vocoder_copy_matched"])
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    write_json(args.out, {"target": TARGET, "holdout": [p.name for p in held], "pool": [p.name for p in pool],
                          "panel": judge.panel.windows_per_singer, "threads": args.threads, "load_average": load,
                          "mel_match": args.mel_match,
                          "rows": table, "per_clip": per_clip, "ceiling": ceiling})
    return 0


if __name__ == "__main__":
    sys.exit(main())
