"""Slicing long audio at silences and joining processed slices without clicks or gaps."""

from __future__ import annotations

import numpy as np
import pytest

from canora.dsp.slicing import join, plan_slices

SR = 22050


def phrase_signal(seconds_on: list[float], gap: float = 0.6) -> np.ndarray:
    parts = []
    for k, on in enumerate(seconds_on):
        t = np.arange(int(on * SR)) / SR
        parts.append(0.4 * np.sin(2 * np.pi * (220 + 30 * k) * t).astype(np.float32))
        parts.append(np.zeros(int(gap * SR), np.float32))
    return np.concatenate(parts)


def test_slices_partition_the_signal_and_cut_in_silences():
    wav = phrase_signal([2.0, 3.0, 1.5])
    slices = plan_slices(wav, SR, hop=256)
    assert slices[0].start == 0 and slices[-1].end == len(wav)
    assert all(a.end == b.start for a, b in zip(slices, slices[1:]))
    assert all(s.start % 256 == 0 for s in slices)
    for s in slices[1:]:  # every cut lands where the source is silent
        assert np.abs(wav[s.start - 64 : s.start + 64]).max() == 0
    assert len([s for s in slices if not s.silent]) >= 3


def test_long_phrases_are_cut_to_the_maximum_length():
    wav = phrase_signal([25.0], gap=0.0)
    slices = plan_slices(wav, SR, hop=256, max_seconds=4.0)
    assert max(s.end - s.start for s in slices) <= 4.0 * SR + 256
    assert slices[-1].end == len(wav) and len(slices) >= 7


def test_identity_processing_joins_back_exactly():
    wav = phrase_signal([3.0, 1.0, 5.0])
    slices = plan_slices(wav, SR, max_seconds=2.0, overlap=512)
    pieces = [wav[slice(*s.region(512, len(wav)))] for s in slices]
    np.testing.assert_allclose(join(pieces, slices, len(wav), 512), wav, atol=1e-6)


def test_the_context_beyond_the_cross_fade_is_rendered_but_not_used():
    """Pieces with 3 frames of context a side beyond the cross-fade: the identity joins back exactly, and
    garbage in that context (a model's edge effects) never reaches the output; a context shorter than the
    cross-fade is refused."""
    wav = phrase_signal([3.0, 1.0, 5.0])
    slices = plan_slices(wav, SR, max_seconds=2.0, overlap=512)
    ctx = 512 + 3 * 256
    pieces = [wav[slice(*s.region(ctx, len(wav)))].copy() for s in slices]
    np.testing.assert_allclose(join(pieces, slices, len(wav), 512, ctx), wav, atol=1e-6)
    for p, s in zip(pieces, slices):
        r0, r1 = s.region(ctx, len(wav))
        p[: max(0, s.start - 512 - r0)] = 9.0  # before the left cross-fade
        p[max(0, s.end + 512 - r0):] = 9.0  # after the right one
    np.testing.assert_allclose(join(pieces, slices, len(wav), 512, ctx), wav, atol=1e-6)
    with pytest.raises(ValueError, match="context"):
        join(pieces, slices, len(wav), 512, 256)


def test_join_of_a_forced_cut_inside_a_note_has_no_click():
    """Each slice re-synthesised with its own phase (as a vocoder does); the cross-fade must keep the
    sample-to-sample step at the joins as small as inside the note."""
    t = np.arange(20 * SR) / SR
    wav = (0.5 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    slices = plan_slices(wav, SR, max_seconds=3.0, overlap=1024)
    assert len(slices) >= 6
    rng = np.random.default_rng(0)
    pieces = []
    for s in slices:
        r0, r1 = s.region(1024, len(wav))
        pieces.append((0.5 * np.sin(2 * np.pi * 330 * t[r0:r1] + rng.uniform(1, 5))).astype(np.float32))
    out = join(pieces, slices, len(wav), 1024)
    inner_step = np.abs(np.diff(wav)).max()
    for s in slices[1:]:
        seg = out[s.start - 1500 : s.start + 1500]
        assert np.abs(np.diff(seg)).max() < 1.25 * inner_step
    # and without a cross-fade there would have been a click: the test can tell
    cores = [p[s.start - s.region(1024, len(wav))[0] :][: s.end - s.start] for p, s in zip(pieces, slices)]
    hard = np.concatenate(cores)
    steps = [abs(hard[s.start] - hard[s.start - 1]) for s in slices[1:]]
    assert max(steps) > 2 * inner_step


@pytest.mark.parametrize("n", [0, 100, 3000])
def test_short_and_empty_signals(n):
    wav = np.ones(n, np.float32) * 0.1
    slices = plan_slices(wav, SR)
    assert sum(s.end - s.start for s in slices) == n
    if n:
        pieces = [wav[slice(*s.region(1024, n))] for s in slices]
        np.testing.assert_allclose(join(pieces, slices, n, 1024), wav)


def test_all_silent_signal_is_one_silent_slice():
    slices = plan_slices(np.zeros(SR * 3, np.float32), SR)
    assert all(s.silent for s in slices)
