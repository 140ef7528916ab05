"""Checkpoint directories: atomic writes, the ``latest`` pointer, retention, resolving ``--resume``.

Layout of ``RUN/checkpoints/step_XXXXXXX/``:

* ``model/`` and ``ema/``: ``Latte.save_pretrained`` folders (``config.json`` + ``model.safetensors``), each
  loadable on its own by ``Latte.from_pretrained`` (the sampler uses ``ema/``);
* ``run_config.yaml``: the resolved run config;
* ``train_state.pt``: optimizer, grad scaler, step, RNG states of every rank, data position — tensors and plain
  containers only, so ``torch.load(..., weights_only=True)`` reads it.

A checkpoint is written into ``checkpoints/.tmp-step_XXXXXXX`` with every file fsync'ed, then renamed into place;
``latest`` is replaced atomically afterwards. A process killed at any moment leaves either the previous state or
the new complete checkpoint.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Callable

import torch

from latte.io import atomic_write_text, fsync_path

__all__ = ["checkpoint_name", "write_checkpoint", "list_checkpoints", "latest_checkpoint", "resolve_checkpoint",
           "load_train_state", "prune_checkpoints", "remove_stale_tmp"]

_STEP_DIR = re.compile(r"^step_(\d{7,})$")
TRAIN_STATE = "train_state.pt"


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def _fsync_tree(root: Path) -> None:
    """fsync every file below ``root``, then every directory (children before parents)."""
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            fsync_path(Path(dirpath) / name)
        fsync_path(Path(dirpath))


def write_checkpoint(ckpt_root: str | Path, step: int, fill: Callable[[Path], None]) -> Path:
    """Atomically create ``ckpt_root/step_XXXXXXX`` whose content ``fill(tmp_dir)`` writes; update ``latest``."""
    ckpt_root = Path(ckpt_root)
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / checkpoint_name(step)
    tmp = ckpt_root / f".tmp-{final.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    fill(tmp)
    _fsync_tree(tmp)
    if final.exists():  # re-saving a step (e.g. a resumed run stopped again at once): replace it
        old = ckpt_root / f".old-{final.name}"
        if old.exists():
            shutil.rmtree(old)
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old)
    else:
        os.rename(tmp, final)
    fsync_path(ckpt_root)
    atomic_write_text(ckpt_root / "latest", final.name + "\n")
    return final


def remove_stale_tmp(ckpt_root: str | Path) -> None:
    """Delete half-written checkpoints left by a killed save."""
    ckpt_root = Path(ckpt_root)
    if ckpt_root.is_dir():
        for p in ckpt_root.iterdir():
            if p.name.startswith((".tmp-", ".old-")) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)


def list_checkpoints(ckpt_root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``ckpt_root`` as ``(step, path)``, oldest first."""
    ckpt_root = Path(ckpt_root)
    if not ckpt_root.is_dir():
        return []
    found = []
    for p in ckpt_root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / TRAIN_STATE).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(ckpt_root: str | Path) -> Path | None:
    """The checkpoint ``latest`` names (falling back to the highest complete step directory)."""
    ckpt_root = Path(ckpt_root)
    pointer = ckpt_root / "latest"
    if pointer.is_file():
        candidate = ckpt_root / pointer.read_text().strip()
        if (candidate / TRAIN_STATE).is_file():
            return candidate
    found = list_checkpoints(ckpt_root)
    return found[-1][1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from a run directory, a ``checkpoints`` directory or a checkpoint directory."""
    path = Path(path)
    if (path / TRAIN_STATE).is_file():
        return path
    for root in (path / "checkpoints", path):
        found = latest_checkpoint(root)
        if found is not None:
            return found
    raise FileNotFoundError(
        f"--resume {path}: no checkpoint found (expected a run directory with checkpoints/latest, or a "
        f"checkpoints/step_XXXXXXX directory holding {TRAIN_STATE})")


def load_train_state(ckpt_dir: str | Path) -> dict:
    return torch.load(Path(ckpt_dir) / TRAIN_STATE, map_location="cpu", weights_only=True)


def prune_checkpoints(ckpt_root: str | Path, keep_last: int, keep_every: int | None) -> list[Path]:
    """Delete all but the ``keep_last`` newest checkpoints and those whose step is a multiple of ``keep_every``."""
    found = list_checkpoints(ckpt_root)
    latest = latest_checkpoint(ckpt_root)
    recent = {p for _, p in found[-keep_last:]}
    removed = []
    for step, p in found:
        if p in recent or p == latest or (keep_every and step % keep_every == 0):
            continue
        shutil.rmtree(p)
        removed.append(p)
    return removed
