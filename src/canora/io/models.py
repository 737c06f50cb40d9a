"""Model names and paths: ``bundled`` (or nothing) means the model shipped with canora, ``bundled-base`` the
multi-singer refiner shipped to fine-tune voices from; anything else is a path.

:func:`resolve_model` is the one place the name is turned into a path (the CLI, and ``from_pretrained``);
:func:`load_model` runs a model loader so that every way a model file can be broken (a value of the wrong type in
``model.json``, a missing key, weights that do not fit) ends as one :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from canora.errors import CanoraError, CheckpointError

T = TypeVar("T")

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"
#: kind -> the directory of the bundled model of that kind
BUNDLED: dict[str, Path] = {"refiner": PRETRAINED / "refiner", "vocoder": PRETRAINED / "vocoder"}
#: names that mean the bundled model (a directory of that name is given as ``./bundled``)
BUNDLED_NAMES = ("bundled",)
#: the name of the bundled multi-singer base refiner (``train-voice --base``, ``--init-from``, ``--refiner``)
BASE_NAME = "bundled-base"
BUNDLED_BASE = PRETRAINED / "base"


def is_bundled_name(name_or_path: str | Path | None) -> bool:
    """True for None and the names in :data:`BUNDLED_NAMES` (not for a path such as ``./bundled``)."""
    return name_or_path is None or (isinstance(name_or_path, str) and name_or_path.strip().lower() in BUNDLED_NAMES)


def resolve_model(name_or_path: str | Path | None, kind: str) -> Path:
    """The path of the ``kind`` model (``"refiner"`` or ``"vocoder"``) given by ``name_or_path``: None or
    ``"bundled"`` -> the bundled one, ``"bundled-base"`` -> the bundled base refiner, else the path, which must
    exist. One :class:`CheckpointError` otherwise."""
    if kind not in BUNDLED:
        raise CanoraError(f"unknown model kind {kind!r}; expected one of {', '.join(BUNDLED)}")
    if isinstance(name_or_path, str) and name_or_path.strip().lower() == BASE_NAME:
        if kind != "refiner":
            raise CanoraError(f"{BASE_NAME} is a refiner (the multi-singer base for voices), not a {kind}")
        if not BUNDLED_BASE.exists():
            raise CheckpointError(f"{BUNDLED_BASE}: the bundled base refiner is missing; reinstall canora")
        return BUNDLED_BASE
    if is_bundled_name(name_or_path):
        path = BUNDLED[kind]
        if not path.exists():
            raise CheckpointError(f"{path}: the bundled {kind} is missing; reinstall canora")
        return path
    path = Path(name_or_path)  # type: ignore[arg-type]
    if not path.exists():
        what = "an export directory" if kind == "refiner" else "an export directory or an official g_* checkpoint"
        raise CheckpointError(f"{path}: {kind} not found; pass {what}, or 'bundled' for the bundled {kind}")
    return path


def model_file(path: Path) -> Path:
    """The file a model's settings are read from: ``model.json`` of an export, else the path itself."""
    from canora.io.checkpoint import EXPORT_META  # (torch is imported only when a model is loaded)

    return path / EXPORT_META if path.is_dir() and (path / EXPORT_META).is_file() else path


def load_model(name_or_path: str | Path | None, kind: str, loader: Callable[[Path], T],
               settings: str | Path | None = None) -> T:
    """``loader(path)`` for the model :func:`resolve_model` finds, with every failure as one
    :class:`CheckpointError` that names the model's file (a message that does not name it is prefixed with it):
    ``settings`` when given (the ``config.json`` an official checkpoint is read with), else ``model.json`` of an
    export, else the path."""
    path = resolve_model(name_or_path, kind)
    where = Path(settings) if settings is not None else model_file(path)
    try:
        return loader(path)
    except CanoraError as e:
        msg = str(e)
        head = msg.split(": ", 1)[0]
        if str(path) in msg or str(where) in msg or (head and Path(head).exists()):  # it names its file already
            raise
        raise type(e)(f"{where}: {msg}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError, OSError) as e:
        detail = (str(e).splitlines() or [""])[0][:160] or type(e).__name__
        raise CheckpointError(f"{where}: not a usable {kind} ({type(e).__name__}: {detail}); fix or re-export the "
                              f"model, or pass another --{kind}") from None

