"""Helpers shared by the encoders: locating local model folders, dtype policy, weight fingerprints."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, TypeVar

import torch

from latte.io import InputError, read_state_dict

__all__ = ["MissingWeightsError", "resolve_device", "resolve_dtype", "require_folder", "fingerprint",
           "load_checked"]

T = TypeVar("T")

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
_EDGE_BYTES = 1 << 20  # bytes hashed from each end of a weights file


class MissingWeightsError(FileNotFoundError):
    """A model folder or file is missing; the message names the path tried and the files expected."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    return torch.device(device) if device is not None else torch.device("cpu")


def resolve_dtype(name: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``float16``/``bfloat16`` only on CUDA; everything else computes in float32."""
    if isinstance(name, torch.dtype):
        dtype = name
    else:
        dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                 None: torch.float32}[name]
    return dtype if device.type == "cuda" else torch.float32


def require_folder(path: str | Path, expected: list[str], what: str) -> Path:
    """Return ``path`` if it is a folder containing every file in ``expected``; else an actionable error.

    An entry ``"a|b"`` is satisfied by either file.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise MissingWeightsError(
            f"{what}: folder not found: {path} (expected a folder containing {', '.join(expected)})")
    missing = [e for e in expected if not any((path / name).exists() for name in e.split("|"))]
    if missing:
        present = sorted(p.name for p in path.iterdir())[:20]
        raise MissingWeightsError(
            f"{what}: {path} is missing {', '.join(m.replace('|', ' or ') for m in missing)} "
            f"(found: {', '.join(present) or 'nothing'})")
    return path


def _weight_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES) if path.is_dir() else []


def _check_pickled(path: Path) -> None:
    """Refuse a pickled weights file that holds anything but tensors, before a library unpickles it.
    ``mmap`` makes the check cheap for the (usual) zip format; anything else is read in full by
    :func:`latte.io.read_state_dict`, whose error names the file."""
    try:
        torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - diagnosed (and reported with the file name) by read_state_dict
        read_state_dict(path)


def load_checked(load: Callable[[], T], path: str | Path, what: str) -> T:
    """Run a library loader (``from_pretrained`` / ``from_single_file``) on the weights at ``path`` (a file or a
    folder) with errors a user can act on: pickled files (``.bin``/``.pt``/``.ckpt``) are first checked to hold
    only tensors; when the loader fails, a corrupt weights file is named (:class:`latte.io.WeightsError`), else
    the loader's message is given with the path (:class:`latte.io.InputError`)."""
    path = Path(path)
    files = _weight_files(path)
    for f in files:
        if f.suffix != ".safetensors":
            _check_pickled(f)
    try:
        return load()
    except Exception as e:  # noqa: BLE001 - diffusers/transformers raise many types; re-raised with the path
        for f in files:
            if f.suffix == ".safetensors" and not f.name.endswith(".index.json"):
                read_state_dict(f)  # raises WeightsError naming a corrupt file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{what}: could not load {path}: {first}") from e


def fingerprint(path: str | Path) -> str:
    """Short hash identifying a model file or folder: its config/tokenizer JSONs and its weight files.

    Weight files are hashed by name, size and their first and last MiB (hashing a 20 GB T5 in full would take
    minutes); any retraining changes those bytes, so a changed model gets a new fingerprint.
    """
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        rel = f.name if f == path else str(f.relative_to(path))
        if f.suffix == ".json":
            h.update(rel.encode() + b"\0" + f.read_bytes())
        elif f.suffix in WEIGHT_SUFFIXES:
            size = f.stat().st_size
            h.update(f"{rel}\0{size}\0".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(_EDGE_BYTES))
                if size > 2 * _EDGE_BYTES:
                    fh.seek(size - _EDGE_BYTES)
                    h.update(fh.read(_EDGE_BYTES))
                elif size > _EDGE_BYTES:
                    h.update(fh.read())
    return h.hexdigest()[:16]


def read_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)
