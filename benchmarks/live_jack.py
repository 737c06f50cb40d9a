"""``canora live`` on a real audio stack: a JACK dummy server, PortAudio, a client that plays a song and records.

For each ``--block-ms``: a JACK server (dummy driver, 48 kHz, 256-frame periods) is started under a unique name,
a rig client (:class:`canora.jackrig.PlayRecord`) is made, and ``canora live --input rig --output rig`` is run as a
subprocess, as on a laptop (PortAudio, one thread). With ``--busy`` (the default) another process spins on the last
core all along. The rig plays a click track (short noise bursts every 0.5 s), then the song; the recording gives:

* the round trip, measured: ``rt_env_ms`` = the lag of the recorded song's amplitude envelope against that of the
  same song converted by the stream offline (:meth:`StreamConverter.convert`, aligned: what the chain should play),
  by cross-correlation; ``rt_xcorr_ms`` the same on the waveforms (weak when the live run lowered its steps: two
  renders of the refiner share their envelope more than their phase); ``rt_click_ms`` = the median onset lag of
  the clicks (the converter's envelope works in 11.6 ms frames, so this one is coarse). Beside them the round
  trip ``canora live`` stated at start-up;
* canora's side (``--stats-json``): blocks, late blocks (and after the first second), dry time, resyncs, the
  device's xruns, the load of sung blocks (median / p95 / max), the lowest refiner steps, the keys;
* the server's side: xruns counted by the rig's JACK xrun callback while the rig played (``xruns_server_rig``, and
  when: ``xrun_at_s``, seconds from the start of the clicks), beside canora's two counts (the callbacks PortAudio
  flagged, ``xruns_canora``, and the server's count canora read over its whole session, ``xruns_server_canora``);
* quality: the recorded song (cut at the measured lag) scored like an offline conversion
  (:func:`canora.analysis.evaluation.evaluate_conversion`: similarity to PJS's held-out songs, pitch error by harvest
  and Praat, artifact metrics), beside the offline conversion of the same song (``canora convert``'s defaults), the
  stream converted offline at the live settings (what live would play with no deadline) and the source itself;
  the live recording also from :data:`KEY_SETTLED_SECONDS` on (the running key's first second may be in another
  octave than the one the pitch error is measured in); peak of each.

The song (``--song``, default NIT-SONG070's two songs from ../shared/data, 72 s; another singer than PJS, the target) is
cut to ``--seconds``. The load average and what ran beside (the busy process, the busiest other processes) are
printed and stored.

    .venv/bin/python benchmarks/live_jack.py [--seconds 60] [--block-ms 104.5 58] [--headroom-ms auto]
        [--no-busy] [--song a.wav b.wav] [--out bench_out/live_jack.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import print_table, write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from canora.io.audio import load_audio  # noqa: E402
from canora.jackrig import JackServer, PlayRecord, round_trip_samples  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
RATE = 48000
SONGS = [SHARED / "nitsong070" / f"nitech_jp_song070_f001_{k}.wav" for k in ("004", "007")]
TARGET_REFS = [SHARED / "pjs" / f"pjs0{k}_song.wav" for k in (87, 88, 89, 90)]
CLICK_SECONDS = 4.0
#: the live recording is also scored from here on (s): the running key takes a second or more of singing to settle
KEY_SETTLED_SECONDS = 3.0


def click_track(rate: int) -> tuple[np.ndarray, list[int]]:
    """Noise bursts of 5 ms every 0.5 s over :data:`CLICK_SECONDS` -> (signal, onset samples)."""
    rng = np.random.default_rng(0)
    x = np.zeros(int(CLICK_SECONDS * rate), np.float32)
    onsets = list(range(rate // 4, len(x) - rate // 4, rate // 2))
    burst = int(0.005 * rate)
    for o in onsets:
        x[o: o + burst] = 0.5 * rng.standard_normal(burst)
    return x, onsets


def click_lag_ms(rec: np.ndarray, onsets: list[int], rate: int, max_ms: float = 600.0) -> float:
    """Median lag (ms) from each click to the first recorded sample above 30 % of the recording's peak after it."""
    env = np.abs(rec)
    lags = []
    for o in onsets:
        seg = env[o: o + int(max_ms * rate / 1000)]
        if len(seg) and seg.max() > 0:
            lags.append(int(np.argmax(seg > 0.3 * seg.max())))
    return 1000.0 * float(np.median(lags)) / rate if lags else float("nan")


def envelope(x: np.ndarray) -> np.ndarray:
    """The amplitude envelope (n,): |x| smoothed over 5 ms (a period of the lowest notes), less its mean: a lag
    robust to the waveform's details (two renders of the refiner share their envelope, not their phase)."""
    k = int(0.005 * RATE)
    e = np.convolve(np.abs(x), np.ones(k) / k, mode="same")
    return (e - e.mean()).astype(np.float32)


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def busiest(n: int = 4) -> list[str]:
    """The ``n`` busiest processes (pcpu, command), for the record of what ran beside."""
    out = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu"], capture_output=True, text=True).stdout
    return [" ".join(line.split()) for line in out.splitlines()[1: n + 1]]


