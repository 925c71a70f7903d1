"""DiffusionAD: the reconstruction sub-network, the segmentation sub-network and the schedule.

Inference modes:

* ``one_step`` (the product): norm-guided one-step reconstruction (paper eqs. 6-8) at fixed
  t_s / t_b, with the two denoiser passes run as one batch of two, then segmentation.
* ``iterative``: DDPM ancestral sampling from x_{t_b} down to x_0 (one network call per step),
  the paper's iterative baseline.
* ``ddim``: deterministic DDIM sampling from x_{t_b} in a few steps (default 30).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import MODES, ModelConfig  # MODES is re-exported here
from .map_smoothing import MapSmoothing
from .schedule import LinearSchedule, _gather
from .seg import SegmentationUNet
from .unet import DenoisingUNet


@dataclass
class Detection:
    """Output of the detector for a batch."""

    anomaly_map: torch.Tensor  # (B, 1, H, W) probabilities in [0, 1]
    score: torch.Tensor  # (B,) mean of the top-k map pixels
    reconstruction: torch.Tensor  # (B, 3, H, W), clamped to [-1, 1]


def guided_x0_literal(
    schedule: LinearSchedule,
    x_ts: torch.Tensor,
    t_s: torch.Tensor | int,
    eps_s: torch.Tensor,
    x_tb: torch.Tensor,
    t_b: torch.Tensor | int,
    eps_b: torch.Tensor,
    w: float,
) -> torch.Tensor:
    """Norm guidance written exactly as the paper's eqs. (7) and (8).

    ``eps_s`` / ``eps_b`` are the *predicted* noises of the small- and big-t branches.
    """
    x0_b = schedule.predict_start_from_noise(x_tb, t_b, eps_b).clamp(-1, 1)
    sqrt_ab = _gather(schedule.sqrt_alphas_cumprod, t_s, x_ts)
    sqrt_1m_ab = _gather(schedule.sqrt_one_minus_alphas_cumprod, t_s, x_ts)
    n_ts = sqrt_ab * x0_b + sqrt_1m_ab * eps_s
    eps_g = eps_s - sqrt_1m_ab * w * (n_ts - x_ts)
    return ((x_ts - sqrt_1m_ab * eps_g) / sqrt_ab).clamp(-1, 1)


def guided_x0_closed_form(x0_s: torch.Tensor, x0_b: torch.Tensor, one_minus_ab_ts: torch.Tensor | float, w: float) -> torch.Tensor:
    """The same guidance as a fixed blend: clamp(x0_s + w (1 - ab_ts) (x0_b - x0_s), -1, 1).

    ``x0_s`` is the *unclamped* one-step estimate at t_s, ``x0_b`` the clamped one at t_b.
    This is what the exported graph computes: two multiply-adds instead of re-noising.
    """
    return (x0_s + w * one_minus_ab_ts * (x0_b - x0_s)).clamp(-1, 1)


def top_k_score(anomaly_map: torch.Tensor, k: int) -> torch.Tensor:
    """Image score: the mean of the k highest pixels of each map (B, 1, H, W) -> (B,)."""
    flat = anomaly_map.flatten(1)
    return flat.topk(min(k, flat.shape[1]), dim=1).values.mean(dim=1)


def _randn(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Gaussian noise drawn on the generator's device (CPU by default), so a seed gives the same
    noise whatever device the model runs on."""
    dev = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(tuple(shape), generator=generator, device=dev).to(like.device, like.dtype)


