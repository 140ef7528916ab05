"""The classifier task of ``latte train-classifier``: the synthetic-data attribute classifier behind the
synthetic FVD and attribute accuracy (:mod:`latte.metrics.synthetic`).

Training and validation clips are rendered once; each step draws ``batch_size`` clips and Gaussian pixel
noise from one generator seeded with ``seed`` (its state is part of the checkpoint), and the loss is the sum
of the heads' cross-entropies. AdamW with a cosine decay to 0, no EMA.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from latte.metrics.synthetic import (ClassifierTrainConfig, VideoAttributeClassifier, build_classifier,
                                     head_accuracy, render_set, to_float)
from latte.training.config import TrainConfig
from latte.training.engine import Engine
from latte.training.tasks import TaskBase

__all__ = ["ClassifierTask", "train_classifier", "engine_config"]


def engine_config(cfg: ClassifierTrainConfig, run_dir: Optional[str] = None) -> TrainConfig:
    """The engine settings of a ``latte train-classifier`` config (no EMA, no clipping, cosine decay to 0)."""
    return TrainConfig(run_dir=run_dir, seed=cfg.seed, max_steps=cfg.max_steps, batch_size=cfg.batch_size,
                       lr=cfg.lr, lr_schedule="cosine", warmup_steps=0, weight_decay=cfg.weight_decay,
                       clip_grad_norm=None, ema_decay=None, log_every=cfg.max_steps,
                       ckpt_every=cfg.max_steps, keep_last=1, num_workers=0)


class ClassifierTask(TaskBase):
    """``latte train-classifier``: builds :class:`VideoAttributeClassifier` and renders its data."""

    name = "train classifier"
    model_dir = "classifier"
    throughput_unit = "clips"
    resume_command = "latte train-classifier ... (rerun)"

    def __init__(self, cfg: ClassifierTrainConfig, progress: bool = True):
        super().__init__()
        self.cfg, self.progress = cfg, progress

    def build_model(self, device: torch.device, resuming: bool) -> nn.Module:
        self.device = device
        return build_classifier(self.cfg)

    def setup(self, engine) -> None:
        cfg = self.cfg
        self.train_x, self.train_y = render_set(cfg, cfg.num_videos, "train", "render train clips", self.progress)
        self.val_x, self.val_y = render_set(cfg, cfg.val_videos, "val", "render val clips", self.progress)
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def learning_rate(self, step: int, train) -> float:
        """Cosine decay to 0 in the form the classifier always used, ``lr * 0.5 * (1 + cos(pi * s / steps))``
        (bit-identical to earlier trainings; the engine's ``cosine`` rounds ``pi * (s / steps)`` instead)."""
        return train.lr * (0.5 * (1 + math.cos(math.pi * step / train.max_steps)))

    def draw_batch(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Noisy float clips ``(B, 3, F, S, S)`` and their label indices per head."""
        idx = torch.randint(0, len(self.train_x), (self.cfg.batch_size,), generator=self.generator)
        x = to_float(self.train_x[idx])
        x = x + self.cfg.noise_std * torch.randn(x.shape, generator=self.generator)
        return x.to(self.device), {k: v[idx].to(self.device) for k, v in self.train_y.items()}

    def loss(self, model: nn.Module, batch, ctx) -> dict[str, torch.Tensor]:
        x, labels = batch
        with ctx.autocast():
            logits = model(x)
        return {"loss": sum(F.cross_entropy(logits[k].float(), labels[k]) for k in logits)}

    def batch_items(self, batch) -> int:
        return batch[0].shape[0]

    def accuracy(self, model: VideoAttributeClassifier) -> dict[str, float]:
        """Per-head accuracy on the validation clips."""
        return head_accuracy(model, self.val_x, self.val_y)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def train_classifier(cfg: ClassifierTrainConfig, progress: bool = True,
                     run_dir: Optional[str] = None) -> tuple[VideoAttributeClassifier, dict]:
    """Render the data and train; returns the model (eval mode) and ``{train_loss, val_accuracy}``.

    ``train_loss`` is an exponential moving average (0.95) of the step losses. ``run_dir``: keep logs,
    TensorBoard and a final checkpoint there (default: nothing on disk but what :func:`save_classifier` writes).
    """
    task = ClassifierTask(cfg, progress)
    loss_avg = [float("nan")]

    def track(engine) -> None:
        value = engine.last_stats["loss"]
        loss_avg[0] = value if math.isnan(loss_avg[0]) else 0.95 * loss_avg[0] + 0.05 * value

    engine = Engine(task, engine_config(cfg, run_dir), device="cpu", progress=progress, on_step_end=track)
    engine.fit()
    model = engine.model
    metrics = {"train_loss": loss_avg[0], "val_accuracy": task.accuracy(model)}
    return model.eval(), metrics
