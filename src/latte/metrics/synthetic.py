"""Offline metrics for the built-in synthetic data (moving coloured shapes / digits, ``latte.data.synthetic``).

A small 3D-conv classifier, trained in minutes on CPU (``latte train-classifier``, the training engine with
:mod:`latte.training.tasks.classifier`), with one head per attribute
(``shape`` or ``digit``, ``color``, ``direction``, ``speed``). It gives:

* **synthetic FVD**: the Fréchet distance in its penultimate (``feature_dim``) space, reported beside the
  real-vs-real baseline (two disjoint real sets of the same size), which is the floor a perfect generator reaches;
* **attribute accuracy**: how often generated videos show the attributes they were asked for (per attribute and
  all of them jointly);
* **right in every frame** (:func:`every_frame_check`): the clip classifier gets every asked attribute right and
  each frame, checked on its own without a network, shows the asked colour and shape; and the **flicker rate**
  (share of videos whose colour or shape changes between frames), which a whole-clip classifier misses;
* **object hue** (no network, :func:`object_hue`): the mean hue of the shape's pixels, to tell a colour the
  classifier has no head for (e.g. one learned by personalisation);
* **temporal consistency** (no network): mean absolute frame-to-frame change and "flicker" (mean absolute
  second temporal difference), in [0, 1] intensity units; compare generated values with the real ones.

Files: ``DIR/classifier.safetensors`` (weights) and ``DIR/classifier.json`` (architecture, attribute vocabulary,
the synthetic data spec and training metrics).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latte.config import ConfigError, option
from latte.io import InputError
from latte.data.config import SyntheticConfig
from latte.data.synthetic import COLORS, shape_coverage  # the data's palette and shape outlines (per-frame check)

__all__ = ["ClassifierTrainConfig", "VideoAttributeClassifier", "ClassifierDetector", "build_classifier",
           "render_set", "head_accuracy", "to_float", "save_classifier", "load_classifier", "attribute_accuracy",
           "parse_caption", "temporal_consistency", "synthetic_real_videos", "frame_attributes",
           "every_frame_accuracy", "every_frame_check", "read_video_folder"]


@dataclass
class ClassifierTrainConfig:
    """``latte train-classifier`` settings."""

    RENAMED = {"steps": "max_steps", "size": "image_size"}

    synthetic: SyntheticConfig = option(help="the synthetic data the classifier learns (use the same section as "
                                             "the generator's training run: data.synthetic)",
                                        factory=SyntheticConfig)
    num_frames: int = option(16, "frames per clip (the evaluation protocol's clip length)")
    image_size: int = option(32, "frame side in pixels; evaluated videos are resized to it")
    num_videos: int = option(2048, "training clips rendered once before training")
    val_videos: int = option(256, "validation clips (the dataset's val split: unseen placements)")
    max_steps: int = option(600, "optimizer steps")
    batch_size: int = option(16, "clips per step")
    lr: float = option(2e-3, "AdamW learning rate (cosine decay to 0)")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    width: int = option(16, "channels of the first conv block (doubled twice)")
    feature_dim: int = option(64, "size of the penultimate feature vector (the synthetic-FVD space)")
    noise_std: float = option(0.05, "std of Gaussian pixel noise added to training clips (in [-1, 1] units), so "
                                    "features stay meaningful on imperfect generated videos")
    seed: int = option(0, "seed of weight init and batch order")

    def validate(self) -> None:
        for key in ("num_frames", "image_size", "num_videos", "max_steps", "batch_size", "width", "feature_dim"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.num_frames < 2:
            raise ConfigError("num_frames must be >= 2: directions need motion")


def _conv_block(cin: int, cout: int, stride, kernel=(3, 3, 3)) -> nn.Sequential:
    padding = tuple(k // 2 for k in kernel)
    return nn.Sequential(nn.Conv3d(cin, cout, kernel, stride, padding), nn.GroupNorm(min(8, cout), cout), nn.SiLU())


class VideoAttributeClassifier(nn.Module):
    """``(B, 3, F, H, W)`` in [-1, 1] → ``features (B, feature_dim)`` → one logit vector per attribute head."""

    def __init__(self, heads: dict[str, list[str]], size: int = 32, width: int = 24, feature_dim: int = 64):
        super().__init__()
        self.head_values = {k: list(v) for k, v in heads.items()}
        self.size = size
        self.backbone = nn.Sequential(_conv_block(3, width, (1, 2, 2), kernel=(1, 3, 3)),
                                      _conv_block(width, 2 * width, 2),
                                      _conv_block(2 * width, 4 * width, 2), _conv_block(4 * width, 4 * width, 1))
        self.project = nn.Linear(8 * width, feature_dim)  # mean- and max-pooled backbone features
        self.heads = nn.ModuleDict({k: nn.Linear(feature_dim, len(v)) for k, v in heads.items()})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"expected videos (B, 3, F, H, W), got {tuple(x.shape)}")
        if x.shape[-2:] != (self.size, self.size):
            b, c, f = x.shape[:3]
            frames = x.transpose(1, 2).flatten(0, 1)
            frames = F.interpolate(frames, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                   antialias=True)
            x = frames.view(b, f, c, self.size, self.size).transpose(1, 2)
        h = self.backbone(x).flatten(2)
        return F.relu(self.project(torch.cat([h.mean(-1), h.amax(-1)], dim=1)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(x)
        return {k: head(feats) for k, head in self.heads.items()}


class ClassifierDetector(nn.Module):
    """uint8 videos ``(B, 3, T, H, W)`` → penultimate features ``(B, feature_dim)`` (the synthetic-FVD space)."""

    def __init__(self, classifier: VideoAttributeClassifier, identity: dict):
        super().__init__()
        self.classifier, self._identity = classifier.eval(), identity
        self.feature_dim = classifier.project.out_features

    def identity(self) -> dict:
        return dict(self._identity)

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(to_float(videos))

    @torch.no_grad()
    def predict(self, videos: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predicted value index per head, ``(B,)`` each."""
        return {k: v.argmax(-1) for k, v in self.classifier(to_float(videos)).items()}


