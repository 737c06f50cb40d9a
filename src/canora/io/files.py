"""Atomic file writes, output sets published together, and the output checks every command makes before its work.

* :func:`atomic_open` / :func:`atomic_write_bytes`: one file, written to a temp name beside it and renamed over it
  only when complete.
* :class:`OutputSet`: several files that belong together (``out.wav`` and its ``out.json`` sidecar): every one is
  written to a temp name first, then all are renamed; on any error nothing is published and no temp is left.
* :func:`check_outputs` / :func:`check_writable`: before any work, the outputs are not inputs, do not exist
  (unless overwriting), and their directory takes a new file (a temp file is created and removed there).

Two runs never write one output unseen: :func:`claim` takes a lock file beside each output for the time it is made
(a second run that wants it is refused at once, naming the first's pid), and without ``overwrite`` a file is
published by a hard link that fails when the name exists (an output that appeared meanwhile is never replaced).

Every ``OSError`` while writing (full disk, read-only file system, no permission, ...) becomes one
:class:`OutputError` line naming the file and the fix. Temp files are named ``.<name>.canora-<pid>-<random>.tmp``;
:func:`remove_stale_temps` deletes those of processes that are gone (killed mid-write).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from canora.errors import CanoraError


class OutputError(CanoraError):
    """An output that cannot be written (it exists, is an input, or the disk refuses: full, read-only, no access)."""


#: errno -> the fix, for the one-line message of an OSError while writing
_FIXES: dict[int, str] = {
    errno.ENOSPC: "the disk is full; free some space or choose another -o",
    errno.EROFS: "the file system is read-only; choose another -o",
    errno.EACCES: "no permission to write there; choose another -o (a directory you can write to)",
    errno.EPERM: "no permission to write there; choose another -o (a directory you can write to)",
    errno.ENAMETOOLONG: "the name is too long for the file system; choose a shorter -o",
    errno.ENOTDIR: "a part of the path is a file, not a directory; choose another -o",
    errno.EISDIR: "that is a directory; give a file name, or choose another -o",
    errno.EEXIST: "a file is in the way of a directory of that name; choose another -o",
    errno.EIO: "the device reported an input/output error; check the disk, or choose another -o",
}
if hasattr(errno, "EDQUOT"):
    _FIXES[errno.EDQUOT] = "the disk quota is used up; free some space or choose another -o"

#: write errors that hit every later file in the same place too (a batch stops at them instead of going on)
FATAL_ERRNOS = frozenset(e for e in (errno.ENOSPC, errno.EROFS, getattr(errno, "EDQUOT", None)) if e is not None)

_TEMP_RE = re.compile(r"^\..*\.canora-(\d+)-[^/]*\.tmp$")


def describe_os_error(path: str | Path, e: OSError, doing: str = "cannot write") -> str:
    """One line for an ``OSError`` on ``path``: what failed, why, and the fix."""
    reason = e.strerror or str(e) or type(e).__name__
    return f"{path}: {doing} ({reason}); {_FIXES.get(e.errno or -1, 'choose another -o')}"


def output_error(path: str | Path, e: OSError, doing: str = "cannot write") -> OutputError:
    """An :class:`OutputError` for ``e`` on ``path``; ``.errno`` is kept (batches stop at a full disk)."""
    err = OutputError(describe_os_error(path, e, doing))
    err.errno = e.errno  # type: ignore[attr-defined]
    return err


def _mkstemp(path: Path) -> tuple[int, str]:
    """A new temp file beside ``path`` (same file system, so the rename is atomic), named after it and this pid."""
    return tempfile.mkstemp(prefix=f".{path.name[:100]}.canora-{os.getpid()}-", suffix=".tmp", dir=path.parent)


def _unlink_quietly(p: str | Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(p)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Delete canora temp files in ``directory`` whose writing process is gone (a crash or SIGKILL mid-write);
    those of live processes (another rank, another run) are left alone. Returns the removed paths."""
    directory = Path(directory)
    removed: list[Path] = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TEMP_RE.match(p.name)
        if m and not _pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                if p.is_dir() and not p.is_symlink():  # a staged directory (an export written whole, then renamed)
                    shutil.rmtree(p)
                else:
                    p.unlink()
                removed.append(p)
    return removed


def _chmod_default(tmp: str) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


def _exists_error(path: Path) -> OutputError:
    return OutputError(f"{path}: already exists (written meanwhile by another run?); pass --overwrite to replace it, "
                       "or choose another -o")


