"""Helpers shared by the detector weight loaders: file hashing, TorchScript detection, exact state-dict loading
(through :mod:`latte.io`, so every bad file is a ``WeightsError`` naming it)."""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import torch
from torch import nn

from latte.io import WeightsError, load_state_dict_strict, read_state_dict

__all__ = ["Detector", "file_sha256", "is_torchscript_archive", "load_detector_state", "open_weights"]


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


def load_detector_state(module: nn.Module, path: str | Path, state: dict[str, torch.Tensor] | None = None) -> None:
    """Load the state dict in ``path`` (or ``state`` read from it) into ``module``, every key and shape exact;
    BatchNorm ``num_batches_tracked`` (absent from weight files converted from TF) may be missing or extra.
    Errors are :class:`latte.io.WeightsError` naming the file."""
    load_state_dict_strict(module, read_state_dict(path) if state is None else state, str(path),
                           ignore_suffixes=("num_batches_tracked",))


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
        raise WeightsError(f"{label} weights not found: {path} (expected {expected}; see docs/eval.md)")
    identity = {"network": network, "path": str(path), "sha256": file_sha256(path)}
    if is_torchscript_archive(path):
        try:
            scripted = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise WeightsError(f"{path}: not a loadable TorchScript {label} archive ({first})") from None
        return {**identity, "format": "torchscript"}, scripted
    return identity, None
