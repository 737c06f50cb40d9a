"""``canora train-refiner``: train (or resume) a diffusion mel refiner on folders of recordings."""

from __future__ import annotations

import argparse
from pathlib import Path

from canora.cli.common import (
    MAX_TRAIN_MINUTES,
    MAX_TRAIN_STEPS,
    HelpFormatter,
    add_audio_limit_arg,
    add_device_args,
    add_model_arg,
    float_in,
    int_in,
    seed_arg,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from canora.config import default_of
    from canora.training.refiner_config import RefinerTrainConfig as C

    p = sub.add_parser(
        "train-refiner",
        help="train a diffusion mel refiner on one folder of recordings per singer",
        description="Train the diffusion mel refiner. Each DATA folder holds one singer's recordings "
        "(the folder name is the singer name, unless --singers names them); the last files of each "
        "(sorted by name) are held out for validation. Features are cached under OUT/cache; checkpoints "
        "(OUT/ckpt_*) are atomic and a run started again with the same -o resumes at the same step. "
        "OUT/export always points at the newest slim export (written with every checkpoint). "
        "Under torchrun (torchrun --nproc_per_node N -m canora train-refiner ...) it trains with DDP over gloo.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("data", type=Path, nargs="*", default=[], metavar="DATA",
                   help="folders of recordings, one per singer")
    p.add_argument("--data", dest="data_opt", type=Path, nargs="+", default=None, help=argparse.SUPPRESS)
    p.add_argument("-o", "--out", type=Path, required=True, help="run directory (checkpoints, exports, logs)")
    p.add_argument("--singers", nargs="+", default=None, help="singer names for the DATA folders, in order")
    p.add_argument("--size", "--config", dest="size", default=default_of(C, "model"),
                   choices=("tiny", "small", "default"), help="model size")
    _add_schedule_args(p)
    _add_feature_args(p)
    _add_checkpoint_args(p)
    _add_start_args(p)
    add_device_args(p)
    add_audio_limit_arg(p)
    p.set_defaults(run=run)


def _add_schedule_args(p: argparse.ArgumentParser) -> None:
    """How long and how: steps, batch, crops, learning rate."""
    from canora.config import default_of
    from canora.training.refiner_config import RefinerTrainConfig as C

    p.add_argument("--steps", type=int_in(1, MAX_TRAIN_STEPS), default=default_of(C, "steps"),
                   help="total training steps")
    p.add_argument("--batch-size", type=int_in(1, 4096), default=default_of(C, "batch_size"),
                   help="crops per step and process")
    p.add_argument("--crop-frames", type=int_in(8, 10_000), default=default_of(C, "crop_frames"),
                   help="frames per crop")
    p.add_argument("--lr", type=float_in(0, 1, lo_open=True), default=default_of(C, "lr"), help="AdamW learning rate")


def _add_feature_args(p: argparse.ArgumentParser) -> None:
    """What the refiner sees: the MelSpec, the F0 and content extractors, the normalisation."""
    import canora.content  # noqa: F401 (registers the learned encoder)
    from canora.config import default_of
    from canora.dsp.content import available_content_encoders
    from canora.dsp.pitch import DEFAULT_F0_METHOD, available_f0_extractors
    from canora.training.refiner_config import RefinerTrainConfig as C

    p.add_argument("--mel-config", default="v1", help="MelSpec: v1/v2/v3, a HiFi-GAN config.json or MelSpec JSON")
    p.add_argument("--f0-method", default=DEFAULT_F0_METHOD, choices=available_f0_extractors(), help="F0 extractor")
    p.add_argument("--content-method", default="dsp", choices=available_content_encoders(),
                   help="content feature extractor (learned: canora's trained encoder, --content-model to choose one; "
                   "hubert needs --content-model)")
    p.add_argument("--content-model", type=Path, default=None, metavar="DIR",
                   help="for --content-method learned: a content encoder export (default: the bundled one); for "
                   "hubert: a local HubertModel.save_pretrained folder (never downloaded)")
    p.add_argument("--content-layer", type=int_in(0, 1000), default=None,
                   help="for --content-method hubert: the transformer layer to take (default: the last)")
    p.add_argument("--norm", default=default_of(C, "norm"), choices=("fixed", "per_bin"),
                   help="diffusion-space mel normalisation")


def _add_checkpoint_args(p: argparse.ArgumentParser) -> None:
    """Validation, checkpoints and the time limit."""
    from canora.config import default_of
    from canora.training.refiner_config import RefinerTrainConfig as C

    p.add_argument("--val-count", type=int_in(0, 100_000), default=default_of(C, "val_count"),
                   help="held-out files per singer (0 = 10 %%)")
    p.add_argument("--val-every", type=int_in(0, MAX_TRAIN_STEPS), default=default_of(C, "val_every"),
                   help="validate every N steps")
    p.add_argument("--checkpoint-every", type=int_in(0, MAX_TRAIN_STEPS), default=default_of(C, "checkpoint_every"),
                   help="checkpoint and export every N steps")
    p.add_argument("--keep", type=int_in(1, 1000), default=default_of(C, "keep"), help="keep the newest N checkpoints")
    p.add_argument("--max-minutes", type=float_in(0, MAX_TRAIN_MINUTES), default=0.0,
                   help="stop after this many minutes (0 = no limit)")


def _add_start_args(p: argparse.ArgumentParser) -> None:
    """Where the run starts from (a base export), the data's balance and filter, the cache and the seed."""
    from canora.config import default_of
    from canora.dsp.filters import HIGHPASS_HZ
    from canora.training.refiner_config import RefinerTrainConfig as C

    add_model_arg(p, "vocoder", bundled_default=False,
                  help="vocoder for validation audio samples in TensorBoard (a path or 'bundled'; default: none)")
    p.add_argument("--init-from", default=None, metavar="EXPORT|bundled|bundled-base",
                   help="fine-tune from a refiner export ('bundled' = canora's PJS refiner, 'bundled-base' = its "
                   "multi-singer base): its size, MelSpec, features and "
                   "normalisation are kept (--size/--mel-config/--f0-method/--content-method must agree or be left "
                   "at their defaults); a singer the base has (same name) keeps its embedding, each new singer "
                   "starts from the mean of the base's singers")
    p.add_argument("--warm-start", default=None, metavar="EXPORT|bundled|bundled-base",
                   help="seed a run with other features (e.g. --content-method learned) from a refiner export: its "
                   "denoiser and F0/loudness inputs are copied, the content inputs start fresh, every singer at the "
                   "mean of its singers; this run's MelSpec and features are kept")
    p.add_argument("--singer-balance", type=float_in(0, 1), default=default_of(C, "singer_balance"),
                   help="draw crops per singer in proportion to (its minutes) ** this: 1 = by length, 0 = every "
                   "singer as often")
    p.add_argument("--highpass-hz", type=float_in(0, 1000), default=HIGHPASS_HZ, metavar="HZ",
                   help="high-pass the training audio at HZ, below the lowest sung F0 (0 = off)")
    p.add_argument("--cache-dir", type=Path, default=None, help="feature cache (default OUT/cache)")
    p.add_argument("--seed", type=seed_arg, default=default_of(C, "seed"), help="random seed")


def _preview(vocoder: str | Path, spec: object, device: str):  # noqa: ANN202
    """A mel -> audio callable for TensorBoard previews (the composition of refiner and vocoder lives here)."""
    from canora.cli.common import load_vocoder

    voc = load_vocoder(vocoder, device=device)
    voc.spec.require_same(spec, f"--vocoder {vocoder} vs the refiner's MelSpec",
                          "pass a vocoder trained on the same MelSpec, or none")
    return voc.vocode


def _content_params(args: argparse.Namespace) -> dict:
    """--content-model / --content-layer as the content encoder's parameters, checked before any work."""
    from canora.errors import CanoraError

    if args.content_method == "learned":
        from canora.content.learned import LearnedContent

        if args.content_layer is not None:
            raise CanoraError("--content-layer is for --content-method hubert")
        model = "bundled" if args.content_model is None else str(args.content_model)
        return {"model": model, "sha256": LearnedContent(model).sha256, "normalize": True}  # tied to these weights
    if args.content_method != "hubert":
        if args.content_model is not None or args.content_layer is not None:
            raise CanoraError(f"--content-model/--content-layer are for --content-method hubert, not "
                              f"{args.content_method!r}")
        return {}
    if args.content_model is None:
        raise CanoraError("--content-method hubert needs --content-model DIR: a local HubertModel folder (written "
                          "by transformers' HubertModel.save_pretrained); canora never downloads one")
    if not (args.content_model / "config.json").is_file():
        raise CanoraError(f"{args.content_model}: no config.json here; --content-model takes a folder written by "
                          "HubertModel.save_pretrained")
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise CanoraError("--content-method hubert needs the transformers package, which is not installed: "
                          "pip install transformers") from None
    params: dict = {"model_dir": str(args.content_model)}
    if args.content_layer is not None:
        params["layer"] = args.content_layer
    return params


def run(args: argparse.Namespace) -> int:
    from canora.cli.common import apply_device_args, check_run_dir, load_spec_arg
    from canora.cli.progress import enabled as progress_enabled
    from canora.conditioning import FeatureParams
    from canora.errors import CanoraError
    from canora.training.refiner import RefinerTrainConfig, train_refiner

    if args.data and args.data_opt:
        raise CanoraError("give the data folders once (positionally, or after --data)")
    data = list(args.data or args.data_opt or [])
    if not data:
        raise CanoraError("train-refiner needs at least one folder of recordings: canora train-refiner DATA -o RUN")
    if args.singers is not None and len(args.singers) != len(data):
        raise CanoraError(f"--singers names {len(args.singers)} singer(s) for {len(data)} data folder(s)")
    from canora.io.audio import AUDIO_EXTENSIONS

    for d in data:
        if not d.is_dir():
            raise CanoraError(f"{d}: not a directory of recordings")
        if not any(p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file() for p in d.rglob("*")):
            raise CanoraError(f"{d}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
    check_run_dir(args.out, data, recursive=True)
    apply_device_args(args)
    spec = load_spec_arg(args.mel_config, "--mel-config")
    fp = FeatureParams()
    overrides = {"f0_method": args.f0_method, "content_method": args.content_method,
                 "content_params": _content_params(args)}
    fp = FeatureParams.from_dict({**fp.to_dict(), **overrides})
    if args.init_from is not None:  # fine-tuning: the base's MelSpec and features (checked again in training)
        from canora.cli.common import load_refiner

        base = load_refiner(args.init_from, device="cpu")
        spec, fp = base.spec, base.feature_params
    cfg = RefinerTrainConfig(
        model=args.size, steps=args.steps, batch_size=args.batch_size, crop_frames=args.crop_frames, lr=args.lr,
        norm=args.norm, mel_spec=spec.to_dict(), features=fp.to_dict(), val_count=args.val_count,
        val_every=args.val_every, checkpoint_every=args.checkpoint_every, keep=args.keep,
        max_minutes=args.max_minutes, seed=args.seed, device=args.device,
        init_from=None if args.init_from is None else str(args.init_from),
        warm_start=None if args.warm_start is None else str(args.warm_start), singer_balance=args.singer_balance,
        highpass_hz=args.highpass_hz,
    )
    preview = _preview(args.vocoder, spec, args.device) if args.vocoder else None
    export = train_refiner(data, args.out, cfg, singers=args.singers, preview=preview, cache_dir=args.cache_dir,
                           progress=progress_enabled())
    if export is not None:
        print(f"newest export: {export} (also {args.out / 'export'})")
    return 0
