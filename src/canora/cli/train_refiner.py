"""``canora train-refiner``: train (or resume) a diffusion mel refiner on folders of recordings."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    from canora.config import default_of
    from canora.training.refiner import RefinerTrainConfig as C

    p = sub.add_parser(
        "train-refiner",
        help="train a diffusion mel refiner on one folder of recordings per singer",
        description="Train the diffusion mel refiner. Each --data folder holds one singer's recordings "
        "(the folder name is the singer name, unless --singers names them); the last files of each "
        "(sorted by name) are held out for validation. Features are cached under OUT/cache; checkpoints "
        "(OUT/ckpt_*) are atomic and a run started again with the same --out resumes at the same step. "
        "OUT/export always points at the newest slim export (written with every checkpoint). "
        "Under torchrun (torchrun --nproc_per_node N -m canora train-refiner ...) it trains with DDP over gloo.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", type=Path, nargs="+", required=True, help="folders of recordings, one per singer")
    p.add_argument("-o", "--out", type=Path, required=True, help="run directory (checkpoints, exports, logs)")
    p.add_argument("--singers", nargs="+", default=None, help="singer names for the --data folders, in order")
    p.add_argument("--size", "--config", dest="size", default=default_of(C, "model"),
                   choices=("tiny", "small", "default"), help="model size")
    p.add_argument("--steps", type=int, default=default_of(C, "steps"), help="total training steps")
    p.add_argument("--batch-size", type=int, default=default_of(C, "batch_size"), help="crops per step and process")
    p.add_argument("--crop-frames", type=int, default=default_of(C, "crop_frames"), help="frames per crop")
    p.add_argument("--lr", type=float, default=default_of(C, "lr"), help="AdamW learning rate")
    p.add_argument("--mel-config", default="v1", help="MelSpec: v1/v2/v3, a HiFi-GAN config.json or MelSpec JSON")
    p.add_argument("--f0-method", default=None, help="F0 extractor (default: canora's default)")
    p.add_argument("--content-method", default=None, help="content feature extractor (default: dsp)")
    p.add_argument("--norm", default=default_of(C, "norm"), choices=("fixed", "per_bin"),
                   help="diffusion-space mel normalisation")
    p.add_argument("--val-count", type=int, default=default_of(C, "val_count"),
                   help="held-out files per singer (0 = 10 %%)")
    p.add_argument("--val-every", type=int, default=default_of(C, "val_every"), help="validate every N steps")
    p.add_argument("--checkpoint-every", type=int, default=default_of(C, "checkpoint_every"),
                   help="checkpoint and export every N steps")
    p.add_argument("--keep", type=int, default=default_of(C, "keep"), help="keep the newest N checkpoints")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop after this many minutes (0 = no limit)")
    p.add_argument("--vocoder", type=Path, default=None, help="vocoder for validation audio samples in TensorBoard")
    p.add_argument("--cache-dir", type=Path, default=None, help="feature cache (default OUT/cache)")
    p.add_argument("--seed", type=int, default=default_of(C, "seed"), help="random seed")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(run=run)


def _preview(vocoder: Path, spec: object):  # noqa: ANN202
    """A mel -> audio callable for TensorBoard previews (the composition of refiner and vocoder lives here)."""
    from canora.vocoder import Vocoder

    voc = Vocoder.from_pretrained(vocoder)
    voc.spec.require_same(spec, f"--vocoder {vocoder} vs the refiner's MelSpec",
                          "pass a vocoder trained on the same MelSpec, or none")
    return voc.vocode


def run(args: argparse.Namespace) -> int:
    import torch

    from canora.conditioning import FeatureParams
    from canora.dsp.mel import load_spec
    from canora.training.refiner import RefinerTrainConfig, train_refiner

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = load_spec(args.mel_config)
    fp = FeatureParams()
    overrides = {k: v for k, v in (("f0_method", args.f0_method), ("content_method", args.content_method)) if v}
    fp = FeatureParams.from_dict({**fp.to_dict(), **overrides})
    cfg = RefinerTrainConfig(
        model=args.size, steps=args.steps, batch_size=args.batch_size, crop_frames=args.crop_frames, lr=args.lr,
        norm=args.norm, mel_spec=spec.to_dict(), features=fp.to_dict(), val_count=args.val_count,
        val_every=args.val_every, checkpoint_every=args.checkpoint_every, keep=args.keep,
        max_minutes=args.max_minutes, seed=args.seed, device=args.device,
    )
    preview = _preview(args.vocoder, spec) if args.vocoder else None
    export = train_refiner(args.data, args.out, cfg, singers=args.singers, preview=preview, cache_dir=args.cache_dir)
    if export is not None:
        print(f"newest export: {export} (also {args.out / 'export'})")
    return 0
