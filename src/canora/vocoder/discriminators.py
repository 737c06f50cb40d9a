"""HiFi-GAN discriminators (jik876/hifi-gan): multi-period (MPD) and multi-scale (MSD), official layer layout.

Weight and spectral norm use ``torch.nn.utils.parametrizations``; official ``do_XXXXXXXX`` files use the
legacy names. :func:`to_official_keys` / :func:`from_official_keys` map between them:

================================  =========================================
official (legacy)                 here (parametrizations)
================================  =========================================
``x.weight_g`` / ``x.weight_v``   ``x.parametrizations.weight.original0/1``
``x.weight_orig`` (spectral)      ``x.parametrizations.weight.original``
``x.weight_u`` / ``x.weight_v``   ``x.parametrizations.weight.0._u`` / ``._v``
================================  =========================================

(``weight_v`` is a weight-norm direction unless the same layer has a ``weight_orig``.) Parameters come in
the same order under both APIs (bias, then g/v or orig), so optimizer states carry over too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from canora.errors import CanoraError
from canora.vocoder.hifigan import LRELU_SLOPE, get_padding

MPD_PERIODS = (2, 3, 5, 7, 11)
WIDTH_DIVS = (1, 2, 4, 8)  # channel divisors that keep MSD's groups (4, 16) valid

# (discriminator outputs for real, for generated, feature maps for real, for generated)
DiscOutput = tuple[list[torch.Tensor], list[torch.Tensor], list[list[torch.Tensor]], list[list[torch.Tensor]]]


def _scores_and_maps(convs: nn.ModuleList, conv_post: nn.Module, x: torch.Tensor,
                     fmap: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``x`` through ``convs`` (each followed by a leaky ReLU) and ``conv_post``, every output appended to ``fmap``
    -> (the last output flattened to (B, N), ``fmap``)."""
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        fmap.append(x)
    x = conv_post(x)
    fmap.append(x)
    return torch.flatten(x, 1, -1), fmap


