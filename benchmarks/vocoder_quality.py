"""Copy-synthesis quality of vocoders side by side on held-out recordings: how close does each get back to the
recording from the recording's own mel, and does it add artifacts a mel metric cannot see (a frame-rate buzz)?

For each recording (raw level, not peak-normalised; cut to its first ``--seconds``): mel = canora mel
(:func:`canora.dsp.mel.wav_to_mel`, the vocoders' shared MelSpec); the reference is the recording cut to the
mel's frames * hop samples. Systems:

* ``recording``: the reference itself: its own artifact metric values, the row every other row is read against
  (its comparison metrics, PESQ to GPE, are left empty);
* ``griffin-lim``: :func:`canora.dsp.spectral.griffin_lim` of the same mel (``--gl-iters``, 32 by default);
* every ``--vocoder NAME=PATH``: ``vocode(mel, f0)``; with ``--mel-match N`` also ``NAME+mmN``, the same output
  after N rounds of :func:`canora.dsp.melmatch.mel_match` (what a conversion hands out; its time is in ``rtf``).
  NSF vocoders get the recording's F0 by the tracker they
  were trained with: ``meta.f0_method`` of the export's model.json; "harvest" when the meta lacks it (exports
  made before canora recorded the tracker, e.g. the bundled 0.1 vocoder; new exports record "swift", the
  default); ``--f0-method`` overrides it for every NSF vocoder. Plain HiFi-GANs take no F0.

Metrics of each system against the reference:

* ``pesq_wb``: wideband PESQ at 16 kHz (``pesq`` package; NaN without it), 1 = bad, 4.64 = best;
* ``mr_stft``: :func:`canora.vocoder.losses.multi_resolution_stft_loss` (spectral convergence + log-magnitude L1,
  mean of three resolutions), 0 = identical;
* ``cycle_err``: :func:`canora.dsp.metrics.mel_cycle_error` (mel of the output against the mel it was given);
* the waveform artifact metrics of :mod:`canora.dsp.artifacts` on the recording's frames
  (:func:`~canora.dsp.artifacts.reference_masks`): ``periodicity`` (autocorrelation at lag = hop in audible
  unvoiced frames), ``line_db`` (max over k = 1..4 of the long-term spectrum's level at k * 86.13 Hz in voiced
  frames; ``lines_k1-4`` per k), ``hnr_db`` (median voiced HNR);
* ``harm_2-4k`` / ``harm_4-8k``: harmonic contrast of the audio in voiced frames
  (:func:`canora.analysis.evaluation.harmonics_by_band`: ln magnitude at the harmonics over the midpoints, at the
  recording's harvest F0 fitted to each signal's own harmonics): whether the harmonics stand above a noise band
  where a mel band is wider than their spacing;
* ``gpe_harvest`` / ``gpe_praat``: gross pitch error (> 50 cents) by WORLD harvest and by Praat, over frames both
  trackers hear as voiced in the recording (and the tracker hears voiced in the output), overall and by the
  recording's harvest F0: < 350 Hz, 350-600 Hz, > 600 Hz;
* ``subsonic_db`` (energy below 30 Hz relative to the whole, dB: :func:`canora.dsp.filters.subsonic_db`), ``dc``
  (the mean sample) and ``true_peak_dbtp`` (4x oversampled): a vocoder trained on studio takes with room rumble
  reproduces the rumble (PJS's own takes: -17 to -20 dB);
* ``rtf``: real-time factor of the synthesis call alone (wall seconds / audio seconds; F0 extraction excluded),
  with the 1-minute load average before each call in the JSON (the machine is shared).

Averaging over recordings: every metric is the mean of the per-recording values (NaNs skipped) except the
gross pitch errors, which pool the frames of all recordings (overall and per band; the frame counts are in the
second table). A PNG shows, for the first recording, each system's spectrogram over 2 s from ``--plot-start``:
0-1500 Hz (4096-point FFT; ticks at multiples of 86.13 Hz: stationary horizontal lines there are a frame-rate
buzz) and 0-8 kHz (harmonics or noise above 2 kHz).

With ``--refiner EXPORT`` (or ``bundled``) every system gets instead the refiner's reconstruction of the
recording (target -> target at the conversion defaults, for ``--singer``): the mel a conversion hands the vocoder,
with the F0 the refiner was conditioned on. The reference stays the recording, so the table then says how well
the whole refine-and-vocode path gives the singer back, e.g. for a vocoder fine-tuned on refined mels
(``canora train-vocoder --arch nsf --refiner``) beside the one it started from.

    .venv/bin/python benchmarks/vocoder_quality.py --vocoder lj_v2=../shared/data/hifigan/LJ_V2/generator_v2 \\
        --vocoder bundled_0.1=src/canora/pretrained/vocoder --vocoder nsf_new=/tmp/nsf_new_snapshot \\
        [--wavs ../shared/data/pjs/pjs08[7-9]_song.wav ../shared/data/pjs/pjs090_song.wav] [--seconds 30] \\
        [--f0-method swift] [--gl-iters 32] [--plot-start 3.0] [--threads 1] [--out bench_out/vocoder_quality.json] \
        [--refiner bundled [--singer pjs]]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import print_table, write_json
from finetune_eval import BANDS, wb_pesq

from canora.analysis.evaluation import HARMONIC_BANDS, harmonics_by_band
from canora.dsp import artifacts
from canora.dsp.filters import dc_offset, subsonic_db
from canora.dsp.level import true_peak_db
from canora.dsp.mel import MelSpec, wav_to_mel
from canora.dsp.melmatch import mel_match
from canora.dsp.metrics import mel_cycle_error
from canora.dsp.pitch import HarvestF0, extract_f0, repair_octave_jumps
from canora.dsp.spectral import griffin_lim
from canora.io.audio import load_audio
from canora.io.checkpoint import is_export, read_export_meta
from canora.vocoder.api import Vocoder
from canora.vocoder.losses import multi_resolution_stft_loss

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_WAVS = [DATA / "pjs" / f"pjs{i:03d}_song.wav" for i in range(87, 91)]
LEGACY_F0_METHOD = "harvest"  # what NSF exports without meta.f0_method (canora 0.1) were trained with
PER_RECORDING = ("pesq_wb", "mr_stft", "cycle_err", "periodicity", "line_db", "hnr_db", "harm_2-4k", "harm_4-8k",
                 "subsonic_db", "dc", "true_peak_dbtp", "rtf")


def nanmean(values: list[float]) -> float:
    a = np.asarray(values, np.float64)
    return float(a[np.isfinite(a)].mean()) if np.isfinite(a).any() else float("nan")


def training_f0_method(path: str, voc: Vocoder, override: str | None) -> str | None:
    """The F0 tracker to drive ``voc`` with: None for a plain HiFi-GAN, else the override, the export's
    ``meta.f0_method``, or :data:`LEGACY_F0_METHOD` when the export does not record one."""
    if not voc.needs_f0:
        return None
    if override:
        return override
    path = str(voc.source or path)  # a model name such as "bundled" resolves to its export directory
    meta = (read_export_meta(path).get("meta") or {}) if is_export(path) else {}
    return str(meta.get("f0_method") or LEGACY_F0_METHOD)


def synthesise(system: dict[str, Any], mel: np.ndarray, f0: np.ndarray | None, spec: MelSpec,
               gl_iters: int) -> tuple[np.ndarray, float, float]:
    """-> (audio (T * hop,) float32, wall seconds of the call, 1-minute load average just before it)."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    if system["kind"] == "griffin-lim":
        out = griffin_lim(mel, spec, n_iter=gl_iters)
    else:
        out = system["vocoder"].vocode(mel, f0)
        if system.get("mel_match"):
            out = mel_match(np.asarray(out, np.float32), mel, spec, system["mel_match"])
    return np.asarray(out, np.float32), time.perf_counter() - t0, load