def start_busy() -> subprocess.Popen:
    """A process spinning on the last core."""
    code = "import os\nos.sched_setaffinity(0, {max(os.sched_getaffinity(0))})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def stream_reference(song: np.ndarray, block_ms: float, transpose: float, steps: int) -> np.ndarray:
    """The song through :class:`StreamConverter` offline at the live settings, aligned -> (n,) at :data:`RATE`."""
    from canora.streaming import StreamConverter, StreamResampler

    sc = StreamConverter.from_pretrained(block_ms=block_ms, input_sample_rate=RATE, transpose=transpose,
                                         gain_db="auto", steps=steps)
    y = sc.convert(song)
    rs = StreamResampler(sc.sample_rate, RATE)
    return np.concatenate([rs.push(y), rs.flush()])[: len(song)]


def run_live(server: JackServer, rig: PlayRecord, song: np.ndarray, block_ms: float, headroom: str,
             extra: list[str]) -> dict:
    """One ``canora live`` session through the rig -> its row (without quality)."""
    clicks, onsets = click_track(RATE)
    gap = np.zeros(RATE, np.float32)
    signal_in = np.concatenate([clicks, gap, song]).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        stats_path = Path(tmp) / "stats.json"
        cmd = [sys.executable, "-m", "canora", "live", "--input", rig.name, "--output", rig.name, "--jack-name",
               "canora", "--block-ms", str(block_ms), "--headroom-ms", headroom, "--stats-json", str(stats_path),
               *extra]
        env = {**server.env, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
        log = open(Path(tmp) / "stderr.txt", "w+")  # noqa: SIM115 (read back below)
        proc = subprocess.Popen(cmd, env=env, stderr=log, stdout=subprocess.DEVNULL, text=True)
        if not rig.wait_connected(300):
            proc.kill()
            log.seek(0)
            raise SystemExit(f"canora live did not connect: {log.read()[-2000:]}")
        time.sleep(1.0)
        x0 = rig.xruns
        rig.play(signal_in)
        rig.wait_played(1.0, timeout=len(signal_in) / RATE + 120)
        rec = rig.recording()
        server_xruns = rig.xruns - x0
        xrun_at = [round(p / RATE, 2) for p in rig.xrun_positions[x0:]]
        proc.send_signal(signal.SIGTERM)  # a clean stop (SIGINT may be ignored in a background job)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            print("canora live did not stop within 60 s of SIGTERM: killed")
        log.seek(0)
        err = log.read()
        log.close()
        stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    start = next((ln for ln in err.splitlines() if ln.startswith("live: ") and "round trip" in ln), "")
    print(start)
    print(next((ln for ln in reversed(err.splitlines()) if ln.startswith("live: ") and " late (" in ln),
               err.strip().splitlines()[-1] if err.strip() else "(no output)"))
    song0 = len(clicks) + len(gap)
    return {"rec": rec, "song0": song0, "clicks": clicks, "onsets": onsets, "stats": stats,
            "server_xruns": server_xruns, "xrun_at": xrun_at, "startup": start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds of the song to sing")
    ap.add_argument("--block-ms", type=float, nargs="+", default=[104.5])
    ap.add_argument("--headroom-ms", default="auto")
    ap.add_argument("--no-busy", action="store_true", help="no process spinning on the other core")
    ap.add_argument("--song", type=Path, nargs="+", default=SONGS)
    ap.add_argument("--no-quality", action="store_true", help="skip the offline conversions and the scores")
    ap.add_argument("--live-args", nargs=argparse.REMAINDER, default=[], help="more canora live options")
    ap.add_argument("--out", type=Path, default=ROOT / "bench_out" / "live_jack.json")
    args = ap.parse_args()
    song = np.concatenate([load_audio(p, RATE) for p in args.song])[: int(args.seconds * RATE)].astype(np.float32)
    song_name = " + ".join(p.name for p in args.song) + f" [first {len(song) / RATE:.1f} s]"
    print(f"song: {song_name}; load average before: {load_average()}")
    busy = None if args.no_busy else start_busy()
    rows, records = [], []
    try:
        time.sleep(1.0)
        beside = busiest()
        for block_ms in args.block_ms:
            with JackServer(rate=RATE, period=256) as server, PlayRecord(server.name, "rig",
                                                                        record_seconds=len(song) / RATE + 30) as rig:
                load0 = load_average()
                r = run_live(server, rig, song, block_ms, args.headroom_ms, args.live_args)
                rig.client.deactivate()
            s = r["stats"]
            rec, song0 = r["rec"], r["song0"]
            click_ms = click_lag_ms(rec[: song0], r["onsets"], RATE)
            key = (s.get("key") or [0.0])[-1]
            row = {"block_ms": round(s.get("block_ms", block_ms), 1),
                   "stated_rt_ms": round(s.get("round_trip_ms", 0), 1), "rt_click_ms": round(click_ms, 1),
                   "headroom_ms": round(s.get("headroom_ms", 0), 1),
                   "blocks": s.get("blocks"), "late": s.get("late"), "late_after_1s": s.get("late_after_1s"),
                   "dry_s": round(s.get("dry_ms", 0) / 1000, 2), "resyncs": s.get("resyncs"),
                   "xruns_canora": s.get("xruns"), "xruns_server_canora": s.get("server_xruns"),
                   "xruns_server_rig": r["server_xruns"], "xrun_at_s": r["xrun_at"],
                   "load_med": s.get("load_median"), "load_p95": s.get("load_p95"), "load_max": s.get("load_max"),
                   "steps_lowest": s.get("steps_lowest"), "keys": s.get("key"), "peak": float(np.abs(rec).max()),
                   "load_avg": load0, "startup": r["startup"]}
            ref = stream_reference(song, block_ms, key, int(s.get("steps") or 2))
            live = rec[song0:]
            lag, corr = round_trip_samples(ref, live, int(0.6 * RATE))
            env_lag, env_corr = round_trip_samples(envelope(ref), envelope(live), int(0.6 * RATE))
            row.update(rt_xcorr_ms=round(1000 * lag / RATE, 1), xcorr=round(corr, 3),
                       rt_env_ms=round(1000 * env_lag / RATE, 1), env_corr=round(env_corr, 3))
            if not args.no_quality:
                records.append((row, live[env_lag: env_lag + len(song)], key, ref))
            rows.append(row)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    quality = []
    if records:
        quality = score(song, records)
    cols = ["block_ms", "stated_rt_ms", "rt_env_ms", "rt_xcorr_ms", "rt_click_ms", "headroom_ms", "blocks", "late",
            "late_after_1s", "dry_s", "resyncs", "xruns_canora", "xruns_server_canora", "xruns_server_rig",
            "load_med", "load_p95", "load_max", "steps_lowest",
            "peak"]
    print_table(rows, [c for c in cols if any(c in r for r in rows)])
    if quality:
        print_table(quality, list(quality[0].keys()))
    print(f"load average after: {load_average()}; beside: {beside}{'' if busy is None else ' (+ the busy process)'}")
    write_json(args.out, {"song": song_name, "busy": busy is not None, "beside": beside, "rows": rows,
                          "quality": quality, "load_average_after": load_average()})


def score(song: np.ndarray, records: list[tuple[dict, np.ndarray, float, np.ndarray]]) -> list[dict]:
    """Source, offline conversion, and for each block size the stream converted offline at the live settings and
    the live recording, scored alike at 22050 Hz; the live recording also from the moment its key settled."""
    from canora.analysis.evaluation import SpeakerEmbedder, evaluate_conversion, singer_centroids
    from canora.io.audio import resample
    from canora.pipeline import Converter

    sr = 22050
    src = resample(song, RATE, sr)
    emb = SpeakerEmbedder()
    refs = [load_audio(p, sr) for p in TARGET_REFS if p.exists()]
    full, voiced = singer_centroids(emb, refs, sr) if refs else (None, None)
    conv = Converter.from_pretrained()
    offline = conv.convert(src, sr)
    off_wav, off_t = offline.audio, float(offline.transpose)

    def one(name: str, y: np.ndarray, transpose: float, source: np.ndarray = src) -> dict:
        m = evaluate_conversion(y, source, sr, transpose=transpose, embedder=emb if refs else None,
                                target_centroid=full, target_centroid_voiced=voiced)
        keep = {"similarity_converted": "sim", "similarity_voiced_converted": "sim_voiced",
                "gpe_harvest": "gpe_harvest", "gpe_praat": "gpe_praat", "periodicity_converted": "periodicity",
                "frame_rate_line_db_converted": "lines_db", "hnr_db_converted": "hnr_db",
                "held_tone_db_converted": "tone_db"}
        return {"what": name, "transpose": transpose, **{v: round(float(m[k]), 4) for k, v in keep.items() if k in m},
                "peak": round(float(np.abs(y).max()), 3)}

    out = [one("source", src, 0.0), one("offline convert", off_wav, off_t)]
    for row, live, key, ref in records:
        out.append(one(f"stream {row['block_ms']} ms, offline", resample(ref, RATE, sr), key))
        out.append(one(f"live {row['block_ms']} ms", resample(live, RATE, sr), key))
        settled = int(KEY_SETTLED_SECONDS * sr)  # the first frames may be in another key than the last
        out.append(one(f"live {row['block_ms']} ms, from {KEY_SETTLED_SECONDS:g} s", resample(live, RATE, sr)[settled:],
                       key, src[settled:]))
    return out


if __name__ == "__main__":
    main()
