"""``latte train-vae``: train a small diffusers ``AutoencoderKL`` on the frames of a video dataset.

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

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import torch
import yaml

from latte.config import ConfigError, from_dict, option, to_dict
from latte.encoders.autoencoders import frames_of

__all__ = ["VAEArchConfig", "VAEDataConfig", "VAETrainConfig", "train_vae", "build_vae", "moving_squares",
           "psnr", "fit_scaling_factor"]


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

    source: Literal["squares", "dataset"] = option(
        "squares",
        "squares: built-in procedural moving coloured squares (no files); dataset: any `latte train` data "
        "section, given under `dataset` and built with latte.data.build_dataset")
    dataset: Optional[dict[str, Any]] = option(
        None, "source 'dataset': the data section (same keys as `data:` of a `latte train` config)")
    num_videos: int = option(256, "source 'squares': number of clips generated")
    num_frames: int = option(8, "source 'squares': frames per clip")
    size: int = option(32, "source 'squares': frame height and width in pixels")
    holdout_videos: int = option(
        16, "the last N videos of the dataset are never trained on; reconstruction PSNR is measured on them")

    def validate(self) -> None:
        if self.source == "dataset" and not self.dataset:
            raise ConfigError("data.dataset: required when data.source is 'dataset'")
        if self.source == "squares" and self.dataset:
            raise ConfigError("data.dataset: only used when data.source is 'dataset'")
        if self.source == "dataset":
            defaults = VAEDataConfig()
            unused = [k for k in ("num_videos", "num_frames", "size") if getattr(self, k) != getattr(defaults, k)]
            if unused:
                raise ConfigError(f"data.{unused[0]}: only used when data.source is 'squares'; set clip count, "
                                  "frames and size inside data.dataset instead")
        if self.holdout_videos < 1:
            raise ConfigError("data.holdout_videos: must be >= 1 (PSNR is measured on held-out videos)")


@dataclass
class VAETrainConfig:
    """Config of ``latte train-vae``."""

    run_dir: str = option("runs/vae", "output directory: checkpoints/, tensorboard/, vae/, vae_report.json")
    seed: int = option(0, "seed of the weights init, batch order and posterior noise")
    device: Optional[str] = option(None, "torch device; null = cuda if available, else cpu")
    data: VAEDataConfig = option(factory=VAEDataConfig, help="training data")
    vae: VAEArchConfig = option(factory=VAEArchConfig, help="AutoencoderKL architecture")
    steps: int = option(1000, "optimizer steps")
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
    perceptual_weight: float = option(
        0.0, "weight of a perceptual (LPIPS-style) term; needs `perceptual_weights` (not supported yet: > 0 "
             "is an error)")
    perceptual_weights: Optional[str] = option(
        None, "path to perceptual-network weights; perceptual terms are not implemented in this version, so "
              "setting it is an error rather than being ignored")
    grad_clip: Optional[float] = option(1.0, "max global gradient norm; null disables clipping")
    log_every: int = option(10, "log scalars to TensorBoard every N steps")
    ckpt_every: int = option(500, "write a resumable checkpoint every N steps (and at the end)")
    keep_last: int = option(2, "checkpoints kept (older ones are deleted)")
    scaling_sample_frames: int = option(512, "training frames encoded to fit the latent scaling factor 1/std")

    def validate(self) -> None:
        if self.perceptual_weights is not None or self.perceptual_weight > 0:
            raise ConfigError(
                "perceptual_weight/perceptual_weights: a perceptual (LPIPS) term is not implemented in this "
                "version of latte train-vae; remove these keys (reconstruction + KL is used)")
        if self.frames_per_video is not None and self.frames_per_video < 1:
            raise ConfigError(f"frames_per_video: must be >= 1 or null, got {self.frames_per_video}")
        for key in ("steps", "batch_size", "log_every", "ckpt_every", "keep_last", "scaling_sample_frames"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be >= 1, got {getattr(self, key)}")


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


def _build_dataset(cfg: VAEDataConfig, seed: int) -> Sequence[dict]:
    if cfg.source == "squares":
        return moving_squares(cfg.num_videos, cfg.num_frames, cfg.size, seed=seed)
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
def _frames(dataset: Sequence[dict], indices: Sequence[int]) -> torch.Tensor:
    videos = torch.stack([dataset[int(i)]["video"] for i in indices])
    return frames_of(videos)


def _pick_frames(frames: torch.Tensor, videos: int, per_video: int | None, generator) -> torch.Tensor:
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
        frames = _frames(dataset, indices[start:start + max(1, chunk // 8)]).to(device)
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
        frames = _frames(dataset, [i])[: max_frames - count].to(device)
        latents.append(vae.encode(frames).latent_dist.sample(g).float().cpu())
        count += frames.shape[0]
    return float(1.0 / torch.cat(latents).std())


# ----------------------------------------------------------------------------------------------- loop


def _loss(vae, frames: torch.Tensor, cfg: VAETrainConfig, generator: torch.Generator) -> dict:
    posterior = vae.encode(frames).latent_dist
    recon = vae.decode(posterior.sample(generator)).sample
    err = recon - frames
    rec = err.abs().mean() if cfg.recon_loss == "l1" else err.pow(2).mean()
    kl = posterior.kl().mean() / posterior.mean[0].numel()
    return {"loss": rec + cfg.kl_weight * kl, "recon": rec.detach(), "kl": kl.detach()}


def _save_checkpoint(run_dir: Path, step: int, vae, optimizer, cfg: VAETrainConfig, psnr_before) -> Path:
    from latte.training.checkpoint import prune_checkpoints, write_checkpoint

    def fill(tmp: Path) -> None:
        vae.save_pretrained(tmp / "vae")
        (tmp / "vae_train_config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        torch.save({"step": step, "optimizer": optimizer.state_dict(), "psnr_before": psnr_before},
                   tmp / "train_state.pt")

    path = write_checkpoint(run_dir / "checkpoints", step, fill)
    prune_checkpoints(run_dir / "checkpoints", keep_last=cfg.keep_last, keep_every=None)
    return path


def _restore(resume: str | Path, vae, optimizer) -> tuple[int, float | None]:
    """Load weights + optimizer from a checkpoint (or run dir); returns ``(step, psnr_before)``."""
    from diffusers import AutoencoderKL
    from latte.training.checkpoint import load_train_state, resolve_checkpoint

    ckpt = resolve_checkpoint(resume)
    saved = AutoencoderKL.from_pretrained(str(ckpt / "vae"), local_files_only=True, low_cpu_mem_usage=False)
    mismatched = [k for k in ("block_out_channels", "layers_per_block", "latent_channels", "norm_num_groups")
                  if list(_as_list(saved.config[k])) != list(_as_list(vae.config[k]))]
    if mismatched:
        raise ConfigError(f"--resume {ckpt}: the checkpoint's VAE differs from the config in "
                          f"{', '.join('vae.' + k for k in mismatched)}")
    vae.load_state_dict(saved.state_dict())
    state = load_train_state(ckpt)
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), state.get("psnr_before")


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def train_vae(cfg: VAETrainConfig, dataset: Sequence[dict] | None = None, resume: str | Path | None = None,
              progress: bool = True) -> dict:
    """Train, fit the scaling factor, save ``RUN/vae``; returns the report (also in ``RUN/vae_report.json``).

    ``dataset``: a map-style dataset (``len`` + ``[i]``) of dicts with ``video (3, F, H, W)`` in [-1, 1];
    None builds it from ``cfg.data``. ``resume``: a run directory or checkpoint directory to continue from.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    from latte.training.checkpoint import remove_stale_tmp
    from latte.training.randomness import mix_seed
    from latte.training.schedules import learning_rate
    from latte.training.signals import GracefulStop

    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(run_dir / "checkpoints")
    (run_dir / "vae_train_config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))

    if dataset is None:
        dataset = _build_dataset(cfg.data, cfg.seed)
    n_train = len(dataset) - cfg.data.holdout_videos
    if n_train < 1:
        raise ConfigError(f"data.holdout_videos: {cfg.data.holdout_videos} leaves no training videos in a "
                          f"dataset of {len(dataset)}")
    heldout = list(range(n_train, len(dataset)))
    height = int(dataset[0]["video"].shape[-2])
    if height % cfg.vae.downsample_factor or dataset[0]["video"].shape[-1] % cfg.vae.downsample_factor:
        raise ConfigError(f"vae.block_out_channels: frames of {tuple(dataset[0]['video'].shape[-2:])} are not "
                          f"divisible by the downsample factor {cfg.vae.downsample_factor}")

    torch.manual_seed(cfg.seed)
    vae = build_vae(cfg.vae, sample_size=height).to(device)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if resume:
        step, psnr_before = _restore(resume, vae, optimizer)
    else:
        step, psnr_before = 0, reconstruction_psnr(vae, dataset, heldout, device)

    writer = SummaryWriter(str(run_dir / "tensorboard"))
    started = time.time()
    bar = tqdm(total=cfg.steps, initial=step, desc="train-vae", disable=not progress, dynamic_ncols=True)
    try:
        with GracefulStop() as stop:
            while step < cfg.steps and not stop.requested:
                vae.train()
                lr = learning_rate(step, lr=cfg.lr, schedule=cfg.lr_schedule, warmup_steps=cfg.warmup_steps,
                                   max_steps=cfg.steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch_gen = torch.Generator().manual_seed(mix_seed(cfg.seed, step, 0))
                indices = torch.randint(n_train, (cfg.batch_size,), generator=batch_gen).tolist()
                frames = _pick_frames(_frames(dataset, indices), cfg.batch_size, cfg.frames_per_video,
                                      batch_gen).to(device)
                noise_gen = torch.Generator(device=device).manual_seed(mix_seed(cfg.seed, step, 1))
                losses = _loss(vae, frames, cfg, noise_gen)
                optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    vae.parameters(), cfg.grad_clip if cfg.grad_clip is not None else math.inf)
                optimizer.step()
                step += 1
                bar.update(1)
                if step % cfg.log_every == 0 or step == cfg.steps:
                    for key, value in losses.items():
                        writer.add_scalar(f"train/{key}", value.item(), step)
                    writer.add_scalar("train/lr", lr, step)
                    writer.add_scalar("train/grad_norm", float(grad_norm), step)
                    bar.set_postfix(loss=f"{losses['loss'].item():.4f}", recon=f"{losses['recon'].item():.4f}")
                if step % cfg.ckpt_every == 0 or step == cfg.steps or stop.requested:
                    _save_checkpoint(run_dir, step, vae, optimizer, cfg, psnr_before)
    finally:
        bar.close()
    if step < cfg.steps:  # stopped by a signal: checkpoint written, no final artefacts
        writer.close()
        return {"stopped_at": step, "run_dir": str(run_dir)}

    scaling = fit_scaling_factor(vae, dataset, list(range(n_train)), cfg.scaling_sample_frames, device,
                                 seed=mix_seed(cfg.seed, 2))
    vae.register_to_config(scaling_factor=scaling)
    final_psnr = reconstruction_psnr(vae, dataset, heldout, device)
    writer.add_scalar("eval/psnr", final_psnr, step)
    writer.close()
    vae.save_pretrained(str(run_dir / "vae"))
    report = {"psnr": final_psnr, "psnr_before": psnr_before, "scaling_factor": scaling, "steps": step,
              "heldout_frames": len(heldout) * int(dataset[0]["video"].shape[1]),
              "downsample_factor": cfg.vae.downsample_factor, "latent_channels": cfg.vae.latent_channels,
              "seconds": round(time.time() - started, 1), "vae_dir": str(run_dir / "vae")}
    (run_dir / "vae_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
