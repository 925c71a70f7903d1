"""Gaussian smoothing of the anomaly map, part of the detector (and so of every exported graph).

The segmentation net's maps are steep (near 0 or 1) and often mark only part of a defect; a blur of
the probability map spreads each detection over its neighbourhood, which ranks the unmarked pixels
of a marked defect above the background. Anomaly-detection papers commonly blur maps with sigma 4
before their pixel metrics; here the blur is in the model itself, so the metrics, the overlays and
the decisions of every backend all see the same map.

The blur is separable (a row then a column convolution) and normalised at the borders: the map is
zero-padded, and the result divided by the blur of a map of ones, so a border pixel is a weighted
mean of the pixels that exist (no darkening, no reflect padding op in the exported graph: Conv and Mul
only, which every backend runs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_kernel_1d(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian, truncated at 4 sigma (as scipy.ndimage.gaussian_filter)."""
    radius = max(1, int(math.ceil(4.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).float()


class MapSmoothing(nn.Module):
    """(B, 1, H, W) probabilities -> the same, blurred with a Gaussian of ``sigma`` pixels (0: unchanged).

    The kernel is a non-persistent buffer: it is rebuilt from the config, never stored in checkpoints
    (checkpoints written before this module existed load unchanged)."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = float(sigma)
        kernel = gaussian_kernel_1d(self.sigma) if self.sigma > 0 else torch.ones(1)
        self.register_buffer("kernel", kernel, persistent=False)

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel.to(x.dtype)
        r = (k.numel() - 1) // 2
        x = F.conv2d(x, k.view(1, 1, 1, -1), padding=(0, r))
        return F.conv2d(x, k.view(1, 1, -1, 1), padding=(r, 0))

    def forward(self, anomaly_map: torch.Tensor) -> torch.Tensor:
        if self.sigma <= 0:
            return anomaly_map
        h, w = anomaly_map.shape[-2:]
        # The weight each output pixel received from pixels inside the image: a constant of the
        # input size (folded into the exported graph).
        ones = torch.ones(1, 1, h, w, dtype=anomaly_map.dtype, device=anomaly_map.device)
        return self._blur(anomaly_map) / self._blur(ones)
