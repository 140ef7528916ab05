"""Validation during training: a few videos sampled from the EMA weights with fixed seeds.

Written as ``RUN/samples/step_XXXXXXX/sample_K.mp4`` and ``.gif`` and to TensorBoard (one image per sample,
its frames side by side).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """``(3, F, H, W)`` in [-1, 1] → uint8 ``(F, H, W, 3)``."""
    v = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return v.permute(1, 2, 3, 0).cpu().numpy()


@torch.no_grad()
def sample_latents(trainer, num_steps: int) -> torch.Tensor:
    """DDIM samples ``(N, C, F, h, w)`` from ``trainer.ema``, one fixed seed per sample."""
    from latte.diffusion import classifier_free_guidance, diffusion_from_config

    cfg, vcfg, device = trainer.config, trainer.config.validation, trainer.device
    model_cfg = cfg.model
    seeds = vcfg.seeds or list(range(vcfg.num_samples))
    diffusion = diffusion_from_config(cfg.diffusion, model_cfg.learn_sigma, timestep_respacing=f"ddim{num_steps}")
    h = model_cfg.input_size
    shape = (1, model_cfg.in_channels, model_cfg.num_frames, h, h)
    ema = trainer.ema.eval()
    out = []
    for k, seed in enumerate(seeds):
        cond, uncond = {}, {}
        if model_cfg.conditioning == "class":
            label = vcfg.class_labels[k % len(vcfg.class_labels)]
            cond["y"] = torch.tensor([label], device=device)
            uncond["y"] = torch.tensor([model_cfg.num_classes], device=device)
        elif model_cfg.conditioning == "text":
            prompt = vcfg.prompts[k % len(vcfg.prompts)]
            cond["text"], cond["text_mask"] = trainer.text_encoder.encode([prompt])
            uncond["text"], uncond["text_mask"] = trainer.text_encoder.encode([""])
        model = ema
        kwargs = cond
        if model_cfg.conditioning != "none" and vcfg.guidance_scale > 1.0:
            model = classifier_free_guidance(ema, vcfg.guidance_scale, cond, uncond, model_cfg.in_channels)
            kwargs = {}
        generator = torch.Generator(device=device).manual_seed(seed)
        noise = torch.randn(shape, generator=generator, device=device)
        out.append(diffusion.ddim_sample_loop(model, shape, noise=noise, model_kwargs=kwargs, device=device,
                                              generator=generator))
    return torch.cat(out)


def run_validation(trainer, step: int) -> list[Path]:
    """Sample, decode, write mp4 + GIF under ``RUN/samples/step_XXXXXXX`` and images to TensorBoard."""
    from latte.data.video_io import write_gif, write_mp4

    vcfg = trainer.config.validation
    latents = sample_latents(trainer, vcfg.num_steps)
    videos = trainer.autoencoder.decode(latents)  # (N, 3, F, H, W)
    out_dir = trainer.run_dir / "samples" / f"step_{step:07d}"
    paths = []
    for k, video in enumerate(videos):
        frames = to_uint8_frames(video)
        paths.append(write_mp4(out_dir / f"sample_{k}.mp4", frames, fps=vcfg.fps))
        write_gif(out_dir / f"sample_{k}.gif", frames, fps=vcfg.fps)
        if trainer._writer is not None:
            strip = np.concatenate(list(frames), axis=1)  # (H, F*W, 3)
            trainer._writer.add_image(f"validation/sample_{k}", strip, step, dataformats="HWC")
        if trainer._wandb is not None:
            import wandb

            trainer._wandb.log({f"validation/sample_{k}": wandb.Video(str(out_dir / f"sample_{k}.gif"))}, step=step)
    return paths
