"""One base for every saved config: a frozen dataclass that turns into a JSON-able dict and back, checked.

``Config.from_dict(d, source)`` refuses unknown keys, renames keys written by older canora versions
(:attr:`Config.RENAMED`), lets a subclass upgrade older layouts (:meth:`Config.upgrade`), and checks every
value against the field's annotation (``int``, ``float``, ``str``, ``bool``, ``Literal``, ``X | None``,
``tuple[int, ...]``, nested tuples, mappings) before ``__post_init__`` runs, so a config file with ``"abc"``
for a sample rate or ``[256]`` for a hop is one clear error naming the file and the field, not a traceback
from deep inside a model (or an attempt to allocate a 1e8-channel layer).

Only the parts of a config that describe a model or a run belong here; the CLI reads its defaults from the
same classes (:func:`default_of`), so a default is written once.

Numbers also have sane bounds (:attr:`Config.BOUNDS`, checked with the types): an edited config cannot ask for a
layer of a million channels before any memory is allocated. Config files themselves are read by
:func:`read_json_file`: regular files of at most :data:`MAX_JSON_BYTES` only (``--config /dev/zero`` or a named
pipe would otherwise be read forever).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import stat
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from canora.errors import CanoraError, CheckpointError

C = TypeVar("C", bound="Config")

#: the largest JSON file canora reads (a model.json with per-bin statistics is some kB)
MAX_JSON_BYTES = 16 * 2**20
_FILE_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def regular_file(path: str | os.PathLike, what: str = "file", error: type[Exception] = CanoraError) -> os.stat_result:
    """The ``stat`` of ``path`` when it is a regular file (symlinks followed), else one ``error`` line: missing, a
    directory, a symlink loop, or a pipe/device/socket, which could block or never end when read."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise error(f"{path}: a symbolic link loop (a link that points back at itself); fix the link") from None
        raise error(f"{path}: cannot read the {what} ({e.strerror or e}); check the path and its permissions") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a directory, expected a {what}")
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "not a regular file")
        raise error(f"{path}: is {kind}, not a regular file, and reading it could block or never end; save the "
                    f"{what} to a file and pass that")
    return st


def read_capped(path: str | os.PathLike, what: str, limit: int, fix: str,
                error: type[Exception] = CanoraError) -> bytes:
    """The bytes of the regular file ``path``, or one ``error`` line naming the file when it is not a regular file,
    holds more than ``limit`` bytes (by its size, or while read) or cannot be read; ``fix`` ends the line."""
    st = regular_file(path, what, error)
    if st.st_size > limit:
        raise error(f"{path}: {st.st_size / 2**20:.0f} MB is too large for a {what} (at most "
                    f"{limit / 2**20:.0f} MB); {fix}")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror or e}); {fix}") from None
    if len(data) > limit:
        raise error(f"{path}: grew beyond {limit / 2**20:.0f} MB while read, too large for a {what}; {fix}")
    return data


def read_json_file(path: str | os.PathLike, fix: str, error: type[Exception] = CanoraError,
                   what: str = "JSON file") -> Any:
    """The JSON value in ``path`` (a regular file of at most :data:`MAX_JSON_BYTES`), or one ``error`` line naming
    the file, what is wrong and ``fix``."""
    data = read_capped(path, what, MAX_JSON_BYTES, fix, error)
    try:
        return json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        detail = " ".join(str(e).split())[:160]
        raise error(f"{path}: not valid JSON ({detail}); {fix}") from None


class _Bad(ValueError):
    """A value that does not fit its field's type (message: what was expected)."""


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as the annotation ``hint`` wants it (lists become tuples), or :class:`_Bad`."""
    if hint is Any or hint is object:
        return value
    origin, args = get_origin(hint), get_args(hint)
    if origin is Union or origin is types.UnionType:
        if value is None:
            if type(None) in args:
                return None
            raise _Bad("a value, not null")
        wanted = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a)
            except _Bad as e:
                wanted.append(str(e))
        raise _Bad(" or ".join(wanted))
    if origin is Literal:
        for a in args:
            if value == a and type(value) is type(a):
                return a
            if isinstance(a, str) and isinstance(value, int) and not isinstance(value, bool) and str(value) == a:
                return a  # official HiFi-GAN configs write resblock as 1 or "1"
        raise _Bad("one of " + ", ".join(repr(a) for a in args))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Bad(f"a list ({hint})")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if len(value) != len(args):
            raise _Bad(f"a list of {len(args)} values")
        return tuple(_coerce(v, a) for v, a in zip(value, args))
    if origin in (dict, Mapping) or hint in (dict, Mapping) or origin is typing.Mapping:
        if not isinstance(value, Mapping):
            raise _Bad("a JSON object")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Bad("true or false")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise _Bad("an integer")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad("a number")
        if not math.isfinite(value):
            raise _Bad("a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _Bad("a string")
        return value
    return value


def _numbers(value: Any) -> list[float]:
    """Every number in ``value`` (a number, or tuples of them)."""
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def _out_of_bounds(value: Any, bounds: tuple[float, float] | None) -> str:
    """What is wrong with ``value`` against ``bounds`` (lowest, highest), or "" when it fits."""
    if bounds is None:
        return ""
    lo, hi = bounds
    bad = [x for x in _numbers(value) if not lo <= x <= hi]
    return f"{bad[0]!r} is outside the sane range {lo:g}..{hi:g}" if bad else ""


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively (what JSON holds)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of canora's saved configs (subclasses are frozen dataclasses)."""

    #: old key -> current key, for files written by earlier canora versions
    RENAMED: ClassVar[dict[str, str]] = {}
    #: field -> (lowest, highest) sane value: numbers, and every number inside a tuple field
    BOUNDS: ClassVar[dict[str, tuple[float, float]]] = {}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples as lists) that :meth:`from_dict` reads back to an equal config."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def upgrade(cls, d: dict[str, Any]) -> dict[str, Any]:
        """Hook: bring a dict written by an older canora to the current layout (default: keys renamed)."""
        return {cls.RENAMED.get(k, k): v for k, v in d.items()}

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any], source: str = "") -> C:
        """The config in ``d`` (from JSON), every value checked against its field; ``source`` (a file name)
        starts every error message."""
        where = f"{source}: " if source else ""
        if not isinstance(d, Mapping):
            raise CheckpointError(f"{where}{cls.__name__} must be a JSON object, got {type(d).__name__}")
        d = cls.upgrade(dict(d))
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise CheckpointError(f"{where}{cls.__name__} has unknown keys {unknown}; written by a newer canora? "
                                  "upgrade canora")
        hints = typing.get_type_hints(cls)
        values = {}
        for k, v in d.items():
            try:
                values[k] = _coerce(v, hints[k])
            except _Bad as e:
                raise CheckpointError(f"{where}{cls.__name__}.{k} = {v!r}: expected {e}; fix or re-create "
                                      "the file") from None
        for k, v in values.items():
            problem = _out_of_bounds(v, cls.BOUNDS.get(k))
            if problem:
                raise CheckpointError(f"{where}{cls.__name__}.{k} = {v!r}: {problem}; fix or re-create the file")
        missing = [n for n, f in names.items() if n not in values and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise CheckpointError(f"{where}{cls.__name__} lacks {missing}; the file is incomplete")
        try:
            return cls(**values)
        except CanoraError as e:  # __post_init__ validation: name the file too
            raise CheckpointError(f"{where}{e}") from None


def default_of(cls: type[Config], name: str) -> Any:
    """The default of field ``name`` of ``cls`` (for CLI defaults and help texts)."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")
