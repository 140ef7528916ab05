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


def exact_model(prediction_type: str, mean: float = MEAN, std: float = STD):
    """The optimal network for data N(mean, std²): E[x_0 | x_t] returned as epsilon, v or x_0 (+ zero variance values);
    ``t`` may be fractional (diffusers schedulers interpolate)."""

    def model(x, t, **_):
        tf = t.double().clamp(0, 999)
        lo = tf.floor().long()
        a = torch.lerp(ALPHAS_CUMPROD[lo], ALPHAS_CUMPROD[(lo + 1).clamp(max=999)], tf - lo).view(-1, 1, 1, 1, 1)
        x = x.double()
        x0 = mean + a.sqrt() * std ** 2 / (a * std ** 2 + 1 - a) * (x - a.sqrt() * mean)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        pred = {"v_prediction": a.sqrt() * eps - (1 - a).sqrt() * x0, "sample": x0, "epsilon": eps}[prediction_type]
        pred = pred.float()
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
    assert from_dict(DiffusionConfig, {"prediction_type": "sample"}).prediction_type == "sample"
    with pytest.raises(ConfigError, match="prediction_type"):
        from_dict(DiffusionConfig, {"prediction_type": "x0"})


@pytest.mark.parametrize("sampler, steps", [("ddim", 25), ("ddpm", 100), ("dpm-solver", 20), ("euler", 30)])
def test_samplers_read_v_epsilon_and_x0_models_alike(sampler, steps):
    """Every sampler family, fed the exact denoiser as an epsilon, a v and an x0 model, gives the same samples,
    with the data's mean and spread (up to the sampler's discretisation); reading the output as the other
    parametrisation does not (so the test can fail)."""
    noise = torch.randn(128, 2, 2, 3, 3, generator=torch.Generator().manual_seed(2))
    betas = beta_schedule("linear", 1000)

    def run(model_type, read_as):
        gens = [torch.Generator().manual_seed(i) for i in range(128)]
        return sample_loop(exact_model(model_type), noise, sampler, steps, betas, generators=gens,
                           prediction_type=read_as)

    eps, v, x0 = run("epsilon", "epsilon"), run("v_prediction", "v_prediction"), run("sample", "sample")
    torch.testing.assert_close(v, eps, atol=2e-4, rtol=0)
    torch.testing.assert_close(x0, eps, atol=2e-4, rtol=0)
    assert abs(v.mean().item() - MEAN) < 0.02 and abs(v.std().item() - STD) < 0.06, (v.mean(), v.std())
    for model_type, read_as in (("epsilon", "v_prediction"), ("v_prediction", "epsilon"), ("sample", "epsilon")):
        wrong = run(model_type, read_as)
        assert abs(wrong.mean().item() - MEAN) > 0.08 or abs(wrong.std().item() - STD) > 0.08


# data outside [-1, 1] (as latents are): a sampler that clips x_0 is caught
SHIFTED_MEAN, SHIFTED_STD = 1.5, 0.3


def _exact_x0(x: np.ndarray, a: float) -> np.ndarray:
    return SHIFTED_MEAN + np.sqrt(a) * SHIFTED_STD ** 2 / (a * SHIFTED_STD ** 2 + 1 - a) * (x - np.sqrt(a) * SHIFTED_MEAN)


def _ddim_closed_form(z: np.ndarray, timesteps: list[int]) -> np.ndarray:
    """DDIM (eta 0) with the exact denoiser, step by step in float64: ``x' = √ᾱ' x̂_0 + √(1-ᾱ') ε̂`` (ᾱ' = 1 after
    the last step)."""
    abar = ALPHAS_CUMPROD.numpy()
    x = z.astype(np.float64)
    for j, t in enumerate(timesteps):
        a, a_prev = abar[t], (abar[timesteps[j + 1]] if j + 1 < len(timesteps) else 1.0)
        x0 = _exact_x0(x, a)
        eps = (x - np.sqrt(a) * x0) / np.sqrt(1 - a)
        x = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps
    return x


def _ddpm_closed_form(steps: int) -> tuple[float, float]:
    """Mean and std of official DDPM-``steps`` samples with the exact denoiser: each step is linear,
    ``x' = A x + B + σ z``, with the learned-range variance at ``frac = 1/2`` (variance values 0)."""
    d = create_diffusion(str(steps))
    mean, var = 0.0, 1.0
    for i in range(d.num_timesteps - 1, -1, -1):
        a = d.alphas_cumprod[i].item()
        k = np.sqrt(a) * SHIFTED_STD ** 2 / (a * SHIFTED_STD ** 2 + 1 - a)
        c1, c2 = d.posterior_mean_coef1[i].item(), d.posterior_mean_coef2[i].item()
        slope = c1 * k + c2
        mean, var = slope * mean + c1 * SHIFTED_MEAN * (1 - k * np.sqrt(a)), slope ** 2 * var
        if i > 0:
            var += np.exp(0.5 * (np.log(d.betas[i].item()) + d.posterior_log_variance_clipped[i].item()))
    return mean, float(np.sqrt(var))


@pytest.mark.parametrize("sampler, steps", [("ddim", 50), ("ddim-diffusers", 50), ("ddpm", 250)])
def test_official_default_samplers_match_the_closed_form_of_an_exact_denoiser(sampler, steps):
    """The official defaults (DDIM-50: `ddim` loop and the text-to-video `ddim-diffusers`; DDPM-250), driven by
    the exact denoiser of Gaussian data N(1.5, 0.3²): DDIM per sample to 1e-5 of its closed form, DDPM in mean
    and spread (9216 independent values: sampling error ~0.3 % of the std). A 20 % error in any noise scale,
    or clipping x_0 to [-1, 1], fails this (checked by mutation when it was written)."""
    n = 256
    noise = torch.randn(n, 2, 2, 3, 3, generator=torch.Generator().manual_seed(2))
    gens = [torch.Generator().manual_seed(i) for i in range(n)]
    out = sample_loop(exact_model("epsilon", SHIFTED_MEAN, SHIFTED_STD), noise, sampler, steps,
                      beta_schedule("linear", 1000),
                      generators=gens).double().numpy()
    if sampler == "ddpm":
        mean, std = _ddpm_closed_form(steps)
        assert abs(std / SHIFTED_STD - 1) < 0.03  # the discrete sampler is itself close to the data
        assert abs(out.mean() - mean) < 0.012, (out.mean(), mean)
        assert abs(out.std() / std - 1) < 0.03, (out.std(), std)
        return
    from latte.diffusion.gaussian import space_timesteps

    if sampler == "ddim":  # official respacing str(steps): {0, 20, 41, ..., 999}
        timesteps = sorted(space_timesteps(1000, str(steps)), reverse=True)
    else:  # diffusers DDIMScheduler, "leading" spacing: 980, 960, ..., 0
        timesteps = list(range(1000 - 1000 // steps, -1, -(1000 // steps)))
    expected = _ddim_closed_form(noise.numpy(), timesteps)
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)
    assert abs(out.std() / SHIFTED_STD - 1) < 0.1  # DDIM-50 is 9 % under-dispersed on this data, by itself


def test_samplers_that_cannot_read_x0_models_say_so():
    from latte.sampling.samplers import NO_SAMPLE_PREDICTION

    noise = torch.randn(1, 2, 2, 3, 3)
    for sampler in NO_SAMPLE_PREDICTION:
        with pytest.raises(ValueError, match=f"sampler '{sampler}' cannot sample a model that predicts x0"):
            sample_loop(exact_model("sample"), noise, sampler, 5, beta_schedule("linear", 1000),
                        prediction_type="sample")
