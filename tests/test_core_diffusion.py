"""The diffusion process: schedules, respacing, samplers and guidance."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from latte.diffusion import classifier_free_guidance, create_diffusion, space_timesteps
from latte.diffusion.gaussian import beta_schedule


def test_linear_betas_and_respacing_follow_official():
    betas = beta_schedule("linear", 1000)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02) and betas.dtype == np.float64
    s250 = sorted(space_timesteps(1000, "250"))
    assert len(s250) == 250 and s250[:3] == [0, 4, 8] and s250[-4:] == [987, 991, 995, 999]
    assert sorted(space_timesteps(1000, "50"))[:4] == [0, 20, 41, 61]
    assert sorted(space_timesteps(1000, "ddim50")) == list(range(0, 1000, 20))
    assert sorted(space_timesteps(1000, "10"))[:2] == [0, 111]


def test_respaced_process_keeps_alphas_cumprod():
    full, spaced = create_diffusion(""), create_diffusion("ddim10")
    kept = spaced.timestep_map.tolist()
    assert kept == list(range(0, 1000, 100))
    torch.testing.assert_close(spaced.alphas_cumprod, full.alphas_cumprod[kept])


class EchoModel(torch.nn.Module):
    """Predicts eps = 0.1·x and zero variance values; records the timesteps it is called with."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, t, **kw):
        self.seen.append(t.clone())
        return torch.cat([0.1 * x, torch.zeros_like(x)], dim=1)


@pytest.mark.parametrize("loop", ["p_sample_loop", "ddim_sample_loop"])
def test_samplers_run_call_original_timesteps_and_are_seeded(loop):
    diffusion = create_diffusion("ddim10")
    model = EchoModel()
    shape = (2, 3, 4, 4, 4)
    out1 = getattr(diffusion, loop)(model, shape, generator=torch.Generator().manual_seed(3))
    out2 = getattr(diffusion, loop)(model, shape, generator=torch.Generator().manual_seed(3))
    assert out1.shape == shape and torch.isfinite(out1).all()
    assert torch.equal(out1, out2)
    assert [int(t[0]) for t in model.seen[:10]] == list(range(900, -1, -100))


def test_ddim_is_deterministic_given_noise():
    diffusion = create_diffusion("ddim10")
    noise = torch.randn(1, 2, 2, 4, 4)
    a = diffusion.ddim_sample_loop(EchoModel(), noise.shape, noise=noise.clone())
    b = diffusion.ddim_sample_loop(EchoModel(), noise.shape, noise=noise.clone())
    assert torch.equal(a, b)


def test_guidance_guides_eps_only_in_one_batch():
    calls = []

    def model(x, t, y=None):
        calls.append(x.shape[0])
        out = torch.stack([y.float()] * 2, 1)[:, :, None, None, None].expand(-1, -1, *x.shape[2:])
        return out.clone()

    fn = classifier_free_guidance(model, 4.0, {"y": torch.tensor([3])}, {"y": torch.tensor([1])}, channels=1)
    out = fn(torch.zeros(1, 1, 1, 1, 1), torch.tensor([5]))
    assert calls == [2]
    assert out[0, 0].item() == pytest.approx(1 + 4.0 * (3 - 1))  # eps guided
    assert out[0, 1].item() == pytest.approx(3)  # variance from the conditional half


def test_fixed_variance_when_sigma_not_learned():
    diffusion = create_diffusion("", learn_sigma=False)
    x0 = torch.randn(2, 2, 2, 4, 4)
    losses = diffusion.training_losses(lambda x, t: torch.zeros_like(x), x0, torch.tensor([0, 999]))
    assert torch.equal(losses["vb"], torch.zeros(2)) and (losses["mse"] > 0).all()


def test_cli_version_and_help():
    out = subprocess.run([sys.executable, "-m", "latte", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "latte-video" in out.stdout
    out = subprocess.run([sys.executable, "-m", "latte", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "commands" in out.stdout

