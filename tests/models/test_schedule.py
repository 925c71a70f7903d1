import math

import pytest
import torch

from diffusionad_edge.config import DiffusionConfig
from diffusionad_edge.models.schedule import LinearSchedule


@pytest.fixture(scope="module")
def sched():
    return LinearSchedule(DiffusionConfig())


def test_schedule_constants_pinned(sched):
    assert sched.betas[0].item() == pytest.approx(1e-4)
    assert sched.betas[-1].item() == pytest.approx(0.02)
    assert len(sched.betas) == 1000
    # ab_t = prod(1 - beta_i), i <= t (0-based): values quoted in DESIGN.md
    assert sched.alphas_cumprod[200].item() == pytest.approx(0.656, abs=1e-3)
    assert sched.alphas_cumprod[400].item() == pytest.approx(0.194, abs=1e-3)
    assert sched.alphas_cumprod[0].item() == pytest.approx(1 - 1e-4)
    assert sched.alphas_cumprod[999].item() == pytest.approx(4.04e-5, rel=0.02)
    # Independent recomputation in plain Python
    ab = 1.0
    for i in range(301):
        ab *= 1 - (1e-4 + (0.02 - 1e-4) * i / 999)
    assert sched.alphas_cumprod[300].item() == pytest.approx(ab, rel=1e-5)


def test_one_step_with_true_noise_recovers_x0(sched):
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 3, 8, 8, generator=g) * 2 - 1
    eps = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 200, 999])
    x_t = sched.q_sample(x0, t, eps)
    assert torch.allclose(sched.predict_start_from_noise(x_t, t, eps), x0, atol=1e-3)
    # integer timestep path too
    x_t = sched.q_sample(x0, 400, eps)
    assert torch.allclose(sched.predict_start_from_noise(x_t, 400, eps), x0, atol=1e-4)


def test_q_sample_matches_formula(sched):
    x0 = torch.ones(1, 3, 2, 2)
    eps = torch.zeros_like(x0)
    assert torch.allclose(sched.q_sample(x0, 200, eps), torch.full_like(x0, math.sqrt(sched.alphas_cumprod[200].item())))
