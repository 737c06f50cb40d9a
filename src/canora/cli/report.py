"""``canora report``: original vs refined mels, vocoded-audio collapse checks -> report.html + metrics.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from canora.cli.common import (
    HelpFormatter,
    add_file_command_args,
    add_model_arg,
    int_in,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", formatter_class=HelpFormatter,
        help="HTML report: mel distributions, refiner effect, vocoder collapse",
        description="Pair <stem>.npy mels of ORIGINAL and REFINED (two directories); plot per-band statistics, "
        "histograms and the per-band Wasserstein distance; check the generated audio (--generated <stem>.wav, or "
        "vocode the refined mels with --vocoder) for collapse (mel cycle error, spectral flatness, energy, clipping, "
        "NaN). Writes OUT/report.html (self-contained) and OUT/metrics.json.",
    )
    p.add_argument("original", type=Path, nargs="?", default=None, help="directory of original <stem>.npy mels")
    p.add_argument("refined", type=Path, nargs="?", default=None, help="directory of refined <stem>.npy mels")
    p.add_argument("--original", dest="original_opt", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--refined", dest="refined_opt", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--generated", type=Path, default=None, help="directory of <stem>.wav made from the refined mels")
    add_model_arg(p, "vocoder", bundled_default=False,
                  help="the vocoder (g_*, generator_v2, its directory, a canora export or 'bundled'): vocodes the "
                  "original mels (and the refined ones when --generated is absent); its MelSpec is the report's")
    p.add_argument("--config", default=None,
                   help="MelSpec when no vocoder is given: v1/v2/v3 or a config JSON (default: v1); with --vocoder, "
                   "the vocoder's config.json")
    p.add_argument("-o", "--out", type=Path, required=True, help="output directory for report.html and metrics.json")
    p.add_argument("--examples", type=int_in(0, 100), default=2, help="spectrograms of this many worst and best files")
    add_file_command_args(p, run, recursive=False)


def run(args: argparse.Namespace) -> int:
    import sys

    from canora.analysis.report import build_report
    from canora.cli.common import apply_device_args, check_outputs, emit, load_spec_arg, load_vocoder, require_dir_out
    from canora.errors import CanoraError
    from canora.io.files import resolved

    original = args.original or args.original_opt
    refined = args.refined or args.refined_opt
    if original is None or refined is None:
        raise CanoraError("report needs two directories of mels: canora report ORIGINAL REFINED -o DIR")
    if (args.original and args.original_opt) or (args.refined and args.refined_opt):
        raise CanoraError("give ORIGINAL and REFINED once each (positionally, or as --original/--refined)")
    for d in (original, refined, args.generated):
        if d is not None and not d.is_dir():
            raise CanoraError(f"{d}: no such directory of mels{' or wavs' if d == args.generated else ''}")
    apply_device_args(args)
    for d in (original, refined, args.generated):
        if d is not None and args.out.exists() and resolved(args.out) == resolved(d):
            raise CanoraError(f"{args.out}: the output directory is an input directory; choose another -o")
    require_dir_out(args.out, "report")
    check_outputs([args.out / "report.html", args.out / "metrics.json"], args)
    vocoder = None
    if args.vocoder is not None:
        vocoder = load_vocoder(args.vocoder, config=args.config, device=args.device)
        spec = vocoder.spec
    else:
        spec = load_spec_arg(args.config or "v1")
    m = build_report(original, refined, args.out, spec=spec, generated=args.generated, vocoder=vocoder,
                     worst_best=args.examples)
    print(summary_line(m, vocoded=vocoder is not None or args.generated is not None), file=sys.stderr)
    emit(args.out / "report.html")
    return 0


def _num(v: object, digits: int = 3) -> str:
    """A score for a person: rounded, or "n/a" when there is none."""
    import math

    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return "n/a"
    return f"{v:.{digits}f}"


def summary_line(m: dict, vocoded: bool) -> str:
    """The one line ``canora report`` prints about ``metrics.json`` (``m``)."""
    s = m["summary"]
    line = f"report: {s['files']} file(s); mean band distance (W1) {_num(m['distribution']['mean_wasserstein'])}"
    if not vocoded:
        return line + "; no audio checked for collapse (pass --vocoder or --generated)"
    return (line + f"; collapsed: refined {s['collapsed_refined']}, original {s['collapsed_original']}; "
            f"median mel cycle error: refined {_num(s['median_cycle_error_refined'])}, original "
            f"{_num(s['median_cycle_error_original'])}")
