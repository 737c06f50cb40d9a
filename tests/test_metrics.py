"""Mel-domain metrics: harmonic detail tells a harmonic mel from a smoothed or noisy one."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from canora.dsp.mel import MelSpec, wav_to_mel
from canora.dsp.metrics import DETAIL_BANDS, harmonic_detail

SPEC = MelSpec()


def test_harmonic_detail_sees_harmonics_and_not_noise_or_smoothing():
    sr = SPEC.sample_rate
    t = np.arange(2 * sr) / sr
    tone = sum(np.sin(2 * np.pi * k * 400.0 * t) / k**0.5 for k in range(1, 20)).astype(np.float32) * 0.05
    noise = (0.05 * np.random.default_rng(0).normal(size=t.size)).astype(np.float32)
    m_tone, m_noise = wav_to_mel(tone, SPEC), wav_to_mel(noise, SPEC)
    voiced = np.ones(m_tone.shape[1], bool)
    d_tone, d_noise = harmonic_detail(m_tone, voiced, SPEC), harmonic_detail(m_noise, voiced, SPEC)
    assert len(d_tone) == len(DETAIL_BANDS)
    assert d_tone[0] > d_noise[0] and all(a > 2 * b for a, b in zip(d_tone[1:], d_noise[1:])), (d_tone, d_noise)
    smoothed = uniform_filter1d(m_tone, 3, axis=0)  # what a model that blurs the spectrum does
    assert all(s < 0.7 * a for s, a in zip(harmonic_detail(smoothed, voiced, SPEC), d_tone))
    assert np.isnan(harmonic_detail(m_tone, np.zeros_like(voiced), SPEC)[0])
