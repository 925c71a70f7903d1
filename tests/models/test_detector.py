import pytest
import torch

from diffusionad_edge.config import ModelConfig, preset
from diffusionad_edge.errors import ConfigError
from diffusionad_edge.models.detector import DiffusionAD, guided_x0_closed_form, guided_x0_literal, top_k_score
from diffusionad_edge.models.schedule import LinearSchedule


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return DiffusionAD(preset("tiny")).eval()


def _branch_inputs(sched, seed=0, b=2):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(b, 3, 16, 16, generator=g)
    noise_s, noise_b = torch.randn(x0.shape, generator=g), torch.randn(x0.shape, generator=g)
    eps_s, eps_b = torch.randn(x0.shape, generator=g), torch.randn(x0.shape, generator=g)  # "predicted"
    x_ts, x_tb = sched.q_sample(x0, 200, noise_s), sched.q_sample(x0, 400, noise_b)
    return x_ts, x_tb, eps_s, eps_b


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0, 2.0])
def test_guidance_closed_form_identity(w):
    sched = LinearSchedule(preset("tiny").diffusion)
    x_ts, x_tb, eps_s, eps_b = _branch_inputs(sched)
    literal = guided_x0_literal(sched, x_ts, 200, eps_s, x_tb, 400, eps_b, w)
    x0_s = sched.predict_start_from_noise(x_ts, 200, eps_s)
    x0_b = sched.predict_start_from_noise(x_tb, 400, eps_b).clamp(-1, 1)
    closed = guided_x0_closed_form(x0_s, x0_b, 1 - sched.alphas_cumprod[200], w)
    assert torch.allclose(literal, closed, atol=1e-5)


def test_guidance_w0_is_plain_one_step():
    sched = LinearSchedule(preset("tiny").diffusion)
    x_ts, x_tb, eps_s, eps_b = _branch_inputs(sched, seed=1)
    literal = guided_x0_literal(sched, x_ts, 200, eps_s, x_tb, 400, eps_b, 0.0)
    plain = sched.predict_start_from_noise(x_ts, 200, eps_s).clamp(-1, 1)
    assert torch.allclose(literal, plain, atol=1e-6)


def test_model_guidance_uses_closed_form(tiny):
    # The model's reconstruction equals the literal eqs. (7)-(8) applied to its own noise predictions.
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(2, 3, 64, 64, generator=g)
    ns, nb = torch.randn(x0.shape, generator=g), torch.randn(x0.shape, generator=g)
    t_s, t_b = torch.full((2,), 200), torch.full((2,), 400)
    with torch.no_grad():
        x0_g, eps_s, eps_b = tiny.guided_reconstruction(x0, t_s, t_b, ns, nb)
        # batching the two passes must equal running them separately
        sep_s = tiny.denoiser(tiny.schedule.q_sample(x0, t_s, ns), t_s)
    assert torch.allclose(eps_s, sep_s, atol=1e-5)
    x_ts, x_tb = tiny.schedule.q_sample(x0, t_s, ns), tiny.schedule.q_sample(x0, t_b, nb)
    assert torch.allclose(x0_g, guided_x0_literal(tiny.schedule, x_ts, t_s, eps_s, x_tb, t_b, eps_b, 1.0), atol=1e-5)


def test_detect_outputs_and_determinism(tiny):
    x = torch.rand(3, 3, 64, 64)
    a = tiny.detect(x)
    b = tiny.detect(x)
    assert a.anomaly_map.shape == (3, 1, 64, 64)
    assert a.score.shape == (3,)
    assert a.reconstruction.shape == (3, 3, 64, 64)
    # the map is sigmoid(seg([x, x0_g])) with x0_g from the paper's equations on the fixed noise, and the
    # score the mean of its top-k pixels, both computed here by hand from the model's own networks
    noise = tiny.fixed_noise(0)
    t_s, t_b = torch.full((3,), 200), torch.full((3,), 400)
    ns, nb = noise[0].expand_as(x), noise[1].expand_as(x)
    x_ts, x_tb = tiny.schedule.q_sample(x, t_s, ns), tiny.schedule.q_sample(x, t_b, nb)
    with torch.no_grad():
        eps_s, eps_b = tiny.denoiser(x_ts, t_s), tiny.denoiser(x_tb, t_b)
        x0_g = guided_x0_literal(tiny.schedule, x_ts, t_s, eps_s, x_tb, t_b, eps_b, 1.0)
        expected_map = torch.sigmoid(tiny.segmenter(torch.cat([x, x0_g], dim=1)))
    assert torch.allclose(a.reconstruction, x0_g, atol=1e-4)
    assert torch.allclose(a.anomaly_map, expected_map, atol=1e-4)
    k = tiny.config.diffusion.top_k
    expected_score = expected_map.flatten(1).sort(dim=1).values[:, -k:].mean(dim=1)
    assert torch.allclose(a.score, expected_score, atol=1e-5)
    assert torch.equal(a.score, b.score)  # fixed noise: same image, same score
    # batch independence: image 1 alone gets the same score
    alone = tiny.detect(x[1:2])
    assert torch.allclose(alone.score, a.score[1:2], atol=1e-5)


