"""Helpers shared by subcommands: one naming scheme for flags, checks made before any work (inputs, outputs,
devices, models) and the result lines on stdout (batch loops: :mod:`canora.cli.batch`).

The conventions every command follows:

* inputs are positional; every output is ``-o/--out``; an existing output file is an error unless
  ``--overwrite``; outputs are checked (not an input, writable, a format canora writes) before any work;
* models are ``--refiner`` / ``--vocoder``: a path, or ``bundled`` (the default where a model is optional) for the
  models shipped with canora; ``--model`` / ``--checkpoint`` still work as hidden aliases;
* ``--device`` / ``--threads`` wherever a model runs, checked before the work;
* results (the paths written) on stdout, diagnostics and progress bars on stderr.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from canora.errors import CanoraError

log = logging.getLogger("canora")

#: -o with one of these extensions names a file; anything else names a directory
FILE_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".m4a", ".aac",
                 ".wma", ".mp4", ".npy", ".npz", ".json", ".txt", ".csv", ".html", ".pt", ".pth", ".onnx")
DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions kept as written; every option's default shown in ``--help`` (unless its help already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default" in text.lower() or action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS or f"({action.default})" in text:
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)"
        return text


# ---------------------------------------------------------------------- argument types
def _whole_number(s: str, lo: int) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {lo}, got {s!r}") from None
    if v < lo:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {lo}, got {v}")
    return v


def positive_int(s: str) -> int:
    return _whole_number(s, 1)


def nonneg_int(s: str) -> int:
    return _whole_number(s, 0)


def finite_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
    return v


def _span(lo: float, hi: float, lo_open: bool, hi_open: bool) -> str:
    return f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def float_in(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [lo, hi] (open at an end when asked); argparse names the flag."""
    span = _span(lo, hi, lo_open, hi_open)

    def parse(s: str) -> float:
        v = finite_float(s)
        if v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
            raise argparse.ArgumentTypeError(f"expected a number in {span}, got {s!r}")
        return v

    parse.__name__ = f"number in {span}"
    return parse


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [lo, hi]; argparse names the flag."""

    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number in {lo}..{hi}, got {s!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected a whole number in {lo}..{hi}, got {v}")
        return v

    parse.__name__ = f"whole number in {lo}..{hi}"
    return parse


#: seeds are what numpy's generators take
MAX_SEED = 2**32 - 1
seed_arg = int_in(0, MAX_SEED)
#: training runs: at most this many steps and minutes (a year of one thread is not a run, it is a typo)
MAX_TRAIN_STEPS = 100_000_000
MAX_TRAIN_MINUTES = 7 * 24 * 60.0
#: more threads than this is a typo, not a machine
MAX_THREADS = 1024
threads_arg = int_in(1, MAX_THREADS)


def device_arg(s: str) -> str:
    v = s.strip().lower()
    if not DEVICE_RE.match(v):
        raise argparse.ArgumentTypeError(f"unknown device {s!r}; choose cpu, cuda, cuda:N or mps")
    return v


def port_arg(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, got {s!r}") from None
    if not 0 < v < 65536:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, got {v}")
    return v


# ---------------------------------------------------------------------- common flags
def add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", type=device_arg, default="cpu", metavar="{cpu,cuda,cuda:N,mps}",
                   help="torch device the models run on (default: cpu)")
    p.add_argument("--threads", type=threads_arg, default=None, metavar="N",
                   help="torch CPU threads (default: torch's choice, usually one per core)")


def apply_device_args(args: argparse.Namespace, uses_torch: bool = True) -> None:
    """Check ``--device`` against this machine and this torch build, and set ``--threads`` (for ONNX Runtime
    sessions, and for torch unless ``uses_torch`` is False: a command whose models are all ONNX exports never
    imports torch), before any work."""
    check_device(getattr(args, "device", "cpu") or "cpu")
    if getattr(args, "threads", None):
        from canora.io.onnx import set_threads

        set_threads(args.threads)
        if uses_torch:
            import torch

            torch.set_num_threads(args.threads)


def model_backend(args: argparse.Namespace, streaming: bool, models: tuple[tuple[Any, str], ...] | None = None,
                  config: str | None = None) -> str | None:
    """What the models of a command load with (:func:`canora.backends.choose_backend` decides; ``models``: (name,
    kind) pairs, by default ``--refiner`` and ``--vocoder``): ``"onnx"`` for ONNX Runtime, else None (torch models
    on torch, ONNX exports on ONNX Runtime)."""
    from canora.backends import choose_backend

    models = models or ((args.refiner, "refiner"), (args.vocoder, "vocoder"))
    chosen = choose_backend(args.backend, args.device, models=models, streaming=streaming, config=config)
    log = logging.getLogger("canora")
    log.info("backend: %s%s", "ONNX Runtime" if chosen == "onnx" else "torch",
             " (auto)" if args.backend == "auto" else "")
    return "onnx" if chosen == "onnx" else None


def check_device(device: str) -> None:
    """One :class:`CanoraError` when ``device`` does not exist here (CUDA on a CPU build, a GPU index too high)."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            why = ("this torch is a CPU build (no CUDA support)" if torch.version.cuda is None
                   else "no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES?)")
            raise CanoraError(f"--device {device}: {why}; use --device cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise CanoraError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                              f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif device == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise CanoraError("--device mps: Apple's Metal backend is not available here; use --device cpu")


def minutes_arg(s: str) -> float:
    """``--max-audio-minutes``: a number of minutes in (0, a day]."""
    from canora.io.limits import MAX_MINUTES_CAP

    v = finite_float(s)
    if not 0 < v <= MAX_MINUTES_CAP:
        raise argparse.ArgumentTypeError(f"expected minutes in (0, {MAX_MINUTES_CAP:g}], got {s!r}")
    return v


def add_audio_limit_arg(p: argparse.ArgumentParser) -> None:
    """``--max-audio-minutes``: the longest audio file the command reads (:mod:`canora.io.limits`; ``main`` applies
    it around the command)."""
    from canora.io.limits import DEFAULT_MAX_MINUTES

    p.add_argument("--max-audio-minutes", type=minutes_arg, default=DEFAULT_MAX_MINUTES, metavar="M",
                   help="refuse audio files longer than M minutes, from their header before decoding (and while "
                   "decoding when the header does not say): memory grows with the length")


def add_file_command_args(p: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int], *,
                          recursive: bool = True) -> None:
    """The tail every file-processing command shares: ``--overwrite``, ``--device``/``--threads``,
    ``--recursive`` (unless not ``recursive``), ``--max-audio-minutes``; ``run`` is the command's entry."""
    add_overwrite_arg(p)
    add_device_args(p)
    if recursive:
        add_recursive_arg(p)
    add_audio_limit_arg(p)
    p.set_defaults(run=run)


