"""The DiffusionAD training objective (paper section III-D).

L = L_noise + focal_weight * Focal(M_hat, M) + SmoothL1(M_hat, M) [+ dice_weight * Dice(M_hat, M)]

L_noise is the per-sample MSE of both noise predictions, averaged over the *clean* samples of the
batch only (the denoiser learns the distribution of normal images); it is 0 for a batch with no
clean sample. Nothing is detached: the mask loss also trains the denoiser through x0_g.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def focal_loss(prob: torch.Tensor, target: torch.Tensor, alpha: float = 0.5, gamma: float = 4.0, eps: float = 1e-6) -> torch.Tensor:
    """Binary focal loss on probabilities: mean of -alpha_t (1 - p_t)^gamma log(p_t)."""
    prob = prob.clamp(eps, 1.0 - eps)
    p_t = torch.where(target > 0.5, prob, 1.0 - prob)
    alpha_t = torch.where(target > 0.5, torch.full_like(prob, alpha), torch.full_like(prob, 1.0 - alpha))
    return (-alpha_t * (1.0 - p_t).pow(gamma) * p_t.log()).mean()


def dice_loss(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss per sample, averaged: 1 - (2 |P.M| + s) / (|P| + |M| + s).

    The smoothing s makes a sample with an empty mask (a clean image) cost |P| / (|P| + s): it
    pushes that sample's whole map towards 0 instead of being undefined.
    """
    inter = (prob * target).flatten(1).sum(1)
    total = (prob + target).flatten(1).sum(1)
    return (1.0 - (2.0 * inter + smooth) / (total + smooth)).mean()


def noise_loss(eps_s_hat: torch.Tensor, eps_s: torch.Tensor, eps_b_hat: torch.Tensor, eps_b: torch.Tensor, is_clean: torch.Tensor) -> torch.Tensor:
    """Per-sample MSE of both branches, averaged over the clean samples only."""
    per_sample = (eps_s_hat - eps_s).pow(2).flatten(1).mean(1) + (eps_b_hat - eps_b).pow(2).flatten(1).mean(1)
    weight = is_clean.to(per_sample.dtype)
    return (per_sample * weight).sum() / weight.sum().clamp(min=1.0)


@dataclass
class LossParts:
    total: torch.Tensor
    noise: torch.Tensor
    focal: torch.Tensor
    smooth_l1: torch.Tensor
    dice: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "noise", "focal", "smooth_l1", "dice")}


def diffusionad_loss(
    eps_s_hat: torch.Tensor,
    eps_s: torch.Tensor,
    eps_b_hat: torch.Tensor,
    eps_b: torch.Tensor,
    is_clean: torch.Tensor,
    mask_prob: torch.Tensor,
    mask: torch.Tensor,
    focal_weight: float = 5.0,
    focal_alpha: float = 0.5,
    focal_gamma: float = 4.0,
    dice_weight: float = 0.0,
) -> LossParts:
    # Losses in float32 even under autocast: the focal term's high power underflows in fp16.
    mask_prob, mask = mask_prob.float(), mask.float()
    l_noise = noise_loss(eps_s_hat.float(), eps_s, eps_b_hat.float(), eps_b, is_clean)
    l_focal = focal_loss(mask_prob, mask, focal_alpha, focal_gamma)
    l_sl1 = F.smooth_l1_loss(mask_prob, mask)
    total = l_noise + focal_weight * l_focal + l_sl1
    # Computed (for the log) even at weight 0, where it does not enter the total: the paper's loss.
    l_dice = dice_loss(mask_prob.detach() if dice_weight == 0 else mask_prob, mask)
    if dice_weight:
        total = total + dice_weight * l_dice
    return LossParts(total, l_noise, l_focal, l_sl1, l_dice)
