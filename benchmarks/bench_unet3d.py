"""Sizes and CPU speed of the LaVie U-Nets (the three released stages at full size).

    OMP_NUM_THREADS=1 python benchmarks/bench_unet3d.py [--repeats 2] [--threads 1] [--no-timing]

Prints, per stage: parameters and forward FLOPs at the official run size (batch 1: base 16 x 40x64 latents,
interpolation 61 x 40x64, super-resolution one 8-frame chunk of 320x512 latents, CFG not included), counted by
``torch.utils.flop_counter`` on the meta device (matmuls, convolutions and attention; 2 FLOPs per multiply-add;
element-wise work not counted). Then CPU seconds per forward of the base model (random weights) at 16 x 40x64 in
float32 (SDPA attention) and bf16 autocast (attention_backend 'auto': explicit softmax on CPU): one warm-up
forward, then the median of ``--repeats``. Reported as process CPU seconds (with one thread: robust to other jobs
sharing the machine) and wall seconds.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from latte.models import UNet3D, unet3d_preset

RUN_SIZES = {  # (frames, latent height, latent width, text tokens, text dim) of the official runs
    "base": (16, 40, 64, 77, 768),
    "interp": (61, 40, 64, 77, 768),
    "vsr": (8, 320, 512, 77, 1024),
}


def stage_inputs(stage: str, device, dtype=torch.float32) -> dict:
    f, h, w, tokens, dim = RUN_SIZES[stage]
    c = 8 if stage == "interp" else 4
    kw = dict(sample=torch.randn(1, c, f, h, w, device=device, dtype=dtype),
              timestep=torch.tensor([500], device=device),
              encoder_hidden_states=torch.randn(1, tokens, dim, device=device, dtype=dtype))
    if stage == "vsr":
        kw.update(low_res=torch.randn(1, 3, f, h, w, device=device, dtype=dtype),
                  class_labels=torch.tensor([50], device=device))
    return kw


def sizes() -> None:
    print("| stage | parameters | forward TFLOPs (batch 1) | input |")
    print("|---|---|---|---|")
    for stage in RUN_SIZES:
        with torch.device("meta"):
            model = UNet3D(unet3d_preset(f"lavie-{stage}", attention_backend="sdpa"))
        params = sum(p.numel() for p in model.parameters())
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(**stage_inputs(stage, "meta"))
        f, h, w, _, _ = RUN_SIZES[stage]
        print(f"| {stage} | {params / 1e6:.1f} M | {counter.get_total_flops() / 1e12:.2f} | {f} x {h}x{w} |",
              flush=True)


def time_base(repeats: int) -> None:
    torch.manual_seed(0)
    model = UNet3D(unet3d_preset("lavie-base")).eval()
    kw = stage_inputs("base", "cpu")
    for name, backend, autocast in (("float32", "sdpa", False), ("bf16 autocast", "auto", True)):
        model.config.attention_backend = backend
        wall, cpu = [], []
        for _ in range(repeats + 1):
            start, start_cpu = time.perf_counter(), time.process_time()
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                model(**kw)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        print(f"base 16 x 40x64, batch 1, {name}: {statistics.median(cpu[1:]):.1f} CPU s per forward "
              f"(wall {statistics.median(wall[1:]):.1f} s; warm-up {cpu[0]:.1f} CPU s / {wall[0]:.1f} s wall; "
              f"timed runs CPU s {', '.join(f'{t:.1f}' for t in cpu[1:])})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="timed forwards per path (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-timing", action="store_true", help="only parameters and FLOPs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes()
    if not args.no_timing:
        time_base(args.repeats)


if __name__ == "__main__":
    main()
