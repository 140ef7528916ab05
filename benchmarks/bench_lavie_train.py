"""Do the tiny LaVie cascade stages learn their job? Train them on CPU on synthetic clips, compare with the classic
baselines on held-out clips (PSNR, dB, over pixels in [-1, 1] with peak-to-peak 2):

* interpolation (shipped config ``lavie/tiny_interp``: x4, 3 base frames -> 9 frames of 16x16): the model's
  in-between frames vs linear blending of the two surrounding base frames (and vs repeating the condition);
* super-resolution (shipped config ``lavie/tiny_vsr``: 8x8 -> 32x32, area-downsampled inputs): the model vs
  bicubic upsampling.

    python benchmarks/bench_lavie_train.py [--stages interp vsr] [--steps 400] [--clips 32] [--sample-steps 2 25]
        [--set lavie.residual=true diffusion.prediction_type=sample]
        [--checkpoint-interp RUN/checkpoints/step_N] [--checkpoint-vsr ...] [--out result.json]

One thread (``torch.set_num_threads(1)``); reports process CPU seconds (robust on a shared machine) and wall
seconds. Model outputs are sampled as the cascade samples them (:func:`latte.sampling.cascade.load_trained_stage`,
EMA weights): DDIM (eta 0, each of ``--sample-steps``, seed = clip index); 2 steps is close to the model's
conditional mean, the PSNR-optimal output. VSR at noise level ``--noise-level`` (within the trained range).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from latte.data.transforms import linear_blend
from latte.quickstart_cascade import psnr  # the cascade quickstart's PSNR


def train_stage(name: str, steps: int, run_dir: Path, extra: list[str]):
    from latte.training.tasks.lavie import load_lavie_run_config, train_lavie

    overrides = [f"train.max_steps={steps}", f"train.run_dir={run_dir}", f"train.ckpt_every={steps}",
                 f"train.warmup_steps={min(50, steps // 10)}", f"train.log_every={max(1, steps // 8)}", *extra]
    config = load_lavie_run_config(f"lavie/tiny_{name}", overrides)
    cpu, wall = time.process_time(), time.perf_counter()
    result = train_lavie(config, device="cpu", progress=False)
    return config, result.last_checkpoint, time.process_time() - cpu, time.perf_counter() - wall


def held_out(config, clips: int) -> torch.Tensor:
    """``(N, 3, F, S, S)`` clips of the synthetic 'val' split (placements never trained on)."""
    from latte.data import build_dataset

    dataset = build_dataset(config.data, split="val")
    return torch.stack([dataset[i]["video"] for i in range(clips)])


def sampled(steps: int, clips: int, fn) -> torch.Tensor:
    """``fn(settings, generator, i)`` for held-out clips ``i < clips`` with DDIM-``steps`` (eta 0, the official
    respaced loop, guidance off, seed i), concatenated and clamped to [-1, 1]."""
    from latte.sampling.cascade import StageSettings

    settings = StageSettings(prompt="", negative_prompt="", cfg_scale=1.0, steps=steps, sampler="ddim")
    return torch.cat([fn(settings, torch.Generator().manual_seed(i), i) for i in range(clips)]).clamp(-1, 1)


@torch.no_grad()
def eval_interp(config, checkpoint, clips: int, sample_steps: list[int]) -> dict:
    """The stage as the cascade samples it (:func:`latte.sampling.cascade.load_trained_stage`, EMA weights)."""
    from latte.data.transforms import interpolation_condition
    from latte.sampling.cascade import load_trained_stage

    k = config.lavie.interp_factor
    video = held_out(config, clips)  # (N, 3, F, S, S), F = k(n-1)+1
    stage = load_trained_stage(checkpoint)

    def fn(settings, g, i):
        return stage.interpolate(video[i:i + 1, :, ::k], settings, g, factor=k)

    frames = video.shape[2]
    mid = [j for j in range(frames) if j % k]
    result = {"linear_blend_psnr_inbetween": psnr(linear_blend(video[:, :, ::k], k)[:, :, mid], video[:, :, mid]),
              "repeat_condition_psnr_inbetween": psnr(interpolation_condition(video, k)[:, :, mid], video[:, :, mid]),
              "clips": clips, "frames": frames, "size": video.shape[-1], "residual": stage.residual,
              "prediction_type": stage.prediction_type}
    for steps in sample_steps:
        out = sampled(steps, clips, fn)
        result[f"model_psnr_inbetween_ddim{steps}"] = psnr(out[:, :, mid], video[:, :, mid])
        result[f"model_psnr_all_frames_ddim{steps}"] = psnr(out, video)
    return result


@torch.no_grad()
def eval_vsr(config, checkpoint, clips: int, sample_steps: list[int], noise_level: int) -> dict:
    from latte.data.transforms import bicubic_upsample, downsample
    from latte.sampling.cascade import load_trained_stage

    s = config.lavie.scale_factor
    video = held_out(config, clips)  # (N, 3, F, S, S) high resolution
    low = downsample(video, s, config.lavie.downsample_kernel)
    stage = load_trained_stage(checkpoint)

    def fn(settings, g, i):
        return stage.upscale_chunk(low[i:i + 1], settings, g, noise_level=noise_level)

    result = {"bicubic_psnr": psnr(bicubic_upsample(low, s), video), "clips": clips, "frames": low.shape[2],
              "low_res": low.shape[-1], "high_res": video.shape[-1], "noise_level": noise_level,
              "residual": stage.residual, "prediction_type": stage.prediction_type}
    for steps in sample_steps:
        result[f"model_psnr_ddim{steps}"] = psnr(sampled(steps, clips, fn), video)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stages", nargs="+", default=["interp", "vsr"], choices=["interp", "vsr"])
    p.add_argument("--steps", type=int, default=4000, help="optimizer steps per stage (~0.18 CPU s each)")
    p.add_argument("--clips", type=int, default=32, help="held-out clips per stage")
    p.add_argument("--sample-steps", type=int, nargs="+", default=[2, 25],
                   help="DDIM step counts to sample with (2: close to the conditional mean)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides of both stages, e.g. lavie.residual=true diffusion.prediction_type=sample")
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
                config, checkpoint, train_cpu, train_wall = train_stage(stage, a.steps, Path(tmp) / stage, a.set)
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