def to_float(videos: torch.Tensor) -> torch.Tensor:
    return videos.float() / 127.5 - 1.0 if videos.dtype == torch.uint8 else videos.float()


def _heads_for(cfg: SyntheticConfig) -> dict[str, list[str]]:
    spec = cfg.spec()
    objects = list(spec.shapes) if spec.pattern == "shapes" else list(spec.digits)
    heads = {spec.object_key: objects, "color": list(spec.colors), "direction": list(spec.directions)}
    if len(spec.speeds) > 1:
        heads["speed"] = list(spec.speeds)
    return heads


def build_classifier(cfg: ClassifierTrainConfig) -> VideoAttributeClassifier:
    return VideoAttributeClassifier(_heads_for(cfg.synthetic), cfg.image_size, cfg.width, cfg.feature_dim)


def render_set(cfg: ClassifierTrainConfig, num: int, split: str, desc: str,
                progress: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """uint8 clips ``(N, 3, F, S, S)`` and label index tensors per head."""
    from tqdm.auto import tqdm

    from latte.data.synthetic import SyntheticDataset

    data = SyntheticDataset(cfg.synthetic.spec(), num, cfg.num_frames, cfg.image_size, cfg.synthetic.seed, split)
    heads = _heads_for(cfg.synthetic)
    videos = torch.empty(num, 3, cfg.num_frames, cfg.image_size, cfg.image_size, dtype=torch.uint8)
    labels = {k: torch.empty(num, dtype=torch.long) for k in heads}
    for i in tqdm(range(num), desc=desc, disable=not progress, unit="clip"):
        videos[i] = torch.from_numpy(data.render(i)).permute(3, 0, 1, 2)
        attrs = data.attributes(i)
        for k, values in heads.items():
            labels[k][i] = values.index(str(attrs[k]))
    return videos, labels


@torch.no_grad()
def head_accuracy(model: VideoAttributeClassifier, videos: torch.Tensor, labels: dict[str, torch.Tensor],
              batch_size: int = 64) -> dict[str, float]:
    model.eval()
    correct = {k: 0 for k in labels}
    for i in range(0, len(videos), batch_size):
        logits = model(to_float(videos[i:i + batch_size]))
        for k in labels:
            correct[k] += int((logits[k].argmax(-1) == labels[k][i:i + batch_size]).sum())
    return {k: c / len(videos) for k, c in correct.items()}


def save_classifier(model: VideoAttributeClassifier, cfg: ClassifierTrainConfig, metrics: dict,
                    out_dir: str | Path) -> Path:
    from safetensors.torch import save_file

    from latte.config import to_dict

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "classifier.safetensors"))
    meta = {"format": "latte-synthetic-classifier/1", "heads": model.head_values, "size": model.size,
            "width": model.backbone[0][0].out_channels, "feature_dim": model.project.out_features,
            "train_config": to_dict(cfg), "metrics": metrics}
    (out / "classifier.json").write_text(json.dumps(meta, indent=2))
    return out


