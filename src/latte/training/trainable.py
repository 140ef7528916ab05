"""Which parameters train: ``train.trainable: all | [name patterns] | lora``.

* ``all``: every parameter;
* a list of ``fnmatch`` patterns over parameter names (``blocks.*.attn.*``, ``*temporal*``): those train,
  everything else is frozen (``requires_grad`` False, not in the optimizer);
* ``lora``: low-rank adapters (``peft``) on the ``nn.Linear`` modules whose names match ``train.lora.targets``
  (default: the task's attention and MLP projections); only the adapters train (:mod:`latte.models.lora`).
"""
from __future__ import annotations

import fnmatch
from typing import Sequence, Union

from torch import nn

from latte.config import ConfigError
from latte.models.lora import add_lora

__all__ = ["apply_trainable"]


def apply_trainable(model: nn.Module, trainable: Union[str, Sequence[str]], lora=None,
                    default_targets: Sequence[str] = ()) -> str:
    """Freeze what does not train (in place); returns a one-line summary ('' when everything trains)."""
    if trainable == "all":
        return ""
    if trainable == "lora":
        targets = list(lora.targets) if lora is not None and lora.targets else list(default_targets)
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
