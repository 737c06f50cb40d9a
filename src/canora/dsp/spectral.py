"""Spectral utilities on log-mels: Griffin-Lim resynthesis and a pitch shift along the mel axis."""

from __future__ import annotations

import numpy as np

from canora.dsp.mel import MelSpec


def shift_mel_pitch(mel: np.ndarray, semitones: float, spec: MelSpec) -> np.ndarray:
    """Move a log-mel (n_mels, T) along frequency by ``semitones`` (harmonics and envelope together).

    Each bin takes the value the source had at ``f / 2**(semitones/12)`` (linear interpolation over bin
    centre frequencies); bins mapped below the first centre keep the first bin. Used as the shallow-
    diffusion start for transposed conversion, so the noised source already has its harmonics where the
    transposed F0 conditioning says they are.
    """
    if semitones == 0:
        return mel
    from canora.dsp.melbank import mel_frequencies

    centres = mel_frequencies(spec.n_mels + 2, spec.fmin, spec.fmax_hz, htk=spec.mel_scale == "htk")[1:-1]
    src = centres / 2 ** (semitones / 12)
    out = np.empty_like(mel)
    for i in range(mel.shape[1]):
        out[:, i] = np.interp(src, centres, mel[:, i], left=mel[0, i], right=spec.log_floor)
    return out


def griffin_lim(mel: np.ndarray, spec: MelSpec, n_iter: int = 32) -> np.ndarray:
    """A rough waveform (frames * hop,) float32 from a log-mel (n_mels, frames), by Griffin-Lim.

    Good enough to re-extract F0, loudness and content when a mel comes without its audio; not for listening.
    """
    import librosa

    mag = np.exp(mel) if spec.log_base == "e" else 10.0 ** mel
    wav = librosa.feature.inverse.mel_to_audio(
        mag.astype(np.float32), sr=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop_length,
        win_length=spec.win_length, power=spec.power, n_iter=n_iter, fmin=spec.fmin, fmax=spec.fmax_hz,
        htk=spec.mel_scale == "htk",
    )  # centred frames: (frames - 1) * hop samples; pad to the frames * hop a HiFi-GAN mel stands for
    n = mel.shape[1] * spec.hop_length
    wav = np.pad(wav, (0, max(0, n - len(wav))))[:n]
    return np.ascontiguousarray(wav, dtype=np.float32)
