"""Exponential moving average of the weights, kept in float32."""
from __future__ import annotations

import copy

import torch
from torch import nn


def create_ema(model: nn.Module) -> nn.Module:
    """A frozen float32 copy of ``model`` in eval mode (the EMA starts equal to the weights)."""
    ema = copy.deepcopy(model).float().eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * model`` for every trained parameter (float32 math); frozen ones
    (``requires_grad`` False: ``train.trainable``) stay as they are; buffers are copied.

    Parameters are matched by name, so ``model`` may be the bare module of a DDP/compiled wrapper's module.
    """
    model_params = dict(model.named_parameters())
    for name, ema_param in ema.named_parameters():
        if not model_params[name].requires_grad:
            continue
        param = model_params[name].detach()
        if hasattr(param, "full_tensor") and not hasattr(ema_param, "full_tensor"):  # FSDP2 DTensor shard
            param = param.full_tensor()
        ema_param.mul_(decay).add_(param.to(ema_param.dtype), alpha=1.0 - decay)
    model_buffers = dict(model.named_buffers())
    for name, ema_buffer in ema.named_buffers():
        if name in model_buffers:
            ema_buffer.copy_(model_buffers[name])
