"""``canora demo``: synthesise a short sung phrase and run the pipeline on it (no recordings needed)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="synthesise a sung phrase and run the pipeline on it",
        description="Synthesise a short sung phrase (demo_out/phrase.wav), extract its HiFi-GAN mel "
        "(phrase.npy) and, with the bundled default models, convert it (phrase_converted.wav).",
    )
    p.add_argument("-o", "--out", type=Path, default=Path("demo_out"), help="output directory (default demo_out)")
    p.add_argument("--refiner", type=Path, default=None, help="refiner export (default: the bundled one)")
    p.add_argument("--vocoder", type=Path, default=None, help="vocoder (default: the bundled one)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from canora.demo import synth_phrase
    from canora.dsp.mel import MelSpec, wav_to_mel
    from canora.io.audio import save_wav
    from canora.io.melfiles import save_mel

    spec = MelSpec()
    wav = synth_phrase(spec.sample_rate)
    save_wav(args.out / "phrase.wav", wav, spec.sample_rate)
    mel = wav_to_mel(wav, spec)
    save_mel(args.out / "phrase.npy", mel)
    print(f"wrote {args.out / 'phrase.wav'} ({len(wav) / spec.sample_rate:.1f} s) and its mel "
          f"{args.out / 'phrase.npy'} {mel.shape}", file=sys.stderr)
    from canora.pipeline import Converter

    conv = Converter.from_pretrained(args.refiner, args.vocoder)
    res = conv.convert(wav, spec.sample_rate, auto_transpose=True, progress=True, name="phrase.wav")
    out = args.out / "phrase_converted.wav"
    save_wav(out, res.audio, res.sample_rate)
    save_mel(args.out / "phrase_converted.npy", res.mel)
    print(f"converted it to singer {res.singer!r} (transpose {res.transpose:+.0f} semitones, "
          f"real-time factor {res.stats['real_time_factor']:.2f}): {out}", file=sys.stderr)
    return 0
