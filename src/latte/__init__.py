"""latte-video: Latte, the latent diffusion transformer for video generation (arXiv 2401.03048)."""
__version__ = "0.1.0"
