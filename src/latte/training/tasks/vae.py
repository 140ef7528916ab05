"""The autoencoder task of ``latte train-vae``: a small diffusers ``AutoencoderKL`` on video frames.

Each step draws ``batch_size`` training videos (and ``frames_per_video`` frames of each) from a generator keyed
by ``(seed, step)``, and the posterior noise from one keyed by ``(seed, step, 1)``, so a resumed run reproduces
an uninterrupted one exactly. Loss: ``recon(x, decode(z)) + kl_weight * KL`` (see
:mod:`latte.encoders.vae_training`). After the last step :func:`train_vae` fits the latent scaling factor,
measures held-out PSNR and writes ``RUN/vae`` and ``RUN/vae_report.json``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from latte.config import ConfigError, to_dict
from latte.io import atomic_write_yaml
from latte.encoders.vae_training import (VAETrainConfig, build_vae, build_vae_dataset, fit_scaling_factor,
                                         pick_frames, reconstruction_psnr, video_frames)
from latte.training.config import TrainConfig
from latte.training.engine import Engine
from latte.seeding import mix_seed
from latte.training.tasks import TaskBase

__all__ = ["VAETask", "train_vae", "engine_config"]

_ARCH_KEYS = ("block_out_channels", "layers_per_block", "latent_channels", "norm_num_groups")


DECODER_PARAMETERS = ["decoder.*", "post_quant_conv.*"]  # trainable 'decoder': everything after the latent


def engine_config(cfg: VAETrainConfig) -> TrainConfig:
    """The engine settings of a ``latte train-vae`` config (no EMA, float32, one batch per step)."""
    return TrainConfig(run_dir=cfg.run_dir, seed=cfg.seed, max_steps=cfg.max_steps, batch_size=cfg.batch_size,
                       lr=cfg.lr, lr_schedule=cfg.lr_schedule, warmup_steps=cfg.warmup_steps,
                       weight_decay=cfg.weight_decay, clip_grad_norm=cfg.clip_grad_norm, ema_decay=None,
                       log_every=cfg.log_every, ckpt_every=cfg.ckpt_every, keep_last=cfg.keep_last, num_workers=0,
                       trainable=DECODER_PARAMETERS if cfg.trainable == "decoder" else "all")


class VAETask(TaskBase):
    """``latte train-vae``: builds the AutoencoderKL of ``cfg.vae``; trains on ``dataset`` minus the held-out tail."""

    name = "train-vae"
    model_dir = "vae"
    throughput_unit = "frames"
    resume_command = "latte train-vae CONFIG --resume RUN_DIR"

    def __init__(self, cfg: VAETrainConfig, dataset: Sequence[dict]):
        super().__init__()
        self.cfg, self.data = cfg, dataset
        self.n_train = len(dataset) - cfg.data.holdout_videos
        if self.n_train < 1:
            raise ConfigError(f"data.holdout_videos: {cfg.data.holdout_videos} leaves no training videos in a "
                              f"dataset of {len(dataset)}")
        self.heldout = list(range(self.n_train, len(dataset)))
        height, width = (int(s) for s in dataset[0]["video"].shape[-2:])
        factor = cfg.vae.downsample_factor
        if height % factor or width % factor:
            raise ConfigError(f"vae.block_out_channels: frames of {(height, width)} are not divisible by the "
                              f"downsample factor {factor}")
        self.height = height
        self.psnr_before: Optional[float] = None
        self.device = torch.device("cpu")

    def build_model(self, device: torch.device, resuming: bool) -> nn.Module:
        self.device, self.resuming = device, resuming
        model = build_vae(self.cfg.vae, sample_size=self.height)
        if self.cfg.init_from:  # the architecture must be the folder's; its weights (and scaling factor) start
            folder = Path(self.cfg.init_from)
            if not (folder / "config.json").is_file():
                raise ConfigError(f"init_from: {folder} is not an AutoencoderKL folder (no config.json)")
            saved = json.loads((folder / "config.json").read_text())
            _check_architecture(saved, self.cfg, f"init_from {folder}")
            if not resuming:
                self.load_weights(model, folder)
            model.register_to_config(scaling_factor=saved["scaling_factor"])
        return model

    def setup(self, engine) -> None:
        if engine.dist.enabled:
            raise ConfigError("latte train-vae runs in one process (not under torchrun)")
        if not self.resuming:
            self.psnr_before = reconstruction_psnr(engine.model, self.data, self.heldout, self.device)

    def draw_batch(self, step: int) -> torch.Tensor:
        """``(batch_size * frames_per_video, 3, H, W)`` training frames of step ``step``."""
        cfg = self.cfg
        generator = torch.Generator().manual_seed(mix_seed(cfg.seed, step, 0))
        indices = torch.randint(self.n_train, (cfg.batch_size,), generator=generator).tolist()
        frames = pick_frames(video_frames(self.data, indices), cfg.batch_size, cfg.frames_per_video, generator)
        return frames.to(self.device)

    def loss(self, model: nn.Module, frames: torch.Tensor, ctx) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        generator = torch.Generator(device=self.device).manual_seed(mix_seed(cfg.seed, ctx.step, 1))
        with ctx.autocast():
            posterior = model.encode(frames).latent_dist
            recon = model.decode(posterior.sample(generator)).sample.float()
        err = recon - frames
        rec = err.abs().mean() if cfg.recon_loss == "l1" else err.pow(2).mean()
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        return {"loss": rec + cfg.kl_weight * kl, "recon": rec, "kl": kl}

    def batch_items(self, frames: torch.Tensor) -> int:
        return frames.shape[0]

    # ------------------------------------------------------------------------------------------ checkpoints
    def save_weights(self, model: nn.Module, folder: Path, state_dict: Optional[dict]) -> None:
        model.save_pretrained(str(folder))

    def load_weights(self, model: nn.Module, folder: Path) -> None:
        from diffusers import AutoencoderKL

        saved = AutoencoderKL.from_pretrained(str(folder), local_files_only=True, low_cpu_mem_usage=False)
        model.load_state_dict(saved.state_dict())

    def check_resume(self, checkpoint_dir: Path) -> None:
        saved = json.loads((checkpoint_dir / self.model_dir / "config.json").read_text())
        _check_architecture(saved, self.cfg, f"--resume {checkpoint_dir}")

    def save_config(self, folder: Path) -> None:
        atomic_write_yaml(Path(folder) / "vae_train_config.yaml", to_dict(self.cfg))

    def config_dict(self) -> dict:
        return to_dict(self.cfg)

    def state_dict(self) -> dict:
        return {"psnr_before": self.psnr_before}

    def load_state_dict(self, state: dict) -> None:
        self.psnr_before = state.get("psnr_before")


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _check_architecture(saved: dict, cfg: VAETrainConfig, where: str) -> None:
    """A saved AutoencoderKL ``config.json`` must have the config's ``vae`` architecture."""
    mine = to_dict(cfg.vae)
    mismatched = [k for k in _ARCH_KEYS if _as_list(saved[k]) != _as_list(mine[k])]
    if mismatched:
        raise ConfigError(f"{where}: the saved VAE differs from the config in "
                          + ", ".join(f"vae.{k} ({_as_list(saved[k])} there, {_as_list(mine[k])} here)"
                                      for k in mismatched))


