"""v-prediction (``diffusion.prediction_type``): the target, x_0 recovery, and every sampler driven by an exact
denoiser, for both parametrisations."""
import numpy as np
import pytest
import torch

from latte.diffusion import DiffusionConfig, create_diffusion, diffusion_from_config
from latte.diffusion.gaussian import beta_schedule
from latte.sampling.samplers import sample_loop

# data x_0 ~ N(MEAN, STD²) elementwise: the exact denoiser is linear and known in closed form
MEAN, STD = 0.5, 0.3
ALPHAS_CUMPROD = torch.from_numpy(np.cumprod(1 - beta_schedule("linear", 1000)))


def exact_model(prediction_type: str):
    """The optimal network for that data: E[x_0 | x_t] returned as epsilon or v (+ zero variance values);
    ``t`` may be fractional (diffusers schedulers interpolate)."""

    def model(x, t, **_):
        tf = t.double().clamp(0, 999)
        lo = tf.floor().long()
        a = torch.lerp(ALPHAS_CUMPROD[lo], ALPHAS_CUMPROD[(lo + 1).clamp(max=999)], tf - lo).view(-1, 1, 1, 1, 1)
        x = x.double()
        x0 = MEAN + a.sqrt() * STD ** 2 / (a * STD ** 2 + 1 - a) * (x - a.sqrt() * MEAN)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        pred = (a.sqrt() * eps - (1 - a).sqrt() * x0 if prediction_type == "v_prediction" else eps).float()
        return torch.cat([pred, torch.zeros_like(pred)], dim=1)

    return model


def test_velocity_target_and_x0_recovery():
    d = create_diffusion("", prediction_type="v_prediction")
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(3, 2, 2, 3, 3, generator=g), torch.randn(3, 2, 2, 3, 3, generator=g)
    t = torch.tensor([0, 500, 999])
    xt = d.q_sample(x0, t, noise)
    v = d.velocity(x0, t, noise)
    a = d.alphas_cumprod[t].float().view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(v, a.sqrt() * noise - (1 - a).sqrt() * x0)
    torch.testing.assert_close(d.xstart_from_prediction(xt, t, v), x0, atol=1e-5, rtol=0)
    # the loss is the MSE to v; the variance half still gets the (stop-gradient) VB term
    pred = torch.randn(3, 4, 2, 3, 3, generator=g)
    terms = d.training_losses(lambda x, tt, **_: pred, x0, t, noise=noise)
    torch.testing.assert_close(terms["mse"], ((v - pred[:, :2]) ** 2).mean(dim=(1, 2, 3, 4)))
    assert torch.isfinite(terms["vb"]).all() and (terms["vb"] > 0).all()
    eps_terms = create_diffusion("").training_losses(lambda x, tt, **_: pred, x0, t, noise=noise)
    assert not torch.allclose(eps_terms["mse"], terms["mse"])


def test_config_selects_the_prediction_type_and_rejects_others():
    from latte.config import ConfigError, from_dict

    assert DiffusionConfig().prediction_type == "epsilon"  # official default
    d = diffusion_from_config(from_dict(DiffusionConfig, {"prediction_type": "v_prediction"}), True, "ddim10")
    assert d.prediction_type == "v_prediction" and d.num_timesteps == 10
    with pytest.raises(ConfigError, match="prediction_type"):
        from_dict(DiffusionConfig, {"prediction_type": "sample"})


@pytest.mark.parametrize("sampler, steps", [("ddim", 25), ("ddpm", 100), ("dpm-solver", 20), ("euler", 30)])
def test_samplers_read_v_and_epsilon_models_alike(sampler, steps):
    """Every sampler family, fed the exact denoiser as an epsilon model and as a v model, gives the same samples,
    with the data's mean and spread (up to the sampler's discretisation); reading the output as the other
    parametrisation does not (so the test can fail)."""
    noise = torch.randn(128, 2, 2, 3, 3, generator=torch.Generator().manual_seed(2))
    betas = beta_schedule("linear", 1000)

    def run(model_type, read_as):
        gens = [torch.Generator().manual_seed(i) for i in range(128)]
        return sample_loop(exact_model(model_type), noise, sampler, steps, betas, generators=gens,
                           prediction_type=read_as)

    eps, v = run("epsilon", "epsilon"), run("v_prediction", "v_prediction")
    torch.testing.assert_close(v, eps, atol=2e-4, rtol=0)
    assert abs(v.mean().item() - MEAN) < 0.02 and abs(v.std().item() - STD) < 0.06, (v.mean(), v.std())
    for model_type, read_as in (("epsilon", "v_prediction"), ("v_prediction", "epsilon")):
        wrong = run(model_type, read_as)
        assert abs(wrong.mean().item() - MEAN) > 0.08 or abs(wrong.std().item() - STD) > 0.08
