"""Offline metrics for the built-in synthetic data (moving coloured shapes / digits, ``latte.data.synthetic``).

A small 3D-conv classifier, trained in minutes on CPU (``latte train-classifier``, the training engine with
:mod:`latte.training.tasks.classifier`), with one head per attribute
(``shape`` or ``digit``, ``color``, ``direction``, ``speed``). It gives:

* **synthetic FVD**: the Fréchet distance in its penultimate (``feature_dim``) space, reported beside the
  real-vs-real baseline (two disjoint real sets of the same size), which is the floor a perfect generator reaches;
* **attribute accuracy**: how often generated videos show the attributes they were asked for (per attribute and
  all of them jointly);
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
from latte.data.config import SyntheticConfig

__all__ = ["ClassifierTrainConfig", "VideoAttributeClassifier", "ClassifierDetector", "build_classifier",
           "render_set", "head_accuracy", "to_float", "save_classifier", "load_classifier", "attribute_accuracy", "parse_caption",
           "temporal_consistency", "synthetic_real_videos"]


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
    from safetensors.torch import load_file

    from latte.config import from_dict
    from latte.metrics.networks.weights import file_sha256, load_state_dict_exact

    folder = Path(path)
    folder = folder.parent if folder.name == "classifier.json" else folder
    meta_path, weights = folder / "classifier.json", folder / "classifier.safetensors"
    if not meta_path.is_file() or not weights.is_file():
        raise FileNotFoundError(f"{folder}: expected classifier.json and classifier.safetensors (train one with "
                                f"`latte train-classifier --out {folder}`)")
    meta = json.loads(meta_path.read_text())
    saved = dict(meta["train_config"])
    for old, new in ClassifierTrainConfig.RENAMED.items():  # files written before the keys were renamed
        if old in saved:
            saved[new] = saved.pop(old)
    meta["train_config_obj"] = from_dict(ClassifierTrainConfig, saved)
    model = VideoAttributeClassifier(meta["heads"], meta["size"], meta["width"], meta["feature_dim"])
    load_state_dict_exact(model, load_file(str(weights)), str(weights))
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


def synthetic_real_videos(cfg: ClassifierTrainConfig, num: int, num_frames: int, seed_offset: int = 0,
                          progress: bool = True) -> torch.Tensor:
    """Real clips rendered in memory from the classifier's synthetic spec (val split), uint8 ``(N, 3, F, S, S)``."""
    from dataclasses import replace

    cfg = replace(cfg, num_frames=num_frames,
                  synthetic=replace(cfg.synthetic, seed=cfg.synthetic.seed + seed_offset))
    return render_set(cfg, num, "val", "render real clips", progress)[0]
