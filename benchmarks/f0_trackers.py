"""Every registered F0 extractor compared on singing: accuracy, octave robustness, voicing and speed.

    .venv/bin/python benchmarks/f0_trackers.py [--methods swift harvest ...] [--songs 81 90] \\
        [--out bench_out/f0_trackers.json]

a. vocadito clip 1 (33 s, one singer) against its F0 annotation, interpolated onto the mel frame grid
   (22050 Hz, hop 256): RPA (raw pitch accuracy: reference-voiced frames whose estimate is voiced and within
   50 cents), RCA (raw chroma accuracy: the same with octave errors forgiven), voicing recall (reference-voiced
   frames found voiced), voicing false alarms (reference-unvoiced frames called voiced) and the median |error|
   in cents over frames voiced in both.
b. PJS songs 081-090 (one professional soprano) against harvest with octave repair (what ``extract_f0`` gives
   by default): agreement (frames voiced in both within 50 cents), octave errors (frames voiced in both off
   by 12 +- 1 semitones) and voicing agreement (frames where both say the same), pooled over all frames.
c. A synthetic harmonic glide from 50 to 1100 Hz (the singing range canora promises) with vibrato: RPA
   against the known F0, overall and below 100 Hz / above 700 Hz.
d. Speed: seconds per minute of audio on 60 s of PJS audio, warm (one short run first), min of two runs.
   None of the extractors uses torch; harvest runs chunks on ``workers`` threads (default: the CPU count)
   and swift on ``threads`` onnxruntime threads (default 1), so both are also timed on the other setting.
   The load average is printed: another process on the second core slows the multi-threaded rows.

Each tracker runs once per clip; the "repair" rows apply :func:`canora.pitch.repair_octave_jumps` to the same
track, which is exactly what ``extract_f0(..., repair_octaves=True)`` returns.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

from canora import pitch  # noqa: E402
from canora.audio import load_audio  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SR, HOP = 22050, 256


def cents(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Signed error (N,) in cents of ``est`` (N,) against ``ref`` (N,), both > 0."""
    return 1200.0 * np.log2(est / ref)


def chroma(c: np.ndarray) -> np.ndarray:
    """Cents (N,) folded into [-600, 600): octave errors forgiven."""
    return (c + 600.0) % 1200.0 - 600.0


