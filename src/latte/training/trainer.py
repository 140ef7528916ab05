"""``latte train``: the engine (:mod:`latte.training.engine`) running the Latte task
(:mod:`latte.training.tasks.latte`).

``train(config, dataset=...)`` is the Python entry point; ``latte train`` calls it.
"""
from __future__ import annotations

from typing import Callable, Optional

from torch.utils.data import Dataset

from latte.training.config import RunConfig
from latte.training.engine import Engine, TrainResult, run
from latte.training.tasks.latte import LatteTask

__all__ = ["Trainer", "TrainResult", "train"]


class Trainer(Engine):
    """The engine with a :class:`LatteTask` built from ``config`` (``self.task``); :meth:`fit` runs the loop."""

    def __init__(self, config: RunConfig, dataset: Optional[Dataset] = None, resume: Optional[str] = None,
                 device: Optional[str] = None, on_step_end: Optional[Callable[[Engine], None]] = None,
                 progress: bool = True):
        self.config = config
        super().__init__(LatteTask(config, dataset), config.train, resume=resume, device=device,
                         on_step_end=on_step_end, progress=progress, wandb=config.wandb)


def train(config: RunConfig, dataset: Optional[Dataset] = None, resume: Optional[str] = None,
          device: Optional[str] = None, on_step_end: Optional[Callable[[Engine], None]] = None,
          progress: bool = True) -> TrainResult:
    """Train a Latte model as ``config`` says; ``resume``: a run dir or checkpoint ('' = ``train.run_dir``).

    ``dataset``: any map-style dataset of dicts (``latents (C, F, h, w)`` or ``video (3, F, H, W)``, plus ``y``
    / ``caption``, and ``index``); None builds it from ``config.data``. ``progress=False`` hides the progress bar.
    """
    return run(LatteTask(config, dataset), config.train, resume=resume, device=device, on_step_end=on_step_end,
               progress=progress, wandb=config.wandb)