def harmonics(x: np.ndarray, spec: MelSpec, masks: artifacts.Masks) -> dict[str, float]:
    """``harm_2-4k`` / ``harm_4-8k`` of ``x`` (N,) over the recording's voiced frames."""
    f0 = repair_octave_jumps(np.nan_to_num(masks.f0_harvest))
    values = harmonics_by_band(x, spec.sample_rate, spec.hop_length, f0, masks.voiced)
    return {f"harm_{int(lo / 1000)}-{int(hi / 1000)}k": v for (lo, hi), v in zip(HARMONIC_BANDS, values)}


def hygiene(x: np.ndarray, sr: int) -> dict[str, float]:
    """``subsonic_db`` (energy below 30 Hz relative to the whole), ``dc`` (the mean sample) and ``true_peak_dbtp``
    (4x oversampled) of ``x`` (N,): what a vocoder trained on rumbly takes reproduces, and its headroom."""
    return {"subsonic_db": subsonic_db(x, sr), "dc": dc_offset(x), "true_peak_dbtp": true_peak_db(x)}


def score(ref: np.ndarray, out: np.ndarray, mel: np.ndarray, spec: MelSpec,
          masks: artifacts.Masks) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """Per-recording metrics of ``out`` against ``ref`` (same length) and ``out``'s (harvest, Praat) F0."""
    sr, hop = spec.sample_rate, spec.hop_length
    n = len(masks.voiced)
    tracks = (artifacts.track_f0(out, sr, hop, n, "harvest"), artifacts.track_f0(out, sr, hop, n, "praat"))
    am = artifacts.artifact_metrics(out, sr, hop, masks, tracks=tracks)
    mr = multi_resolution_stft_loss(torch.from_numpy(ref)[None], torch.from_numpy(out)[None])
    return {
        "pesq_wb": wb_pesq(ref, out, sr), "mr_stft": float(mr), "cycle_err": mel_cycle_error(mel, out, spec),
        "periodicity": am.frame_rate_periodicity, "line_db": am.frame_rate_line_db,
        "lines_db": list(am.frame_rate_lines_db), "hnr_db": am.hnr_db,
        "gpe_harvest": am.gpe_harvest, "gpe_praat": am.gpe_praat, **harmonics(out, spec, masks), **hygiene(out, sr),
    }, tracks


