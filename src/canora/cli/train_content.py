"""``canora train-content``: train (or resume) the learned content encoder on folders of recordings."""

from __future__ import annotations

import argparse
from pathlib import Path

from canora.cli.common import (
    MAX_TRAIN_MINUTES,
    MAX_TRAIN_STEPS,
    HelpFormatter,
    add_audio_limit_arg,
    add_device_args,
    float_in,
    int_in,
    seed_arg,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from canora.config import default_of
    from canora.training.content_config import ContentTrainConfig as C

    p = sub.add_parser(
        "train-content",
        help="train the learned content encoder (the words without the singer) on folders of recordings",
        description="Train the learned content encoder (--content-method learned of train-refiner). Each DATA "
        "folder holds one singer's or speaker's recordings (the folder name is the singer, unless --singers names "
        "them); the more singers, the less the encoder can keep of any one. Each file is copied a few times with "
        "its voice changed (Praat's formant and pitch shift; cached under OUT/cache), and the encoder learns to "
        "name the clean frame's teacher unit (k-means of the DSP cepstra) from the changed copies, to give two "
        "copies the same content, and to leave a singer classifier nothing to go by. Checkpoints are atomic; the "
        "same command resumes. OUT/export points at the newest export.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("data", type=Path, nargs="+", metavar="DATA", help="folders of recordings, one per singer")
    p.add_argument("-o", "--out", type=Path, required=True, help="run directory (checkpoints, exports, logs)")
    p.add_argument("--singers", nargs="+", default=None, help="singer names for the DATA folders, in order")
    p.add_argument("--steps", type=int_in(1, MAX_TRAIN_STEPS), default=default_of(C, "steps"),
                   help="total training steps")
    p.add_argument("--batch-size", type=int_in(1, 4096), default=default_of(C, "batch_size"), help="crops per step")
    p.add_argument("--lr", type=float_in(0, 1, lo_open=True), default=default_of(C, "lr"), help="AdamW learning rate")
    p.add_argument("--dim", type=int_in(1, 1024), default=None, help="content dimension (default: the config's, 32)")
    p.add_argument("--units", type=int_in(2, 65536), default=default_of(C, "units"), help="k-means teacher units")
    p.add_argument("--variants", type=int_in(1, 64), default=default_of(C, "variants"),
                   help="voice-changed copies per file")
    p.add_argument("--invariance-weight", type=float_in(0, 1e6), default=default_of(C, "invariance_weight"),
                   help="weight of the two-views invariance loss (0 = off)")
    p.add_argument("--adversary-weight", type=float_in(0, 1e6), default=default_of(C, "adversary_weight"),
                   help="gradient-reversal scale of the singer adversary (0 = off)")
    p.add_argument("--clean-share", type=float_in(0, 1), default=default_of(C, "clean_share"),
                   help="share of views taken from the clean recording instead of a changed copy")
    p.add_argument("--val-count", type=int_in(0, 100_000), default=default_of(C, "val_count"),
                   help="held-out files per singer (0 = 10 %%, none for one-file singers)")
    p.add_argument("--val-every", type=int_in(0, MAX_TRAIN_STEPS), default=default_of(C, "val_every"),
                   help="validate every N steps")
    p.add_argument("--checkpoint-every", type=int_in(0, MAX_TRAIN_STEPS), default=default_of(C, "checkpoint_every"),
                   help="checkpoint and export every N steps")
    p.add_argument("--log-every", type=int_in(1, MAX_TRAIN_STEPS), default=default_of(C, "log_every"),
                   help="log every N steps")
    p.add_argument("--keep", type=int_in(1, 1000), default=default_of(C, "keep"), help="keep the newest N checkpoints")
    p.add_argument("--max-minutes", type=float_in(0, MAX_TRAIN_MINUTES), default=0.0,
                   help="stop after this many minutes (0 = no limit)")
    p.add_argument("--cache-dir", type=Path, default=None, help="data cache (default OUT/cache)")
    p.add_argument("--seed", type=seed_arg, default=default_of(C, "seed"), help="random seed")
    add_device_args(p)
    add_audio_limit_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from canora.cli.common import apply_device_args, check_run_dir
    from canora.cli.progress import enabled as progress_enabled
    from canora.content.config import ContentNetConfig
    from canora.errors import CanoraError
    from canora.training.content import ContentTrainConfig, train_content

    if args.singers is not None and len(args.singers) != len(args.data):
        raise CanoraError(f"--singers names {len(args.singers)} singer(s) for {len(args.data)} data folder(s)")
    for d in args.data:
        if not d.is_dir():
            raise CanoraError(f"{d}: not a directory of recordings")
    check_run_dir(args.out, args.data, recursive=True)
    apply_device_args(args)
    net = ContentNetConfig() if args.dim is None else replace(ContentNetConfig(), dim=args.dim)
    cfg = ContentTrainConfig(
        model=net.to_dict(), steps=args.steps, batch_size=args.batch_size, lr=args.lr, units=args.units,
        variants=args.variants, invariance_weight=args.invariance_weight, adversary_weight=args.adversary_weight,
        clean_share=args.clean_share, val_count=args.val_count, val_every=args.val_every,
        checkpoint_every=args.checkpoint_every, log_every=args.log_every, keep=args.keep,
        max_minutes=args.max_minutes, seed=args.seed, device=args.device,
    )
    export = train_content(cfg, args.data, args.out, singers=args.singers, cache_dir=args.cache_dir,
                           progress=progress_enabled())
    if export is not None:
        print(f"newest export: {export} (also {args.out / 'export'})")
    return 0
