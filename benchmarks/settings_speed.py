"""What a conversion setting costs, side by side: Praat's second opinion on SwiftF0's voicing and the refiner's steps.

Converts the same clip (each of ``--clips`` from ../shared/data, tiled to ``--seconds``) with every combination
of SwiftF0's ``praat_voicing`` (on / off) and ``--steps``, in alternating order, ``--repeats`` times each, on
``--threads`` torch threads, and prints the median wall time of each case and its ratio to the first case (Praat
off, the first of ``--steps``). Cases run interleaved, so a change in the machine's load reaches all of them
alike; the load average before and after is in the JSON. Compare ratios, not seconds.

    .venv/bin/python benchmarks/settings_speed.py [--seconds 30] [--steps 4 3] [--repeats 7] [--threads 1]
        [--clips pjs/pjs001_song.wav vocadito/vocadito_1.wav]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _common import print_table, write_json

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def clip(path: Path, seconds: float, sr: int) -> np.ndarray:
    """``path`` at ``sr``, tiled (or cut) to ``seconds``."""
    from canora.io.audio import load_audio

    if not path.is_file():
        raise SystemExit(f"{path}: missing; this benchmark needs ../shared/data")
    x = load_audio(path, sr)
    n = int(seconds * sr)
    return np.tile(x, -(-n // len(x)))[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 3])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clips", nargs="+", default=["pjs/pjs001_song.wav", "vocadito/vocadito_1.wav"])
    ap.add_argument("--out", type=Path, default=Path("bench_out/settings_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from canora.pipeline import Converter

    conv = Converter.from_pretrained()
    params = conv.refiner.feature_params
    if params.f0_method != "swift":
        raise SystemExit(f"the refiner tracks F0 with {params.f0_method!r}; praat_voicing is SwiftF0's option")
    with_praat = {on: dataclasses.replace(params, f0_params={**dict(params.f0_params), "praat_voicing": on})
                  for on in (False, True)}
    cases = [(on, s) for on in (False, True) for s in args.steps]
    rows, load = [], [os.getloadavg()]
    for name in args.clips:
        wav = clip(DATA / name, args.seconds, conv.sample_rate)
        times: dict[tuple[bool, int], list[float]] = {c: [] for c in cases}
        for rep in range(args.repeats + 1):  # the first round warms each case up and is not counted
            for on, steps in cases:
                conv.refiner.feature_params = with_praat[on]
                t0 = time.perf_counter()
                conv.convert(wav, conv.sample_rate, steps=steps, workers=1)
                if rep:
                    times[(on, steps)].append(time.perf_counter() - t0)
        conv.refiner.feature_params = params
        base = statistics.median(times[cases[0]])
        for on, steps in cases:
            med = statistics.median(times[(on, steps)])
            rows.append({"clip": Path(name).stem, "praat_voicing": "on" if on else "off", "steps": steps,
                         "median_s": med, "rtf": med / args.seconds, "ratio": med / base})
        load.append(os.getloadavg())
        print(f"{name}: done", flush=True)
    print_table(rows, ["clip", "praat_voicing", "steps", "median_s", "rtf", "ratio"])
    print(f"load average (1/5/15 min) before and after each clip: {load}")
    write_json(args.out, {"benchmark": "settings_speed", "seconds": args.seconds, "repeats": args.repeats,
                          "threads": args.threads, "loadavg": load, "rows": rows})


if __name__ == "__main__":
    main()