class DiffusionAD(nn.Module):
    """The full DiffusionAD model; :meth:`forward` is the norm-guided one-step detector."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config.validate()
        self.schedule = LinearSchedule(config.diffusion)
        self.denoiser = DenoisingUNet(config.unet, config.arch_size, self.schedule.alphas_cumprod)
        self.segmenter = SegmentationUNet(config.seg)
        self.map_smoothing = MapSmoothing(config.diffusion.map_sigma)

    def set_map_sigma(self, sigma: float) -> "DiffusionAD":
        """Change the inference map's smoothing (``map_sigma``, pixels; 0 = raw map) in place: the
        weights are untouched, so an existing checkpoint can be evaluated or exported either way."""
        self.config.diffusion.map_sigma = float(sigma)
        self.config.validate()
        self.map_smoothing = MapSmoothing(sigma).to(self.schedule.alphas_cumprod.device)
        return self

    # -- building blocks ---------------------------------------------------------------------
    def predict_noise_pair(self, x_ts: torch.Tensor, t_s: torch.Tensor, x_tb: torch.Tensor, t_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both denoiser calls as one batch of 2B (they are independent)."""
        eps = self.denoiser(torch.cat([x_ts, x_tb]), torch.cat([t_s, t_b]))
        return eps.chunk(2)

    def guided_reconstruction(
        self,
        x0: torch.Tensor,
        t_s: torch.Tensor,
        t_b: torch.Tensor,
        noise_s: torch.Tensor,
        noise_b: torch.Tensor,
        w: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Noise x0 at t_s and t_b, predict both noises, return (x0_g, eps_s_hat, eps_b_hat)."""
        w = self.config.diffusion.guidance_w if w is None else w
        sched = self.schedule
        x_ts = sched.q_sample(x0, t_s, noise_s)
        x_tb = sched.q_sample(x0, t_b, noise_b)
        eps_s, eps_b = self.predict_noise_pair(x_ts, t_s, x_tb, t_b)
        x0_s = sched.predict_start_from_noise(x_ts, t_s, eps_s)
        x0_b = sched.predict_start_from_noise(x_tb, t_b, eps_b).clamp(-1, 1)
        one_minus_ab = 1.0 - _gather(sched.alphas_cumprod, t_s, x0)
        return guided_x0_closed_form(x0_s, x0_b, one_minus_ab, w), eps_s, eps_b

    def segment_logits(self, x0: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        return self.segmenter(torch.cat([x0, reconstruction], dim=1))

    def anomaly_map(self, x0: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        """The inference map: sigmoid of the segmentation logits, smoothed by ``map_sigma``
        (training's mask losses see the raw logits, :meth:`segment_logits`)."""
        return self.map_smoothing(torch.sigmoid(self.segment_logits(x0, reconstruction)))

    def _detection(self, x0: torch.Tensor, reconstruction: torch.Tensor) -> Detection:
        anomaly_map = self.anomaly_map(x0, reconstruction)
        return Detection(anomaly_map, top_k_score(anomaly_map, self.config.diffusion.top_k), reconstruction)

    def _timesteps(self, t: int, batch: int, device: torch.device) -> torch.Tensor:
        return torch.full((batch,), t, dtype=torch.long, device=device)

    # -- inference modes ---------------------------------------------------------------------
    def forward(self, x0: torch.Tensor, noise_s: torch.Tensor, noise_b: torch.Tensor) -> Detection:
        """Norm-guided one-step detection at the configured t_s, t_b, w.

        The noises are explicit inputs: the caller decides whether they are fixed (the default
        everywhere in this toolkit, so that an unchanged image always gets the same score) or fresh.
        """
        d = self.config.diffusion
        b, dev = x0.shape[0], x0.device
        x0_g, _, _ = self.guided_reconstruction(
            x0, self._timesteps(d.t_s, b, dev), self._timesteps(d.t_b, b, dev), noise_s, noise_b
        )
        return self._detection(x0, x0_g)

    @torch.no_grad()
    def reconstruct_ddpm(self, x0: torch.Tensor, noise: torch.Tensor, generator: torch.Generator | None = None, start_t: int | None = None) -> torch.Tensor:
        """Iterative DDPM reconstruction: noise x0 to start_t (default t_b), then ancestral steps to 0."""
        sched = self.schedule
        start_t = self.config.diffusion.t_b if start_t is None else start_t
        x = sched.q_sample(x0, start_t, noise)
        x0_hat = x0
        for t in range(start_t, -1, -1):
            eps = self.denoiser(x, self._timesteps(t, x.shape[0], x.device))
            x0_hat = sched.predict_start_from_noise(x, t, eps).clamp(-1, 1)
            if t == 0:
                break
            mean, log_var = sched.q_posterior(x0_hat, x, t)
            z = _randn(x.shape, generator, x)
            x = mean + (0.5 * log_var).exp() * z
        return x0_hat

    @torch.no_grad()
    def reconstruct_ddim(self, x0: torch.Tensor, noise: torch.Tensor, steps: int = 30, start_t: int | None = None) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) reconstruction from x_{start_t} in ``steps`` network calls."""
        sched = self.schedule
        start_t = self.config.diffusion.t_b if start_t is None else start_t
        steps = max(1, min(steps, start_t + 1))
        ts = torch.linspace(start_t, 0, steps).round().long().unique_consecutive().tolist()
        x = sched.q_sample(x0, start_t, noise)
        x0_hat = x0
        for i, t in enumerate(ts):
            eps = self.denoiser(x, self._timesteps(t, x.shape[0], x.device))
            x0_hat = sched.predict_start_from_noise(x, t, eps).clamp(-1, 1)
            if i + 1 == len(ts):
                break
            t_next = ts[i + 1]
            ab_next = sched.alphas_cumprod[t_next]
            # Re-derive eps from the clamped x0 so the trajectory stays consistent with it.
            eps = (x - sched.sqrt_alphas_cumprod[t] * x0_hat) / sched.sqrt_one_minus_alphas_cumprod[t]
            x = ab_next.sqrt() * x0_hat + (1 - ab_next).sqrt() * eps
        return x0_hat

    def fixed_noise(self, seed: int = 0) -> torch.Tensor:
        """The noise pair (2, 1, 3, H, W) at the input size, used by default: a seeded constant, identical for every
        image, so that an unchanged image always gets the same score ("same part, same verdict").
        Exported graphs bake exactly this tensor in."""
        h, w = self.config.input_hw
        g = torch.Generator().manual_seed(seed)
        return torch.randn((2, 1, 3, h, w), generator=g)

    @torch.no_grad()
    def detect(
        self,
        x0: torch.Tensor,
        mode: str = "one-step",
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        ddim_steps: int = 30,
        start_t: int | None = None,
    ) -> Detection:
        """Run one of :data:`MODES` on a batch of preprocessed images (B, 3, H, W) in [0, 1].

        ``noise`` (2, B or 1, 3, H, W) defaults to :meth:`fixed_noise`; ``generator`` drives the
        extra noise of the iterative DDPM sampler (seed it for repeatability). ``start_t`` (default
        t_b) is where the iterative samplers start.
        """
        if noise is None:
            noise = self.fixed_noise()
        noise = noise.to(x0.device, x0.dtype).expand(2, *x0.shape)
        if mode == "one-step":
            return self(x0, noise[0], noise[1])
        if mode == "iterative":
            return self._detection(x0, self.reconstruct_ddpm(x0, noise[1], generator, start_t))
        if mode == "ddim":
            return self._detection(x0, self.reconstruct_ddim(x0, noise[1], ddim_steps, start_t))
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
