"""InceptionI3d (Inception-v1 inflated to 3D), the FVD feature network.

Module and parameter names follow piergiaj's ``pytorch_i3d.py``, which is the layout of VideoGPT/TATS's
``i3d_pretrained_400.pt`` (converted from TF-Hub ``deepmind/i3d-kinetics-400/1``, 287 tensors): e.g.
``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_mean``, ``logits.conv3d.bias``. BatchNorm uses
eps=1e-3 as in TF (Sonnet) and TF "SAME" (asymmetric) padding is computed from the input size.

:func:`load_i3d` returns an :class:`I3DDetector` taking uint8 videos ``(B, 3, T, H, W)`` — from a state-dict
file (our module) or from StyleGAN-V's TorchScript ``i3d_torchscript.pt`` (called with
``rescale=True, resize=True, return_features=True``).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from latte.metrics.networks.resize import resize_bilinear
from latte.metrics.networks.weights import Detector, load_detector_state, open_weights

__all__ = ["InceptionI3d", "I3DDetector", "load_i3d", "INCEPTION_CHANNELS"]

# (b0, b1a, b1b, b2a, b2b, b3b) output channels of every inception module
INCEPTION_CHANNELS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


def _same_padding(sizes, kernel, stride) -> list[int]:
    """TF 'SAME' padding for F.pad (last dim first): total max(k - s, 0) or max(k - size % s, 0), extra after."""
    pads = []
    for size, k, s in zip(reversed(sizes), reversed(kernel), reversed(stride)):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return pads


class Unit3D(nn.Module):
    """Conv3d (SAME padding) → optional BatchNorm (eps 1e-3) → optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1),
                 batch_norm: bool = True, bias: bool = False, activation: bool = True):
        super().__init__()
        self.kernel, self.stride, self.activation = tuple(kernel), tuple(stride), activation
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(F.pad(x, _same_padding(x.shape[2:], self.kernel, self.stride)))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class MaxPool3dSame(nn.Module):
    """Max pooling with TF 'SAME' zero padding (exact after a ReLU, since inputs are >= 0)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(F.pad(x, _same_padding(x.shape[2:], self.kernel, self.stride)), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four branches concatenated: 1x1 | 1x1→3x3 | 1x1→3x3 | maxpool 3x3 → 1x1."""

    def __init__(self, in_channels: int, channels: tuple[int, ...]):
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = channels
        self.b0 = Unit3D(in_channels, c0)
        self.b1a = Unit3D(in_channels, c1a)
        self.b1b = Unit3D(c1a, c1b, kernel=(3, 3, 3))
        self.b2a = Unit3D(in_channels, c2a)
        self.b2b = Unit3D(c2a, c2b, kernel=(3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, c3b)
        self.out_channels = c0 + c1b + c2b + c3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """I3D on ``(B, 3, T, 224, 224)`` float in [-1, 1] RGB, T >= 9.

    ``forward`` returns the Kinetics logits averaged over time ``(B, num_classes)`` (the FVD feature, TF
    ``RGB/inception_i3d/Mean:0``); ``forward_pool`` returns the Mixed_5c map ``(B, 1024, ceil(T/8), 7, 7)``.
    """

    def __init__(self, num_classes: int = 400, in_channels: int = 3):
        super().__init__()
        self.num_classes = num_classes
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        channels = 192
        for name, spec in INCEPTION_CHANNELS.items():
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            module = InceptionModule(channels, spec)
            setattr(self, name, module)
            channels = module.out_channels
        self.dropout = nn.Dropout(0.5)
        self.logits = Unit3D(channels, num_classes, batch_norm=False, bias=True, activation=False)

    def forward_pool(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"InceptionI3d expects (B, 3, T, H, W) videos, got {tuple(x.shape)}")
        if math.ceil(x.shape[2] / 8) < 2:
            raise ValueError(f"InceptionI3d needs at least 9 frames, got {x.shape[2]}")
        for module in self.children():
            if module is self.dropout:
                break
            x = module(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_pool(x)
        if x.shape[-2:] != (7, 7):
            raise ValueError(f"InceptionI3d expects 224x224 frames (got a {tuple(x.shape[-2:])} final map)")
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)
        x = self.logits(self.dropout(x))  # (B, classes, T', 1, 1)
        return x.squeeze(-1).squeeze(-1).mean(dim=2)


class I3DDetector(Detector):
    """uint8 videos ``(B, 3, T, H, W)`` → FVD features ``(B, 400)`` (time-averaged logits).

    Preprocessing of our module: ``x / 255 * 2 - 1`` then TF1-style bilinear resize to 224x224 (no crop), as
    the reference TF FVD code. A TorchScript detector does both itself (``rescale=True, resize=True``).
    """

    feature_dim = 400

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        self.check_uint8(videos)
        if self.torchscript:
            return self.network(videos, rescale=True, resize=True, return_features=True).float()
        x = videos.float() / 255.0 * 2.0 - 1.0
        return self.network(resize_bilinear(x, (224, 224), mode="tf1"))


def load_i3d(path: str | Path) -> I3DDetector:
    """Load ``i3d_pretrained_400.pt`` (state dict, piergiaj names) or ``i3d_torchscript.pt`` (TorchScript)."""
    identity, scripted = open_weights(path, "i3d", "I3D", "i3d_pretrained_400.pt or i3d_torchscript.pt")
    if scripted is not None:
        return I3DDetector(scripted, identity, torchscript=True)
    model = InceptionI3d()
    load_detector_state(model, path)
    return I3DDetector(model.eval(), {**identity, "format": "state_dict"})
