"""Vocoders side by side (before/after fine-tuning, LJ_V2 vs the bundled NSF vocoder) on held-out recordings:
mel cycle error and F0 error split by pitch. F0-driven (NSF) vocoders are given the recording's F0.

For each recording (raw level, not peak-normalised): mel = canora mel; for each vocoder: audio = vocode(mel),
mel' = mel(audio). Per frame:

* mel cycle error = mean over bins |mel' - mel|, averaged over frames louder than the floor
  (:func:`canora.dsp.metrics.loud_frames`);
* F0 error in cents = 1200 log2(F0(audio) / F0(original)) over frames voiced in both (``--f0-method``,
  harvest by default), reported as RMSE, gross error rate (> 50 cents) and voiced/unvoiced disagreement.

Frames are grouped by the original's F0: < 350 Hz, 350-600 Hz, > 600 Hz (voiced frames), and "all".
With the ``pesq`` package installed, the "all" row also gets wideband PESQ (ITU-T P.862.2, at 16 kHz) of each
vocoded recording against the original, averaged over recordings (a perceptual proxy; 1 = bad, 4.6 = best).

    .venv/bin/python benchmarks/finetune_eval.py --vocoder before=../shared/data/hifigan/LJ_V2/generator_v2 \\
        --vocoder after=runs/vocoder_ft/run --wavs ../shared/data/pjs/pjs08[1-9]_song.wav \\
        ../shared/data/pjs/pjs090_song.wav [--f0-method harvest] [--out bench_out/finetune_eval.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from _common import print_table, write_json

from canora.dsp.mel import wav_to_mel
from canora.dsp.metrics import loud_frames
from canora.dsp.pitch import extract_f0
from canora.io.audio import load_audio
from canora.vocoder.api import Vocoder

BANDS = (("<350 Hz", 0.0, 350.0), ("350-600 Hz", 350.0, 600.0), (">600 Hz", 600.0, float("inf")))


def frame_stats(wav: np.ndarray, voc: Vocoder, f0_ref: np.ndarray, method: str) -> dict[str, np.ndarray]:
    """Per-frame arrays for one recording and one vocoder: cycle error, loud mask, F0 of the vocoded audio."""
    spec = voc.spec
    mel = wav_to_mel(wav, spec)
    out = voc.vocode(mel, f0_ref if voc.needs_f0 else None)  # NSF vocoders get the source F0, as in conversion
    got = wav_to_mel(out, spec)
    n = min(mel.shape[1], got.shape[1], len(f0_ref))
    f0_out = extract_f0(out, spec.sample_rate, spec.hop_length, n, method=method)
    return {"err": np.abs(mel[:, :n] - got[:, :n]).mean(axis=0), "loud": loud_frames(mel[:, :n], spec),
            "f0_ref": f0_ref[:n], "f0_out": f0_out, "pesq": np.array([wb_pesq(wav, out, spec.sample_rate)])}


def wb_pesq(ref: np.ndarray, deg: np.ndarray, sr: int) -> float:
    """Wideband PESQ of ``deg`` against ``ref`` at 16 kHz, or NaN when the ``pesq`` package is missing."""
    try:
        from pesq import PesqError, pesq
    except ImportError:
        return float("nan")
    from canora.io.audio import resample

    n = min(len(ref), len(deg))
    r, d = resample(ref[:n], sr, 16000), resample(deg[:n], sr, 16000)
    try:
        return float(pesq(16000, r.astype(np.float64), d.astype(np.float64), "wb"))
    except PesqError:  # e.g. no utterance detected
        return float("nan")


def summarise(frames: list[dict[str, np.ndarray]]) -> list[dict]:
    err = np.concatenate([f["err"] for f in frames])
    loud = np.concatenate([f["loud"] for f in frames])
    ref = np.concatenate([f["f0_ref"] for f in frames])
    out = np.concatenate([f["f0_out"] for f in frames])
    rows = []
    for name, lo, hi in (("all", -1.0, float("inf")), *BANDS):
        band = (ref > lo) & (ref <= hi) if lo >= 0 else np.ones_like(loud)
        m = band & loud
        both = band & (ref > 0) & (out > 0)
        cents = 1200 * np.log2(out[both] / ref[both]) if both.any() else np.zeros(0)
        rows.append({
            "band": name, "loud_frames": int(m.sum()),
            "pesq_wb": float(np.nanmean(np.concatenate([f["pesq"] for f in frames]))) if lo < 0 else float("nan"),
            "mel_cycle_error": float(err[m].mean()) if m.any() else float("nan"),
            "voiced_frames": int(both.sum()),
            "f0_rmse_cents": float(np.sqrt(np.mean(cents**2))) if cents.size else float("nan"),
            "f0_gross_error": float(np.mean(np.abs(cents) > 50)) if cents.size else float("nan"),
            "vuv_error": float(np.mean((ref[band] > 0) != (out[band] > 0))) if band.any() else float("nan"),
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocoder", action="append", required=True, metavar="NAME=PATH",
                    help="a vocoder to evaluate (official g_* file, run directory or export); repeat")
    ap.add_argument("--wavs", type=Path, nargs="+", required=True, help="held-out recordings")
    ap.add_argument("--f0-method", default="harvest")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench_out/finetune_eval.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vocoders = {}
    for item in args.vocoder:
        name, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"--vocoder {item!r}: expected NAME=PATH")
        vocoders[name] = Vocoder.from_pretrained(path)
    specs = {v.spec for v in vocoders.values()}
    if len(specs) != 1:
        raise SystemExit("the vocoders use different MelSpecs; compare vocoders of one MelSpec")
    spec = specs.pop()
    per_voc: dict[str, list[dict[str, np.ndarray]]] = {n: [] for n in vocoders}
    for path in args.wavs:
        wav = load_audio(path, spec.sample_rate)
        f0_ref = extract_f0(wav, spec.sample_rate, spec.hop_length, spec.num_frames(len(wav)), method=args.f0_method)
        for name, voc in vocoders.items():
            per_voc[name].append(frame_stats(wav, voc, f0_ref, args.f0_method))
        print(f"{path.name}: done", file=sys.stderr)
    rows = []
    for name, frames in per_voc.items():
        rows += [{"vocoder": name, **r} for r in summarise(frames)]
    print_table(rows, ["vocoder", "band", "pesq_wb", "loud_frames", "mel_cycle_error", "voiced_frames", "f0_rmse_cents",
                       "f0_gross_error", "vuv_error"])
    write_json(args.out, {"benchmark": "finetune_eval", "f0_method": args.f0_method,
                          "wavs": [str(p) for p in args.wavs], "vocoders": {n: v.source for n, v in vocoders.items()},
                          "mel_spec": spec.to_dict(), "rows": rows})


if __name__ == "__main__":
    main()
