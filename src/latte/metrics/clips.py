"""Where evaluation clips come from and which ones are used (the StyleGAN-V / Latte clip protocol, seeded).

Sources (:func:`scan_videos`): a folder of video files (mp4, avi, ... — e.g. the output of ``latte sample``,
whose ``<name>.json`` sidecars become the entry's ``meta``), a folder of frame folders (``root/<video>/<frame>``,
the layout of Latte's ``tools/``), or in-memory tensors (:func:`tensor_videos`: no MP4/JPEG round trip).

Selection (:func:`select_clips`): videos shorter than ``num_frames * stride`` are dropped (as StyleGAN-V's
``discard_short_videos``); when more remain than requested, a seeded random subset is taken (Latte's unseeded
``random.sample``, made reproducible); each clip starts at a seeded random offset (real data) or at frame 0
(generated data). Every clip is a uint8 tensor ``(3, T, H, W)``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

__all__ = ["VideoEntry", "scan_videos", "tensor_videos", "select_clips", "selection_digest", "ClipDataset",
           "extract_features", "codec_path", "center_crop_resize_uint8", "RESIZE_KERNELS"]


@dataclass
class VideoEntry:
    """One source video: ``read(indices) -> uint8 (len(indices), H, W, 3)``; ``meta`` from its JSON sidecar."""

    name: str
    num_frames: int
    read: Callable[[list[int]], np.ndarray]
    meta: dict = field(default_factory=dict)
    source: str = "tensor"  # how frames are decoded: "video" (PyAV/FFmpeg), "frames" (PIL images), "tensor"


def _read_sidecar(path: Path) -> dict:
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return {}
    try:
        data = json.loads(sidecar.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{sidecar}: not valid JSON ({e})") from None
    return data if isinstance(data, dict) else {}


def scan_videos(root: str | Path) -> list[VideoEntry]:
    """Every video file and every frame folder directly under ``root``, in natural name order."""
    from latte.data.video_io import (VIDEO_EXTENSIONS, list_frame_images, natural_sort_key, probe_video,
                                     read_image_frames, read_video_frames)

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"video folder not found: {root}")
    entries = []
    for path in sorted(root.iterdir(), key=lambda p: natural_sort_key(p.name)):
        if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
            count = probe_video(path).num_frames
            entries.append(VideoEntry(path.name, count, lambda idx, p=path: read_video_frames(p, idx),
                                      _read_sidecar(path), source=f"video{path.suffix.lower()}"))
        elif path.is_dir():
            frames = list_frame_images(path)
            if frames:
                entries.append(VideoEntry(path.name, len(frames), lambda idx, f=frames: read_image_frames(f, idx),
                                          _read_sidecar(path), source=f"frames{frames[0].suffix.lower()}"))
    if not entries:
        raise ValueError(f"{root}: no videos found (expected video files such as .mp4, or frame folders "
                         f"root/<video>/<frame>.png)")
    return entries


def tensor_videos(videos: torch.Tensor, metas: list[dict] | None = None) -> list[VideoEntry]:
    """In-memory videos ``(N, 3, F, H, W)``: uint8, or float in [-1, 1] (quantized as the sampler does)."""
    if videos.ndim != 5 or videos.shape[1] != 3:
        raise ValueError(f"expected videos (N, 3, F, H, W), got {tuple(videos.shape)}")
    if videos.dtype != torch.uint8:
        videos = ((videos.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    frames = videos.permute(0, 2, 3, 4, 1).cpu().numpy()  # (N, F, H, W, 3)
    metas = metas or [{} for _ in range(len(frames))]
    return [VideoEntry(f"tensor_{i:06d}", frames.shape[1], lambda idx, v=v: v[list(idx)], metas[i])
            for i, v in enumerate(frames)]


def select_clips(lengths: list[int], num_clips: int, num_frames: int, stride: int, random_offset: bool,
                 seed: int) -> list[tuple[int, int]]:
    """``(video index, first frame)`` of up to ``num_clips`` clips; deterministic in ``seed``."""
    if num_frames < 1 or stride < 1 or num_clips < 1:
        raise ValueError(f"num_clips, num_frames and stride must be >= 1 (got {num_clips}, {num_frames}, {stride})")
    eligible = [i for i, n in enumerate(lengths) if n >= num_frames * stride]
    rng = np.random.default_rng(seed)
    if len(eligible) > num_clips:
        eligible = sorted(rng.choice(eligible, size=num_clips, replace=False).tolist())
    span = (num_frames - 1) * stride + 1
    return [(i, int(rng.integers(0, lengths[i] - span + 1)) if random_offset else 0) for i in eligible]


def selection_digest(entries: list[VideoEntry], clips: list[tuple[int, int]]) -> str:
    """sha256 of the chosen (name, start) list: equal digests mean the same clips were used."""
    text = "\n".join(f"{entries[i].name}:{start}" for i, start in clips)
    return hashlib.sha256(text.encode()).hexdigest()


def codec_path(entries: list[VideoEntry]) -> dict:
    """How the frames of ``entries`` reach the detector before any resize: counts per source kind (``video.mp4``,
    ``frames.jpg``, ``tensor``) and the decoder library versions (recorded in ``eval.json``)."""
    import PIL

    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.source] = counts.get(entry.source, 0) + 1
    record: dict = {"sources": counts}
    if any(k.startswith("video") for k in counts):
        import av

        codec = ".".join(str(v) for v in av.library_versions.get("libavcodec", ()))
        record["video_decoder"] = f"PyAV {av.__version__} (libavcodec {codec}), rgb24, every frame in order"
    if any(k.startswith("frames") for k in counts):
        record["image_decoder"] = f"Pillow {PIL.__version__}, converted to RGB"
    return record


RESIZE_KERNELS = ("lanczos", "bilinear-antialias")


def center_crop_resize_uint8(frames: np.ndarray, size: int, kernel: str = "lanczos") -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` -> ``(T, size, size, 3)``: the centred ``min(H, W)`` square, resized. Same geometry as
    resizing the short side to ``size`` and centre-cropping (Latte's ``convert_videos_to_frames``: centre crop, then
    PIL LANCZOS), so a 320x240 UCF-101 video is not squashed. ``kernel``: ``lanczos`` (PIL, the reference) or
    ``bilinear-antialias`` (torch)."""
    t, h, w, _ = frames.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = frames[:, top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(square)
    if kernel == "lanczos":
        from PIL import Image

        return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.LANCZOS)) for f in square])
    if kernel == "bilinear-antialias":
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(square)).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    raise ValueError(f"unknown resize kernel {kernel!r}; choose {', '.join(RESIZE_KERNELS)}")


