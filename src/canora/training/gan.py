"""The adversarial part of a HiFi-GAN-style vocoder update, shared by the HiFi-GAN and NSF tasks.

Official order: the discriminators step first on (real, generated.detach()); then the generator's LSGAN and
feature-matching losses (x2) are added to its reconstruction losses. Under DDP the discriminators' gradient
all-reduce is skipped during the generator pass (those gradients are thrown away).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from canora.training.loop import Context
from canora.vocoder.losses import discriminator_loss, feature_loss, generator_loss


def discriminator_step(
    ctx: Context, step: int, discriminators: Sequence[nn.Module], optimizer: torch.optim.Optimizer,
    y: torch.Tensor, y_hat: torch.Tensor,
) -> float:
    """One update of ``discriminators`` (MPD, MSD, ...) on real ``y`` and generated ``y_hat`` (B, 1, N); returns
    the summed LSGAN loss. A non-finite loss stops training (:meth:`Context.check_finite`)."""
    optimizer.zero_grad(set_to_none=True)
    loss = y.new_zeros(())
    fake = y_hat.detach()
    for d in discriminators:
        real_scores, fake_scores, _, _ = d(y, fake)
        loss = loss + discriminator_loss(real_scores, fake_scores)
    ctx.check_finite("discriminator", step, loss)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def generator_adversarial_backward(
    ctx: Context, step: int, discriminators: Sequence[nn.Module], y: torch.Tensor, y_hat: torch.Tensor,
    reconstruction: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Add the adversarial and feature-matching losses of ``y_hat`` to ``reconstruction`` and backpropagate
    the total; returns (total, adversarial, feature matching)."""
    with ctx.no_sync(*discriminators):
        adv = y.new_zeros(())
        fm = y.new_zeros(())
        for d in discriminators:
            _, fake_scores, fmap_real, fmap_fake = d(y, y_hat)
            adv = adv + generator_loss(fake_scores)
            fm = fm + feature_loss(fmap_real, fmap_fake)
        total = reconstruction + adv + fm
        ctx.check_finite("generator", step, total, adv, fm)
        total.backward()
    return total, adv, fm
