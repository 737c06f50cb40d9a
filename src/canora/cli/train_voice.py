"""``canora train-voice``: a voice of your own from a few minutes of recordings, fine-tuned from a base."""

from __future__ import annotations

import argparse
from pathlib import Path

from canora.cli.common import (
    MAX_TRAIN_MINUTES,
    MAX_TRAIN_STEPS,
    HelpFormatter,
    add_file_command_args,
    float_in,
    int_in,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-voice", formatter_class=HelpFormatter,
        help="make a voice (for --voice NAME) from a few minutes of one singer's recordings",
        description="Check the recordings (clipping, too little voice, accompaniment or noise besides the voice, "
        "mixed sample rates), cut them at silences, hold out about 10 % of the audio, fine-tune the refiner from "
        "a base (the bundled multi-singer base unless --base) for at most --minutes on this machine's CPU (and with "
        "--vocoder-share the NSF vocoder from the bundled one), score the result on the held-out audio (singer "
        "similarity, pitch error by two trackers) and save a voice folder in the voices directory (see `canora "
        "voices`). Running it again with the same --work resumes the training where it stopped.",
    )
    p.add_argument("recordings", type=Path, help="a folder of one singer's recordings (a cappella is best)")
    p.add_argument("--name", required=True, help="the voice's name (letters, digits, _ . -)")
    p.add_argument("--base", default="bundled-base", metavar="EXPORT|bundled-base|bundled",
                   help="the refiner to fine-tune from: canora's multi-singer base, its PJS refiner, or an export")
    p.add_argument("--minutes", type=float_in(0, MAX_TRAIN_MINUTES, lo_open=True), default=10.0,
                   help="CPU time for the fine-tuning, at most (10: on the voice benchmark, 30 gained nothing over 10)")
    p.add_argument("--steps", type=int_in(1, MAX_TRAIN_STEPS), default=100_000, help="refiner steps, at most")
    p.add_argument("--vocoder-share", type=float_in(0, 1, hi_open=True), default=0.0,
                   help="share of --minutes spent fine-tuning the NSF vocoder too (0 = keep the bundled one)")
    p.add_argument("--vocoder", default="bundled", metavar="EXPORT|bundled",
                   help="the NSF vocoder the voice uses (and fine-tunes from, with --vocoder-share); an export is "
                   "copied into the voice folder")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="the voices directory to save into (default: $CANORA_VOICES or ~/.local/share/canora/voices)")
    p.add_argument("--work", type=Path, default=None, help="working directory (default: <voices>/.work/<name>)")
    add_file_command_args(p, run, recursive=False)


def run(args: argparse.Namespace) -> int:
    import sys

    from canora.cli.common import apply_device_args
    from canora.cli.progress import enabled as progress_enabled
    from canora.errors import CanoraError
    from canora.io.voices import check_name, voices_dir
    from canora.training.voice import train_voice

    check_name(args.name)
    if not args.recordings.is_dir():
        raise CanoraError(f"{args.recordings}: not a folder of recordings")
    voices = args.out or voices_dir()
    if (voices / args.name).exists() and not args.overwrite:
        raise CanoraError(f"{voices / args.name}: a voice of that name exists; choose another --name or --overwrite")
    voices.mkdir(parents=True, exist_ok=True)
    apply_device_args(args)
    folder = train_voice(args.recordings, args.name, work=args.work or voices / ".work" / args.name, voices=voices,
                         base=args.base, minutes=args.minutes, steps=args.steps, vocoder_share=args.vocoder_share,
                         overwrite=args.overwrite, vocoder=args.vocoder, progress=progress_enabled())
    print(folder)
    print(f"voice {args.name!r} saved in {folder}; convert with --voice {args.name} "
          f"(model card: {folder / 'README.md'})", file=sys.stderr)
    return 0