def load_classifier(path: str | Path) -> tuple[ClassifierDetector, dict]:
    """``(detector, meta)`` from a folder written by :func:`save_classifier` (or its ``classifier.json``)."""
    from latte.config import from_dict
    from latte.metrics.networks.weights import file_sha256, load_detector_state

    folder = Path(path)
    folder = folder.parent if folder.name == "classifier.json" else folder
    meta_path, weights = folder / "classifier.json", folder / "classifier.safetensors"
    if not meta_path.is_file() or not weights.is_file():
        raise InputError(f"{folder}: expected classifier.json and classifier.safetensors (train one with "
                         f"`latte train-classifier --out {folder}`)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{meta_path}: not valid JSON ({e})") from None
    saved = dict(meta["train_config"])
    for old, new in ClassifierTrainConfig.RENAMED.items():  # files written before the keys were renamed
        if old in saved:
            saved[new] = saved.pop(old)
    meta["train_config_obj"] = from_dict(ClassifierTrainConfig, saved)
    model = VideoAttributeClassifier(meta["heads"], meta["size"], meta["width"], meta["feature_dim"])
    load_detector_state(model, weights)
    identity = {"network": "synthetic_classifier", "path": str(folder), "sha256": file_sha256(weights)}
    return ClassifierDetector(model, identity), meta


def parse_caption(caption: str, heads: dict[str, list[str]]) -> dict[str, str]:
    """Attribute values named in a caption, e.g. ``"a red circle moving left"`` → color, shape, direction.

    A head's value counts when it appears as a whole word (digits: after the word "digit")."""
    words = re.findall(r"[a-z0-9]+", caption.lower())
    found = {}
    for head, values in heads.items():
        if head == "digit":
            hits = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "digit" and words[i + 1] in values]
        else:
            hits = [v for v in values if v in words]
        if len(hits) == 1:
            found[head] = hits[0]
    return found


def requested_attributes(meta: dict, heads: dict[str, list[str]], spec_cfg: SyntheticConfig) -> dict[str, str]:
    """What a generated video was asked for, from its sidecar: ``attributes`` dict, else ``caption``/``prompt``
    text, else class id ``y``/``class_id`` mapped through the synthetic spec's combinations."""
    if isinstance(meta.get("attributes"), dict):
        return {k: str(v) for k, v in meta["attributes"].items() if k in heads}
    for key in ("caption", "prompt"):
        if isinstance(meta.get(key), str) and meta[key]:
            return parse_caption(meta[key], heads)
    for key in ("y", "class_id", "class", "label"):
        if isinstance(meta.get(key), int):
            combos = spec_cfg.spec().combinations()
            if 0 <= meta[key] < len(combos):
                return {k: str(v) for k, v in combos[meta[key]].items() if k in heads}
    return {}


def attribute_accuracy(predicted: dict[str, np.ndarray], requested: list[dict[str, str]],
                       heads: dict[str, list[str]]) -> dict:
    """Per-head accuracy over the videos that asked for that head, and ``joint``: every asked attribute right.

    ``predicted``: value index per head ``(N,)``; ``requested``: per video the asked values by head name."""
    per_head: dict[str, list[bool]] = {k: [] for k in heads}
    joint = []
    for i, asked in enumerate(requested):
        if not asked:
            continue
        hits = [heads[k][int(predicted[k][i])] == v for k, v in asked.items()]
        for (k, _), hit in zip(asked.items(), hits):
            per_head[k].append(hit)
        joint.append(all(hits))
    if not joint:
        raise ValueError("no generated video says which attributes it was asked for (sidecar JSON with "
                         "'caption', 'prompt', 'y' or 'attributes'); attribute accuracy needs them")
    out = {k: float(np.mean(v)) for k, v in per_head.items() if v}
    out["joint"] = float(np.mean(joint))
    out["num_videos"] = len(joint)
    return out


def temporal_consistency(videos: torch.Tensor) -> dict[str, float]:
    """``videos (B, 3, T, H, W)`` uint8 → mean |x[t+1] - x[t]| (``frame_change``) and mean
    |x[t+1] - 2 x[t] + x[t-1]| (``flicker``), in [0, 1] intensity units."""
    x = videos.double() / 255.0 if videos.dtype == torch.uint8 else (videos.double() + 1) / 2
    if x.shape[2] < 3:
        raise ValueError(f"temporal consistency needs at least 3 frames, got {x.shape[2]}")
    first = x[:, :, 1:] - x[:, :, :-1]
    second = first[:, :, 1:] - first[:, :, :-1]
    return {"frame_change": float(first.abs().mean()), "flicker": float(second.abs().mean())}


