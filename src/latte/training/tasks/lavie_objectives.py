"""The training objectives of the three LaVie stages as small pure functions (spec §9), used by
:mod:`latte.training.tasks.lavie` and tested on hand-computed examples.

All tensors are ``(B, C, F, h, w)`` latents / videos; ``t``, ``cond_t`` and ``level`` are int64 ``(B,)``.

* Base (text-to-video): ε-MSE of ``model(q_sample(x0, t, ε), t, text)``: :meth:`GaussianDiffusion.training_losses`
  with a fixed variance, nothing stage-specific.
* Interpolation: ``model(cat([q_sample(x0, t, ε), cond′]), t, text) → ε`` on the 4 output channels, where
  ``cond`` repeats every k-th frame of the clip (:func:`latte.data.transforms.interpolation_condition`) and
  ``cond′ = q_sample(cond, cond_t, ε′)`` with the same schedule when the condition is noise-augmented
  (``cond_t`` = 0 is ``√ᾱ_0·cond + √(1−ᾱ_0)·ε′``, so "no augmentation" passes ``cond_t=None``).
* Super-resolution: ``model(q_sample(z0, t, ε), t, low_res′, text, class_labels=n) → v = √ᾱ_t·ε − √(1−ᾱ_t)·z0``
  with ``low_res′ = √ᾱˢ_n·low_res + √(1−ᾱˢ_n)·ε″`` on the scaled-linear augmentation schedule
  (:func:`latte.diffusion.noise_augmentation`) at a level ``n`` in ``[0, max_noise_level]`` that is also the
  class label.
* Residual stages (``lavie.residual``, ours): interp and vsr denoise ``x0 − baseline`` instead of ``x0`` (the linear
  blend of the condition frames, :func:`interpolation_baseline`; the encoded bicubic upsampling of the clean
  low-resolution video); the targets above are then those of the residual.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from latte.data.transforms import linear_blend
from latte.diffusion.gaussian import GaussianDiffusion

__all__ = ["interpolation_baseline", "interpolation_inputs", "SuperResolutionInputs", "super_resolution_inputs"]


def interpolation_baseline(x0: torch.Tensor, factor: int) -> torch.Tensor:
    """``lavie.residual``: the linear blend of the clip's every ``factor``-th frame back to its ``F`` frames,
    ``(B, C, F, h, w)`` (what the interp stage's residual is measured from)."""
    return linear_blend(x0[:, :, ::factor], factor)


def interpolation_inputs(diffusion: GaussianDiffusion, x0: torch.Tensor, cond: torch.Tensor, t: torch.Tensor,
                         noise: torch.Tensor, cond_t: Optional[torch.Tensor] = None,
                         cond_noise: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(model input (B, 2C, F, h, w), target (B, C, F, h, w))`` of the interpolation stage; the target is what
    ``diffusion`` predicts (LaVie: ε).

    ``x0``: latents of the high-frame-rate clip; ``cond``: the condition latents (same shape); ``cond_t`` /
    ``cond_noise``: optional noise augmentation of the condition at its own timestep."""
    if cond.shape != x0.shape:
        raise ValueError(f"interpolation: condition {tuple(cond.shape)} and latents {tuple(x0.shape)} differ")
    if cond_t is not None:
        if cond_noise is None:
            raise ValueError("interpolation: cond_t needs cond_noise")
        cond = diffusion.q_sample(cond, cond_t, cond_noise)
    return torch.cat([diffusion.q_sample(x0, t, noise), cond], dim=1), diffusion.target(x0, t, noise)


class SuperResolutionInputs(NamedTuple):
    sample: torch.Tensor  # (B, C, F, h, w) noisy latents x_t
    low_res: torch.Tensor  # (B, 3, F, h, w) noise-augmented low-resolution video
    class_labels: torch.Tensor  # (B,) noise level of low_res
    target: torch.Tensor  # (B, C, F, h, w) v (LaVie), or what ``diffusion`` predicts


def super_resolution_inputs(diffusion: GaussianDiffusion, augmentation: GaussianDiffusion, z0: torch.Tensor,
                            low_res: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, level: torch.Tensor,
                            low_res_noise: torch.Tensor) -> SuperResolutionInputs:
    """Model inputs and target (v for LaVie's v-prediction process) of the super-resolution stage.

    ``z0``: latents of the high-resolution clip (upscaler VAE, ``h = H/4``); ``low_res``: the clip downsampled to
    ``h × w`` in [-1, 1]; ``level``: augmentation level per sample (a timestep of ``augmentation``)."""
    if low_res.shape[-3:] != z0.shape[-3:]:
        raise ValueError(f"super-resolution: low-resolution video {tuple(low_res.shape)} must have the frames and "
                         f"size of the latents {tuple(z0.shape)}")
    x_t = diffusion.q_sample(z0, t, noise)
    augmented = augmentation.q_sample(low_res, level, low_res_noise)
    return SuperResolutionInputs(x_t, augmented, level, diffusion.target(z0, t, noise))

