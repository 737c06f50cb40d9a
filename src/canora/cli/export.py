"""``canora export``: a vocoder or refiner -> an ONNX export (model.onnx + model.json) for ONNX Runtime."""

from __future__ import annotations

import argparse
from pathlib import Path

from canora.cli.common import add_overwrite_arg, threads_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a vocoder or refiner to ONNX (model.onnx + model.json)",
        description="Write DIR/model.onnx and DIR/model.json for ONNX Runtime, with dynamic batch and frame "
        "count. MODEL: an official HiFi-GAN generator (g_* file or its directory, config.json beside it or "
        "--config), a canora vocoder export (HiFi-GAN or NSF-HiFi-GAN; the NSF sine source stays outside the "
        "graph and is computed at run time from the F0), or a canora refiner export (its denoiser as "
        "model.onnx, its conditioning encoder as encoder.onnx). The export is loaded back and compared with "
        "the torch model. Load it with Vocoder.from_pretrained(DIR) / Refiner.from_pretrained(DIR), or pass "
        "DIR wherever a model path is taken (--vocoder, --refiner, --checkpoint, --model).",
    )
    p.add_argument("model", help="vocoder (g_* file or directory, canora export) or refiner export; 'bundled': "
                   "both bundled models, into OUT/refiner and OUT/vocoder; 'bundled-base': the multi-singer base")
    p.add_argument("-o", "--out", type=Path, required=True, help="output directory of the ONNX export")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default: onnx)")
    p.add_argument(
        "--quantize", default=None, choices=["int8"],
        help="ONNX Runtime dynamic int8 quantization (smaller; on CPU not faster for these convolutional "
        "models and less exact: the check line reports the error)",
    )
    p.add_argument("--config", default=None, help="config.json for an official g_* file (default: the one beside it)")
    p.add_argument("--threads", type=threads_arg, default=None, metavar="N",
                   help="torch CPU threads (default: torch's choice)")
    add_overwrite_arg(p)
    p.set_defaults(run=run)


def _jobs(model: str, out: Path) -> list[tuple[Path, Path]]:
    """(model path, output directory) of each export ``MODEL`` names: 'bundled' is the bundled refiner and
    vocoder, into ``out/refiner`` and ``out/vocoder``."""
    from canora.io.models import BASE_NAME, BUNDLED, is_bundled_name, resolve_model

    if is_bundled_name(model):
        return [(resolve_model(None, kind), out / kind) for kind in BUNDLED]
    if model.strip().lower() == BASE_NAME:
        return [(resolve_model(BASE_NAME, "refiner"), out)]
    return [(Path(model), out)]


def run(args: argparse.Namespace) -> int:
    import sys

    from canora.cli.common import apply_device_args, emit, require_dir_out
    from canora.export import check_export_out, export_onnx

    require_dir_out(args.out, "export")
    jobs = _jobs(args.model, args.out)
    for model, out in jobs:  # every output checked before the first export
        check_export_out(model, out, args.overwrite)
    apply_device_args(args)
    for model, out in jobs:
        res = export_onnx(model, out, quantize=args.quantize, config=args.config, fmt=args.format,
                          overwrite=args.overwrite)
        print(res.summary(), file=sys.stderr)
        emit(out)
    return 0
