"""Our model folder format, one way for every model: ``config.json`` (the model's config dataclass) beside
``model.safetensors`` (its state dict). Models inherit :class:`PretrainedMixin` and set ``config_class``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

from safetensors.torch import save_file

from latte.config import from_dict, to_dict
from latte.io import InputError, atomic_write_text, load_state_dict_strict, read_state_dict

__all__ = ["PretrainedMixin"]


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` for an ``nn.Module`` built as ``cls(config)``."""

    config_class: type

    def save_pretrained(self, directory: Union[str, Path], state_dict: Optional[dict] = None) -> None:
        """Write ``directory/config.json`` and ``directory/model.safetensors`` (``state_dict`` defaults to the
        model's own)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / "config.json", json.dumps(to_dict(self.config), indent=2) + "\n")
        sd = state_dict if state_dict is not None else self.state_dict()
        save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(directory / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, directory: Union[str, Path], device="cpu", **overrides):
        """The model of a folder written by :meth:`save_pretrained` (strict loading); ``overrides`` replace
        config keys (e.g. ``attention_backend``). Errors name the file."""
        name = cls.__name__
        directory = Path(directory)
        cfg_path, weights = directory / "config.json", directory / "model.safetensors"
        for pth in (cfg_path, weights):
            if not pth.is_file():
                raise InputError(f"{pth} not found: a {name} model folder holds config.json and "
                                 f"model.safetensors (written by {name}.save_pretrained)")
        try:
            config = from_dict(cls.config_class, {**json.loads(cfg_path.read_text()), **overrides})
        except (ValueError, UnicodeDecodeError, TypeError) as e:  # JSONDecodeError, ConfigError
            raise InputError(f"{cfg_path}: not a {name} model config ({e})") from None
        model = cls(config)
        load_state_dict_strict(model, read_state_dict(weights), str(weights))
        return model.to(device)
