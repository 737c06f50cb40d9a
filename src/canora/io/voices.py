"""Voices by name: a voice is a folder that holds a refiner (or names the bundled one), optionally a vocoder, the
singer's name inside the refiner, its F0 range and a model card, described by ``voice.json``.

Where voices live: the bundled voice ``pjs`` (the models shipped with canora), the other bundled voice folders in
``canora/pretrained/voices/`` (``idil``), and the user's voices in ``$CANORA_VOICES``, or else
``$XDG_DATA_HOME/canora/voices`` (``~/.local/share/canora/voices``). A voice folder is self-contained: copied to
another machine (into that directory, or anywhere and passed as a path) it works there.

``voice.json``::

    {"format": "canora-voice", "format_version": 1, "name": "ana", "singer": "ana",
     "refiner": "refiner", "vocoder": "bundled", "f0_range": {"median": ..., "p5": ..., "p95": ...},
     "created": "2026-11-26T01:20:00Z", "trained": {...}}

``refiner``/``vocoder`` are paths relative to the folder, or ``"bundled"``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canora.errors import CanoraError, CheckpointError
from canora.io.files import read_json_object

VOICE_FORMAT = "canora-voice"
VOICE_FORMAT_VERSION = 1
VOICE_FILE = "voice.json"
BUNDLED_VOICE = "pjs"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


#: bundled voice folders (besides ``pjs``, which is the bundled refiner itself)
BUNDLED_VOICES_DIR = Path(__file__).resolve().parents[1] / "pretrained" / "voices"


def bundled_voice_names() -> list[str]:
    """Names of the bundled voice folders (``pjs`` excluded)."""
    if not BUNDLED_VOICES_DIR.is_dir():
        return []
    return sorted(d.name for d in BUNDLED_VOICES_DIR.iterdir() if (d / VOICE_FILE).is_file())


def voices_dir() -> Path:
    """Where user voices live: ``$CANORA_VOICES``, else ``$XDG_DATA_HOME/canora/voices``."""
    env = os.environ.get("CANORA_VOICES")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "canora" / "voices"


def check_name(name: str) -> str:
    """A voice name: letters, digits, ``_ . -``, at most 64 characters, not the bundled voice's."""
    if not NAME_RE.match(name or ""):
        raise CanoraError(f"voice name {name!r}: use letters, digits, '_', '.', '-' (at most 64, starting with a "
                          "letter or digit)")
    if name == BUNDLED_VOICE or name in bundled_voice_names():
        raise CanoraError(f"voice name {name!r} is a bundled voice's; choose another name")
    return name


@dataclass(frozen=True)
class Voice:
    """A resolved voice: where its models are (None = the bundled one) and the singer to convert into."""

    name: str
    refiner: Path | None
    vocoder: Path | None
    singer: str | None
    folder: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def bundled(self) -> bool:
        """True for the bundled voices (``pjs`` and the folders shipped in ``pretrained/voices``)."""
        return self.folder is None or self.folder.parent == BUNDLED_VOICES_DIR.resolve()


def _read(folder: Path) -> Voice:
    path = folder / VOICE_FILE
    doc = read_json_object(path, "re-create the voice, or point --voice at a voice folder", CheckpointError)
    if doc.get("format") != VOICE_FORMAT:
        fmt = doc.get("format")
        raise CheckpointError(f"{path}: not a canora voice (format {fmt!r}); point --voice at a voice folder")
    version = doc.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: format_version {version!r} is not a format version (a whole number >= 1); "
                              "re-create the voice, or fix the file")
    if version > VOICE_FORMAT_VERSION:
        raise CheckpointError(f"{path}: voice format {version} is newer than this canora reads (up to "
                              f"{VOICE_FORMAT_VERSION}); upgrade canora")

    def model(key: str) -> Path | None:
        v = doc.get(key, "bundled")
        if v in (None, "bundled"):
            return None
        p = (folder / str(v)).resolve()
        if not p.exists():
            raise CheckpointError(f"{path}: its {key} {v!r} is missing from {folder}; copy the whole voice folder")
        return p

    name = str(doc.get("name") or folder.name)
    return Voice(name, model("refiner"), model("vocoder"), doc.get("singer"), folder.resolve(), doc)


def resolve_voice(name_or_path: str | Path) -> Voice:
    """A voice by name (the bundled ``pjs``, or a folder in :func:`voices_dir`) or by the path of its folder."""
    text = str(name_or_path)
    if text == BUNDLED_VOICE or text == "bundled":
        return Voice(BUNDLED_VOICE, None, None, None)
    if text in bundled_voice_names():
        return _read(BUNDLED_VOICES_DIR / text)
    p = Path(text).expanduser()
    if (p / VOICE_FILE).is_file():
        return _read(p)
    if NAME_RE.match(text) and (voices_dir() / text / VOICE_FILE).is_file():
        return _read(voices_dir() / text)
    known = ", ".join(v.name for v in list_voices())
    raise CanoraError(f"no voice {text!r} (not a voice folder, and not in {voices_dir()}); known voices: {known}. "
                      "See `canora voices`")


def list_voices(problems: list[str] | None = None) -> list[Voice]:
    """The bundled voices and every readable voice folder in :func:`voices_dir`; an unreadable one is left out (and,
    given ``problems``, its one-line reason added there), so one broken folder never hides the others. Folders whose
    name starts with a dot (work in progress, a voice being replaced) are not voices."""
    out = [Voice(BUNDLED_VOICE, None, None, None, info={"description": "bundled with canora (PJS corpus singer)"})]
    folders = [BUNDLED_VOICES_DIR / name for name in bundled_voice_names()]
    root = voices_dir()
    try:
        folders += [d for d in sorted(root.iterdir()) if not d.name.startswith(".") and (d / VOICE_FILE).is_file()] \
            if root.is_dir() else []
    except OSError as e:
        if problems is not None:
            problems.append(f"{root}: cannot list the voices ({e.strerror or e})")
    for d in folders:
        try:
            out.append(_read(d))
        except (CanoraError, ValueError, TypeError, OSError) as e:
            if problems is not None:
                problems.append(" ".join(str(e).split()))
    return out


def write_voice_json(folder: Path, doc: dict[str, Any]) -> Path:
    """Write ``folder/voice.json`` (atomically) from ``doc`` plus the format fields."""
    from canora.io.files import atomic_write_text

    full = {"format": VOICE_FORMAT, "format_version": VOICE_FORMAT_VERSION, **doc}
    path = folder / VOICE_FILE
    atomic_write_text(path, json.dumps(full, indent=2) + "\n")
    return path
