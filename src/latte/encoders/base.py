"""The two small interfaces every autoencoder and text encoder implements.

The trainer, the latent cache and the sampler only talk to these, so they never branch on which concrete
encoder is in use.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Autoencoder(Protocol):
    """Maps videos to (scaled) latents and back, frame by frame or temporally.

    * ``encode(video, generator=None)``: ``(B, 3, F, H, W)`` float in [-1, 1] → latents ``(B, C_lat, F, H/d,
      W/d)``, already multiplied by ``scaling_factor`` (so a diffusion model sees roughly unit-variance data);
      a posterior sample, when the autoencoder samples one, is drawn from ``generator``.
    * ``decode(latents)``: the inverse; divides by ``scaling_factor`` itself; returns ``(B, 3, F, H, W)`` in
      roughly [-1, 1] (not clamped).
    """

    latent_channels: int
    downsample_factor: int
    scaling_factor: float

    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...

    def identity(self) -> dict:
        """JSON-safe description (kind, path, weights hash, scaling factor) recorded in latent caches."""
        ...


@runtime_checkable
class TextEncoder(Protocol):
    """Maps prompts to token-level features and a padding mask.

    ``encode(prompts)`` → ``(hidden (B, L, dim) float32, mask (B, L) bool — True on real tokens)``.
    """

    dim: int
    max_length: int

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def null_embedding(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The empty caption's ``(1, max_length, dim)`` features and ``(1, max_length)`` mask, computed once and
        cached (classifier-free guidance); never truncated — slice ``[:, :L]`` to match truncated features."""
        ...

    def identity(self) -> dict: ...
