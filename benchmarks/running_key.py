"""The running key of ``canora live`` (:class:`canora.stream_key.RunningKey`) against the offline key, on F0 alone.

For each clip of ../shared/data (up to ``--seconds`` of each): SwiftF0's track (the stream's tracker), the key
``canora convert`` would choose from the whole clip (:func:`canora.dsp.pitch.choose_key` toward the bundled
refiner's singer), and the running key fed block by block (5 frames) at each ``--min-frames`` (voiced frames before
the first choice) and ``--pause-frames`` (unvoiced frames that make a pause). Reported: the share of voiced frames
rendered in another key than the offline one (before the first choice the key is 0), and on how many clips the final
key differs.

    .venv/bin/python benchmarks/running_key.py [--seconds 30] [--min-frames 8 26 43 86] [--pause-frames 10 17 26]
        [--out bench_out/running_key.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _common import print_table, write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import canora.stream_key as sk  # noqa: E402
from canora.dsp.pitch import choose_key, extract_f0  # noqa: E402
from canora.io.audio import load_audio  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
PATTERNS = ["nitsong070/*.wav", "vocadito/*.wav", "dagstuhl/*.wav", "smstools/*.wav", "makam/*/*.flac"]
SR, HOP, BLOCK = 22050, 256, 5


def clips(seconds: float, per_folder: int = 8) -> list[tuple[str, np.ndarray]]:
    out = []
    for pattern in PATTERNS:
        for path in sorted(SHARED.glob(pattern))[:per_folder]:
            f0 = extract_f0(load_audio(path, SR)[: int(seconds * SR)], SR, hop_length=HOP, method="swift")
            if (f0 > 0).sum() >= 100:
                out.append((path.name, f0))
    return out


def run(tracks: list[tuple[str, np.ndarray, int]], target: object) -> tuple[float, int]:
    """-> (% of voiced frames in another key than offline's, clips whose final key differs)."""
    wrong = total = final = 0
    for _, f0, offline in tracks:
        rk = sk.RunningKey(target)
        keys = []
        for a in range(0, len(f0), BLOCK):
            part = f0[a: a + BLOCK]
            rk.hear(part, part > 0, a)
            keys.append(rk.update(a, a + len(part)))
        k = np.repeat(keys, BLOCK)[: len(f0)]
        voiced = f0 > 0
        wrong += int(((k != offline) & voiced).sum())
        total += int(voiced.sum())
        final += int(rk.semitones != offline)
    return 100.0 * wrong / max(1, total), final


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--min-frames", type=int, nargs="+", default=[8, 26, 43, 86])
    ap.add_argument("--pause-frames", type=int, nargs="+", default=[10, 17, 26])
    ap.add_argument("--out", type=Path, default=ROOT / "bench_out" / "running_key.json")
    args = ap.parse_args()
    from canora.refiner import Refiner

    ref = Refiner.from_pretrained("bundled")
    target = ref.singer_f0_range(ref.singer_label(None))
    tracks = [(n, f0, choose_key(f0[f0 > 0], target).semitones) for n, f0 in clips(args.seconds)]
    rows = []
    for m in args.min_frames:
        for p in args.pause_frames:
            sk.KEY_MIN_FRAMES, sk.KEY_PAUSE_FRAMES = m, p
            share, final = run(tracks, target)
            rows.append({"min_frames": m, "pause_frames": p, "voiced_in_another_key_pct": round(share, 2),
                         "final_key_differs": final, "clips": len(tracks)})
    print_table(rows, list(rows[0]))
    write_json(args.out, {"clips": [n for n, _, _ in tracks], "rows": rows})


if __name__ == "__main__":
    main()
