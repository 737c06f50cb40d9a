"""NSF-HiFi-GAN: a HiFi-GAN generator driven by an F0 sine source (neural source-filter), for singing.

A plain HiFi-GAN must infer the pitch of every harmonic from a mel whose bands are far wider than the
harmonic spacing at high singing pitches; that is where speech vocoders turn sung harmonics to noise. The
source-filter variant (Wang et al. 2019, as used by DDSP-SVC / so-vits-svc "nsf-hifigan") adds a
harmonic-plus-noise excitation built from F0 and injects it at every upsampling stage, so the network only
has to shape a spectrum whose pitch is given. Same mel interface as HiFi-GAN (log-mel (B, n_mels, T) in,
(B, 1, T * hop) out), plus frame-level F0 in Hz (B, T) with 0 at unvoiced frames.

Layer names follow the HiFi-GAN generator (``conv_pre``, ``ups``, ``resblocks``, ``conv_post``) plus
``noise_convs`` and ``source``; weight norm uses ``torch.nn.utils.parametrizations`` and is folded for
inference like the HiFi-GAN's.

Two designs share this module, chosen by :class:`NSFConfig` (exports written before the second existed load
as the first):

* ``upsample="transposed"``, ``source="step"`` (canora 0.1): HiFi-GAN's transposed-convolution upsampling and
  a source whose F0 and voicing step at every frame. Its first transposed convolution (stride 8 from the frame
  rate) repeats one learned pattern per frame, so a generator trained without discriminators turns noise into
  a pulse train at the frame rate (sr / hop = 86 Hz): a buzz in every consonant and a comb under every note.
* ``upsample="interpolate"``, ``source="smooth"`` (the default): every stage upsamples by linear
  interpolation and then convolves, so a steady input gives a steady output and nothing in the network
  repeats per frame; the source's F0 and voicing glide linearly between frame centres, and a separate unit-noise
  channel lets the network shape breath and consonants from real noise instead of inventing it.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from canora.errors import CanoraError
from canora.vocoder import excitation
from canora.vocoder.config import LEGACY_DESIGN, NSFConfig  # noqa: F401 (re-exported)
from canora.vocoder.excitation import NOISE_CHUNK  # noqa: F401 (re-exported)
from canora.vocoder.hifigan import (
    LRELU_SLOPE,
    GeneratorBase,
    ResBlock1,
    ResBlock2,
    init_weights,
)


def upsample_f0(f0: torch.Tensor, hop: int) -> torch.Tensor:
    """Frame F0 (B, T) -> sample F0 (B, T * hop): each frame's value held over its hop (0 stays 0)."""
    return f0.repeat_interleave(hop, dim=1)


