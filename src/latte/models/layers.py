"""Layers that are the same math in the Latte transformer and the LaVie U-Nets (pure functions first).

* :func:`timestep_embedding`: sinusoidal timestep features ``[cos, sin]`` (Latte's ``t_embedder`` input and the
  U-Nets' ``time_proj`` with ``flip_sin_to_cos=True, freq_shift=0``: the same formula).
* :func:`attend`: multi-head scaled dot-product attention with the fused SDPA kernel or an explicit softmax
  ("math", the official codes' computation); :func:`split_heads` / :func:`merge_heads` regroup channels.
* :func:`rope_tables` / :func:`apply_rope`: rotary position embedding, in the rotate-half layout (Latte's
  ``temporal_pe='rope'``) or the adjacent-pair layout on the first ``rot_dim`` features (LaVie's temporal
  attention, ``rotary-embedding-torch``).
* :class:`Mlp` (GELU-tanh, Latte/DiT) and :class:`GEGLUFeedForward` (Stable Diffusion / LaVie ``ff``).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal timestep features ``[cos, sin]`` (official order); ``t (B,)`` → ``(B, dim)`` float32.

    ``freq_k = exp(-ln(max_period)·k/(dim/2))`` for ``k < dim/2``.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rope_tables(n: int, head_dim: int, device, dtype, inv_freq: Optional[torch.Tensor] = None,
                interleaved: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables ``(n, rot_dim)`` for rotary embedding over positions 0..n-1.

    ``inv_freq`` (``rot_dim/2`` values) defaults to ``10000^(-2i/head_dim)`` (``rot_dim = head_dim``).
    ``interleaved=False``: rotate-half layout (angles ``[θ_0..θ_k, θ_0..θ_k]``); ``True``: adjacent pairs
    (``[θ_0, θ_0, θ_1, θ_1, ...]``).
    """
    if inv_freq is None:
        inv_freq = 1.0 / 10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    angles = torch.arange(n, dtype=torch.float32, device=device)[:, None] * inv_freq.float()[None]
    angles = angles.repeat_interleave(2, dim=-1) if interleaved else torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool = False) -> torch.Tensor:
    """Rotate ``x (..., n, head_dim)`` by position: ``x·cos + rotate(x)·sin`` on the first ``cos.shape[-1]``
    features (the rest pass through). Rotate-half: ``rotate(x) = [-x2, x1]``; interleaved: the pair
    ``(a, b)`` becomes ``(-b, a)``."""
    rot = cos.shape[-1]
    if rot < x.shape[-1]:
        return torch.cat([apply_rope(x[..., :rot], cos, sin, interleaved), x[..., rot:]], dim=-1)
    if interleaved:
        pairs = x.unflatten(-1, (-1, 2))
        rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
        return x * cos + rotated * sin
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def attend(q, k, v, bias: Optional[torch.Tensor] = None, backend: str = "sdpa") -> torch.Tensor:
    """Scaled dot-product attention on ``(..., heads, L, head_dim)``; ``bias`` is added to the scores.

    ``backend``: 'sdpa' (fused kernels), 'math' (explicit softmax) or 'auto' (sdpa, except half precision on
    CPU, where torch's fused kernel is slower than the explicit softmax).
    """
    if backend == "auto":
        backend = "math" if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16) else "sdpa"
    if backend == "sdpa":
        if bias is not None:
            bias = bias.to(q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if bias is not None:
        scores = scores + bias
    return scores.softmax(dim=-1) @ v


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B', L, C)`` → ``(B', heads, L, C/heads)`` (the head index is the outer factor of C)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B', heads, L, d)`` → ``(B', L, heads·d)``."""
    return x.transpose(1, 2).flatten(2)


class Mlp(nn.Module):
    """Linear-GELU(tanh)-Linear (Latte / DiT); keys ``fc1``, ``fc2``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class GEGLU(nn.Module):
    """``proj``: Linear C→2H; output ``a·GELU(g)`` (exact erf GELU) with ``(a, g)`` the two halves."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(dim, hidden * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class GEGLUFeedForward(nn.Module):
    """Stable Diffusion feed-forward (keys ``net.0.proj``, ``net.2``): GEGLU C→4C, Linear 4C→C."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x