def add_mel_match_arg(p: argparse.ArgumentParser, default: int | None, default_note: str) -> None:
    """``--mel-match N``: rounds of putting the vocoder's output back on its mel (canora.dsp.melmatch)."""
    p.add_argument("--mel-match", type=int_in(0, 8), default=default, metavar="N",
                   help="rounds of mel matching after the vocoder: each STFT bin of the output is scaled so that its "
                   "mel comes back to the mel the vocoder was given (the phase stays the vocoder's); 0 = the "
                   f"vocoder's output as it is ({default_note})")


def add_overwrite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace output files that already exist (default: an existing output is an error)")


def add_model_arg(p: argparse.ArgumentParser, kind: str, *, alias: str | None = None, bundled_default: bool = True,
                  help: str = "") -> None:
    """``--refiner`` / ``--vocoder`` (dest = kind): a path, or ``bundled`` for the model shipped with canora (the
    default unless ``bundled_default`` is False: then no model unless given). ``alias`` (``--model``,
    ``--checkpoint``) is accepted too, hidden from ``--help``."""
    default = "bundled" if bundled_default else None
    what = "an export directory" + (" or an official HiFi-GAN g_* checkpoint" if kind == "vocoder" else "")
    own = "'bundled' for canora's own" + (" ('bundled-base': its multi-singer base)" if kind == "refiner" else "")
    text = (help or f"the {kind}: {what}, or {own}") + (" (default: bundled)" if bundled_default else "")
    p.add_argument(f"--{kind}", dest=kind, default=default, metavar="PATH|bundled", help=text)
    if alias:
        p.add_argument(alias, dest=kind, default=default, help=argparse.SUPPRESS)


