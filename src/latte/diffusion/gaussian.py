"""Gaussian diffusion as the official Latte (DiT/IDDPM) code defines it, on ``(B, C, F, H, W)`` tensors (the
official ``(B, F, C, H, W)`` layout works too: every operation is elementwise except the learned-sigma split,
which :func:`split_learned_sigma` locates from the output's shape).

Schedules are float64 tensors; each per-timestep coefficient is gathered and cast to float32 for the batch
(``extract``), exactly as the official code does with numpy arrays, so losses match it to float precision.
Model output convention: ``(B, 2C, F, H, W)`` with the prediction in channels ``[:C]`` and, when the variance is
learned, the interpolation values in ``[C:]``: ``log σ² = frac·log β_t + (1 − frac)·log β̃_t``, ``frac = (val+1)/2``.
The prediction is epsilon (official) or, with ``prediction_type='v_prediction'``, the velocity
``v = √ᾱ·ε − √(1−ᾱ)·x_0`` (Salimans & Ho 2022): ``x_0 = √ᾱ·x_t − √(1−ᾱ)·v`` then needs no division by ``√ᾱ``, so
errors are not amplified at high noise, where a small model's epsilon errors blow up into the coarse layout and
motion of a video. ``prediction_type='sample'`` predicts ``x_0`` itself (nothing amplified at any noise level;
a zero output means "x_0 = 0", which makes it the natural choice for residual targets).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from latte.diffusion.given_frames import hold_given, masked_mean_flat

# --------------------------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------------------------


BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def beta_schedule(name: str, num_steps: int) -> np.ndarray:
    """Betas (float64, ``(num_steps,)``) of schedule ``name``:

    - ``linear``: official Latte/LaVie, ``linspace(1e-4, 0.02)`` (both ends scaled by ``1000/T`` for T ≠ 1000);
    - ``scaled_linear``: Stable Diffusion's ``linspace(√1e-4, √0.02)²`` (LaVie's low-resolution noise
      augmentation for super-resolution; no rescaling for T ≠ 1000, as diffusers);
    - ``squaredcos_cap_v2``: the cosine schedule.
    """
    if name == "linear":
        scale = 1000 / num_steps
        return np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64)
    if name == "scaled_linear":
        return np.linspace(1e-4 ** 0.5, 0.02 ** 0.5, num_steps, dtype=np.float64) ** 2
    if name == "squaredcos_cap_v2":
        f = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        return np.array([min(1 - f((i + 1) / num_steps) / f(i / num_steps), 0.999) for i in range(num_steps)])
    raise ValueError(f"unknown noise schedule '{name}' (use one of {', '.join(BETA_SCHEDULES)})")


def extract(arr: torch.Tensor, t: torch.Tensor, shape) -> torch.Tensor:
    """``arr[t]`` as float32, broadcastable to ``shape`` (batch first)."""
    out = arr.to(t.device)[t].float()
    return out.reshape(-1, *([1] * (len(shape) - 1)))


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(1, x.ndim)))


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x, means, log_scales) -> torch.Tensor:
    """Log-likelihood of ``x`` in [-1, 1] under a Gaussian discretised into 255 bins (as images), elementwise."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))))


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def split_learned_sigma(model_output: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(prediction, variance values, channel dim)`` of a learned-sigma output for the input ``x``.

    Our layout is ``x (B, C, F, H, W)`` -> ``(B, 2C, F, H, W)`` (split on dim 1); the official ``Latte`` layout,
    as the official scripts drive it, is ``x (B, F, C, H, W)`` -> ``(B, F, 2C, H, W)`` (split on dim 2). The two
    cannot be confused: only one of ``out.shape[1] == 2 x.shape[1]`` / ``out.shape[2] == 2 x.shape[2]`` (with
    ``out.shape[1] == x.shape[1]``) can hold."""
    shape, out = tuple(x.shape), tuple(model_output.shape)
    if len(out) == len(shape) and out[0] == shape[0] and out[2:] == shape[2:] and out[1] == 2 * shape[1]:
        dim = 1
    elif len(out) == len(shape) >= 3 and out[:2] == shape[:2] and out[3:] == shape[3:] and out[2] == 2 * shape[2]:
        dim = 2
    else:
        raise ValueError(f"a learned-sigma model must output twice the channels of its input: for x of shape "
                         f"{shape} expected {(shape[0], 2 * shape[1], *shape[2:])} (B, 2C, F, H, W)"
                         + (f" or the official layout {(shape[0], shape[1], 2 * shape[2], *shape[3:])} "
                            f"(B, F, 2C, H, W)" if len(shape) >= 3 else "") + f", got {out}")
    c = shape[dim]
    return model_output.narrow(dim, 0, c), model_output.narrow(dim, c, c), dim


def check_prediction_type(value: str) -> str:
    if value not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------------------------
# The process
# --------------------------------------------------------------------------------------------------------------


class GaussianDiffusion:
    """Forward process, training loss and the DDPM/DDIM samplers.

    ``timestep_map`` maps this (possibly respaced) process's step indices to the timesteps the model was trained
    on; the model is always called with the original timesteps.
    """

    def __init__(self, betas: np.ndarray, learn_sigma: bool = True, timestep_map: Optional[list[int]] = None,
                 prediction_type: str = "epsilon"):
        self.prediction_type = check_prediction_type(prediction_type)
        betas = np.asarray(betas, dtype=np.float64)
        self.num_timesteps = len(betas)
        self.learn_sigma = learn_sigma
        self.timestep_map = torch.tensor(timestep_map if timestep_map is not None else range(len(betas)))
        alphas_cumprod = np.cumprod(1.0 - betas)
        prev = np.append(1.0, alphas_cumprod[:-1])
        nxt = np.append(alphas_cumprod[1:], 0.0)
        posterior_variance = betas * (1.0 - prev) / (1.0 - alphas_cumprod)
        as_t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float64))  # noqa: E731
        self.betas = as_t(betas)
        self.alphas_cumprod = as_t(alphas_cumprod)
        self.alphas_cumprod_prev = as_t(prev)
        self.alphas_cumprod_next = as_t(nxt)
        self.sqrt_alphas_cumprod = as_t(np.sqrt(alphas_cumprod))
        self.sqrt_one_minus_alphas_cumprod = as_t(np.sqrt(1.0 - alphas_cumprod))
        self.sqrt_recip_alphas_cumprod = as_t(np.sqrt(1.0 / alphas_cumprod))
        self.sqrt_recipm1_alphas_cumprod = as_t(np.sqrt(1.0 / alphas_cumprod - 1))
        self.posterior_variance = as_t(posterior_variance)
        self.posterior_log_variance_clipped = as_t(
            np.log(np.append(posterior_variance[1], posterior_variance[1:])) if len(betas) > 1
            else np.array([np.log(betas[0])]))
        self.posterior_mean_coef1 = as_t(betas * np.sqrt(prev) / (1.0 - alphas_cumprod))
        self.posterior_mean_coef2 = as_t((1.0 - prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_cumprod))
        self.log_betas = as_t(np.log(betas))

    # -- forward process -----------------------------------------------------------------------------------
    def q_sample(self, x_start, t, noise=None):
        """Sample ``x_t ~ q(x_t | x_0) = N(√ᾱ x_0, (1−ᾱ) I)``."""
        noise = torch.randn_like(x_start) if noise is None else noise
        return (extract(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
                + extract(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise)

    def q_posterior(self, x_start, x_t, t):
        """Mean, variance and clipped log-variance of ``q(x_{t-1} | x_t, x_0)``."""
        mean = (extract(self.posterior_mean_coef1, t, x_t.shape) * x_start
                + extract(self.posterior_mean_coef2, t, x_t.shape) * x_t)
        return (mean, extract(self.posterior_variance, t, x_t.shape),
                extract(self.posterior_log_variance_clipped, t, x_t.shape))

    def predict_xstart(self, x_t, t, eps):
        return (extract(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
                - extract(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * eps)

    def velocity(self, x_start, t, noise):
        """The v-prediction target ``√ᾱ·ε − √(1−ᾱ)·x_0``."""
        return (extract(self.sqrt_alphas_cumprod, t, x_start.shape) * noise
                - extract(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * x_start)

    def target(self, x_start, t, noise):
        """What the model regresses for this process's ``prediction_type``: ``ε``, ``v`` or ``x_0``."""
        if self.prediction_type == "v_prediction":
            return self.velocity(x_start, t, noise)
        return x_start if self.prediction_type == "sample" else noise

    def xstart_from_prediction(self, x_t, t, prediction):
        """``x_0`` from the model's prediction channels (epsilon, v or x_0, as this process's ``prediction_type``)."""
        if self.prediction_type == "sample":
            return prediction
        if self.prediction_type == "v_prediction":
            return (extract(self.sqrt_alphas_cumprod, t, x_t.shape) * x_t
                    - extract(self.sqrt_one_minus_alphas_cumprod, t, x_t.shape) * prediction)
        return self.predict_xstart(x_t, t, prediction)

    def predict_eps(self, x_t, t, pred_xstart):
        return ((extract(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t - pred_xstart)
                / extract(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape))

    # -- the model's distribution ----------------------------------------------------------------------------
    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        return self.timestep_map.to(t.device)[t]

    def p_mean_variance(self, model: Callable, x, t, clip_denoised: bool = False, denoised_fn=None,
                        model_kwargs: Optional[dict] = None, model_output: Optional[torch.Tensor] = None) -> dict:
        """The reverse step's Gaussian ``p(x_{t-1} | x_t)``: mean, variance, log-variance and predicted ``x_0``."""
        if model_output is None:
            model_output = model(x, self.model_timesteps(t), **(model_kwargs or {}))
        if self.learn_sigma:
            prediction, var_values, _ = split_learned_sigma(model_output, x)
            min_log = extract(self.posterior_log_variance_clipped, t, x.shape)
            max_log = extract(self.log_betas, t, x.shape)
            frac = (var_values + 1) / 2
            log_variance = frac * max_log + (1 - frac) * min_log
            variance = torch.exp(log_variance)
        else:  # fixed large variance (betas, with the first posterior variance at t = 0)
            prediction = model_output
            fixed = torch.cat([self.posterior_variance[1:2], self.betas[1:]])
            variance = extract(fixed, t, x.shape)
            log_variance = extract(torch.log(fixed), t, x.shape)
        pred_xstart = self.xstart_from_prediction(x, t, prediction)
        if denoised_fn is not None:
            pred_xstart = denoised_fn(pred_xstart)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        mean, _, _ = self.q_posterior(pred_xstart, x, t)
        return {"mean": mean, "variance": variance, "log_variance": log_variance,
                "pred_xstart": pred_xstart, "model_output": model_output}

    # -- training loss ---------------------------------------------------------------------------------------
    def _vb_terms_bpd(self, model_output, x_start, x_t, t, reduce: Callable = mean_flat) -> torch.Tensor:
        """Variational bound term in bits per dimension (decoder NLL at t = 0), per sample (``reduce``d)."""
        true_mean, _, true_log_var = self.q_posterior(x_start, x_t, t)
        out = self.p_mean_variance(None, x_t, t, model_output=model_output)
        kl = reduce(normal_kl(true_mean, true_log_var, out["mean"], out["log_variance"])) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x_start, out["mean"], 0.5 * out["log_variance"])
        nll = reduce(nll) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    def training_losses(self, model: Callable, x_start, t, model_kwargs: Optional[dict] = None,
                        noise=None, given_mask: Optional[torch.Tensor] = None) -> dict:
        """Per-sample ``loss = mse + vb`` (``vb`` only with a learned variance; mean stop-gradient), as official.

        ``mse`` is against the noise (epsilon), the velocity ``v`` (v_prediction) or ``x_0`` (sample).
        ``given_mask (B, F)`` bool (frame conditioning): those frames of ``x_t`` are the clean ``x_start`` frames
        and the losses average over the other frames only (:mod:`latte.diffusion.given_frames`)."""
        noise = torch.randn_like(x_start) if noise is None else noise
        x_t = self.q_sample(x_start, t, noise)
        reduce = mean_flat
        if given_mask is not None:
            x_t = hold_given(x_t, x_start, given_mask)
            reduce = lambda v: masked_mean_flat(v, given_mask)  # noqa: E731
        output = model(x_t, self.model_timesteps(t), **(model_kwargs or {}))
        terms = {}
        if self.learn_sigma:
            prediction, var_values, dim = split_learned_sigma(output, x_start)
            frozen = torch.cat([prediction.detach(), var_values], dim=dim)
            terms["vb"] = self._vb_terms_bpd(frozen, x_start, x_t, t, reduce)
        else:
            prediction = output
            terms["vb"] = torch.zeros(x_start.shape[0], device=x_start.device)
        target = self.target(x_start, t, noise)
        terms["mse"] = reduce((target - prediction.float()) ** 2)
        terms["loss"] = terms["mse"] + terms["vb"]
        return terms

    # -- samplers ----------------------------------------------------------------------------------------------
    def p_sample(self, model, x, t, clip_denoised=False, denoised_fn=None, model_kwargs=None, noise=None) -> dict:
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        noise = torch.randn_like(x) if noise is None else noise
        nonzero = (t != 0).float().reshape(-1, *([1] * (x.ndim - 1)))
        sample = out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_sample(self, model, x, t, clip_denoised=False, denoised_fn=None, model_kwargs=None, eta=0.0,
                    noise=None) -> dict:
        """One DDIM step; the learned variance is ignored and ``eps`` is re-derived from ``x_0``."""
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        eps = self.predict_eps(x, t, out["pred_xstart"])
        a = extract(self.alphas_cumprod, t, x.shape)
        a_prev = extract(self.alphas_cumprod_prev, t, x.shape)
        sigma = eta * torch.sqrt((1 - a_prev) / (1 - a)) * torch.sqrt(1 - a / a_prev)
        noise = torch.randn_like(x) if noise is None else noise
        mean = out["pred_xstart"] * torch.sqrt(a_prev) + torch.sqrt(1 - a_prev - sigma ** 2) * eps
        nonzero = (t != 0).float().reshape(-1, *([1] * (x.ndim - 1)))
        return {"sample": mean + nonzero * sigma * noise, "pred_xstart": out["pred_xstart"]}

    def _loop(self, step: Callable, model, shape, noise, model_kwargs, progress, device, generator=None,
              **step_kwargs) -> torch.Tensor:
        device = device or (noise.device if noise is not None else "cpu")
        x = noise if noise is not None else torch.randn(*shape, device=device, generator=generator)
        indices = range(self.num_timesteps - 1, -1, -1)
        for i in tqdm(indices, desc="sampling", leave=False, disable=not progress):
            t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
            step_noise = None
            if generator is not None:
                step_noise = torch.randn(x.shape, device=x.device, generator=generator, dtype=x.dtype)
            with torch.no_grad():
                x = step(model, x, t, model_kwargs=model_kwargs, noise=step_noise, **step_kwargs)["sample"]
        return x

    def p_sample_loop(self, model, shape, noise=None, clip_denoised=False, denoised_fn=None, model_kwargs=None,
                      device=None, progress=False, generator=None) -> torch.Tensor:
        """Ancestral (DDPM) sampling from ``noise`` (or fresh noise of ``shape``) down to ``x_0``."""
        return self._loop(self.p_sample, model, shape, noise, model_kwargs, progress, device, generator,
                          clip_denoised=clip_denoised, denoised_fn=denoised_fn)

    def ddim_sample_loop(self, model, shape, noise=None, clip_denoised=False, denoised_fn=None, model_kwargs=None,
                         device=None, progress=False, eta=0.0, generator=None) -> torch.Tensor:
        """DDIM sampling (``eta = 0``: deterministic) over this process's (respaced) steps."""
        return self._loop(self.ddim_sample, model, shape, noise, model_kwargs, progress, device, generator,
                          clip_denoised=clip_denoised, denoised_fn=denoised_fn, eta=eta)


# --------------------------------------------------------------------------------------------------------------
# Respacing
# --------------------------------------------------------------------------------------------------------------


def space_timesteps(num_timesteps: int, section_counts) -> set[int]:
    """Official respacing: ``"250"`` / ``"10,15,20"`` (round-based even sections) or ``"ddimN"`` (integer stride)."""
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = int(section_counts[len("ddim"):])
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired:
                    return set(range(0, num_timesteps, stride))
            raise ValueError(f"cannot create exactly {desired} steps with an integer stride")
        section_counts = [int(x) for x in section_counts.split(",")]
    size_per, extra = divmod(num_timesteps, len(section_counts))
    start, steps = 0, []
    for i, count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"cannot divide a section of {size} steps into {count}")
        frac = 1 if count <= 1 else (size - 1) / (count - 1)
        cur = 0.0
        for _ in range(count):
            steps.append(start + round(cur))
            cur += frac
        start += size
    return set(steps)


def respaced(base_betas: np.ndarray, use_timesteps: set[int], learn_sigma: bool,
             prediction_type: str = "epsilon") -> GaussianDiffusion:
    """A process over the kept steps with ``β'_i = 1 − ᾱ_{t_i}/ᾱ_{t_{i−1}}``, calling the model at ``t_i``."""
    alphas_cumprod = np.cumprod(1.0 - np.asarray(base_betas, dtype=np.float64))
    last, new_betas, timestep_map = 1.0, [], []
    for i, a in enumerate(alphas_cumprod):
        if i in use_timesteps:
            new_betas.append(1 - a / last)
            last = a
            timestep_map.append(i)
    return GaussianDiffusion(np.array(new_betas), learn_sigma=learn_sigma, timestep_map=timestep_map,
                             prediction_type=prediction_type)
