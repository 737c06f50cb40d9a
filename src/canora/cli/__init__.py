"""The ``canora`` command: thin subcommands over the library, with lazy imports.

Every subcommand lives in ``canora.cli.<name>``; errors caused by the user's input
(:class:`canora.errors.CanoraError`) print one line and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from canora import __version__

# subcommand name -> module in canora.cli (order = order in --help)
COMMANDS: dict[str, str] = {
    "convert": "convert",
    "mel": "mel",
    "refine": "refine",
    "vocode": "vocode",
    "train-refiner": "train_refiner",
    "train-vocoder": "train_vocoder",
    "eval": "eval",
    "demo": "demo",
    "report": "report",
    "doctor": "doctor",
    "ui": "ui",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canora",
        description="Singing voice conversion: wav -> mel -> diffusion refiner -> HiFi-GAN -> wav.",
    )
    parser.add_argument("--version", action="version", version=f"canora {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(f"canora.cli.{module}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="canora: %(message)s", stream=sys.stderr
    )
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    from canora.errors import CanoraError

    try:
        return int(args.run(args) or 0)
    except CanoraError as e:
        print(f"canora {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"canora {args.command}: interrupted", file=sys.stderr)
        return 130
