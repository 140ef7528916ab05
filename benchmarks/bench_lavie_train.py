"""Do the tiny LaVie cascade stages learn their job? Train them on CPU on synthetic clips, compare with the classic
baselines on held-out clips (PSNR, dB, over pixels in [-1, 1] with peak-to-peak 2):

* interpolation (shipped config ``lavie/tiny_interp``: x4, 3 base frames -> 9 frames of 16x16): the model's
  in-between frames vs linear blending of the two surrounding base frames (and vs repeating the condition);
* super-resolution (shipped config ``lavie/tiny_vsr``: 8x8 -> 32x32, area-downsampled inputs): the model vs
  bicubic upsampling.

    python benchmarks/bench_lavie_train.py [--stages interp vsr] [--steps 400] [--clips 32] [--sample-steps 25]
        [--checkpoint-interp RUN/checkpoints/step_N] [--checkpoint-vsr ...] [--out result.json]

One thread (``torch.set_num_threads(1)``); reports process CPU seconds (robust on a shared machine) and wall
seconds. Model outputs: a DDIM sample (eta 0, ``--sample-steps`` steps, fixed seeds) and the one-step estimate
(the x0 prediction from pure noise at t = T-1, i.e. the model's conditional mean); VSR at noise level
``--noise-level`` (within the trained range).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from latte.quickstart_cascade import linear_blend, psnr  # the cascade quickstart's baselines and PSNR


def train_stage(name: str, steps: int, run_dir: Path):
    from latte.training.tasks.lavie import load_lavie_run_config, train_lavie

    overrides = [f"train.max_steps={steps}", f"train.run_dir={run_dir}", f"train.ckpt_every={steps}",
                 f"train.warmup_steps={min(50, steps // 10)}", f"train.log_every={max(1, steps // 8)}"]
    config = load_lavie_run_config(f"lavie/tiny_{name}", overrides)
    cpu, wall = time.process_time(), time.perf_counter()
    result = train_lavie(config, device="cpu", progress=False)
    return config, result.last_checkpoint, time.process_time() - cpu, time.perf_counter() - wall


def held_out(config, clips: int) -> torch.Tensor:
    """``(N, 3, F, S, S)`` clips of the synthetic 'val' split (placements never trained on)."""
    from latte.data import build_dataset

    dataset = build_dataset(config.data, split="val")
    return torch.stack([dataset[i]["video"] for i in range(clips)])


def ddim(config, sample_steps: int):
    from latte.diffusion import create_diffusion

    d = config.diffusion
    return create_diffusion(f"ddim{sample_steps}", d.noise_schedule, learn_sigma=False,
                            diffusion_steps=d.diffusion_steps, prediction_type=d.prediction_type)


def one_step(config, model_fn, noise: torch.Tensor) -> torch.Tensor:
    """The model's x0 estimate from pure noise at the last timestep (DDIM with a single step from t = T-1):
    its estimate of the conditional mean, the PSNR-optimal output."""
    from latte.diffusion.gaussian import GaussianDiffusion, beta_schedule

    d = config.diffusion
    process = GaussianDiffusion(beta_schedule(d.noise_schedule, d.diffusion_steps), learn_sigma=False,
                                prediction_type=d.prediction_type)
    t = torch.full((noise.shape[0],), d.diffusion_steps - 1, dtype=torch.long)
    return process.xstart_from_prediction(noise, t, model_fn(noise, t))


def load_ema(checkpoint: Path):
    from latte.models.unet3d import UNet3D

    return UNet3D.from_pretrained(Path(checkpoint) / "ema").eval()


@torch.no_grad()
def eval_interp(config, checkpoint, clips: int, sample_steps: int, seed: int = 0) -> dict:
    from latte.data.transforms import interpolation_condition
    from latte.encoders import build_autoencoder

    k = config.lavie.interp_factor
    video = held_out(config, clips)  # (N, 3, F, S, S), F = k(n-1)+1
    ae = build_autoencoder(config.autoencoder)
    unet = load_ema(checkpoint)
    cond = interpolation_condition(ae.encode(video), k)
    text = torch.zeros(clips, 1, config.unet.cross_attention_dim)
    process = ddim(config, sample_steps)
    noise = torch.randn(cond.shape, generator=torch.Generator().manual_seed(seed))
    model_fn = lambda x, t: unet(torch.cat([x, cond], 1), t, text)  # noqa: E731
    latents = process.ddim_sample_loop(model_fn, cond.shape, noise=noise)
    out = ae.decode(latents).clamp(-1, 1)
    single = ae.decode(one_step(config, model_fn, noise)).clamp(-1, 1)

    frames = video.shape[2]
    blend = linear_blend(video[:, :, ::k], k)
    repeat = interpolation_condition(video, k)
    mid = [j for j in range(frames) if j % k]
    return {"model_psnr_inbetween": psnr(out[:, :, mid], video[:, :, mid]),
            "model_1step_psnr_inbetween": psnr(single[:, :, mid], video[:, :, mid]),
            "linear_blend_psnr_inbetween": psnr(blend[:, :, mid], video[:, :, mid]),
            "repeat_condition_psnr_inbetween": psnr(repeat[:, :, mid], video[:, :, mid]),
            "model_psnr_all_frames": psnr(out, video), "clips": clips, "frames": frames,
            "size": video.shape[-1], "sample_steps": sample_steps}


@torch.no_grad()
def eval_vsr(config, checkpoint, clips: int, sample_steps: int, noise_level: int, seed: int = 0) -> dict:
    from latte.data.transforms import downsample
    from latte.diffusion import noise_augmentation
    from latte.encoders import build_autoencoder

    s = config.lavie.scale_factor
    video = held_out(config, clips)  # (N, 3, F, S, S) high resolution
    low = downsample(video, s, config.lavie.downsample_kernel)
    ae = build_autoencoder(config.autoencoder)
    unet = load_ema(checkpoint)
    g = torch.Generator().manual_seed(seed)
    level = torch.full((clips,), noise_level, dtype=torch.long)
    low_aug = noise_augmentation().q_sample(low, level, torch.randn(low.shape, generator=g))
    text = torch.zeros(clips, 1, config.unet.cross_attention_dim)
    shape = (clips, config.unet.out_channels, *low.shape[2:])
    process = ddim(config, sample_steps)
    noise = torch.randn(shape, generator=g)
    model_fn = lambda x, t: unet(x, t, text, low_res=low_aug, class_labels=level)  # noqa: E731
    latents = process.ddim_sample_loop(model_fn, shape, noise=noise)
    out = ae.decode(latents).clamp(-1, 1)
    single = ae.decode(one_step(config, model_fn, noise)).clamp(-1, 1)
    n, c, f, h, w = low.shape
    flat = low.transpose(1, 2).reshape(n * f, c, h, w)
    bicubic = F.interpolate(flat, scale_factor=s, mode="bicubic", align_corners=False)
    bicubic = bicubic.reshape(n, f, c, h * s, w * s).transpose(1, 2).clamp(-1, 1)
    return {"model_psnr": psnr(out, video), "model_1step_psnr": psnr(single, video),
            "bicubic_psnr": psnr(bicubic, video), "clips": clips,
            "frames": f, "low_res": h, "high_res": h * s, "noise_level": noise_level, "sample_steps": sample_steps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stages", nargs="+", default=["interp", "vsr"], choices=["interp", "vsr"])
    p.add_argument("--steps", type=int, default=4000, help="optimizer steps per stage (~0.18 CPU s each)")
    p.add_argument("--clips", type=int, default=32, help="held-out clips per stage")
    p.add_argument("--sample-steps", type=int, default=25)
    p.add_argument("--noise-level", type=int, default=10, help="vsr: low-resolution augmentation level")
    p.add_argument("--checkpoint-interp", default=None, help="evaluate this checkpoint instead of training")
    p.add_argument("--checkpoint-vsr", default=None)
    p.add_argument("--out", default=None, help="also write the results as JSON")
    a = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    from latte.training.tasks.lavie import load_lavie_run_config

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in a.stages:
            given = getattr(a, f"checkpoint_{stage}")
            if given:
                config = load_lavie_run_config(Path(given) / "run_config.yaml")
                checkpoint, train_cpu, train_wall = Path(given), None, None
            else:
                config, checkpoint, train_cpu, train_wall = train_stage(stage, a.steps, Path(tmp) / stage)
            cpu, wall = time.process_time(), time.perf_counter()
            if stage == "interp":
                res = eval_interp(config, checkpoint, a.clips, a.sample_steps)
            else:
                res = eval_vsr(config, checkpoint, a.clips, a.sample_steps, a.noise_level)
            res.update(steps=config.train.max_steps, batch_size=config.train.batch_size, train_cpu_s=train_cpu,
                       train_wall_s=train_wall, eval_cpu_s=time.process_time() - cpu,
                       eval_wall_s=time.perf_counter() - wall)
            results[stage] = res
            print(stage, json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}),
                  flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
