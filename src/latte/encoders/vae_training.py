"""``latte train-vae``: the config, data and measurements of training a small diffusers ``AutoencoderKL`` on the
frames of a video dataset (the loop is the training engine with :mod:`latte.training.tasks.vae`).

Loss per step (frames of ``batch_size`` videos flattened into an image batch ``(B*F, 3, H, W)``)::

    recon(x, decode(z)) + kl_weight * KL(q(z|x) || N(0, 1))      z ~ q(z|x)

``recon`` is the mean L1 or L2 over pixels, the KL is averaged over latent elements. After the last step the
latent scaling factor ``1 / std(z)`` over ``scaling_sample_frames`` training frames is stored in the VAE's
config, reconstruction PSNR on held-out videos is measured, and ``RUN/vae/`` (``save_pretrained``) plus
``RUN/vae_report.json`` are written. ``RUN/vae`` loads with ``autoencoder: {kind: trained, path: RUN/vae}``.

Batches and posterior noise are drawn from generators keyed by ``(seed, step)``, so a resumed run reproduces
an uninterrupted one exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional, Sequence

import torch

from latte.config import ConfigError, from_dict, option
from latte.encoders.autoencoders import frames_of

__all__ = ["VAEArchConfig", "VAEDataConfig", "VAETrainConfig", "build_vae", "build_vae_dataset", "moving_squares",
           "psnr", "reconstruction_psnr", "fit_scaling_factor", "pick_frames", "video_frames"]


@dataclass
class VAEArchConfig:
    """Architecture of the diffusers AutoencoderKL to train."""

    block_out_channels: list[int] = option(
        factory=lambda: [32, 64, 64],
        help="channels of each resolution level; the spatial downsample factor is 2^(levels - 1) (3 levels = 4x)")
    layers_per_block: int = option(1, "ResNet blocks per level (the decoder uses one more, as in diffusers)")
    latent_channels: int = option(4, "channels of the latent (4 like the SD VAE)")
    norm_num_groups: int = option(16, "GroupNorm groups; must divide every entry of block_out_channels")
    mid_block_attention: bool = option(True, "self-attention in the encoder/decoder mid blocks (as in SD)")

    def validate(self) -> None:
        if not self.block_out_channels:
            raise ConfigError("vae.block_out_channels: needs at least one level")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ConfigError(f"vae.norm_num_groups: {self.norm_num_groups} does not divide channels {bad}")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


@dataclass
class VAEDataConfig:
    """Where training frames come from."""

    RENAMED = {"size": "image_size"}

    source: Literal["squares", "dataset"] = option(
        "squares",
        "squares: built-in procedural moving coloured squares (no files); dataset: any `latte train` data "
        "section, given under `dataset` and built with latte.data.build_dataset")
    dataset: Optional[dict[str, Any]] = option(
        None, "source 'dataset': the data section (same keys as `data:` of a `latte train` config)")
    num_videos: int = option(256, "source 'squares': number of clips generated")
    num_frames: int = option(8, "source 'squares': frames per clip")
    image_size: int = option(32, "source 'squares': frame height and width in pixels")
    holdout_videos: int = option(
        16, "the last N videos of the dataset are never trained on; reconstruction PSNR is measured on them")

    def validate(self) -> None:
        if self.source == "dataset" and not self.dataset:
            raise ConfigError("data.dataset: required when data.source is 'dataset'")
        if self.source == "squares" and self.dataset:
            raise ConfigError("data.dataset: only used when data.source is 'dataset'")
        if self.source == "dataset":
            defaults = VAEDataConfig()
            unused = [k for k in ("num_videos", "num_frames", "image_size") if getattr(self, k) != getattr(defaults, k)]
            if unused:
                raise ConfigError(f"data.{unused[0]}: only used when data.source is 'squares'; set clip count, "
                                  "frames and size inside data.dataset instead")
        if self.holdout_videos < 1:
            raise ConfigError("data.holdout_videos: must be >= 1 (PSNR is measured on held-out videos)")


@dataclass
class VAETrainConfig:
    """Config of ``latte train-vae``."""

    RENAMED = {"steps": "max_steps", "grad_clip": "clip_grad_norm"}

    run_dir: str = option("runs/vae", "output directory: checkpoints/, tensorboard/, vae/, vae_report.json")
    seed: int = option(0, "seed of the weights init, batch order and posterior noise")
    device: Optional[str] = option(None, "torch device; null = cuda if available, else cpu")
    data: VAEDataConfig = option(factory=VAEDataConfig, help="training data")
    vae: VAEArchConfig = option(factory=VAEArchConfig, help="AutoencoderKL architecture")
    max_steps: int = option(1000, "optimizer steps")
    batch_size: int = option(32, "videos per step; their frames form the image batch")
    frames_per_video: Optional[int] = option(
        1, "frames drawn at random from each video per step (more, less correlated videos for the same "
              "compute); null = all frames")
    lr: float = option(2e-3, "peak AdamW learning rate")
    lr_schedule: Literal["constant", "warmup", "cosine"] = option(
        "cosine", "constant; warmup (linear over warmup_steps then constant); cosine (warmup then decay to 0)")
    warmup_steps: int = option(30, "linear warmup steps (warmup and cosine schedules)")
    weight_decay: float = option(0.0, "AdamW decoupled weight decay")
    recon_loss: Literal["l1", "l2"] = option("l2", "pixel reconstruction loss: mean absolute or squared error")
    kl_weight: float = option(1e-4, "weight of the KL term (KL averaged over latent elements)")
    clip_grad_norm: Optional[float] = option(1.0, "max global gradient norm; null disables clipping")
    log_every: int = option(10, "log scalars to TensorBoard every N steps")
    ckpt_every: int = option(500, "write a resumable checkpoint every N steps (and at the end)")
    keep_last: int = option(2, "checkpoints kept (older ones are deleted)")
    scaling_sample_frames: int = option(512, "training frames encoded to fit the latent scaling factor 1/std")
    init_from: Optional[str] = option(
        None, "start from a trained AutoencoderKL folder (e.g. a quickstart's RUN/vae) instead of fresh weights; "
              "the vae section must describe its architecture (checked)")
    trainable: Literal["all", "decoder"] = option(
        "all", "'decoder' (needs init_from): fine-tune only the decoder and post_quant_conv; the encoder, hence "
               "every latent and the scaling factor, stays exactly as it was, so diffusion models trained on its "
               "latents keep working (how SD's VAE decoders were fine-tuned); 'all': every weight")

    def validate(self) -> None:
        if self.frames_per_video is not None and self.frames_per_video < 1:
            raise ConfigError(f"frames_per_video: must be >= 1 or null, got {self.frames_per_video}")
        for key in ("max_steps", "batch_size", "log_every", "ckpt_every", "keep_last", "scaling_sample_frames"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be >= 1, got {getattr(self, key)}")
        if self.trainable == "decoder" and not self.init_from:
            raise ConfigError("trainable: 'decoder' fine-tunes a trained autoencoder's decoder; set init_from to its "
                              "folder")


# ----------------------------------------------------------------------------------------------- data


def moving_squares(num_videos: int, num_frames: int, size: int, seed: int = 0) -> list[dict]:
    """Procedural clips of 1-3 coloured squares moving in straight lines over a dark background.

    Returns dataset items ``{"video": (3, F, size, size) float32 in [-1, 1], "index": i}``.
    """
    g = torch.Generator().manual_seed(seed)
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    items = []
    for i in range(num_videos):
        video = (torch.rand(3, 1, 1, 1, generator=g) * 0.3).expand(3, num_frames, size, size).clone()
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            side = float(torch.empty(1).uniform_(0.15, 0.4, generator=g)) * size
            start = torch.rand(2, generator=g) * (size - side)
            velocity = (torch.rand(2, generator=g) - 0.5) * size / max(num_frames, 1)
            color = torch.rand(3, generator=g)
            for t in range(num_frames):
                x0, y0 = (start + velocity * t).tolist()
                # anti-aliased coverage of [x0, x0 + side] per pixel column / row
                cx = ((coords + 0.5).clamp(max=x0 + side) - (coords - 0.5).clamp(min=x0)).clamp(0, 1)
                cy = ((coords + 0.5).clamp(max=y0 + side) - (coords - 0.5).clamp(min=y0)).clamp(0, 1)
                alpha = cy[:, None] * cx[None, :]
                video[:, t] = video[:, t] * (1 - alpha) + color[:, None, None] * alpha
        items.append({"video": video * 2 - 1, "index": i})
    return items


def build_vae_dataset(cfg: VAEDataConfig, seed: int) -> Sequence[dict]:
    if cfg.source == "squares":
        return moving_squares(cfg.num_videos, cfg.num_frames, cfg.image_size, seed=seed)
    try:
        from latte.data import DataConfig, build_dataset
    except ImportError as e:
        raise ConfigError("data.source 'dataset' needs latte.data.DataConfig and latte.data.build_dataset, "
                          f"which this installation lacks ({e}); use data.source 'squares'") from None
    return build_dataset(from_dict(DataConfig, cfg.dataset, prefix="data.dataset"), split="train", progress=False)


# ---------------------------------------------------------------------------------------------- model


def build_vae(cfg: VAEArchConfig, sample_size: int = 32):
    """A fresh diffusers ``AutoencoderKL`` with this architecture (scaling factor 1 until fitted)."""
    from diffusers import AutoencoderKL

    levels = len(cfg.block_out_channels)
    return AutoencoderKL(
        block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels, norm_num_groups=cfg.norm_num_groups,
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
        mid_block_add_attention=cfg.mid_block_attention, sample_size=sample_size, scaling_factor=1.0)


def psnr(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of ``(N, 3, H, W)`` images in [-1, 1] (estimate clamped), on the [0, 1] scale."""
    ref = (reference.float() + 1) / 2
    est = (estimate.float().clamp(-1, 1) + 1) / 2
    mse = (ref - est).pow(2).flatten(1).mean(1).clamp(min=1e-10)
    return -10 * torch.log10(mse)


