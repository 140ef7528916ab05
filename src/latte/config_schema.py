"""The documented config files, in the order ``latte config-docs`` prints them (``docs/config.md``).

One entry per command that reads a YAML config: ``(title, top-level config dataclass)``.
"""
from __future__ import annotations


def all_sections() -> list[tuple[str, type]]:
    from latte.data.cache import CacheConfig
    from latte.encoders.vae_training import VAETrainConfig
    from latte.metrics.synthetic import ClassifierTrainConfig
    from latte.training.config import RunConfig
    from latte.training.tasks.lavie import LavieRunConfig

    return [
        ("Run configuration (latte train)", RunConfig),
        ("LaVie cascade stage (latte train, a config with a lavie: section)", LavieRunConfig),
        ("Latent cache (latte cache)", CacheConfig),
        ("VAE training (latte train-vae)", VAETrainConfig),
        ("Synthetic-attribute classifier (latte train-classifier)", ClassifierTrainConfig),
    ]
