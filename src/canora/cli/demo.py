"""``canora demo``: synthesise a short sung phrase and run the pipeline on it (no recordings needed)."""

from __future__ import annotations

import argparse
from pathlib import Path

from canora.cli.common import HelpFormatter, add_device_args, add_model_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", formatter_class=HelpFormatter,
        help="synthesise a sung phrase and run the pipeline on it",
        description="Synthesise a short sung phrase (demo_out/phrase.wav), extract its HiFi-GAN mel "
        "(phrase.npy) and, with the bundled default models, convert it (phrase_converted.wav). Running it again "
        "replaces the demo's own four files (never anything else) unless --keep is given.",
    )
    p.add_argument("-o", "--out", type=Path, default=Path("demo_out"), help="output directory")
    add_model_arg(p, "refiner")
    add_model_arg(p, "vocoder")
    p.add_argument("--keep", action="store_true", help="refuse to replace the files of an earlier demo run")
    add_device_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from canora.analysis.collapse import collapse_check
    from canora.cli.common import (
        apply_device_args,
        check_outputs,
        emit,
        load_converter,
        require_dir_out,
        warn_if_collapsed,
    )
    from canora.demo import synth_phrase
    from canora.dsp.mel import MelSpec, wav_to_mel
    from canora.io.audio import audio_bytes
    from canora.io.files import OutputSet
    from canora.io.melfiles import mel_bytes

    require_dir_out(args.out, "demo")
    names = ("phrase.wav", "phrase.npy", "phrase_converted.wav", "phrase_converted.npy")
    args.overwrite = not args.keep  # the demo's own files, named by the demo: running it again replaces them
    check_outputs([args.out / n for n in names], args)
    from canora.backends import choose_backend

    chosen = choose_backend("auto", args.device, models=((args.refiner, "refiner"), (args.vocoder, "vocoder")))
    apply_device_args(args)
    conv = load_converter(args.refiner, args.vocoder, device=args.device, backend="onnx" if chosen == "onnx" else None)
    spec = MelSpec()
    wav = synth_phrase(spec.sample_rate)
    mel = wav_to_mel(wav, spec)
    with OutputSet() as written:
        written.add(args.out / "phrase.wav", audio_bytes(args.out / "phrase.wav", wav, spec.sample_rate))
        written.add(args.out / "phrase.npy", mel_bytes(mel))
    print(f"wrote {args.out / 'phrase.wav'} ({len(wav) / spec.sample_rate:.1f} s) and its mel "
          f"{args.out / 'phrase.npy'} {mel.shape}", file=sys.stderr)
    res = conv.convert(wav, spec.sample_rate, progress=sys.stderr.isatty(), name="phrase.wav")
    warn_if_collapsed(collapse_check(res, conv.spec), "phrase.wav")
    out = args.out / "phrase_converted.wav"
    with OutputSet() as written:
        written.add(out, audio_bytes(out, res.audio, res.sample_rate))
        written.add(args.out / "phrase_converted.npy", mel_bytes(res.mel))
    print(f"converted it to singer {res.singer!r} (transpose {res.transpose:+.0f} semitones, "
          f"real-time factor {res.stats['real_time_factor']:.2f})", file=sys.stderr)
    for n in names:
        emit(args.out / n)
    return 0
