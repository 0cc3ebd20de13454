"""GAN objectives (least squares by default), the gradient penalty, and the L1 cycle/identity
terms."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class GANLoss(nn.Module):
    """Loss of a discriminator output against the label "real" or "fake".

    lsgan: mean squared error to 1/0 (the paper); vanilla: cross-entropy on logits;
    wgangp: -mean for real, +mean for fake (Wasserstein critic).
    """

    def __init__(self, gan_mode: str = "lsgan"):
        super().__init__()
        if gan_mode not in ("lsgan", "vanilla", "wgangp"):
            raise ValueError(f"unknown gan_mode {gan_mode!r}")
        self.gan_mode = gan_mode

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        prediction = prediction.float()
        if self.gan_mode == "wgangp":
            return -prediction.mean() if target_is_real else prediction.mean()
        target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
        if self.gan_mode == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)


def gradient_penalty(
    net_d: nn.Module, real: torch.Tensor, fake: torch.Tensor, weight: float = 10.0
) -> torch.Tensor:
    """WGAN-GP: weight * (||grad D(x)||_2 - 1)^2 on random mixes of real and fake."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out = net_d(mixed)
    (grad,) = torch.autograd.grad(out, mixed, grad_outputs=torch.ones_like(out), create_graph=True)
    return weight * ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference, computed in fp32 whatever the autocast dtype."""
    return F.l1_loss(a.float(), b.float())
