"""HiFi-GAN losses: LSGAN adversarial, feature matching (x2), mel L1 (x45), and a multi-resolution STFT loss.

Audio tensors are (B, 1, T) or (B, T) floats in [-1, 1]. Discriminator outputs are the lists returned by
:class:`~canora.vocoder.discriminators.MultiPeriodDiscriminator` / ``MultiScaleDiscriminator``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from canora.dsp.mel import MelSpec, mel_spectrogram

FEATURE_WEIGHT = 2.0
MEL_WEIGHT = 45.0
# (n_fft, hop, win) as in Parallel WaveGAN's multi-resolution STFT loss
STFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: sum over discriminators of mean((1 - D(y))^2) + mean(D(G(x))^2)."""
    loss = real[0].new_zeros(())
    for dr, dg in zip(real, fake):
        loss = loss + torch.mean((1 - dr) ** 2) + torch.mean(dg**2)
    return loss


def generator_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: sum over discriminators of mean((1 - D(G(x)))^2)."""
    loss = fake[0].new_zeros(())
    for dg in fake:
        loss = loss + torch.mean((1 - dg) ** 2)
    return loss


def feature_loss(fmap_real: list[list[torch.Tensor]], fmap_fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Feature matching: 2 x sum over discriminators and layers of mean |f_real - f_fake|."""
    loss = fmap_real[0][0].new_zeros(())
    for dr, dg in zip(fmap_real, fmap_fake):
        for r, g in zip(dr, dg):
            loss = loss + torch.mean(torch.abs(r.detach() - g))
    return FEATURE_WEIGHT * loss


def mel_loss(y_mel: torch.Tensor, y_hat: torch.Tensor, loss_spec: MelSpec) -> torch.Tensor:
    """Unweighted L1 between the loss mel of the target (B, n_mels, F) and the loss mel of ``y_hat`` (B, 1, T).

    ``loss_spec`` is ``spec.for_loss(fmax_for_loss)`` (official: full band). Multiply by :data:`MEL_WEIGHT`
    for the training objective.
    """
    y_hat_mel = mel_spectrogram(y_hat.reshape(y_hat.shape[0], -1), loss_spec)
    n = min(y_mel.shape[-1], y_hat_mel.shape[-1])
    return F.l1_loss(y_hat_mel[..., :n], y_mel[..., :n])


def _stft_mag(x: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    window = torch.hann_window(win, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop, win, window, return_complex=True)
    return torch.sqrt(torch.clamp(spec.real**2 + spec.imag**2, min=1e-7))


def multi_resolution_stft_loss(
    y: torch.Tensor, y_hat: torch.Tensor, resolutions: tuple[tuple[int, int, int], ...] = STFT_RESOLUTIONS
) -> torch.Tensor:
    """Mean over resolutions of spectral convergence + L1 log-magnitude distance, (B, 1, T) or (B, T) audio."""
    y, y_hat = y.reshape(y.shape[0], -1), y_hat.reshape(y_hat.shape[0], -1)
    n = min(y.shape[-1], y_hat.shape[-1])
    y, y_hat = y[:, :n], y_hat[:, :n]
    total = y.new_zeros(())
    for n_fft, hop, win in resolutions:
        m, m_hat = _stft_mag(y, n_fft, hop, win), _stft_mag(y_hat, n_fft, hop, win)
        sc = torch.linalg.norm(m - m_hat, dim=(-2, -1)) / torch.linalg.norm(m, dim=(-2, -1)).clamp(min=1e-7)
        total = total + sc.mean() + F.l1_loss(torch.log(m_hat), torch.log(m))
    return total / len(resolutions)
