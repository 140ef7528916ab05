"""Classifier-free guidance as one batched forward pass."""
from __future__ import annotations

from typing import Callable

import torch


def _cat(a, b):
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b], dim=0)
    if a is None and b is None:
        return None
    if a == b:  # ints such as num_images
        return a
    raise ValueError(f"cannot batch conditional and unconditional arguments {a!r} / {b!r}")


def classifier_free_guidance(model: Callable, scale: float, cond_kwargs: dict, uncond_kwargs: dict,
                             channels: int) -> Callable:
    """A model function ``fn(x, t)`` returning the guided output.

    Runs the conditional and unconditional inputs as one batch of ``2B`` and returns
    ``uncond + scale·(cond − uncond)`` on the epsilon channels ``[:channels]``; the remaining (variance) channels
    are the conditional half's, as the official class-conditional ``forward_with_cfg`` does.
    """
    keys = set(cond_kwargs) | set(uncond_kwargs)
    batched = {k: _cat(cond_kwargs.get(k), uncond_kwargs.get(k)) for k in keys}

    def fn(x: torch.Tensor, t: torch.Tensor, **_ignored) -> torch.Tensor:
        out = model(torch.cat([x, x]), torch.cat([t, t]), **batched)
        cond, uncond = out.chunk(2)
        eps = uncond[:, :channels] + scale * (cond[:, :channels] - uncond[:, :channels])
        return torch.cat([eps, cond[:, channels:]], dim=1)

    return fn
