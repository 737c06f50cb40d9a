"""``canora refine``: mels (.npy) or audio -> refined mels (``<stem>.npy``, (n_mels, T)) + ``<stem>.f0.npy``."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canora.cli.common import (
    HelpFormatter,
    add_file_command_args,
    add_model_arg,
    add_voice_arg,
    finite_float,
    float_in,
    int_in,
    seed_arg,
)

log = logging.getLogger("canora")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from canora.pipeline import MAX_TRANSPOSE
    from canora.refiner.base import DEFAULT_SAMPLER, DEFAULT_STEPS, DEFAULT_STRENGTH
    from canora.refiner.samplers import MAX_STEPS, available_samplers

    p = sub.add_parser(
        "refine", formatter_class=HelpFormatter,
        help="refine mels toward a target singer with the diffusion refiner",
        description="Refine log-mels toward a target singer and write <stem>.npy (n_mels, T), the layout "
        "`canora vocode` and HiFi-GAN read, plus <stem>.f0.npy: the frame-aligned F0 in Hz after transpose "
        "(0 = unvoiced) that F0-driven vocoders need. Audio inputs are analysed with the model's MelSpec and "
        "extractors. For .npy mel inputs, F0, loudness and content come from the matching audio in --audio DIR "
        "(<stem>.wav etc.) when given, else from a Griffin-Lim reconstruction of the mel (rougher F0; a "
        "warning says so). A mel_spec.json beside the mels (canora mel --save-spec) or --mel-spec is checked "
        "against the model's MelSpec.",
    )
    p.add_argument("input", type=Path, help="a .npy mel or audio file, or a directory of them")
    p.add_argument("-o", "--out", type=Path, required=True,
                   help="output directory (not the input's), or NAME.npy for one input (+ NAME.f0.npy)")
    add_model_arg(p, "refiner", alias="--model")
    add_voice_arg(p)
    p.add_argument("--singer", default=None, help="target singer name (optional for one-singer models), or a "
                   "mix such as a:0.7,b:0.3")
    p.add_argument("--sampler", choices=available_samplers(), default=DEFAULT_SAMPLER, help="the sampler")
    p.add_argument("--steps", type=int_in(1, MAX_STEPS), default=DEFAULT_STEPS, help="denoising steps")
    p.add_argument(
        "--strength", type=float_in(0, 1, lo_open=True), default=DEFAULT_STRENGTH,
        help="shallow-diffusion depth in (0, 1]: the noise level the source mel is taken to; "
        "1 = generate from pure noise, conditioned only on features",
    )
    key = p.add_mutually_exclusive_group()
    key.add_argument("--transpose", type=finite_float, default=0.0, metavar="SEMITONES",
                     help=f"shift the pitch by N semitones, within +-{MAX_TRANSPOSE:g} (default 0: the mels keep "
                     "their pitch, so `canora report` compares like with like)")
    key.add_argument(
        "--auto-transpose", action="store_true",
        help="move each input toward the target singer's range (statistics stored in the model): whole octaves "
        "(the key kept) unless --key-mode free. Chosen per file: for the phrases of one song, `canora convert` "
        "(one key per song, automatic by default) or one --transpose",
    )
    p.add_argument("--key-mode", choices=("octave", "free"), default=None,
                   help="with --auto-transpose: octave (the default) keeps the key, free allows any semitone")
    p.add_argument("--match-level", action=argparse.BooleanOptionalAction, default=True,
                   help="let the refiner see each input at the target singer's usual voiced level (a quiet recording "
                   "is not soft singing); the refined mel keeps the input's own level (default: on)")
    p.add_argument("--seed", type=seed_arg, default=0, help="random seed; the same seed gives the same output")
    p.add_argument("--audio", type=Path, default=None, help="directory of the source audio of .npy mel inputs")
    p.add_argument("--mel-spec", type=Path, default=None, help="MelSpec JSON the input mels were made with")
    add_file_command_args(p, run)


def _find_audio(directory: Path, stem: str) -> Path | None:
    from canora.io.audio import AUDIO_EXTENSIONS

    for ext in AUDIO_EXTENSIONS:
        for cand in (directory / f"{stem}{ext}", directory / f"{stem}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


def run(args: argparse.Namespace) -> int:
    from canora.cli.batch import finish, run_batch
    from canora.cli.common import (
        apply_device_args,
        apply_voice,
        check_audio_header,
        check_outputs,
        load_refiner,
    )

    _check_options(args)
    apply_device_args(args)
    files, outputs = _plan(args)
    check_outputs([p for outs in outputs.values() for p in outs], args, inputs=files)
    apply_voice(args)
    check_audio_header(files)
    refiner = load_refiner(args.refiner, device=args.device)
    refiner.singer_label(args.singer)  # unknown singer or bad mix: fail before any work
    _check_mel_spec(args, files, refiner)
    res = run_batch(files, _Job(args, refiner, outputs).one, "refine", outputs.__getitem__)
    return finish(res, f"refined ({args.sampler}, {args.steps} steps, strength {args.strength:g}, singer "
                  f"{refiner.singer_label(args.singer)})")


def _check_options(args: argparse.Namespace) -> None:
    from canora.errors import CanoraError
    from canora.pipeline import check_transpose
    from canora.refiner.samplers import check_steps_strength

    check_steps_strength(args.steps, args.strength, ("--steps", "--strength"))
    if not args.auto_transpose:
        check_transpose(args.transpose, "--transpose")
        if args.key_mode is not None:
            raise CanoraError("--key-mode chooses the key of --auto-transpose; add --auto-transpose or drop it")
    args.key_mode = args.key_mode or "octave"


def _plan(args: argparse.Namespace) -> tuple[list[Path], dict[Path, list[Path]]]:
    """-> (the inputs, the outputs of each: <stem>.npy and <stem>.f0.npy); --audio checked."""
    from canora.cli.common import list_inputs, plan_outputs
    from canora.errors import CanoraError
    from canora.io.audio import AUDIO_EXTENSIONS

    files = list_inputs(args.input, (".npy", *AUDIO_EXTENSIONS), lambda f: f.name.endswith(".f0.npy"),
                        recursive=args.recursive)
    mels = plan_outputs(args.input, files, args.out, ".npy", (".npy",), "refine")
    outputs = {f: [m, m.with_name(m.name.removesuffix(".npy") + ".f0.npy")] for f, m in mels.items()}
    if args.audio is not None and not args.audio.is_dir():
        raise CanoraError(f"{args.audio}: --audio must be a directory holding the source audio of the mels")
    return files, outputs


def _check_mel_spec(args: argparse.Namespace, files: list[Path], refiner: Any) -> None:
    """The MelSpec the .npy inputs were made with (--mel-spec, or mel_spec.json beside them), checked against the
    refiner's."""
    from canora.dsp.mel import MelSpec
    from canora.errors import CanoraError
    from canora.io.files import read_json_object

    spec_file = args.mel_spec
    if spec_file is None and args.input.is_dir() and (args.input / "mel_spec.json").is_file():
        spec_file = args.input / "mel_spec.json"
    if spec_file is not None and any(f.suffix.lower() == ".npy" for f in files):
        try:
            mel_spec = MelSpec.from_dict(read_json_object(spec_file, "fix or re-create the file"), str(spec_file))
        except CanoraError as e:
            raise CanoraError(str(e) if str(spec_file) in str(e) else f"{spec_file}: {e}") from None
        refiner.check_spec(mel_spec, name=f"mels described by {spec_file}")


