"""The PyTorch model itself as a runner (eager): ``dae eval``, ``dae bench``, the noise study, the
export's references and checkpoints opened as bundles all run it through this class. ``torch`` is
imported only when the runner starts."""

from __future__ import annotations

from typing import Any

import numpy as np

from .runner import Runner

#: noise policies of the PyTorch runner: "fixed" is the exported graph's contract (a seeded constant,
#: the same for every image); "fresh" draws new noise for every batch (the noise study)
NOISE_POLICIES = ("fixed", "fresh")


class TorchRunner(Runner):
    """The PyTorch model itself (eager), in one of the detector's modes.

    ``mode``: one-step (what bundles run), iterative (DDPM) or ddim; ``start_t``: where the iterative
    samplers start (default t_b); ``noise``: ``"fixed"`` (:meth:`DiffusionAD.fixed_noise` of
    ``noise_seed``, the graph's contract) or ``"fresh"`` (new noise per batch). One generator, seeded
    with ``seed`` when the runner is activated, drives fresh noise and the DDPM sampler's steps, so a
    run is repeatable from activation on.
    """

    backend = "pytorch"

    def __init__(self, model, device: Any = "cpu", mode: str = "one-step", ddim_steps: int = 30, start_t: int | None = None,
                 noise: str = "fixed", seed: int = 0, noise_seed: int = 0, fixed_batch: int | None = None):
        super().__init__(fixed_batch)
        from ...config import MODES

        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if noise not in NOISE_POLICIES:
            raise ValueError(f"unknown noise policy {noise!r}; choose one of {', '.join(NOISE_POLICIES)}")
        self.model, self.device, self.mode, self.ddim_steps, self.start_t = model, device, mode, ddim_steps, start_t
        self.noise, self.seed, self.noise_seed = noise, seed, noise_seed
        self.runtime_precision = "fp32"
        #: the image scores of every batch since activation (the noise study reads them)
        self.scores_seen: list[np.ndarray] = []

    def activate_impl(self) -> None:
        import torch

        self.model = self.model.to(self.device).eval()
        self.generator = torch.Generator().manual_seed(self.seed)
        self.fixed = None if self.noise == "fresh" or self.noise_seed == 0 else self.model.fixed_noise(self.noise_seed)
        self.scores_seen = []

    def infer_impl(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        x = torch.from_numpy(batch).to(self.device)
        noise = torch.randn((2, *x.shape), generator=self.generator) if self.noise == "fresh" else self.fixed
        with torch.no_grad():
            det = self.model.detect(x, mode=self.mode, noise=noise, generator=self.generator, ddim_steps=self.ddim_steps,
                                    start_t=self.start_t)
        scores = det.score.float().cpu().numpy()
        self.scores_seen.append(scores)
        return det.anomaly_map.float().cpu().numpy(), scores
