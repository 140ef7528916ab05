"""Given (clean) frames inside a diffusion: the small pure functions shared by training and sampling.

A frame-conditioned model (``model.frame_conditioning``) sees some frames of its input ``x (B, C, F, h, w)``
clean, marked by ``mask (B, F)`` (True = given). In training the given frames of ``x_t`` are the clean latents
and the loss covers the other frames only; in sampling the given frames are replaced by the clean latents
before every model call and after every step, so they equal the given latents exactly all the way through.
"""
from __future__ import annotations

import torch

__all__ = ["frame_weights", "hold_given", "masked_mean_flat"]


def frame_weights(mask: torch.Tensor, ndim: int = 5) -> torch.Tensor:
    """``mask (B, F)`` bool → ``(B, 1, F, 1, 1)`` (``ndim`` dims) bool, broadcastable to latents."""
    return mask.bool().reshape(mask.shape[0], 1, mask.shape[1], *([1] * (ndim - 3)))


def hold_given(x: torch.Tensor, given: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x (B, C, F, h, w)`` with the frames where ``mask (B, F)`` is True taken from ``given`` (same shape)."""
    return torch.where(frame_weights(mask, x.ndim), given.to(x.dtype), x)


def masked_mean_flat(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample mean of ``x (B, C, F, ...)`` over the frames where ``mask (B, F)`` is **False** (generated)."""
    keep = (~frame_weights(mask, x.ndim)).to(x.dtype).expand_as(x)
    dims = tuple(range(1, x.ndim))
    return (x * keep).sum(dim=dims) / keep.sum(dim=dims).clamp(min=1.0)