def add_voice_arg(p: argparse.ArgumentParser) -> None:
    """``--voice NAME|PATH``: a voice from `canora voices` (its refiner, vocoder and singer) instead of
    ``--refiner``/``--vocoder``/``--singer``."""
    p.add_argument("--voice", default=None, metavar="NAME|PATH",
                   help="a voice by name (see `canora voices`) or a voice folder: its refiner, vocoder and singer")


def apply_voice(args: argparse.Namespace) -> None:
    """Fill ``args.refiner``/``args.vocoder``/``args.singer`` from ``--voice`` (before any work); a voice with an
    explicit ``--refiner``/``--vocoder`` other than bundled is a conflict."""
    if getattr(args, "voice", None) is None:
        return
    from canora.io.voices import resolve_voice

    voice = resolve_voice(args.voice)
    for kind in ("refiner", "vocoder"):
        given = getattr(args, kind, None)
        if given not in (None, "bundled"):
            raise CanoraError(f"--voice {args.voice} brings its own {kind}; drop --{kind} {given} (or --voice)")
        if hasattr(args, kind):
            setattr(args, kind, str(getattr(voice, kind)) if getattr(voice, kind) else "bundled")
    if getattr(args, "singer", None) is None:
        args.singer = voice.singer


# ---------------------------------------------------------------------- models
def load_refiner(name: str | Path | None, device: str = "cpu", backend: str | None = None) -> Any:
    """The refiner named by ``--refiner`` (a path or ``bundled``), loaded; every failure one line naming the file.
    Its stored feature extractors are checked here, so an export naming an extractor this canora lacks fails now,
    not per file after minutes."""
    import canora.content  # noqa: F401 (registers the learned encoder)
    from canora.backends import open_refiner
    from canora.dsp.content import available_content_encoders
    from canora.dsp.pitch import available_f0_extractors
    from canora.errors import CanoraError, CheckpointError
    from canora.io.models import load_model, model_file, resolve_model

    ref = load_model(name, "refiner", lambda p: open_refiner(p, device=device, backend=backend))
    fp = ref.feature_params
    where = model_file(resolve_model(name, "refiner"))
    if fp.f0_method not in available_f0_extractors():
        raise CheckpointError(f"{where}: the refiner's F0 extractor {fp.f0_method!r} is not in this canora "
                              f"({', '.join(available_f0_extractors())}); upgrade canora or use another refiner")
    if fp.content_method not in available_content_encoders():
        raise CheckpointError(f"{where}: the refiner's content encoder {fp.content_method!r} is not in this canora "
                              f"({', '.join(available_content_encoders())}); upgrade canora or use another refiner")
    if fp.content_method == "learned":  # the encoder it was trained with must be here (checked by its weights' hash)
        from canora.dsp.content import get_content_encoder

        try:
            get_content_encoder(fp.content_method, **dict(fp.content_params))
        except CanoraError as e:
            raise CheckpointError(f"{where}: {e}") from None
    return ref


def load_vocoder(name: str | Path | None, config: str | None = None, device: str = "cpu",
                 backend: str | None = None) -> Any:
    """The vocoder named by ``--vocoder`` (a path or ``bundled``), loaded; every failure one line naming the file."""
    from canora.backends import open_vocoder
    from canora.io.models import load_model, resolve_model

    path = resolve_model(name, "vocoder")
    settings = None  # an official checkpoint's settings are its config.json: errors name that file
    if config is not None and Path(config).is_file():
        settings = Path(config)
    elif not (path / "model.json").is_file():
        beside = (path if path.is_dir() else path.parent) / "config.json"
        settings = beside if beside.is_file() else None
    return load_model(path, "vocoder", lambda p: open_vocoder(p, config=config, device=device, backend=backend),
                      settings)


def load_converter(refiner: str | Path | None, vocoder: str | Path | None, device: str = "cpu",
                   backend: str | None = None) -> Any:
    """A :class:`canora.pipeline.Converter` over ``--refiner`` and ``--vocoder`` (paths or ``bundled``);
    ``backend="onnx"``: torch models through their kept ONNX copies (:func:`canora.io.models.open_refiner`)."""
    from canora.pipeline import Converter

    return Converter(load_refiner(refiner, device, backend), load_vocoder(vocoder, device=device, backend=backend))


