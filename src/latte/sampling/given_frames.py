"""Given frames at sampling time: image-to-video, extension of a video, and autoregressive long videos, for
models trained with frame conditioning (``model.frame_conditioning``; training: ``train.given_frames``).

One loop does all three (:func:`extend_clips`): the video so far (latents; empty, one image frame, or the frames
of a video to extend) is continued clip by clip. Each clip has the model's trained length; its first ``k`` frames
are the last ``k`` latent frames of the video so far, given clean (held exactly by the sampler), and the rest is
generated and appended. With nothing given and ``frames`` <= the trained length it is one plain clip: exactly
plain sampling.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Union

import numpy as np
import torch

from latte.data.transforms import center_crop_resize, normalize, to_float_video
from latte.data.video_io import VideoReadError, probe_video, read_all_frames, read_image
from latte.io import InputError

__all__ = ["read_given", "pixels_to_model_space", "extend_clips", "given_record", "count_clips"]

# (given latents (B, C, L, h, w), mask (B, L) bool, clip index) -> clip latents (B, C, L, h, w)
ClipSampler = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
Given = Union[str, Path, np.ndarray]


def read_given(value: Given, kind: str, max_frames: int | None = None,
               max_pixels: int | None = None) -> tuple[np.ndarray, str | None]:
    """An image (``kind='image'``) or video (``'extend'``) from a path or a uint8 array → uint8 ``(F, H, W, 3)``
    (one frame for an image) and the source path (None for arrays). Errors name the option and the file.

    ``max_frames`` / ``max_pixels`` (per frame) bound what is accepted (a server taking uploads): a video file is
    checked from its header before it is decoded."""
    if isinstance(value, np.ndarray):
        frames = value[None] if value.ndim == 3 else value
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"{kind}: expected uint8 (H, W, 3) or (F, H, W, 3), got {value.dtype} "
                             f"{tuple(value.shape)}")
        if kind == "image" and frames.shape[0] != 1:
            raise ValueError(f"image: expected one frame (H, W, 3), got {frames.shape[0]} frames")
        _check_size(f"{kind}:", len(frames), frames.shape[2], frames.shape[1], max_frames, max_pixels)
        return frames, None
    path = Path(value)
    if path.is_dir():
        raise InputError(f"--{kind} {path}: is a folder, expected an {'image' if kind == 'image' else 'video'} file")
    try:
        if kind == "image":
            frames = read_image(path)[None]
        else:
            if max_frames is not None or max_pixels is not None:
                info = probe_video(path)
                _check_size(f"--{kind} {path}:", info.num_frames, info.width, info.height, max_frames, max_pixels)
            frames = read_all_frames(path)
    except VideoReadError as e:
        what = "an image (png, jpg, ...)" if kind == "image" else "a video (mp4, ...)"
        raise InputError(f"--{kind} {path}: cannot be read as {what}: {e.reason}"
                         + (f" ({e.detail})" if e.detail else "")) from None
    _check_size(f"--{kind} {path}:", len(frames), frames.shape[2], frames.shape[1], max_frames, max_pixels)
    return frames, str(path)


def _check_size(what: str, frames: int, width: int, height: int, max_frames: int | None,
                max_pixels: int | None) -> None:
    if max_frames is not None and frames > max_frames:
        raise InputError(f"{what} {frames} frames, at most {max_frames} are accepted")
    if max_pixels is not None and width * height > max_pixels:
        raise InputError(f"{what} {width}x{height} px, at most {max_pixels} pixels per frame are accepted")


def pixels_to_model_space(frames: np.ndarray, height: int, width: int, kind: str) -> torch.Tensor:
    """uint8 ``(F, H, W, 3)`` → ``(1, 3, F, height, width)`` in [-1, 1]; a square frame of another size is
    resized (largest centred square), other sizes are refused."""
    video = to_float_video(frames)  # (F, 3, H, W) in [0, 1]
    if tuple(video.shape[-2:]) != (height, width):
        if height != width:
            raise ValueError(f"{kind}: frames are {video.shape[-2]}x{video.shape[-1]}, expected {height}x{width}")
        video = center_crop_resize(video, height, antialias=True)
    return normalize(video).permute(1, 0, 2, 3)[None]


def extend_clips(sample_clip: ClipSampler, prefix: torch.Tensor, frames: int, clip_frames: int,
                 context_frames: int) -> torch.Tensor:
    """Continue ``prefix (B, C, P, h, w)`` (P may be 0) to ``frames`` latent frames, clip by clip.

    Each clip has ``min(clip_frames, k + missing)`` frames, of which the first ``k = min(context_frames, frames
    so far)`` are the last frames so far, given; ``sample_clip`` returns the clip and its generated frames are
    appended. Returns ``(B, C, frames, h, w)`` whose first P frames are ``prefix``.
    """
    if not 0 <= context_frames < clip_frames:
        raise ValueError(f"context_frames: expected 0..{clip_frames - 1} (the clip has {clip_frames} frames), "
                         f"got {context_frames}")
    if prefix.shape[2] >= frames:
        raise ValueError(f"frames ({frames}) must exceed the given frames ({prefix.shape[2]})")
    if prefix.shape[2] and context_frames == 0:
        raise ValueError("context_frames 0: the given frames would not condition anything")
    video, index = prefix, 0
    b, c, _, h, w = prefix.shape
    while video.shape[2] < frames:
        k = min(context_frames, video.shape[2])
        length = min(clip_frames, k + frames - video.shape[2])
        given = prefix.new_zeros((b, c, length, h, w))
        mask = torch.zeros(b, length, dtype=torch.bool, device=prefix.device)
        if k:
            given[:, :, :k] = video[:, :, -k:]
            mask[:, :k] = True
        clip = sample_clip(given, mask, index)
        video = torch.cat([video, clip[:, :, k:].to(video.dtype)], dim=2)
        index += 1
    return video


def given_record(kind: str, source: str | None, given: int, context_frames: int, clip_frames: int,
                 clips: int) -> dict:
    """The sidecar entry ``given_frames``."""
    rec = {"mode": kind, "given_frames": given, "context_frames": context_frames, "clip_frames": clip_frames,
           "clips": clips, "hold": "replace-with-clean every step"}
    if source is not None:
        rec["source"] = source
    return rec


def count_clips(given: int, frames: int, clip_frames: int, context_frames: int) -> int:
    """How many clips :func:`extend_clips` samples."""
    n, done = 0, given
    while done < frames:
        k = min(context_frames, done)
        done += min(clip_frames, k + frames - done) - k
        n += 1
    return n
