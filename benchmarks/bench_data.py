"""Decode throughput of the data pipeline on this machine: clips/s for several sources.

    python benchmarks/bench_data.py [--clips 32] [--size 256] [--frames 16] [--workers 0 2]

Writes temporary H.264 files (source resolution --src-height x --src-width, --src-frames long), then times
``dataset[i]`` (seek/decode + resize/crop + normalize) through a DataLoader, plus synthetic rendering.
Prints one line per case.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_files(root: Path, count: int, frames: int, height: int, width: int) -> None:
    from latte.data.video_io import write_mp4

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(frames, height // 8, width // 8, 3), dtype=np.uint8)
    video = base.repeat(8, axis=1).repeat(8, axis=2)  # blocky content: realistic bitrate, fast to make
    for k in range(count):
        write_mp4(root / f"clip_{k:03d}.mp4", np.roll(video, k, axis=2), fps=25, crf=23)


def time_loader(dataset, workers: int, clips: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=workers,
                                         sampler=list(range(min(clips, len(dataset)))))
    start = time.perf_counter()
    n = sum(1 for _ in loader)
    return n / (time.perf_counter() - start)


def main() -> None:
    from latte.config import from_dict
    from latte.data import DataConfig, build_dataset

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=24, help="clips timed per case")
    p.add_argument("--files", type=int, default=8, help="distinct video files written")
    p.add_argument("--size", type=int, default=256, help="output frame side (data.image_size)")
    p.add_argument("--frames", type=int, default=16, help="data.num_frames")
    p.add_argument("--interval", type=int, default=3, help="data.frame_interval")
    p.add_argument("--src-frames", type=int, default=300, help="frames per source video")
    p.add_argument("--src-height", type=int, default=360)
    p.add_argument("--src-width", type=int, default=640)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to try")
    args = p.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        make_files(root, args.files, args.src_frames, args.src_height, args.src_width)
        print(f"wrote {args.files} files of {args.src_frames} frames {args.src_width}x{args.src_height} "
              f"in {time.perf_counter() - t:.1f}s")
        common = {"image_size": args.size, "num_frames": args.frames, "frame_interval": args.interval}
        videos = build_dataset(from_dict(DataConfig, {"kind": "videos", "path": str(root), **common}),
                               progress=False)
        syn = build_dataset(from_dict(DataConfig, {**common, "synthetic": {"num_videos": args.clips}}))
        for workers in args.workers:
            rate = time_loader(videos, workers, args.clips)
            print(f"videos  {args.src_width}x{args.src_height} -> {args.frames}x{args.size}^2, workers {workers}: "
                  f"{rate:6.2f} clips/s")
        rate = time_loader(syn, 0, args.clips)
        print(f"synthetic shapes {args.frames}x{args.size}^2, workers 0: {rate:6.2f} clips/s")


if __name__ == "__main__":
    main()