class ClipDataset(torch.utils.data.Dataset):
    """Clip ``k`` = frames ``start, start + stride, ...`` of its video as uint8 ``(3, T, H, W)``.

    ``resolution``: centre-crop to a square and resize to ``resolution`` with ``kernel``
    (:func:`center_crop_resize_uint8`) — None keeps the frames as they are (the detector then resizes them to its
    input size without cropping, which distorts non-square videos).
    """

    def __init__(self, entries: list[VideoEntry], clips: list[tuple[int, int]], num_frames: int, stride: int,
                 resolution: int | None = None, kernel: str = "lanczos"):
        self.entries, self.clips = entries, clips
        self.num_frames, self.stride, self.resolution, self.kernel = num_frames, stride, resolution, kernel

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, k: int) -> torch.Tensor:
        video, start = self.clips[k]
        frames = self.entries[video].read([start + j * self.stride for j in range(self.num_frames)])
        if self.resolution is not None and frames.shape[1:3] != (self.resolution, self.resolution):
            frames = center_crop_resize_uint8(frames, self.resolution, self.kernel)
        return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)  # (3, T, H, W)


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def extract_features(detector: Callable[[torch.Tensor], torch.Tensor], dataset: torch.utils.data.Dataset,
                     batch_size: int = 8, num_workers: int = 0, device: str | torch.device = "cpu",
                     desc: str = "features", progress: bool = True) -> np.ndarray:
    """Run ``detector`` (uint8 ``(B, 3, T, H, W)`` → ``(B', D)``) over every clip; float64 ``(N', D)``.

    Under ``torch.distributed`` each rank takes the strided shard ``rank, rank + world, ...`` and the shards are
    all-gathered back into the single-process order, so the result does not depend on the number of processes
    (the detector must give one row per clip for this, or a fixed number of rows per clip).
    """
    from tqdm.auto import tqdm

    rank, world = _distributed()
    indices = list(range(rank, len(dataset), world))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size,
                                         num_workers=num_workers, shuffle=False)
    rows = []
    for batch in tqdm(loader, desc=desc, disable=not progress or rank != 0, unit="batch"):
        out = detector(batch.to(device))
        rows.append(out.detach().double().cpu())
    local = torch.cat(rows) if rows else torch.zeros(0, 0, dtype=torch.float64)
    if world == 1:
        return local.numpy()
    return _gather_strided(local, len(dataset), rank, world, device).numpy()


def _gather_strided(local: torch.Tensor, total: int, rank: int, world: int, device) -> torch.Tensor:
    mine = len(range(rank, total, world))
    shape = torch.tensor([local.shape[0] // mine if mine else 0, local.shape[1] if mine else 0], device=device)
    torch.distributed.all_reduce(shape, op=torch.distributed.ReduceOp.MAX)  # a rank may hold no clips
    per_clip, dim = int(shape[0]), int(shape[1])
    longest = len(range(0, total, world)) * per_clip
    padded = torch.zeros(longest, dim, dtype=torch.float64, device=device)
    if mine:
        padded[:local.shape[0]] = local.to(device)
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    torch.distributed.all_gather(gathered, padded)
    out = torch.empty(total * per_clip, dim, dtype=torch.float64)
    for r in range(world):
        count = len(range(r, total, world))
        rows = gathered[r][:count * per_clip].cpu().view(count, per_clip, dim)
        out.view(total, per_clip, dim)[r::world] = rows
    return out