def glide_f0(f0: torch.Tensor, hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame F0 (B, T) Hz, 0 = unvoiced -> (sample F0 (B, T * hop), voicing (B, T * hop) in [0, 1]).

    Both glide linearly between frame centres: frame ``t``'s value lands on sample ``t * hop + ceil(hop / 2)``,
    the centre of its mel frame, where the trackers measure it (the first half frame holds frame 0, the last
    half frame holds the last). Where one end is unvoiced the F0 holds the voiced end's value while the voicing
    fades, so a note starts and ends with a one-frame fade at its own pitch. A frame's samples depend on frames
    ``t - 1`` to ``t + 1`` only: a piece of a song is rendered as in the whole song but for its first half frame
    and its last half frame.
    """
    t = f0.shape[1]
    ext = torch.cat([f0[:, :1], f0], dim=1)  # frame -1 holds frame 0, for the first half frame
    nxt = torch.cat([ext[:, 1:], ext[:, -1:]], dim=1)
    a = torch.where(ext > 0, ext, nxt)
    b = torch.where(nxt > 0, nxt, ext)
    frac = torch.arange(hop, device=f0.device, dtype=f0.dtype) / hop
    f = (a[..., None] + (b - a)[..., None] * frac).reshape(f0.shape[0], -1)
    v0, v1 = (ext > 0).to(f0.dtype), (nxt > 0).to(f0.dtype)
    v = (v0[..., None] + (v1 - v0)[..., None] * frac).reshape(f0.shape[0], -1)
    half = hop // 2  # frame t's value lands on its centre, sample t * hop + ceil(hop / 2)
    return f[:, half: half + t * hop], v[:, half: half + t * hop]


class SineSource(nn.Module):
    """Harmonic-plus-noise excitation: frame F0 (B, T) Hz -> source (B, C, T * hop).

    ``smooth`` (C = 2): channel 0 is a learned mix (linear + tanh) of harmonics ``1..H`` of the gliding F0
    (:func:`glide_f0`; harmonics above Nyquist silenced), amplitude ``sine_amp`` times the voicing; channel 1
    is Gaussian noise of standard deviation ``sine_amp`` where unvoiced and ``voiced_noise * sine_amp`` where
    voiced (following the gliding voicing), for the network to shape.
    ``step`` (C = 1, canora 0.1): F0 held over each frame, noise ``noise_std`` where voiced and ``sine_amp / 3``
    where unvoiced added to the sines before the mix.
    Phases are accumulated in float64 and wrapped, so long inputs keep an exact pitch; ``generator`` makes the
    random start phases and noise repeatable. Inference passes ``noise`` from :meth:`stream_noise` instead: noise
    tied to the sample's place in the song, so pieces of one song vocoded apart share it where they overlap and
    never repeat one pattern per piece.
    """

    def __init__(self, sample_rate: int, hop: int, harmonics: int, sine_amp: float, noise_std: float,
                 kind: Literal["step", "smooth"] = "smooth", voiced_noise: float = 1.0) -> None:
        super().__init__()
        self.voiced_noise = voiced_noise
        self.sample_rate = sample_rate
        self.hop = hop
        self.harmonics = harmonics
        self.sine_amp = sine_amp
        self.noise_std = noise_std
        self.kind = kind
        self.channels = 2 if kind == "smooth" else 1
        self.merge = nn.Linear(harmonics, 1)

    def sample_f0(self, f0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame F0 (B, T) -> (sample F0 (B, T * hop), voicing (B, T * hop))."""
        if self.kind == "smooth":
            return glide_f0(f0, self.hop)
        f = upsample_f0(f0, self.hop)
        return f, (f > 0).to(f0.dtype)

    def frame_cycles(self, f0: np.ndarray) -> np.ndarray:
        """Start phases (T + 1,) float64 in cycles for pieces beginning at each frame of ``f0`` (T,) Hz, and the
        song's total at its end (:func:`canora.vocoder.excitation.frame_cycles`)."""
        return excitation.frame_cycles(f0, self.hop, self.sample_rate, self.kind)

    def noise_channels(self) -> int:
        """Channels of the Gaussian noise the source draws per sample (1 for ``smooth``, H for ``step``)."""
        return excitation.noise_channels(self.kind, self.harmonics)

    def stream_noise(self, seed: int, start: int, n: int, batch: int = 1) -> torch.Tensor:
        """Unit Gaussian noise (batch, n, :meth:`noise_channels`) float32 for samples ``[start, start + n)`` of a
        song, by the sample's place in it (:func:`canora.vocoder.excitation.stream_noise`)."""
        return torch.from_numpy(excitation.stream_noise(seed, start, n, self.noise_channels(), batch))

    def forward(
        self, f0: torch.Tensor, generator: torch.Generator | None = None, phase0: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``f0`` (B, T) frame F0 in Hz; ``phase0`` (B, H) in cycles: each harmonic's phase before the first
        sample (random when None, as in training; given by inference so that consecutive pieces of one song
        continue each other); ``noise`` (B, T * hop, :meth:`noise_channels`) unit Gaussian noise (drawn from
        ``generator`` when None)."""
        fs, voiced = self.sample_f0(f0)
        b, n = fs.shape
        if phase0 is None:
            start = torch.rand(b, self.harmonics, generator=generator, dtype=torch.float64).to(f0.device)
            start[:, 0] = 0.0
        else:
            start = phase0.to(device=f0.device, dtype=torch.float64).reshape(b, self.harmonics)
        if self.kind == "smooth":
            harmonic = self.merge.bias.to(fs.dtype) + self.sine_amp * voiced * self._mixed_harmonics(fs, start)
            if noise is None:
                noise = torch.randn((b, 1, n), generator=generator, dtype=fs.dtype).to(f0.device)
            else:
                noise = self._given(noise, b, n, fs).transpose(1, 2)
            noise = self.sine_amp * noise
            if self.voiced_noise != 1.0:
                noise = noise * (1.0 - (1.0 - self.voiced_noise) * voiced)[:, None]
            return torch.cat([torch.tanh(harmonic)[:, None], noise], dim=1)
        mult = torch.arange(1, self.harmonics + 1, device=f0.device, dtype=torch.float64)
        fh = fs.double()[:, :, None] * mult  # (B, N, H)
        phase = torch.remainder(torch.cumsum(fh / self.sample_rate, dim=1) + start[:, None], 1.0).to(fs.dtype)
        audible = (fh < self.sample_rate / 2).to(fs.dtype)
        sines = self.sine_amp * torch.sin(2 * math.pi * phase) * audible * voiced[:, :, None]
        v = voiced[:, :, None]
        noise_amp = v * self.noise_std + (1 - v) * self.sine_amp / 3
        if noise is None:
            noise = torch.randn(sines.shape, generator=generator, dtype=sines.dtype).to(f0.device)
        else:
            noise = self._given(noise, b, n, sines)
        return torch.tanh(self.merge(sines + noise_amp * noise)).transpose(1, 2)

    def _mixed_harmonics(self, fs: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """sum_h w_h * sin(2 pi (h * cycles + start_h)) over the audible harmonics (B, N), ``fs`` (B, N) Hz and
        ``start`` (B, H) cycles: the fundamental's running phase in float64 (exact over long notes), then
        harmonic ``h`` as ``z^h`` (z = e^{i theta}, one complex product per harmonic in float32, ~1e-6 from
        evaluating each sine apart and ~5x faster) rotated by its start phase and mixed as it comes, so memory
        stays (B, N) for any number of harmonics; the Nyquist mask is applied only to harmonics that reach it."""
        cycles = torch.cumsum(fs.double() / self.sample_rate, dim=1)
        theta = 2 * math.pi * torch.remainder(cycles, 1.0)
        c1, s1 = torch.cos(theta).to(fs.dtype), torch.sin(theta).to(fs.dtype)
        w = self.merge.weight[0].double()
        rot = 2 * math.pi * start.double()
        on_sin, on_cos = (w * torch.cos(rot)).to(fs.dtype), (w * torch.sin(rot)).to(fs.dtype)  # (B, H)
        nyquist = self.sample_rate / 2
        top = float(fs.max()) if fs.numel() else 0.0
        # harmonics up to ``free`` are below Nyquist on every sample: no mask to build or apply for them
        free = self.harmonics if top <= 0 else min(self.harmonics, int(nyquist / top - 1e-9))
        ch, sh = c1, s1
        acc = torch.zeros_like(fs)
        for h in range(1, self.harmonics + 1):
            if h > 1:
                ch, sh = torch.addcmul(ch * c1, sh, s1, value=-1), torch.addcmul(sh * c1, ch, s1)
            term = torch.addcmul(sh * on_sin[:, h - 1: h], ch, on_cos[:, h - 1: h])
            acc = acc + term if h <= free else torch.addcmul(acc, term, fs < nyquist / h)
        return acc

    def _given(self, noise: torch.Tensor, b: int, n: int, like: torch.Tensor) -> torch.Tensor:
        """Check given noise against (B, N, channels) and move it to ``like``'s device and dtype."""
        if tuple(noise.shape) != (b, n, self.noise_channels()):
            raise CanoraError(f"source noise of shape {tuple(noise.shape)}; need {(b, n, self.noise_channels())}")
        return noise.to(device=like.device, dtype=like.dtype)


class InterpolateConv(nn.Module):
    """Upsample (B, C_in, L) -> (B, C_out, L * rate): linear interpolation, then a weight-normed convolution.

    Unlike a transposed convolution, which stamps one learned pattern per input step, this is shift-invariant
    at the output rate: a steady input stays steady, so no pattern repeats at the input's rate.
    """

    def __init__(self, c_in: int, c_out: int, rate: int, kernel: int) -> None:
        super().__init__()
        self.rate = rate
        self.conv = weight_norm(nn.Conv1d(c_in, c_out, kernel, 1, padding=kernel // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.rate, mode="linear", align_corners=False))


class NSFGenerator(GeneratorBase):
    """(log-mel (B, n_mels, T), F0 (B, T) Hz, 0 = unvoiced) -> waveform (B, 1, T * hop) in [-1, 1]."""

    def __init__(
        self,
        *,
        sample_rate: int,
        n_mels: int,
        resblock: Literal["1", "2"],
        upsample_rates: tuple[int, ...],
        upsample_kernel_sizes: tuple[int, ...],
        upsample_initial_channel: int,
        resblock_kernel_sizes: tuple[int, ...],
        resblock_dilation_sizes: tuple[tuple[int, ...], ...],
        harmonics: int,
        sine_amp: float,
        noise_std: float,
        upsample: Literal["transposed", "interpolate"] = "interpolate",
        source: Literal["step", "smooth"] = "smooth",
        interp_kernel: int = 5,
        voiced_noise: float = 1.0,
    ) -> None:
        super().__init__()
        self.hop = math.prod(upsample_rates)
        self.num_kernels = len(resblock_kernel_sizes)
        self.source = SineSource(sample_rate, self.hop, harmonics, sine_amp, noise_std, source, voiced_noise)
        self.conv_pre = weight_norm(nn.Conv1d(n_mels, upsample_initial_channel, 7, 1, padding=3))
        block = ResBlock1 if resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.noise_convs = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            c_in, ch = upsample_initial_channel // (2**i), upsample_initial_channel // (2 ** (i + 1))
            if upsample == "interpolate":
                self.ups.append(InterpolateConv(c_in, ch, u, interp_kernel))
            else:
                self.ups.append(weight_norm(nn.ConvTranspose1d(c_in, ch, k, u, padding=(k - u) // 2)))
            stride = math.prod(upsample_rates[i + 1:])  # source rate -> this stage's rate
            sc = self.source.channels
            if stride > 1:
                self.noise_convs.append(nn.Conv1d(sc, ch, stride * 2, stride, padding=(stride + 1) // 2))
            else:
                self.noise_convs.append(nn.Conv1d(sc, ch, 1))
            for rk, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(block(ch, rk, tuple(d)))
        self.conv_post = weight_norm(nn.Conv1d(ch, 1, 7, 1, padding=3))
        self.ups.apply(init_weights)
        self.conv_post.apply(init_weights)

    @classmethod
    def from_config(cls, cfg: NSFConfig) -> NSFGenerator:
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cfg)})

    def forward(
        self, mel: torch.Tensor, f0: torch.Tensor, generator: torch.Generator | None = None,
        phase0: torch.Tensor | None = None, noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """mel (B, n_mels, T), f0 (B, T), optional start phases ``phase0`` (B, harmonics) and source noise
        (B, T * hop, C) (:meth:`SineSource.forward`) -> (B, 1, T * hop)."""
        if f0.shape != (mel.shape[0], mel.shape[2]):
            raise CanoraError(f"F0 of shape {tuple(f0.shape)} does not fit the mel {tuple(mel.shape)}: need (B, T)")
        return self.network(mel, self.source(f0.to(mel.dtype), generator, phase0, noise))

    def network(self, mel: torch.Tensor, src: torch.Tensor | None = None) -> torch.Tensor:
        """The layers after the source: mel (B, n_mels, T) and its excitation ``src`` (B, C, T * hop)
        (:class:`SineSource`) -> (B, 1, T * hop)."""
        if src is None:
            raise CanoraError("an NSF generator needs its source's excitation")
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            s = self.noise_convs[i](src)
            x = self.fuse(i, x + s[..., : x.shape[-1]])
        return self.output(x)
