"""Gaussian diffusion (official Latte/DiT process), respacing and classifier-free guidance."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from latte.config import ConfigError, option
from latte.diffusion.gaussian import (BETA_SCHEDULES, PREDICTION_TYPES, GaussianDiffusion, beta_schedule, respaced,
                                     space_timesteps)
from latte.diffusion.guidance import classifier_free_guidance

__all__ = ["DiffusionConfig", "GaussianDiffusion", "create_diffusion", "space_timesteps", "noise_augmentation",
           "classifier_free_guidance", "PREDICTION_TYPES", "BETA_SCHEDULES"]


@dataclass
class DiffusionConfig:
    """The training-time noise process (sampling picks its own step count)."""

    noise_schedule: Literal["linear", "squaredcos_cap_v2"] = option(
        "linear", "beta schedule: 'linear' 1e-4 → 0.02 (official) or 'squaredcos_cap_v2' (cosine)")
    diffusion_steps: int = option(1000, "number of diffusion steps T of the training process")
    timestep_respacing: str = option("", "respace the training process: '' = all T steps (official); "
                                         "'250' or 'ddim50' style strings as in the official code")
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = option(
        "epsilon", "what the model predicts: 'epsilon' = the noise (official Latte, and every released checkpoint) "
                   "or 'v_prediction' = the velocity sqrt(abar)*eps - sqrt(1-abar)*x0, which small models learn "
                   "much better at high noise, where a video's layout and motion are decided (the quickstart "
                   "uses it), or 'sample' = x0 itself (a zero output is x0 = 0: the choice for LaVie stages with "
                   "lavie.residual). Saved with the run; sampling and diffusers export follow it")

    def validate(self) -> None:
        if self.diffusion_steps < 2:
            raise ConfigError("diffusion.diffusion_steps must be >= 2")
        if self.timestep_respacing:
            try:
                space_timesteps(self.diffusion_steps, self.timestep_respacing)
            except ValueError as e:
                raise ConfigError(f"diffusion.timestep_respacing '{self.timestep_respacing}': {e}") from None


def create_diffusion(timestep_respacing: str | None = "", noise_schedule: str = "linear",
                     learn_sigma: bool = True, diffusion_steps: int = 1000,
                     prediction_type: str = "epsilon") -> GaussianDiffusion:
    """The official constructor: ``""``/None = all steps; ``"250"``, ``"ddim50"``, ... respace them."""
    betas = beta_schedule(noise_schedule, diffusion_steps)
    if not timestep_respacing:
        timestep_respacing = [diffusion_steps]
    if isinstance(timestep_respacing, list):
        timestep_respacing = ",".join(str(x) for x in timestep_respacing)
    return respaced(betas, space_timesteps(diffusion_steps, timestep_respacing), learn_sigma, prediction_type)


def diffusion_from_config(cfg: DiffusionConfig, learn_sigma: bool, timestep_respacing: str | None = None):
    """The process a run trains with (or, given ``timestep_respacing``, samples with)."""
    spacing = cfg.timestep_respacing if timestep_respacing is None else timestep_respacing
    return create_diffusion(spacing, cfg.noise_schedule, learn_sigma, cfg.diffusion_steps, cfg.prediction_type)


def noise_augmentation(schedule: str = "scaled_linear", num_steps: int = 1000) -> GaussianDiffusion:
    """The forward process that noises a *condition* at its own level ``n`` (a timestep of this process):
    ``process.q_sample(cond, n, noise) = √ᾱ_n·cond + √(1−ᾱ_n)·noise``.

    Default: LaVie super-resolution's low-resolution augmentation (scaled-linear betas, levels 0..999, the level
    is also the U-Net's class label; spec §7: n = 50 gives 0.995411 / 0.095688)."""
    return GaussianDiffusion(beta_schedule(schedule, num_steps), learn_sigma=False)
