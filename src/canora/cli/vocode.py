"""``canora vocode``: mels (.npy) or audio (copy-synthesis) -> waveforms with a HiFi-GAN or NSF vocoder."""

from __future__ import annotations

import argparse
from pathlib import Path

from canora.cli.common import add_device_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "vocode",
        help="mels (.npy) or audio -> wav with a HiFi-GAN vocoder",
        description="Synthesise <stem>.wav from <stem>.npy mels of shape (n_mels, T). Audio inputs are "
        "analysed with the vocoder's own MelSpec and resynthesised (copy-synthesis). Mels are checked "
        "against the vocoder's MelSpec first: a mel in another convention is an error, not noise. F0-driven "
        "(NSF) vocoders take the F0 of <stem>.npy from <stem>.f0.npy beside it (what `canora refine` and "
        "`canora convert --save-mel` write), from the audio for audio inputs, and otherwise estimate it from "
        "the mel (Griffin-Lim + an F0 tracker: slower and rougher; a warning says so).",
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
    import logging

    from canora.cli.common import apply_device_args, finish, list_inputs, run_batch
    from canora.dsp.mel import wav_to_mel
    from canora.dsp.pitch import extract_f0
    from canora.io.audio import AUDIO_EXTENSIONS, load_audio, save_wav
    from canora.io.files import check_output_dir
    from canora.io.melfiles import load_f0, load_mel
    from canora.vocoder import Vocoder

    log = logging.getLogger("canora")
    apply_device_args(args)
    voc = Vocoder.from_pretrained(args.checkpoint, config=args.config, device=args.device)
    def skip(f: Path) -> bool:  # F0 tracks are no mels; audio beside its own mel (convert --save-mel) is vocoded once
        return f.name.endswith(".f0.npy") or (f.suffix.lower() != ".npy" and f.with_suffix(".npy").is_file())

    files = list_inputs(args.input, (".npy", *AUDIO_EXTENSIONS), skip)
    check_output_dir(args.input, args.out)
    spec = voc.spec
    warned = False

    def one(f: Path) -> float:
        nonlocal warned
        f0 = None
        if f.suffix.lower() == ".npy":
            mel = load_mel(f, spec)
            side = f.with_name(f.stem + ".f0.npy")
            if voc.needs_f0 and side.is_file():
                f0 = load_f0(side, mel.shape[1])
            elif voc.needs_f0 and not warned:
                log.warning("no <stem>.f0.npy beside the mels: estimating F0 from each mel for the NSF vocoder")
                warned = True
        else:
            audio = load_audio(f, spec.sample_rate)
            mel = wav_to_mel(audio, spec)
            if voc.needs_f0:
                f0 = extract_f0(audio, spec.sample_rate, hop_length=spec.hop_length, n_frames=mel.shape[1])
        wav = voc.vocode(mel, f0)
        save_wav(args.out / f"{f.stem}.wav", wav, spec.sample_rate, subtype="FLOAT" if args.float else "PCM_16")
        return len(wav) / spec.sample_rate

    return finish(run_batch(files, one, "vocode"), "vocoded")
