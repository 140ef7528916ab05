"""Initialise a model from pretrained weights (``train.init_from``), matching keys by name and shape.

Accepted sources: an official Latte ``.pt`` (``{"ema": ...}`` / ``{"model": ...}``), an image DiT ``.pt`` (the
paper's ImageNet initialisation), one of our checkpoint or run directories (its EMA weights), a
``Latte.save_pretrained`` folder, a diffusers / Latte-1 folder (``transformer/``), or a bare ``.safetensors``
file. Official/diffusers text-to-video keys
(``t2v.pt``, Latte-1, or a PixArt-alpha transformer: ``transformer_blocks.N...``) are renamed to ours with
:mod:`latte.interop.official` first, so a PixArt image model initialises the spatial blocks and leaves the
temporal blocks fresh.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from latte.config import ConfigError
from latte.io import WEIGHT_FILE_NAMES, WeightsError, load_yaml_mapping, read_state_dict
from latte.training.checkpoint import resolve_checkpoint

__all__ = ["InitReport", "read_init_weights", "init_model_from"]


@dataclass
class InitReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key in the source, why)
    fresh: list[str] = field(default_factory=list)  # model keys left at their initialisation

    def summary(self, max_names: int = 12) -> str:
        def names(items):
            shown = ", ".join(items[:max_names])
            return shown + (f", ... (+{len(items) - max_names})" if len(items) > max_names else "")

        lines = [f"init_from {self.source}: loaded {len(self.loaded)} tensors, skipped {len(self.skipped)}, "
                 f"left fresh {len(self.fresh)}"]
        if self.skipped:
            lines.append("  skipped: " + names([f"{k} ({why})" for k, why in self.skipped]))
        if self.fresh:
            lines.append("  fresh: " + names(self.fresh))
        return "\n".join(lines)


def read_init_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights source (see module docstring); a ``module.`` / ``_orig_mod.`` prefix is removed.

    Folders: one holding a weights file (``model.safetensors``, ``diffusion_pytorch_model.safetensors``, ...),
    a diffusers / Latte-1 pipeline folder (its ``transformer/``), or a run / checkpoint directory (its EMA).
    Errors name ``train.init_from``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"train.init_from: {path} does not exist")
    if path.is_dir() and not any((path / name).is_file() for name in WEIGHT_FILE_NAMES):
        if (path / "transformer").is_dir():
            path = path / "transformer"
        else:
            try:
                path = resolve_checkpoint(path) / "ema"
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"train.init_from: {path} holds no weights (expected a weights file such as "
                    f"{', '.join(WEIGHT_FILE_NAMES[:2])}, a diffusers/Latte-1 folder with transformer/, or a run "
                    "directory with checkpoints)") from None
    try:
        state = read_state_dict(path)
    except WeightsError as e:
        raise WeightsError(f"train.init_from: {e}") from None
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            key = key.removeprefix(prefix)
        out[key] = value
    return out


# what a model's weights mean, beyond their shapes: a run initialised from another must encode captions and read
# its outputs the same way (dotted keys of the run config)
MEANING_KEYS = ("diffusion.prediction_type", "diffusion.noise_schedule", "text_encoder.kind", "text_encoder.path",
                "text_encoder.max_length", "text_encoder.hidden_layer")


def check_init_meaning(path: str | Path, config: dict) -> None:
    """``train.init_from`` a run or checkpoint directory of this project: its saved ``run_config.yaml`` must agree
    with ``config`` (plain data) on :data:`MEANING_KEYS` — e.g. a model trained on MiniLM's token embeddings
    (``text_encoder.hidden_layer: 0``) fine-tuned with the last layer's features would start from captions it
    never saw. Other sources (weights files, diffusers folders, released checkpoints) are not checked."""
    try:
        saved_file = resolve_checkpoint(path) / "run_config.yaml"
    except FileNotFoundError:
        return
    if not saved_file.is_file():
        return
    saved = load_yaml_mapping(saved_file, "run config")

    def get(data: dict, dotted: str):
        section, key = dotted.split(".")
        return (data.get(section) or {}).get(key)

    differ = [(k, get(saved, k), get(config, k)) for k in MEANING_KEYS
              if get(saved, k) is not None and get(saved, k) != get(config, k)]
    if differ:
        listed = "; ".join(f"{k}: {a!r} there, {b!r} here" for k, a, b in differ)
        raise ConfigError(f"train.init_from {path}: that run was trained with other settings than this config "
                          f"({listed}); set them as the run has them ({saved_file})")


def _from_official_t2v(state: dict, source: str) -> tuple[dict, list[str]]:
    """Rename diffusers-style T2V/PixArt keys to ours; returns (state, keys that map nowhere)."""
    if not any(k.startswith("transformer_blocks.") for k in state):
        return state, []
    from latte.interop.official import t2v_state_dict_from_official

    mapped, extras, unexpected = t2v_state_dict_from_official(state, source)
    return mapped, unexpected + list(extras)


def is_image_checkpoint(state: dict) -> bool:
    """An image DiT checkpoint has a spatial ``pos_embed`` but no temporal embedding."""
    return "pos_embed" in state and "temp_embed" not in state


def init_model_from(model: nn.Module, path: str | Path, temporal_from_spatial: bool = True) -> InitReport:
    """Copy every source tensor whose name and shape match a model tensor into ``model`` (in place).

    With an image DiT source and ``temporal_from_spatial=False`` the temporal blocks keep their fresh
    initialisation; otherwise DiT block ``i`` initialises Latte block ``i`` whatever its kind (official).
    """
    state, unmapped = _from_official_t2v(read_init_weights(path), str(path))
    report = InitReport(source=str(path))
    report.skipped += [(k, "no counterpart in our layout") for k in unmapped]
    target = model.state_dict()
    fresh_blocks = set()
    if is_image_checkpoint(state) and not temporal_from_spatial:
        fresh_blocks = {f"blocks.{i}." for i, blk in enumerate(getattr(model, "blocks", []))
                        if getattr(blk, "kind", "spatial") != "spatial"}
    to_load = {}
    for key, value in state.items():
        if key not in target:
            report.skipped.append((key, "not in this model"))
        elif tuple(value.shape) != tuple(target[key].shape):
            report.skipped.append((key, f"shape {tuple(value.shape)} != model {tuple(target[key].shape)}"))
        elif any(key.startswith(p) for p in fresh_blocks):
            report.skipped.append((key, "temporal block kept fresh (train.init_temporal_from_spatial: false)"))
        else:
            to_load[key] = value.to(target[key].dtype)
    model.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)
    report.fresh = [k for k in target if k not in to_load]
    return report
