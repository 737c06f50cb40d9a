"""End-to-end real-time factor and peak memory of `Converter.convert` against song length (30 s, 5 min).

Each length runs in a fresh subprocess (so peaks do not mix) that converts a synthetic song (the demo
phrase repeated, with its rests) of that many minutes and reports its peak resident set size (RSS). The
whole-song arrays (input, resampled copy, converted pieces, the cross-fade join, the envelope transfer, the
mels and F0 returned) grow linearly, about 0.6 MB per second of audio at their peak; the refiner's and
vocoder's activations do not grow with length but with the longest slice (``--max-slice-seconds``).
The table shows the peak RSS per length and the growth per minute.

    .venv/bin/python benchmarks/convert_memory.py [--minutes 0.5 5] [--steps N] [--workers 1 0]

``--files`` runs the whole ``canora convert`` command instead, each in a fresh process, on files made to be long
(2 hours unless ``--file-minutes``) in the formats a hostile or careless user hands over: a sparse WAV whose header
claims 2 hours of 48 kHz stereo, a 384 kHz FLAC of silence, an 8 kHz WAV, a FLAC whose header gives no length, and a
30-minute 44.1 kHz stereo song (the default cap, ``--max-audio-minutes 30``, which it converts). Each row is the
command's peak RSS and exit status; ``--raise-cap`` converts the long files too (``--max-audio-minutes`` their
length; slow).

    .venv/bin/python benchmarks/convert_memory.py --files [--file-minutes 120] [--raise-cap]

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


RUN_CLI = r"""
import json, resource, sys, time
from canora.cli import main
t0 = time.perf_counter()
code = main(sys.argv[1:])
print(json.dumps({"code": code, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "wall_s": time.perf_counter() - t0}))
"""


def _write_blocks(path: Path, sr: int, channels: int, minutes: float, fmt: str, subtype: str, silent: bool) -> None:
    """A long file written a block at a time (a tone with pauses, or silence): never all of it in memory."""
    import numpy as np
    import soundfile as sf

    total, block = int(minutes * 60 * sr), 1 << 20
    with sf.SoundFile(path, "w", sr, channels, subtype=subtype, format=fmt) as f:
        for start in range(0, total, block):
            n = min(block, total - start)
            if silent:
                x = np.zeros((n, channels), np.float32)
            else:
                t = (start + np.arange(n)) / sr
                x = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.2 * t) > 0)).astype(np.float32)
                x = np.repeat(x[:, None], channels, axis=1)
            f.write(x)


def _sparse_wav(path: Path, sr: int, channels: int, minutes: float) -> None:
    """A WAV whose header claims ``minutes`` of 16-bit audio, its data a sparse hole: a few kB on disk."""
    import struct

    frames = int(minutes * 60 * sr)
    block = channels * 2
    data = frames * block
    head = (b"RIFF" + struct.pack("<I", min(36 + data, 2**32 - 1)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, channels, sr, sr * block, block, 16) + b"data"
            + struct.pack("<I", min(data, 2**32 - 1)))
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + min(data, 2**32 - 1 - 36))


def _unknown_length(path: Path) -> None:
    """Zero the total-samples field of a FLAC's STREAMINFO: the header says "unknown length"."""
    b = bytearray(path.read_bytes())
    b[8 + 13] &= 0xF0
    b[8 + 14: 8 + 18] = b"\0\0\0\0"
    path.write_bytes(bytes(b))


def hostile_files(directory: Path, minutes: float) -> dict[str, Path]:
    """The files of ``--files`` (made once, kept in ``directory``)."""
    directory.mkdir(parents=True, exist_ok=True)
    made = {
        "sparse WAV, 48 kHz stereo": (directory / "sparse_48k_stereo.wav",
                                      lambda p: _sparse_wav(p, 48000, 2, minutes)),
        "FLAC of silence, 384 kHz": (directory / "silence_384k.flac",
                                     lambda p: _write_blocks(p, 384000, 1, minutes, "FLAC", "PCM_16", True)),
        "WAV, 8 kHz": (directory / "tone_8k.wav", lambda p: _write_blocks(p, 8000, 1, minutes, "WAV", "PCM_16", False)),
        "FLAC, unknown length, 48 kHz": (directory / "unknown_length_48k.flac",
                                         lambda p: (_write_blocks(p, 48000, 1, minutes, "FLAC", "PCM_16", False),
                                                    _unknown_length(p))),
        "30 min WAV, 44.1 kHz stereo": (directory / "song_30min_44k_stereo.wav",
                                        lambda p: _write_blocks(p, 44100, 2, 30.0, "WAV", "PCM_16", False)),
    }
    out = {}
    for name, (path, make) in made.items():
        if not path.exists():
            print(f"making {path.name} ...", file=sys.stderr)
            make(path)
        out[name] = path
    return out


def run_files(args: argparse.Namespace) -> None:
    rows = []
    for name, path in hostile_files(args.file_dir, args.file_minutes).items():
        caps = [None] + ([max(args.file_minutes, 30.0)] if args.raise_cap and "30 min" not in name else [])
        for cap in caps:
            out = args.file_dir / "out" / f"{path.stem}.wav"
            argv = ["convert", str(path), "-o", str(out), "--overwrite"] + (
                ["--max-audio-minutes", f"{cap:g}"] if cap else [])
            r = subprocess.run([sys.executable, "-c", RUN_CLI, *argv], capture_output=True, text=True)
            doc = json.loads(r.stdout.strip().splitlines()[-1])
            said = (r.stderr.strip().splitlines() or [""])[-1]
            rows.append({"file": name, "on_disk_mb": round(path.stat().st_size / 2**20, 2),
                         "cap_min": cap or 30, "exit": doc["code"], "peak_rss_mb": round(doc["peak_rss_mb"]),
                         "wall_s": round(doc["wall_s"], 1), "said": said[:150]})
            print(f"{name}, cap {cap or 30}: exit {doc['code']}, peak {doc['peak_rss_mb']:.0f} MB", file=sys.stderr)
    print_table(rows, ["file", "on_disk_mb", "cap_min", "exit", "peak_rss_mb", "wall_s"])
    for r in rows:
        print(f"{r['file']} (cap {r['cap_min']}): {r['said']}")
    write_json(args.out, {"benchmark": "convert_memory --files", "file_minutes": args.file_minutes, "rows": rows})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[0.5, 5.0])
    ap.add_argument("--steps", type=int, default=0, help="refiner steps (0: the refiner's default)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0],
                    help="slices converted at once, each a run (0: the default, one per torch thread)")
    ap.add_argument("--max-slice-seconds", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=Path("bench_out/convert_memory.json"))
    ap.add_argument("--files", action="store_true", help="the whole command on long files of hostile formats")
    ap.add_argument("--file-minutes", type=float, default=120.0, help="length of the --files files")
    ap.add_argument("--file-dir", type=Path, default=Path("bench_out/convert_memory_files"))
    ap.add_argument("--raise-cap", action="store_true", help="--files: also convert them with the cap raised")
    args = ap.parse_args()
    if args.files:
        run_files(args)
        return
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
