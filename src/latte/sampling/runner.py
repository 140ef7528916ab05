"""``latte sample`` logic: split the requested videos over torchrun ranks, skip finished ones, save as you go.

Video ``i`` belongs to rank ``i % world_size`` and is written as ``{i:05d}.{mp4,gif,png}`` + ``{i:05d}.json``
(seed ``seed + i``), so any number of processes, restarted any number of times, produces the same files.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from tqdm.auto import tqdm

from latte.io import ensure_writable_dir
from latte.sampling.outputs import is_done, parse_formats, save_videos

__all__ = ["SampleJob", "run_job", "read_prompts"]


@dataclass
class SampleJob:
    """Everything one ``latte sample`` invocation asks for (None = the model's official default)."""

    out_dir: str
    num_videos: int
    prompts: Optional[list[str]] = None
    classes: Optional[list[str]] = None
    seed: int = 0
    sampler: Optional[str] = None
    steps: Optional[int] = None
    cfg_scale: Optional[float] = None
    frames: Optional[int] = None
    height: Optional[int] = None
    width: Optional[int] = None
    fps: float = 8
    formats: Sequence[str] = ("mp4",)
    batch_size: int = 1
    cache: Optional[str] = None  # step cache spec, e.g. 'teacache:0.1' (latte.sampling.cache)
    window: Optional[int] = None  # temporal windows for long videos (see latte.sampling.long_video)
    window_stride: Optional[int] = None
    image: Optional[str] = None  # image-to-video / extension (frame-conditioned models; latte.sampling.given_frames)
    extend: Optional[str] = None
    context_frames: Optional[int] = None


def read_prompts(path: str) -> list[str]:
    """Prompts from a text file: one per line; blank lines and lines starting with '#' are skipped."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--prompts {path}: file not found (expected one prompt per line)")
    prompts = [line.strip() for line in p.read_text().splitlines()]
    prompts = [x for x in prompts if x and not x.startswith("#")]
    if not prompts:
        raise ValueError(f"--prompts {path}: no prompts in the file")
    return prompts


def run_job(pipe, job: SampleJob, rank: int = 0, world_size: int = 1, progress: bool = True) -> dict:
    """Make this rank's share of the job's videos; returns ``{"made": [...], "skipped": [...], "seconds": s}``."""
    formats = parse_formats(job.formats)
    ensure_writable_dir(job.out_dir)  # "cannot write to <dir>" now, not after the first video
    mine = [i for i in range(job.num_videos) if i % world_size == rank]
    pending = [i for i in mine if not is_done(job.out_dir, i, formats)]
    skipped = sorted(set(mine) - set(pending))
    start = time.perf_counter()
    made: list[int] = []
    bar = tqdm(total=len(pending), desc=f"videos (rank {rank})" if world_size > 1 else "videos", unit="video",
               disable=not progress, position=rank)
    if pending:
        batches = pipe.iter_batches(prompts=job.prompts, classes=job.classes, seed=job.seed, indices=pending,
                                    sampler=job.sampler, steps=job.steps, cfg_scale=job.cfg_scale, frames=job.frames,
                                    height=job.height, width=job.width, batch_size=job.batch_size,
                                    progress=progress, cache=job.cache, window=job.window,
                                    window_stride=job.window_stride, image=job.image, extend=job.extend,
                                    context_frames=job.context_frames)
        for out in batches:
            save_videos(out, job.out_dir, formats, fps=job.fps)
            made.extend(r["index"] for r in out.records)
            bar.update(len(out.records))
    bar.close()
    return {"made": made, "skipped": skipped, "seconds": time.perf_counter() - start}


def summarize(results: list[dict], job: SampleJob) -> str:
    """One line for rank 0: what was made now, what was already there, what is present in total."""
    formats = parse_formats(job.formats)
    made = sum(len(r["made"]) for r in results)
    skipped = sum(len(r["skipped"]) for r in results)
    present = sum(is_done(job.out_dir, i, formats) for i in range(job.num_videos))
    seconds = max((r["seconds"] for r in results), default=0.0)
    rate = f", {seconds / made:.1f} s/video" if made else ""
    return (f"latte sample: {present}/{job.num_videos} videos in {job.out_dir} ({made} made now by "
            f"{len(results)} process(es) in {seconds:.0f} s{rate}; {skipped} already present)")