def object_hue(video: np.ndarray) -> tuple[float, float]:
    """Circular mean hue (degrees, HSV) of the object pixels (value > 0.35, saturation > 0.4: the shape, not the
    dark background) of a uint8 ``(..., H, W, 3)`` video or image, and the fraction of pixels that are object;
    ``(nan, 0.0)`` when there is no object pixel."""
    x = video.reshape(-1, 3).astype(np.float64) / 255.0
    top, low = x.max(1), x.min(1)
    keep = (top > 0.35) & ((top - low) / np.maximum(top, 1e-6) > 0.4)
    if not keep.any():
        return float("nan"), 0.0
    (r, g, b), top, span = x[keep].T, top[keep], (top - low)[keep]
    sector = np.where(r == top, (g - b) / span, np.where(g == top, 2 + (b - r) / span, 4 + (r - g) / span))
    angles = np.radians(sector * 60.0)  # colorsys' hue, as an angle
    mean = np.degrees(np.arctan2(np.sin(angles).mean(), np.cos(angles).mean())) % 360
    return float(mean), float(keep.mean())


def hue_in_range(videos: np.ndarray, hue_range: tuple[float, float]) -> dict[str, float]:
    """Object hue of each uint8 ``(N, T, H, W, 3)`` video (:func:`object_hue`): the median over videos and the
    share of videos whose hue lies in ``hue_range`` (degrees, low <= high)."""
    hues = np.array([object_hue(v)[0] for v in videos])
    low, high = hue_range
    return {"median_hue_deg": float(np.nanmedian(hues)) if np.isfinite(hues).any() else float("nan"),
            "videos_in_hue_range": float(np.mean((hues >= low) & (hues <= high)))}


def synthetic_real_videos(cfg: ClassifierTrainConfig, num: int, num_frames: int, seed_offset: int = 0,
                          progress: bool = True) -> torch.Tensor:
    """Real clips rendered in memory from the classifier's synthetic spec (val split), uint8 ``(N, 3, F, S, S)``."""
    from dataclasses import replace

    cfg = replace(cfg, num_frames=num_frames,
                  synthetic=replace(cfg.synthetic, seed=cfg.synthetic.seed + seed_offset))
    return render_set(cfg, num, "val", "render real clips", progress)[0]


# -- per-frame attribute check ---------------------------------------------------------------------------------
# The clip classifier reads a whole clip at once, so a clip whose frames alternate between two colours can still
# be called by the colour of its majority. The check below looks at every frame on its own, with no network:
#
# * colour: each pixel takes the nearest (RGB distance) of {the frame's background, the data's palette colours};
#   the frame's colour is the most common non-background label, "" (no object) under ``min_pixels`` pixels. The
#   background is the frame's median colour (the object covers well under half of a frame).
# * shape: the object's coverage of each pixel (its position between the background and the object's median
#   colour, in [0, 1], so blurred and anti-aliased edges count in part; on the "noise" background, coverage under
#   the 99th percentile of the background pixels' counts as none) is compared with the coverage of the data's
#   own shapes drawn at its centroid at sizes 0.9 / 1 / 1.1 x the data's ``object_scale`` (shapes are never
#   rotated); the frame's shape is the best-overlapping one (soft IoU: sum of minima / sum of maxima), "" when none
#   overlaps by ``min_iou``. Binary silhouettes confused rounded squares with circles after the quickstart VAE
#   (6 % of videos); the soft overlap finds every VAE-reconstructed real clip right.
#
# A video is right "in every frame" when the clip classifier gets every asked attribute right and every frame shows
# the asked colour and shape; it flickers when its per-frame colour or shape is not the same in every frame.

_TEMPLATE_SCALES = (0.9, 1.0, 1.1)  # object sizes tried, relative to the data's object_scale
_TEMPLATE_SUPERSAMPLE = 4


def _template_offsets(kind: str, values: list[str]) -> dict[str, tuple[float, float]]:
    """Centroid of each shape relative to its centre, in units of its half-size ``r`` (the triangle's is low)."""
    grid = np.linspace(-1.5, 1.5, 301)
    xs, ys = np.meshgrid(grid, grid)
    out = {}
    for value in values:
        ink = shape_coverage(kind, value, xs, ys, 0.0, 0.0, 1.0)
        out[value] = (float(xs[ink].mean()), float(ys[ink].mean()))
    return out


