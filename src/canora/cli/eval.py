"""``canora eval``: objective scores of conversions against their sources and the target singer."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Score converted songs: F0 error in cents, gross pitch error and voiced/unvoiced error against the source
after the applied transpose; singer similarity (resemblyzer GE2E embedding cosine to the centroid of
--target-refs) of the conversion versus that of the source, on the whole clip and on its voiced frames alone
against the centroid of the references' voiced frames ("sim v": phrasing does not count, so a song sung legato
is not marked down for having no pauses); the mel cycle error and real-time factor that
`canora convert` recorded in <stem>.json. Prints a table and writes JSON.

Waveform artifacts that mel metrics miss, each beside the source's own value on the source's frames:
  buzz   normalised autocorrelation at lag = hop (256 samples) in audible unvoiced frames: a vocoder that
         turns breaths and consonants into a pulse train at the frame rate (86 Hz) scores near 1
  lines  level of the long-term spectrum of voiced frames at k x 86.13 Hz (k = 1..4) above nearby bins, dB
  HNR    harmonics-to-noise ratio of voiced frames (Praat), dB
  GPE    share of frames voiced in both more than 50 cents off the transposed source, by harvest and by
         Praat's autocorrelation tracker (one tracker can follow the notes through a buzz the other hears)
  GPE agr  the same over the frames where harvest and Praat agree on the source's pitch (against their mean):
         where they disagree the reference itself is in doubt
  tone>src  the strongest tone held through the conversion above 3 kHz, off its notes' harmonics, in dB above
         the neighbouring bins and above what the source holds where that frequency came from (after the
         transpose): a whistle the vocoder added, not the melody's harmonics (clean: about +1..+4 dB)
  sub    energy below 30 Hz relative to the whole, dB (clean close-miked singing -40..-60; room rumble -17..-25)
  DC     the mean sample;  TP  the true peak, dBTP (4x oversampled);  clip  samples at |x| >= 0.999

Singer identification (with --target-refs and --panel DIR, a folder of other singers' folders): a linear
classifier of 1.6-s window embeddings is trained on the target's references, each panel singer and the source
itself; "id tgt" is the share of the conversion's windows it gives to the target, beside the source's own ("id src"
column: the source's windows given to the target), and "id leak" the share still given to the source.

Each converted <stem>.wav is paired with its source through the <stem>.json written by `canora convert`,
or with --sources DIR/<stem>.*; the transpose comes from that JSON unless --transpose is given.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from canora.cli.common import (
        HelpFormatter,
        add_audio_limit_arg,
        add_overwrite_arg,
        float_in,
        threads_arg,
    )
    from canora.dsp.pitch import available_f0_extractors
    from canora.pipeline import MAX_TRANSPOSE

    p = sub.add_parser("eval", help="score conversions: F0 error, singer similarity, mel cycle error, RTF",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("converted", type=Path, help="a converted .wav or a directory of them (canora convert output)")
    p.add_argument("-o", "--out", type=Path, required=True, help="JSON file to write the scores to")
    p.add_argument("--sources", type=Path, default=None, help="directory of the source recordings (<stem>.*)")
    p.add_argument("--target-refs", type=Path, default=None,
                   help="directory of the target singer's own recordings (held out from training)")
    p.add_argument("--panel", type=Path, default=None, metavar="DIR",
                   help="other singers for identification: a folder of singer folders (needs --target-refs)")
    p.add_argument("--transpose", type=float_in(-MAX_TRANSPOSE, MAX_TRANSPOSE), default=None,
                   help="semitones applied (default: from <stem>.json)")
    p.add_argument("--f0-method", default="harvest", choices=available_f0_extractors(),
                   help="F0 extractor for scoring")
    p.add_argument("--wide", action="store_true", help="print every score as a column (the JSON always has them)")
    p.add_argument("--threads", type=threads_arg, default=None, metavar="N",
                   help="torch CPU threads (default: torch's choice; the speaker encoder runs on the CPU)")
    add_overwrite_arg(p)
    add_audio_limit_arg(p)
    p.set_defaults(run=run)


SIDECAR_NUMBERS = ("transpose", "mel_cycle_error", "real_time_factor")


def read_sidecar(path: Path) -> dict:
    """The ``<stem>.json`` canora convert wrote beside a converted wav ({} when there is none), its fields checked:
    one :class:`CanoraError` naming the file for anything else."""
    import math

    from canora.errors import CanoraError
    from canora.io.files import read_json_object

    if not path.is_file():
        return {}
    fix = "re-run canora convert, or pass --sources (and --transpose)"
    doc = read_json_object(path, fix)
    for k in SIDECAR_NUMBERS:
        v = doc.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise CanoraError(f"{path}: {k} = {v!r} is not a number; {fix}")
    sr = doc.get("sample_rate")
    if sr is not None and (isinstance(sr, bool) or not isinstance(sr, int) or not 1000 <= sr <= 1_000_000):
        raise CanoraError(f"{path}: sample_rate = {sr!r} is not a rate in Hz; {fix}")
    src = doc.get("source")
    if src is not None and not isinstance(src, str):
        raise CanoraError(f"{path}: source = {src!r} is not a path; {fix}")
    return doc


def _source_for(wav: Path, side: dict, sources: Path | None) -> Path:
    from canora.errors import CanoraError
    from canora.io.audio import AUDIO_EXTENSIONS

    if sources is not None:
        for ext in AUDIO_EXTENSIONS:
            if (sources / f"{wav.stem}{ext}").is_file():
                return sources / f"{wav.stem}{ext}"
        raise CanoraError(f"{wav}: no source named {wav.stem}.* in {sources}")
    if side.get("source") and Path(side["source"]).is_file():
        return Path(side["source"])
    raise CanoraError(f"{wav}: no source recording found (no {wav.stem}.json from canora convert); pass --sources")


def run(args: argparse.Namespace) -> int:
    from canora.cli.common import check_outputs, list_inputs
    from canora.errors import CanoraError
    from canora.io.audio import AUDIO_EXTENSIONS, list_audio
    from canora.io.files import resolved

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    files = list_inputs(args.converted, (".wav",))
    if args.out.suffix.lower() != ".json":
        raise CanoraError(f"{args.out}: -o takes a .json file path")
    if any(resolved(args.out) == resolved(f.with_suffix(".json")) for f in files):
        raise CanoraError(f"{args.out}: that is the convert sidecar of a converted file; choose another -o")
    check_outputs([args.out], args, inputs=files)
    if args.sources is not None and not args.sources.is_dir():
        raise CanoraError(f"{args.sources}: --sources must be a directory of the source recordings")
    refs = None
    if args.target_refs is not None:
        refs = list_audio(args.target_refs) if args.target_refs.exists() else []
        refs = [r for r in refs if r.suffix.lower() in AUDIO_EXTENSIONS]
        if not refs:
            raise CanoraError(f"{args.target_refs}: no recordings of the target singer in this directory")
    if args.panel is not None and refs is None:
        raise CanoraError("--panel needs --target-refs DIR (the target singer's own recordings)")
    from canora.io.files import claim

    with claim([args.out]):  # a second eval writing the same file is refused while this one works
        return _score(args, files, refs)


#: the scores averaged over the files (the JSON's "mean") and offered to the table, in this order
KEYS = ["f0_rmse_cents", "f0_gross_error_rate", "f0_vuv_error_rate", "f0_pearson", "gpe_harvest", "gpe_praat",
        "gpe_agreed_harvest", "gpe_agreed_praat",
        "periodicity_converted", "periodicity_source", "frame_rate_line_db_converted", "frame_rate_line_db_source",
        "hnr_db_converted", "hnr_db_source", "held_tone_over_source_db", "held_tone_db_converted",
        "held_tone_db_source", "subsonic_db_converted", "subsonic_db_source", "dc_offset_converted",
        "dc_offset_source", "true_peak_dbtp_converted", "true_peak_dbtp_source", "full_scale_samples_converted",
        "harmonics_2-4k_converted", "harmonics_2-4k_source", "harmonics_4-8k_converted", "harmonics_4-8k_source",
        "similarity_converted", "similarity_source", "similarity_voiced_converted", "similarity_voiced_source",
        "id_target_converted", "id_target_source", "id_source_converted", "mel_cycle_error",
        "real_time_factor"]


@dataclass
class _Judges:
    """What a conversion is scored against besides its source: the target singer's centroids (``--target-refs``)
    and the identification panel (``--panel``); None where not given."""

    embedder: Any = None
    target: Any = None
    target_voiced: Any = None
    panel: dict | None = None
    window_embedder: Any = None


def _score(args: argparse.Namespace, files: list[Path], refs: list[Path] | None) -> int:
    """Score ``files`` (against ``refs``, the target singer's recordings, when given) through the batch runner,
    write the JSON, print the table."""
    from canora.cli.batch import run_batch

    judges = _judges(args, refs)
    rows: list[dict] = []
    res = run_batch(files, lambda f: _score_file(f, args, judges, rows), "eval")
    return _report(args, rows, judges, res)


def _judges(args: argparse.Namespace, refs: list[Path] | None) -> _Judges:
    """The speaker embedder and the target singer's centroids (with ``refs``), the panel (with ``--panel``)."""
    import sys

    from tqdm import tqdm

    from canora.analysis.evaluation import SpeakerEmbedder, singer_centroids
    from canora.io.audio import load_audio

    judges = _Judges()
    if refs is not None:
        judges.embedder = SpeakerEmbedder()
        judges.target, judges.target_voiced = singer_centroids(
            judges.embedder, [load_audio(r, 16000) for r in tqdm(
                refs, desc="target refs", unit="file", file=sys.stderr,
                disable=len(refs) < 2 or not sys.stderr.isatty())], 16000)
        if judges.target_voiced is None:
            print(f"{args.target_refs}: no recording there has 1 s of voiced audio; the voiced-only similarity "
                  "(sim v) is left out", file=sys.stderr)
    if args.panel is not None:
        from canora.analysis.singer_id import WindowEmbedder, panel_from_folders

        judges.window_embedder = WindowEmbedder()
        judges.panel = panel_from_folders(args.panel, judges.window_embedder, progress=sys.stderr.isatty())
        judges.panel["target"] = [judges.window_embedder.windows(load_audio(r, 16000), 16000) for r in refs]
    return judges


def _score_file(f: Path, args: argparse.Namespace, judges: _Judges, rows: list[dict]) -> float:
    """Score one converted file against its source (paired through its sidecar or ``--sources``), adding its row to
    ``rows`` -> its seconds of audio."""
    from canora.analysis.evaluation import evaluate_conversion
    from canora.io.audio import load_audio

    side = read_sidecar(f.with_suffix(".json"))
    transpose = args.transpose if args.transpose is not None else float(side.get("transpose") or 0.0)
    src = _source_for(f, side, args.sources)
    sr = int(side.get("sample_rate") or 22050)
    conv_wav = load_audio(f, sr, allow_silent=True)
    src_wav = load_audio(src, sr)
    scores = evaluate_conversion(conv_wav, src_wav, sr, transpose=transpose, f0_method=args.f0_method,
                                 embedder=judges.embedder, target_centroid=judges.target,
                                 target_centroid_voiced=judges.target_voiced)
    if judges.panel is not None:
        from canora.analysis.singer_id import identify_conversion

        scores.update(identify_conversion(judges.panel, judges.window_embedder.windows(src_wav, sr),
                                          judges.window_embedder.windows(conv_wav, sr)))
    rows.append({"file": f.name, "source": str(src), "transpose": transpose, **scores,
                 "mel_cycle_error": side.get("mel_cycle_error"), "real_time_factor": side.get("real_time_factor")})
    return len(conv_wav) / sr


def _report(args: argparse.Namespace, rows: list[dict], judges: _Judges, res: Any) -> int:
    """Write the JSON (every score, and their means), print the table and the notes -> the exit status."""
    import json
    import sys

    from canora.analysis.evaluation import mean_scores
    from canora.cli.batch import report_failures
    from canora.cli.eval_table import columns, render
    from canora.io.files import atomic_write_text

    summary = mean_scores(rows, KEYS)
    doc = {"files": [{k: _finite(v) for k, v in r.items()} for r in rows], "mean": summary}
    atomic_write_text(args.out, json.dumps(doc, indent=2) + "\n", args.overwrite)
    target, panel = judges.target is not None, judges.panel is not None
    print(render(rows, {"file": "mean", **summary}, columns(KEYS, args.wide, target, panel)))
    if not target:
        print("similarity to the target singer: not scored; pass --target-refs DIR (the target singer's own "
              "recordings, held out from training) to score it", file=sys.stderr)
    if not args.wide:
        print(f"c/s: the conversion's value / the source's; every score is in {args.out} (`canora eval --help` says "
              "what each means; --wide prints them all)", file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)
    return report_failures(res)


def _finite(v: object) -> object:
    """JSON has no NaN: unknown values are null."""
    import math

    return None if isinstance(v, float) and not math.isfinite(v) else v
