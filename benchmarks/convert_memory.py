"""End-to-end real-time factor and peak memory of `Converter.convert` against song length (30 s, 5 min).

Each length runs in a fresh subprocess (so peaks do not mix) that converts a synthetic song (the demo
phrase repeated, with its rests) of that many minutes and reports its peak resident set size (RSS). The
whole-song arrays (input, resampled copy, converted pieces, the cross-fade join, the envelope transfer, the
mels and F0 returned) grow linearly, about 0.6 MB per second of audio at their peak; the refiner's and
vocoder's activations do not grow with length but with the longest slice (``--max-slice-seconds``).
The table shows the peak RSS per length and the growth per minute.

    .venv/bin/python benchmarks/convert_memory.py [--minutes 0.5 5] [--steps N] [--workers 1 0]

RTF = conversion wall seconds / audio seconds (2 threads, models loaded and warm, default sampler).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _common import print_table, write_json

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(2)
from canora.demo import synth_phrase
from canora.pipeline import Converter
minutes, steps, max_slice = float(sys.argv[1]), int(sys.argv[2]) or None, float(sys.argv[3])
workers = int(sys.argv[4]) or None
conv = Converter.from_pretrained()
phrase = synth_phrase(22050)
conv.convert(phrase, 22050, steps=steps)  # warm-up
n = int(minutes * 60 * 22050)
wav = np.tile(phrase, n // len(phrase) + 1)[:n]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
res = conv.convert(wav, 22050, steps=steps, max_slice_seconds=max_slice, workers=workers)
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"minutes": minutes, "workers": res.stats["workers"], "slices": res.stats["slices"],
                  "rss_before_mb": base, "peak_rss_mb": peak,
                  "rtf": wall / (n / 22050)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[0.5, 5.0])
    ap.add_argument("--steps", type=int, default=0, help="refiner steps (0: the refiner's default)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0],
                    help="slices converted at once, each a run (0: the default, one per torch thread)")
    ap.add_argument("--max-slice-seconds", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=Path("bench_out/convert_memory.json"))
    args = ap.parse_args()
    rows = []
    for w in args.workers:
        mine = []
        for m in args.minutes:
            out = subprocess.run([sys.executable, "-c", CHILD, str(m), str(args.steps), str(args.max_slice_seconds),
                                  str(w)], check=True, capture_output=True, text=True).stdout
            mine.append(json.loads(out.strip().splitlines()[-1]))
            print(f"{m} min, workers {w or 'default'}: done", file=sys.stderr)
        for r in mine:
            extra = r["minutes"] - mine[0]["minutes"]
            r["growth_mb_per_min"] = ((r["peak_rss_mb"] - mine[0]["peak_rss_mb"]) / extra if extra > 0
                                      else float("nan"))
        rows += mine
    print_table(rows, ["minutes", "workers", "slices", "rss_before_mb", "peak_rss_mb", "growth_mb_per_min", "rtf"])
    write_json(args.out, {"benchmark": "convert_memory", "steps": args.steps,
                          "max_slice_seconds": args.max_slice_seconds, "rows": rows})


if __name__ == "__main__":
    main()
