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
    assert float(a.anomaly_map.min()) >= 0 and float(a.anomaly_map.max()) <= 1
    assert torch.equal(a.score, b.score)  # fixed noise: same image, same score
    # batch independence: image 1 alone gets the same score
    alone = tiny.detect(x[1:2])
    assert torch.allclose(alone.score, a.score[1:2], atol=1e-5)


@pytest.mark.parametrize("mode", ["iterative", "ddim"])
def test_iterative_modes_run(tiny, mode):
    d = tiny.config.diffusion
    d_backup = d.t_b
    d.t_b = 20  # keep the reference samplers short in tests
    try:
        det = tiny.detect(torch.rand(1, 3, 64, 64), mode=mode, generator=torch.Generator().manual_seed(0), ddim_steps=5)
    finally:
        d.t_b = d_backup
    assert det.anomaly_map.shape == (1, 1, 64, 64)
    assert torch.isfinite(det.score).all()


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
