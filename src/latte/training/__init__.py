"""Training: the engine (one loop for every model), the per-model tasks, the run config, checkpoints, exact
resume and distributed training (``latte train``, ``latte train-vae``, ``latte train-classifier``)."""
from latte.training.config import RunConfig, TrainConfig, ValidationConfig, WandbConfig, load_run_config

__all__ = ["RunConfig", "TrainConfig", "ValidationConfig", "WandbConfig", "load_run_config", "train", "Trainer",
           "Engine", "TensorItems"]


def __getattr__(name):  # the loop imports torch-heavy modules; load it on first use
    if name in ("train", "Trainer", "TrainResult"):
        from latte.training import trainer

        return getattr(trainer, name)
    if name in ("Engine", "StepContext"):
        from latte.training import engine

        return getattr(engine, name)
    if name == "TensorItems":
        from latte.data.loader import TensorItems

        return TensorItems
    raise AttributeError(name)
