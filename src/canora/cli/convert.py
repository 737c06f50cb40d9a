"""``canora convert``: songs in, songs out in the target singer's voice (refiner + vocoder, bundled by default)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
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
    names_a_file,
    plan_outputs,
    seed_arg,
    threads_arg,
)

DESCRIPTION = """\
Convert recordings to the target singer's voice: wav -> HiFi-GAN mel + F0, loudness, content -> diffusion
refiner -> vocoder -> wav. Without --refiner / --vocoder it uses the bundled default models (a refiner
trained on the PJS singer and canora's NSF-HiFi-GAN singing vocoder).

Long recordings are cut at silences (slices of at most --max-slice-seconds, so memory stays bounded), each
slice is converted and the slices are cross-faded back together; the source's loudness envelope is kept
and its silences stay silent. The key is chosen once per file: by default the song moves by whole octaves
toward the target singer's range, so it stays in its key (--key-mode free allows any semitone); --transpose N
shifts it by N semitones instead (--transpose 0 keeps the pitch as sung). The shift and its reason are logged
and written to <stem>.json. Each file gets its own key: for a folder of phrases cut from one song, give one
--transpose so they all move together. The refiner also sees each file at the target singer's usual level
(a quiet recording is not soft singing); --no-match-level keeps the recording's own level.

The output has no DC and nothing below 40 Hz (the input is high-passed before analysis, the output again after
the vocoder), and its true peak (4x oversampled) is at or below -1 dBTP, so no sample clips: a song that would
peak higher is lowered by a plain gain of up to 3 dB, and a look-ahead limiter takes any rest. --loudness LUFS
sets the integrated loudness (ITU-R BS.1770-4) first, with the limiter keeping the peaks under the ceiling. What
was done is printed when it changed the level and stored in <stem>.json ("output").

IN is an audio file or a directory of them; OUT is a .wav (or .flac) path for one input, else a directory that
gets <stem>.wav plus <stem>.json (settings, transpose, timing, a quick check of the result, and with
--cycle-error the vocoder's mel cycle error: what `canora eval` reads). The audio and its .json are written
together (both or neither). Outputs are checked before any work: inputs are never overwritten, existing files
only with --overwrite. A directory run skips unreadable files, says which, and exits with status 1; the paths
written are printed on stdout.
Under torchrun (torchrun --nproc_per_node N -m canora convert DIR -o OUT) each process converts its own
share of the files (every file exactly once).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert songs to the target singer's voice (bundled models by default)",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("input", type=Path, help="an audio file or a directory of them")
    p.add_argument("-o", "--out", type=Path, required=True,
                   help="output .wav or .flac (one input), or a directory (<stem>.wav + <stem>.json)")
    p.add_argument("--singer", default=None, help="target singer (default: the refiner's only singer), or a mix of a "
                   "multi-singer refiner's singers such as a:0.7,b:0.3")
    _add_key_args(p)
    _add_sampling_args(p)
    add_model_arg(p, "refiner")
    add_model_arg(p, "vocoder")
    add_voice_arg(p)
    _add_rendering_args(p)
    add_file_command_args(p, run)


def _add_key_args(p: argparse.ArgumentParser) -> None:
    """The key (a transpose, or the automatic one), the level the refiner hears, the output's loudness."""
    from canora.dsp.output import LOUDNESS_RANGE
    from canora.pipeline import MAX_TRANSPOSE

    key = p.add_mutually_exclusive_group()
    key.add_argument("--transpose", type=finite_float, default=None, metavar="SEMITONES",
                     help=f"shift the pitch by N semitones, within +-{MAX_TRANSPOSE:g} (0: as sung); default: the "
                     "automatic key (--key-mode)")
    key.add_argument("--auto-transpose", action="store_true",
                     help="the default, stated: move each song toward the target singer's range, whole octaves "
                     "(the key kept) unless --key-mode free; an error if the refiner stores no range")
    p.add_argument("--key-mode", choices=("octave", "free"), default=None,
                   help="the automatic key: octave (the default) keeps the key (whole octaves only), free allows any "
                   "semitone; not with --transpose")
    p.add_argument("--match-level", action=argparse.BooleanOptionalAction, default=True,
                   help="let the refiner see each song at the target singer's usual voiced level, so that a quietly "
                   "recorded song is not converted as soft singing (default: on; either way the output keeps the "
                   "recording's own loudness, lowered only as far as its peaks need)")
    p.add_argument("--loudness", type=finite_float, default=None, metavar="LUFS",
                   help=f"integrated loudness of the output (ITU-R BS.1770-4), {LOUDNESS_RANGE[0]:g} to "
                   f"{LOUDNESS_RANGE[1]:g} (e.g. -14, or -23 for broadcast); default: the recording's level, lowered "
                   "only as far as the -1 dBTP ceiling needs")


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    """The refiner's sampler, steps, strength and seed."""
    from canora.cli.common import add_mel_match_arg
    from canora.dsp.melmatch import MEL_MATCH_ITERS
    from canora.refiner.base import DEFAULT_SAMPLER, DEFAULT_STEPS, DEFAULT_STRENGTH
    from canora.refiner.samplers import MAX_STEPS, available_samplers
    from canora.streaming import DEFAULT_STREAM_STEPS

    p.add_argument("--sampler", choices=available_samplers(), default=DEFAULT_SAMPLER, help="the refiner's sampler")
    p.add_argument("--steps", type=int_in(1, MAX_STEPS), default=None,
                   help=f"denoising steps; {DEFAULT_STREAM_STEPS} with --stream (default: {DEFAULT_STEPS})")
    p.add_argument("--strength", type=float_in(0, 1, lo_open=True), default=DEFAULT_STRENGTH,
                   help="shallow-diffusion depth in (0, 1]: how far from the source mel the refiner may go "
                   "(1 = from pure noise)")
    p.add_argument("--seed", type=seed_arg, default=0, help="random seed; the same seed gives the same output")
    add_mel_match_arg(p, None, f"default: {MEL_MATCH_ITERS}, or 0 when the vocoder was trained on the target singer "
                      "(its export's meta.singers: the bundled vocoder's is pjs)")


def _add_rendering_args(p: argparse.ArgumentParser) -> None:
    """How the song is rendered (slices, workers, streaming, backend) and what is written besides the audio."""
    from canora.backends import BACKEND_CHOICES
    from canora.pipeline import MAX_SLICE_SECONDS
    from canora.streaming import DEFAULT_BLOCK_MS

    p.add_argument("--max-slice-seconds", type=float_in(1, MAX_SLICE_SECONDS), default=30.0,
                   help="longest slice converted at once (memory follows it)")
    p.add_argument("--workers", type=threads_arg, default=None, metavar="N",
                   help="slices converted at the same time, sharing the torch threads (default: one per thread; "
                   "1 = one slice at a time on all threads)")
    p.add_argument("--save-mel", action="store_true",
                   help="also write the refined mel <stem>.npy (n_mels, T) and its F0 <stem>.f0.npy")
    p.add_argument("--float", action="store_true", help="write 32-bit float wavs instead of 16-bit PCM")
    p.add_argument("--allow-silence", action="store_true",
                   help="write silence for a file with no voice in it (default: such a file is an error, and in a "
                   "directory run it is skipped)")
    p.add_argument("--cycle-error", action="store_true",
                   help="also measure the vocoder's mel cycle error on the refined mel (one more mel of the output) "
                   "and write it into <stem>.json for `canora eval`")
    p.add_argument("--stream", action="store_true",
                   help="convert through the streaming converter (canora.streaming: fixed latency, block by block, "
                   "one key for the file, chosen from the whole file as without --stream) and record its latency "
                   "and per-block compute time in <stem>.json")
    p.add_argument("--block-ms", type=float_in(10, 2000), default=DEFAULT_BLOCK_MS,
                   help="with --stream: block length in ms (rounded to whole 256-sample frames)")
    p.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                   help="run the models on torch or ONNX Runtime; auto = ONNX Runtime on a CPU with the onnx extra "
                   "installed when the models' ONNX copies are kept (`canora export bundled --cache`, which setup "
                   "runs once; with --stream they are made on first use), else torch. ONNX exports always run on "
                   "ONNX Runtime without importing torch; onnx on torch models exports them once (tens of seconds) "
                   "and keeps the copies, so later runs do not import torch either")


def _outputs(files: list[Path], args: argparse.Namespace) -> dict[Path, list[Path]]:
    """Every output of each input (audio first, then <stem>.json, and with --save-mel <stem>.npy and
    <stem>.f0.npy); refuses to overwrite an input or to write one file for many inputs."""
    from canora.io.files import check_not_input

    if names_a_file(args.out) and not args.input.is_dir():
        check_not_input(args.out, files[0])
    audio = plan_outputs(args.input, files, args.out, ".wav", (".wav", ".flac"), "convert")
    out: dict[Path, list[Path]] = {}
    for f, a in audio.items():
        out[f] = [a, a.with_suffix(".json")]
        if args.save_mel:
            out[f] += [a.with_suffix(".npy"), a.with_name(a.stem + ".f0.npy")]
    return out


#: what the sidecar's less obvious keys mean (written into it as "notes", for the keys it holds)
SIDECAR_NOTES = {
    "mel_cycle_error": "--cycle-error: the vocoder's mel cycle error over every sung slice of the song (the refined "
                       "mel against the mel of the audio the vocoder made from it, after `mel_match` rounds of mel "
                       "matching, mean |ln| over loud frames); what `canora eval` reads",
    "mel_match": "rounds of mel matching after the vocoder (0 = off): each STFT bin scaled so the output's mel "
                 "envelope comes back to the refined mel's, the vocoder's phase kept; `mel_match_reason` says why "
                 "that many (none for a singer the vocoder was trained on, unless asked for)",
    "refiner_check": "the quick check every conversion makes on its first sung stretch only (`seconds` of it): the "
                     "vocoder's mel cycle error there (after mel matching), with the output stage's plain gain left "
                     "out, and how far the "
                     "refined mel moved from the source's (`mel_change`, ln units); `ok` when they stay under "
                     "`cycle_error_limit` and `mel_change_limit` (an untrained or mismatched refiner goes far above). "
                     "It differs from mel_cycle_error, which covers the whole song",
}


def _sidecar(f: Path, res: object, args: argparse.Namespace, check: dict | None) -> bytes:
    import json
    import math

    from canora.io.files import resolved

    def plain(v: object) -> object:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if hasattr(v, "item") and callable(v.item):  # numpy scalars
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    side = {"source": str(resolved(f)), "singer": res.singer, "transpose": res.transpose,
            "refiner": str(args.refiner or "bundled"), "vocoder": str(args.vocoder or "bundled"),
            "sample_rate": res.sample_rate, **res.stats}
    if check is not None:
        side["refiner_check"] = check
    notes = {k: v for k, v in SIDECAR_NOTES.items() if k in side}
    if notes:
        side["notes"] = notes
    return (json.dumps(plain(side), indent=2) + "\n").encode()


def _say_output(output: dict | None, name: str) -> None:
    """One line on stderr when the output stage changed the level (a gain, or limiting); a warning when the limiter
    had to work hard."""
    import logging

    from canora.dsp.output import LIMIT_WARN_DB

    if not output or (abs(output["gain_db"]) <= 1e-3 and not output["limited_ms"]):
        return
    log = logging.getLogger("canora")
    if output["max_reduction_db"] > LIMIT_WARN_DB:
        log.warning("%s: output %s: the peaks were limited hard; choose a lower --loudness", name, output["reason"])
    else:
        log.info("%s: output %s", name, output["reason"])


def _stream(conv: Any, wav: Any, sr: int, singer: str, args: argparse.Namespace, name: str) -> Any:
    """``wav`` (N,) at ``sr`` through a :class:`canora.streaming.StreamConverter` in blocks of --block-ms -> a
    result for the sidecar: the aligned audio, and ``stats["stream"]`` (latency, compute per block)."""
    import time
    from types import SimpleNamespace

    import numpy as np

    from canora.streaming import StreamConverter

    choice, level, transpose = None, None, args.transpose
    if transpose is None or args.match_level:  # a file can be looked at whole before streaming it: the key and
        choice, level = conv.song_choices(  # the level that convert would choose
            wav, sr, singer=singer, transpose=args.transpose, key_mode=args.key_mode,
            auto_transpose=args.auto_transpose or None, max_slice_seconds=args.max_slice_seconds, name=name)
        if transpose is None:
            transpose = float(choice.semitones) if choice is not None else 0.0
        if not args.match_level:
            level = None
    t0 = time.perf_counter()
    sc = StreamConverter(conv, block_ms=args.block_ms, input_sample_rate=int(sr), transpose=transpose,
                         gain_db=level.gain_db if level is not None else 0.0, singer=singer, sampler=args.sampler,
                         steps=args.steps, strength=args.strength, seed=args.seed,
                         prime=False, mel_match=args.mel_match)
    audio = sc.convert(np.asarray(wav, np.float32), round(sr * args.block_ms / 1000))
    wall = time.perf_counter() - t0
    ms = 1000 * np.asarray(sc.block_seconds)
    seconds = len(wav) / sr
    stats = {"seconds": seconds, "wall_seconds": wall, "real_time_factor": wall / seconds, "sampler": args.sampler,
             "steps": args.steps, "strength": args.strength, "seed": args.seed,
             "stream": {"block_ms": args.block_ms, "latency_ms": sc.latency_ms,
                        "compute_ms": {"median": float(np.median(ms)), "p95": float(np.percentile(ms, 95)),
                                       "max": float(ms.max())} if len(ms) else None,
                        "block_duration_ms": sc.block_duration_ms, "blocks": len(ms)}}
    if choice is not None:
        stats["key"] = choice.to_dict()
    if level is not None:
        stats["level"] = level.to_dict()
    return SimpleNamespace(audio=audio, sample_rate=sc.sample_rate, singer=sc.job.singer, transpose=sc.transpose,
                           stats=stats, mel=None, f0=None)


@contextlib.contextmanager
def _silence_hint() -> Iterator[None]:
    """A file with no voice: its error line names the flag that writes silence for it instead."""
    from canora.errors import AudioError
    from canora.pipeline import NO_VOICE

    try:
        yield
    except AudioError as e:
        if NO_VOICE not in str(e):
            raise
        raise AudioError(f"{e}; pass --allow-silence to write silence for it") from None


def run(args: argparse.Namespace) -> int:
    from canora.backends import onnx_exports_only
    from canora.cli.batch import finish, run_batch
    from canora.cli.common import (
        apply_device_args,
        audio_output_bytes,
        check_audio_header,
        check_outputs,
        load_converter,
        model_backend,
    )

    # every check before any work: options, device, inputs, outputs, models, singer
    _check_options(args)
    backend = model_backend(args, streaming=args.stream)
    apply_device_args(args, uses_torch=not onnx_exports_only(args.refiner, args.vocoder, backend, args.device))
    inputs, files, outputs = _plan(args)
    mine = [p for f in files for p in outputs[f]]
    check_outputs(mine, args, inputs=inputs)  # exists, is an input, not writable: before the models load
    check_audio_header(files)
    conv = load_converter(args.refiner, args.vocoder, device=args.device, backend=backend)
    singer = conv.refiner.singer_label(args.singer)  # unknown singer or bad mix: fail before any work
    check_outputs(mine, args, inputs=inputs,  # and room on the disk for the audio at the models' rate
                  need_bytes=audio_output_bytes(files, conv.sample_rate, 4 if args.float else 2))
    job = _Job(args, conv, singer, outputs, nested=len(files) > 1)
    return finish(run_batch(files, job.one, "convert", outputs.__getitem__), f"converted to {singer}")


def _check_options(args: argparse.Namespace) -> None:
    """The options checked against each other (and the steps' default set by --stream), the voice applied."""
    from canora.cli.common import apply_voice
    from canora.dsp.output import check_loudness
    from canora.errors import CanoraError
    from canora.pipeline import check_transpose
    from canora.refiner.samplers import check_steps_strength

    if args.steps is None:
        from canora.refiner.base import DEFAULT_STEPS
        from canora.streaming import DEFAULT_STREAM_STEPS

        args.steps = DEFAULT_STREAM_STEPS if args.stream else DEFAULT_STEPS
    if args.stream and (args.save_mel or args.cycle_error):
        raise CanoraError("--stream measures no mels; drop --save-mel and --cycle-error")
    if args.stream and args.loudness is not None:
        raise CanoraError("--loudness needs the whole output before its first sample, --stream converts block by "
                          "block; drop one of them")
    check_loudness(args.loudness, "--loudness")
    check_steps_strength(args.steps, args.strength, ("--steps", "--strength"))
    if args.transpose is not None:
        check_transpose(args.transpose, "--transpose", warn=False)  # the conversion warns beyond 2 octaves
        if args.key_mode is not None:
            raise CanoraError("--key-mode chooses the automatic key, which --transpose replaces; give one of them")
    args.key_mode = args.key_mode or "octave"
    apply_voice(args)


def _plan(args: argparse.Namespace) -> tuple[list[Path], list[Path], dict[Path, list[Path]]]:
    """-> (every input, the inputs this process converts (its share under torchrun), the outputs of each input);
    the output formats checked."""
    import logging
    import os

    from canora.cli.common import list_inputs
    from canora.io.audio import AUDIO_EXTENSIONS, output_format

    files = list_inputs(args.input, AUDIO_EXTENSIONS, recursive=args.recursive)
    outputs = _outputs(files, args)
    for outs in outputs.values():
        output_format(outs[0], _subtype(args))
    inputs = files
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world > 1:
        files = files[rank::world]
        logging.getLogger("canora").info("rank %d of %d: converting %d of the files", rank, world, len(files))
    return inputs, files, outputs


def _subtype(args: argparse.Namespace) -> str:
    return "FLOAT" if args.float else "PCM_16"


@dataclass
class _Job:
    """One file of the batch: converted (offline, or through the streaming converter with --stream), then written
    with its sidecar, and reported."""

    args: argparse.Namespace
    conv: Any
    singer: str
    outputs: dict[Path, list[Path]]
    nested: bool

    def one(self, f: Path) -> float:
        from canora.analysis.collapse import collapse_check
        from canora.cli.progress import song_bar
        from canora.io.audio import decode, read_audio

        args, conv = self.args, self.conv
        if args.stream:
            wav, sr = read_audio(f)
            return self.write(f, _stream(conv, wav, sr, self.singer, args, str(f)), None)
        with song_bar(f.name, nested=self.nested) as on_progress, _silence_hint():
            on_progress(0.0, "reading")
            d = decode(f, conv.sample_rate)  # mono at the models' rate as it is decoded: no copy at the file's rate
            res = conv.convert(d.wav, d.sample_rate, source_full_scale=d.full_scale_samples, singer=self.singer,
                               transpose=args.transpose, auto_transpose=args.auto_transpose or None,
                               key_mode=args.key_mode, sampler=args.sampler, steps=args.steps,
                               strength=args.strength, seed=args.seed, max_slice_seconds=args.max_slice_seconds,
                               on_progress=on_progress, name=str(f), measure_cycle_error=args.cycle_error,
                               workers=args.workers, match_level=args.match_level, loudness=args.loudness,
                               no_voice="silence" if args.allow_silence else "error", mel_match=args.mel_match)
        return self.write(f, res, None if res.stats.get("silent") else collapse_check(res, conv.spec))

    def write(self, f: Path, res: Any, check: dict | None) -> float:
        import logging

        from canora.cli.common import emit, warn_if_collapsed
        from canora.io.audio import audio_writer
        from canora.io.files import OutputSet, npy_bytes
        from canora.io.melfiles import mel_bytes

        args, out = self.args, self.outputs[f]
        with OutputSet(args.overwrite) as written:  # audio and sidecar (and mels) appear together or not at all
            written.add_with(out[0], audio_writer(out[0], res.audio, res.sample_rate, subtype=_subtype(args)))
            written.add(out[1], _sidecar(f, res, args, check))
            if args.save_mel:
                written.add(out[2], mel_bytes(res.mel))
                written.add(out[3], npy_bytes(res.f0))
        if not res.stats.get("silent"):  # (the conversion said so when it rendered silence)
            for what in ("key", "level"):
                if what in res.stats:
                    logging.getLogger("canora").info("%s: %s %s", f.name, what, res.stats[what]["reason"])
        _say_output(res.stats.get("output"), f.name)
        warn_if_collapsed(check, f.name)
        emit(out[0])
        return res.stats["seconds"]
