"""The checked options of one conversion, and the key and level policy: one module decides them for offline
conversion (:class:`canora.pipeline.Converter`), streaming (:class:`canora.streaming.StreamConverter`) and the
commands that take ``--transpose``.

The key: no ``transpose`` means the automatic key (the song moved toward the singer's range, whole octaves with
``key_mode="octave"``, any semitone with ``"free"``); a number is a fixed shift, checked here once
(:func:`check_transpose`: refused beyond 3 octaves, warned about beyond 2). A refiner that stores no pitch range
for the singer converts in the source's key, said in :attr:`Job.key_note` (an error when the automatic key was
asked for explicitly). The level: with :attr:`Job.match_level` the refiner sees the song at the singer's stored
voiced level and the output is brought back to the recording's (:meth:`canora.refiner.base.RefinerBase.choose_level`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from canora.dsp.melmatch import MEL_MATCH_ITERS, check_iters
from canora.errors import CanoraError

log = logging.getLogger(__name__)

#: a transpose beyond this many semitones is refused (3 octaves: nothing sung survives it); beyond WARN_TRANSPOSE
#: (2 octaves) it is done with a warning
MAX_TRANSPOSE = 36.0
WARN_TRANSPOSE = 24.0
#: seeds are what numpy's generators take
MAX_SEED = 2**32 - 1
#: the longest slice converted at once (the models' working set follows it)
MAX_SLICE_SECONDS = 600.0


def check_transpose(semitones: float, what: str = "transpose", warn: bool = True) -> float:
    """``semitones`` as a float, or one :class:`CanoraError` when it is not finite or beyond +-MAX_TRANSPOSE;
    a warning beyond +-WARN_TRANSPOSE (unless not ``warn``)."""
    try:
        t = float(semitones)
    except (TypeError, ValueError):
        raise CanoraError(f"{what} must be a number of semitones, got {semitones!r}") from None
    if not math.isfinite(t):
        raise CanoraError(f"{what} must be a finite number of semitones, got {semitones!r}")
    if abs(t) > MAX_TRANSPOSE:
        raise CanoraError(f"{what} {t:+g} semitones is beyond +-{MAX_TRANSPOSE:g} (3 octaves), where nothing sung "
                          "survives; choose a smaller shift, or leave --transpose out for the automatic key")
    if warn and abs(t) > WARN_TRANSPOSE:
        log.warning("%s %+g semitones is more than 2 octaves: expect artifacts (the trackers and the vocoder "
                    "leave the range of singing)", what, t)
    return t


@dataclass(frozen=True)
class Job:
    """The checked options of one conversion: target singer and the refiner's sampler settings."""

    singer: str
    sampler: str
    steps: int
    strength: float
    seed: int
    key_mode: str = "octave"
    auto_key: bool = True  # choose the key from the song (``key_mode``); else shift by ``transpose``
    transpose: float = 0.0
    key_note: str = ""  # why the automatic key was not used, when it was the default
    match_level: bool = True  # move the song's voiced level to the singer's (when the refiner stores it)
    loudness: float | None = None  # the output's integrated loudness target (LUFS); None: the recording's level
    mel_match: int = MEL_MATCH_ITERS  # rounds of putting the vocoder's output back on its mel (0 = off;
    # mel_match_rounds decides it for a conversion)


def mel_match_rounds(requested: int | None, singer: str, vocoder_singers: tuple[str, ...]) -> tuple[int, str]:
    """(rounds of mel matching, why) for a conversion toward ``singer`` (a name, or a mix ``a:0.7,b:0.3``).

    ``requested`` None is automatic: none when the vocoder was trained on every singer of the target (its export's
    ``meta.singers``), else :data:`~canora.dsp.melmatch.MEL_MATCH_ITERS`. A vocoder renders the singers it learned
    with their own detail, and the refined mel is a little less like them than that: into the bundled PJS voice
    (the bundled vocoder's own singer) matched conversions of 9 unseen singers scored similarity 0.790 and singer
    identification 0.68 where unmatched ones scored 0.803 and 0.77 (``benchmarks/conversion_sweep.py --mel-match 0
    2``). For any other singer the vocoder pulls the voice toward the ones it learned, and matching gives it back:
    voices of a new singer went from 39-47 % to 95-97 % of their windows identified as her."""
    if requested is not None:
        return check_iters(requested, "mel_match"), "asked for"
    names = [part.split(":")[0].strip() for part in singer.split(",")]
    if vocoder_singers and all(n in vocoder_singers for n in names):
        return 0, f"the vocoder was trained on {singer}: left as it renders"
    return MEL_MATCH_ITERS, "the vocoder was not trained on this singer"


