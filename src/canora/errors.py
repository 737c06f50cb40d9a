"""User-facing errors: one clear line naming the file and the fix."""

from __future__ import annotations


class CanoraError(Exception):
    """An error caused by the user's input; the CLI prints ``str(err)`` as one line, no traceback."""


class AudioError(CanoraError):
    """Audio that cannot be read or used (missing, corrupt, empty, silent)."""


class MelError(CanoraError):
    """A mel of the wrong shape, layout, values or convention."""


class CheckpointError(CanoraError):
    """A checkpoint that is not one, is for another config, or is from a newer format."""
