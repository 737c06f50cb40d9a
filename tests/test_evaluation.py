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


@pytest.mark.slow
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


def test_voiced_parts_keep_only_voiced_frames_and_join_them_without_clicks():
    from canora.analysis.evaluation import voiced_parts

    sr, hop = 16000, 160
    x = np.ones(20 * hop, np.float32)
    x[5 * hop: 8 * hop] = 7.0  # an unvoiced stretch: none of it may survive
    voiced = np.array([1] * 5 + [0] * 3 + [1] * 10 + [0] * 2, bool)
    y = voiced_parts(x, sr, hop, voiced)
    assert len(y) == 15 * hop and y.max() <= 1.0
    ramp = int(0.01 * sr)
    # each run fades in and out: the join sits at a zero, not at a step from 1 to 1
    for edge in (0, 5 * hop - 1, 5 * hop, 15 * hop - 1):
        assert abs(y[edge]) < 0.02
    assert np.allclose(y[ramp: 5 * hop - ramp], 1.0) and np.allclose(y[5 * hop + ramp: 15 * hop - ramp], 1.0)
    assert len(voiced_parts(x, sr, hop, np.zeros(20, bool))) == 0


def test_embed_voiced_embeds_the_voiced_parts_and_refuses_too_little():
    from canora.analysis.evaluation import MIN_VOICED_SECONDS, embed_voiced

    class Recorder:  # stands in for the GE2E embedder: records what it is given
        def embed(self, wav, sr):
            self.seen = wav
            return np.array([float(len(wav)), 1.0])

    sr, hop = 16000, 160
    rng = np.random.default_rng(0)
    x = rng.standard_normal(300 * hop).astype(np.float32)
    voiced = np.zeros(300, bool)
    voiced[50:200] = True  # 1.5 s
    rec = Recorder()
    e = embed_voiced(rec, x, sr, hop, voiced)
    assert e is not None and len(rec.seen) == 150 * hop
    assert np.allclose(rec.seen[200:-200], x[50 * hop + 200: 200 * hop - 200])
    short = np.zeros(300, bool)
    short[:int(MIN_VOICED_SECONDS * sr / hop) - 1] = True
    assert embed_voiced(rec, x, sr, hop, short) is None


@pytest.mark.slow
def test_voiced_similarity_does_not_mark_a_singer_down_for_singing_legato():
    """PJS's own held-out song with its pauses and consonants cut out is the same voice: the whole-clip measure
    marks it down (measured on 20 s of 087: 0.93 -> 0.84), the voiced-only one keeps it near the recording's
    score (0.91)."""
    pytest.importorskip("resemblyzer")
    from canora.analysis.evaluation import (
        SpeakerEmbedder,
        embed_voiced,
        singer_centroids,
        voiced_frames,
        voiced_parts,
    )
    from canora.io.audio import load_audio

    from .conftest import shared_file

    sr = 16000
    emb = SpeakerEmbedder()
    refs = [load_audio(shared_file(f"pjs/pjs0{k}_song.wav"), sr) for k in (89, 90)]  # 16 and 18 s
    full, voiced_centre = singer_centroids(emb, refs, sr)
    wav = load_audio(shared_file("pjs/pjs087_song.wav"), sr)[sr: 21 * sr]
    voiced = voiced_frames(wav, sr)
    legato = voiced_parts(wav, sr, 256, voiced)
    assert 0.4 * len(wav) < len(legato) < 0.9 * len(wav)
    as_recorded, cut = cosine(emb.embed(wav, sr), full), cosine(emb.embed(legato, sr), full)
    by_voice = cosine(embed_voiced(emb, wav, sr, 256, voiced), voiced_centre)
    assert cut < as_recorded - 0.05
    assert by_voice > cut + 0.04 and by_voice > 0.85


@pytest.mark.slow
def test_evaluate_conversion_scores_the_voiced_parts_of_both_on_the_sources_voiced_frames():
    from canora.analysis.evaluation import evaluate_conversion

    class Length:  # an embedder whose embedding turns with the seconds of audio it is given
        def embed(self, wav, sr):
            return np.array([np.cos(len(wav) / sr), np.sin(len(wav) / sr)])

    sr = 16000
    t = np.arange(3 * sr) / sr
    phase = 2 * np.pi * np.cumsum(220 * 2 ** (0.3 * np.sin(2 * np.pi * 5 * t) / 12)) / sr  # a sung-like tone
    tone = sum(0.3 / k * np.sin(k * phase) for k in range(1, 9)).astype(np.float32)
    source = tone.copy()
    source[sr: sr + sr // 2] = 0.0  # half a second of silence in the source
    at = Length().embed
    s = evaluate_conversion(tone, source, sr, embedder=Length(), target_centroid=at(np.zeros(3 * sr), sr),
                            target_centroid_voiced=at(np.zeros(int(2.5 * sr)), sr))
    # both are cut to the source's voiced frames (about 2.5 s), so they score alike although the conversion has no
    # silence (cut to its own voiced frames, 3 s, it would score 0.88); the whole-clip embeddings see 3 s each
    assert s["similarity_voiced_converted"] == pytest.approx(s["similarity_voiced_source"], abs=1e-3)
    assert s["similarity_voiced_converted"] > 0.99
    assert s["similarity_converted"] == pytest.approx(s["similarity_source"])
    assert s["similarity_converted"] > 0.999
    # the same pitch: no gross error over the frames both trackers agree on; told it was a fifth up, all of them
    assert s["gpe_agreed_harvest"] == 0.0 and s["gpe_agreed_praat"] == 0.0
    shifted = evaluate_conversion(tone, source, sr, transpose=7.0)
    assert shifted["gpe_agreed_harvest"] == 1.0 and shifted["gpe_agreed_praat"] == 1.0
    none = evaluate_conversion(tone, source, sr, embedder=Length(), target_centroid=at(np.zeros(3 * sr), sr))
    assert "similarity_voiced_converted" not in none


def test_voiced_parts_and_centroids_refuse_what_they_cannot_use():
    from canora.analysis.evaluation import singer_centroids, voiced_parts
    from canora.errors import CanoraError

    with pytest.raises(CanoraError, match="mono"):
        voiced_parts(np.zeros((2, 1600), np.float32), 16000, 160, np.ones(10, bool))
    with pytest.raises(CanoraError, match="no recordings"):
        singer_centroids(object(), [], 16000)


def test_output_hygiene_reads_rumble_dc_and_headroom_beside_the_source():
    from canora.analysis.evaluation import output_hygiene

    sr = 22050
    t = np.arange(3 * sr) / sr
    source = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    converted = np.clip(source * 4 + 0.2 * np.sin(2 * np.pi * 15 * t) + 0.02, -1, 1)  # rumble, DC, clipped
    h = output_hygiene(converted, source, sr)
    assert h["subsonic_db_source"] < -60 and h["subsonic_db_converted"] > -30
    assert h["dc_offset_source"] == pytest.approx(0.0, abs=1e-4) and h["dc_offset_converted"] > 0.01
    assert h["true_peak_dbtp_source"] == pytest.approx(20 * np.log10(0.3), abs=0.05)
    assert h["full_scale_samples_source"] == 0 and h["full_scale_samples_converted"] > 1000
