"""The Latte transformer family (``Latte``, ``LatteConfig``), the LaVie U-Net family (``UNet3D``,
``UNet3DConfig``) and their size tables."""
from latte.models.config import LatteConfig, UNet3DConfig, latte_presets, preset, unet3d_preset, unet3d_presets
from latte.models.latte import Latte
from latte.models.unet3d import UNet3D

__all__ = ["Latte", "LatteConfig", "UNet3D", "UNet3DConfig", "latte_presets", "preset", "unet3d_preset",
           "unet3d_presets"]
