"""Progress a person can see: on a terminal, a bar per batch (file n/N, the time left) and a bar per song (its
slices); nothing when stderr is not a terminal (piped or redirected: logs stay clean), or with ``CANORA_PROGRESS=0``.

The batch bar counts the audio (seconds, from the files' headers) rather than the files, so its time left holds when
a long song follows short ones; its label says which file of how many is being worked on.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BAR = "{desc} {percentage:3.0f}%|{bar:24}| [{elapsed}<{remaining}]"


def enabled() -> bool:
    """Bars are drawn: stderr is a terminal and ``CANORA_PROGRESS`` is not ``0``."""
    return sys.stderr.isatty() and os.environ.get("CANORA_PROGRESS", "1") != "0"


def _weight(f: Path) -> float:
    """How long ``f`` takes, roughly: its seconds of audio (from the header), else its size in MB, at least a bit."""
    from canora.errors import CanoraError
    from canora.io.audio import AUDIO_EXTENSIONS, audio_info

    if f.suffix.lower() in AUDIO_EXTENSIONS:
        try:
            _, rate, frames = audio_info(f)
            if frames and rate:
                return max(frames / rate, 0.1)
        except CanoraError:
            pass
    try:
        return max(f.stat().st_size / 2**20, 0.1)
    except OSError:
        return 1.0


class BatchBar:
    """The bar over a batch of files (drawn only for two files or more, on a terminal)."""

    def __init__(self, files: list[Path], verb: str) -> None:
        from tqdm import tqdm

        self.files, self.verb = files, verb
        self.show = enabled() and len(files) > 1
        self.weights = {f: _weight(f) for f in files} if self.show else {}
        self.bar = tqdm(total=sum(self.weights.values()) or 1, desc=verb, bar_format=BAR, file=sys.stderr,
                        disable=not self.show)

    def begin(self, i: int, f: Path) -> None:
        self.bar.set_description_str(f"{self.verb} {i + 1}/{len(self.files)} {f.name[:40]}")

    def end(self, f: Path) -> None:
        self.bar.update(self.weights.get(f, 0.0))

    def close(self) -> None:
        self.bar.close()


@contextlib.contextmanager
def quiet_logs_under_bars() -> Iterator[None]:
    """Log lines written above the bars (through tqdm) instead of through them, while bars are drawn."""
    if not enabled():
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        yield


@contextlib.contextmanager
def song_bar(name: str, nested: bool = False) -> Iterator[Callable[[float, str], None]]:
    """A bar over one song, as ``on_progress(fraction, what)`` (what :meth:`canora.pipeline.Converter.convert`
    calls as its slices are analysed and converted); under the batch bar when ``nested``."""
    from tqdm import tqdm

    bar: Any = tqdm(total=1000, desc=name[:40], bar_format=BAR, file=sys.stderr, leave=False,
                    position=1 if nested else 0, disable=not enabled())

    def on_progress(fraction: float, what: str) -> None:
        bar.n = min(1000, max(0, round(1000 * fraction)))
        bar.set_description_str(f"{name[:40]}: {what}", refresh=False)
        bar.refresh()

    try:
        yield on_progress
    finally:
        bar.close()
