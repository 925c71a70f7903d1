"""The linear DDPM noise schedule, kept apart from the networks.

Names follow the paper's notation: ``alphas_cumprod`` is alpha-bar_t, ``q_sample`` is the forward
noising q(x_t | x_0), ``predict_start_from_noise`` is the one-step estimate of eq. (6).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import DiffusionConfig


def _gather(values: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped to broadcast against ``like`` (B, C, H, W)."""
    if isinstance(t, int):
        return values[t].to(like.dtype)
    out = values.gather(0, t.to(values.device).long()).to(like.dtype)
    return out.view(-1, *([1] * (like.dim() - 1)))


class LinearSchedule(nn.Module):
    """Linear beta schedule with its derived constants registered as (float64-computed) buffers."""

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        self.config = config
        betas = torch.linspace(config.beta_start, config.beta_end, config.num_timesteps, dtype=torch.float64)
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)

        def buf(name: str, value: torch.Tensor) -> None:
            self.register_buffer(name, value.to(torch.float32), persistent=False)

        buf("betas", betas)
        buf("alphas_cumprod", alphas_cumprod)
        buf("alphas_cumprod_prev", alphas_cumprod_prev)
        buf("sqrt_alphas_cumprod", alphas_cumprod.sqrt())
        buf("sqrt_one_minus_alphas_cumprod", (1.0 - alphas_cumprod).sqrt())
        buf("posterior_variance", posterior_variance)
        # Log of the variance clipped at t=0 (where it is 0), as is customary.
        buf("posterior_log_variance_clipped", torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]])))
        buf("posterior_mean_coef1", betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod))
        buf("posterior_mean_coef2", (1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod))

    @property
    def num_timesteps(self) -> int:
        return self.config.num_timesteps

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor) -> torch.Tensor:
        """Forward noising: x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps."""
        return _gather(self.sqrt_alphas_cumprod, t, x0) * x0 + _gather(
            self.sqrt_one_minus_alphas_cumprod, t, x0
        ) * noise

    def predict_start_from_noise(self, x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor) -> torch.Tensor:
        """One-step estimate (paper eq. 6): x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)."""
        return (x_t - _gather(self.sqrt_one_minus_alphas_cumprod, t, x_t) * eps) / _gather(
            self.sqrt_alphas_cumprod, t, x_t
        )

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(x_{t-1} | x_t, x0)."""
        mean = self.posterior_mean_coef1[t] * x0 + self.posterior_mean_coef2[t] * x_t
        return mean, self.posterior_log_variance_clipped[t].expand_as(x_t)
