"""Loudness envelope transfer and the silence gate."""

from __future__ import annotations

import numpy as np

from canora.dsp.envelope import match_envelope
from canora.dsp.slicing import frame_db

SR = 22050


def test_source_envelope_is_kept_and_silence_stays_silent():
    t = np.arange(3 * SR) / SR
    env = np.where(t < 1, 0.5, np.where(t < 2, 0.0, 0.1))  # loud, silent, quiet
    source = (env * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    rng = np.random.default_rng(0)
    converted = (0.3 * np.sin(2 * np.pi * 230 * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    out = match_envelope(converted, source)
    assert out.shape == source.shape
    src_db, out_db = frame_db(source, 256), frame_db(out, 256)
    inner = lambda a, b: slice(int(a * SR / 256) + 10, int(b * SR / 256) - 10)  # noqa: E731
    for sl in (inner(0, 1), inner(2, 3)):  # loud and quiet parts follow the source within 1 dB
        assert np.abs(np.median(out_db[sl] - src_db[sl])) < 1.0
    assert np.abs(out[int(1.2 * SR) : int(1.8 * SR)]).max() == 0.0  # the hiss in the silence is gone


def test_gain_is_limited():
    t = np.arange(SR) / SR
    source = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    converted = (1e-4 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)  # a collapsed output
    out = match_envelope(converted, source, max_gain_db=12.0)
    assert np.abs(out).max() < 1e-4 * 10 ** (12.5 / 20)  # not blown up to the source level