def publish(tmp: str | Path, path: Path, overwrite: bool = True) -> None:
    """Rename the finished temp file ``tmp`` to ``path``: over an existing file when ``overwrite``, else only when
    ``path`` does not exist (a hard link, atomic; where the file system has no hard links, checked just before)."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _exists_error(path) from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        if path.exists() or path.is_symlink():
            raise _exists_error(path) from None
        os.replace(tmp, path)
        return
    _unlink_quietly(tmp)


def _lock_name(path: Path) -> Path:
    return path.with_name(f".{path.name[:100]}.canora-lock")


def _lock_owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def claim(paths: Iterable[str | Path]) -> Iterator[None]:
    """Hold a lock file beside each of ``paths`` (``.<name>.canora-lock``, holding this pid) while the block makes
    them: another run that claims one of them meanwhile gets one :class:`OutputError` naming this pid. A lock left by
    a process that is gone is taken over. The locks are removed on the way out."""
    held: list[Path] = []
    try:
        for p in map(Path, paths):
            lock = _lock_name(p)
            for _ in range(3):
                try:
                    p.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    owner = _lock_owner(lock)
                    if owner is not None and owner != os.getpid() and _pid_alive(owner):
                        raise OutputError(f"{p}: another canora run (pid {owner}) is writing it now; wait for it to "
                                          f"finish, or choose another -o (its lock: {lock.name})") from None
                    _unlink_quietly(lock)  # stale: its process is gone (or wrote no pid yet, and is gone)
                    continue
                except OSError as e:
                    raise output_error(p, e) from None
                with os.fdopen(fd, "w") as f:
                    f.write(f"{os.getpid()}\n")
                held.append(lock)
                break
        yield
    finally:
        for lock in held:
            _unlink_quietly(lock)


@contextlib.contextmanager
def atomic_open(path: Path, overwrite: bool = True) -> Iterator[BinaryIO]:
    """Open a temp file beside ``path`` for binary writing; rename it over ``path`` only on success (without
    ``overwrite``: only when ``path`` does not exist by then, see :func:`publish`).

    An ``OSError`` (full disk, read-only, no permission) becomes one :class:`OutputError` naming ``path``; the
    temp file is removed on any error.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _mkstemp(path)
    except OSError as e:
        raise output_error(path, e) from None
    try:
        _chmod_default(tmp)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path, overwrite)
    except OutputError:
        _unlink_quietly(tmp)
        raise
    except OSError as e:
        _unlink_quietly(tmp)
        raise output_error(path, e) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes, overwrite: bool = True) -> None:
    with atomic_open(Path(path), overwrite) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str, overwrite: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), overwrite)


def atomic_write_with(path: Path, writer: Callable[[BinaryIO], None]) -> None:
    """Atomically write ``path`` with ``writer(file_object)``."""
    atomic_write_bytes(path, bytes_with(writer))


