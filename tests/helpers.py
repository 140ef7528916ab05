"""Shared test helpers: a tiny Latte run config and structured data, a fake text encoder, and a subprocess
entry point for the kill/resume tests.

``python tests/helpers.py CONFIG.json [--resume PATH] [--kill-at-step N] [--kill-in-save N]
[--signal-at-step N]`` trains in a fresh process; the kill options SIGKILL it at a chosen moment.
"""
from __future__ import annotations

import json
import os
import signal
import sys

import torch

from latte.config import from_dict
from latte.training import RunConfig, TensorItems

TINY_MODEL = dict(input_size=8, num_frames=4, in_channels=4, hidden_size=32, depth=2, num_heads=2)


def tiny_config(run_dir, **train) -> dict:
    """Plain-data run config of a ~60k-parameter model on 4x8x8 latents (4 channels)."""
    base = dict(run_dir=str(run_dir), max_steps=6, batch_size=4, lr=1e-3, ema_decay=0.9, log_every=2,
                ckpt_every=3, num_workers=0, seed=7)
    base.update(train)
    return {"model": dict(TINY_MODEL), "autoencoder": {"kind": "identity"}, "train": base}


def build(data: dict) -> RunConfig:
    return from_dict(RunConfig, data)


def moving_blobs(n: int = 16, channels: int = 4, frames: int = 4, size: int = 8, seed: int = 0) -> torch.Tensor:
    """``(n, C, F, size, size)`` latents: a Gaussian blob per clip moving one pixel per frame, per-channel sign."""
    g = torch.Generator().manual_seed(seed)
    coords = torch.arange(size).float()
    out = torch.zeros(n, channels, frames, size, size)
    for i in range(n):
        y0, x0 = torch.randint(1, size - 1, (2,), generator=g).tolist()
        dy, dx = [(1, 0), (0, 1), (-1, 0), (0, -1)][i % 4]
        signs = torch.where(torch.rand(channels, generator=g) < 0.5, -1.0, 1.0)
        for f in range(frames):
            cy, cx = (y0 + dy * f) % size, (x0 + dx * f) % size
            blob = torch.exp(-((coords[:, None] - cy) ** 2 + (coords[None, :] - cx) ** 2) / 3.0)
            out[i, :, f] = signs[:, None, None] * (2 * blob - 0.5)
    return out


def tiny_dataset(n: int = 16, classes: int | None = None) -> TensorItems:
    y = torch.arange(n) % classes if classes else None
    return TensorItems(moving_blobs(n), y=y)


def state_of(ckpt_dir, which: str = "model") -> dict:
    from safetensors.torch import load_file

    return load_file(os.path.join(ckpt_dir, which, "model.safetensors"))


class FakeTextEncoder:
    """Deterministic features per prompt (fast stand-in for MiniLM/T5); the empty prompt gives zeros."""

    dim, max_length, truncate_to_valid = 16, 5, False

    def __init__(self):
        self.calls = 0

    def encode(self, prompts):
        self.calls += 1
        hidden = torch.stack([torch.full((5, 16), float(len(p))) for p in prompts])
        mask = torch.stack([torch.arange(5) < (1 + len(p) % 4 if p else 1) for p in prompts])
        return hidden, mask

    def null_embedding(self):
        return self.encode([""])

    def identity(self):
        return {"kind": "fake"}


def distributed_worker(rank: int, world_size: int, port: int, config: dict) -> None:
    """One rank of a CPU/gloo process group training ``config`` on :func:`tiny_dataset` (for mp.spawn)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from latte.training.trainer import train

    train(build(config), dataset=tiny_dataset(), device="cpu")


def _main(argv: list[str]) -> int:
    import argparse

    from latte.training import checkpoint as ckpt
    from latte.training.trainer import train

    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("--resume", default=None)
    p.add_argument("--kill-at-step", type=int, default=None)
    p.add_argument("--kill-in-save", type=int, default=None, help="SIGKILL while writing this step's checkpoint")
    p.add_argument("--signal-at-step", type=int, default=None, help="send SIGTERM to itself after this step")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    config = build(json.loads(open(a.config).read()))

    def on_step_end(trainer):
        if trainer.step == a.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        if trainer.step == a.signal_at_step:
            os.kill(os.getpid(), signal.SIGTERM)

    if a.kill_in_save is not None:  # die after the first file of that checkpoint is on disk
        real_fsync = ckpt.fsync_path

        def dying_fsync(path):
            real_fsync(path)
            if f"step_{a.kill_in_save:07d}" in str(path):
                os.kill(os.getpid(), signal.SIGKILL)

        ckpt.fsync_path = dying_fsync
    result = train(config, dataset=tiny_dataset(), resume=a.resume, on_step_end=on_step_end)
    print(json.dumps({"step": result.step, "stopped_by": result.stopped_by}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
