"""``canora train-vocoder``: train or fine-tune a HiFi-GAN (official checkpoint layout), one process or torchrun;
or (``--arch nsf``) train canora's F0-driven NSF-HiFi-GAN singing vocoder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypeVar

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

T = TypeVar("T")

DESCRIPTION = """\
Train a HiFi-GAN vocoder from scratch, or fine-tune one (--init-from an official g_* file, a directory
of them, or a canora export; a do_* file with the same number beside a g_* file brings its
discriminators and optimizer states, otherwise the discriminators start fresh).

Checkpoints are written in the official layout (OUT/g_XXXXXXXX, OUT/do_XXXXXXXX, OUT/config.json),
atomically, keeping the newest --keep; running the same command again resumes the run in OUT at the next
step. Under torchrun (torchrun --nproc_per_node N -m canora train-vocoder ...) it trains with
DistributedDataParallel (NCCL on GPUs, gloo on CPU); --batch-size is per process.

Mels: computed from --wavs (cached), or precomputed --mels DIR (<stem>.npy (80, T) per <stem>.wav;
frame counts are checked against the audio), or made by --refiner.

Fine-tuning on refined mels, two recipes:
  naive  --mels DIR of singer A's mels refined toward singer A, paired with A's original wavs. If those
         mels come from a conversion (another singer's audio), the pairs are wrong and the vocoder learns
         to undo the refinement; a warning is printed when a mel sidecar names another singer than --singer.
  sound  --refiner EXPORT: the refiner reconstructs the target singer's own recordings (target -> target)
         and the vocoder is fine-tuned on (refined mel, the singer's real waveform): it learns the
         refiner's output distribution while its ground truth stays true. Use --schedule finetune.

--arch nsf trains canora's NSF-HiFi-GAN instead (a sine-plus-noise source from F0 injected at every
upsampling stage; the architecture of the bundled singing vocoder): mel + F0 come from the refiner's
feature extractor (cached), checkpoints are OUT/ckpt_XXXXXXXX and OUT/export is its slim export. Defaults
for it: reconstruction losses only (mel + multi-resolution STFT); --recon-steps N starts the adversarial
phase (narrowed MPD/MSD) after N updates. Batch 8 of 32 frames, lr 5e-4 halving every 20000 updates;
validation scores the waveform artifact metrics (frame-rate buzz, HNR, pitch by two trackers) too.
With --refiner EXPORT it learns the sound recipe too: the refiner reconstructs each recording at the
conversion defaults (see --refiner-steps), and --refined-share P of the crops (1 by default) pair that refined
mel with the real waveform; validation then runs on refined mels.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-vocoder",
        help="train or fine-tune a HiFi-GAN vocoder (official checkpoints, resumable, torchrun DDP)",
        description=DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--arch", choices=("hifigan", "nsf"), default="hifigan",
                   help="hifigan: the official generator (default); nsf: canora's F0-driven singing vocoder")
    p.add_argument("wavs", type=Path, nargs="?", default=None, metavar="WAVS", help="directory of training recordings")
    p.add_argument("--wavs", dest="wavs_opt", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("-o", "--out", type=Path, required=True, help="run directory (checkpoints, config.json, logs)")
    p.add_argument("--config", default=None,
                   help="v1, v2, v3 or a HiFi-GAN config.json (default: the --init-from checkpoint's)")
    p.add_argument("--mels", type=Path, default=None, help="precomputed <stem>.npy mels paired with --wavs")
    _add_refiner_args(p)
    _add_data_args(p)
    _add_optimizer_args(p)
    _add_checkpoint_args(p)
    add_device_args(p)  # under torchrun: one GPU per process; --threads per process
    add_audio_limit_arg(p)
    p.set_defaults(run=run)


def _add_refiner_args(p: argparse.ArgumentParser) -> None:
    """The sound recipe: mels made by a refiner from the singer's own recordings."""
    from canora.refiner.base import DEFAULT_STEPS, DEFAULT_STRENGTH
    from canora.refiner.samplers import MAX_STEPS

    p.add_argument("--refiner", type=Path, default=None, metavar="PATH|bundled",
                   help="refiner export (or 'bundled'): fine-tune on its reconstruction of WAVS (the sound recipe)")
    p.add_argument("--singer", default=None,
                   help="the singer of --wavs (the refiner's singer for --refiner; checked against mel sidecars)")
    p.add_argument("--refiner-strength", type=float_in(0, 1, lo_open=True), default=None,
                   help=f"reconstruction noise strength (0.5; nsf: the conversion default, {DEFAULT_STRENGTH:g})")
    p.add_argument("--refiner-steps", type=int_in(1, MAX_STEPS), default=None,
                   help=f"reconstruction sampler steps (10; nsf: the conversion default, {DEFAULT_STEPS})")
    p.add_argument("--refined-share", type=float_in(0, 1), default=None, metavar="P",
                   help="nsf with --refiner: share of crops on the refined mel, the rest on the real one (1)")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    """Which files train and which validate, and where training starts from."""
    p.add_argument("--train-list", type=Path, default=None, help="HiFi-GAN filelist ('name|...' lines) for training")
    p.add_argument("--val-list", type=Path, default=None, help="HiFi-GAN filelist for validation")
    p.add_argument("--val-count", type=int_in(0, 100_000), default=None,
                   help="without filelists: hold out the last N files by name (default 5%%, 1-10; 0 = none)")
    p.add_argument("--init-from", type=Path, default=None, metavar="PATH|bundled",
                   help="generator to start from (official g_*, an export, or 'bundled': canora's NSF vocoder)")


def _add_optimizer_args(p: argparse.ArgumentParser) -> None:
    """The schedule, the batch, the losses and the discriminators."""
    p.add_argument("--schedule", choices=("official", "finetune"), default="official",
                   help="official: lr 2e-4 x 0.999 per epoch; finetune: constant low lr (1e-5) after a warmup")
    p.add_argument("--lr", type=float_in(0, 1, lo_open=True), default=None,
                   help="learning rate (default by --schedule)")
    p.add_argument("--warmup-steps", type=int_in(0, MAX_TRAIN_STEPS), default=100, help="finetune warmup steps (100)")
    p.add_argument("--steps", type=int_in(1, MAX_TRAIN_STEPS), default=None, help="total updates (100000; nsf 20000)")
    p.add_argument("--batch-size", type=int_in(1, 4096), default=None,
                   help="segments per update and process (16; nsf 8)")
    p.add_argument("--segment-size", type=int_in(256, 2**20), default=None,
                   help="samples per segment (default: the config's)")
    p.add_argument("--recon-steps", type=int_in(0, MAX_TRAIN_STEPS), default=None,
                   help="first N updates without discriminators (mel + STFT loss only; default 0, nsf: all)")
    p.add_argument("--stft-weight", type=float_in(0, 1e6), default=None,
                   help="weight of a multi-resolution STFT loss (0; nsf 20)")
    p.add_argument("--voiced-noise", type=float_in(0, 1), default=None, metavar="K",
                   help="nsf: level of the sine source's noise channel where voiced, relative to unvoiced, in [0, 1] "
                        "(default: the --init-from export's, else 1); a source setting, so a fine-tune may change it")
    p.add_argument("--disc-width-div", type=int, choices=(1, 2, 4, 8), default=None,
                   help="divide the discriminators' channels (1 = official, the default; nsf 4)")


def _add_checkpoint_args(p: argparse.ArgumentParser) -> None:
    """Checkpoints, validation, logs and the time limit; the audio's preparation and the seed."""
    from canora.dsp.filters import HIGHPASS_HZ
    from canora.dsp.pitch import DEFAULT_F0_METHOD, available_f0_extractors

    p.add_argument("--checkpoint-every", type=int_in(0, MAX_TRAIN_STEPS), default=None,
                   help="checkpoint every N updates (1000; nsf 500; 0 = only at the end)")
    p.add_argument("--keep", type=int_in(1, 1000), default=3, help="keep the newest N checkpoints (3)")
    p.add_argument("--val-every", type=int_in(0, MAX_TRAIN_STEPS), default=None, help="validate every N updates (1000)")
    p.add_argument("--log-every", type=int_in(1, MAX_TRAIN_STEPS), default=None,
                   help="log losses every N updates (10; nsf 50)")
    p.add_argument("--max-minutes", type=float_in(0, MAX_TRAIN_MINUTES), default=0.0,
                   help="stop (with a checkpoint) after N minutes")
    p.add_argument("--peak-normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="peak-normalise audio to 0.95 (default: on for mels computed here, off for given mels)")
    p.add_argument("--seed", type=seed_arg, default=None, help="random seed (1234)")
    p.add_argument("--cache-dir", type=Path, default=None, help="mel cache (default OUT/cache)")
    p.add_argument("--f0-method", default=DEFAULT_F0_METHOD, choices=available_f0_extractors(),
                   help="nsf: the F0 tracker of the training F0 (default %(default)s)")
    p.add_argument("--highpass-hz", type=float_in(0, 1000), default=HIGHPASS_HZ, metavar="HZ",
                   help="nsf: high-pass the training audio (targets and features) at HZ, below the lowest sung F0, "
                        "so the vocoder learns no rumble or DC (0 = off)")


def _pick(value: T | None, cls: type, name: str) -> T:
    """``value``, or the default of ``cls.name`` (the config class is the one place a default is written)."""
    from canora.config import default_of

    return default_of(cls, name) if value is None else value


def _check_hz(hz: float) -> float:
    import math

    from canora.errors import CanoraError

    if not (math.isfinite(hz) and 0.0 <= hz <= 200.0):
        raise CanoraError(f"--highpass-hz {hz:g} must be between 0 (off) and 200 Hz")
    return float(hz)


def run_nsf(args: argparse.Namespace) -> int:
    from canora.dsp.mel import MelSpec, load_spec
    from canora.errors import CanoraError
    from canora.training.nsf import NSFTrainConfig as C
    from canora.training.nsf import train_nsf
    from canora.vocoder.nsf import NSFConfig

    unsupported = [flag for flag, v in (("--mels", args.mels), ("--train-list", args.train_list),
                                        ("--val-list", args.val_list)) if v is not None]
    if unsupported:
        raise CanoraError(f"--arch nsf does not take {', '.join(unsupported)} yet; train it on --wavs "
                          "(with --refiner for refined mels)")
    if args.refiner is None and (args.refined_share is not None or args.refiner_strength is not None
                                 or args.refiner_steps is not None):
        raise CanoraError("--refined-share, --refiner-strength and --refiner-steps need --refiner EXPORT")
    spec = load_spec(args.config or "v1")
    seg = args.segment_size or _pick(None, C, "segment_frames") * spec.hop_length
    if seg % spec.hop_length:
        raise CanoraError(f"--segment-size {seg} must be a multiple of the hop ({spec.hop_length})")
    model = NSFConfig(sample_rate=spec.sample_rate, n_mels=spec.n_mels)
    if args.init_from is not None:  # fine-tune: the export's own generator config and MelSpec
        from canora.io.checkpoint import load_export

        doc, _ = load_export(args.init_from, "nsf-hifigan")
        model = NSFConfig.from_dict(doc["config"], str(args.init_from))
        exported = MelSpec.from_dict(doc["mel_spec"], str(args.init_from))
        if args.config is not None:
            spec.require_same(exported, f"--config vs --init-from {args.init_from}", "omit --config")
        spec = exported
    if args.voiced_noise is not None:
        from dataclasses import replace

        model = replace(model, voiced_noise=args.voiced_noise)
    if model.hop_length != spec.hop_length:
        raise CanoraError(f"the NSF generator upsamples by {model.hop_length}; the MelSpec's hop is {spec.hop_length}")
    cfg = C(
        wavs=str(args.wavs), mel_spec=spec.to_dict(), model=model.to_dict(), steps=_pick(args.steps, C, "steps"),
        batch_size=_pick(args.batch_size, C, "batch_size"), segment_frames=seg // spec.hop_length,
        lr=_pick(args.lr, C, "lr"), stft_weight=_pick(args.stft_weight, C, "stft_weight"),
        recon_steps=args.recon_steps, disc_width_div=_pick(args.disc_width_div, C, "disc_width_div"),
        val_count=args.val_count, val_every=_pick(args.val_every, C, "val_every"),
        checkpoint_every=_pick(args.checkpoint_every, C, "checkpoint_every"), keep=args.keep,
        log_every=_pick(args.log_every, C, "log_every"), max_minutes=args.max_minutes,
        seed=_pick(args.seed, C, "seed"), cache_dir=None if args.cache_dir is None else str(args.cache_dir),
        f0_method=args.f0_method, device=args.device,
        init_from=None if args.init_from is None else str(args.init_from),
        refiner=None if args.refiner is None else str(args.refiner), singer=args.singer,
        refiner_strength=_pick(args.refiner_strength, C, "refiner_strength"),
        refiner_steps=_pick(args.refiner_steps, C, "refiner_steps"),
        refined_share=_pick(args.refined_share, C, "refined_share"), highpass_hz=_check_hz(args.highpass_hz),
    )
    export = train_nsf(cfg, args.out, progress=_progress())
    print(f"newest export: {export}")
    return 0


def _check(args: argparse.Namespace) -> None:
    """Before any work: WAVS given once and a directory, -o a writable run directory that is not WAVS, the device
    there, and 'bundled' model names resolved to paths."""
    from canora.cli.common import apply_device_args, check_run_dir
    from canora.errors import CanoraError
    from canora.io.models import is_bundled_name, resolve_model

    if args.wavs is not None and args.wavs_opt is not None:
        raise CanoraError("give the training recordings once (positionally, or after --wavs)")
    args.wavs = args.wavs or args.wavs_opt
    if args.wavs is None:
        raise CanoraError("train-vocoder needs a directory of recordings: canora train-vocoder WAVS -o RUN")
    if not args.wavs.is_dir():
        raise CanoraError(f"{args.wavs}: not a directory of recordings")
    from canora.io.audio import AUDIO_EXTENSIONS, list_audio

    if not list_audio(args.wavs):
        raise CanoraError(f"{args.wavs}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this directory")
    check_run_dir(args.out, [args.wavs], recursive=False)
    apply_device_args(args)
    if args.refiner is not None and is_bundled_name(str(args.refiner)):
        args.refiner = resolve_model("bundled", "refiner")
    if args.init_from is not None and is_bundled_name(str(args.init_from)):
        args.init_from = resolve_model("bundled", "vocoder")
    if args.init_from is not None and not args.init_from.exists():
        raise CanoraError(f"--init-from {args.init_from}: no such file or directory")
    if args.init_from is not None and args.arch == "nsf":
        from canora.io.checkpoint import is_export

        if not is_export(args.init_from):
            raise CanoraError(f"--init-from {args.init_from}: --arch nsf starts from an NSF export (a directory with "
                              "model.json, e.g. RUN/export or 'bundled'), not this")


def run(args: argparse.Namespace) -> int:
    from canora.training.hifigan import TrainConfig as C
    from canora.training.hifigan import train_vocoder

    _check(args)
    if args.arch == "nsf":
        return run_nsf(args)
    if args.voiced_noise is not None:
        from canora.errors import CanoraError

        raise CanoraError("--voiced-noise sets the NSF sine source; it needs --arch nsf")
    if args.refined_share is not None:
        from canora.errors import CanoraError

        raise CanoraError("--refined-share mixes refined and real mels for --arch nsf; HiFi-GAN's --refiner "
                          "trains on refined mels only")

    def s(p: Path | None) -> str | None:
        return None if p is None else str(p)

    cfg = C(
        wavs=str(args.wavs), config=args.config, mels=s(args.mels), train_list=s(args.train_list),
        val_list=s(args.val_list), val_count=args.val_count, init_from=s(args.init_from), schedule=args.schedule,
        lr=args.lr, warmup_steps=args.warmup_steps, steps=_pick(args.steps, C, "steps"),
        batch_size=_pick(args.batch_size, C, "batch_size"), segment_size=args.segment_size,
        recon_steps=_pick(args.recon_steps, C, "recon_steps"), stft_weight=_pick(args.stft_weight, C, "stft_weight"),
        disc_width_div=_pick(args.disc_width_div, C, "disc_width_div"),
        checkpoint_every=_pick(args.checkpoint_every, C, "checkpoint_every"), keep=args.keep,
        val_every=_pick(args.val_every, C, "val_every"), log_every=_pick(args.log_every, C, "log_every"),
        max_minutes=args.max_minutes, seed=_pick(args.seed, C, "seed"), peak_normalize=args.peak_normalize,
        singer=args.singer, refiner=s(args.refiner),
        refiner_strength=_pick(args.refiner_strength, C, "refiner_strength"),
        refiner_steps=_pick(args.refiner_steps, C, "refiner_steps"), cache_dir=s(args.cache_dir), device=args.device,
    )
    g = train_vocoder(cfg, args.out, progress=_progress())
    if g is not None:
        print(f"newest checkpoint: {g}")
    return 0


def _progress() -> bool:
    """Progress bars on a terminal only (quiet when piped)."""
    from canora.cli.progress import enabled

    return enabled()