def pooled_gpe(refs: list[artifacts.Masks], outs: list[tuple[np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
    """Gross pitch error by harvest and by Praat over the frames of all recordings, overall and per band of the
    recording's harvest F0 (frames voiced by both trackers in the recording)."""
    ref_h = np.concatenate([m.f0_harvest for m in refs])
    ref_p = np.concatenate([m.f0_praat for m in refs])
    voiced = np.concatenate([m.voiced for m in refs])
    out_h = np.concatenate([o[0] for o in outs])
    out_p = np.concatenate([o[1] for o in outs])
    rows = []
    for band, lo, hi in (("all", 0.0, float("inf")), *BANDS):
        mask = voiced & (ref_h > lo) & (ref_h <= hi)
        rows.append({
            "band": band, "ref_frames": int(mask.sum()),
            "gpe_harvest": artifacts.gross_pitch_error(ref_h, out_h, mask=mask),
            "frames_harvest": int((mask & (out_h > 0)).sum()),
            "gpe_praat": artifacts.gross_pitch_error(ref_p, out_p, mask=mask),
            "frames_praat": int((mask & (out_p > 0)).sum()),
        })
    return rows


def plot_spectrograms(path: Path, signals: dict[str, np.ndarray], sr: int, hop: int, start: float,
                      title: str) -> Path:
    """Two rows (0-1500 Hz with a 4096-point FFT, 0-8 kHz with 1024) x one column per signal, over 2 s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.signal import spectrogram

    dur = min(len(x) for x in signals.values()) / sr
    start = max(0.0, min(start, dur - 2.0))
    a, b = int(start * sr), int(min(dur, start + 2.0) * sr)
    frame_rate = sr / hop
    fig, axes = plt.subplots(2, len(signals), figsize=(3.6 * len(signals), 7.5), squeeze=False, sharey="row")
    for row, (fmax, n_fft, step) in enumerate(((1500.0, 4096, 64), (8000.0, 1024, 128))):
        specs = {}
        for name, x in signals.items():
            pad = n_fft // 2  # centre the analysis windows on the 2-s span, using the real audio around it
            seg = np.asarray(x[max(0, a - pad): b + pad], np.float64)
            f, t, s = spectrogram(seg, sr, window="hann", nperseg=n_fft, noverlap=n_fft - step, mode="magnitude")
            keep = f <= fmax
            specs[name] = (f[keep], t + (max(0, a - pad) / sr), 20 * np.log10(s[keep] + 1e-9))
        top = max(float(v[2].max()) for v in specs.values())
        for col, (name, (f, t, db)) in enumerate(specs.items()):
            ax = axes[row, col]
            ax.pcolormesh(t, f, db, vmin=top - 80, vmax=top, cmap="magma", shading="auto", rasterized=True)
            ax.set_xlim(start, start + 2.0)
            ax.set_title(f"{name} (0-{fmax / 1000:g} kHz)", fontsize=9)
            ax.set_xlabel("s", fontsize=8)
            ax.tick_params(labelsize=7)
            if row == 0:
                ticks = np.arange(1, int(fmax / frame_rate) + 1) * frame_rate
                ax.set_yticks(ticks[3::4])  # labelled: 345, 689, 1034, 1378 Hz
                ax.set_yticklabels([f"{v:.0f}" for v in ticks[3::4]])
                ax.set_yticks(ticks, minor=True)  # every multiple of sr / hop = 86.13 Hz
                ax.tick_params(axis="y", which="minor", length=4, color="cyan", right=True)
        axes[row, 0].set_ylabel("Hz (minor ticks: k x 86.13)" if row == 0 else "Hz", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocoder", action="append", default=[], metavar="NAME=PATH",
                    help="a vocoder to evaluate (official g_* file, run directory or export); repeat")
    ap.add_argument("--wavs", type=Path, nargs="+", default=DEFAULT_WAVS,
                    help="held-out recordings (default: PJS songs 087-090, which the bundled models never saw)")
    ap.add_argument("--seconds", type=float, default=None, help="cut each recording to its first N seconds")
    ap.add_argument("--f0-method", default=None,
                    help="F0 tracker for every NSF vocoder (default: each export's meta.f0_method, else harvest)")
    ap.add_argument("--gl-iters", type=int, default=32, help="Griffin-Lim iterations")
    ap.add_argument("--mel-match", type=int, default=0, metavar="N",
                    help="also score each vocoder with N rounds of canora.dsp.melmatch.mel_match after it, as NAME+mmN")
    ap.add_argument("--plot-start", type=float, default=3.0, help="start (s) of the 2-s spectrogram window")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--refiner", default=None, metavar="PATH|bundled",
                    help="vocode this refiner's reconstruction of each recording instead of its own mel")
    ap.add_argument("--singer", default=None, help="the recordings' singer in --refiner (default: its first)")
    ap.add_argument("--out", type=Path, default=Path("bench_out/vocoder_quality.json"))
    ap.add_argument("--png", type=Path, default=Path("bench_out/vocoder_quality_spectrograms.png"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.threads == 1:
        HarvestF0.PARALLEL_MIN_SECONDS = float("inf")  # harvest in one thread, not in chunks on every core
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)  # BLAS / OpenMP pools (Griffin-Lim's nnls, numpy)
    except ImportError:
        pass
    load_start = os.getloadavg()
    t_start = time.perf_counter()

    systems: dict[str, dict[str, Any]] = {"recording": {"kind": "reference", "source": "the recording"},
                                          "griffin-lim": {"kind": "griffin-lim", "source": f"{args.gl_iters} iters"}}
    for item in args.vocoder:
        name, _, path = item.partition("=")
        if not path or name in systems:
            raise SystemExit(f"--vocoder {item!r}: expected NAME=PATH with a new NAME")
        voc = Vocoder.from_pretrained(path)
        systems[name] = {"kind": "vocoder", "vocoder": voc, "source": voc.source,
                         "f0_method": training_f0_method(path, voc, args.f0_method)}
        if args.mel_match:  # the same vocoder with its output put back on the mel (what a conversion hands out)
            systems[f"{name}+mm{args.mel_match}"] = {**systems[name], "mel_match": args.mel_match,
                                                     "source": f"{voc.source} + mel_match({args.mel_match})"}
    specs = {s["vocoder"].spec for s in systems.values() if s["kind"] == "vocoder"}
    if len(specs) > 1:
        raise SystemExit("the vocoders use different MelSpecs; compare vocoders of one MelSpec")
    spec = specs.pop() if specs else MelSpec()
    sr, hop = spec.sample_rate, spec.hop_length
    refiner = None
    if args.refiner:
        from canora.refiner.api import Refiner

        refiner = Refiner.from_pretrained(args.refiner)
        spec.require_same(refiner.spec, "--refiner vs the vocoders", "compare vocoders of the refiner's MelSpec")
    for s in systems.values():  # warm up each vocoder (first-call allocations) outside the timed calls
        if s["kind"] == "vocoder":
            s["vocoder"].vocode(np.full((spec.n_mels, 86), spec.log_floor, np.float32),
                                np.full(86, 220.0, np.float32) if s["vocoder"].needs_f0 else None)

    per_rec: dict[str, list[dict[str, Any]]] = {n: [] for n in systems}
    tracks: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {n: [] for n in systems if n != "recording"}
    ref_masks: list[artifacts.Masks] = []
    loads: dict[str, list[float]] = {n: [] for n in systems if n != "recording"}
    audio_seconds = []
    plot_signals: dict[str, np.ndarray] = {}
    for i, path in enumerate(args.wavs):
        t_rec = time.perf_counter()
        wav = load_audio(path, sr)
        if args.seconds:
            wav = wav[: int(args.seconds * sr)]
        mel = wav_to_mel(wav, spec)
        frames = mel.shape[1]
        ref = np.ascontiguousarray(wav[: frames * hop], np.float32)
        audio_seconds.append(len(ref) / sr)
        masks = artifacts.reference_masks(ref, sr, hop)
        ref_masks.append(masks)
        am = artifacts.artifact_metrics(ref, sr, hop, masks, is_reference=True)
        per_rec["recording"].append({
            "wav": str(path), "pesq_wb": float("nan"), "mr_stft": float("nan"), "cycle_err": float("nan"),
            "periodicity": am.frame_rate_periodicity, "line_db": am.frame_rate_line_db,
            "lines_db": list(am.frame_rate_lines_db), "hnr_db": am.hnr_db, "gpe_harvest": float("nan"),
            "gpe_praat": float("nan"), "rtf": float("nan"), "seconds": len(ref) / sr, **harmonics(ref, spec, masks),
            **hygiene(ref, sr),
            "voiced_frames": int(masks.voiced.sum()), "unvoiced_audible_frames": int(masks.audible_unvoiced.sum()),
        })
        if i == 0:
            plot_signals["recording"] = ref
        f0_cache: dict[str, np.ndarray] = {}
        if refiner is not None:  # what a conversion hands the vocoder: the refined mel and its driving F0
            from canora.refiner.base import DEFAULT_STEPS, DEFAULT_STRENGTH

            res = refiner.refine_audio(ref, sr, args.singer, strength=DEFAULT_STRENGTH, steps=DEFAULT_STEPS,
                                       seed=0, name=path.name)
            mel = res.mel
            f0_cache = {m: res.f0 for m in {s.get("f0_method") for s in systems.values()} if m}
        for name, s in systems.items():
            if s["kind"] == "reference":
                continue
            method = s.get("f0_method")
            if method and method not in f0_cache:
                f0_cache[method] = extract_f0(ref, sr, hop, frames, method=method)
            out, secs, load = synthesise(s, mel, f0_cache.get(method) if method else None, spec, args.gl_iters)
            out = np.ascontiguousarray(np.pad(out, (0, max(0, len(ref) - len(out))))[: len(ref)], np.float32)
            row, trk = score(ref, out, mel, spec, masks)
            per_rec[name].append({"wav": str(path), **row, "rtf": secs / (len(ref) / sr), "loadavg_1min": load})
            tracks[name].append(trk)
            loads[name].append(load)
            if i == 0:
                plot_signals[name] = out
        print(f"{path.name}: {len(ref) / sr:.1f} s done in {time.perf_counter() - t_rec:.0f} s", file=sys.stderr)

    rows, band_rows = [], []
    for name, recs in per_rec.items():
        row: dict[str, Any] = {"system": name, "f0": systems[name].get("f0_method") or "-"}
        row.update({k: nanmean([r[k] for r in recs]) for k in PER_RECORDING})
        lines = [nanmean([r["lines_db"][k] for r in recs]) for k in range(len(recs[0]["lines_db"]))]
        row["lines_k1-4"] = "/".join(f"{v:+.1f}" for v in lines)
        if name == "recording":
            row["gpe_harvest"] = row["gpe_praat"] = float("nan")
            bands = pooled_gpe(ref_masks, [(m.f0_harvest, m.f0_praat) for m in ref_masks])
            for b in bands:  # the recording against itself: only the frame counts mean anything
                b["gpe_harvest"] = b["gpe_praat"] = float("nan")
        else:
            bands = pooled_gpe(ref_masks, tracks[name])
            row["gpe_harvest"], row["gpe_praat"] = bands[0]["gpe_harvest"], bands[0]["gpe_praat"]
            row["loadavg_1min_mean"] = nanmean(loads[name])
        row["lines_db"] = lines
        rows.append(row)
        band_rows += [{"system": name, **b} for b in bands]
    print_table(rows, ["system", "f0", "pesq_wb", "mr_stft", "cycle_err", "periodicity", "line_db", "lines_k1-4",
                       "hnr_db", "harm_2-4k", "harm_4-8k", "gpe_harvest", "gpe_praat", "subsonic_db", "dc",
                       "true_peak_dbtp", "rtf"])
    print()
    print_table([r for r in band_rows if r["system"] != "recording"],
                ["system", "band", "ref_frames", "gpe_harvest", "frames_harvest", "gpe_praat", "frames_praat"])

    first = args.wavs[0]
    png = plot_spectrograms(args.png, plot_signals, sr, hop, args.plot_start,
                            f"{'refined-mel' if refiner else 'copy'} synthesis of {first.name}: spectrograms of "
                            "the recording and each system")
    print(f"wrote {png}")
    load_end = os.getloadavg()
    write_json(args.out, {
        "benchmark": "vocoder_quality", "command": " ".join(sys.argv), "wavs": [str(p) for p in args.wavs],
        "seconds": args.seconds, "audio_seconds": audio_seconds, "gl_iters": args.gl_iters,
        "mel": ("the recording's own" if refiner is None else
                f"the reconstruction by refiner {refiner.source or args.refiner} (conversion defaults)"),
        "systems": {n: {"kind": s["kind"], "source": s["source"], "f0_method": s.get("f0_method")}
                    for n, s in systems.items()},
        "mel_spec": spec.to_dict(),
        "averaging": "mean of per-recording values (NaN skipped), except gross pitch errors: frames pooled over "
                     "recordings; bands by the recording's harvest F0 over frames voiced by harvest and Praat",
        "loadavg": {"start": list(load_start), "end": list(load_end),
                    "note": "1/5/15-minute os.getloadavg(); per system: loadavg_1min_mean before its timed calls"},
        "wall_seconds": time.perf_counter() - t_start,
        "rows": rows, "gpe_by_band": band_rows, "per_recording": per_rec, "spectrogram_png": str(png),
    })


if __name__ == "__main__":
    main()
