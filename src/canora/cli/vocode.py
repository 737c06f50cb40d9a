"""``canora vocode``: mels (.npy) or audio (copy-synthesis) -> waveforms with a HiFi-GAN or NSF vocoder."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canora.cli.common import (
    HelpFormatter,
    add_file_command_args,
    add_mel_match_arg,
    add_model_arg,
)
from canora.errors import CanoraError

log = logging.getLogger("canora")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from canora.backends import BACKEND_CHOICES
    from canora.dsp.melmatch import MEL_MATCH_ITERS

    p = sub.add_parser(
        "vocode", formatter_class=HelpFormatter,
        help="mels (.npy) or audio -> wav with a HiFi-GAN vocoder",
        description="Synthesise <stem>.wav from <stem>.npy mels of shape (n_mels, T). Audio inputs are "
        "analysed with the vocoder's own MelSpec and resynthesised (copy-synthesis). Mels are checked "
        "against the vocoder's MelSpec first: a mel in another convention is an error, not noise. F0-driven "
        "(NSF) vocoders take the F0 of <stem>.npy from <stem>.f0.npy beside it (what `canora refine` and "
        "`canora convert --save-mel` write), from the audio for audio inputs, and otherwise estimate it from "
        "the mel (Griffin-Lim + an F0 tracker: slower and rougher; a warning says so). The NSF vocoder's output is "
        "high-passed at 40 Hz (no DC or rumble); official HiFi-GAN output is written as the generator makes it.",
    )
    p.add_argument("input", type=Path, help="a .npy mel or audio file, or a directory of them")
    p.add_argument("-o", "--out", type=Path, required=True,
                   help="output directory (not the input's), or NAME.wav / NAME.flac for one input")
    add_model_arg(p, "vocoder", alias="--checkpoint",
                  help="the vocoder: an official generator file (g_XXXXXXXX, generator_v2), its directory, a canora "
                  "vocoder export, or 'bundled' for canora's NSF-HiFi-GAN")
    p.add_argument("--config", default=None, help="config.json for the checkpoint (default: the one beside it)")
    p.add_argument("--float", action="store_true", help="write 32-bit float wavs instead of 16-bit PCM")
    p.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                   help="run the vocoder on torch or ONNX Runtime; auto: ONNX Runtime when the vocoder is an ONNX "
                   "export or its copy is kept (`canora export VOCODER --cache`), else torch")
    add_mel_match_arg(p, None, f"default: {MEL_MATCH_ITERS} for canora's NSF vocoders, 0 for official HiFi-GANs, whose "
                      "output stays the official code's")
    add_file_command_args(p, run)


def run(args: argparse.Namespace) -> int:
    from canora.cli.batch import finish, run_batch
    from canora.cli.common import (
        apply_device_args,
        audio_output_bytes,
        check_audio_header,
        check_outputs,
        list_inputs,
        load_vocoder,
        model_backend,
        plan_outputs,
    )
    from canora.io.audio import AUDIO_EXTENSIONS, output_format

    apply_device_args(args)
    files = list_inputs(args.input, (".npy", *AUDIO_EXTENSIONS), _skip, recursive=args.recursive)
    outputs = plan_outputs(args.input, files, args.out, ".wav", (".wav", ".flac"), "vocode")
    for out in outputs.values():
        output_format(out, _subtype(args))
    check_outputs(outputs.values(), args, inputs=files)
    check_audio_header(files)
    backend = model_backend(args, False, models=((args.vocoder, "vocoder"),), config=args.config) \
        if _may_have_a_copy(args) else None
    voc = load_vocoder(args.vocoder, config=args.config, device=args.device, backend=backend)
    check_outputs(outputs.values(), args, inputs=files,
                  need_bytes=audio_output_bytes([f for f in files if f.suffix.lower() != ".npy"],
                                                voc.spec.sample_rate, 4 if args.float else 2))
    job = _Job(args, voc, outputs)
    return finish(run_batch(files, job.one, "vocode", lambda f: [outputs[f]]), "vocoded")


def _may_have_a_copy(args: argparse.Namespace) -> bool:
    """Whether to look for the vocoder's ONNX copy: not for ``--backend torch``, and only for a model in regular
    files with its config a file (a builtin config name, a pipe or a missing path goes to the loader, whose error
    line names it)."""
    from canora.io.models import resolve_model

    if args.backend == "torch":
        return False
    try:
        path = resolve_model(args.vocoder, "vocoder")
    except CanoraError:
        return False
    config_ok = args.config is None or Path(args.config).is_file()
    return config_ok and (path.is_dir() or path.is_file())


def _skip(f: Path) -> bool:
    """F0 tracks are no mels; audio beside its own mel (convert --save-mel) is vocoded once."""
    return f.name.endswith(".f0.npy") or (f.suffix.lower() != ".npy" and f.with_suffix(".npy").is_file())


def _subtype(args: argparse.Namespace) -> str:
    return "FLOAT" if args.float else "PCM_16"


@dataclass
class _Job:
    """One file of the batch: its mel (and F0, for an NSF vocoder), vocoded, written."""

    args: argparse.Namespace
    voc: Any
    outputs: dict[Path, Path]
    warned: bool = False

    def mel_and_f0(self, f: Path) -> tuple[Any, Any]:
        from canora.dsp.mel import wav_to_mel
        from canora.dsp.pitch import extract_f0
        from canora.io.audio import load_audio
        from canora.io.melfiles import load_f0, load_mel

        voc, spec, f0 = self.voc, self.voc.spec, None
        if f.suffix.lower() == ".npy":
            mel = load_mel(f, spec)
            side = f.with_name(f.stem + ".f0.npy")
            if voc.needs_f0 and side.is_file():
                f0 = load_f0(side, mel.shape[1])
            elif voc.needs_f0 and not self.warned:
                log.warning("no <stem>.f0.npy beside the mels: estimating F0 from each mel for the NSF vocoder")
                self.warned = True
        else:
            audio = load_audio(f, spec.sample_rate)
            mel = wav_to_mel(audio, spec)
            if voc.needs_f0:
                f0 = extract_f0(audio, spec.sample_rate, hop_length=spec.hop_length, n_frames=mel.shape[1])
        return mel, f0

    def one(self, f: Path) -> float:
        from canora.cli.common import emit
        from canora.dsp.melmatch import MEL_MATCH_ITERS, mel_match
        from canora.io.audio import audio_writer
        from canora.io.files import atomic_open

        voc, spec = self.voc, self.voc.spec
        mel, f0 = self.mel_and_f0(f)
        wav = voc.vocode(mel, f0)
        rounds = self.args.mel_match
        rounds = (MEL_MATCH_ITERS if voc.needs_f0 else 0) if rounds is None else rounds
        if rounds:
            wav = mel_match(wav, mel, spec, rounds)
        if voc.needs_f0:  # canora's singing vocoder: no DC or rumble below the lowest sung note (official HiFi-GANs
            from canora.dsp.filters import highpass  # stay bit-exact with the official code)

            wav = highpass(wav, spec.sample_rate)
        with atomic_open(self.outputs[f], self.args.overwrite) as out:
            audio_writer(self.outputs[f], wav, spec.sample_rate, subtype=_subtype(self.args))(out)
        emit(self.outputs[f])
        return len(wav) / spec.sample_rate
