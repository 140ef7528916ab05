"""Autoencoders (video ↔ latents) and text encoders (prompts → features)."""
from latte.encoders.base import Autoencoder, TextEncoder

__all__ = ["Autoencoder", "TextEncoder"]