def train_vae(cfg: VAETrainConfig, dataset: Sequence[dict] | None = None, resume: str | Path | None = None,
              progress: bool = True) -> dict:
    """Train, fit the scaling factor, save ``RUN/vae``; returns the report (also in ``RUN/vae_report.json``).

    ``dataset``: a map-style dataset (``len`` + ``[i]``) of dicts with ``video (3, F, H, W)`` in [-1, 1];
    None builds it from ``cfg.data``. ``resume``: a run directory or checkpoint directory to continue from.
    """
    started = time.time()
    if dataset is None:
        dataset = build_vae_dataset(cfg.data, cfg.seed)
    task = VAETask(cfg, dataset)
    engine = Engine(task, engine_config(cfg), resume=None if resume is None else str(resume), device=cfg.device,
                    progress=progress)
    result = engine.fit()
    run_dir = Path(cfg.run_dir)
    if result.step < cfg.max_steps:  # stopped by a signal: checkpoint written, no final artefacts
        return {"stopped_at": result.step, "run_dir": str(run_dir)}
    vae = engine.model
    if cfg.trainable == "decoder":  # the encoder did not move: its latents keep their scale
        scaling = float(vae.config.scaling_factor)
    else:
        scaling = fit_scaling_factor(vae, dataset, list(range(task.n_train)), cfg.scaling_sample_frames,
                                     engine.device, seed=mix_seed(cfg.seed, 2))
    vae.register_to_config(scaling_factor=scaling)
    final_psnr = reconstruction_psnr(vae, dataset, task.heldout, engine.device)
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(run_dir / "tensorboard")) as writer:
        writer.add_scalar("eval/psnr", final_psnr, result.step)
    vae.save_pretrained(str(run_dir / "vae"))
    report = {"psnr": final_psnr, "psnr_before": task.psnr_before, "scaling_factor": scaling, "steps": result.step,
              "heldout_frames": len(task.heldout) * int(dataset[0]["video"].shape[1]),
              "downsample_factor": cfg.vae.downsample_factor, "latent_channels": cfg.vae.latent_channels,
              "seconds": round(time.time() - started, 1), "vae_dir": str(run_dir / "vae")}
    (run_dir / "vae_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
