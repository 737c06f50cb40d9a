"""``canora voices``: the voices this canora can convert into, by name (``--voice NAME``)."""

from __future__ import annotations

import argparse

from canora.cli.common import HelpFormatter


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "voices", formatter_class=HelpFormatter, help="list the voices (bundled and your own) for --voice NAME",
        description="List the voices --voice NAME can use: the bundled voices (pjs, idil) and the voice folders in the "
        "voices directory ($CANORA_VOICES, else $XDG_DATA_HOME/canora/voices, i.e. ~/.local/share/canora/voices). "
        "`canora train-voice` makes new ones; a voice folder copied there (or passed as a path) works as it is.",
    )
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from canora.io.models import BASE_NAME, BUNDLED_BASE
    from canora.io.voices import list_voices, voices_dir

    rows, problems = [], []
    for v in list_voices(problems):
        trained = v.info.get("trained", {}) if v.info else {}
        rows.append({"name": v.name, "singer": v.singer or "pjs", "where": "bundled" if v.bundled else str(v.folder),
                     "refiner": str(v.refiner) if v.refiner else "bundled",
                     "vocoder": str(v.vocoder) if v.vocoder else "bundled",
                     "created": v.info.get("created", ""), "minutes_of_audio": trained.get("minutes_of_audio")})
    for line in problems:  # one broken voice folder is named, the others are listed
        print(f"canora voices: skipped a voice folder: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps({"voices_dir": str(voices_dir()), "voices": rows, "skipped": problems}, indent=2))
        return 0
    print(f"{'name':<20} {'singer':<16} {'created':<21} where")
    for r in rows:
        print(f"{r['name']:<20} {r['singer']:<16} {r['created']:<21} {r['where']}")
    print(f"(user voices live in {voices_dir()}; use one with --voice NAME)")
    if BUNDLED_BASE.exists():
        print(f"(canora train-voice starts new voices from the bundled multi-singer base refiner, {BASE_NAME})")
    return 0
