"""``canora report``: original vs refined mels, vocoded-audio collapse checks -> report.html + metrics.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from canora.cli.common import add_device_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="HTML report: mel distributions, refiner effect, vocoder collapse",
        description="Pair <stem>.npy mels of --original and --refined; plot per-band statistics, histograms and "
        "the per-band Wasserstein distance; check the generated audio (--generated <stem>.wav, or vocode the "
        "refined mels with --vocoder) for collapse (mel cycle error, spectral flatness, energy, clipping, NaN). "
        "Writes OUT/report.html (self-contained) and OUT/metrics.json.",
    )
    p.add_argument("--original", type=Path, required=True, help="directory of original <stem>.npy mels")
    p.add_argument("--refined", type=Path, required=True, help="directory of refined <stem>.npy mels")
    p.add_argument("--generated", type=Path, default=None, help="directory of <stem>.wav made from the refined mels")
    p.add_argument("--vocoder", type=Path, default=None,
                   help="HiFi-GAN generator (g_*, generator_v2, dir or canora export): vocodes the original mels "
                   "(and the refined ones when --generated is absent); its MelSpec is the report's")
    p.add_argument("--config", default=None,
                   help="MelSpec when no vocoder is given: v1/v2/v3 or a config JSON (default: v1); with --vocoder, "
                   "the vocoder's config.json")
    p.add_argument("-o", "--out", type=Path, required=True, help="output directory for report.html and metrics.json")
    p.add_argument("--examples", type=int, default=2, help="spectrograms of this many worst and best files")
    add_device_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from canora.analysis.report import build_report
    from canora.cli.common import apply_device_args
    from canora.dsp.mel import load_spec
    from canora.errors import CanoraError

    apply_device_args(args)
    for d in (args.original, args.refined, args.generated):
        if d is not None and args.out.exists() and args.out.resolve() == d.resolve():
            raise CanoraError(f"{args.out}: the output directory is an input directory; choose another -o")
    vocoder = None
    if args.vocoder is not None:
        from canora.vocoder import Vocoder

        vocoder = Vocoder.from_pretrained(args.vocoder, config=args.config, device=args.device)
        spec = vocoder.spec
    else:
        spec = load_spec(args.config or "v1")
    m = build_report(args.original, args.refined, args.out, spec=spec, generated=args.generated, vocoder=vocoder,
                     worst_best=args.examples)
    s = m["summary"]
    print(f"report: {s['files']} file(s); collapsed refined {s['collapsed_refined']}, original "
          f"{s['collapsed_original']}; median cycle error refined {s['median_cycle_error_refined']}, original "
          f"{s['median_cycle_error_original']}; mean band W1 {m['distribution']['mean_wasserstein']:.3f}",
          file=sys.stderr)
    print(args.out / "report.html")
    return 0
