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
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--out", type=Path, help="output directory of the ONNX export")
    out.add_argument("--cache", action="store_true",
                     help="keep the ONNX copies where conversions look for them (the cache, ~/.cache/canora/onnx or "
                     "$CANORA_CACHE_DIR) instead of writing a directory: then `canora convert` runs these models on "
                     "ONNX Runtime with --backend auto; 'bundled' also covers the bundled voices' refiners. "
                     "scripts/setup.sh runs `canora export bundled --cache` once")
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


def _cache_jobs(model: str, config: str | None) -> list[tuple[Path, str | None]]:
    """(model path, config) of each model ``MODEL`` names, for ``--cache``: 'bundled' adds the bundled voices'
    refiners (their vocoder is the bundled one)."""
    from canora.io.models import BASE_NAME, BUNDLED, is_bundled_name, resolve_model
    from canora.io.voices import BUNDLED_VOICES_DIR, bundled_voice_names, resolve_voice

    if is_bundled_name(model):
        jobs: list[tuple[Path, str | None]] = [(resolve_model(None, kind), None) for kind in BUNDLED]
        for name in bundled_voice_names():
            voice = resolve_voice(BUNDLED_VOICES_DIR / name)
            jobs += [(resolve_model(p, kind), None) for p, kind in ((voice.refiner, "refiner"),
                                                                    (voice.vocoder, "vocoder")) if p is not None]
        return list(dict.fromkeys(jobs))
    if model.strip().lower() == BASE_NAME:
        return [(resolve_model(BASE_NAME, "refiner"), None)]
    return [(Path(model), config)]


def _run_cache(args: argparse.Namespace) -> int:
    """``--cache``: make (or find) the kept ONNX copy of each model; say where each is."""
    import sys

    from canora.backends import cached_copy, onnx_copy
    from canora.cli.common import apply_device_args, emit
    from canora.errors import CanoraError
    from canora.io.onnx import cache_dir

    if args.quantize is not None:
        raise CanoraError("--cache keeps the exact (float) copies conversions use; drop --quantize")
    if cache_dir() is None:
        raise CanoraError("--cache: caching is off (CANORA_CACHE_DIR is set empty); unset it or use -o DIR")
    apply_device_args(args)
    for model, config in _cache_jobs(args.model, args.config):
        kept = cached_copy(model, config)
        copy = kept if kept is not None else onnx_copy(model, config)
        print(f"{model}: ONNX copy {'already kept' if kept is not None else 'made'} in {copy}", file=sys.stderr)
        emit(copy)
    return 0


def run(args: argparse.Namespace) -> int:
    import sys

    from canora.cli.common import apply_device_args, emit, require_dir_out

    if args.cache:
        return _run_cache(args)
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
