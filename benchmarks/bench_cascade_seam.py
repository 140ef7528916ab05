"""Seams of chunked video super-resolution: frame-to-frame change at chunk borders vs inside chunks.

    OMP_NUM_THREADS=1 python benchmarks/bench_cascade_seam.py [--frames 61] [--size 16] [--steps 10]
        [--chunk 8] [--overlaps 0 2 4] [--seeds 0 1 2] [--lavie-dir pretrained_models]

The official VSR stage upscales 8 frames per call, each call with its own noise, so nothing ties the last frame
of a chunk to the first of the next. The measure (``latte.sampling.cascade.frame_change_at_borders``): mean
|x_{f+1} - x_f| (uint8 units) over frame pairs where the covering chunks change, vs all other pairs; a ratio
near 1 means no visible seam. The input is a smooth synthetic clip (a moving circle, ``--frames`` frames at
``--size`` px). ``--model``:

* ``toy`` (default, CPU, seconds): the exact denoiser of a model of what a video SR stage does -- the high-res
  video is the bicubic upsampling of the low-res one plus generated detail (std ``--detail`` in [-1, 1] units)
  that is identical across the frames of one call (temporal layers make a chunk consistent) and independent
  between calls. Latents are the high-res pixels space-to-depth by 4. This isolates the chunking mechanism;
* ``tiny``: the tiny official VSR model of the test fixtures (random weights): its output is noise-dominated,
  so the ratio is ~1 whatever the chunking (uninformative; a smoke run);
* ``lavie``: the released ``lavie_vsr.pt`` from ``--lavie-dir`` (GPU).
Prints one line per overlap setting.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "reference" / "lavie_vsr_tiny.pt"


class RandomText:
    """Fixed random text features ``(1, 77, dim)`` per prompt (the tiny stage has no tokenizer)."""

    def __init__(self, dim: int):
        self.dim, self.max_length = dim, 77

    def encode(self, prompts):
        rows = [torch.randn(1, 77, self.dim, generator=torch.Generator().manual_seed(len(p))) for p in prompts]
        hidden = torch.cat(rows)
        return hidden, torch.ones(hidden.shape[:2], dtype=torch.bool)


def tiny_vsr_stage():
    from diffusers import AutoencoderKL

    from latte.encoders.autoencoders import DiffusersAutoencoder
    from latte.interop.lavie import load_lavie
    from latte.sampling.cascade import LavieStage

    m = torch.load(FIXTURE, weights_only=True)
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=[8, 8, 8], down_block_types=["DownEncoderBlock2D"] * 3,
                        up_block_types=["UpDecoderBlock2D"] * 3, layers_per_block=1, latent_channels=4,
                        norm_num_groups=4)
    ae = DiffusersAutoencoder(vae, kind="sd_vae", source={"kind": "tiny random"}, chunk_size=4,
                              sample_posterior=True, scaling_factor=0.08333)
    unet = load_lavie(m["state_dict"], "vsr", m["config"])
    return LavieStage("vsr", unet, ae, RandomText(m["config"]["cross_attention_dim"]),
                      source={"unet": "tiny official VSR (test fixture)"})


class ToyVSRDenoiser(torch.nn.Module):
    """v-prediction from the exact posterior mean of x0 ~ N(mu, C): mu = space-to-depth(bicubic x4 of the
    low-res frames), C = detail^2 * (all-ones over the frames of the call) per latent element. With
    m = mean over frames of (x_t - sqrt(a) mu): E[x0 | x_t] = mu + sqrt(a) d^2 F / (a d^2 F + 1 - a) * m."""

    def __init__(self, detail: float):
        super().__init__()
        self.detail = detail
        self.register_buffer("acp", torch.from_numpy(np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))).float())
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a device/dtype

    def forward(self, sample, timestep, low_res, encoder_hidden_states=None, class_labels=None):
        import torch.nn.functional as F

        from latte.encoders.autoencoders import frames_of, videos_of

        b, _, f, h, w = low_res.shape
        up = F.interpolate(frames_of(low_res.float()), scale_factor=4, mode="bicubic", align_corners=False)
        mu = videos_of(F.pixel_unshuffle(up, 4), b)
        a = self.acp[timestep.long().clamp(0, 999)].view(-1, 1, 1, 1, 1)
        m = (sample.float() - a.sqrt() * mu).mean(dim=2, keepdim=True)
        d2f = self.detail ** 2 * f
        x0 = mu + a.sqrt() * d2f / (a * d2f + 1 - a) * m
        return ((a.sqrt() * sample.float() - x0) / (1 - a).sqrt()).to(sample.dtype)


def toy_vsr_stage(detail: float):
    from latte.encoders.autoencoders import IdentityAutoencoder
    from latte.sampling.cascade import LavieStage

    return LavieStage("vsr", ToyVSRDenoiser(detail), IdentityAutoencoder(patch_factor=4), RandomText(4),
                      source={"unet": f"toy exact denoiser (detail {detail})"})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=61)
    p.add_argument("--size", type=int, default=16, help="low-res frame size in pixels")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--overlaps", type=int, nargs="+", default=[0, 2, 4])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--noise-level", type=int, default=None,
                   help="VSR low-res augmentation level (default: 0 for toy, whose denoiser does not remove the "
                        "augmentation noise; 50, the official level, otherwise)")
    p.add_argument("--model", choices=["toy", "tiny", "lavie"], default="toy")
    p.add_argument("--detail", type=float, default=0.1, help="toy: std of the per-call detail in [-1, 1] units")
    p.add_argument("--lavie-dir", default=None, help="--model lavie: the official pretrained_models/ folder")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float16")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    from latte.data.synthetic import render_clip
    from latte.sampling.cascade import (CascadePipeline, StageSettings, frame_change_at_borders, frame_chunks,
                                        load_lavie_stage)

    if args.model == "lavie":
        stage = load_lavie_stage(args.lavie_dir, "vsr")
    else:
        stage = toy_vsr_stage(args.detail) if args.model == "toy" else tiny_vsr_stage()
    pipe = CascadePipeline(vsr=stage, device=args.device, dtype=args.dtype)
    clip = render_clip({"shape": "circle", "color": "red", "direction": "right", "speed": "slow"},
                       num_frames=args.frames, size=args.size, seed=0, background="black")
    level = args.noise_level if args.noise_level is not None else (0 if args.model == "toy" else 50)
    official = frame_chunks(args.frames, args.chunk)
    low = torch.from_numpy(clip).float().permute(3, 0, 1, 2)
    base = frame_change_at_borders(low, official)
    print(f"input ({args.frames} frames, {args.size} px): change at official borders {base['border']:.2f}, "
          f"inside {base['inside']:.2f}, ratio {base['ratio']:.2f}")
    for overlap in args.overlaps:
        chunks = frame_chunks(args.frames, args.chunk, overlap)
        border, inside = [], []
        for seed in args.seeds:
            out = pipe.run("a red circle moving right", input=clip, stages=["vsr"], seed=seed, vsr_chunk=args.chunk,
                       vsr_overlap=overlap, noise_level=level, settings={"vsr": StageSettings(steps=args.steps)},
                       progress=False)
            video = torch.from_numpy(out.video).float().permute(3, 0, 1, 2)
            m = frame_change_at_borders(video, chunks)
            border.append(m["border"])
            inside.append(m["inside"])
        b, i = float(np.mean(border)), float(np.mean(inside))
        print(f"chunk {args.chunk} overlap {overlap}: {len(chunks)} chunks, frame change at borders {b:.2f}, "
              f"inside chunks {i:.2f}, ratio {b / i:.2f} (model {args.model}, noise level {level}, mean of seeds "
              f"{args.seeds}, {args.steps} steps)")


if __name__ == "__main__":
    main()