def key_plan(transpose: float | None, auto_transpose: bool | None) -> tuple[bool, float]:
    """(choose the key automatically?, fixed semitones) from a call's ``transpose`` / ``auto_transpose``.

    No ``transpose`` means automatic (the default); a number is a fixed shift (0 keeps the pitch as sung).
    ``auto_transpose=False`` without a number is a shift of 0. Both a number and ``auto_transpose=True`` is an
    error: they contradict each other.
    """
    if transpose is not None and auto_transpose:
        raise CanoraError(f"give either a transpose ({transpose!r} semitones) or auto_transpose, not both")
    auto = transpose is None if auto_transpose is None else bool(auto_transpose)
    return auto, 0.0 if transpose is None else check_transpose(transpose)


def plan_job(
    refiner: Any, singer: str | int | None, *, sampler: str | None = None, steps: int | None = None,
    strength: float | None = None, seed: int = 0, transpose: float | None = None, auto_transpose: bool | None = None,
    max_slice_seconds: float = 30.0, key_mode: str = "octave",
) -> Job:
    """The checked :class:`Job` of a conversion by ``refiner`` toward ``singer`` (None: its first), with the
    refiner's sampler defaults filled in: every option fails here, before any work, with one
    :class:`CanoraError` line. The key follows :func:`key_plan`; an automatic key for a singer whose pitch range
    the refiner does not store falls back to the source's key (``key_note``, a warning) unless asked for with
    ``auto_transpose=True``."""
    from canora.refiner.base import DEFAULT_SAMPLER, DEFAULT_STEPS, DEFAULT_STRENGTH
    from canora.refiner.samplers import available_samplers, check_steps_strength

    singer_name = refiner.singer_label(singer)  # unknown singer or bad mix: error before any work
    sampler = sampler or DEFAULT_SAMPLER
    steps = DEFAULT_STEPS if steps is None else steps
    strength = DEFAULT_STRENGTH if strength is None else strength
    check_steps_strength(steps, strength)
    steps, strength = int(steps), float(strength)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise CanoraError(f"seed must be a whole number in 0..{MAX_SEED}, got {seed!r}")
    if sampler not in available_samplers():
        raise CanoraError(f"unknown sampler {sampler!r}; choose one of {', '.join(available_samplers())}")
    from canora.dsp.pitch import KEY_MODES

    if key_mode not in KEY_MODES:
        raise CanoraError(f"unknown key mode {key_mode!r}; choose one of {', '.join(KEY_MODES)}")
    auto, fixed = key_plan(transpose, auto_transpose)
    note = ""
    if auto:
        try:
            refiner.singer_f0_range(singer_name)  # no statistics: error before any work when asked for
        except CanoraError:
            if auto_transpose:
                raise
            note = f"the refiner stores no pitch range for {singer_name}: converted in the source's key"
            log.warning("%s", note)
            auto = False
    if isinstance(max_slice_seconds, bool) or not isinstance(max_slice_seconds, (int, float, np.number)) \
            or not math.isfinite(max_slice_seconds) or not 1.0 <= max_slice_seconds <= MAX_SLICE_SECONDS:
        raise CanoraError(f"max_slice_seconds must be a number of seconds in 1..{MAX_SLICE_SECONDS:g}, got "
                          f"{max_slice_seconds!r}")
    return Job(singer_name, sampler, steps, strength, int(seed), key_mode, auto, fixed, note)
