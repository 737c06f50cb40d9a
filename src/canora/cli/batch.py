"""Running a command over many files: a progress bar (stderr), one line per file that fails (the rest go on), a
write error every later file would hit too (a full disk) stopping the batch, and the summary at the end. Every
command that works file by file (convert, mel, refine, vocode, eval, doctor) goes through :func:`run_batch`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from canora.errors import CanoraError


@dataclass
class BatchResult:
    done: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    not_done: list[Path] = field(default_factory=list)
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
        if self.not_done:
            s += f"; {len(self.not_done)} not attempted"
        return s


def _named(f: Path, msg: str) -> str:
    return msg if (f.name in msg or str(f) in msg) else f"{f}: {msg}"


def run_batch(files: list[Path], fn: Callable[[Path], float], desc: str,
              outputs: Callable[[Path], Iterable[Path]] | None = None) -> BatchResult:
    """Call ``fn(file) -> audio seconds`` for each file with a progress bar (stderr). A file whose ``fn`` raises is
    reported on one line and skipped, and the rest go on (unless it is the only file: then it raises); a write
    error that every later file would hit too (a full disk, a read-only file system) stops the batch there.
    ``outputs(file)``: the paths ``fn`` writes, claimed (:func:`canora.io.files.claim`) while it runs, so a second
    run writing one of them is refused instead of racing this one."""
    from canora.cli.progress import quiet_logs_under_bars

    res = BatchResult()
    t0 = time.perf_counter()
    with quiet_logs_under_bars():
        _run_files(files, fn, desc, outputs, res)
    res.wall_seconds = time.perf_counter() - t0
    return res


def _run_files(files: list[Path], fn: Callable[[Path], float], desc: str,
               outputs: Callable[[Path], Iterable[Path]] | None, res: BatchResult) -> None:
    """The loop of :func:`run_batch`, filling ``res``."""
    from tqdm import tqdm

    from canora.cli.progress import BatchBar
    from canora.io.files import FATAL_ERRNOS, claim
    from canora.memory import release_free_memory

    bar = BatchBar(files, desc)
    for i, f in enumerate(files):
        bar.begin(i, f)
        try:
            with claim(outputs(f) if outputs is not None else ()):
                res.audio_seconds += fn(f)
            res.done += 1
        except CanoraError as e:
            if len(files) == 1:
                raise
            res.failed.append((f, str(e)))
            tqdm.write(f"skipped: {_named(f, ' '.join(str(e).split()))}", file=sys.stderr)
            if getattr(e, "errno", None) in FATAL_ERRNOS:
                res.not_done = files[i + 1:]
                break
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # a bug, or an error no check foresaw: this file fails, the batch goes on
            if len(files) == 1:
                raise
            msg = f"unexpected error {type(e).__name__}: {' '.join(str(e).split())[:300]}"
            res.failed.append((f, msg))
            tqdm.write(f"skipped: {f}: {msg}", file=sys.stderr)
        finally:
            bar.end(f)
            release_free_memory()  # the next file starts from the memory the last one freed
    bar.close()


def finish(res: BatchResult, verb: str) -> int:
    """The summary line of a batch and, when files failed, the line naming them (stderr) -> the exit status."""
    print(res.summary(verb), file=sys.stderr)
    return report_failures(res)


def report_failures(res: BatchResult) -> int:
    """The line naming the files that failed or were not attempted (stderr), if any -> the exit status."""
    if res.failed or res.not_done:
        names = ", ".join(p.name for p, _ in res.failed)
        line = f"{len(res.failed)} file(s) failed: {names}" if res.failed else ""
        if res.not_done:
            line += ("; " if line else "") + (f"stopped after a write error; not attempted: "
                                              f"{', '.join(p.name for p in res.not_done)}")
        print(line, file=sys.stderr)
        return 1
    return 0