class DiscriminatorP(nn.Module):
    """One period discriminator: audio (B, 1, T) folded to (B, 1, T / p, p), 2-D convs over time."""

    def __init__(
        self, period: int, kernel_size: int = 5, stride: int = 3, use_spectral_norm: bool = False, width_div: int = 1
    ) -> None:
        super().__init__()
        self.period = period
        norm = spectral_norm if use_spectral_norm else weight_norm
        pad = (get_padding(kernel_size, 1), 0)
        chans = (1, *(c // width_div for c in (32, 128, 512, 1024)))
        top = chans[-1]
        convs = [norm(nn.Conv2d(a, b, (kernel_size, 1), (stride, 1), padding=pad)) for a, b in zip(chans, chans[1:])]
        convs.append(norm(nn.Conv2d(top, top, (kernel_size, 1), 1, padding=(2, 0))))
        self.convs = nn.ModuleList(convs)
        self.conv_post = norm(nn.Conv2d(top, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, 1, T) -> (scores (B, N), feature maps)."""
        b, c, t = x.shape
        if t % self.period:
            n_pad = self.period - t % self.period
            x = F.pad(x, (0, n_pad), "reflect")
            t = t + n_pad
        return _scores_and_maps(self.convs, self.conv_post, x.view(b, c, t // self.period, self.period), [])


class MultiPeriodDiscriminator(nn.Module):
    """MPD: one :class:`DiscriminatorP` per period (official: 2, 3, 5, 7, 11). ``width_div`` > 1 divides every
    channel count (a cheaper, non-official discriminator for CPU budgets and tests)."""

    def __init__(self, periods: tuple[int, ...] = MPD_PERIODS, width_div: int = 1) -> None:
        super().__init__()
        _check_div(width_div)
        self.discriminators = nn.ModuleList(DiscriminatorP(p, width_div=width_div) for p in periods)

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor) -> DiscOutput:
        """Real and generated audio (B, 1, T) -> scores and feature maps of each (lists over periods)."""
        return _run_all(self.discriminators, y, y_hat)


class DiscriminatorS(nn.Module):
    """One scale discriminator: grouped strided 1-D convs over audio (B, 1, T)."""

    def __init__(self, use_spectral_norm: bool = False, width_div: int = 1) -> None:
        super().__init__()
        norm = spectral_norm if use_spectral_norm else weight_norm
        c128, c256, c512, c1024 = (c // width_div for c in (128, 256, 512, 1024))
        self.convs = nn.ModuleList([
            norm(nn.Conv1d(1, c128, 15, 1, padding=7)),
            norm(nn.Conv1d(c128, c128, 41, 2, groups=4, padding=20)),
            norm(nn.Conv1d(c128, c256, 41, 2, groups=16, padding=20)),
            norm(nn.Conv1d(c256, c512, 41, 4, groups=16, padding=20)),
            norm(nn.Conv1d(c512, c1024, 41, 4, groups=16, padding=20)),
            norm(nn.Conv1d(c1024, c1024, 41, 1, groups=16, padding=20)),
            norm(nn.Conv1d(c1024, c1024, 5, 1, padding=2)),
        ])
        self.conv_post = norm(nn.Conv1d(c1024, 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, 1, T) -> (scores (B, N), feature maps)."""
        return _scores_and_maps(self.convs, self.conv_post, x, [])


class MultiScaleDiscriminator(nn.Module):
    """MSD: three :class:`DiscriminatorS` on audio at 1x, 1/2x, 1/4x (AvgPool1d(4, 2, padding=2) between);
    the first is spectral-normed, the others weight-normed. ``width_div``: as in :class:`MultiPeriodDiscriminator`."""

    def __init__(self, width_div: int = 1) -> None:
        super().__init__()
        _check_div(width_div)
        self.discriminators = nn.ModuleList([
            DiscriminatorS(use_spectral_norm=True, width_div=width_div),
            DiscriminatorS(width_div=width_div),
            DiscriminatorS(width_div=width_div),
        ])
        self.meanpools = nn.ModuleList([nn.AvgPool1d(4, 2, padding=2), nn.AvgPool1d(4, 2, padding=2)])

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor) -> DiscOutput:
        """Real and generated audio (B, 1, T) -> scores and feature maps of each (lists over scales)."""
        out: DiscOutput = ([], [], [], [])
        for i, d in enumerate(self.discriminators):
            if i:
                y, y_hat = self.meanpools[i - 1](y), self.meanpools[i - 1](y_hat)
            _append(out, d, y, y_hat)
        return out


def _check_div(width_div: int) -> None:
    if width_div not in WIDTH_DIVS:
        raise CanoraError(f"discriminator width divisor {width_div} must be one of {WIDTH_DIVS} (1 = official)")


def _append(out: DiscOutput, d: nn.Module, y: torch.Tensor, y_hat: torch.Tensor) -> None:
    r, fr = d(y)
    g, fg = d(y_hat)
    out[0].append(r)
    out[1].append(g)
    out[2].append(fr)
    out[3].append(fg)


def _run_all(ds: nn.ModuleList, y: torch.Tensor, y_hat: torch.Tensor) -> DiscOutput:
    out: DiscOutput = ([], [], [], [])
    for d in ds:
        _append(out, d, y, y_hat)
    return out


# ---------------------------------------------------------------------- official key names
_P = ".parametrizations.weight."
_HERE_TO_OFFICIAL = {
    _P + "original0": ".weight_g",
    _P + "original1": ".weight_v",
    _P + "original": ".weight_orig",
    _P + "0._u": ".weight_u",
    _P + "0._v": ".weight_v",
}


def to_official_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Parametrization names (weight and spectral norm) -> the legacy names of official ``do_*`` files."""
    out = {}
    for k, v in state.items():
        for here, official in _HERE_TO_OFFICIAL.items():
            if k.endswith(here):
                k = k[: -len(here)] + official
                break
        out[k] = v
    return out


def from_official_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Legacy names -> parametrization names. ``x.weight_v`` is spectral-norm's ``_v`` when ``x.weight_orig``
    is present, else weight-norm's direction."""
    spectral = {k[: -len(".weight_orig")] for k in state if k.endswith(".weight_orig")}
    out = {}
    for k, v in state.items():
        base, _, leaf = k.rpartition(".")
        if leaf == "weight_orig":
            k = base + _P + "original"
        elif leaf == "weight_u":
            k = base + _P + "0._u"
        elif leaf == "weight_v":
            k = base + (_P + "0._v" if base in spectral else _P + "original1")
        elif leaf == "weight_g":
            k = base + _P + "original0"
        out[k] = v
    return out