def load_spec_arg(name_or_path: str | Path, flag: str = "--config") -> Any:
    """The MelSpec of ``--config`` (v1/v2/v3 or a JSON file); every failure one line naming the file."""
    from canora.dsp.mel import load_spec

    try:
        return load_spec(name_or_path)
    except CanoraError as e:
        if str(name_or_path) in str(e):
            raise
        raise type(e)(f"{name_or_path}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CanoraError(f"{name_or_path}: not a usable {flag} ({type(e).__name__}: {e}); pass v1, v2, v3 or a "
                          "HiFi-GAN config.json") from None


# ---------------------------------------------------------------------- inputs and outputs
def add_recursive_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recursive", "-r", action="store_true",
                   help="with a directory input, also take the files in its subdirectories (a folder of singer "
                   "folders); the outputs keep the same subdirectories under -o")


def _walk(path: Path, suffixes: tuple[str, ...], skip: Callable[[Path], bool] | None) -> list[Path]:
    """Files with one of ``suffixes`` anywhere under ``path`` (sorted by relative path; hidden entries and links to
    directories are not followed)."""
    import os

    found = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(root, d)))
        for n in sorted(names):
            f = Path(root) / n
            if not n.startswith(".") and f.suffix.lower() in suffixes and f.is_file() and not (skip and skip(f)):
                found.append(f)
    return sorted(found, key=lambda f: f.relative_to(path).parts)


def list_inputs(
    path: Path, suffixes: Iterable[str], skip: Callable[[Path], bool] | None = None, recursive: bool = False
) -> list[Path]:
    """Files with one of ``suffixes`` in a directory (sorted, leaving out those ``skip`` says; with ``recursive``
    in its subdirectories too), or the one file given. Errors when empty or when two inputs share a stem in one
    directory (their outputs would collide)."""
    suffixes = tuple(s.lower() for s in suffixes)
    if not path.exists():
        from canora.io.files import resolved

        resolved(path)  # a link loop is named as one
        raise CanoraError(f"{path}: no such file or directory")
    if path.is_dir():
        if recursive:
            files = _walk(path, suffixes, skip)
        else:
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes
                           and not (skip and skip(p)))
        if not files:
            where = "in this directory or below it" if recursive else "in this directory"
            more = "" if recursive else " (--recursive takes its subdirectories too)"
            raise CanoraError(f"{path}: no input files ({', '.join(suffixes)}) {where}{more}")
    else:
        from canora.io.inputs import require_regular_file

        files = [require_regular_file(path, "input file")]  # a named pipe or a device would block or never end
    stems: dict[Path, Path] = {}
    for f in files:
        key = f.with_suffix("")
        if key in stems:
            raise CanoraError(f"{f}: same name as {stems[key]}; outputs would collide, rename one")
        stems[key] = f
    return files


def names_a_file(out: Path) -> bool:
    """Whether ``-o`` names a file (an extension such as .wav/.npy/.json and not an existing directory)."""
    return out.suffix.lower() in FILE_SUFFIXES and not out.is_dir()


def require_dir_out(out: Path, what: str) -> None:
    """``-o`` of a command that writes a directory: not a file name (``-o report.html`` would silently become a
    directory of that name), not an existing file."""
    if names_a_file(out):
        raise CanoraError(f"{out}: {what} writes a directory of files, not one {out.suffix} file; give -o DIR")
    if out.exists() and not out.is_dir():
        raise CanoraError(f"{out}: exists and is a file, not a directory; choose another -o")


def plan_outputs(inp: Path, files: list[Path], out: Path, suffix: str, file_suffixes: tuple[str, ...],
                 what: str) -> dict[Path, Path]:
    """The output path of each input: ``-o`` a file name (one input; its extension one of ``file_suffixes``), or
    a directory that gets ``<stem><suffix>``. Refuses -o that is the input directory or an existing file used as
    a directory, and an extension the command does not write."""
    if not names_a_file(out) and not out.is_dir() and re.fullmatch(r"\.[A-Za-z][A-Za-z0-9]{0,4}", out.suffix):
        raise CanoraError(f"{out}: {out.suffix} is not a format {what} writes ({' or '.join(file_suffixes)}); give -o "
                          f"NAME{file_suffixes[0]}, or for a directory a name without an extension (or make the "
                          "directory first)")
    if names_a_file(out):
        if out.suffix.lower() not in file_suffixes:
            raise CanoraError(f"{out}: {what} writes {' or '.join(file_suffixes)} files, not {out.suffix}; give -o "
                              f"NAME{file_suffixes[0]} or an output directory")
        if inp.is_dir() or len(files) > 1:
            raise CanoraError(f"{out}: a directory of inputs needs an output directory, not a file name")
        return {files[0]: out}
    from canora.io.files import check_output_dir, resolved

    check_output_dir(inp, out)
    if inp.is_dir() and any(f.parent != inp for f in files):  # --recursive: the outputs mirror the subdirectories
        if resolved(inp) in resolved(out).parents:
            raise CanoraError(f"{out}: the output directory is inside the input directory {inp}, whose subdirectories "
                              "are read; choose an -o outside it")
        return {f: out / f.parent.relative_to(inp) / f"{f.stem}{suffix}" for f in files}
    return {f: out / f"{f.stem}{suffix}" for f in files}


