"""One module per ``canora`` subcommand: ``add_parser(subparsers)`` and ``run(args) -> int``.

Modules import only argparse-level things at the top; heavy imports happen inside ``run``.
"""
