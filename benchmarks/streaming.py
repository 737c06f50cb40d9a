"""The streaming converter (canora.streaming) over block sizes and thread counts: latency, compute per block,
dropped blocks under a simulated real-time clock, and quality against the offline conversion.

A clip of real singing (vocadito clip 10 from ../shared/data; a synthetic phrase without it) is fed to a
:class:`StreamConverter` with the bundled models in blocks of the block size, at each block size and thread
count, on each ``--backends`` (torch; onnx = both models on ONNX Runtime, exported in memory). Reported per
row:

* ``latency_ms``: the algorithmic latency (block + lookahead + cross-fade + resampler);
* ``compute_ms`` median / p95 / max of one internal block, and the same as a fraction of the block duration
  (``load_*``; a live stream needs well under 1, the issue asks for p95 <= 0.5);
* ``dropped``: blocks late under a simulated real-time clock: block ``i`` arrives at ``(i + 1) * block``, is
  processed when the previous one is done, and is dropped when its output is not ready one block later;
* quality against the offline conversion of the same clip with the same models and steps (``canora.dsp.artifacts``
  on the source's frames): frame-rate periodicity and lines, voiced HNR, gross pitch error by harvest and Praat;
  and the strongest tone held through the clip above 3 kHz (``held_tone``: ``tone_db`` above the neighbouring
  bins, at ``tone_hz``; recordings about +2 dB).

The machine's load average is printed and stored: a busy machine slows every block, so compare numbers
within one run only.

    .venv/bin/python benchmarks/streaming.py [--seconds 6] [--blocks 40 60 80 100 120 150 200] [--threads 1]
        [--steps 2] [--transpose 5] [--backends torch onnx] [--out bench_out/streaming.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import print_table, write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from canora.dsp.artifacts import artifact_metrics, reference_masks  # noqa: E402
from canora.pipeline import Converter  # noqa: E402
from canora.streaming import DEFAULT_STREAM_STEPS, StreamConverter  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
SR = 22050


def load_clip(seconds: float) -> tuple[np.ndarray, str]:
    path = SHARED / "vocadito" / "vocadito_10.wav"
    if path.exists():
        from canora.io.audio import load_audio

        return load_audio(path, SR)[2 * SR: int((2 + seconds) * SR)], f"{path.name} [2 s, +{seconds:g} s]"
    from canora.demo import synth_phrase

    return np.asarray(synth_phrase(SR), np.float32)[: int(seconds * SR)], "synthetic phrase (no ../shared/data)"


def dropped_blocks(call_seconds: list[float], block_seconds: float) -> int:
    """Blocks whose output is not ready one block after they arrive, one worker, arrivals every block."""
    done, late = 0.0, 0
    for i, c in enumerate(call_seconds):
        arrive = (i + 1) * block_seconds
        done = max(arrive, done) + c
        late += done > arrive + block_seconds
    return late


def quality(x: np.ndarray, masks: object, transpose: float) -> dict[str, float]:
    m = artifact_metrics(x, SR, 256, masks, transpose=transpose)
    return {"periodicity": m.frame_rate_periodicity, "lines_db": m.frame_rate_line_db, "hnr_db": m.hnr_db,
            "gpe_harvest": m.gpe_harvest, "gpe_praat": m.gpe_praat, "tone_db": m.held_tone_db,
            "tone_hz": m.held_tone_hz}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--blocks", type=float, nargs="+", default=[40, 60, 80, 100, 120, 150, 200])
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--steps", type=int, default=DEFAULT_STREAM_STEPS)
    ap.add_argument("--transpose", type=float, default=5.0)
    ap.add_argument("--backends", nargs="+", default=["torch"], choices=("torch", "onnx"),
                    help="model backends to compare (onnx needs onnxruntime)")
    ap.add_argument("--no-quality", action="store_true", help="skip the artifact metrics (faster)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench_out" / "streaming.json")
    args = ap.parse_args()

    wav, clip = load_clip(args.seconds)
    load = [os.getloadavg()]
    print(f"{clip}: {len(wav) / SR:.1f} s; steps {args.steps}; transpose {args.transpose:+g}; "
          f"load average {load[0]}", flush=True)
    convs: dict[tuple[int, str], Converter] = {}

    def converter(threads: int, backend: str) -> Converter:
        """One per thread count and backend: ONNX Runtime sessions take the thread count when they are made."""
        torch.set_num_threads(threads)
        if (threads, backend) not in convs:
            convs[threads, backend] = Converter.from_pretrained(backend=backend)
        return convs[threads, backend]

    offline = converter(min(args.threads), args.backends[0]).convert(wav, SR, transpose=args.transpose,
                                                                     steps=args.steps).audio
    masks = None if args.no_quality else reference_masks(wav.astype(np.float64), SR, 256)
    rows = []
    if masks is not None:
        rows.append({"block_ms": "offline", "threads": min(args.threads), "backend": args.backends[0],
                     **quality(offline, masks, args.transpose)})
    for threads, backend, block_ms in ((t, b, m) for t in args.threads for b in args.backends for m in args.blocks):
        conv = converter(threads, backend)
        sc = StreamConverter(conv, block_ms=block_ms, transpose=args.transpose, steps=args.steps)
        chunk = sc.block_samples
        sc.process(wav[: chunk])  # warm-up, then a fresh stream
        sc.reset()
        sc.block_seconds.clear()
        calls, outs = [], []
        for i in range(0, len(wav), chunk):
            t0 = time.perf_counter()
            outs.append(sc.process(wav[i: i + chunk]))
            calls.append(time.perf_counter() - t0)
        outs.append(sc.flush())
        streamed = np.concatenate(outs)[sc.latency_samples:]
        ms = 1000 * np.asarray(sc.block_seconds)
        dur = sc.block_duration_ms
        row = {"block_ms": round(dur, 1), "threads": threads, "backend": backend,
               "latency_ms": round(sc.latency_ms, 1),
               "compute_med": float(np.median(ms)), "compute_p95": float(np.percentile(ms, 95)),
               "compute_max": float(ms.max()), "load_med": float(np.median(ms)) / dur,
               "load_p95": float(np.percentile(ms, 95)) / dur, "load_max": float(ms.max()) / dur,
               "dropped": f"{dropped_blocks(calls, dur / 1000)}/{len(calls)}"}
        if masks is not None:
            row.update(quality(streamed, masks, args.transpose))
        rows.append(row)
        print(row, flush=True)
        load.append(os.getloadavg())
    print()
    print_table(rows, ["block_ms", "threads", "backend", "latency_ms", "compute_med", "compute_p95", "compute_max",
                       "load_med", "load_p95", "load_max", "dropped", "periodicity", "lines_db", "hnr_db",
                       "gpe_harvest", "gpe_praat", "tone_db", "tone_hz"])
    print(f"load average before {load[0]}, after {load[-1]}")
    write_json(args.out, {"clip": clip, "seconds": len(wav) / SR, "steps": args.steps, "transpose": args.transpose,
                          "loadavg": load, "rows": rows})


if __name__ == "__main__":
    main()