def against_annotation(est: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Accuracy of ``est`` (T,) against the ground truth ``ref`` (T,), both Hz with 0 = unvoiced."""
    rv, ev = ref > 0, est > 0
    hit = rv & ev
    c = np.zeros_like(ref, dtype=np.float64)
    c[hit] = cents(est[hit], ref[hit])
    return {
        "rpa": float(np.mean(hit[rv] & (np.abs(c[rv]) < 50))),
        "rca": float(np.mean(hit[rv] & (np.abs(chroma(c[rv])) < 50))),
        "v_recall": float(np.mean(ev[rv])),
        "v_false_alarm": float(np.mean(ev[~rv])) if (~rv).any() else 0.0,
        "median_cents": float(np.median(np.abs(c[hit]))) if hit.any() else float("nan"),
    }


def against_tracker(est: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Agreement of ``est`` (T,) with another tracker's ``ref`` (T,), both Hz with 0 = unvoiced."""
    both = (est > 0) & (ref > 0)
    c = cents(est[both], ref[both])
    return {
        "agree_50c": float(np.mean(np.abs(c) < 50)),
        "octave_err": float(np.mean(np.abs(np.abs(c) - 1200) <= 100)),
        "voicing_agree": float(np.mean((est > 0) == (ref > 0))),
        "est_voiced": float(np.mean(est > 0)),
    }


def glide(seconds: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """(wav (T,) float32 at SR, true F0 (T // HOP,) Hz): a harmonic tone gliding 50 -> 1100 Hz in log
    frequency with a 5.5 Hz, +-30 cent vibrato and a little noise."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 50.0 * (1100.0 / 50.0) ** (t / seconds) * 2 ** (0.3 * np.sin(2 * np.pi * 5.5 * t) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    wav = np.zeros_like(t)
    for k in range(1, 40):
        wav += np.where(k * f0 < 0.45 * SR, np.sin(k * phase) / k, 0.0)
    wav = 0.2 * wav / np.abs(wav).max() + 0.002 * np.random.default_rng(0).standard_normal(len(t))
    n = len(t) // HOP
    return wav.astype(np.float32), f0[np.arange(n) * HOP + HOP // 2]


def track(name: str, wav: np.ndarray, **opts: Any) -> np.ndarray:
    """F0 (len(wav) // HOP,) of ``wav`` at SR by extractor ``name``, without octave repair."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pitch.get_f0_extractor(name, **opts).extract(wav, SR, HOP, len(wav) // HOP)


def variants(f0: np.ndarray) -> dict[str, np.ndarray]:
    """The raw track and the octave-repaired one (extract_f0's default)."""
    return {"raw": f0, "repair": pitch.repair_octave_jumps(f0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=None, help="default: every registered extractor")
    ap.add_argument("--songs", type=int, nargs=2, default=[81, 90], metavar=("FIRST", "LAST"),
                    help="PJS songs for b and d (inclusive)")
    ap.add_argument("--timing-seconds", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=Path("bench_out/f0_trackers.json"))
    args = ap.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} not found: this benchmark needs ../shared/data")
    methods = args.methods or pitch.available_f0_extractors()
    print(f"extractors: {', '.join(methods)}; load average at start {os.getloadavg()}")

    # a. vocadito clip 1 against its annotation (time s, f0 Hz with 0 = unvoiced, every 256/44100 s)
    voc = load_audio(DATA / "vocadito" / "vocadito_1.wav", SR)
    ann = np.loadtxt(DATA / "vocadito" / "vocadito_1_f0.csv", delimiter=",")
    ref_voc = pitch.resample_track(ann[:, 0], ann[:, 1], pitch.frame_times(len(voc) // HOP, SR, HOP))
    rows_a = []
    for m in methods:
        for v, f0 in variants(track(m, voc)).items():
            rows_a.append({"method": m, "octaves": v, **against_annotation(f0, ref_voc)})
    print(f"\na. vocadito clip 1 ({len(voc) / SR:.1f} s) against its F0 annotation")
    print_table(rows_a, ["method", "octaves", "rpa", "rca", "v_recall", "v_false_alarm", "median_cents"])

    # b. PJS songs against harvest + octave repair
    songs = [DATA / "pjs" / f"pjs{i:03d}_song.wav" for i in range(args.songs[0], args.songs[1] + 1)]
    songs = [s for s in songs if s.exists()]
    if not songs:
        raise SystemExit(f"no PJS songs {args.songs} under {DATA / 'pjs'}")
    wavs = [load_audio(s, SR) for s in songs]
    ref_pjs = np.concatenate([pitch.repair_octave_jumps(track("harvest", w)) for w in wavs])
    rows_b = []
    for m in methods:
        tracks = [track(m, w) for w in wavs]
        for v in ("raw", "repair"):
            f0 = np.concatenate([variants(t)[v] for t in tracks])
            rows_b.append({"method": m, "octaves": v, **against_tracker(f0, ref_pjs)})
    seconds_b = sum(len(w) for w in wavs) / SR
    print(f"\nb. PJS {songs[0].stem}..{songs[-1].stem} ({seconds_b:.0f} s) against harvest + octave repair")
    print(f"   harvest+repair calls {np.mean(ref_pjs > 0):.3f} of the frames voiced")
    print_table(rows_b, ["method", "octaves", "agree_50c", "octave_err", "voicing_agree", "est_voiced"])

    # c. synthetic 50 -> 1100 Hz glide
    g_wav, g_true = glide()
    low, high = g_true < 100, g_true > 700
    rows_c = []
    for m in methods:
        for v, f0 in variants(track(m, g_wav)).items():
            ok = (f0 > 0) & (np.abs(cents(np.where(f0 > 0, f0, 1.0), g_true)) < 50)
            rows_c.append({"method": m, "octaves": v, "rpa": float(ok.mean()), "rpa_below_100Hz": float(ok[low].mean()),
                           "rpa_above_700Hz": float(ok[high].mean()), "v_recall": float(np.mean(f0 > 0))})
    print("\nc. synthetic harmonic glide 50 -> 1100 Hz (12 s, vibrato +-30 cents)")
    print_table(rows_c, ["method", "octaves", "rpa", "rpa_below_100Hz", "rpa_above_700Hz", "v_recall"])

    # d. speed on 60 s of PJS audio
    cat = np.concatenate(wavs)
    n_t = int(args.timing_seconds * SR)
    t_wav = np.tile(cat, n_t // len(cat) + 1)[:n_t]
    timed: list[tuple[str, dict[str, Any]]] = [(m, {}) for m in methods]
    if "harvest" in methods:
        timed.append(("harvest", {"workers": 1 if (os.cpu_count() or 1) > 1 else 2}))
    if "swift" in methods:
        timed.append(("swift", {"threads": 2}))
    load_before = os.getloadavg()
    rows_d = []
    for m, opts in timed:
        track(m, t_wav[: 3 * SR], **opts)  # warm: imports, model sessions
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            track(m, t_wav, **opts)
            times.append(time.perf_counter() - t0)
        label = m + "".join(f" ({k}={v})" for k, v in opts.items())
        rows_d.append({"method": label, "s_per_min": min(times) * 60.0 / args.timing_seconds,
                       "x_realtime": args.timing_seconds / min(times)})
    t0 = time.perf_counter()
    pitch.repair_octave_jumps(ref_pjs[: n_t // HOP])
    t_repair = time.perf_counter() - t0
    rows_d.append({"method": "repair_octave_jumps only", "s_per_min": t_repair * 60.0 / args.timing_seconds})
    load_after = os.getloadavg()
    print(f"\nd. speed on {args.timing_seconds:g} s of PJS audio (min of 2 warm runs), {os.cpu_count()} CPUs; "
          f"load average (1, 5, 15 min) before {load_before}, after {load_after}")
    print_table(rows_d, ["method", "s_per_min", "x_realtime"])

    write_json(args.out, {
        "songs": [s.name for s in songs], "pjs_seconds": seconds_b, "vocadito_seconds": len(voc) / SR,
        "loadavg_before_timing": load_before, "loadavg_after_timing": load_after, "cpu_count": os.cpu_count(),
        "vocadito": rows_a, "pjs_vs_harvest": rows_b, "glide": rows_c, "speed": rows_d,
    })


if __name__ == "__main__":
    main()
