"""Helpers shared by the weight loaders: file hashing, TorchScript detection and exact state-dict loading."""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import torch
from torch import nn

__all__ = ["Detector", "file_sha256", "is_torchscript_archive", "load_state_dict_exact", "open_weights",
           "read_state_dict"]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_torchscript_archive(path: str | Path) -> bool:
    """True for a ``torch.jit.save`` archive (it has a ``code/`` folder), False for ``torch.save`` files."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in name or name.startswith("code/") for name in z.namelist())


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict from a ``.pt``/``.pth`` file (``weights_only=True``; a ``{'state_dict': ...}`` wrapper
    is unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{path}: expected a state dict (name -> tensor)")
    return dict(data)


def load_state_dict_exact(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module`` requiring every key and shape to match; BatchNorm ``num_batches_tracked``
    (absent from weight files converted from TF) is the only key allowed to be missing or extra."""
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    expected = {k: v.shape for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k]))
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {len(missing)} keys (e.g. {missing[:3]})")
        if unexpected:
            details.append(f"unexpected {len(unexpected)} keys (e.g. {unexpected[:3]})")
        if wrong:
            details.append("wrong shapes: " + ", ".join(f"{k} {tuple(state[k].shape)} != {tuple(expected[k])}"
                                                        for k in wrong[:3]))
        raise ValueError(f"{source}: not a {type(module).__name__} state dict: " + "; ".join(details))
    module.load_state_dict(state, strict=False)


class Detector(nn.Module):
    """Base of the metric detectors: a network (ours, or a TorchScript module) and the identity (file, sha256,
    format) recorded next to every result. Subclasses set ``feature_dim`` and implement ``forward``."""

    feature_dim: int = 0

    def __init__(self, network: nn.Module, identity: dict, torchscript: bool = False):
        super().__init__()
        self.network, self.torchscript, self._identity = network, torchscript, identity

    def identity(self) -> dict:
        return dict(self._identity)

    def check_uint8(self, videos: torch.Tensor) -> None:
        if videos.dtype != torch.uint8:
            raise TypeError(f"{type(self).__name__} expects uint8 videos, got {videos.dtype}")


def open_weights(path: str | Path, network: str, label: str, expected: str):
    """``(identity, scripted)`` for a detector weights file: ``scripted`` is the loaded TorchScript module when the
    file is a ``torch.jit`` archive, else None (the caller builds our module and loads the state dict)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{label} weights not found: {path} (expected {expected}; see docs/eval.md)")
    identity = {"network": network, "path": str(path), "sha256": file_sha256(path)}
    if is_torchscript_archive(path):
        return {**identity, "format": "torchscript"}, torch.jit.load(str(path), map_location="cpu").eval()
    return identity, None
