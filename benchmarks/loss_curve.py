"""Does bf16 autocast train like float32? Two short runs from the same init, data, timesteps and noise.

    python benchmarks/loss_curve.py --config S/2 --steps 30 [--threads 1] [--output BENCHMARKS.md]

Both runs use the official initialisation (zeroed output layers), AdamW lr 1e-4 and a fixed set of 4 random
latent clips cycled in order; step ``i`` draws the same ``t`` and noise in both runs. Reported: the two loss
curves, the mean loss over the last half of each run and the largest relative gap of 5-step running means.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from setups import PATHS, SETUPS, conditioning, precision  # noqa: E402

from latte.diffusion import create_diffusion  # noqa: E402
from latte.models import Latte  # noqa: E402


def train_curve(setup, path, steps: int, seed: int = 0) -> tuple[list[float], float]:
    """Per-step training losses of ``steps`` AdamW steps and the seconds they took."""
    torch.manual_seed(seed)
    model = Latte(setup.config(path.attention)).train()
    cfg, device = model.config, torch.device("cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)
    diffusion = create_diffusion("")
    data = torch.Generator().manual_seed(seed + 1)
    clips = torch.randn(4, cfg.in_channels, setup.frames, setup.size, setup.size, generator=data)
    labels, _ = conditioning(setup, cfg, 4, device)
    losses, start = [], time.perf_counter()
    for step in tqdm(range(steps), desc=path.name, leave=False):
        i = step % len(clips)
        t = torch.randint(0, diffusion.num_timesteps, (1,), generator=data)
        noise = torch.randn(clips[i:i + 1].shape, generator=data)
        kwargs = {k: v[i:i + 1] for k, v in labels.items()}

        def forward(x, tt, **kw):
            with precision(path, device):
                return model(x, tt, **kw).float()

        loss = diffusion.training_losses(forward, clips[i:i + 1], t, kwargs, noise=noise)["loss"].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, time.perf_counter() - start


def running_mean(x: list[float], k: int = 5) -> list[float]:
    return [sum(x[max(0, i - k + 1):i + 1]) / len(x[max(0, i - k + 1):i + 1]) for i in range(len(x))]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="S/2", choices=list(SETUPS))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int)
    p.add_argument("--output", help="markdown file to append the result to (e.g. BENCHMARKS.md)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    setup = SETUPS[args.config]
    fp32, t32 = train_curve(setup, PATHS["sdpa"], args.steps)
    bf16, t16 = train_curve(setup, PATHS["bf16"], args.steps)
    half = args.steps // 2
    tail32, tail16 = sum(fp32[half:]) / (args.steps - half), sum(bf16[half:]) / (args.steps - half)
    gap = max(abs(a - b) / abs(a) for a, b in zip(running_mean(fp32), running_mean(bf16)))
    command = "python benchmarks/loss_curve.py " + " ".join(argv or sys.argv[1:])
    text = "\n".join([
        f"### bf16 vs float32 loss curve — {datetime.datetime.now():%Y-%m-%d %H:%M}, {args.config}, "
        f"{args.steps} steps, torch {torch.__version__}, {torch.get_num_threads()} threads", "",
        f"- Command: `{command}`",
        f"- Mean loss over steps {half}–{args.steps - 1}: float32 {tail32:.4f}, bf16 {tail16:.4f} "
        f"(relative difference {abs(tail16 - tail32) / tail32:.2%}); largest gap of 5-step running means "
        f"{gap:.2%}.",
        f"- Time for the {args.steps} steps: float32 {t32:.1f} s, bf16 {t16:.1f} s ({t32 / t16:.2f}×).",
        "- Losses (float32 / bf16): " + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(fp32, bf16)), ""])
    print(text)
    if args.output:
        with open(args.output, "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