def _shape_iou(kind: str, value: str, alpha: np.ndarray, cx: float, cy: float, r: float) -> float:
    """Soft IoU (sum of minima / sum of maxima) of the object's coverage ``alpha (H, W)`` in [0, 1] with the
    coverage of the shape of half-size ``r`` centred at ``(cx, cy)`` (drawn only in the window where it has ink)."""
    h, w = alpha.shape
    s = _TEMPLATE_SUPERSAMPLE
    x0, x1 = max(0, int(cx - 1.05 * r)), min(w, int(np.ceil(cx + 1.05 * r)))
    y0, y1 = max(0, int(cy - 1.05 * r)), min(h, int(np.ceil(cy + 1.05 * r)))
    if x1 <= x0 or y1 <= y0:
        return 0.0
    xs, ys = np.meshgrid(x0 + (np.arange((x1 - x0) * s) + 0.5) / s, y0 + (np.arange((y1 - y0) * s) + 0.5) / s)
    ink = shape_coverage(kind, value, xs, ys, cx, cy, r).astype(np.float32)
    template = ink.reshape(y1 - y0, s, x1 - x0, s).mean(axis=(1, 3))
    window = alpha[y0:y1, x0:x1]
    inter = float(np.minimum(window, template).sum())
    union = float(alpha.sum()) - float(window.sum()) + float(np.maximum(window, template).sum())
    return inter / max(union, 1e-6)