def bytes_with(writer: Callable[[BinaryIO], None]) -> bytes:
    """What ``writer(file_object)`` writes, as bytes (to stage it in an :class:`OutputSet`)."""
    buf = io.BytesIO()
    writer(buf)
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a ``.npy`` file (no pickles)."""
    return bytes_with(lambda f: np.save(f, array, allow_pickle=False))


def atomic_save_npy(path: Path, array: np.ndarray, overwrite: bool = True) -> None:
    atomic_write_bytes(path, npy_bytes(array), overwrite)


class OutputSet:
    """Files that belong together (audio + sidecar), published together.

    ``add`` writes each file to a temp name beside its target (and syncs it); leaving the ``with`` block
    renames them all, in the order added. An error anywhere (in ``add``, in the work inside the block, or in a
    rename) publishes nothing new: the temps are removed and files already renamed in this set that did not
    exist before are removed again (a file that was overwritten cannot be brought back). ``OSError`` becomes
    one :class:`OutputError` naming the file. Without ``overwrite`` a name that exists by then is not replaced
    (:func:`publish`): the set is not published.
    """

    def __init__(self, overwrite: bool = True) -> None:
        self._staged: list[tuple[str, Path]] = []
        self.overwrite = overwrite

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    def add(self, path: str | Path, data: bytes) -> Path:
        """Stage ``data`` as ``path``."""
        return self.add_with(path, lambda f: f.write(data))

    def add_with(self, path: str | Path, writer: Callable[[BinaryIO], object]) -> Path:
        """Stage what ``writer(file_object)`` writes as ``path`` (written straight into the temp file: a long song
        is never a second time in memory as bytes)."""
        path = Path(path)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = _mkstemp(path)
            _chmod_default(tmp)
            with os.fdopen(fd, "wb") as f:
                writer(f)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            if tmp is not None:
                _unlink_quietly(tmp)
            self.discard()
            raise output_error(path, e) from None
        except BaseException:
            if tmp is not None:
                _unlink_quietly(tmp)
            self.discard()
            raise
        self._staged.append((tmp, path))
        return path

    def commit(self) -> list[Path]:
        """Rename every staged file to its name; returns the published paths."""
        done: list[tuple[Path, bool]] = []
        try:
            for tmp, path in self._staged:
                existed = path.exists()
                publish(tmp, path, self.overwrite)
                done.append((path, existed))
        except OutputError:
            for p, existed in done:
                if not existed:
                    _unlink_quietly(p)
            self.discard()
            raise
        except OSError as e:
            for p, existed in done:
                if not existed:
                    _unlink_quietly(p)
            self.discard()
            raise output_error(path, e) from None
        self._staged = []
        return [p for p, _ in done]

    def discard(self) -> None:
        """Remove every staged temp file (nothing is published)."""
        for tmp, _ in self._staged:
            _unlink_quietly(tmp)
        self._staged = []


# ---------------------------------------------------------------------- checks before the work
def resolved(path: str | Path) -> Path:
    """``path`` made absolute with its links followed, or one :class:`OutputError` when a link in it points back at
    itself (``Path.resolve`` raises RuntimeError for that)."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):
        raise OutputError(f"{path}: a symbolic link loop in this path (a link that points back at itself); fix the "
                          "link or choose another path") from None


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def check_writable(directory: str | Path, need_bytes: int = 0) -> None:
    """Before any work: a new file can be created in ``directory`` (or, when it does not exist yet, in its
    nearest existing parent, where it will be created), and the disk has ``need_bytes`` free. A temp file is
    created and removed to find out; nothing else is made."""
    directory = Path(directory)
    base = _nearest_existing(directory)
    if not base.is_dir():
        raise OutputError(f"{directory}: {base} is a file, not a directory; choose another -o")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".canora-write-check-{os.getpid()}-", suffix=".tmp", dir=base)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise output_error(directory, e, "cannot write here") from None
    try:
        free = shutil.disk_usage(base).free
    except OSError:
        return
    if free < max(1, need_bytes):
        need = f" (about {need_bytes / 2**20:.1f} MB needed, {free / 2**20:.1f} MB free)" if need_bytes else ""
        raise OutputError(f"{directory}: the disk is full{need}; free some space or choose another -o")


def check_outputs(
    paths: Iterable[str | Path], *, overwrite: bool = False, inputs: Iterable[str | Path] = (), need_bytes: int = 0
) -> None:
    """Before any work: no output is an input or a directory, none exists unless ``overwrite``, and every output
    directory takes a new file (see :func:`check_writable`; ``need_bytes`` in all). Stale canora temp files in
    those directories (of a killed run) are removed."""
    ins = {resolved(p) for p in inputs}
    existing: list[Path] = []
    dirs: dict[Path, None] = {}
    for p in map(Path, paths):
        if resolved(p) in ins:
            raise OutputError(f"{p}: refusing to overwrite the input file; choose another -o")
        if p.is_dir():
            raise OutputError(f"{p}: is a directory, so it cannot be written as a file; choose another -o")
        if p.exists() or p.is_symlink():
            existing.append(p)
        dirs.setdefault(p.parent)
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more output(s))" if len(existing) > 1 else ""
        raise OutputError(f"{existing[0]}: already exists{more}; pass --overwrite to replace, or choose another -o")
    for d in dirs:
        check_writable(d, need_bytes)
        remove_stale_temps(d)


def check_output_dir(in_path: Path, out_dir: Path) -> None:
    """Refuse an output directory that is the input directory (outputs would overwrite or mix with inputs), or
    that is an existing file."""
    in_dir = in_path if in_path.is_dir() else in_path.parent
    if out_dir.exists() and in_dir.exists() and resolved(out_dir) == resolved(in_dir):
        raise CanoraError(f"{out_dir}: the output directory is the input directory; choose another -o")
    if out_dir.exists() and not out_dir.is_dir():
        raise CanoraError(f"{out_dir}: exists and is a file, not a directory; choose another -o")


def check_not_input(out_path: Path, in_path: Path) -> None:
    """Refuse to write ``out_path`` when it is the input file itself."""
    if out_path.exists() and in_path.exists() and resolved(out_path) == resolved(in_path):
        raise CanoraError(f"{out_path}: refusing to overwrite the input file; choose another output path")


def read_json_object(path: Path, fix: str, error: type[Exception] | None = None) -> dict:
    """The JSON object in ``path``, or one error line (``error``, default :class:`CanoraError`) naming the file,
    what is wrong with it and ``fix``."""
    from canora.config import read_json_file

    error = error or CanoraError
    doc = read_json_file(path, fix, error)
    if not isinstance(doc, dict):
        raise error(f"{path}: expected a JSON object, got {type(doc).__name__}; {fix}")
    return doc
