"""The NSF source at inference, in numpy (no torch): the excitation of :class:`~canora.vocoder.nsf.SineSource`
and the seeded pieces both vocoder runtimes share.

* :func:`excitation`: frame F0 (B, T) -> source (B, C, T * hop), equal to ``SineSource.forward`` given the
  same start phases and noise (float64 running phase, the merge layer's weights and bias, Nyquist mask, tanh);
* :func:`stream_noise`: the source's unit noise, drawn by the sample's place in the song;
* :func:`start_phases`: the harmonics' start phases of a vocoder call (seeded offsets + the fundamental's
  running phase);
* :func:`frame_cycles`: the fundamental's running phase at each frame, to continue it across pieces of a song.

The torch :class:`~canora.vocoder.Vocoder` uses the last three too, so the torch and ONNX Runtime vocoders
drive their networks with the same noise and phases for the same seed.
"""

from __future__ import annotations

import math

import numpy as np

#: samples per chunk of the source's song-positioned noise (:func:`stream_noise`): 64 frames of 256
NOISE_CHUNK = 16384
#: second word of the seed of the harmonics' start-phase offsets (:func:`start_phases`): ``[seed, PHASE_STREAM]``
#: is a stream :func:`stream_noise` never draws from (it would be batch item 2**32 - 1)
PHASE_STREAM = 0xFFFFFFFF
#: samples per block of the harmonic mix (complex64 (B, block) working arrays stay in cache)
MIX_BLOCK = 8192


def noise_channels(kind: str, harmonics: int) -> int:
    """Channels of the unit noise a source of ``kind`` takes per sample: 1 for ``smooth``, H for ``step``."""
    return 1 if kind == "smooth" else harmonics


def stream_noise(seed: int, start: int, n: int, channels: int, batch: int = 1) -> np.ndarray:
    """Unit Gaussian noise (batch, n, channels) float32 for samples ``[start, start + n)`` of a song: sample ``s``
    of batch item ``b`` is the same whichever piece of the song asks for it (drawn in chunks of
    :data:`NOISE_CHUNK` samples, each from its own seed ``(seed, b, chunk)``)."""
    from canora.errors import CanoraError

    if start < 0 or n < 0:
        raise CanoraError(f"noise for samples [{start}, {start + n}): a song's samples start at 0")
    if n == 0:
        return np.zeros((batch, 0, channels), np.float32)
    first, last = start // NOISE_CHUNK, (start + n - 1) // NOISE_CHUNK
    out = np.empty((batch, (last - first + 1) * NOISE_CHUNK, channels), np.float32)
    for b in range(batch):
        for i, chunk in enumerate(range(first, last + 1)):
            rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, b, chunk])
            out[b, i * NOISE_CHUNK: (i + 1) * NOISE_CHUNK] = rng.standard_normal((NOISE_CHUNK, channels), np.float32)
    off = start - first * NOISE_CHUNK
    return out[:, off: off + n]


def start_phases(seed: int, harmonics: int, start_phase: float = 0.0) -> np.ndarray:
    """Phases (H,) float64 in cycles of harmonics ``1..H`` before a call's first sample: harmonic ``h`` at
    ``h * start_phase`` plus a random offset (0 for the fundamental) drawn from
    ``np.random.default_rng([seed, PHASE_STREAM])``, so a seed fixes them on every runtime."""
    offsets = np.random.default_rng([int(seed) & 0xFFFFFFFF, PHASE_STREAM]).random(harmonics)
    offsets[0] = 0.0
    return np.remainder(np.arange(1, harmonics + 1, dtype=np.float64) * float(start_phase) + offsets, 1.0)