def _hand_written_sampler(model, x0, mode, start_t, seed, ddim_steps):
    """The paper's samplers written out from the betas (float64 schedule), independent of the
    model's schedule helpers: DDPM ancestral steps, or DDIM (eta = 0) on a rounded linspace."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    ab = torch.cumprod(1 - betas, 0)
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    f = lambda v: float(v)  # noqa: E731
    noise = model.fixed_noise(0)[1].expand_as(x0)
    x = f(ab[start_t].sqrt()) * x0 + f((1 - ab[start_t]).sqrt()) * noise
    g = torch.Generator().manual_seed(seed)
    ts = list(range(start_t, -1, -1)) if mode == "iterative" else \
        torch.linspace(start_t, 0, ddim_steps).round().long().unique_consecutive().tolist()
    for i, t in enumerate(ts):
        with torch.no_grad():
            eps = model.denoiser(x, torch.full((x.shape[0],), t))
        x0_hat = ((x - f((1 - ab[t]).sqrt()) * eps) / f(ab[t].sqrt())).clamp(-1, 1)
        if i + 1 == len(ts):
            break
        if mode == "iterative":
            mean = f(betas[t] * ab_prev[t].sqrt() / (1 - ab[t])) * x0_hat + f((1 - ab_prev[t]) * (1 - betas[t]).sqrt() / (1 - ab[t])) * x
            std = f((betas[t] * (1 - ab_prev[t]) / (1 - ab[t])).sqrt())
            x = mean + std * torch.randn(x.shape, generator=g)
        else:
            t_next = ts[i + 1]
            eps = (x - f(ab[t].sqrt()) * x0_hat) / f((1 - ab[t]).sqrt())
            x = f(ab[t_next].sqrt()) * x0_hat + f((1 - ab[t_next]).sqrt()) * eps
    return x0_hat


@pytest.mark.parametrize("mode", ["iterative", "ddim"])
def test_iterative_modes_equal_a_hand_written_loop(tiny, mode):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    start_t = 20  # keep the reference samplers short in tests
    det = tiny.detect(x, mode=mode, generator=torch.Generator().manual_seed(0), ddim_steps=5, start_t=start_t)
    x0_hat = _hand_written_sampler(tiny, x, mode, start_t, seed=0, ddim_steps=5)
    assert torch.allclose(det.reconstruction, x0_hat, atol=1e-4)
    with torch.no_grad():
        expected = torch.sigmoid(tiny.segmenter(torch.cat([x, x0_hat], dim=1)))
    assert torch.allclose(det.anomaly_map, expected, atol=1e-4)
    assert torch.allclose(det.score, top_k_score(expected, tiny.config.diffusion.top_k), atol=1e-5)
    # and the mode matters: not the one-step reconstruction
    assert not torch.allclose(det.reconstruction, tiny.detect(x).reconstruction, atol=1e-3)


def test_top_k_score():
    m = torch.zeros(1, 1, 10, 10)
    m[0, 0, 0, :5] = 1.0
    assert top_k_score(m, 5).item() == pytest.approx(1.0)
    assert top_k_score(m, 10).item() == pytest.approx(0.5)


def test_config_round_trip_and_validation():
    for name in ("paper", "edge", "tiny"):
        cfg = preset(name)
        assert ModelConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("huge")
    bad = preset("tiny")
    bad.image_size = 66
    with pytest.raises(ConfigError, match="multiple of 8"):
        bad.validate()
    with pytest.raises(ConfigError):
        ModelConfig.from_json('{"preset": "x"}')


def test_paper_preset_size_matches_design():
    from diffusionad_edge.models.complexity import measure_complexity

    with torch.device("meta"):
        paper = DiffusionAD(preset("paper"))
        edge = DiffusionAD(preset("edge"))
    c = measure_complexity(paper)
    assert c.denoiser_params == pytest.approx(131.7e6, rel=0.01)
    assert c.segmenter_params == pytest.approx(28.4e6, rel=0.01)
    assert c.denoiser_gflop_per_pass == pytest.approx(563, rel=0.01)
    assert c.segmenter_gflop == pytest.approx(76, rel=0.01)
    assert measure_complexity(edge).one_step_gflop < 0.05 * c.one_step_gflop