@dataclass
class _Job:
    """One file of the batch: its features (from the audio, or from a .npy mel and its audio), refined, written."""

    args: argparse.Namespace
    refiner: Any
    outputs: dict[Path, list[Path]]
    warned: bool = False

    def features(self, f: Path) -> Any:
        from canora.errors import CanoraError
        from canora.io.audio import load_audio
        from canora.io.melfiles import load_mel

        args, refiner, sr = self.args, self.refiner, self.refiner.spec.sample_rate
        if f.suffix.lower() != ".npy":
            return refiner.features(load_audio(f, sr), sr, name=str(f))
        mel = load_mel(f, refiner.spec)
        src = _find_audio(args.audio, f.stem) if args.audio is not None else None
        if args.audio is not None and src is None:
            raise CanoraError(f"{f}: no audio named {f.stem}.* in {args.audio} to take F0 and loudness from")
        if src is None and not self.warned:
            log.warning("no --audio: F0, loudness and content of the .npy mels come from a Griffin-Lim "
                        "reconstruction of each mel (pass --audio DIR for the real source audio)")
            self.warned = True
        wav = load_audio(src, sr) if src is not None else None
        return refiner.mel_features(mel, wav, sr, name=str(f))

    def one(self, f: Path) -> float:
        from canora.cli.common import emit
        from canora.io.files import OutputSet, npy_bytes
        from canora.io.melfiles import mel_bytes

        args = self.args
        res = self.refiner.refine_features(
            self.features(f), args.singer, transpose=args.transpose, auto_transpose=args.auto_transpose,
            key_mode=args.key_mode, sampler=args.sampler, steps=args.steps, strength=args.strength, seed=args.seed,
            match_level=args.match_level,
        )
        if args.auto_transpose:
            log.info("%s: auto-transpose %+.1f semitones", f.name, res.transpose)
        if res.level is not None:
            log.info("%s: level %s", f.name, res.level.reason)
        out = self.outputs[f]
        with OutputSet(args.overwrite) as written:  # the mel and its F0 appear together or not at all
            written.add(out[0], mel_bytes(res.mel))
            written.add(out[1], npy_bytes(res.f0))
        emit(out[0])
        return res.mel.shape[1] * self.refiner.spec.hop_length / self.refiner.spec.sample_rate