def sample_f0(f0: np.ndarray, hop: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Frame F0 (B, T) Hz, 0 = unvoiced -> (sample F0 (B, T * hop), voicing (B, T * hop) in [0, 1]), in
    ``f0``'s dtype: ``step`` holds each frame; ``smooth`` glides both between frame centres, frame ``t``'s
    value on sample ``t * hop + ceil(hop / 2)`` (as :func:`canora.vocoder.nsf.glide_f0`: an unvoiced end holds
    the voiced end's F0 while the voicing fades)."""
    b, t = f0.shape
    if kind != "smooth":
        f = np.repeat(f0, hop, axis=1)
        return f, (f > 0).astype(f0.dtype)
    ext = np.concatenate([f0[:, :1], f0], axis=1)  # frame -1 holds frame 0, for the first half frame
    nxt = np.concatenate([ext[:, 1:], ext[:, -1:]], axis=1)
    lo = np.where(ext > 0, ext, nxt)
    hi = np.where(nxt > 0, nxt, ext)
    frac = np.arange(hop, dtype=f0.dtype) / f0.dtype.type(hop)
    f = (lo[..., None] + (hi - lo)[..., None] * frac).reshape(b, -1)
    v0, v1 = (ext > 0).astype(f0.dtype), (nxt > 0).astype(f0.dtype)
    v = (v0[..., None] + (v1 - v0)[..., None] * frac).reshape(b, -1)
    half = hop // 2  # frame t's value lands on its centre, sample t * hop + ceil(hop / 2)
    return f[:, half: half + t * hop], v[:, half: half + t * hop]


#: frames of a song whose samples :func:`frame_cycles` holds at once (its memory is O(this), not O(song))
CYCLE_BLOCK_FRAMES = 4096


def frame_cycles(f0: np.ndarray, hop: int, sample_rate: int, kind: str) -> np.ndarray:
    """Cycles (T + 1,) float64 of the fundamental for each frame of ``f0`` (T,) Hz, and the song's total at the
    end: the start phase of a piece of the song beginning at frame ``t`` is ``cycles[t] % 1`` (for the ``step``
    source, the phase at the frame's first sample; for ``smooth``, the phase that makes the piece's source equal
    the song's from frame ``t``'s centre on). The song's samples are made and summed a block of frames at a time,
    with the same sums in the same order as over the whole song."""
    f0 = np.asarray(f0, np.float64)
    t = len(f0)
    if kind != "smooth":
        per_frame = np.empty(t)
        for a in range(0, t, CYCLE_BLOCK_FRAMES):
            f, _ = sample_f0(f0[None, a: a + CYCLE_BLOCK_FRAMES], hop, kind)
            per_frame[a: a + CYCLE_BLOCK_FRAMES] = f.reshape(-1, hop).sum(axis=1) / sample_rate
        return np.concatenate([[0.0], np.cumsum(per_frame)])
    # the smooth source reaches frame t's F0 at the frame's centre; a piece starting at frame t holds that F0 over
    # its first half frame (it has no frame before it), so its start phase is the song's phase at the centre
    # minus what that half frame advances: from the centre on, the piece's source is the song's
    ext = np.concatenate([f0[:1], f0])  # as sample_f0: frame -1 holds frame 0; sample s glides ext[k] -> nxt[k]
    nxt = np.concatenate([ext[1:], ext[-1:]])
    lo = np.where(ext > 0, ext, nxt)
    hi = np.where(nxt > 0, nxt, ext)
    frac = np.arange(hop, dtype=np.float64) / np.float64(hop)
    half, lead = hop // 2, hop - hop // 2  # frame t's value lands on sample t * hop + ceil(hop / 2)
    n = t * hop
    want = np.arange(t) * hop + lead  # cum at each frame's centre
    cum_at = np.empty(t)
    total = 0.0  # the song's cycles before the block
    for k0 in range(0, t + 1, CYCLE_BLOCK_FRAMES):
        k1 = min(t + 1, k0 + CYCLE_BLOCK_FRAMES)
        full = (lo[k0:k1, None] + (hi - lo)[k0:k1, None] * frac).reshape(-1)  # samples k0*hop - half ...
        a, b = max(0, k0 * hop - half), min(n, k1 * hop - half)
        if b <= a:
            continue
        x = full[a - (k0 * hop - half): b - (k0 * hop - half)] / sample_rate
        e = np.cumsum(np.concatenate([[total], x]))  # e[m] = cycles before sample a + m
        sel = (want >= a) & (want <= b)
        cum_at[sel] = e[want[sel] - a]
        total = float(e[-1])
    start = cum_at - np.maximum(f0, 0.0) * lead / sample_rate
    return np.concatenate([start, [total]])


def excitation(
    f0: np.ndarray, phase0: np.ndarray, noise: np.ndarray, *, kind: str, sample_rate: int, hop: int,
    sine_amp: float, noise_std: float, weight: np.ndarray, bias: float, voiced_noise: float = 1.0,
) -> np.ndarray:
    """The NSF source (B, C, T * hop) float32 of frame F0 ``f0`` (B, T) Hz (0 = unvoiced), start phases
    ``phase0`` (B, H) cycles and unit noise ``noise`` (B, T * hop, :func:`noise_channels`); ``weight`` (H,) and
    ``bias`` are the source's merge layer. ``smooth``: C = 2 (tanh of the harmonic mix, scaled noise, times
    ``voiced_noise`` where voiced); ``step``: C = 1. Equal to ``SineSource.forward(f0, None, phase0, noise)`` to
    float32 rounding."""
    f0 = np.asarray(f0, np.float32)
    fs, voiced = sample_f0(f0, hop, kind)
    b, n = fs.shape
    harmonics = len(weight)
    start = np.asarray(phase0, np.float64).reshape(b, harmonics)
    if noise.shape != (b, n, noise_channels(kind, harmonics)):
        from canora.errors import CanoraError

        raise CanoraError(f"source noise of shape {noise.shape}; need {(b, n, noise_channels(kind, harmonics))}")
    noise = noise.astype(np.float32, copy=False)
    if kind == "smooth":
        mixed = _mixed_harmonics(fs, start, np.asarray(weight, np.float64), sample_rate)
        harmonic = np.float32(bias) + sine_amp * voiced * mixed
        scaled = sine_amp * noise.transpose(0, 2, 1)
        if voiced_noise != 1.0:
            scaled = scaled * (1.0 - (1.0 - voiced_noise) * voiced)[:, None]
        return np.concatenate([np.tanh(harmonic)[:, None], scaled], axis=1)
    fh = fs.astype(np.float64)[:, :, None] * np.arange(1, harmonics + 1, dtype=np.float64)  # (B, N, H)
    phase = np.remainder(np.cumsum(fh / sample_rate, axis=1) + start[:, None], 1.0).astype(np.float32)
    audible = (fh < sample_rate / 2).astype(np.float32)
    v = voiced[:, :, None]
    sines = sine_amp * np.sin(np.float32(2 * math.pi) * phase) * audible * v
    noise_amp = v * noise_std + (1 - v) * sine_amp / 3
    merged = (sines + noise_amp * noise) @ np.asarray(weight, np.float32) + np.float32(bias)
    return np.tanh(merged)[:, None]


def _mixed_harmonics(fs: np.ndarray, start: np.ndarray, weight: np.ndarray, sample_rate: int) -> np.ndarray:
    """sum_h w_h sin(2 pi (h * cycles + start_h)) over the harmonics below Nyquist, (B, N) float32 for ``fs``
    (B, N) Hz and ``start`` (B, H) cycles: the fundamental's running phase in float64, z = e^{i theta} in
    complex64, the harmonics summed by Horner's rule from the top (a harmonic above Nyquist zeroes the sum so
    far, which holds only higher ones: the mask is monotone in h), in blocks of :data:`MIX_BLOCK` samples."""
    b, n = fs.shape
    harmonics = len(weight)
    theta = 2 * math.pi * np.remainder(np.cumsum(fs.astype(np.float64) / sample_rate, axis=1), 1.0)
    z = np.empty((b, n), np.complex64)
    z.real, z.imag = np.cos(theta), np.sin(theta)
    rot = 2 * math.pi * start
    coef = np.empty((b, harmonics), np.complex64)  # w_h e^{i rot_h}: Im(coef_h z^h) = w_h sin(h theta + rot_h)
    coef.real, coef.imag = weight * np.cos(rot), weight * np.sin(rot)
    nyquist = sample_rate / 2
    top = float(fs.max()) if fs.size else 0.0
    # harmonics up to ``free`` are below Nyquist on every sample: no mask to build or apply for them
    free = harmonics if top <= 0 else min(harmonics, int(nyquist / top - 1e-9))
    out = np.empty((b, n), np.float32)
    for a in range(0, n, MIX_BLOCK):
        zb, fb = z[:, a: a + MIX_BLOCK], fs[:, a: a + MIX_BLOCK]
        acc = np.zeros(zb.shape, np.complex64)
        for h in range(harmonics, 0, -1):
            acc += coef[:, h - 1: h]
            acc *= zb if h <= free else np.where(fb < np.float32(nyquist / h), zb, np.complex64(0))
        out[:, a: a + MIX_BLOCK] = acc.imag
    return out
