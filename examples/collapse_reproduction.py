"""Reproduce the finding: mels in another convention (librosa power dB) make a pretrained HiFi-GAN collapse.

1. real singing (PJS, vocadito) -> natural-log mels (the vocoder's convention)       -> OUT/mels_original
2. the same audio -> librosa ``power_to_db`` of the power mel (a common mistake)     -> OUT/mels_db
3. ``canora report`` original vs dB mels with the official LJ_V2 generator            -> OUT/report_db
4. ``canora doctor --fix`` the dB mels (with the audio, so the dB reference is measured) -> OUT/mels_fixed
5. ``canora report`` original vs fixed mels                                           -> OUT/report_fixed

Usage: python examples/collapse_reproduction.py [OUT_DIR]   (default /tmp/canora_collapse)
Needs ../shared/data. Takes about a minute on 2 CPU cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from canora.analysis.conventions import synthesize
from canora.dsp.mel import MelSpec, wav_to_mel
from canora.io.audio import load_audio, save_wav
from canora.io.melfiles import save_mel

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLIPS = [("pjs/pjs002_song.wav", 1.0), ("pjs/pjs005_song.wav", 2.0), ("pjs/pjs011_song.wav", 2.0),
         ("vocadito/vocadito_1.wav", 1.0), ("vocadito/vocadito_10.wav", 2.0), ("vocadito/vocadito_14.wav", 1.0)]
SECONDS = 4.0
VOCODER = DATA / "hifigan" / "LJ_V2" / "generator_v2"


def canora(*args: str) -> None:
    cmd = [sys.executable, "-m", "canora", *args]
    print("$ canora", " ".join(args), flush=True)
    subprocess.run(cmd, check=False)


def main(out: Path) -> None:
    spec = MelSpec()  # the LJ_V2 config's mel: 22050 Hz, ln, clamp 1e-5, fmax 8000
    for sub in ("audio", "mels_original", "mels_db"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for rel, start in CLIPS:
        wav = load_audio(DATA / rel, spec.sample_rate)
        wav = wav[int(start * spec.sample_rate): int((start + SECONDS) * spec.sample_rate)]
        stem = Path(rel).stem
        save_wav(out / "audio" / f"{stem}.wav", wav, spec.sample_rate, subtype="FLOAT")
        save_mel(out / "mels_original" / f"{stem}.npy", wav_to_mel(wav, spec))
        # the mistake: librosa.power_to_db (ref=1.0, top_db=80) of the power mel, saved as if it were ln
        save_mel(out / "mels_db" / f"{stem}.npy", synthesize(wav, spec, "db_ref1"))
    canora("report", "--original", str(out / "mels_original"), "--refined", str(out / "mels_db"),
           "--vocoder", str(VOCODER), "-o", str(out / "report_db"), "--threads", "2")
    canora("doctor", str(out / "mels_db"), "--vocoder", str(VOCODER), "--audio", str(out / "audio"),
           "--fix", "--allow-approximate", "-o", str(out / "mels_fixed"))
    canora("report", "--original", str(out / "mels_original"), "--refined", str(out / "mels_fixed"),
           "--vocoder", str(VOCODER), "-o", str(out / "report_fixed"), "--threads", "2")
    rows = []
    for tag in ("db", "fixed"):
        m = json.loads((out / f"report_{tag}" / "metrics.json").read_text())
        for f in m["files"]:
            rows.append((tag, f["name"], f["refined"]["cycle_error"], f["original"]["cycle_error"],
                         f["refined"]["flatness"], f["refined"]["rms_dbfs"], f["refined"]["clipping_ratio"],
                         f["refined"]["level_change"], f["refined"]["verdict"]))
    print("\n| mels | file | cycle err | cycle err (original ln) | flatness | RMS dBFS | clipped | level | verdict |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.3f} | {r[5]:.1f} | {r[6]:.4f} | {r[7]:+.2f} "
              f"| {r[8]} |")
    fixed = {p.stem: np.load(p) for p in (out / "mels_fixed").glob("*.npy")}
    errs = []
    for stem, m in fixed.items():
        o = np.load(out / "mels_original" / f"{stem}.npy")
        loud = o.max(axis=0) > spec.log_floor + 4
        errs.append(float(np.abs(m - o)[:, loud].mean()))
    print(f"\nfixed vs original ln mel, mean |diff| over loud frames: {np.mean(errs):.3f} "
          f"(per file {', '.join(f'{e:.3f}' for e in errs)})")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/canora_collapse"))
