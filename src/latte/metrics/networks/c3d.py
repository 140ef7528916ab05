"""C3D fine-tuned on UCF101 (TGANv2), the network behind the UCF101 video Inception Score.

Layers (names as in the Chainer weights ``conv3d_deepnetA_ucf.npz``: ``conv1a/W``, ``conv1a/b`` … ``fc8/b``):
eight 3x3x3 convs with ReLU, max pools ``(1,2,2)`` then ``(2,2,2)`` with **ceil mode** (Chainer
``cover_all=True``), so pool5 maps ``2x7x7`` to ``1x4x4`` and fc6 takes 8192 inputs; fc6/fc7 4096 with ReLU,
fc8 → 101 classes. Preprocessing: RGB [-1, 1] → BGR ×128, bilinear resize to 112 with ``align_corners``
sampling, then ``+ 128 - mean`` (the Caffe mean from ``mean2.npz``, centre-cropped to 112).
StyleGAN-V's TorchScript ``c3d_ucf101.pt`` (uint8 in, probabilities out) is accepted too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latte.metrics.networks.resize import resize_bilinear
from latte.io import InputError, WeightsError
from latte.metrics.networks.weights import Detector, file_sha256, load_detector_state, open_weights

__all__ = ["C3D", "C3DDetector", "load_c3d", "C3D_LAYERS"]

C3D_LAYERS = [("conv1a", 3, 64), ("conv2a", 64, 128), ("conv3a", 128, 256), ("conv3b", 256, 256),
              ("conv4a", 256, 512), ("conv4b", 512, 512), ("conv5a", 512, 512), ("conv5b", 512, 512)]
_POOL_AFTER = {"conv1a": (1, 2, 2), "conv2a": (2, 2, 2), "conv3b": (2, 2, 2), "conv4b": (2, 2, 2),
               "conv5b": (2, 2, 2)}


class C3D(nn.Module):
    """``(B, 3, 16, H, W)`` RGB in [-1, 1] → fc8 logits ``(B, 101)``."""

    def __init__(self, num_classes: int = 101):
        super().__init__()
        for name, cin, cout in C3D_LAYERS:
            setattr(self, name, nn.Conv3d(cin, cout, 3, padding=1))
        self.fc6 = nn.Linear(512 * 4 * 4, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self.register_buffer("mean", torch.full((3, 16, 112, 112), 128.0), persistent=False)

    def set_mean(self, mean: np.ndarray) -> None:
        """Caffe BGR mean ``(3, 16, S, S)`` (a leading batch axis is dropped), centre-cropped to 112."""
        m = torch.as_tensor(np.asarray(mean, np.float32)).reshape(-1, *np.asarray(mean).shape[-4:])[0]
        if m.shape[0] != 3 or m.shape[1] != 16 or min(m.shape[-2:]) < 112:
            raise ValueError(f"C3D mean must have shape (3, 16, >=112, >=112), got {tuple(m.shape)}")
        top, left = (m.shape[-2] - 112) // 2, (m.shape[-1] - 112) // 2
        self.mean.copy_(m[..., top:top + 112, left:left + 112])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pool5 map ``(B, 512, 1, 4, 4)`` from 16-frame RGB clips in [-1, 1]."""
        if x.ndim != 5 or x.shape[1] != 3 or x.shape[2] != 16:
            raise ValueError(f"C3D expects (B, 3, 16, H, W) clips, got {tuple(x.shape)}")
        x = resize_bilinear(x.flip(1) * 128.0, (112, 112), mode="align_corners") + 128.0 - self.mean
        for name, _, _ in C3D_LAYERS:
            x = F.relu(getattr(self, name)(x))
            if name in _POOL_AFTER:
                x = F.max_pool3d(x, _POOL_AFTER[name], _POOL_AFTER[name], ceil_mode=True)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)
        x = F.dropout(F.relu(self.fc6(x)), 0.5, self.training)
        x = F.dropout(F.relu(self.fc7(x)), 0.5, self.training)
        return self.fc8(x)


class C3DDetector(Detector):
    """uint8 videos ``(B, 3, 16, H, W)`` → UCF101 class probabilities ``(B, 101)``."""

    feature_dim = 101

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        self.check_uint8(videos)
        if self.torchscript:
            return self.network(videos).float()
        return self.network(videos.float() / 255.0 * 2.0 - 1.0).softmax(dim=-1)


def c3d_state_from_npz(path: str | Path) -> dict[str, torch.Tensor]:
    """Chainer names (``conv1a/W``, ``fc8/b``) → PyTorch names (``conv1a.weight``, ``fc8.bias``)."""
    suffix = {"W": "weight", "b": "bias"}
    with _open_npz(path, "C3D weights") as f:
        state = {}
        for key in f.files:
            layer, _, param = key.rpartition("/")
            if param not in suffix:
                raise WeightsError(f"{path}: unexpected array {key!r}; expected 'layer/W' or 'layer/b' names")
            state[f"{layer.strip('/').replace('/', '.')}.{suffix[param]}"] = torch.from_numpy(np.array(f[key]))
    return state


def _open_npz(path: str | Path, what: str):
    """``np.load`` of an ``.npz`` without pickles; a corrupt or hostile file is a ``WeightsError`` naming it."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise WeightsError(f"{path}: not a readable .npz of {what} ({e})") from None
    if not hasattr(data, "files"):
        raise WeightsError(f"{path}: a single array, expected an .npz archive of {what}")
    return data


def load_c3d(path: str | Path, mean_path: str | Path | None = None) -> C3DDetector:
    """Load ``conv3d_deepnetA_ucf.npz`` (+ ``mean2.npz``, looked up beside it) or TorchScript ``c3d_ucf101.pt``."""
    path = Path(path)
    identity, scripted = open_weights(path, "c3d_ucf101", "C3D", "c3d_ucf101.pt or conv3d_deepnetA_ucf.npz + mean2.npz")
    if scripted is not None:
        return C3DDetector(scripted, identity, torchscript=True)
    model = C3D()
    load_detector_state(model, path, c3d_state_from_npz(path))
    mean_path = Path(mean_path) if mean_path else path.with_name("mean2.npz")
    if not mean_path.is_file():
        raise InputError(f"C3D mean file not found: {mean_path} (TGANv2's mean2.npz)")
    with _open_npz(mean_path, "the C3D mean") as f:
        if not f.files:
            raise InputError(f"{mean_path}: empty .npz, expected the C3D mean array")
        model.set_mean(f["mean"] if "mean" in f.files else f[f.files[0]])
    identity.update(format="chainer_npz", mean_path=str(mean_path), mean_sha256=file_sha256(mean_path))
    return C3DDetector(model.eval(), identity)
