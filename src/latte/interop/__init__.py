"""Other formats: the official Latte checkpoints (``latte.interop.official``) and diffusers."""
