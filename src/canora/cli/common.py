"""Helpers shared by subcommands: input listing, batch loops with progress and failure counting."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from canora.errors import CanoraError

log = logging.getLogger("canora")


def add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def apply_device_args(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def list_inputs(
    path: Path, suffixes: Iterable[str], skip: Callable[[Path], bool] | None = None
) -> list[Path]:
    """Files with one of ``suffixes`` in a directory (sorted, leaving out those ``skip`` says), or the one
    file given. Errors when empty or when two inputs share a stem (their outputs would collide)."""
    suffixes = tuple(s.lower() for s in suffixes)
    if not path.exists():
        raise CanoraError(f"{path}: no such file or directory")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes
                       and not (skip and skip(p)))
        if not files:
            raise CanoraError(f"{path}: no input files ({', '.join(suffixes)}) in this directory")
    else:
        files = [path]
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise CanoraError(f"{f}: same name as {stems[f.stem]}; outputs would collide, rename one")
        stems[f.stem] = f
    return files


@dataclass
class BatchResult:
    done: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    def summary(self, verb: str) -> str:
        rtf = self.wall_seconds / self.audio_seconds if self.audio_seconds > 0 else float("nan")
        s = (
            f"{verb} {self.done} file(s), {self.audio_seconds:.1f} s of audio in {self.wall_seconds:.1f} s "
            f"(real-time factor {rtf:.3f})"
        )
        if self.failed:
            s += f"; {len(self.failed)} failed"
        return s


def run_batch(files: list[Path], fn: Callable[[Path], float], desc: str) -> BatchResult:
    """Call ``fn(file) -> audio seconds`` for each file with a progress bar; a file whose ``fn`` raises a
    :class:`CanoraError` is reported on one line and skipped (unless it is the only file, then it raises)."""
    from tqdm import tqdm

    res = BatchResult()
    t0 = time.perf_counter()
    bar = tqdm(files, desc=desc, unit="file", disable=len(files) < 2 or not sys.stderr.isatty(), file=sys.stderr)
    for f in bar:
        try:
            res.audio_seconds += fn(f)
            res.done += 1
        except CanoraError as e:
            if len(files) == 1:
                raise
            res.failed.append((f, str(e)))
            tqdm.write(f"skipped: {e}", file=sys.stderr)
    res.wall_seconds = time.perf_counter() - t0
    return res


def finish(res: BatchResult, verb: str) -> int:
    print(res.summary(verb), file=sys.stderr)
    if res.failed:
        print(f"{len(res.failed)} file(s) failed: " + ", ".join(p.name for p, _ in res.failed), file=sys.stderr)
        return 1
    return 0
