"""Frame selection and spatial transforms (numpy/torch only), matching the official Latte data pipeline.

Temporal (official ``TemporalRandomCrop`` + ``np.linspace``, spec §4.2)::

    size  = num_frames * frame_interval
    begin = randint(0, max(0, total - size - 1))          # inclusive bounds
    end   = min(begin + size, total)
    idx   = np.linspace(begin, end - 1, num_frames, dtype=int)

Evaluation uses the same window placed deterministically in the middle: ``begin = max(0, total - size - 1) // 2``.
The frame-folder datasets of the official code (sky, taichi) instead take ``frames[idx[0]:idx[-1]+1:frame_interval]``
(``frame_sampling: stride``).

Spatial: videos are float tensors ``(F, 3, H, W)`` in [0, 1] until :func:`normalize` maps them to [-1, 1].
``resize_center_crop`` is the official ``UCFCenterCropVideo`` (bilinear rescale of the short side to ``size``,
then a centered crop); ``center_crop_resize`` is ``CenterCropResizeVideo`` (centered square crop of the short
side, then a bilinear resize).

Cascade pairs (LaVie stages, built from one clip): temporal interpolation conditions output frame j of a ×k clip
on base frame ``interpolation_source_frames(n, k)[j]`` (:func:`interpolation_condition`); super-resolution pairs
a clip with its ×f :func:`downsample` (aligned crops via :func:`random_crop_offsets`).
"""
from __future__ import annotations

from typing import Literal, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "frame_size",
    "temporal_window",
    "frame_indices",
    "to_float_video",
    "center_crop",
    "resize_center_crop",
    "center_crop_resize",
    "hflip",
    "normalize",
    "to_uint8",
    "VideoTransform",
    "interpolation_source_frames",
    "expand_base_frames",
    "interpolation_condition",
    "linear_blend",
    "DOWNSAMPLE_KERNELS",
    "downsample",
    "bicubic_upsample",
    "random_crop_offsets",
]


def temporal_window(total: int, size: int, rng: Optional[np.random.Generator]) -> tuple[int, int]:
    """``(begin, end)`` of the official ``TemporalRandomCrop(size)`` over ``total`` frames; ``rng=None`` places
    the window deterministically in the middle of the allowed range (evaluation)."""
    if total < 1:
        raise ValueError(f"temporal_window: a clip needs at least one frame, got {total}")
    last_begin = max(0, total - size - 1)
    begin = int(rng.integers(0, last_begin + 1)) if rng is not None else last_begin // 2
    return begin, min(begin + size, total)


def frame_indices(total: int, num_frames: int, frame_interval: int, rng: Optional[np.random.Generator] = None,
                  sampling: Literal["linspace", "stride"] = "linspace") -> np.ndarray:
    """Indices of the ``num_frames`` frames to read from a clip of ``total`` frames.

    ``linspace``: official video datasets (``np.linspace(begin, end-1, num_frames, dtype=int)``; a clip shorter
    than the window repeats frames). ``stride``: official frame-folder datasets (every ``frame_interval``-th frame
    of the window); when the window is cut short by the clip end it falls back to ``linspace`` so the count is
    always ``num_frames``.
    """
    begin, end = temporal_window(total, num_frames * frame_interval, rng)
    if sampling == "stride":
        strided = np.arange(begin, end, frame_interval)
        if len(strided) >= num_frames:
            return strided[:num_frames]
    elif sampling != "linspace":
        raise ValueError(f"frame sampling must be 'linspace' or 'stride', got {sampling!r}")
    return np.linspace(begin, end - 1, num_frames, dtype=int)


def to_float_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(F, H, W, 3)`` → float32 ``(F, 3, H, W)`` in [0, 1] (official ``ToTensorVideo``)."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)


