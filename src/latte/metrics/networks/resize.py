"""Separable bilinear resizing of the last two dims with explicit sampling grids.

``tf1``: TensorFlow 1 ``resize_bilinear`` (``align_corners=False, half_pixel_centers=False``): source
coordinate ``dst * in/out``; what the reference FVD code applies before I3D.
``align_corners``: Chainer ``resize_images`` (sampling on ``linspace(0, in-1, out)``), used by TGANv2's C3D.
"""
from __future__ import annotations

import torch

__all__ = ["resize_bilinear"]


def _grid(in_size: int, out_size: int, mode: str, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if mode == "tf1":
        src = torch.arange(out_size, dtype=torch.float64) * (in_size / out_size)
    elif mode == "align_corners":
        src = torch.linspace(0, in_size - 1, out_size, dtype=torch.float64)
    else:
        raise ValueError(f"unknown resize mode {mode!r}")
    lo = src.floor().long().clamp(0, in_size - 1)
    hi = (lo + 1).clamp(max=in_size - 1)
    return lo.to(device), hi.to(device), (src - lo).to(device)


def resize_bilinear(x: torch.Tensor, size: tuple[int, int], mode: str = "tf1") -> torch.Tensor:
    """Resize float ``(..., H, W)`` to ``(..., size[0], size[1])``; no antialiasing (as the references)."""
    out_h, out_w = size
    if x.shape[-2:] == (out_h, out_w):
        return x
    lo, hi, w = _grid(x.shape[-2], out_h, mode, x.device)
    w = w.to(x.dtype)[:, None]
    x = x[..., lo, :] * (1 - w) + x[..., hi, :] * w
    lo, hi, w = _grid(x.shape[-1], out_w, mode, x.device)
    w = w.to(x.dtype)
    return x[..., lo] * (1 - w) + x[..., hi] * w
