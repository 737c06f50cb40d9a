"""Evaluation metrics: F0 error in cents after transpose, voicing errors, speaker-embedding similarity."""

from __future__ import annotations

import numpy as np
import pytest

from canora.analysis.evaluation import centroid, cosine, f0_scores


def test_f0_scores_account_for_transpose_and_voicing():
    ref = np.array([0, 200, 200, 220, 0, 0, 300.0])
    est = ref * 2 ** (3 / 12)  # transposed up 3 semitones exactly
    est[-1] = 0  # one voicing error
    s = f0_scores(ref, est, transpose=3)
    assert s.rmse_cents == pytest.approx(0, abs=1e-6)
    assert s.voiced_frames == 3 and s.vuv_error_rate == pytest.approx(1 / 7)
    assert s.gross_error_rate == 0
    off = f0_scores(ref, est, transpose=0)  # forgetting the transpose costs 300 cents
    assert off.rmse_cents == pytest.approx(300, abs=1e-6) and off.gross_error_rate == 1.0


def test_f0_scores_with_nothing_voiced_in_both_is_nan_not_a_crash():
    s = f0_scores(np.zeros(5), np.array([0, 100, 0, 0, 0.0]))
    assert np.isnan(s.rmse_cents) and s.vuv_error_rate == pytest.approx(0.2)


def test_cosine_and_centroid():
    a, b = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    c = centroid([a, b])
    assert cosine(c, a) == pytest.approx(np.sqrt(0.5)) and cosine(a, b) == 0


def test_speaker_embeddings_tell_singers_apart():
    """resemblyzer ships its weights; two songs of one singer are closer than songs of two singers
    (measured: PJS song vs PJS song 0.93, PJS vs NIT-SONG f001 0.73-0.79, PJS vs ARCTIC speech 0.6)."""
    pytest.importorskip("resemblyzer")
    from canora.analysis.evaluation import SpeakerEmbedder
    from canora.io.audio import load_audio

    from .conftest import shared_file

    emb = SpeakerEmbedder()
    a = emb.embed(load_audio(shared_file("pjs/pjs001_song.wav"), 16000), 16000)
    b = emb.embed(load_audio(shared_file("pjs/pjs002_song.wav"), 16000), 16000)
    c = emb.embed(load_audio(shared_file("nitsong070/nitech_jp_song070_f001_004.wav"), 16000), 16000)
    assert cosine(a, b) > cosine(a, c) + 0.1
