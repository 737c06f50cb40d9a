"""Every registered F0 extractor compared on singing: accuracy, octave robustness, voicing and speed.

    .venv/bin/python benchmarks/f0_trackers.py [--methods swift harvest ...] [--songs 81 90] [--sections abcde] \\
        [--out bench_out/f0_trackers.json]

a. vocadito clip 1 (33 s, one singer) against its F0 annotation, interpolated onto the mel frame grid
   (22050 Hz, hop 256): RPA (raw pitch accuracy: reference-voiced frames whose estimate is voiced and within
   50 cents), RCA (raw chroma accuracy: the same with octave errors forgiven), voicing recall (reference-voiced
   frames found voiced), voicing false alarms (reference-unvoiced frames called voiced) and the median |error|
   in cents over frames voiced in both.
b. PJS songs 081-090 (one singer, median voiced F0 190 Hz) against harvest with octave repair (what ``extract_f0`` gives
   by default): agreement (frames voiced in both within 50 cents), octave errors (frames voiced in both off
   by 12 +- 1 semitones) and voicing agreement (frames where both say the same), pooled over all frames.
c. A synthetic harmonic glide from 50 to 1100 Hz (the singing range canora promises) with vibrato: RPA
   against the known F0, overall and below 100 Hz / above 700 Hz.
d. Other singers without annotation (Dagstuhl basses and soprano, vocadito clips 10 and 14, sms-tools phrases):
   each tracker against the per-frame median of all trackers, over frames every tracker calls voiced, pooled.
e. Speed: seconds per minute of audio on 60 s of PJS audio, warm (one short run first), min of two runs.
   None of the extractors uses torch; harvest runs chunks on ``workers`` threads (default: the CPU count)
   and swift on ``threads`` onnxruntime threads (default 1), so both are also timed on the other setting.
   The load average is printed (its 1-minute value includes this benchmark's own earlier sections): another
   process on the second core slows the multi-threaded rows.

Each tracker runs once per clip; the "repair" rows apply :func:`canora.dsp.pitch.repair_octave_jumps` to the same
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

from canora.dsp import pitch  # noqa: E402
from canora.io.audio import load_audio  # noqa: E402

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


OTHER_SINGERS = (
    "dagstuhl/DCS_SE_FullChoir_ScaleUpDown02_B1_LRX.wav",
    "dagstuhl/DCS_SE_FullChoir_ScaleUpDown02_B2_DYN.wav",
    "dagstuhl/DCS_SE_FullChoir_ScaleUpDownPiano04_B2_LRX.wav",
    "dagstuhl/DCS_SE_FullChoir_ScaleUpDown02_S1_DYN.wav",
    "vocadito/vocadito_10.wav",
    "vocadito/vocadito_14.wav",
    "smstools/vignesh.wav",
    "smstools/singing-female.wav",
    "smstools/soprano-E4.wav",
)


def section_a(methods: list[str]) -> list[dict[str, Any]]:
    """vocadito clip 1 against its annotation (time s, f0 Hz with 0 = unvoiced, every 256/44100 s)."""
    voc = load_audio(DATA / "vocadito" / "vocadito_1.wav", SR)
    ann = np.loadtxt(DATA / "vocadito" / "vocadito_1_f0.csv", delimiter=",")
    ref = pitch.resample_track(ann[:, 0], ann[:, 1], pitch.frame_times(len(voc) // HOP, SR, HOP))
    rows = []
    for m in methods:
        for v, f0 in variants(track(m, voc)).items():
            rows.append({"method": m, "octaves": v, **against_annotation(f0, ref)})
    print(f"\na. vocadito clip 1 ({len(voc) / SR:.1f} s) against its F0 annotation")
    print_table(rows, ["method", "octaves", "rpa", "rca", "v_recall", "v_false_alarm", "median_cents"])
    return rows


def section_b(methods: list[str], songs: list[Path], wavs: list[np.ndarray]) -> list[dict[str, Any]]:
    """PJS songs against harvest + octave repair, pooled over all frames."""
    ref = np.concatenate([pitch.repair_octave_jumps(track("harvest", w)) for w in wavs])
    rows = []
    for m in methods:
        tracks = [track(m, w) for w in wavs]
        for v in ("raw", "repair"):
            f0 = np.concatenate([variants(t)[v] for t in tracks])
            rows.append({"method": m, "octaves": v, **against_tracker(f0, ref)})
    seconds = sum(len(w) for w in wavs) / SR
    print(f"\nb. PJS {songs[0].stem}..{songs[-1].stem} ({seconds:.0f} s) against harvest + octave repair")
    print(f"   harvest+repair calls {np.mean(ref > 0):.3f} of the frames voiced, median voiced F0 "
          f"{np.median(ref[ref > 0]):.0f} Hz")
    print_table(rows, ["method", "octaves", "agree_50c", "octave_err", "voicing_agree", "est_voiced"])
    return rows


def section_c(methods: list[str]) -> list[dict[str, Any]]:
    """Synthetic 50 -> 1100 Hz glide against its known F0."""
    wav, true = glide()
    low, high = true < 100, true > 700
    rows = []
    for m in methods:
        for v, f0 in variants(track(m, wav)).items():
            ok = (f0 > 0) & (np.abs(cents(np.where(f0 > 0, f0, 1.0), true)) < 50)
            rows.append({"method": m, "octaves": v, "rpa": float(ok.mean()), "rpa_below_100Hz": float(ok[low].mean()),
                         "rpa_above_700Hz": float(ok[high].mean()), "v_recall": float(np.mean(f0 > 0))})
    print("\nc. synthetic harmonic glide 50 -> 1100 Hz (12 s, vibrato +-30 cents)")
    print_table(rows, ["method", "octaves", "rpa", "rpa_below_100Hz", "rpa_above_700Hz", "v_recall"])
    return rows


def section_d(methods: list[str]) -> list[dict[str, Any]]:
    """Other singers: each tracker against the per-frame median of all trackers (frames all call voiced)."""
    files = [DATA / f for f in OTHER_SINGERS if (DATA / f).exists()]
    per: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for f in files:
        tracks = {m: track(m, load_audio(f, SR)) for m in methods}
        stack = np.stack(list(tracks.values()))
        voiced = (stack > 0).all(axis=0)
        consensus = np.exp(np.median(np.log(np.where(stack > 0, stack, 1.0)), axis=0))[voiced]
        for m, t in tracks.items():
            per[m].append(cents(t[voiced], consensus))
    rows = []
    for m in methods:
        c = np.concatenate(per[m])
        rows.append({"method": m, "agree_50c": float(np.mean(np.abs(c) < 50)),
                     "octave_err": float(np.mean(np.abs(np.abs(c) - 1200) <= 100)),
                     "gross_err_300c": float(np.mean(np.abs(c) >= 300))})
    n = sum(len(c) for c in per[methods[0]])
    print(f"\nd. {len(files)} other clips (basses to soprano), {n} frames voiced for all: against the trackers' median")
    print_table(rows, ["method", "agree_50c", "octave_err", "gross_err_300c"])
    return rows


def section_e(methods: list[str], wavs: list[np.ndarray], seconds: float) -> dict[str, Any]:
    """Seconds per minute of audio on ``seconds`` of PJS audio: warm, min of two runs."""
    cat = np.concatenate(wavs)
    n_t = int(seconds * SR)
    wav = np.tile(cat, n_t // len(cat) + 1)[:n_t]
    timed: list[tuple[str, dict[str, Any]]] = [(m, {}) for m in methods]
    if "harvest" in methods and (os.cpu_count() or 1) > 1:
        timed.append(("harvest", {"workers": 1}))
    if "swift" in methods:
        timed.append(("swift", {"threads": 2}))
    load_before = os.getloadavg()
    rows = []
    for m, opts in timed:
        track(m, wav[: 3 * SR], **opts)  # warm: imports, model sessions
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            track(m, wav, **opts)
            times.append(time.perf_counter() - t0)
        label = m + "".join(f" ({k}={v})" for k, v in opts.items())
        rows.append({"method": label, "s_per_min": min(times) * 60.0 / seconds, "x_realtime": seconds / min(times)})
    f0 = track("dio", wav) if "dio" in methods else np.full(n_t // HOP, 200.0, np.float32)
    t0 = time.perf_counter()
    pitch.repair_octave_jumps(f0)
    rows.append({"method": "repair_octave_jumps only", "s_per_min": (time.perf_counter() - t0) * 60.0 / seconds})
    load_after = os.getloadavg()
    print(f"\ne. speed on {seconds:g} s of PJS audio (min of 2 warm runs), {os.cpu_count()} CPUs; load average "
          f"(1, 5, 15 min) before {fmt_load(load_before)}, after {fmt_load(load_after)}")
    print_table(rows, ["method", "s_per_min", "x_realtime"])
    return {"rows": rows, "loadavg_before": load_before, "loadavg_after": load_after}


def fmt_load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=None, help="default: every registered extractor")
    ap.add_argument("--songs", type=int, nargs=2, default=[81, 90], metavar=("FIRST", "LAST"),
                    help="PJS songs for b and e (inclusive)")
    ap.add_argument("--sections", default="abcde", help="which of the sections a-e to run")
    ap.add_argument("--timing-seconds", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=Path("bench_out/f0_trackers.json"))
    args = ap.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} not found: this benchmark needs ../shared/data")
    methods = args.methods or pitch.available_f0_extractors()
    load_start = os.getloadavg()
    print(f"extractors: {', '.join(methods)}; load average (1, 5, 15 min) at start {fmt_load(load_start)}")
    songs = [DATA / "pjs" / f"pjs{i:03d}_song.wav" for i in range(args.songs[0], args.songs[1] + 1)]
    songs = [s for s in songs if s.exists()]
    if not songs and ("b" in args.sections or "e" in args.sections):
        raise SystemExit(f"no PJS songs {args.songs} under {DATA / 'pjs'}")
    wavs = [load_audio(s, SR) for s in songs]
    out: dict[str, Any] = {"songs": [s.name for s in songs], "pjs_seconds": sum(len(w) for w in wavs) / SR,
                           "cpu_count": os.cpu_count(), "loadavg_start": load_start}
    if "a" in args.sections:
        out["vocadito"] = section_a(methods)
    if "b" in args.sections:
        out["pjs_vs_harvest"] = section_b(methods, songs, wavs)
    if "c" in args.sections:
        out["glide"] = section_c(methods)
    if "d" in args.sections:
        out["other_singers"] = section_d(methods)
    if "e" in args.sections:
        out["speed"] = section_e(methods, wavs, args.timing_seconds)
    write_json(args.out, out)


if __name__ == "__main__":
    main()
