"""Input files read safely: regular files only, and no more bytes than a file of its kind can sensibly hold.

A named pipe, a device (``/dev/zero``, ``/dev/stdin``) or a socket given as audio, weights or a config would block
or never end when read; a weights file grown (or linked) to many GB would be read whole into memory. Every reader of
model files goes through :func:`read_bytes_capped`, every reader of inputs through :func:`require_regular_file`
(JSON files: :func:`canora.config.read_json_file`).
"""

from __future__ import annotations

import os
from pathlib import Path

from canora.config import MAX_JSON_BYTES, read_capped, read_json_file, regular_file
from canora.errors import CanoraError

__all__ = ["MAX_JSON_BYTES", "MAX_WEIGHTS_BYTES", "read_bytes_capped", "read_json_file", "require_regular_file"]

#: the largest model weights file canora reads (its largest model, HiFi-GAN v1, is 55 MB)
MAX_WEIGHTS_BYTES = 2**30


def require_regular_file(path: str | os.PathLike, what: str = "file",
                         error: type[Exception] = CanoraError) -> Path:
    """``path`` when it is a regular file (symlinks followed), else one ``error`` line (see
    :func:`canora.config.regular_file`)."""
    regular_file(path, what, error)
    return Path(path)


def read_bytes_capped(path: str | os.PathLike, what: str, error: type[Exception] = CanoraError,
                      limit: int = MAX_WEIGHTS_BYTES) -> bytes:
    """The bytes of the regular file ``path``, refused (one ``error`` line) when it holds more than ``limit``."""
    return read_capped(path, what, limit, "is it the right file?", error)
