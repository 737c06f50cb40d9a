"""HiFi-GAN training throughput: audio seconds processed per wall second, single process vs 2-process DDP.

Each case runs the real command (``canora train-vocoder``, or ``torchrun --standalone --nproc_per_node 2``
over gloo) on a few PJS songs and reads the per-step throughput the trainer logs (``train_log.jsonl``,
``audio_sec_per_sec`` = batch x processes x segment / sr / step wall time), dropping the first
``--warmup`` steps. Cases: one process with 1 and with ``--threads`` threads, and 2 DDP processes with
``--threads / 2`` each (the last two use the same cores); one process with one thread is the baseline.
Discriminators are the official MPD + MSD unless ``--disc-width-div`` > 1.

    .venv/bin/python benchmarks/train_vocoder.py [--configs v2 v1] [--batch-size 2] [--segment-size 4096]
        [--steps 4] [--warmup 1] [--threads 2] [--out bench_out/train_vocoder.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import print_table, write_json

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pjs"


def run_case(config: str, world: int, threads: int, args: argparse.Namespace, wavs: Path, work: Path) -> dict:
    out = work / f"{config}_{world}x{threads}"
    cli = ["train-vocoder", "--wavs", str(wavs), "--out", str(out), "--config", config, "--val-count", "0",
           "--steps", str(args.warmup + args.steps), "--batch-size", str(args.batch_size),
           "--segment-size", str(args.segment_size), "--disc-width-div", str(args.disc_width_div),
           "--checkpoint-every", "0", "--val-every", "0", "--log-every", "1", "--threads", str(threads),
           "--cache-dir", str(work / "cache")]
    if world == 1:
        cmd = [sys.executable, "-m", "canora", *cli]
    else:
        torchrun = Path(sys.executable).parent / "torchrun"
        cmd = [str(torchrun), "--standalone", "--nproc_per_node", str(world), "-m", "canora", *cli]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{config} x{world} failed:\n{proc.stderr[-3000:]}")
    logs = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    rates = [r["train/audio_sec_per_sec"] for r in logs if "train/audio_sec_per_sec" in r][args.warmup:]
    return {"config": config, "processes": world, "threads_per_process": threads, "batch_per_process": args.batch_size,
            "segment": args.segment_size, "timed_steps": len(rates),
            "audio_s_per_s": statistics.median(rates), "step_s": statistics.median(
                args.batch_size * world * args.segment_size / 22050 / r for r in rates),
            "wall_s_total": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["v2", "v1"])
    ap.add_argument("--batch-size", type=int, default=2, help="per process")
    ap.add_argument("--segment-size", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per case")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="total threads (split across DDP processes)")
    ap.add_argument("--disc-width-div", type=int, default=1, choices=(1, 2, 4, 8))
    ap.add_argument("--files", type=int, default=4, help="PJS songs to train on")
    ap.add_argument("--out", type=Path, default=Path("bench_out/train_vocoder.json"))
    args = ap.parse_args()
    songs = sorted(DATA.glob("*.wav"))[: args.files]
    if not songs:
        raise SystemExit(f"{DATA}: no PJS songs (../shared/data is missing)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_train_vocoder_") as tmp:
        work = Path(tmp)
        wavs = work / "wavs"
        wavs.mkdir()
        for s in songs:
            (wavs / s.name).symlink_to(s)
        cases = list(dict.fromkeys([(1, 1), (1, args.threads), (2, max(1, args.threads // 2))]))
        for config in args.configs:
            base = None
            for world, threads in cases:
                row = run_case(config, world, threads, args, wavs, work)
                base = base or row["audio_s_per_s"]
                row["speedup_vs_1proc_1thread"] = row["audio_s_per_s"] / base
                rows.append(row)
                print(f"{config} {world} proc x {threads} thr: {row['audio_s_per_s']:.4f} audio s / s", file=sys.stderr)
    print_table(rows, ["config", "processes", "threads_per_process", "batch_per_process", "segment", "timed_steps",
                       "step_s", "audio_s_per_s", "speedup_vs_1proc_1thread"])
    write_json(args.out, {"benchmark": "train_vocoder", "disc_width_div": args.disc_width_div,
                          "discriminators": "official MPD+MSD" if args.disc_width_div == 1 else "narrowed",
                          "rows": rows})


if __name__ == "__main__":
    main()
