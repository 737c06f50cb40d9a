"""``canora vocode``: mels (.npy) or audio (copy-synthesis) -> waveforms with a HiFi-GAN vocoder."""

from __future__ import annotations

import argparse
from pathlib import Path

from canora.commands.common import add_device_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "vocode",
        help="mels (.npy) or audio -> wav with a HiFi-GAN vocoder",
        description="Synthesise <stem>.wav from <stem>.npy mels of shape (n_mels, T). Audio inputs are "
        "analysed with the vocoder's own MelSpec and resynthesised (copy-synthesis). Mels are checked "
        "against the vocoder's MelSpec first: a mel in another convention is an error, not noise.",
    )
    p.add_argument("input", type=Path, help="a .npy mel or audio file, or a directory of them")
    p.add_argument("-o", "--out", type=Path, required=True, help="output directory (must not be the input)")
    p.add_argument(
        "--checkpoint", required=True, type=Path,
        help="official generator file (g_XXXXXXXX, generator_v2), its directory, or a canora vocoder export",
    )
    p.add_argument("--config", default=None, help="config.json for the checkpoint (default: the one beside it)")
    p.add_argument("--float", action="store_true", help="write 32-bit float wavs instead of 16-bit PCM")
    add_device_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from canora.audio import AUDIO_EXTENSIONS, load_audio, save_wav
    from canora.commands.common import apply_device_args, finish, list_inputs, run_batch
    from canora.fileio import check_output_dir
    from canora.mel import wav_to_mel
    from canora.melio import load_mel
    from canora.vocoder import Vocoder

    apply_device_args(args)
    voc = Vocoder.from_pretrained(args.checkpoint, config=args.config, device=args.device)
    files = list_inputs(args.input, (".npy", *AUDIO_EXTENSIONS))
    check_output_dir(args.input, args.out)
    spec = voc.spec

    def one(f: Path) -> float:
        if f.suffix.lower() == ".npy":
            mel = load_mel(f, spec)
        else:
            mel = wav_to_mel(load_audio(f, spec.sample_rate), spec)
        wav = voc.vocode(mel)
        save_wav(args.out / f"{f.stem}.wav", wav, spec.sample_rate, subtype="FLOAT" if args.float else "PCM_16")
        return len(wav) / spec.sample_rate

    return finish(run_batch(files, one, "vocode"), "vocoded")
