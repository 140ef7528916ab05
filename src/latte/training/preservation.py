"""Prior preservation by self-distillation (``train.preservation``), for fine-tuning on a few stills.

Training a text-to-video model on a handful of still images (personalisation) moves more than the new word:
a one-frame clip is a regime the model never trained in, and an adapter learns to compensate for it, which
changes every prompt's videos. DreamBooth keeps a model's prior with a diffusion loss on its own samples; here
the frozen starting model is the target directly:

1. before training, the frozen ``train.init_from`` model samples one video of each preserved prompt (DDIM,
   ``steps``, ``cfg_scale``; latents ``(N, C, F, h, w)``, seeded by ``train.seed``);
2. each training item (generator keyed by ``(seed, step, dataset index)``, so accumulation and DDP reproduce
   the single-process loss) draws one of them, a timestep and noise per input kind — one of its frames
   (``stills``: the regime of training on images, the default) and / or the whole clip (``videos``: the
   regime of sampling) — and whether it is compared under its prompt or the empty caption
   (``null_caption_prob``);
3. ``preserve = Σ_inputs mean((model(x_t) − frozen(x_t))²)`` per item; the task adds ``weight × preserve``.

Pinning the still regime on the old prompts is what leaves an adapter nothing to learn from the stills but
their new content, so the new word moves and the old prompts do not (BENCHMARKS.md, personalisation).
"""
from __future__ import annotations

import torch
from torch import nn

from latte.seeding import mix_seed

__all__ = ["Preservation"]

_DRAW_PRESERVE = 3  # key of the per-sample generator (1 = VAE posterior, 2 = given frames)


class Preservation:
    """The frozen model, its preserved videos and the per-item distillation loss of ``train.preservation``."""

    def __init__(self, config, frozen: nn.Module, latents: torch.Tensor, num_timesteps: int):
        self.config = config
        self.frozen = frozen.eval().requires_grad_(False)
        self.latents = latents  # (N, C, F, h, w) float32 on the training device: video i is of config.prompts[i]
        self.num_timesteps = num_timesteps

    @classmethod
    def build(cls, task, frozen: nn.Module, progress: bool = False) -> "Preservation":
        """Sample the preserved videos with ``frozen`` (the ``train.init_from`` model) through ``task.pipeline``."""
        cfg = task.config.train.preservation
        frames = cfg.frames or task.config.model.num_frames
        out = task.pipeline(frozen)(prompts=list(cfg.prompts), frames=frames, seed=task.config.train.seed,
                                    sampler="ddim", steps=cfg.steps, cfg_scale=cfg.cfg_scale,
                                    output_type="latent", progress=progress)
        latents = torch.as_tensor(out.videos).to(task.device, torch.float32)
        return cls(cfg, frozen, latents, task.diffusion.num_timesteps)

    def loss(self, model, frozen, q_sample, captions, keys: list[int], seed: int, step: int) -> torch.Tensor:
        """Per-item preservation loss ``(B,)`` for the items ``keys`` (dataset indices) of one micro-batch.

        ``model(x, t, text=, text_mask=)`` / ``frozen(...)``: the trained and the frozen model (float32 output;
        the task runs both under its autocast), ``q_sample(x0, t, noise)``: the forward process,
        ``captions(list[str]) -> (text, mask)``: the caption features."""
        generator, draws = torch.Generator(), []
        n, frames = self.latents.shape[0], self.latents.shape[2]
        for key in keys:
            generator.manual_seed(mix_seed(seed, step, key, _DRAW_PRESERVE))
            video = int(torch.randint(n, (1,), generator=generator))
            null = bool(torch.rand(1, generator=generator) < self.config.null_caption_prob)
            per_input = []
            for _ in self.config.inputs:  # one timestep, noise and frame per input kind
                t = int(torch.randint(self.num_timesteps, (1,), generator=generator))
                frame = int(torch.randint(frames, (1,), generator=generator))
                noise = torch.randn(self.latents.shape[1:], generator=generator)
                per_input.append((t, frame, noise))
            draws.append((video, null, per_input))
        device = self.latents.device
        text, mask = captions(["" if null else self.config.prompts[video] for video, null, _ in draws])
        total = torch.zeros(len(keys), device=device)
        for k, kind in enumerate(self.config.inputs):
            x0 = self.latents[[video for video, _, _ in draws]]
            noise = torch.stack([per_input[k][2] for _, _, per_input in draws]).to(device)
            if kind == "stills":  # one frame of each clip: the one-frame clips of training on images
                pick = torch.tensor([per_input[k][1] for _, _, per_input in draws], device=device)
                rows = torch.arange(len(keys), device=device)
                x0, noise = x0[rows, :, pick][:, :, None], noise[rows, :, pick][:, :, None]
            t = torch.tensor([per_input[k][0] for _, _, per_input in draws], device=device)
            x_t = q_sample(x0, t, noise)
            with torch.no_grad():
                target = frozen(x_t, t, text=text, text_mask=mask)
            prediction = model(x_t, t, text=text, text_mask=mask)
            total = total + (prediction - target).pow(2).flatten(1).mean(1)
        return total
