"""``canora convert``: songs in, songs out in the target singer's voice (refiner + vocoder, bundled by default)."""

from __future__ import annotations

import argparse
from pathlib import Path

from canora.cli.common import add_device_args

DESCRIPTION = """\
Convert recordings to the target singer's voice: wav -> HiFi-GAN mel + F0, loudness, content -> diffusion
refiner -> vocoder -> wav. Without --refiner / --vocoder it uses the bundled default models (a refiner
trained on the PJS singer and canora's NSF-HiFi-GAN singing vocoder).

Long recordings are cut at silences (slices of at most --max-slice-seconds, so memory stays bounded), each
slice is converted and the slices are cross-faded back together; the source's loudness envelope is kept
and its silences stay silent. The key is chosen once per file (--transpose N or --auto-transpose).

IN is an audio file or a directory of them; OUT is a .wav path for one input, else a directory that gets
<stem>.wav plus <stem>.json (settings, transpose, timing, and with --cycle-error the vocoder's mel cycle
error: what `canora eval` reads).
Inputs are never overwritten. A directory run skips unreadable files, says which, and exits with status 1.
Under torchrun (torchrun --nproc_per_node N -m canora convert DIR -o OUT) each process converts its own
share of the files (every file exactly once).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert songs to the target singer's voice (bundled models by default)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path, help="an audio file or a directory of them")
    p.add_argument("-o", "--out", type=Path, required=True, help="output .wav (one input) or directory")
    p.add_argument("--singer", default=None, help="target singer (default: the refiner's only singer)")
    key = p.add_mutually_exclusive_group()
    key.add_argument("--transpose", type=float, default=0.0, help="shift the pitch by N semitones (default 0)")
    key.add_argument("--auto-transpose", action="store_true",
                     help="move each song toward the target singer's range: whole octaves (the key kept) unless "
                     "--key-mode free")
    p.add_argument("--key-mode", choices=("octave", "free"), default="octave",
                   help="with --auto-transpose: octave keeps the key (whole octaves only; default), free allows "
                   "any semitone")
    p.add_argument("--sampler", default=None, help="ddpm, ddim or dpmpp (default: dpmpp)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default 10)")
    p.add_argument("--strength", type=float, default=None,
                   help="shallow-diffusion depth in (0, 1]: how far from the source mel the refiner may go "
                   "(1 = from pure noise; default 0.6)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same output")
    p.add_argument("--refiner", type=Path, default=None, help="refiner export (default: bundled PJS refiner)")
    p.add_argument("--vocoder", type=Path, default=None,
                   help="vocoder export or official HiFi-GAN checkpoint (default: bundled NSF-HiFi-GAN)")
    p.add_argument("--max-slice-seconds", type=float, default=30.0, help="longest slice converted at once (30)")
    p.add_argument("--save-mel", action="store_true",
                   help="also write the refined mel <stem>.npy (n_mels, T) and its F0 <stem>.f0.npy")
    p.add_argument("--float", action="store_true", help="write 32-bit float wavs instead of 16-bit PCM")
    p.add_argument("--cycle-error", action="store_true",
                   help="also measure the vocoder's mel cycle error on the refined mel (one more mel of the output) "
                   "and write it into <stem>.json for `canora eval`")
    add_device_args(p)
    p.set_defaults(run=run)


def _outputs(files: list[Path], args: argparse.Namespace) -> dict[Path, Path]:
    """Output wav path per input; refuses to overwrite an input or to write one file for many inputs."""
    from canora.errors import CanoraError
    from canora.io.files import check_not_input, check_output_dir

    out: Path = args.out
    if out.suffix.lower() == ".wav" and not args.input.is_dir():
        check_not_input(out, files[0])
        return {files[0]: out}
    if out.suffix.lower() == ".wav" and args.input.is_dir():
        raise CanoraError(f"{out}: a directory of inputs needs an output directory, not a .wav file")
    check_output_dir(args.input, out)
    if out.exists() and not out.is_dir():
        raise CanoraError(f"{out}: exists and is not a directory; choose another -o")
    inputs = {f.resolve() for f in files}
    mapping = {f: out / f"{f.stem}.wav" for f in files}
    for o in mapping.values():
        if o.resolve() in inputs:
            raise CanoraError(f"{o}: refusing to overwrite an input file; choose another -o")
    return mapping


def run(args: argparse.Namespace) -> int:
    import json
    import logging
    import math
    import os

    from canora.cli.common import apply_device_args, finish, list_inputs, run_batch
    from canora.errors import CanoraError
    from canora.io.audio import AUDIO_EXTENSIONS, read_audio, save_wav
    from canora.io.files import atomic_save_npy, atomic_write_text
    from canora.io.melfiles import save_mel
    from canora.pipeline import Converter
    from canora.refiner.samplers import check_steps_strength

    log = logging.getLogger("canora")
    if args.steps is not None or args.strength is not None:
        check_steps_strength(10 if args.steps is None else args.steps, 0.6 if args.strength is None else args.strength)
    apply_device_args(args)
    files = list_inputs(args.input, AUDIO_EXTENSIONS)
    outputs = _outputs(files, args)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world > 1:
        files = files[rank::world]
        log.info("rank %d of %d: converting %d of the files", rank, world, len(files))
    conv = Converter.from_pretrained(args.refiner, args.vocoder, device=args.device)
    singer = conv.singers[conv.refiner.singer_index(args.singer)]  # unknown singer: fail before any work
    if not math.isfinite(args.transpose) or not math.isfinite(args.max_slice_seconds) or args.max_slice_seconds < 1:
        raise CanoraError("--transpose must be finite and --max-slice-seconds a number >= 1")
    progress = len(files) == 1

    def one(f: Path) -> float:
        wav, sr = read_audio(f)
        res = conv.convert(wav, sr, singer=singer, transpose=args.transpose, auto_transpose=args.auto_transpose,
                           key_mode=args.key_mode, sampler=args.sampler, steps=args.steps, strength=args.strength,
                           seed=args.seed,
                           max_slice_seconds=args.max_slice_seconds, progress=progress, name=str(f),
                           measure_cycle_error=args.cycle_error)
        out = outputs[f]
        save_wav(out, res.audio, res.sample_rate, subtype="FLOAT" if args.float else "PCM_16")
        side = {"source": str(f.resolve()), "singer": res.singer, "transpose": res.transpose,
                "refiner": str(args.refiner or "bundled"), "vocoder": str(args.vocoder or "bundled"),
                "sample_rate": res.sample_rate, **res.stats}
        side = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in side.items()}
        atomic_write_text(out.with_suffix(".json"), json.dumps(side, indent=2) + "\n")
        if args.save_mel:
            save_mel(out.with_suffix(".npy"), res.mel)
            atomic_save_npy(out.with_name(out.stem + ".f0.npy"), res.f0)
        if res.stats.get("silent"):
            log.warning("%s: no voice found; wrote silence to %s", f.name, out)
        elif "key" in res.stats:
            log.info("%s: auto-transpose %s", f.name, res.stats["key"]["reason"])
        return res.stats["seconds"]

    return finish(run_batch(files, one, "convert"), f"converted to {singer}")
