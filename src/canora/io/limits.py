"""How much audio canora decodes from one file, whatever its header says.

Two caps, both from :class:`AudioLimits`: the duration (``max_minutes``, 30 by default: a long live set, and under
2 GB of memory for a conversion on this project's machine) and the decoded samples (frames x channels, as many as
``max_minutes`` of 8 channels at 192 kHz). A file is refused from its header when the header says it is beyond them,
and while it is decoded when the header does not say (a FLAC of "unknown length") or says less than it holds. The
command line sets the limits from ``--max-audio-minutes`` (:func:`limited`); in Python, call
``with canora.io.limits.limited(120): ...`` around the reads.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

from canora.errors import AudioError

DEFAULT_MAX_MINUTES = 30.0
#: decoded samples allowed per second of the duration cap: 8 channels at 192 kHz
SAMPLES_PER_SECOND = 8 * 192_000
#: the highest sample rate a header may claim (beyond it the header is taken as damaged)
MAX_SAMPLE_RATE = 768_000
#: the longest cap ``--max-audio-minutes`` takes (a day of audio)
MAX_MINUTES_CAP = 24 * 60.0
#: a header's frame count at or above this means "unknown" (libsndfile reports such files as SF_COUNT_MAX frames)
UNKNOWN_FRAMES = 2**40


@dataclass(frozen=True)
class AudioLimits:
    """The caps on one decoded file: ``max_minutes`` of audio and ``max_minutes * 60 * SAMPLES_PER_SECOND``
    decoded samples; ``flag`` is how the user raises them (named in every refusal)."""

    max_minutes: float = DEFAULT_MAX_MINUTES
    flag: str = "--max-audio-minutes"

    def __post_init__(self) -> None:
        check_max_minutes(self.max_minutes, self.flag)

    @property
    def max_seconds(self) -> float:
        return 60.0 * self.max_minutes

    @property
    def max_samples(self) -> int:
        return int(self.max_seconds * SAMPLES_PER_SECOND)

    def _raise(self, minutes: float) -> str:
        enough = math.ceil(minutes) if minutes >= 1 else math.ceil(minutes * 10) / 10  # a round number above it
        return f"pass {self.flag} {enough:g} to read it, or cut the file"

    def check_header(self, name: str, rate: int, channels: int, frames: int) -> None:
        """One :class:`AudioError` when a header's duration or decoded samples are beyond the caps (``frames`` at
        or above :data:`UNKNOWN_FRAMES`: unknown, checked while decoding)."""
        if frames >= UNKNOWN_FRAMES:
            return
        minutes = frames / rate / 60
        if minutes > self.max_minutes:
            raise AudioError(f"{name}: {minutes:.1f} minutes of audio is over the limit of {self.max_minutes:g} "
                             f"minutes; {self._raise(minutes)}")
        if frames * channels > self.max_samples:
            raise AudioError(f"{name}: {channels} channel(s) x {frames} frames is over the limit of "
                             f"{self.max_samples:,} decoded samples ({self.max_minutes:g} minutes of 8 channels at "
                             f"192 kHz); {self._raise(minutes * channels * rate / SAMPLES_PER_SECOND)}, or downmix "
                             "and resample it first")

    def check_decoded(self, name: str, rate: int, channels: int, frames: int) -> None:
        """One :class:`AudioError` once ``frames`` decoded so far are beyond the caps (for headers that do not say
        how long the file is, or say less than it holds)."""
        if frames > self.max_seconds * rate or frames * channels > self.max_samples:
            raise AudioError(f"{name}: more than {self.max_minutes:g} minutes of audio (the limit; its header does not "
                             f"say how long it is); pass {self.flag} N to read longer files, or cut the file")


def check_max_minutes(minutes: object, flag: str = "--max-audio-minutes") -> float:
    """``minutes`` as a float in (0, :data:`MAX_MINUTES_CAP`], or one :class:`AudioError` naming ``flag``."""
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not math.isfinite(minutes) \
            or not 0 < minutes <= MAX_MINUTES_CAP:
        raise AudioError(f"{flag} must be a number of minutes in (0, {MAX_MINUTES_CAP:g}], got {minutes!r}")
    return float(minutes)


_current = AudioLimits()


def audio_limits() -> AudioLimits:
    """The limits every audio read uses now."""
    return _current


@contextlib.contextmanager
def limited(max_minutes: float, flag: str = "--max-audio-minutes") -> Iterator[AudioLimits]:
    """Audio reads inside the block are capped at ``max_minutes`` (refusals name ``flag``); restored after."""
    global _current
    before, _current = _current, AudioLimits(float(max_minutes), flag)
    try:
        yield _current
    finally:
        _current = before
