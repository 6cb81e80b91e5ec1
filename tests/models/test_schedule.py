"""DDPM schedule: tables, noising, targets and conversions between prediction types."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tdsm_edge.config import ScheduleConfig
from tdsm_edge.errors import ConfigError, InputError
from tdsm_edge.models.schedule import DDPMSchedule


def test_default_table_matches_paper_setting():
    s = DDPMSchedule(ScheduleConfig())
    assert s.betas.shape == (50,) and s.alphas_cumprod.dtype == np.float64
    assert s.betas[0] == pytest.approx(0.00085) and s.betas[-1] == pytest.approx(0.012)
    assert s.alpha_bar(0) == pytest.approx(1 - 0.00085)
    # the scoring timestep of the paper: ᾱ_25 ≈ 0.934 (x_t keeps ~97% of z's amplitude)
    assert s.alpha_bar(25) == pytest.approx(0.934101169, abs=1e-8)
    assert np.all(np.diff(s.alphas_cumprod) < 0)


def test_matches_diffusers_float32_construction():
    # diffusers: linspace(sqrt(b0), sqrt(b1), T, float32) ** 2, cumprod in float32
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 50, dtype=torch.float32) ** 2
    ref = torch.cumprod(1.0 - betas, dim=0)
    ours = DDPMSchedule(ScheduleConfig()).alphas_cumprod_tensor()
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=2e-6, atol=0)


def test_linear_schedule_option():
    s = DDPMSchedule(ScheduleConfig(beta_schedule="linear", num_steps=10, beta_start=1e-4, beta_end=2e-2))
    np.testing.assert_allclose(s.betas, np.linspace(1e-4, 2e-2, 10))
    np.testing.assert_allclose(s.alphas_cumprod, np.cumprod(1 - np.linspace(1e-4, 2e-2, 10)))


def test_add_noise_and_velocity_formulas():
    s = DDPMSchedule(ScheduleConfig())
    g = torch.Generator().manual_seed(0)
    z, eps = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    t = torch.tensor([0, 7, 25, 49])
    ab = torch.tensor([s.alpha_bar(int(i)) for i in t], dtype=torch.float32)[:, None]
    torch.testing.assert_close(s.add_noise(z, eps, t), ab.sqrt() * z + (1 - ab).sqrt() * eps)
    torch.testing.assert_close(s.velocity(z, eps, t), ab.sqrt() * eps - (1 - ab).sqrt() * z)
    # int t and a 3-d (N, 1, Dz) layout broadcast the same way
    torch.testing.assert_close(s.add_noise(z, eps, 25), s.add_noise(z, eps, torch.full((4,), 25)))
    x3 = s.add_noise(z[:, None], eps[:, None], t)
    torch.testing.assert_close(x3[:, 0], s.add_noise(z, eps, t))


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
def test_conversions_round_trip(prediction):
    s = DDPMSchedule(ScheduleConfig(prediction=prediction))
    g = torch.Generator().manual_seed(1)
    z, eps = torch.randn(5, 16, generator=g), torch.randn(5, 16, generator=g)
    t = torch.tensor([0, 10, 25, 40, 49])
    x_t = s.add_noise(z, eps, t)
    target = s.target(z, eps, t)
    expected = {"epsilon": eps, "sample": z, "v_prediction": s.velocity(z, eps, t)}[prediction]
    torch.testing.assert_close(target, expected)
    torch.testing.assert_close(s.to_epsilon(target, x_t, t), eps, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(s.to_sample(target, x_t, t), z, rtol=1e-4, atol=1e-4)


def test_sample_timesteps_is_seeded_and_in_range():
    s = DDPMSchedule(ScheduleConfig())
    a = s.sample_timesteps(1000, torch.Generator().manual_seed(3))
    b = s.sample_timesteps(1000, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.int64
    assert int(a.min()) == 0 and int(a.max()) == 49


def test_bad_values_raise_clear_errors():
    with pytest.raises(ConfigError, match="prediction"):
        DDPMSchedule(ScheduleConfig(prediction="x0"))
    with pytest.raises(ConfigError, match="beta_schedule"):
        DDPMSchedule(ScheduleConfig(beta_schedule="cosine"))
    s = DDPMSchedule(ScheduleConfig())
    z = torch.zeros(2, 4)
    with pytest.raises(InputError, match="lie in"):
        s.add_noise(z, z, torch.tensor([0, 50]))
    with pytest.raises(InputError, match="lie in"):
        s.alpha_bar(-1)
    with pytest.raises(InputError, match="integer"):
        s.add_noise(z, z, torch.tensor([1.0, 2.0]))
    with pytest.raises(InputError, match="prefix"):
        s.add_noise(z, z, torch.tensor([1, 2, 3]))