def check_outputs(paths: Iterable[Path], args: argparse.Namespace, inputs: Iterable[Path] = (),
                  need_bytes: int = 0) -> None:
    """:func:`canora.io.files.check_outputs` with ``--overwrite`` from ``args``."""
    from canora.io.files import check_outputs as check

    check(list(paths), overwrite=bool(getattr(args, "overwrite", False)), inputs=list(inputs), need_bytes=need_bytes)


def audio_output_bytes(files: Iterable[Path], sample_rate: int, bytes_per_sample: int) -> int:
    """About how many bytes the audio outputs of ``files`` take at ``sample_rate`` (from their headers; files
    whose header does not read count 0, they fail later on their own)."""
    from canora.io.audio import audio_info

    total = 0
    for f in files:
        try:
            _, sr, frames = audio_info(f)
        except CanoraError:
            continue
        total += int(frames / max(sr, 1) * sample_rate * bytes_per_sample) + 4096
    return total


def check_audio_header(files: list[Path]) -> None:
    """Before the models load: a single audio input whose header is unreadable or beyond the limits of
    ``--max-audio-minutes`` fails now (in a batch, each such file is skipped when its turn comes)."""
    from canora.io.audio import AUDIO_EXTENSIONS, audio_info
    from canora.io.limits import audio_limits

    if len(files) != 1 or files[0].suffix.lower() not in AUDIO_EXTENSIONS:
        return
    channels, rate, frames = audio_info(files[0])
    if frames and rate > 0:
        audio_limits().check_header(str(files[0]), rate, channels, frames)


def check_run_dir(out: Path, data: Iterable[Path], recursive: bool) -> None:
    """A training run directory ``-o``: not a file, not a data directory (nor, when the data is listed
    recursively, inside one), writable."""
    from canora.io.files import check_writable, remove_stale_temps

    if out.exists() and not out.is_dir():
        raise CanoraError(f"{out}: exists and is a file, not a run directory; choose another -o")
    require_dir_out(out, "training")
    from canora.io.files import resolved

    o = resolved(out)
    for d in data:
        if not d.exists():
            raise CanoraError(f"{d}: no such directory")
        r = resolved(d)
        if o == r or (recursive and r in o.parents):
            raise CanoraError(f"{out}: the run directory is {'inside ' if o != r else ''}the data directory {d} "
                              "(checkpoints would mix with the recordings); choose another -o")
    check_writable(out)
    remove_stale_temps(out)


def emit(path: Path | str) -> None:
    """A result (a path written) on stdout, one per line, without breaking a progress bar on stderr."""
    from tqdm import tqdm

    tqdm.write(str(path), file=sys.stdout)


# ---------------------------------------------------------------------- a cheap check of the result
def warn_if_collapsed(check: dict[str, Any] | None, name: str) -> None:
    """A warning naming ``name`` when :func:`canora.analysis.collapse.collapse_check` found the result collapsed."""
    if check is None or check["ok"]:
        return
    from canora.analysis.collapse import MAX_CYCLE_ERROR, MAX_MEL_CHANGE

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    log.warning("%s: the result looks collapsed (mel cycle error %s, limit %.1f; refined mel %s ln units from the "
                "source, limit %.1f; on the first %.1f s sung): is the refiner untrained, or not matched to the "
                "vocoder? Listen before using it; `canora report` shows more", name, num(check["cycle_error"]),
                MAX_CYCLE_ERROR, num(check["mel_change"]), MAX_MEL_CHANGE, check["seconds"])
