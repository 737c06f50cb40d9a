"""The loop's part of every task's training config (:class:`RunConfig`), torch-free so that the command line can
read its defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from canora.config import Config
from canora.errors import CanoraError


@dataclass(frozen=True, kw_only=True)
class RunConfig(Config):
    """The loop's part of every task's training config (saved in each checkpoint)."""

    RESUMABLE: ClassVar[frozenset[str]] = frozenset(
        {"steps", "log_every", "val_every", "checkpoint_every", "keep", "max_minutes", "device"})

    steps: int = 10_000
    log_every: int = 50
    val_every: int = 1000
    checkpoint_every: int = 1000
    keep: int = 3
    max_minutes: float = 0.0  # stop (with a checkpoint and an export) after this long; 0 = no limit
    seed: int = 0
    device: str = "cpu"

    @classmethod
    def upgrade(cls, d: dict[str, Any]) -> dict[str, Any]:
        """canora 0.1 saved the run directory (``out``) in the config; the loop is given it instead."""
        d = super().upgrade(d)
        d.pop("out", None)
        return d

    def __post_init__(self) -> None:
        problems = [f"{n} must be >= 0" for n in ("steps", "log_every", "val_every", "checkpoint_every")
                    if getattr(self, n) < 0]
        if self.keep < 1:
            problems.append("keep must be >= 1")
        if not self.max_minutes >= 0:
            problems.append("max_minutes must be >= 0")
        if problems:
            raise CanoraError(f"invalid training settings ({type(self).__name__}): " + "; ".join(problems))
