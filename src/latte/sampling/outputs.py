"""Writing sampled videos: ``{index:05d}.mp4`` / ``.gif`` / ``.png`` (frame grid) and a ``{index:05d}.json``
sidecar per video.

The sidecar is written last (atomically), so its presence marks a finished video; :func:`is_done` uses that to
resume an interrupted run. A full disk or a read-only folder is an :class:`latte.io.OutputError` naming the file
or folder.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from latte.io import atomic_write_text, ensure_writable_dir, writing
from latte.sampling.pipeline import SampleOutput

__all__ = ["FORMATS", "save_videos", "video_stem", "is_done", "parse_formats"]

FORMATS = {"mp4": ".mp4", "gif": ".gif", "png-grid": ".png"}


def parse_formats(text: Union[str, Sequence[str]]) -> tuple[str, ...]:
    """``"mp4,gif"`` → ``("mp4", "gif")``; unknown names are an error listing the valid ones."""
    items = [f.strip() for f in (text.split(",") if isinstance(text, str) else text) if f.strip()]
    bad = [f for f in items if f not in FORMATS]
    if bad or not items:
        raise ValueError(f"unknown output format(s) {bad or items}: choose from {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(items))


def video_stem(index: int) -> str:
    return f"{index:05d}"


def is_done(out_dir: Union[str, Path], index: int, formats: Sequence[str]) -> bool:
    """True when video ``index`` has its sidecar and every requested file in ``out_dir``."""
    out_dir = Path(out_dir)
    stem = video_stem(index)
    return (out_dir / f"{stem}.json").is_file() and all((out_dir / f"{stem}{FORMATS[f]}").is_file()
                                                        for f in formats)


def save_videos(output: SampleOutput, out_dir: Union[str, Path], formats: Sequence[str] = ("mp4",),
                fps: float = 8) -> list[Path]:
    """Write every video of ``output`` (uint8 ``(N, F, H, W, 3)``) and its JSON sidecar; returns the sidecars.

    The sidecar holds the record (index, seed, prompt or class, sampler, steps, cfg scale, size, checkpoint,
    model config hash, encoders), the fps and the names of the written files.
    """
    from latte.data.video_io import write_gif, write_mp4, write_png_grid

    formats = parse_formats(formats)
    videos = output.videos
    if not isinstance(videos, np.ndarray) or videos.dtype != np.uint8 or videos.ndim != 5:
        raise ValueError("save_videos needs uint8 videos (N, F, H, W, 3): call the pipeline with output_type='uint8'")
    out_dir = ensure_writable_dir(out_dir)
    sidecars = []
    for frames, record in zip(videos, output.records):
        stem = video_stem(record["index"])
        files = {}
        for fmt in formats:
            path = out_dir / f"{stem}{FORMATS[fmt]}"
            with writing(path):  # disk full / read-only: "no space left writing <file>", not a codec traceback
                if fmt == "mp4":
                    write_mp4(path, frames, fps=fps)
                elif fmt == "gif":
                    write_gif(path, frames, fps=fps)
                else:
                    write_png_grid(path, frames, nrow=math.ceil(math.sqrt(len(frames))))
            files[fmt] = path.name
        sidecar = out_dir / f"{stem}.json"  # written last, atomically: it marks the video as finished
        atomic_write_text(sidecar, json.dumps({**record, "fps": fps, "files": files}, indent=2, default=str) + "\n")
        sidecars.append(sidecar)
    return sidecars