@torch.no_grad()
def video_frames(dataset: Sequence[dict], indices: Sequence[int]) -> torch.Tensor:
    videos = torch.stack([dataset[int(i)]["video"] for i in indices])
    return frames_of(videos)


def pick_frames(frames: torch.Tensor, videos: int, per_video: int | None, generator) -> torch.Tensor:
    """``(videos*F, 3, H, W)`` → ``(videos*per_video, 3, H, W)``: the same random frame positions per video."""
    total = frames.shape[0] // videos
    if per_video is None or per_video >= total:
        return frames
    keep = torch.randperm(total, generator=generator)[:per_video]
    return frames.view(videos, total, *frames.shape[1:])[:, keep].flatten(0, 1)


@torch.no_grad()
def reconstruction_psnr(vae, dataset: Sequence[dict], indices: Sequence[int], device, chunk: int = 64) -> float:
    """Mean per-frame PSNR (dB) of ``decode(mean of q(z|x))`` over the frames of ``indices``."""
    vae.eval()
    values = []
    for start in range(0, len(indices), max(1, chunk // 8)):
        frames = video_frames(dataset, indices[start:start + max(1, chunk // 8)]).to(device)
        recon = vae.decode(vae.encode(frames).latent_dist.mode()).sample
        values.append(psnr(frames, recon).cpu())
    return float(torch.cat(values).mean())


@torch.no_grad()
def fit_scaling_factor(vae, dataset: Sequence[dict], indices: Sequence[int], max_frames: int, device,
                       seed: int) -> float:
    """``1 / std`` of posterior samples over up to ``max_frames`` frames of the videos ``indices``."""
    vae.eval()
    g = torch.Generator(device=device).manual_seed(seed)
    latents, count = [], 0
    for i in indices:
        if count >= max_frames:
            break
        frames = video_frames(dataset, [i])[: max_frames - count].to(device)
        latents.append(vae.encode(frames).latent_dist.sample(g).float().cpu())
        count += frames.shape[0]
    return float(1.0 / torch.cat(latents).std())
