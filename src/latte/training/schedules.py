"""Learning-rate schedules as pure functions of the optimizer step (so resuming needs no scheduler state)."""
from __future__ import annotations

import math


def learning_rate(step: int, *, lr: float, schedule: str, warmup_steps: int = 0, max_steps: int = 1,
                  min_lr: float = 0.0) -> float:
    """The learning rate for optimizer step ``step`` (0-based).

    * ``constant``: ``lr``.
    * ``warmup``: linear from ``lr / warmup_steps`` at step 0 to ``lr`` at step ``warmup_steps - 1``, then ``lr``.
    * ``cosine``: the same warmup, then cosine decay from ``lr`` to ``min_lr`` at ``max_steps``.
    """
    if schedule == "constant":
        return lr
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "warmup":
        return lr
    if schedule == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")