def frame_attributes(videos: torch.Tensor, spec, min_pixels: int = 4, min_iou: float = 0.5) -> dict[str, np.ndarray]:
    """Colour and shape of the object in every frame, without a network.

    ``videos``: uint8 ``(B, 3, T, H, W)``; ``spec``: the data's :class:`latte.data.synthetic.SyntheticSpec`
    (palette, shapes or digits, object size). Returns ``color``, ``shape`` (``(B, T)`` strings, ``""`` when the
    frame shows no object / no shape overlaps by ``min_iou``; the key is ``spec.object_key``) and ``shape_iou``
    ``(B, T)`` (overlap of the silhouette with the best shape)."""
    if videos.ndim != 5 or videos.shape[1] != 3 or videos.dtype != torch.uint8:
        raise ValueError(f"expected uint8 videos (B, 3, T, H, W), got {videos.dtype} {tuple(videos.shape)}")
    kind = "shape" if spec.pattern == "shapes" else "digit"
    values = list(spec.shapes) if kind == "shape" else list(spec.digits)
    offsets = _template_offsets(kind, values)
    palette = np.array([COLORS[c] for c in spec.colors], dtype=np.float32)  # (K, 3)
    frames = videos.permute(0, 2, 3, 4, 1).numpy().astype(np.float32)  # (B, T, H, W, 3)
    b, t, h, w, _ = frames.shape
    base_r = spec.object_scale * w / 2
    colors = np.full((b, t), "", dtype=object)
    shapes = np.full((b, t), "", dtype=object)
    ious = np.zeros((b, t))
    for i in range(b):
        for j in range(t):
            pixels = frames[i, j].reshape(-1, 3)
            background = np.median(pixels, axis=0)
            centres = np.concatenate([background[None], palette])  # label 0 = background
            labels = ((pixels[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
            ink = labels > 0
            if ink.sum() < min_pixels:
                continue
            colors[i, j] = spec.colors[int(np.bincount(labels[ink], minlength=len(centres))[1:].argmax())]
            # coverage of each pixel by the object: its position between the background and the object's
            # median colour (anti-aliased and blurred edges count in part); shapes are compared at its centroid
            ink_color = np.median(pixels[ink], axis=0)
            axis = ink_color - background
            alpha = np.clip((pixels - background) @ axis / max(float(axis @ axis), 1e-6), 0, 1).reshape(h, w)
            # background texture (the "noise" background) is not object: drop what the background pixels reach
            if spec.background == "noise":  # textured background: what its pixels reach is not object
                alpha[alpha < min(0.5, float(np.quantile(alpha[~ink.reshape(h, w)], 0.99)))] = 0.0
            total = alpha.sum()
            cx = float((alpha.sum(0) * (np.arange(w) + 0.5)).sum() / total)  # pixel centres at i + 0.5
            cy = float((alpha.sum(1) * (np.arange(h) + 0.5)).sum() / total)
            best_iou, best = 0.0, ""
            for value in values:
                ox, oy = offsets[value]
                for scale in _TEMPLATE_SCALES:
                    r = base_r * scale
                    iou = _shape_iou(kind, value, alpha, cx - ox * r, cy - oy * r, r)
                    if iou > best_iou:
                        best_iou, best = iou, value
            ious[i, j] = best_iou
            shapes[i, j] = best if best_iou >= min_iou else ""
    return {"color": colors, kind: shapes, "shape_iou": ious}


def every_frame_accuracy(frames: dict[str, np.ndarray], predicted: dict[str, np.ndarray],
                         requested: list[dict[str, str]], heads: dict[str, list[str]]) -> dict:
    """Clip-level and every-frame accuracy and flicker rates of ``N`` videos.

    ``frames``: :func:`frame_attributes` of the videos; ``predicted``: the clip classifier's value index per head
    ``(N,)``; ``requested``: per video the asked values by head (videos asking nothing are skipped). Returns
    shares of videos: ``clip_joint`` (the classifier gets every asked attribute right), ``every_frame_joint``
    (that, and every frame shows the asked colour and shape), ``color_every_frame`` / ``shape_every_frame``
    (the asked colour / shape in every frame), ``color_flicker`` / ``shape_flicker`` / ``flicker`` (the colour /
    shape / either is not the same in every frame), and ``num_videos``."""
    per_frame_keys = [k for k in frames if k != "shape_iou"]  # "color" and the object key
    rows = []
    for i, asked in enumerate(requested):
        if not asked:
            continue
        clip_ok = all(heads[k][int(predicted[k][i])] == v for k, v in asked.items())
        holds = {k: bool(np.all(frames[k][i] == asked[k])) for k in per_frame_keys if k in asked}
        changes = {k: len(set(frames[k][i].tolist())) > 1 for k in per_frame_keys}
        rows.append((clip_ok, holds, changes))
    if not rows:
        raise ValueError("no video says which attributes it was asked for (sidecar JSON with 'caption', 'prompt', "
                         "'y' or 'attributes'); the every-frame check needs them")
    object_key = next(k for k in per_frame_keys if k != "color")
    share = lambda values: float(np.mean(values))  # noqa: E731
    return {"clip_joint": share([c for c, _, _ in rows]),
            "every_frame_joint": share([c and all(h.values()) for c, h, _ in rows]),
            "color_every_frame": share([h.get("color", True) for _, h, _ in rows]),
            "shape_every_frame": share([h.get(object_key, True) for _, h, _ in rows]),
            "color_flicker": share([ch["color"] for _, _, ch in rows]),
            "shape_flicker": share([ch[object_key] for _, _, ch in rows]),
            "flicker": share([any(ch.values()) for _, _, ch in rows]),
            "num_videos": len(rows)}


@torch.no_grad()
def every_frame_check(videos: torch.Tensor, metas: list[dict], detector: ClassifierDetector, meta: dict,
                      batch_size: int = 64) -> dict:
    """:func:`every_frame_accuracy` of uint8 videos ``(N, 3, T, H, W)`` whose sidecars ``metas`` name what they
    were asked for, with the clip classifier ``(detector, meta)`` of :func:`load_classifier`."""
    heads, spec_cfg = meta["heads"], meta["train_config_obj"].synthetic
    requested = [requested_attributes(m, heads, spec_cfg) for m in metas]
    preds: dict[str, list[np.ndarray]] = {k: [] for k in heads}
    for i in range(0, len(videos), batch_size):
        for k, v in detector.predict(videos[i:i + batch_size]).items():
            preds[k].append(v.cpu().numpy())
    predicted = {k: np.concatenate(v) for k, v in preds.items()}
    return every_frame_accuracy(frame_attributes(videos, spec_cfg.spec()), predicted, requested, heads)


def read_video_folder(folder: str | Path) -> tuple[torch.Tensor, list[dict]]:
    """Every video of a sample folder (``latte sample`` output) as uint8 ``(N, 3, T, H, W)`` with its sidecar."""
    from latte.metrics.clips import scan_videos

    entries = scan_videos(folder)
    lengths = {e.num_frames for e in entries}
    if len(lengths) != 1:
        raise InputError(f"{folder}: videos of different lengths {sorted(lengths)}; expected one clip length")
    videos = np.stack([e.read(list(range(e.num_frames))) for e in entries])  # (N, T, H, W, 3)
    return torch.from_numpy(videos).permute(0, 4, 1, 2, 3).contiguous(), [e.meta for e in entries]
