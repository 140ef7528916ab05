"""The ``data:`` config section."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Union

from latte.config import ConfigError, option
from latte.data.synthetic import BACKGROUNDS, VOCAB
from latte.data.video_io import VIDEO_EXTENSIONS

__all__ = ["DataConfig", "SyntheticConfig", "DATASET_KINDS"]

DATASET_KINDS = ("videos", "frame_folders", "classes", "captions", "images", "synthetic")


@dataclass
class SyntheticConfig:
    """Procedural moving shapes / digits (``data.kind: synthetic``); see ``latte.data.synthetic``."""

    pattern: Literal["shapes", "digits"] = option(
        "shapes", "shapes: moving coloured geometric shapes; digits: moving coloured 5x7-font digits (Moving-MNIST-like)")
    num_videos: int = option(2048, "items per epoch of the train/val split (clips are rendered on the fly)")
    heldout_videos: int = option(256, "items of the 'heldout' split")
    seed: int = option(0, "dataset seed: item i is always the same clip for the same seed")
    shapes: list[str] = option(help=f"shapes drawn (pattern shapes); vocabulary: {', '.join(VOCAB['shape'])}",
                               factory=lambda: list(VOCAB["shape"][:3]))
    digits: list[str] = option(help="digits drawn (pattern digits), as strings '0'..'9'",
                               factory=lambda: list(VOCAB["digit"]))
    colors: list[str] = option(help=f"object colours; vocabulary: {', '.join(VOCAB['color'])}",
                               factory=lambda: ["red", "green", "blue", "yellow"])
    directions: list[str] = option(help="motion directions (left, right, up, down)",
                                   factory=lambda: list(VOCAB["direction"]))
    speeds: list[str] = option(help="speeds (slow, fast: 35% / 70% of the free space crossed per clip); "
                                    "not part of the class or caption", factory=lambda: list(VOCAB["speed"]))
    heldout: list[str] = option(
        help="attribute combinations kept out of the train/val splits, as phrases of attribute values, e.g. "
             "['red circle', 'blue square up']; split 'heldout' contains only them", factory=list)
    background: str = option("black", f"background: {', '.join(BACKGROUNDS)} (noise is static, seeded)")
    object_scale: float = option(0.45, "object size as a fraction of the frame side")
    partial_captions: float = option(
        0.0, "share of train-split clips captioned without their colour or their object word (half each: 'a circle "
             "moving left', 'a red shape moving left'), so each attribute word is learned on its own "
             "(attribute-wise caption augmentation); 0 = always the full caption", min=0, max=1)
    motion: Literal["bounded", "wrap"] = option(
        "bounded", "bounded: the object's path stays inside the frame; wrap: it leaves one edge and re-enters at the "
                   "opposite one at the same speed (training data for continuing motion past a clip, e.g. "
                   "frame-conditioned extension to longer videos)")
    frame_rate: int = option(
        1, "render the motion of a base_frames-frame clip at this many times its frame rate; each item is "
           "data.num_frames consecutive frames of it starting at a base frame (interpolation training pairs whose "
           "motion per base frame matches base_frames-frame clips); 1 = the data.num_frames clip itself", min=1)
    base_frames: int = option(0, "with frame_rate > 1: frames of the base clip whose motion is rendered (0 = "
                                 "data.num_frames)", min=0)

    def validate(self) -> None:
        if self.num_videos < 1 or self.heldout_videos < 0:
            raise ConfigError("data.synthetic.num_videos must be >= 1 and heldout_videos >= 0")
        if self.background not in BACKGROUNDS:
            raise ConfigError(f"data.synthetic.background: choose one of {', '.join(BACKGROUNDS)}, got {self.background!r}")
        if not 0.1 <= self.object_scale <= 0.9:
            raise ConfigError(f"data.synthetic.object_scale: must be in [0.1, 0.9], got {self.object_scale}")
        try:
            self.spec()
        except ValueError as e:
            raise ConfigError(f"data.synthetic: {e}") from None

    def spec(self):
        from latte.data.synthetic import SyntheticSpec

        return SyntheticSpec(pattern=self.pattern, shapes=tuple(self.shapes), digits=tuple(self.digits),
                             colors=tuple(self.colors), directions=tuple(self.directions),
                             speeds=tuple(self.speeds), heldout=tuple(self.heldout), background=self.background,
                             object_scale=self.object_scale, partial_captions=self.partial_captions,
                             motion=self.motion)


@dataclass
class DataConfig:
    """Where training clips come from and how they are cut, resized and augmented (see docs/data.md)."""

    kind: Literal["videos", "frame_folders", "classes", "captions", "images", "synthetic"] = option(
        "synthetic",
        "videos: every video file under `path` (recursive), unconditional (FaceForensics); frame_folders: every "
        "folder of frame images under `path` is one clip (SkyTimelapse/Taichi-HD); classes: one sub-folder of "
        "videos per class (UCF101); captions: a CSV/JSONL manifest with path and caption columns (text-to-video); "
        "images: still images under `path` (one-frame items; class sub-folders give labels); synthetic: "
        "procedural moving shapes/digits (no files)")
    path: str = option("", "dataset folder, or for kind captions the manifest file (.csv or .jsonl); paths in a "
                           "manifest are relative to its folder and may not leave it")
    image_size: Union[int, list[int]] = option(
        256, "output frame size in pixels: a side (square frames, size x size) or [height, width]; both crops "
             "then keep the frame's center at that aspect ratio")
    num_frames: int = option(16, "frames per clip")
    frame_interval: int = option(3, "temporal stride: a clip covers num_frames x frame_interval source frames")
    frame_sampling: Literal["linspace", "stride"] = option(
        "linspace", "how frames are picked inside the window: linspace (official video datasets: "
                    "np.linspace(begin, end-1, num_frames)) or stride (official frame folders: every "
                    "frame_interval-th frame)")
    short_clips: Literal["stretch", "skip"] = option(
        "stretch", "clips with fewer than num_frames x frame_interval frames: stretch (official video datasets: "
                   "the window is the whole clip and frames repeat) or skip (official SkyTimelapse)")
    min_frames: int = option(2, "clips with fewer decodable frames are always skipped (e.g. one-frame videos)")
    crop: Literal["resize_center_crop", "center_crop_resize"] = option(
        "resize_center_crop", "resize_center_crop: short side resized to image_size then center crop (official "
                              "UCFCenterCropVideo, FFS/UCF101); center_crop_resize: largest centered square "
                              "then resize (official CenterCropResizeVideo, SkyTimelapse)")
    antialias: bool = option(False, "antialias bilinear downscaling (the official pipeline does not)")
    hflip: bool = option(True, "random horizontal flip (p=0.5) of training clips (and the mirrored cache view); "
                               "turn off for captions that name left/right. Never applied to kind synthetic, whose "
                               "captions name directions")
    extensions: list[str] = option(help="file extensions read as videos (case-insensitive)",
                                   factory=lambda: list(VIDEO_EXTENSIONS))
    class_names: list[str] = option(
        help="kind classes: the class order (index = position); empty = sorted sub-folder names. Set it to the "
             "list saved with a run to keep ids stable when folders change", factory=list)
    image_path: str = option(
        "", "image-video joint training (train.num_images > 0): a folder of still images (class sub-folders give "
            "y_images) or a captions manifest of images; empty = frames of other clips of this dataset")
    scan: Literal["header", "decode"] = option(
        "header", "up-front check of every file: header (open it and read the frame count) or decode (also "
                  "decode the needed frames of the first clip window; slower, catches truncated files early)")
    max_replacements: int = option(
        20, "a clip that fails to load during training is replaced by the next one; give up after this many "
            "consecutive failures")
    cache_dir: Optional[str] = option(
        None, "latent cache folder: written by `latte cache`, read when training with train.use_cache")
    synthetic: SyntheticConfig = option(help="procedural data (kind synthetic)", factory=SyntheticConfig)

    def validate(self) -> None:
        if self.kind != "synthetic" and not self.path:
            raise ConfigError(f"data.path: required for kind '{self.kind}' (a folder, or a manifest for captions)")
        if self.kind == "synthetic" and self.path:
            raise ConfigError("data.path: not used by kind 'synthetic'; remove it")
        if self.kind != "synthetic" and self.synthetic != SyntheticConfig():
            raise ConfigError(f"data.synthetic: only used by kind 'synthetic' (data.kind is '{self.kind}'); remove it")
        sides = [self.image_size] if isinstance(self.image_size, int) else list(self.image_size)
        if len(sides) not in (1, 2) or any(not isinstance(v, int) or v < 1 for v in sides):
            raise ConfigError(f"data.image_size: a positive side or [height, width], got {self.image_size}")
        for key in ("num_frames", "frame_interval", "min_frames"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key}: must be >= 1, got {getattr(self, key)}")
        if self.max_replacements < 0:
            raise ConfigError(f"data.max_replacements: must be >= 0, got {self.max_replacements}")
        if self.class_names and self.kind != "classes":
            raise ConfigError("data.class_names: only used by kind 'classes'")
        if len(set(self.class_names)) != len(self.class_names):
            raise ConfigError("data.class_names: contains duplicates")
        bad = [e for e in self.extensions if not e.startswith(".")]
        if bad:
            raise ConfigError(f"data.extensions: each must start with '.', got {bad}")
