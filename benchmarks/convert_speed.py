"""Where the time of a conversion goes: each stage of `canora convert`, at several song lengths.

Runs the staged pipeline by hand (the same calls `Converter.convert` makes) on real singing (PJS songs joined
to the length asked, resampled from their native 24 kHz like any user file) and times: reading the file,
resampling, analysis (of which: F0 tracking, and the rest of the features from one STFT), the key, the
refiner, the vocoder, joining the slices and writing the wav. Then the whole command as a user runs it
(`python -m canora convert`, start-up and model loading included) for the real-time factor that matters;
``--onnx`` adds the command on ONNX exports of the same models (ONNX Runtime, torch never imported).
The stages run one slice at a time; ``Converter.convert`` and the command are also timed with ``--workers 1``
beside the default (one slice per torch thread), interleaved, best of two.

    .venv/bin/python benchmarks/convert_speed.py [--seconds 10 60 300] [--threads 2] [--steps 4]
        [--refiner EXPORT] [--vocoder EXPORT] [--compare-f0 harvest] [--onnx]

``--compare-f0`` also times the analysis with another F0 tracker (the ratio is the F0 choice's share).
Numbers are wall seconds on this machine with its load average noted; compare ratios from one run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import print_table, write_json

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def song(seconds: float, sr: int) -> np.ndarray:
    """PJS songs 001.. joined (at ``sr``) and cut to ``seconds``."""
    from canora.io.audio import load_audio

    parts, total, i = [], 0, 1
    while total < seconds * sr:
        p = DATA / "pjs" / f"pjs{i:03d}_song.wav"
        if not p.is_file():
            raise SystemExit(f"{p}: missing; this benchmark needs ../shared/data")
        x = load_audio(p, sr)
        parts.append(x)
        total += len(x)
        i += 1
    return np.concatenate(parts)[: int(seconds * sr)]


def staged(conv, wav_path: Path, steps: int, f0_method: str | None = None) -> dict[str, float]:  # noqa: ANN001
    """Seconds per stage of one conversion of ``wav_path`` (a pass of Converter.convert, by hand)."""
    from dataclasses import replace

    from canora.dsp.pitch import extract_f0
    from canora.dsp.slicing import plan_slices
    from canora.io.audio import read_audio, resample, save_wav
    from canora.pipeline import CROSSFADE_FRAMES, MARGIN_FRAMES, Region, song_f0

    t: dict[str, float] = {}
    t0 = time.perf_counter()
    raw, sr = read_audio(wav_path)
    t["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    wav = resample(raw, sr, conv.sample_rate)
    t["resample"] = time.perf_counter() - t0
    job = conv._job(None, None, steps, None, 0, 0.0, False, 30.0)
    spec, hop, total = conv.spec, conv.spec.hop_length, len(wav)
    if f0_method:
        conv.refiner.feature_params = replace(conv.refiner.feature_params, f0_method=f0_method)
    overlap, context = CROSSFADE_FRAMES * hop, (CROSSFADE_FRAMES + MARGIN_FRAMES) * hop
    slices = plan_slices(wav, spec.sample_rate, hop=hop, max_seconds=30.0, overlap=overlap)
    regions = [Region(s, *s.region(context, total)) for s in slices]
    t0 = time.perf_counter()
    analyses = [conv.analyse(wav[r.start: r.end], r.cut.silent, "bench") for r in regions]
    t["analyse"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    params = conv.refiner.feature_params
    for r in regions:
        extract_f0(wav[r.start: r.end], spec.sample_rate, hop, method=params.f0_method, f0_min=params.f0_min,
                   f0_max=params.f0_max)
    t["of which F0"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    analyses = [conv.put_in_key(a, 0.0) for a in analyses]
    drive = song_f0(regions, analyses, total, hop, keyed=True)
    cycles = conv.vocoder.frame_cycles(drive)
    t["key"] = time.perf_counter() - t0
    refine, vocode = conv.refiner.refine_in_key, conv.vocoder.vocode
    spent = {"refine": 0.0, "vocode": 0.0}

    def timed(name: str, fn):  # noqa: ANN001, ANN202
        def wrapper(*a, **k):  # noqa: ANN002, ANN003, ANN202
            s = time.perf_counter()
            out = fn(*a, **k)
            spent[name] += time.perf_counter() - s
            return out
        return wrapper

    conv.refiner.refine_in_key, conv.vocoder.vocode = timed("refine", refine), timed("vocode", vocode)
    try:
        t0 = time.perf_counter()
        pieces = [conv.render(r, a, drive, cycles, job) for r, a in zip(regions, analyses)]
        render = time.perf_counter() - t0
    finally:
        conv.refiner.refine_in_key, conv.vocoder.vocode = refine, vocode
    t["refine"], t["vocode"] = spent["refine"], spent["vocode"]
    t["render other"] = render - spent["refine"] - spent["vocode"]
    t0 = time.perf_counter()
    out = conv.assemble([p.audio for p in pieces], slices, wav, overlap, context)
    t["join + envelope"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        save_wav(Path(d) / "out.wav", out, conv.sample_rate)
        t["write"] = time.perf_counter() - t0
    t["total"] = sum(v for k, v in t.items() if k != "of which F0")
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0, 300.0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="refiner steps (default: the refiner's default)")
    ap.add_argument("--refiner", default=None)
    ap.add_argument("--vocoder", default=None)
    ap.add_argument("--compare-f0", default=None, help="also time the analysis with this F0 tracker")
    ap.add_argument("--no-cli", action="store_true", help="skip the whole-command runs")
    ap.add_argument("--onnx", action="store_true",
                    help="also time the command on ONNX exports of the two models (ONNX Runtime, no torch import)")
    ap.add_argument("--out", type=Path, default=Path("bench_out/convert_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from canora.io.audio import save_wav
    from canora.pipeline import Converter
    from canora.refiner.base import DEFAULT_STEPS

    steps = args.steps or DEFAULT_STEPS
    conv = Converter.from_pretrained(args.refiner, args.vocoder)
    rows, cli_rows, convert_rows, load = [], [], [], [os.getloadavg()]
    with tempfile.TemporaryDirectory() as d:
        variants: list[tuple[str, list[str]]] = [("--workers 1", ["--workers", "1"]), ("default", [])]
        if args.onnx and not args.no_cli:
            from canora.export import export_onnx
            from canora.io.models import resolve_model

            ref_onnx, voc_onnx = Path(d) / "refiner_onnx", Path(d) / "vocoder_onnx"
            export_onnx(resolve_model(args.refiner, "refiner"), ref_onnx)
            export_onnx(resolve_model(args.vocoder, "vocoder"), voc_onnx)
            variants.append(("ONNX exports (no torch), default", ["--refiner", str(ref_onnx), "--vocoder",
                                                                  str(voc_onnx)]))
        for secs in args.seconds:
            path = Path(d) / f"song_{int(secs)}s.wav"
            save_wav(path, song(secs, 24000), 24000)  # the user's file, at its own rate
            staged(conv, Path(d) / path.name, steps)  # warm-up (first-call costs are not a song's)
            t = staged(conv, path, steps)
            rows.append({"seconds": secs, "f0": conv.refiner.feature_params.f0_method, **t,
                         "rtf": t["total"] / secs})
            from canora.io.audio import read_audio

            raw, sr = read_audio(path)
            best: dict[str, float] = {}
            for _ in range(2):  # interleaved, best of two: one slice at a time on all threads, then the default
                for label, workers in (("convert(), 1 worker", 1), ("convert(), default workers", None)):
                    t0 = time.perf_counter()
                    res = conv.convert(raw, sr, steps=steps, workers=workers)
                    best[label] = min(best.get(label, float("inf")), time.perf_counter() - t0)
                    best[f"{label} n"] = res.stats["workers"]
            for label in ("convert(), 1 worker", "convert(), default workers"):
                convert_rows.append({"seconds": secs, "call": label, "workers": best[f"{label} n"],
                                     "wall": best[label], "rtf": best[label] / secs})
            if args.compare_f0:
                other = Converter.from_pretrained(args.refiner, args.vocoder)
                t2 = staged(other, path, steps, args.compare_f0)
                rows.append({"seconds": secs, "f0": args.compare_f0, **t2, "rtf": t2["total"] / secs})
            if not args.no_cli:
                cmd = [sys.executable, "-m", "canora", "convert", str(path), "-o", str(Path(d) / "cli.wav"),
                       "--overwrite", "--threads", str(args.threads), "--steps", str(steps)]
                walls: dict[str, float] = {}
                for _ in range(2):  # interleaved, best of two
                    for label, extra in variants:
                        models = [] if "--refiner" in extra else [
                            a for flag, v in (("--refiner", args.refiner), ("--vocoder", args.vocoder)) if v
                            for a in (flag, v)]
                        t0 = time.perf_counter()
                        subprocess.run(cmd + models + extra, check=True, capture_output=True)
                        walls[label] = min(walls.get(label, float("inf")), time.perf_counter() - t0)
                for label, wall in walls.items():
                    cli_rows.append({"seconds": secs, "workers": label, "command_wall": wall,
                                     "command_rtf": wall / secs})
            load.append(os.getloadavg())
            print(f"{secs:g} s: done", file=sys.stderr)
    cols = ["seconds", "f0", "read", "resample", "analyse", "of which F0", "key", "refine", "vocode", "render other",
            "join + envelope", "write", "total", "rtf"]
    print_table(rows, cols)
    print()
    print_table(convert_rows, ["seconds", "call", "workers", "wall", "rtf"])
    if cli_rows:
        print()
        print_table(cli_rows, ["seconds", "workers", "command_wall", "command_rtf"])
    print(f"\nload average (1/5/15 min) before and after each length: {load}", file=sys.stderr)
    write_json(args.out, {"benchmark": "convert_speed", "threads": args.threads, "steps": steps,
                          "refiner": args.refiner or "bundled", "vocoder": args.vocoder or "bundled",
                          "loadavg": load, "stages": rows, "convert": convert_rows, "command": cli_rows})


if __name__ == "__main__":
    main()
