"""Reverse-diffusion samplers behind one function, :func:`sample_loop`.

Two families drive the same model function ``model_fn(x (B, C, F, h, w), t (B,)) -> (B, C_out, F, h, w)``:

* the official loops of :mod:`latte.diffusion` (``ddpm``, ``ddim``: respacing ``str(steps)`` exactly as the
  official ``sample.py``; ``ddim-stride``: respacing ``"ddim{steps}"``, integer-stride timesteps). These use the
  learned variance (DDPM) through ``GaussianDiffusion``;
* diffusers schedulers (``dpm-solver`` = DPM-Solver++ multistep, ``euler``, ``euler-a``, ``ddim-diffusers``,
  ``pndm``, ``heun``, ``deis``, ``unipc``, ...), configured with the training betas and prediction type
  (epsilon or v) of the model. They do not take a learned variance, so the model output is split: channels
  ``[:C]`` go to ``scheduler.step``, the variance channels ``[C:]`` are discarded.

Randomness comes from one ``torch.Generator`` per video (initial noise and every step's noise), so a video does
not depend on which other videos share its batch.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from latte.diffusion.given_frames import hold_given

__all__ = ["SAMPLERS", "OFFICIAL_SAMPLERS", "DIFFUSERS_SAMPLERS", "sample_loop", "make_scheduler",
           "draw_noise", "check_sampler", "StepCallback"]

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Hold = Callable[[torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, int], None]  # (steps done, total steps), called after every sampler step

# official loops: sampler name -> (GaussianDiffusion loop method, respacing string template)
OFFICIAL_SAMPLERS = {
    "ddpm": ("p_sample", "{steps}"),
    "ddim": ("ddim_sample", "{steps}"),
    "ddim-stride": ("ddim_sample", "ddim{steps}"),
}


@dataclass(frozen=True)
class _SchedulerSpec:
    class_name: str
    kwargs: dict


# diffusers schedulers: sampler name -> class and the settings that make it the named algorithm
DIFFUSERS_SAMPLERS = {
    "dpm-solver": _SchedulerSpec("DPMSolverMultistepScheduler", dict(algorithm_type="dpmsolver++", solver_order=2)),
    "dpm-solver-single": _SchedulerSpec("DPMSolverSinglestepScheduler",
                                        dict(algorithm_type="dpmsolver++", lower_order_final=True)),
    "euler": _SchedulerSpec("EulerDiscreteScheduler", {}),
    "euler-a": _SchedulerSpec("EulerAncestralDiscreteScheduler", {}),
    # the official text-to-video default (Latte-1 scheduler_config.json): timesteps 980, 960, ..., 0 for 50 steps
    "ddim-diffusers": _SchedulerSpec("DDIMScheduler", dict(clip_sample=False, set_alpha_to_one=True,
                                                           steps_offset=0, timestep_spacing="leading")),
    "ddpm-diffusers": _SchedulerSpec("DDPMScheduler", dict(clip_sample=False, variance_type="fixed_small")),
    "pndm": _SchedulerSpec("PNDMScheduler", dict(skip_prk_steps=True)),
    "heun": _SchedulerSpec("HeunDiscreteScheduler", {}),
    "deis": _SchedulerSpec("DEISMultistepScheduler", {}),
    "unipc": _SchedulerSpec("UniPCMultistepScheduler", {}),
    "kdpm2-a": _SchedulerSpec("KDPM2AncestralDiscreteScheduler", {}),
}

SAMPLERS = tuple(OFFICIAL_SAMPLERS) + tuple(DIFFUSERS_SAMPLERS)
# diffusers schedulers that cannot turn an x0 prediction (prediction_type 'sample') into a step
NO_SAMPLE_PREDICTION = ("euler-a", "pndm", "kdpm2-a")


def check_sampler(name: str) -> None:
    if name not in SAMPLERS:
        import difflib

        close = difflib.get_close_matches(name, SAMPLERS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown sampler '{name}'{hint} (choose from: {', '.join(SAMPLERS)})")


def draw_noise(shape: Sequence[int], generators: Sequence[torch.Generator], device) -> torch.Tensor:
    """Standard normal ``(B, *shape[1:])``, row ``i`` drawn from ``generators[i]`` (float32, on ``device``)."""
    if len(generators) != shape[0]:
        raise ValueError(f"need one generator per video: {len(generators)} for a batch of {shape[0]}")
    rows = [torch.randn((1, *shape[1:]), generator=g, device=g.device, dtype=torch.float32) for g in generators]
    return torch.cat(rows).to(device)


def make_scheduler(name: str, betas: np.ndarray, prediction_type: str = "epsilon",
                   scheduler_options: Optional[dict] = None):
    """A fresh diffusers scheduler for sampler ``name`` on the model's training ``betas`` (float64, (T,)) and
    ``prediction_type`` ('epsilon', 'v_prediction' or 'sample', diffusers' names). ``scheduler_options`` override the
    sampler's settings, e.g. ``{"steps_offset": 1, "set_alpha_to_one": False}`` turns ``ddim-diffusers``'
    timesteps 980..0 (final step to alpha-bar 1) into 981..1 (final step to alpha-bar_0), LaVie's DDIM."""
    import diffusers

    spec = DIFFUSERS_SAMPLERS[name]
    if prediction_type == "sample" and name in NO_SAMPLE_PREDICTION:
        usable = [s for s in SAMPLERS if s not in NO_SAMPLE_PREDICTION]
        raise ValueError(f"sampler '{name}' cannot sample a model that predicts x0 (prediction_type 'sample'); "
                         f"use one of {', '.join(usable)}")
    cls = getattr(diffusers, spec.class_name)
    kwargs = {**spec.kwargs, **(scheduler_options or {})}
    return cls(num_train_timesteps=len(betas), trained_betas=np.asarray(betas, dtype=np.float64).tolist(),
               prediction_type=prediction_type, **kwargs)


def _official_loop(name: str, model_fn: ModelFn, noise: torch.Tensor, steps: int, betas: np.ndarray,
                   learn_sigma: bool, prediction_type: str, generators: Sequence[torch.Generator],
                   progress: bool, callback: Optional[StepCallback] = None, hold: Hold = lambda x: x) -> torch.Tensor:
    from latte.diffusion.gaussian import respaced, space_timesteps

    method, spacing = OFFICIAL_SAMPLERS[name]
    diffusion = respaced(betas, space_timesteps(len(betas), spacing.format(steps=steps)), learn_sigma,
                         prediction_type)
    step = getattr(diffusion, method)
    model = lambda x, t, **_: model_fn(x, t)  # noqa: E731 - GaussianDiffusion passes model_kwargs
    stochastic = method == "p_sample"
    x = noise
    total = diffusion.num_timesteps
    for i in tqdm(range(total - 1, -1, -1), desc=name, leave=False, disable=not progress):
        t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
        step_noise = draw_noise(x.shape, generators, x.device) if stochastic else None
        x = hold(step(model, x, t, noise=step_noise)["sample"])
        if callback is not None:
            callback(total - i, total)
    return x


def _diffusers_loop(name: str, model_fn: ModelFn, noise: torch.Tensor, steps: int, betas: np.ndarray,
                    prediction_type: str, generators: Sequence[torch.Generator], progress: bool,
                    callback: Optional[StepCallback] = None,
                    scheduler_options: Optional[dict] = None, hold: Hold = lambda x: x) -> torch.Tensor:
    scheduler = make_scheduler(name, betas, prediction_type, scheduler_options)
    scheduler.set_timesteps(steps, device=noise.device)
    step_params = inspect.signature(scheduler.step).parameters
    extra = {"generator": list(generators)} if "generator" in step_params else {}
    if "eta" in step_params:
        extra["eta"] = 0.0
    channels = noise.shape[1]
    x = noise * scheduler.init_noise_sigma
    total = len(scheduler.timesteps)
    for done, t in enumerate(tqdm(scheduler.timesteps, desc=name, leave=False, disable=not progress), 1):
        model_in = scheduler.scale_model_input(x, t)
        t_batch = t.reshape(1).to(x.device).expand(x.shape[0])
        out = model_fn(model_in, t_batch)
        prediction = out[:, :channels]  # learned-sigma split: the scheduler gets the epsilon / v channels only
        x = hold(scheduler.step(prediction, t, x, return_dict=False, **extra)[0])
        if callback is not None:
            callback(done, total)
    return x


@torch.no_grad()
def sample_loop(model_fn: ModelFn, noise: torch.Tensor, sampler: str, steps: int, betas: np.ndarray,
                learn_sigma: bool = True, generators: Optional[Sequence[torch.Generator]] = None,
                progress: bool = False, prediction_type: str = "epsilon",
                callback: Optional[StepCallback] = None,
                scheduler_options: Optional[dict] = None,
                given: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
    """Denoise ``noise (B, C, F, h, w)`` (standard normal) into latents with sampler ``sampler``.

    Args:
        model_fn: ``(x, t) -> (B, C_out, F, h, w)``; guidance, if any, is already inside it. ``t`` holds the
            original (training) timesteps; diffusers schedulers may pass fractional values.
        steps: number of sampling steps (the respacing ``str(steps)`` / ``"ddim{steps}"`` for official loops).
        betas: the training noise schedule ``(T,)``, float64.
        learn_sigma: whether ``model_fn`` returns ``2C`` channels (variance values in ``[C:]``).
        generators: one per video, for the per-step noise of stochastic samplers (DDPM, ancestral schedulers).
        prediction_type: what channels ``[:C]`` of the model output are: 'epsilon', 'v_prediction' or 'sample'
            (x0).
        callback: ``callback(step, total)`` after every step (``step`` = 1..total, the number of model
            evaluations done so far for official loops, scheduler steps for diffusers ones). It may raise to
            stop sampling (e.g. a cancelled request); the exception propagates to the caller.
        scheduler_options: diffusers samplers only: settings overriding the sampler's own (see
            :func:`make_scheduler`; e.g. ``steps_offset``, ``set_alpha_to_one``, ``timestep_spacing``).
    """
    check_sampler(sampler)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    generators = list(generators) if generators is not None else [torch.Generator(noise.device.type)
                                                                  for _ in range(noise.shape[0])]
    hold: Hold = lambda x: x  # noqa: E731
    if given is not None:
        latents, mask = given
        hold = lambda x: hold_given(x, latents, mask)  # noqa: E731
        inner = model_fn
        model_fn = lambda x, t: inner(hold(x), t)  # noqa: E731 - diffusers may have rescaled x
        noise = hold(noise)
    if sampler in OFFICIAL_SAMPLERS:
        if scheduler_options:
            raise ValueError(f"scheduler_options apply to diffusers samplers only, not the official '{sampler}'")
        return _official_loop(sampler, model_fn, noise, steps, betas, learn_sigma, prediction_type, generators,
                              progress, callback, hold)
    return _diffusers_loop(sampler, model_fn, noise, steps, betas, prediction_type, generators, progress, callback,
                           scheduler_options, hold)
