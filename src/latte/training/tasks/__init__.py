"""Tasks: what one model kind needs from the training engine (:mod:`latte.training.engine`).

A task is a small object; the engine calls (``Task`` below lists them, :class:`TaskBase` gives defaults):

* ``build_model(device, resuming) -> nn.Module`` — the model from its config section (``resuming``: weights
  come from the checkpoint, so skip ``init_from``); messages for the user go into ``self.messages``;
* ``setup(engine)`` — after the model (and EMA) exist: build what the loss needs (diffusion, encoders);
* ``learning_rate(step, train)`` — the lr of a step (default: ``train.lr_schedule``);
* ``blocks(model) -> list[nn.Module]`` — the repeated blocks: FSDP2 shards each one;
* ``lora_targets`` — default module-name patterns that ``train.trainable: lora`` adapts;
* ``dataset(engine) -> Dataset`` of dicts with an ``index`` — read in the engine's seeded, sharded,
  resumable order; or, instead, ``draw_batch(step) -> batch`` for tasks that draw a batch per step;
* ``loss(model, batch, ctx) -> {"loss": scalar tensor, ...}`` — the batch mean; other entries are logged.
  Conditioning dropout for guidance happens here; per-sample randomness is keyed by ``ctx.step``; the model's
  forward runs under ``ctx.autocast()``;
* ``pipeline(model)`` — the sampling pipeline of (EMA) weights; ``validate(engine) -> list[Path]`` writes
  validation samples with it every ``validation_every`` steps;
* ``model_dir``, ``save_weights(model, folder, state_dict)``, ``load_weights(model, folder)``,
  ``save_config(folder)``, ``check_resume(checkpoint_dir)``, ``state_dict()`` / ``load_state_dict()`` — the
  task's share of a checkpoint;
* ``name`` (progress bar), ``throughput_unit`` + ``batch_items(batch)`` (items per second in the logs),
  ``config_dict()`` (W&B), ``resume_command``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from latte.training.schedules import learning_rate

__all__ = ["Task", "TaskBase"]


class Task(Protocol):
    name: str
    model_dir: str
    throughput_unit: str
    lora_targets: list[str]
    validation_every: int
    resume_command: str

    def build_model(self, device: torch.device, resuming: bool) -> nn.Module: ...
    def setup(self, engine) -> None: ...
    def learning_rate(self, step: int, train) -> float: ...
    def blocks(self, model: nn.Module) -> list[nn.Module]: ...
    def dataset(self, engine): ...
    def loss(self, model: nn.Module, batch: Any, ctx) -> dict[str, torch.Tensor]: ...
    def pipeline(self, model: nn.Module): ...
    def validate(self, engine) -> list[Path]: ...
    def batch_items(self, batch: Any) -> int: ...
    def save_weights(self, model: nn.Module, folder: Path, state_dict: dict | None) -> None: ...
    def load_weights(self, model: nn.Module, folder: Path) -> None: ...
    def save_config(self, folder: Path) -> None: ...
    def check_resume(self, checkpoint_dir: Path) -> None: ...
    def config_dict(self) -> dict: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class TaskBase:
    """Defaults: no blocks, no validation, weights as ``model.safetensors``, no config file, no extra state."""

    name = "train"
    model_dir = "model"
    throughput_unit = "items"
    lora_targets: list[str] = []
    validation_every = 0
    resume_command = "latte train CONFIG --resume RUN_DIR"

    def __init__(self):
        self.messages: list[str] = []

    def setup(self, engine) -> None:
        pass

    def learning_rate(self, step: int, train) -> float:
        """The learning rate of optimizer step ``step`` (``train``: the TrainConfig): ``train.lr_schedule``."""
        return learning_rate(step, lr=train.lr, schedule=train.lr_schedule, warmup_steps=train.warmup_steps,
                             max_steps=train.max_steps, min_lr=train.min_lr)

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return []

    def pipeline(self, model: nn.Module):
        raise NotImplementedError(f"{type(self).__name__} has no sampling pipeline")

    def validate(self, engine) -> list[Path]:
        return []

    def batch_items(self, batch: Any) -> int:
        return len(batch["index"])

    def save_weights(self, model: nn.Module, folder: Path, state_dict: dict | None) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        state = state_dict if state_dict is not None else model.state_dict()
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))

    def load_weights(self, model: nn.Module, folder: Path) -> None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(folder / "model.safetensors")))

    def save_config(self, folder: Path) -> None:
        pass

    def check_resume(self, checkpoint_dir: Path) -> None:
        pass

    def config_dict(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
