"""Concrete autoencoders: diffusers VAEs (SD, temporal decoder, self-trained) and the pixel-space identity.

All of them implement :class:`latte.encoders.base.Autoencoder` on videos ``(B, C, F, H, W)``.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from latte.encoders.config import AutoencoderConfig
from latte.encoders.loading import (WEIGHT_SUFFIXES, MissingWeightsError, fingerprint, load_checked,
                                    require_folder, resolve_device, resolve_dtype)
from latte.io import InputError, WeightsError

__all__ = ["DiffusersAutoencoder", "IdentityAutoencoder", "load_diffusers_vae", "frames_of", "videos_of"]

VAE_FILES = ["config.json", "diffusion_pytorch_model.safetensors|diffusion_pytorch_model.bin"]


def frames_of(video: torch.Tensor) -> torch.Tensor:
    """``(B, C, F, H, W)`` → ``(B*F, C, H, W)`` (frames of each video contiguous)."""
    b, c, f, h, w = video.shape
    return video.transpose(1, 2).reshape(b * f, c, h, w)


def videos_of(frames: torch.Tensor, batch: int) -> torch.Tensor:
    """``(B*F, C, H, W)`` → ``(B, C, F, H, W)``; inverse of :func:`frames_of`."""
    bf, c, h, w = frames.shape
    return frames.reshape(batch, bf // batch, c, h, w).transpose(1, 2)


def _check_video(video: torch.Tensor, name: str) -> None:
    if video.ndim != 5:
        raise ValueError(f"{name}: expected a (B, C, F, H, W) tensor, got shape {tuple(video.shape)}")


class DiffusersAutoencoder:
    """A diffusers ``AutoencoderKL`` or ``AutoencoderKLTemporalDecoder`` applied frame-wise in chunks.

    ``encode``: video ``(B, 3, F, H, W)`` in [-1, 1] → ``(z - shift_factor) * scaling_factor``, shape
    ``(B, C_lat, F, H/d, W/d)``, float32. ``decode`` inverts the scaling and returns ``(B, 3, F, H, W)``
    float32 (not clamped). Frame-wise VAEs give the same result for any ``chunk_size``; the temporal decoder
    decodes each video in chunks of ``chunk_size`` frames with ``num_frames=chunk`` (official: 14).
    """

    def __init__(self, vae: torch.nn.Module, *, kind: str, source: dict, chunk_size: int,
                 sample_posterior: bool, scaling_factor: float | None = None):
        from diffusers import AutoencoderKLTemporalDecoder

        self.vae = vae.eval().requires_grad_(False)
        self.kind = kind
        self.source = source
        self.chunk_size = chunk_size
        self.sample_posterior = sample_posterior
        cfg = vae.config
        self.latent_channels = int(cfg.latent_channels)
        self.downsample_factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.scaling_factor = float(scaling_factor if scaling_factor is not None else cfg.scaling_factor)
        self.shift_factor = float(getattr(cfg, "shift_factor", None) or 0.0)
        self.temporal = isinstance(vae, AutoencoderKLTemporalDecoder)

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    @torch.no_grad()
    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, 3, F, H, W)`` in [-1, 1] → scaled latents ``(B, C_lat, F, H/d, W/d)`` (float32)."""
        _check_video(video, "encode")
        latents = []
        for chunk in frames_of(video).split(self.chunk_size):
            dist = self.vae.encode(chunk.to(self.device, self.dtype)).latent_dist
            z = dist.sample(generator) if self.sample_posterior else dist.mode()
            latents.append(z.float())
        z = torch.cat(latents)
        return videos_of((z - self.shift_factor) * self.scaling_factor, video.shape[0])

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``(B, C_lat, F, h, w)`` → video ``(B, 3, F, h*d, w*d)`` (float32, ~[-1, 1])."""
        _check_video(latents, "decode")
        z = frames_of(latents) / self.scaling_factor + self.shift_factor
        z = z.to(self.device, self.dtype)
        if self.temporal:  # chunks must not straddle two videos: the decoder mixes frames within a chunk
            per_video = z.split(latents.shape[2])
            chunks = [c for v in per_video for c in v.split(self.chunk_size)]
            frames = [self.vae.decode(c, num_frames=c.shape[0]).sample.float() for c in chunks]
        else:
            frames = [self.vae.decode(c).sample.float() for c in z.split(self.chunk_size)]
        return videos_of(torch.cat(frames), latents.shape[0])

    def identity(self) -> dict:
        return {**self.source, "scaling_factor": self.scaling_factor, "shift_factor": self.shift_factor,
                "latent_channels": self.latent_channels, "downsample_factor": self.downsample_factor,
                "sample_posterior": self.sample_posterior, "dtype": str(self.dtype).removeprefix("torch.")}


class IdentityAutoencoder:
    """Pixel space: latents are the video itself, optionally space-to-depth patchified by ``patch_factor`` d.

    ``encode``: ``(B, 3, F, H, W)`` → ``(B, 3*d*d, F, H/d, W/d)`` times ``scaling_factor`` (default 1); the
    round trip is exact.
    """

    def __init__(self, patch_factor: int = 1, scaling_factor: float | None = None,
                 device: torch.device | None = None):
        self.patch_factor = patch_factor
        self.latent_channels = 3 * patch_factor * patch_factor
        self.downsample_factor = patch_factor
        self.scaling_factor = float(scaling_factor) if scaling_factor is not None else 1.0
        self.device = device or torch.device("cpu")

    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_video(video, "encode")
        d = self.patch_factor
        if video.shape[-1] % d or video.shape[-2] % d:
            raise ValueError(f"identity autoencoder: frame size {tuple(video.shape[-2:])} is not divisible by "
                             f"patch_factor {d}")
        z = F.pixel_unshuffle(frames_of(video.to(self.device, torch.float32)), d)
        return videos_of(z * self.scaling_factor, video.shape[0])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        _check_video(latents, "decode")
        frames = F.pixel_shuffle(frames_of(latents.to(self.device, torch.float32)) / self.scaling_factor,
                                 self.patch_factor)
        return videos_of(frames, latents.shape[0])

    def identity(self) -> dict:
        return {"kind": "identity", "patch_factor": self.patch_factor, "scaling_factor": self.scaling_factor,
                "latent_channels": self.latent_channels, "downsample_factor": self.downsample_factor}


def load_diffusers_vae(cfg: AutoencoderConfig, device: torch.device, dtype: torch.dtype):
    """Load the diffusers model named by ``cfg``; returns ``(vae, source)`` where ``source`` identifies it."""
    from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder

    path = Path(cfg.path).expanduser()
    what = f"autoencoder (kind '{cfg.kind}')"
    if path.suffix in WEIGHT_SUFFIXES and not path.is_dir():
        if cfg.kind != "sd_vae":
            raise MissingWeightsError(f"{what}: expects a diffusers folder ({', '.join(VAE_FILES)}), got the "
                                      f"file {path}; single files are only supported by kind 'sd_vae'")
        if not path.is_file():
            raise MissingWeightsError(f"{what}: weights file not found: {path}")
        kwargs = {}
        if cfg.single_file_config:
            config = Path(cfg.single_file_config).expanduser()
            kwargs["config"] = str(require_folder(config, ["config.json"], f"{what} autoencoder.single_file_config"))
        try:
            vae = load_checked(lambda: AutoencoderKL.from_single_file(
                str(path), local_files_only=True, torch_dtype=dtype, **kwargs), path, what)
        except WeightsError:
            raise
        except InputError as e:
            if cfg.single_file_config:
                raise
            raise InputError(  # the weights read fine: what is missing is the config (offline: not downloadable)
                f"{what}: {path} is a single weights file and its diffusers config could not be found ({e}); "
                f"pass a diffusers VAE folder ({', '.join(v.replace('|', ' or ') for v in VAE_FILES)}, e.g. "
                "sd-vae-ft-ema/) instead, or set autoencoder.single_file_config to a folder holding the matching "
                "config.json") from None
        source = {"kind": cfg.kind, "path": str(path), "fingerprint": fingerprint(path)}
    else:
        folder = path / cfg.subfolder if cfg.subfolder else path
        require_folder(folder, VAE_FILES, what)
        cls = AutoencoderKLTemporalDecoder if cfg.kind == "temporal_decoder" else AutoencoderKL
        vae = load_checked(lambda: cls.from_pretrained(str(folder), local_files_only=True, torch_dtype=dtype,
                                                       low_cpu_mem_usage=False),  # no `accelerate` needed
                           folder, what)
        source = {"kind": cfg.kind, "path": str(path), "subfolder": cfg.subfolder,
                  "fingerprint": fingerprint(folder)}
    return vae.to(device), source


def build_autoencoder_from_config(cfg: AutoencoderConfig, device=None, dtype=None):
    """See :func:`latte.encoders.build_autoencoder`."""
    device = resolve_device(device)
    if cfg.kind == "identity":
        return IdentityAutoencoder(cfg.patch_factor, cfg.scaling_factor, device)
    vae, source = load_diffusers_vae(cfg, device, resolve_dtype(dtype or cfg.dtype, device))
    return DiffusersAutoencoder(vae, kind=cfg.kind, source=source, chunk_size=cfg.resolved_chunk_size,
                                sample_posterior=cfg.sample_posterior, scaling_factor=cfg.scaling_factor)
