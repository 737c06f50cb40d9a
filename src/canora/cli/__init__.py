"""The ``canora`` command: thin subcommands over the library, with lazy imports.

Every subcommand lives in ``canora.cli.<name>``. Every failure is one line on stderr, without a traceback:
errors caused by the user's input (:class:`canora.errors.CanoraError`, a bad flag) exit with status 2, and so does
an ``OSError`` (named with its file and the fix); anything unexpected prints one line naming it (``-v`` shows the
traceback) and exits with status 1, Ctrl+C or SIGTERM with 130 (temp files are removed on the way out).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import warnings

from canora import __version__

# pyworld (imported lazily by the F0 trackers) imports pkg_resources, whose deprecation warning would interrupt
# a command's output; it is about pyworld's packaging, nothing a user can act on (main() sets it again, for
# callers that reset the warning filters).
warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated", category=UserWarning)

# subcommand name -> module in canora.cli (order = order in --help)
COMMANDS: dict[str, str] = {
    "convert": "convert",
    "mel": "mel",
    "refine": "refine",
    "vocode": "vocode",
    "export": "export",
    "train-content": "train_content",
    "train-refiner": "train_refiner",
    "train-vocoder": "train_vocoder",
    "train-voice": "train_voice",
    "eval": "eval",
    "demo": "demo",
    "report": "report",
    "doctor": "doctor",
    "ui": "ui",
    "live": "live",
    "voices": "voices",
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (status 2): the usage is in ``--help``, not repeated above the error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``canora`` parser with every subcommand, or with ``only`` that one (what ``main`` runs: a subcommand's
    parser can import heavy modules for its defaults, and a conversion on ONNX exports must not import torch)."""
    parser = ArgumentParser(
        prog="canora",
        description="Singing voice conversion: wav -> mel -> diffusion refiner -> HiFi-GAN -> wav.",
    )
    parser.add_argument("--version", action="version", version=f"canora {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is not None and name != only:
            continue
        importlib.import_module(f"canora.cli.{module}").add_parser(sub)
    parser.set_defaults(_subcommands=sub.choices)  # for errors in the subcommand's own words
    return parser


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # like Ctrl+C: finally-blocks run, temp files are removed


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated", category=UserWarning)
    words = sys.argv[1:] if argv is None else argv
    if words[:1] == ["--version"]:  # without building every command's parser
        print(f"canora {__version__}")
        return 0
    command = next((w for w in words if not w.startswith("-")), None)  # top-level options take no values
    parser = build_parser(command if command in COMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    if extra:  # name the subcommand whose options these are not
        getattr(args, "_subcommands", {}).get(args.command, parser).error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="canora: %(message)s", stream=sys.stderr
    )
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    from canora.errors import CanoraError

    name = f"canora {args.command}"
    try:
        old = signal.signal(signal.SIGTERM, _sigterm)
    except ValueError:  # not the main thread: leave signals alone
        old = None
    try:
        return _run(args)
    except CanoraError as e:
        print(f"{name}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # one no check caught: name the file, and the fix when it is the disk's
        from canora.io.files import FATAL_ERRNOS, describe_os_error

        where = e.filename or "a file"
        msg = describe_os_error(where, e) if e.errno in FATAL_ERRNOS else \
            f"{where}: {e.strerror or e}; check the path and its permissions"
        print(f"{name}: error: {_one_line(msg)}", file=sys.stderr)
        if args.verbose:
            import traceback

            traceback.print_exc()
        return 2
    except MemoryError:
        print(f"{name}: error: out of memory; use shorter inputs (convert: a smaller --max-slice-seconds) or a "
              "machine with more memory", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: one line, the traceback with -v
        print(f"{name}: unexpected error: {type(e).__name__}: {_one_line(e)} (a bug in canora; "
              f"`canora -v {args.command} ...` shows the traceback; please report it)", file=sys.stderr)
        if args.verbose:
            import traceback

            traceback.print_exc()
        return 1
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _run(args: argparse.Namespace) -> int:
    """The subcommand, with the audio limits of ``--max-audio-minutes`` where it takes that flag."""
    minutes = getattr(args, "max_audio_minutes", None)
    if minutes is None:
        return int(args.run(args) or 0)
    from canora.io.limits import limited

    with limited(minutes):
        return int(args.run(args) or 0)


def _one_line(e: object) -> str:
    """The message of ``e`` on one line (newlines folded)."""
    return " ".join(str(e).split()) or type(e).__name__