def center_crop(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Centered crop of ``(..., H, W)``; offsets ``round((H - height) / 2)`` as in torchvision's video ops."""
    h, w = video.shape[-2:]
    if h < height or w < width:
        raise ValueError(f"center_crop: frame {h}x{w} is smaller than the crop {height}x{width}")
    top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
    return video[..., top:top + height, left:left + width]


def _bilinear(video: torch.Tensor, antialias: bool, **kwargs) -> torch.Tensor:
    # frame by frame: a long high-resolution clip as one float batch could take gigabytes
    return torch.cat([F.interpolate(video[i:i + 1], mode="bilinear", align_corners=False, antialias=antialias,
                                    **kwargs) for i in range(video.shape[0])])


def frame_size(size: Union[int, Sequence[int]]) -> tuple[int, int]:
    """``(height, width)`` of a ``data.image_size``: a side (square frames) or ``[height, width]``."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def resize_center_crop(video: torch.Tensor, size: Union[int, Sequence[int]], antialias: bool = False) -> torch.Tensor:
    """Official ``UCFCenterCropVideo``: rescale ``(F, 3, H, W)`` so the short side is ``size`` (bilinear, scale
    factor ``size / min(H, W)``), then center-crop ``size x size``. ``size = (height, width)``: the smallest
    scale covering ``height x width``, then the centered crop of that size."""
    height, width = frame_size(size)
    h, w = video.shape[-2:]
    scale = max(height / h, width / w)
    resized = _bilinear(video, antialias, scale_factor=scale)
    return center_crop(resized, height, width)


def center_crop_resize(video: torch.Tensor, size: Union[int, Sequence[int]], antialias: bool = False) -> torch.Tensor:
    """Official ``CenterCropResizeVideo``: center-crop the largest square, then resize it to ``size x size``.
    ``size = (height, width)``: the largest centered window of that aspect ratio, resized to it."""
    height, width = frame_size(size)
    h, w = video.shape[-2:]
    if h * width >= w * height:  # the frame is taller than the target: keep its width
        crop_h, crop_w = min(h, round(w * height / width)), w
    else:
        crop_h, crop_w = h, min(w, round(h * width / height))
    return _bilinear(center_crop(video, crop_h, crop_w), antialias, size=(height, width))


def hflip(video: torch.Tensor) -> torch.Tensor:
    """Mirror left-right (last dim)."""
    return video.flip(-1)


def normalize(video: torch.Tensor) -> torch.Tensor:
    """[0, 1] → [-1, 1] (official ``Normalize(mean=0.5, std=0.5)``)."""
    return video.mul(2.0).sub_(1.0)


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """Model-space ``(3, F, H, W)`` in [-1, 1] → uint8 ``(F, H, W, 3)`` for writing (clamped, rounded)."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"to_uint8: expected (3, F, H, W), got {tuple(video.shape)}")
    x = ((video.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).numpy()


class VideoTransform:
    """uint8 frames ``(F, H, W, 3)`` → model input ``(3, F, size, size)`` (or ``(3, F, height, width)`` for
    ``size = (height, width)``) in [-1, 1].

    Order as in the official pipeline: to float → optional horizontal flip → spatial crop/resize → normalize.
    ``crop``: ``resize_center_crop`` | ``center_crop_resize`` (see module docstring).
    """

    def __init__(self, size: Union[int, Sequence[int]], crop: str = "resize_center_crop", antialias: bool = False):
        ops = {"resize_center_crop": resize_center_crop, "center_crop_resize": center_crop_resize}
        if crop not in ops:
            raise ValueError(f"crop must be one of {sorted(ops)}, got {crop!r}")
        self.size, self.crop, self.antialias = size, ops[crop], antialias

    def __call__(self, frames: np.ndarray, flip: bool = False) -> torch.Tensor:
        video = to_float_video(frames)
        if flip:
            video = hflip(video)
        video = self.crop(video, self.size, antialias=self.antialias)
        return normalize(video).permute(1, 0, 2, 3).contiguous()


# --------------------------------------------------------------------------------------------------------------
# Cascade pairs: temporal interpolation and super-resolution
# --------------------------------------------------------------------------------------------------------------


def interpolation_source_frames(num_base: int, factor: int) -> np.ndarray:
    """Base frame each output frame of a ×``factor`` temporal interpolation is conditioned on, int64
    ``(factor·(num_base−1)+1,)``.

    Output frame j sits at base time ``j/k``; it is conditioned on the nearest base frame, ties going to the
    earlier one: ``⌊(2j + k − 1) / 2k⌋``. For k = 4 this is LaVie's official ``⌊(j+1)/4⌋`` (16 → 61: frame 0
    three times, frames 1–14 four times, frame 15 twice); for k = 3 it is ``⌊(j+1)/3⌋``; k = 1 is the identity.
    Every k-th output frame ``k·i`` is conditioned on base frame i itself.
    """
    if num_base < 1 or factor < 1:
        raise ValueError(f"interpolation needs num_base >= 1 and factor >= 1, got {num_base} and {factor}")
    j = np.arange(factor * (num_base - 1) + 1, dtype=np.int64)
    return (2 * j + factor - 1) // (2 * factor)


def expand_base_frames(base: torch.Tensor, factor: int, dim: int = 2) -> torch.Tensor:
    """The interpolation condition from ``n`` base frames along ``dim`` (e.g. latents ``(B, C, n, h, w)``):
    ``factor·(n−1)+1`` frames, output frame j = base frame :func:`interpolation_source_frames` ``[j]``."""
    index = torch.from_numpy(interpolation_source_frames(base.shape[dim], factor)).to(base.device)
    return base.index_select(dim, index)


def linear_blend(base: torch.Tensor, factor: int, dim: int = 2) -> torch.Tensor:
    """The classic interpolation baseline: ``n`` base frames along ``dim`` → ``factor·(n−1)+1`` frames, output
    frame ``j`` the blend of base frames ``i = ⌊j/k⌋`` and ``i+1`` at weight ``(j − k·i)/k`` (frame ``k·i`` is base
    frame ``i`` itself). Works on pixels and on latents (e.g. ``(B, C, n, h, w)``)."""
    n = base.shape[dim]
    if n < 1 or factor < 1:
        raise ValueError(f"linear blend needs >= 1 base frame and factor >= 1, got {n} and {factor}")
    j = torch.arange(factor * (n - 1) + 1, dtype=torch.float64)
    left = torch.clamp(j // factor, max=max(n - 2, 0)).long()
    weight = (j / factor - left).to(base.dtype).to(base.device)
    right = torch.clamp(left + 1, max=n - 1)
    shape = [1] * base.ndim
    shape[dim] = -1
    a, b = base.index_select(dim, left.to(base.device)), base.index_select(dim, right.to(base.device))
    return a + weight.reshape(shape) * (b - a)


def interpolation_condition(video: torch.Tensor, factor: int, dim: int = 2) -> torch.Tensor:
    """Training pair of the interpolation stage from one high-frame-rate clip of ``F = factor·(n−1)+1`` frames
    along ``dim``: its every ``factor``-th frame (the base clip, n frames) expanded back to F frames by
    :func:`expand_base_frames`. Same shape as ``video``."""
    frames = video.shape[dim]
    if (frames - 1) % factor:
        raise ValueError(f"interpolation ×{factor}: a training clip needs {factor}·(n−1)+1 frames (e.g. "
                         f"{factor * 15 + 1} for 16 base frames), got {frames}")
    base = video.index_select(dim, torch.arange(0, frames, factor, device=video.device))
    return expand_base_frames(base, factor, dim)


DOWNSAMPLE_KERNELS = ("area", "bicubic")


def downsample(video: torch.Tensor, factor: int, kernel: str = "area") -> torch.Tensor:
    """Shrink the last two dims ``(..., H, W)`` → ``(..., H/factor, W/factor)`` (H and W divisible by factor).

    ``area``: the mean of each ``factor × factor`` block (box filter; the synthetic renderer anti-aliases the
    same way, so a downsampled ×4 render is the base render up to rounding). ``bicubic``: antialiased bicubic
    (Keys a = −0.5, the support widened by ``factor``: PIL's ``Image.resize(BICUBIC)``).
    """
    if kernel not in DOWNSAMPLE_KERNELS:
        raise ValueError(f"downsample kernel must be one of {', '.join(DOWNSAMPLE_KERNELS)}, got {kernel!r}")
    h, w = video.shape[-2:]
    if factor < 1 or h % factor or w % factor:
        raise ValueError(f"downsample ×{factor}: frame {h}x{w} is not divisible by the factor")
    flat = video.reshape(-1, 1, h, w)
    if kernel == "area":
        small = F.avg_pool2d(flat, factor)
    else:
        small = F.interpolate(flat, size=(h // factor, w // factor), mode="bicubic", align_corners=False,
                              antialias=True)
    return small.reshape(*video.shape[:-2], h // factor, w // factor)


def bicubic_upsample(video: torch.Tensor, factor: int) -> torch.Tensor:
    """Enlarge the last two dims ``(..., h, w)`` → ``(..., h·factor, w·factor)``: bicubic (Keys a = −0.75, as
    PyTorch), clamped to [-1, 1] — the classic super-resolution baseline."""
    h, w = video.shape[-2:]
    flat = video.reshape(-1, 1, h, w)
    up = F.interpolate(flat, scale_factor=factor, mode="bicubic", align_corners=False)
    return up.reshape(*video.shape[:-2], h * factor, w * factor).clamp(-1, 1)


def random_crop_offsets(height: int, width: int, crop_height: int, crop_width: int, multiple: int = 1,
                        generator: Optional[torch.Generator] = None) -> tuple[int, int]:
    """``(top, left)`` of a uniformly random ``crop_height × crop_width`` window inside ``height × width``,
    both multiples of ``multiple`` (so the window maps exactly onto a ×multiple smaller grid: low-resolution
    frames, latents)."""
    if crop_height > height or crop_width > width:
        raise ValueError(f"crop {crop_height}x{crop_width} is larger than the frame {height}x{width}")
    if crop_height % multiple or crop_width % multiple:
        raise ValueError(f"crop {crop_height}x{crop_width} must be a multiple of {multiple}")
    rows = (height - crop_height) // multiple + 1
    cols = (width - crop_width) // multiple + 1
    top, left = divmod(int(torch.randint(rows * cols, (1,), generator=generator)), cols)
    return top * multiple, left * multiple
