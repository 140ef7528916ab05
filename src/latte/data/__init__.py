"""Data: video IO, frame sampling and transforms, dataset kinds, synthetic clips, the latent cache, loaders.

Entry points: :func:`build_dataset` (config section :class:`DataConfig`), :func:`build_loader`,
:class:`CachedLatentDataset`. See ``docs/data.md``.
"""
from latte.data.config import DataConfig, SyntheticConfig
from latte.data.datasets import ClipDataset, ImageDataset, WithImages, build_dataset, read_manifest
from latte.data.skips import EmptyDatasetError, SkipCounter
from latte.data.synthetic import VOCAB, SyntheticDataset, SyntheticSpec, caption_for, render_clip
from latte.data.transforms import VideoTransform, frame_indices, temporal_window, to_uint8
from latte.data.video_io import (
    VideoReadError,
    probe_video,
    read_video_frames,
    write_gif,
    write_mp4,
    write_png_grid,
)

__all__ = [
    "DataConfig",
    "SyntheticConfig",
    "build_dataset",
    "read_manifest",
    "ClipDataset",
    "ImageDataset",
    "WithImages",
    "SyntheticDataset",
    "SyntheticSpec",
    "VOCAB",
    "caption_for",
    "render_clip",
    "EmptyDatasetError",
    "SkipCounter",
    "VideoTransform",
    "frame_indices",
    "temporal_window",
    "to_uint8",
    "VideoReadError",
    "probe_video",
    "read_video_frames",
    "write_mp4",
    "write_gif",
    "write_png_grid",
]
