"""Timbre perturbation of the refiner's conditioning: variants move the content and loudness, never the mel,
and are repeatable and cached."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch

from canora.conditioning import FeatureParams, extract_features
from canora.dsp.mel import MelSpec
from canora.training.augment import TimbrePerturbation, load_variants, timbre_variants
from canora.training.refiner import random_crops

SPEC = MelSpec()


def test_variants_change_content_and_loudness_repeatably(tmp_path, synth_clip):
    wav, sr = synth_clip
    feats = extract_features(wav, SPEC, FeatureParams())
    how = TimbrePerturbation(variants=3, warp=(0.8, 1.25), eq_db=6.0)
    v = timbre_variants(wav, SPEC, FeatureParams(), how, "take", feats.frames)
    assert len(v) == 3
    for content, loud in v:
        assert content.shape == feats.content.shape and loud.shape == feats.loudness.shape
        assert np.isfinite(content).all() and np.isfinite(loud).all()
        assert np.abs(content - feats.content).mean() > 0.05  # the timbre the refiner sees moved
        # the EQ moves the level by a few dB at most: loudness still follows the phrase
        assert np.corrcoef(loud, feats.loudness)[0, 1] > 0.9
    again = timbre_variants(wav, SPEC, FeatureParams(), how, "take", feats.frames)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(v, again))
    path = tmp_path / "take.wav"
    sf.write(path, wav, sr, subtype="FLOAT")
    cached = load_variants(path, SPEC, FeatureParams(), how, feats.frames, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.timbre.npz"))) == 1
    assert all(np.allclose(a[0], b[0], atol=1e-5) for a, b in zip(cached, load_variants(
        path, SPEC, FeatureParams(), how, feats.frames, tmp_path / "cache")))


def test_crops_take_perturbed_conditioning_but_the_real_mel(synth_clip):
    wav, _ = synth_clip
    feats = extract_features(wav, SPEC, FeatureParams())
    variant = (feats.content + 1.0, feats.loudness - 3.0)
    always = random_crops([(feats, 0)], 8, 32, torch.Generator().manual_seed(0), [[variant]], prob=1.0)
    never = random_crops([(feats, 0)], 8, 32, torch.Generator().manual_seed(0), [[variant]], prob=0.0)
    for (a, _), (b, _) in zip(always, never):
        assert np.array_equal(a.mel, b.mel) and np.array_equal(a.f0, b.f0)
        assert np.allclose(a.content, b.content + 1.0) and np.allclose(a.loudness, b.loudness - 3.0)
