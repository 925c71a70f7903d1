"""The deployable graph: image in, anomaly map and image score out.

Everything that does not depend on the image is folded into constants at export time:

* the time embeddings of t_s and t_b (the denoiser's time MLP disappears from the graph);
* the noise: a seeded constant (the noise contract, see :data:`NOISE_CONTRACT`), pre-scaled by
  sqrt(1 - ab_t), so noising is one multiply-add per branch;
* the guidance, in its closed form x0_g = clamp(x0_s + w (1 - ab_ts)(x0_b - x0_s), -1, 1).

The two denoiser passes run as one batch of 2B.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..models.detector import DiffusionAD

NOISE_CONTRACT = (
    "fixed: the two branch noises are a seeded constant (DiffusionAD.fixed_noise(seed)) baked into "
    "the graph, identical for every image, so an unchanged image always gets the same score"
)

OUTPUT_NAMES = ("anomaly_map", "score", "reconstruction")


def _per_branch(pair: torch.Tensor, batch: int) -> torch.Tensor:
    """Rows (t_s, t_b) of a per-timestep constant laid out for the batch of 2B: B copies of each."""
    return torch.cat([pair[0:1].expand(batch, -1), pair[1:2].expand(batch, -1)])


class FixedStepDetector(nn.Module):
    """One-step norm-guided DiffusionAD with t_s, t_b, w and the noise folded in."""

    def __init__(self, model: DiffusionAD, noise_seed: int = 0, with_reconstruction: bool = False):
        super().__init__()
        model = model.eval()
        cfg = model.config.diffusion
        self.denoiser = model.denoiser
        self.segmenter = model.segmenter
        self.map_smoothing = model.map_smoothing
        self.top_k = cfg.top_k
        self.with_reconstruction = with_reconstruction
        ab = model.schedule.alphas_cumprod.double()
        ab_s, ab_b = float(ab[cfg.t_s]), float(ab[cfg.t_b])
        self.sqrt_ab_s, self.sqrt_ab_b = math.sqrt(ab_s), math.sqrt(ab_b)
        self.sqrt_1m_ab_s, self.sqrt_1m_ab_b = math.sqrt(1 - ab_s), math.sqrt(1 - ab_b)
        self.blend = cfg.guidance_w * (1 - ab_s)
        with torch.no_grad():
            emb = model.denoiser.time_embedding(torch.tensor([cfg.t_s, cfg.t_b]))
            noise = model.fixed_noise(noise_seed)
        self.register_buffer("time_emb", emb.detach().clone())
        # Preconditioned denoisers: their per-branch scalings are constants too.
        self.preconditioned = model.denoiser.preconditioned
        if self.preconditioned:
            self.register_buffer("coef", model.denoiser.coefficients(torch.tensor([cfg.t_s, cfg.t_b])).clone())
        self.register_buffer("scaled_noise_s", (noise[0] * self.sqrt_1m_ab_s).float())
        self.register_buffer("scaled_noise_b", (noise[1] * self.sqrt_1m_ab_b).float())

    def forward(self, image: torch.Tensor):
        b = image.shape[0]
        x_ts = self.sqrt_ab_s * image + self.scaled_noise_s
        x_tb = self.sqrt_ab_b * image + self.scaled_noise_b
        emb = _per_branch(self.time_emb, b)
        coef = _per_branch(self.coef, b) if self.preconditioned else None
        eps = self.denoiser.forward_with_embedding(torch.cat([x_ts, x_tb]), emb, coef)
        eps_s, eps_b = eps[:b], eps[b:]
        x0_s = (x_ts - self.sqrt_1m_ab_s * eps_s) / self.sqrt_ab_s
        x0_b = ((x_tb - self.sqrt_1m_ab_b * eps_b) / self.sqrt_ab_b).clamp(-1.0, 1.0)
        x0_g = (x0_s + self.blend * (x0_b - x0_s)).clamp(-1.0, 1.0)
        anomaly_map = self.map_smoothing(torch.sigmoid(self.segmenter(torch.cat([image, x0_g], dim=1))))
        score = anomaly_map.flatten(1).topk(self.top_k, dim=1).values.mean(dim=1)
        if self.with_reconstruction:
            return anomaly_map, score, x0_g
        return anomaly_map, score
