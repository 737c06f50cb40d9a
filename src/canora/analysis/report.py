"""``canora report``: compare original and refined mels, check the vocoded audio, write HTML + metrics.json.

:func:`build_report` pairs ``<stem>.npy`` mels of two folders (and ``<stem>.wav`` of a generated folder, or
vocodes the mels itself with a given vocoder), measures distribution shift per band and collapse per
file, and writes ``report.html`` (self-contained: figures are embedded base64 PNGs) and ``metrics.json``
(validated against ``metrics.schema.json`` beside this module).
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from canora.analysis import plots, stats
from canora.analysis.collapse import MAX_CYCLE_ERROR, CollapseReport, check_output
from canora.analysis.doctor import diagnose
from canora.dsp.mel import MelSpec, wav_to_mel
from canora.errors import CanoraError, MelError
from canora.io.files import atomic_write_text

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("metrics.schema.json")


@dataclass
class _File:
    name: str
    original: np.ndarray
    refined: np.ndarray
    orig_conv: list[str]
    ref_conv: list[str]
    generated: np.ndarray | None = None
    gen_report: CollapseReport | None = None
    orig_report: CollapseReport | None = None
    orig_audio: np.ndarray | None = None  # the original mel vocoded (with a vocoder)


def _load_mel(path: Path, spec: MelSpec) -> tuple[np.ndarray, list[str]]:
    """Raw (n_mels, T) float32 mel (any value convention) and the conventions the doctor sees in it."""
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise MelError(f"{path}: not a readable .npy array ({e})") from None
    diag = diagnose(x, spec, name=str(path))
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if "transposed" in diag.keys:
        x = x.T
    return np.ascontiguousarray(x, dtype=np.float32), diag.keys


def _pairs(original: Path, refined: Path) -> list[str]:
    for d in (original, refined):
        if not d.is_dir():
            raise CanoraError(f"{d}: not a directory of .npy mels")
    a = {p.stem for p in original.glob("*.npy") if not p.name.endswith(".f0.npy")}  # F0 tracks are no mels
    b = {p.stem for p in refined.glob("*.npy") if not p.name.endswith(".f0.npy")}
    common = sorted(a & b)
    if not common:
        raise CanoraError(f"{refined}: no <stem>.npy shares a name with a mel in {original}; pair them by file name")
    if a ^ b:
        log.warning("%d mel(s) have no partner and are left out: %s", len(a ^ b), ", ".join(sorted(a ^ b)[:5]))
    return common


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def build_report(
    original: Path, refined: Path, out_dir: Path, *, spec: MelSpec, generated: Path | None = None,
    vocoder: Any = None, worst_best: int = 2,
) -> dict[str, Any]:
    """Analyse the paired mels, write ``out_dir``/report.html and metrics.json; return the metrics dict.

    ``vocoder`` is a :class:`canora.vocoder.Vocoder` (or None); with it, the refined mels are vocoded when
    ``generated`` is None, and the original mels are always vocoded for comparison.
    """
    from tqdm import tqdm

    from canora.io.audio import load_audio

    stems = _pairs(original, refined)
    files: list[_File] = []
    for stem in tqdm(stems, desc="report", unit="file", disable=len(stems) < 4):
        o, oc = _load_mel(original / f"{stem}.npy", spec)
        r, rc = _load_mel(refined / f"{stem}.npy", spec)
        f = _File(stem, o, r, oc, rc)
        if generated is not None:
            wav_path = generated / f"{stem}.wav"
            if wav_path.exists():
                f.generated = load_audio(wav_path, spec.sample_rate, allow_silent=True)
            else:
                log.warning("%s: missing; no audio metrics for %s", wav_path, stem)
        elif vocoder is not None:
            f.generated = _vocode(vocoder, r, refined / f"{stem}.f0.npy")
        if f.generated is not None:
            f.gen_report = check_output(r, f.generated, spec)
        if vocoder is not None:
            f.orig_audio = _vocode(vocoder, o, original / f"{stem}.f0.npy")
            f.orig_report = check_output(o, f.orig_audio, spec)
        files.append(f)

    st_o, st_r = stats.band_stats([f.original for f in files]), stats.band_stats([f.refined for f in files])
    dist = stats.band_wasserstein([f.original for f in files], [f.refined for f in files])
    top = stats.top_bands(dist, 5)
    hz = plots.band_centres_hz(spec)
    metrics: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "mel_spec": spec.to_dict(),
        "inputs": {"original": str(original), "refined": str(refined),
                   "generated": str(generated) if generated else None,
                   "vocoder": getattr(vocoder, "source", None) if vocoder is not None else None},
        "distribution": {
            "band_mean_original": st_o.mean.tolist(), "band_std_original": st_o.std.tolist(),
            "band_mean_refined": st_r.mean.tolist(), "band_std_refined": st_r.std.tolist(),
            "band_wasserstein": dist.tolist(), "mean_wasserstein": float(dist.mean()),
            "top_bands": [{"band": i, "hz": float(hz[i]), "wasserstein": float(dist[i]),
                           "mean_shift": float(st_r.mean[i] - st_o.mean[i])} for i in top],
            "harmonic_detail": _harmonic_detail(files, spec, original, refined),
            "harmonic_contrast": _harmonic_contrast(files, spec, original, refined),
        },
        "files": [_file_metrics(f) for f in files],
    }
    metrics["summary"] = _summary(metrics["files"])
    _validate(metrics)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    atomic_write_text(out_dir / "report.html", _html(metrics, files, spec, st_o, st_r, dist, top, worst_best))
    return metrics


def _voiced(f: _File, spec: MelSpec, original: Path, refined: Path) -> np.ndarray:
    """Voiced frames (T,) of a pair: from ``<stem>.f0.npy`` beside the refined (or original) mel when there
    is one, else the frames louder than the floor (a fallback that also counts breaths)."""
    from canora.dsp.metrics import loud_frames
    from canora.io.melfiles import load_f0

    n = min(f.original.shape[1], f.refined.shape[1])
    for d in (refined, original):
        p = d / f"{f.name}.f0.npy"
        if p.is_file():
            try:
                return load_f0(p, f.refined.shape[1] if d == refined else f.original.shape[1])[:n] > 0
            except CanoraError as e:
                log.warning("%s", e)
    return loud_frames(f.original[:, :n], spec)


def _harmonic_detail(files: list[_File], spec: MelSpec, original: Path, refined: Path) -> dict[str, Any]:
    """Harmonic detail per band of the original and the refined mels over the voiced frames of all files."""
    from canora.dsp.metrics import DETAIL_BANDS, harmonic_detail

    o_parts, r_parts, frames = [], [], 0
    for f in files:
        if f.original.shape[0] != spec.n_mels or f.refined.shape[0] != spec.n_mels:
            continue
        v = _voiced(f, spec, original, refined)
        if not v.any():
            continue
        o_parts.append(f.original[:, : len(v)][:, v])
        r_parts.append(f.refined[:, : len(v)][:, v])
        frames += int(v.sum())
    if frames:
        ones = np.ones(frames, bool)
        o = harmonic_detail(np.concatenate(o_parts, axis=1), ones, spec)
        r = harmonic_detail(np.concatenate(r_parts, axis=1), ones, spec)
    else:
        o = r = [float("nan")] * len(DETAIL_BANDS)
    return {"bands_hz": [list(b) for b in DETAIL_BANDS], "original": [_num(x) for x in o],
            "refined": [_num(x) for x in r], "frames": frames,
            "ratio": [_num(b / a) if a and math.isfinite(a) and math.isfinite(b) else None for a, b in zip(o, r)]}


def _harmonic_contrast(files: list[_File], spec: MelSpec, original: Path, refined: Path) -> dict[str, Any] | None:
    """Harmonic contrast of the audio (the refined mels' generated or vocoded audio, the original mels' vocoded
    audio) per band, frame-weighted over files; None without audio. F0 from ``<stem>.f0.npy`` where there is one,
    else tracked on the audio; the voiced frames of the refined side count for both."""
    from canora.analysis.evaluation import HARMONIC_BANDS, harmonics_by_band
    from canora.dsp.pitch import extract_f0
    from canora.io.melfiles import load_f0

    def f0_of(d: Path, stem: str, audio: np.ndarray, frames: int) -> np.ndarray:
        """F0 (n,) on the audio's frames: the mel's ``frames``-long track beside it, else tracked."""
        n = len(audio) // spec.hop_length
        p = d / f"{stem}.f0.npy"
        if p.is_file():
            with contextlib.suppress(CanoraError):
                return np.pad(load_f0(p, frames), (0, n))[:n]
        return extract_f0(audio, spec.sample_rate, spec.hop_length, n)

    sums = {"refined": np.zeros(len(HARMONIC_BANDS)), "original": np.zeros(len(HARMONIC_BANDS))}
    weights = {"refined": np.zeros(len(HARMONIC_BANDS)), "original": np.zeros(len(HARMONIC_BANDS))}
    files_used = 0
    for f in files:
        if f.generated is None or not np.isfinite(f.generated).all():
            continue
        f0 = f0_of(refined, f.name, f.generated, f.refined.shape[1])
        voiced = f0 > 0
        if not voiced.any():
            continue
        files_used += 1
        sides = [("refined", f.generated, f0)]
        if f.orig_audio is not None and np.isfinite(f.orig_audio).all():
            sides.append(("original", f.orig_audio, f0_of(original, f.name, f.orig_audio, f.original.shape[1])))
        for side, audio, track in sides:
            n = min(len(track), len(voiced))
            values = harmonics_by_band(audio, spec.sample_rate, spec.hop_length, track[:n], voiced[:n])
            for i, v in enumerate(values):
                if math.isfinite(v):
                    sums[side][i] += v * int(voiced.sum())
                    weights[side][i] += int(voiced.sum())
    if not files_used:
        return None

    def mean(side: str) -> list[float | None] | None:
        if not weights[side].any():
            return None
        return [_num(sm / w) if w else None for sm, w in zip(sums[side], weights[side])]

    return {"bands_hz": [list(b) for b in HARMONIC_BANDS], "refined_audio": mean("refined"),
            "original_audio": mean("original"), "files": files_used}


def _vocode(vocoder: Any, mel: np.ndarray, f0_path: Path | None = None) -> np.ndarray:
    """Vocode ``mel`` (n_mels, T); F0-driven vocoders read ``f0_path`` (``<stem>.f0.npy``, as written by
    ``canora refine``) when it exists, else estimate F0 from the mel."""
    try:
        if getattr(vocoder, "needs_f0", False) and f0_path is not None and f0_path.is_file():
            from canora.io.melfiles import load_f0

            return vocoder.vocode(mel, load_f0(f0_path, mel.shape[1]))
        return vocoder.vocode(mel)
    except MelError:  # NaN/inf mel: the vocoder refuses; report it as a NaN output
        return np.full(mel.shape[1] * vocoder.spec.hop_length, np.nan, dtype=np.float32)


def _file_metrics(f: _File) -> dict[str, Any]:
    d = stats.band_wasserstein([f.original], [f.refined]) if f.original.shape[0] == f.refined.shape[0] else None
    return {
        "name": f.name, "frames_original": int(f.original.shape[1]), "frames_refined": int(f.refined.shape[1]),
        "original_conventions": f.orig_conv, "refined_conventions": f.ref_conv,
        "mean_wasserstein": _num(float(d.mean())) if d is not None else None,
        "refined": f.gen_report.to_dict() if f.gen_report else None,
        "original": f.orig_report.to_dict() if f.orig_report else None,
    }


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float | None:
        v = [r[key]["cycle_error"] for r in rows if r[key] and r[key]["cycle_error"] is not None]
        return float(np.median(v)) if v else None

    return {
        "files": len(rows),
        "collapsed_refined": sum(1 for r in rows if r["refined"] and r["refined"]["collapsed"]),
        "collapsed_original": sum(1 for r in rows if r["original"] and r["original"]["collapsed"]),
        "median_cycle_error_refined": med("refined"),
        "median_cycle_error_original": med("original"),
        "files_with_convention_mismatch": sum(1 for r in rows if r["refined_conventions"]),
    }


def _validate(metrics: dict[str, Any]) -> None:
    """Check ``metrics`` against the documented schema when jsonschema is installed."""
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - the analysis extra installs it
        return
    jsonschema.validate(metrics, json.loads(SCHEMA_PATH.read_text()))


# ---------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em}
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b00;font-weight:600}.ok{color:#070}img{max-width:100%;display:block;margin:.6em 0}
.note{color:#555;font-size:.9em}
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return html.escape(str(v))


def _html(metrics: dict[str, Any], files: list[_File], spec: MelSpec, st_o: stats.BandStats,
          st_r: stats.BandStats, dist: np.ndarray, top: list[int], worst_best: int) -> str:
    s = metrics["summary"]
    inp = metrics["inputs"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>canora report</title><style>{_CSS}</style>"
             "</head><body><h1>canora report: original vs refined mels</h1>"]
    parts.append("<p class='note'>" + "<br>".join(f"{k}: {html.escape(str(v))}" for k, v in inp.items() if v)
                 + f"<br>MelSpec: {html.escape(spec.describe())}</p>")
    verdict = (f"<span class='bad'>{s['collapsed_refined']} of {s['files']} vocoded refined file(s) collapsed</span>"
               if s["collapsed_refined"] else f"<span class='ok'>no collapse in {s['files']} file(s)</span>")
    if not any(f.gen_report for f in files):
        verdict = "no generated audio and no vocoder given: distribution analysis only"
    parts.append(f"<h2>Summary</h2><p>{verdict}. Median mel cycle error: refined "
                 f"{_fmt(s['median_cycle_error_refined'])}"
                 f", original {_fmt(s['median_cycle_error_original'])} (collapse above {MAX_CYCLE_ERROR:g}). "
                 f"Mean per-band Wasserstein distance {metrics['distribution']['mean_wasserstein']:.3f} ln.</p>")
    if s["files_with_convention_mismatch"]:
        parts.append(f"<p class='bad'>{s['files_with_convention_mismatch']} refined mel(s) are not in the spec's "
                     "convention (see the table); run <code>canora doctor</code> on them.</p>")

    parts.append("<h2>Mel distributions</h2>")
    parts.append(_img(plots.band_mean_std(st_o.mean, st_o.std, st_r.mean, st_r.std, ("original", "refined")),
                      "per-band mean and std"))
    orig, ref = [f.original for f in files], [f.refined for f in files]
    edges = stats.common_edges(orig, ref)
    parts.append(_img(plots.histograms(edges, [stats.histogram(orig, edges), stats.histogram(ref, edges)],
                                       ["original", "refined"], "Pooled log-mel value histogram"), "histograms"))
    parts.append(_img(plots.band_distance(dist, spec, top), "per-band Wasserstein distance"))
    rows = "".join(f"<tr><td class=num>{t['band']}</td><td class=num>{t['hz']:.0f}</td><td class=num>"
                   f"{t['wasserstein']:.3f}</td><td class=num>{t['mean_shift']:+.3f}</td></tr>"
                   for t in metrics["distribution"]["top_bands"])
    parts.append("<p>Bands that moved most:</p><table><tr><th>band</th><th>centre Hz</th><th>Wasserstein</th>"
                 f"<th>mean shift</th></tr>{rows}</table>")
    hd = metrics["distribution"]["harmonic_detail"]
    cells = "".join(f"<tr><td>{lo / 1000:g}-{hi / 1000:g} kHz</td><td class=num>{_fmt(o)}</td><td class=num>"
                    f"{_fmt(r)}</td><td class='num {'bad' if q is not None and q < 0.9 else 'ok'}'>"
                    f"{_fmt(q, 2)}</td></tr>"
                    for (lo, hi), o, r, q in zip(hd["bands_hz"], hd["original"], hd["refined"], hd["ratio"]))
    parts.append("<h2>Harmonic detail</h2><p>How much harmonic structure the mels keep in voiced frames "
                 f"({hd['frames']} frames): the mean |second difference| of the log-mel along frequency per band. "
                 "Resolved harmonics ripple from band to band; a refiner that smooths them into a noise band "
                 "lowers it (ratio refined / original below 0.9 is marked).</p><table><tr><th>band</th>"
                 f"<th>original</th><th>refined</th><th>ratio</th></tr>{cells}</table>")

    hc = metrics["distribution"].get("harmonic_contrast")
    if hc is not None:
        orig = hc["original_audio"] or [None] * len(hc["bands_hz"])
        cells = "".join(f"<tr><td>{lo / 1000:g}-{hi / 1000:g} kHz</td><td class=num>{_fmt(o, 2)}</td>"
                        f"<td class=num>{_fmt(r, 2)}</td></tr>"
                        for (lo, hi), o, r in zip(hc["bands_hz"], orig, hc["refined_audio"]))
        parts.append("<h2>Harmonics in the audio</h2><p>Above a few kHz a mel band is wider than the spacing of a "
                     "low voice's harmonics, so the mel cannot show whether they are there. The harmonic contrast "
                     f"of the audio ({hc['files']} files, voiced frames) can: the log magnitude at the harmonics over "
                     "the midpoints between them (ln; 0 = a noise band; real singing about 0.7-1.8 at 4-8 kHz, "
                     "more for higher notes).</p><table><tr><th>band</th><th>original, vocoded</th>"
                     f"<th>refined, vocoded</th></tr>{cells}</table>")

    rows_m = metrics["files"]
    if any(r["refined"] or r["original"] for r in rows_m):
        parts.append("<h2>Vocoded audio per file</h2>")
        names = [r["name"] for r in rows_m]
        series = {"refined": [r["refined"]["cycle_error"] if r["refined"] else None for r in rows_m]}
        if any(r["original"] for r in rows_m):
            series["original"] = [r["original"]["cycle_error"] if r["original"] else None for r in rows_m]
        parts.append(_img(plots.per_file_metric(names, series, "mel cycle error (ln)",
                                                "Mel cycle error of the vocoded mels", MAX_CYCLE_ERROR),
                          "mel cycle error per file"))
    parts.append(_file_table(rows_m))
    parts.append(_spectrogram_section(files, spec, worst_best))
    parts.append("<p class='note'>Mel cycle error: vocode a mel, re-extract the mel of the audio with the same "
                 "MelSpec, mean |difference| over frames louder than the floor. Flatness: geometric / arithmetic "
                 "mean of the power spectrum (0 tonal, ~0.56 white noise).</p></body></html>")
    return "\n".join(parts)


def _file_table(rows: list[dict[str, Any]]) -> str:
    head = ("<table><tr><th>file</th><th>conventions (refined)</th><th>W1</th><th>cycle err refined</th>"
            "<th>cycle err original</th><th>flatness</th><th>RMS dBFS</th><th>clipped</th><th>verdict</th></tr>")
    body = []
    for r in rows:
        g, o = r["refined"] or {}, r["original"] or {}
        verdict = g.get("verdict", "–")
        cls = "bad" if g.get("collapsed") else "ok"
        body.append(
            f"<tr><td>{html.escape(r['name'])}</td><td>{html.escape(', '.join(r['refined_conventions']) or 'ln')}</td>"
            f"<td class=num>{_fmt(r['mean_wasserstein'])}</td><td class=num>{_fmt(g.get('cycle_error'))}</td>"
            f"<td class=num>{_fmt(o.get('cycle_error'))}</td><td class=num>{_fmt(g.get('flatness'))}</td>"
            f"<td class=num>{_fmt(g.get('rms_dbfs'), 1)}</td><td class=num>{_fmt(g.get('clipping_ratio'), 4)}</td>"
            f"<td class={cls}>{html.escape(verdict)}</td></tr>")
    return head + "".join(body) + "</table>"


def _spectrogram_section(files: list[_File], spec: MelSpec, k: int) -> str:
    def score(f: _File) -> float:
        g = f.gen_report
        if g is not None and g.cycle_error is not None and math.isfinite(g.cycle_error):
            return g.cycle_error
        if f.gen_report is not None and f.gen_report.nan:
            return math.inf
        n = min(f.original.shape[1], f.refined.shape[1])
        return float(np.abs(f.original[:, :n] - f.refined[:, :n]).mean())

    ranked = sorted(files, key=score)
    picks = [("worst", f) for f in ranked[::-1][:k]] + [("best", f) for f in ranked[:k] if f not in ranked[::-1][:k]]
    crit = "mel cycle error" if any(f.gen_report for f in files) else "mean |refined − original|"
    out = [f"<h2>Spectrograms: worst and best files (by {crit})</h2>"]
    for tag, f in picks:
        panels = [("original mel", f.original), ("refined mel", f.refined)]
        if f.generated is not None and np.isfinite(f.generated).all() and len(f.generated) > spec.n_fft:
            panels.append(("re-extracted from the generated audio", wav_to_mel(f.generated, spec)))
        out.append(_img(plots.spectrograms(panels, spec, f"{tag}: {f.name} ({crit} {score(f):.3f})"),
                        f"spectrograms of {f.name}"))
    return "\n".join(out)
