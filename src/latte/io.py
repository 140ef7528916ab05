"""File I/O used by every layer, done one way: reading weights, reading YAML, writing files atomically.

Every failure is an :class:`InputError` (bad or missing input file) or an :class:`OutputError` (cannot write)
whose message names the file and says what was expected, so the CLI can print it without a traceback.

>>> state = read_state_dict("ucf101.pt")                  # .pt (weights_only) / .safetensors / folder; ema unwrapped
>>> load_state_dict_strict(model, state, "ucf101.pt")     # missing / unexpected / wrong-shape keys named
>>> cfg = load_yaml_mapping("configs/ucf101.yaml")        # a dict, or an error naming the file and line
>>> atomic_write_text(run_dir / "log.txt", text)          # tmp file, fsync, rename
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import torch
import yaml
from torch import nn

PathLike = Union[str, Path]
StateDict = dict[str, torch.Tensor]

__all__ = ["InputError", "WeightsError", "OutputError", "WEIGHT_FILE_NAMES", "read_state_dict",
           "load_state_dict_strict", "load_yaml_mapping", "load_json_mapping", "atomic_write_bytes",
           "atomic_write_text", "atomic_write_json", "ensure_writable_dir", "fsync_path", "writing"]

# Weight files looked for inside a folder, in this order.
WEIGHT_FILE_NAMES = ("model.safetensors", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                     "pytorch_model.bin")
# Wrappers unwrapped by read_state_dict (the official checkpoints keep their weights under "ema" / "model").
_WRAPPERS = ("ema", "model", "state_dict", "module")


class InputError(ValueError):
    """An input file is missing, unreadable or not what was expected; the message names it."""


class WeightsError(InputError):
    """A weights file or state dict cannot be used: unreadable, not a state dict, or keys/shapes that differ."""


class OutputError(OSError):
    """A file or folder cannot be written (no space left, read-only, no permission); the message names it."""


def _is_pickle_or_zip(path: Path) -> bool:
    """A ``torch.save`` zip archive or a raw pickle (protocol 2+ opens with ``0x80``)."""
    import zipfile

    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return zipfile.is_zipfile(path) or (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def _read_weights_file(path: Path) -> Any:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise WeightsError(f"{path}: not a valid safetensors file ({e})") from None
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message opens with advice to retry with weights_only=False: keep only the line naming the object
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        first = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), type(e).__name__)
        if "GLOBAL" not in first and not _is_pickle_or_zip(path):  # garbage bytes, not a pickle of objects
            raise WeightsError(f"{path}: not a readable torch checkpoint (truncated or not a .pt file?): "
                               f"{first}") from None
        raise WeightsError(f"{path}: refused to unpickle: the file holds objects other than tensors and plain "
                           f"containers (only weights_only=True checkpoints are read; {first})") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"{path}: not a readable torch checkpoint (truncated or not a .pt file?): {first}") \
            from None


def read_state_dict(source: Union[PathLike, Mapping[str, Any]], prefer: str = "ema",
                    names: Sequence[str] = WEIGHT_FILE_NAMES) -> StateDict:
    """A ``{name: tensor}`` state dict from a file, a folder or a dict.

    ``source``: a ``.safetensors`` file, a ``.pt``/``.pth``/``.bin`` file (read with ``weights_only=True``), a
    folder holding one of ``names``, or a dict. Wrappers ``{"ema": ...}``, ``{"model": ...}``,
    ``{"state_dict": ...}`` and ``{"module": ...}`` are unwrapped (``prefer`` first). Raises
    :class:`WeightsError` naming the file for a missing file, a corrupt or hostile file, or content that is not
    a state dict.
    """
    label = "state dict"
    if isinstance(source, Mapping):
        data: Any = source
    else:
        path = Path(source)
        label = str(path)
        if path.is_dir():
            for name in names:
                if (path / name).is_file():
                    return read_state_dict(path / name, prefer, names)
            raise WeightsError(f"{path}: no weights in this folder (expected one of {', '.join(names)})")
        if not path.exists():
            raise WeightsError(f"{path}: no such file")
        data = _read_weights_file(path)
    if not isinstance(data, Mapping):
        raise WeightsError(f"{label}: holds a {type(data).__name__}, expected a state dict (name -> tensor)")
    for key in (prefer, *_WRAPPERS):
        if key in data and isinstance(data[key], Mapping):
            data = data[key]
            break
    bad = [k for k, v in data.items() if not isinstance(v, torch.Tensor)]
    if bad or not data:
        what = f"non-tensor entries {bad[:5]}" if bad else "no tensors"
        raise WeightsError(f"{label}: not a state dict ({what}; expected name -> tensor, optionally under "
                           f"'ema' or 'model')")
    return {str(k): v for k, v in data.items()}


def load_state_dict_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str,
                           ignore_suffixes: Sequence[str] = ()) -> None:
    """Load ``state`` into ``module`` requiring the same keys and shapes; the error names the missing,
    unexpected and wrong-shape keys (first few of each) and the ``source``. Keys ending in one of
    ``ignore_suffixes`` may be missing or extra (e.g. BatchNorm ``num_batches_tracked``)."""
    def kept(k: str) -> bool:
        return not any(k.endswith(s) for s in ignore_suffixes)

    state = {k: v for k, v in state.items() if kept(k)}
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items() if kept(k)}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:6]) + (f", ... (+{len(keys) - 6})" if len(keys) > 6 else "")

        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {few(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {few(unexpected)}")
        if wrong:
            parts.append("wrong shape: " + ", ".join(f"{k} {tuple(state[k].shape)} (model: {expected[k]})"
                                                    for k in wrong[:6]))
        raise WeightsError(f"{source}: does not fit {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(state, strict=not ignore_suffixes)


def load_yaml_mapping(path: PathLike, what: str = "config") -> dict:
    """The mapping in a YAML file (an empty file is ``{}``); :class:`InputError` names the file, and the line
    for a syntax error, when it is missing, not YAML, or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(f"{path}: not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (expected a YAML {what})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: the {what} must be a YAML mapping (key: value), found a {type(data).__name__}")
    return data


