"""``canora export``: a vocoder or refiner -> an ONNX export (model.onnx + model.json) for ONNX Runtime."""

from __future__ import annotations

import argparse
from pathlib import Path

from canora.cli.common import threads_arg


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
    p.add_argument("model", type=Path, help="vocoder (g_* file or directory, canora export) or refiner export")
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
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from canora.cli.common import apply_device_args
    from canora.export import export_onnx

    apply_device_args(args)
    res = export_onnx(args.model, args.out, quantize=args.quantize, config=args.config, fmt=args.format)
    print(res.summary(), file=sys.stderr)
    return 0
