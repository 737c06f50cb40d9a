"""Atomic file writes and output-path safety shared by every writer in canora."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from canora.errors import CanoraError


@contextlib.contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """Open a temp file beside ``path`` for binary writing; rename it over ``path`` only on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: Path, writer: Callable[[BinaryIO], None]) -> None:
    """Atomically write ``path`` with ``writer(file_object)``."""
    buf = io.BytesIO()
    writer(buf)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write_with(path, lambda f: np.save(f, array, allow_pickle=False))


def check_output_dir(in_path: Path, out_dir: Path) -> None:
    """Refuse an output directory that is the input directory (outputs would overwrite or mix with inputs)."""
    in_dir = in_path if in_path.is_dir() else in_path.parent
    if out_dir.exists() and in_dir.exists() and out_dir.resolve() == in_dir.resolve():
        raise CanoraError(f"{out_dir}: the output directory is the input directory; choose another -o")


def check_not_input(out_path: Path, in_path: Path) -> None:
    """Refuse to write ``out_path`` when it is the input file itself."""
    if out_path.exists() and in_path.exists() and out_path.resolve() == in_path.resolve():
        raise CanoraError(f"{out_path}: refusing to overwrite the input file; choose another output path")