def load_json_mapping(path: PathLike, what: str = "config") -> dict:
    """The JSON object in ``path``; :class:`InputError` names the file when it is missing, not JSON or not an
    object (``config.json`` of model folders, scheduler configs, sidecars)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (expected a JSON {what})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: the {what} must be a JSON object, found a {type(data).__name__}")
    return data


@contextlib.contextmanager
def writing(path: PathLike) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing ``path`` into an :class:`OutputError` that says what happened in
    words ("no space left writing <file>", "cannot write to <dir>: read-only file system")."""
    try:
        yield
    except OutputError:
        raise
    except OSError as e:
        path = Path(path)
        if e.errno == errno.ENOSPC:
            msg = f"no space left on the device writing {path}"
        elif e.errno == errno.EDQUOT:
            msg = f"disk quota exceeded writing {path}"
        elif e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            msg = f"cannot write to {path.parent}: {os.strerror(e.errno)}"
        else:
            msg = f"cannot write {path}: {e.strerror or e}"
        raise OutputError(e.errno or 0, msg) from None


def ensure_writable_dir(path: PathLike) -> Path:
    """Create the folder ``path`` if needed and check that a file can be written in it (a probe file is created
    and removed), so a read-only or full output folder is reported before any work: :class:`OutputError`
    "cannot write to <dir>: ..."."""
    path = Path(path)
    probe = path / f".latte-write-test-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"ok")
        probe.unlink()
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise OutputError(e.errno or 0, f"cannot write to {path}: {reason}") from None
    return path


def fsync_path(path: PathLike) -> None:
    """fsync a file or a folder (so a rename into it survives a crash); silently skipped where unsupported."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``path`` all-or-nothing: a hidden temporary file beside it, fsync, rename over, fsync the folder.
    A reader sees the old content or the new, never a partial file. Errors are :class:`OutputError`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with writing(path):
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    fsync_path(path.parent)


def atomic_write_text(path: PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_yaml(path: PathLike, data: Any, header: str = "") -> None:
    """:func:`atomic_write_bytes` of ``data`` as YAML (keys in insertion order) after an optional ``header``
    (e.g. a comment line)."""
    atomic_write_text(path, header + yaml.safe_dump(data, sort_keys=False))


def atomic_write_json(path: PathLike, obj: Any, indent: Optional[int] = 2) -> None:
    """:func:`atomic_write_bytes` of ``obj`` as JSON (keys in insertion order, a final newline)."""
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")
