"""The Latte transformer family (``Latte``, ``LatteConfig``) and the official size table."""
from latte.models.config import LatteConfig, latte_presets, preset
from latte.models.latte import Latte

__all__ = ["Latte", "LatteConfig", "latte_presets", "preset"]
