"""LoRA adapters (``peft``) on any ``nn.Module``: inject, save on their own, apply from a file, merge.

An adapter file is ``adapter.safetensors`` (the low-rank tensors, names as in the model without peft's
adapter name) beside ``adapter_config.json`` (rank, alpha, adapted module names). ``latte train`` with
``train.trainable: lora`` writes them next to the weights of each checkpoint (``model/``, ``ema/``);
``latte sample --lora PATH [--lora-scale S]`` applies one.
"""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Sequence, Union

import torch
from torch import nn

from latte.config import ConfigError

__all__ = ["add_lora", "matching_linears", "has_lora", "adapter_state_dict", "save_lora", "apply_lora_file", "merge_lora",
           "split_lora_state", "join_lora_state", "ADAPTER_FILE", "ADAPTER_CONFIG"]

ADAPTER_FILE = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def has_lora(model: nn.Module) -> bool:
    return hasattr(model, "lora_settings")


def matching_linears(model: nn.Module, targets: Sequence[str]) -> list[str]:
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    found = [n for n in names if any(fnmatch.fnmatchcase(n, t) or fnmatch.fnmatchcase(n, f"*.{t}") for t in targets)]
    if not found:
        raise ConfigError(f"train.lora.targets: {list(targets)} match no nn.Linear module of the model "
                          f"(names look like {names[:3]})")
    return found


def add_lora(model: nn.Module, rank: int, alpha: float, targets: Sequence[str]) -> list[str]:
    """Inject LoRA adapters (peft) into the matching linear layers and freeze every other parameter."""
    from peft import LoraConfig, inject_adapter_in_model

    modules = matching_linears(model, targets)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=modules, lora_dropout=0.0, bias="none")
    inject_adapter_in_model(config, model)
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    model.lora_settings = {"rank": rank, "alpha": alpha, "modules": modules}
    return modules


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA tensors of ``model`` (names as in the model, without peft's adapter name ``default``)."""
    return {k.replace(".default", ""): v.detach().cpu().contiguous() for k, v in model.state_dict().items()
            if "lora_" in k}


def save_lora(model: nn.Module, folder: Union[str, Path], adapter: dict | None = None) -> Path:
    """Write ``folder/adapter.safetensors`` (``adapter``, default the model's) + ``adapter_config.json``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = adapter if adapter is not None else adapter_state_dict(model)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(folder / ADAPTER_FILE))
    (folder / ADAPTER_CONFIG).write_text(json.dumps(model.lora_settings, indent=1) + "\n")
    return folder / ADAPTER_FILE


def _adapter_files(path: Union[str, Path]) -> tuple[Path, dict]:
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    weights = folder / ADAPTER_FILE if path.is_dir() else path
    if not weights.is_file() or not (folder / ADAPTER_CONFIG).is_file():
        raise FileNotFoundError(f"--lora {path}: expected a LoRA folder with {ADAPTER_FILE} and {ADAPTER_CONFIG} "
                                "(written by `latte train` with train.trainable: lora, under lora/ of a checkpoint)")
    return weights, json.loads((folder / ADAPTER_CONFIG).read_text())


def apply_lora_file(model: nn.Module, path: Union[str, Path], scale: float = 1.0) -> nn.Module:
    """Add the adapter at ``path`` (folder or ``adapter.safetensors``) to ``model`` in place, scaled by ``scale``."""
    from safetensors.torch import load_file

    weights, settings = _adapter_files(path)
    if has_lora(model):
        raise ValueError(f"--lora {path}: the model already carries a LoRA adapter (a checkpoint of a LoRA run "
                         "applies its own; merge one first with merge_lora)")
    add_lora(model, settings["rank"], settings["alpha"], settings["modules"])
    state = {}
    for key, value in load_file(str(weights)).items():
        parts = key.split(".")
        i = max(j for j, p in enumerate(parts) if p.startswith("lora_"))
        state[".".join(parts[:i + 1] + ["default"] + parts[i + 1:])] = value
    missing = [k for k in state if k not in model.state_dict()]
    if missing:
        raise ValueError(f"--lora {path}: adapter tensors {missing[:3]} do not fit this model")
    model.load_state_dict(state, strict=False)
    if scale != 1.0:
        for module in model.modules():
            if hasattr(module, "scaling") and isinstance(module.scaling, dict) and "default" in module.scaling:
                module.scaling["default"] *= scale
    model.requires_grad_(False)
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights (``W + scale * B A``) and remove them; returns ``model``."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    if hasattr(model, "lora_settings"):
        del model.lora_settings
    return model


def split_lora_state(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """A LoRA-injected model's state dict → ``(base weights under the plain module names, adapter tensors)``."""
    base, adapter = {}, {}
    for key, value in state.items():
        if "lora_" in key:
            adapter[key.replace(".default", "")] = value
        else:
            base[key.replace(".base_layer.", ".")] = value
    return base, adapter


def join_lora_state(model: nn.Module, base: dict, adapter: dict) -> dict:
    """The inverse of :func:`split_lora_state` for ``model`` (a LoRA-injected model)."""
    state = {}
    for key in model.state_dict():
        if "lora_" in key:
            state[key] = adapter[key.replace(".default", "")]
        else:
            state[key] = base[key.replace(".base_layer.", ".")]
    return state
