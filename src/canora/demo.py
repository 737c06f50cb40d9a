"""A synthetic sung phrase, so the main job can run on a fresh machine with no recordings at hand.

A glottal-like harmonic source follows a melody with vibrato and portamento, shaped by vowel formants
(a simple source-filter singer). It is not a real voice, but it has everything the pipeline needs:
voiced notes, vowels, onsets, breaths of silence.
"""

from __future__ import annotations

import numpy as np

# (F1, F2, F3) in Hz for a few sung vowels (soprano-ish, rounded from the phonetics literature)
VOWELS = {"a": (800, 1200, 2800), "e": (500, 1900, 2700), "i": (330, 2300, 3000), "o": (500, 900, 2600),
          "u": (350, 800, 2500)}
# (MIDI note, beats, vowel); 0 = rest
MELODY = [(67, 1, "a"), (69, 1, "e"), (71, 1, "i"), (72, 2, "a"), (0, 0.5, ""), (71, 1, "o"), (69, 1, "u"),
          (67, 2.5, "a")]


def synth_phrase(sample_rate: int = 22050, tempo_bpm: float = 100.0, seed: int = 0) -> np.ndarray:
    """-> (T,) float32 mono, peak 0.5: a short sung phrase (about 6 s)."""
    rng = np.random.default_rng(seed)
    beat = 60.0 / tempo_bpm
    f0_parts, vowel_parts, amp_parts = [], [], []
    for note, beats, vowel in MELODY:
        n = int(beats * beat * sample_rate)
        t = np.arange(n) / sample_rate
        if note == 0:
            f0_parts.append(np.zeros(n))
            amp_parts.append(np.zeros(n))
        else:
            hz = 440.0 * 2 ** ((note - 69) / 12)
            vib = 0.25 * np.minimum(1, t / 0.4) * np.sin(2 * np.pi * 5.5 * t)  # semitones, delayed vibrato
            f0_parts.append(hz * 2 ** (vib / 12))
            env = np.minimum(1, t / 0.05) * np.minimum(1, (t[-1] - t) / 0.08 + 0.02)
            amp_parts.append(env)
        vowel_parts.extend([vowel or "a"] * n)
    f0 = np.concatenate(f0_parts)
    amp = np.concatenate(amp_parts)
    # portamento: smooth f0 over 40 ms where voiced
    k = int(0.04 * sample_rate)
    voiced = f0 > 0
    f0_s = np.convolve(np.where(voiced, f0, np.nan_to_num(f0)), np.ones(k) / k, mode="same")
    f0 = np.where(voiced, np.maximum(f0_s, 1.0), 0.0)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    out = np.zeros_like(f0)
    n_harm = int(sample_rate / 2 / 200)
    formants = np.array([VOWELS[v] for v in vowel_parts], dtype=np.float64)  # (T, 3)
    for h in range(1, n_harm + 1):
        fh = h * f0
        ok = (fh < sample_rate / 2 - 500) & voiced
        # spectral tilt of a glottal source (-12 dB/oct) times formant resonances
        gain = 1.0 / h
        res = sum(1.0 / (1.0 + ((fh - formants[:, i]) / (80.0 + 40 * i)) ** 2) for i in range(3))
        out += np.where(ok, gain * (0.1 + res) * np.sin(h * phase), 0.0)
    out += 0.003 * rng.standard_normal(len(out)) * (amp > 0)  # breath noise
    out *= amp
    out = out / (np.abs(out).max() + 1e-9) * 0.5
    return out.astype(np.float32)
