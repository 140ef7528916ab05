"""Which parameters train: ``train.trainable: all | [name patterns] | lora``.

* ``all``: every parameter;
* a list of ``fnmatch`` patterns over parameter names (``blocks.*.attn.*``, ``*temporal*``): those train,
  everything else is frozen (``requires_grad`` False, not in the optimizer);
* ``lora``: low-rank adapters (``peft``) on the ``nn.Linear`` modules whose names match ``train.lora.targets``
  (default: the task's attention and MLP projections); only the adapters train (:mod:`latte.models.lora`).
  ``train.lora.layers: spatial`` keeps the targets inside temporal modules out (:func:`is_temporal`), so the
  temporal layers stay exactly as they were (personalisation from still images).
"""
from __future__ import annotations

import fnmatch
from typing import Sequence, Union

from torch import nn

from latte.config import ConfigError
from latte.models.lora import add_lora, matching_linears

__all__ = ["apply_trainable", "is_temporal", "spatial_only"]

# name parts of temporal modules: Latte factorized blocks (attn_temporal), LaVie U-Nets (attn_temp, norm_temp,
# attn_temporal, resblock_temporal, *_temporal_blocks, temporal_rotary_emb)
_TEMPORAL_PARTS = ("attn_temp", "norm_temp")


def is_temporal(model: nn.Module, name: str) -> bool:
    """Whether module ``name`` of ``model`` lies in a temporal module: a Latte block of kind 'temporal' (or a
    temporal attention of a factorized block), or a LaVie temporal attention / ResBlock / module."""
    parts = name.split(".")
    if any(p.startswith(_TEMPORAL_PARTS) or "temporal" in p for p in parts):
        return True
    module = model
    for part in parts:
        module = getattr(module, part, None) if not part.isdigit() else module[int(part)]
        if module is None:
            return False
        if getattr(module, "kind", None) == "temporal":
            return True
    return False


def spatial_only(model: nn.Module, targets: Sequence[str]) -> list[str]:
    """The ``nn.Linear`` modules matching ``targets`` that are not temporal (exact names)."""
    if any(getattr(m, "kind", None) == "split_heads" for m in model.modules()):
        raise ConfigError("train.lora.layers 'spatial': variant 'factorized_heads' shares one attention between "
                          "space and time; use layers 'all' or another variant")
    names = [n for n in matching_linears(model, targets) if not is_temporal(model, n)]
    if not names:
        raise ConfigError(f"train.lora.layers 'spatial': every target {list(targets)} lies in a temporal module")
    return names


def apply_trainable(model: nn.Module, trainable: Union[str, Sequence[str]], lora=None,
                    default_targets: Sequence[str] = ()) -> str:
    """Freeze what does not train (in place); returns a one-line summary ('' when everything trains)."""
    if trainable == "all":
        return ""
    if trainable == "lora":
        targets = list(lora.targets) if lora is not None and lora.targets else list(default_targets)
        if lora is not None and lora.layers == "spatial":
            targets = spatial_only(model, targets)
        add_lora(model, lora.rank if lora is not None else 8, lora.alpha if lora is not None else 8.0, targets)
    else:
        patterns = [trainable] if isinstance(trainable, str) else list(trainable)
        names = [n for n, _ in model.named_parameters()]
        unused = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
        if unused:
            raise ConfigError(f"train.trainable: pattern {unused[0]!r} matches no parameter "
                              f"(names look like {names[0]!r}, {names[-1]!r})")
        for name, param in model.named_parameters():
            param.requires_grad_(any(fnmatch.fnmatchcase(name, p) for p in patterns))
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"trainable parameters: {train:,} of {total:,} ({100 * train / max(total, 1):.2f}%, train.trainable {trainable})"
