"""Reproducible randomness.

* Per-sample draws (timestep, noise, caption dropout) come from a generator keyed by ``(seed, step, dataset
  index)``, so they do not depend on how a global batch is split over micro-steps or ranks: gradient
  accumulation and DDP reproduce the single-process, single-step result.
* The global RNG states (torch CPU/CUDA, numpy, python) are captured in a form ``torch.load(...,
  weights_only=True)`` accepts, for exact resume.
"""
from __future__ import annotations

import random

import numpy as np
import torch

from latte.seeding import mix_seed


def per_sample_draws(keys: list[int], seed: int, step: int, num_timesteps: int, latent_shape: tuple[int, ...],
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample random draws for one micro-batch.

    ``keys``: the dataset index of each sample. Returns ``t (B,)`` int64 in [0, num_timesteps), ``noise
    (B, *latent_shape)`` float32 standard normal and ``u (B,)`` uniform [0, 1) (caption dropout), all on ``device``.
    """
    generator = torch.Generator(device=device)
    ts, noises, us = [], [], []
    for key in keys:
        generator.manual_seed(mix_seed(seed, step, key))
        ts.append(torch.randint(0, num_timesteps, (1,), generator=generator, device=device))
        us.append(torch.rand(1, generator=generator, device=device))
        noises.append(torch.randn(latent_shape, generator=generator, device=device))
    return torch.cat(ts), torch.stack(noises), torch.cat(us)


def given_frame_masks(keys: list[int], seed: int, step: int, frames: int, modes: list[str], max_k: int,
                      device: torch.device) -> torch.Tensor:
    """Frame conditioning: which frames of each clip are given clean, ``(B, frames)`` bool.

    Per sample (generator keyed by ``(seed, step, dataset index)``, independent of batching): a mode drawn
    uniformly from ``modes`` ('none', 'first', 'first_k', 'last_k') and ``k`` uniformly from
    ``1..min(max_k, frames - 1)``; at least one frame is always left to generate.
    """
    generator = torch.Generator()
    mask = torch.zeros(len(keys), frames, dtype=torch.bool)
    top = max(1, min(max_k, frames - 1))
    for row, key in enumerate(keys):
        generator.manual_seed(mix_seed(seed, step, key, 2))
        mode = modes[int(torch.randint(len(modes), (1,), generator=generator))]
        k = int(torch.randint(1, top + 1, (1,), generator=generator))
        if frames < 2 or mode == "none":
            continue
        if mode == "first":
            mask[row, 0] = True
        elif mode == "first_k":
            mask[row, :k] = True
        else:
            mask[row, frames - k:] = True
    return mask.to(device)


def capture_rng_state() -> dict:
    """Every global RNG state of this process, as tensors and primitives only."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
    }


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


