"""Autoencoders (video ↔ latents) and text encoders (prompts → features), selected by config.

>>> ae = build_autoencoder(AutoencoderConfig(kind="identity", patch_factor=2))
>>> text = build_text_encoder(TextEncoderConfig())            # offline MiniLM
"""
from __future__ import annotations

from latte.config import from_dict
from latte.encoders.base import Autoencoder, TextEncoder
from latte.encoders.config import AutoencoderConfig, TextEncoderConfig
from latte.encoders.loading import MissingWeightsError

__all__ = [
    "Autoencoder",
    "TextEncoder",
    "AutoencoderConfig",
    "TextEncoderConfig",
    "MissingWeightsError",
    "build_autoencoder",
    "build_text_encoder",
]


def build_autoencoder(cfg: AutoencoderConfig | dict, device=None, dtype=None) -> Autoencoder:
    """The autoencoder described by ``cfg`` (a config section or its plain dict), in eval mode on ``device``.

    ``dtype`` (a torch dtype or 'float16'...) overrides ``cfg.dtype``; half precision is only used on CUDA.
    Raises :class:`MissingWeightsError` naming the path tried and the files expected.
    """
    from latte.encoders.autoencoders import build_autoencoder_from_config

    if isinstance(cfg, dict):
        cfg = from_dict(AutoencoderConfig, cfg, prefix="autoencoder")
    cfg.validate()  # sections built in code (defaults) were never validated
    return build_autoencoder_from_config(cfg, device=device, dtype=dtype)


def build_text_encoder(cfg: TextEncoderConfig | dict, device=None) -> TextEncoder:
    """The text encoder described by ``cfg`` (a config section or its plain dict), in eval mode on ``device``.

    The result also has ``null_embedding()`` (cached empty-caption features for classifier-free guidance).
    """
    from latte.encoders.text import load_text_encoder

    if isinstance(cfg, dict):
        cfg = from_dict(TextEncoderConfig, cfg, prefix="text_encoder")
    cfg.validate()
    return load_text_encoder(cfg, device=device)
