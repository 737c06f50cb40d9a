"""``canora mel``: audio -> HiFi-GAN-exact log-mel ``.npy`` files of shape (n_mels, T)."""

from __future__ import annotations

import argparse
from pathlib import Path

from canora.cli.common import HelpFormatter, add_audio_limit_arg, add_overwrite_arg, add_recursive_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mel", formatter_class=HelpFormatter,
        help="extract HiFi-GAN log-mels (<stem>.npy, shape (80, T))",
        description="Extract log-mel spectrograms exactly as the official HiFi-GAN computes them "
        "and save <stem>.npy of shape (n_mels, T), the layout HiFi-GAN fine-tuning reads.",
    )
    p.add_argument("input", type=Path, help="an audio file or a directory of audio files")
    p.add_argument("-o", "--out", type=Path, required=True,
                   help="output directory (not the input's), or NAME.npy for one input")
    p.add_argument("--config", default="v1", help="v1, v2, v3, a HiFi-GAN config.json or a MelSpec JSON")
    p.add_argument(
        "--normalize", action="store_true",
        help="peak-normalise audio to 0.95 first, as official HiFi-GAN *training* does "
        "(inference and fine-tuning mels are made from raw audio: the default)",
    )
    p.add_argument("--save-spec", action="store_true", help="also write mel_spec.json describing the mels")
    add_overwrite_arg(p)
    add_recursive_arg(p)
    add_audio_limit_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from canora.cli.batch import finish, run_batch
    from canora.cli.common import check_outputs, emit, list_inputs, load_spec_arg, plan_outputs
    from canora.dsp.mel import wav_to_mel
    from canora.io.audio import AUDIO_EXTENSIONS, load_audio
    from canora.io.files import atomic_write_text
    from canora.io.melfiles import save_mel

    spec = load_spec_arg(args.config)
    files = list_inputs(args.input, AUDIO_EXTENSIONS, recursive=args.recursive)
    outputs = plan_outputs(args.input, files, args.out, ".npy", (".npy",), "mel")
    spec_json = next(iter(outputs.values())).parent / "mel_spec.json"
    check_outputs([*outputs.values(), *([spec_json] if args.save_spec else [])], args, inputs=files)

    def one(f: Path) -> float:
        wav = load_audio(f, spec.sample_rate)
        if args.normalize:
            wav = wav * (0.95 / float(np.abs(wav).max()))
        save_mel(outputs[f], wav_to_mel(wav, spec), overwrite=args.overwrite)
        emit(outputs[f])
        return len(wav) / spec.sample_rate

    res = run_batch(files, one, "mel", lambda f: [outputs[f]])
    if args.save_spec and res.done:
        atomic_write_text(spec_json, spec.to_json() + "\n")
        emit(spec_json)
    return finish(res, f"wrote mels ({spec.describe()}) for")
