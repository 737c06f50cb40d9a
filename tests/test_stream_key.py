"""The running key of a live stream (canora.stream_key): the offline rule on the pitch sung so far, changed only
between phrases; and a stream converting real singing with it."""

from __future__ import annotations

import numpy as np
import pytest

from canora.dsp.pitch import F0Stats, choose_key
from canora.stream_key import KEY_MIN_FRAMES, KEY_PAUSE_FRAMES, RunningKey

from .conftest import shared_file

TARGET = F0Stats(median=400.0, p5=250.0, p95=600.0)


def _sing(rk: RunningKey, f0: np.ndarray, start: int, block: int = 9) -> list[float]:
    """``f0`` (T,) Hz (0 = unvoiced) heard block by block from song frame ``start`` -> the key of each block."""
    keys = []
    for a in range(0, len(f0), block):
        part = f0[a: a + block]
        rk.hear(part, part > 0, start + a)
        keys.append(rk.update(start + a, start + a + len(part)))
    return keys


def test_the_first_choice_comes_with_the_first_notes_and_is_the_offline_rule():
    rk = RunningKey(TARGET)
    assert rk.semitones == 0.0 and rk.choice is None
    keys = _sing(rk, np.full(90, 200.0), 0)
    first = next(i for i, k in enumerate(keys) if k != 0.0)
    assert first * 9 <= KEY_MIN_FRAMES + 9  # within the first block or two of singing
    assert rk.choice == choose_key(np.full(90, 200.0, np.float32), TARGET, "octave")  # the same rule as offline
    assert rk.semitones == 12.0


def test_the_key_changes_only_in_a_pause():
    rk = RunningKey(TARGET)
    _sing(rk, np.full(180, 200.0), 0)  # a phrase a fifth-and-more below the singer: +12
    assert rk.semitones == 12.0
    low = _sing(rk, np.full(540, 100.0), 180)  # the singer moves down two octaves without a pause
    assert set(low) == {12.0}  # never inside the phrase
    pause = _sing(rk, np.zeros(KEY_PAUSE_FRAMES + 18), 720)
    assert pause[-1] == 24.0 and rk.changes == 2  # in the pause: the running estimate (mostly 100 Hz) says +24


def test_free_mode_moves_by_semitones():
    rk = RunningKey(TARGET, mode="free")
    _sing(rk, np.full(90, 300.0), 0)
    assert rk.semitones == round(12 * np.log2(400 / 300))


@pytest.mark.slow
def test_a_stream_with_the_running_key_takes_the_offline_key():
    """Real singing (vocadito 10, a voice well below PJS) through the bundled models with transpose="auto": the key
    the stream takes within its first seconds is the one `canora convert` chooses from the whole recording."""
    from canora.io.audio import load_audio
    from canora.pipeline import Converter
    from canora.streaming import StreamConverter

    wav = load_audio(shared_file("vocadito/vocadito_10.wav"), 22050)[: 6 * 22050]
    conv = Converter.from_pretrained()
    offline = conv.song_key(wav, 22050)
    if offline is None:
        pytest.skip("the bundled refiner stores no pitch range")
    sc = StreamConverter(conv, transpose="auto")
    out = np.concatenate([sc.process(wav[i: i + 2048]) for i in range(0, len(wav), 2048)])
    assert len(out) == len(wav) and np.isfinite(out).all()
    assert sc.running_key.choice is not None and sc.running_key.semitones == offline.semitones == 12
    assert sc.transpose == offline.semitones  # the blocks are rendered in it
