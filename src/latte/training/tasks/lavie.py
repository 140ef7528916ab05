"""The LaVie cascade stages as training tasks: ``latte train`` on a config with a ``lavie:`` section.

One task, three stages (``lavie.stage``), one U-Net family (:class:`latte.models.unet3d.UNet3D`, ``unet:``):

* ``base`` — text-to-video: ε-MSE (the linear schedule of ``diffusion:``), caption dropout to the empty caption
  (``train.text_dropout_prob``) for classifier-free guidance, image-video joint training with
  ``train.num_images`` stills appended after the video frames (they skip every temporal layer; each still has its
  own caption);
* ``interp`` — temporal interpolation ×k (``lavie.interp_factor``): the data gives clips of ``k·(n−1)+1``
  consecutive frames (``data.num_frames``, ``data.frame_interval: 1``); their every k-th frame, repeated by the
  nearest-earlier rule (:func:`latte.data.transforms.interpolation_condition`; LaVie's ⌊(j+1)/4⌋ for k = 4), is
  the condition, optionally noise-augmented at its own timestep in ``[0, lavie.cond_noise_max]``; the U-Net sees
  ``cat([x_t, cond])`` (2C channels) and is trained with ε-MSE on its C output channels;
* ``vsr`` — video super-resolution ×s (``lavie.scale_factor`` = the autoencoder's downsampling): the data gives
  high-resolution clips; a random ``lavie.patch_size`` crop (aligned to s) is encoded (target latents) and
  downsampled ×s with ``lavie.downsample_kernel`` (the condition, in [-1, 1]); the condition is noised on the
  scaled-linear schedule at a level in ``[0, lavie.max_noise_level]`` that is also the class label; v-MSE.

Initialisation (``train.init_from``): a diffusers 2-D U-Net folder or file (SD 1.4 ``unet/`` for base/interp,
the ×4 upscaler's for VSR: inflated, temporal layers at the official initialisation), a released LaVie checkpoint
(``lavie_base.pt`` …, strict) or one of our U-Net folders (``…/checkpoints/step_N/model``, strict). The VSR stage
initialised from a 2-D U-Net trains only its temporal layers unless ``lavie.temporal_only: false``.

Latent cache (``latte cache`` on the stage's config, then ``train.use_cache: true``): base/interp read the
clips' latents; vsr reads the high-resolution latents and the ×s-downsampled clip, which share one grid, and
crops both at the same (s-aligned) place — the whole frame is encoded once, not each crop.

Per-sample randomness (timesteps, noise, dropout, crops, augmentation levels, VAE posterior samples) is keyed by
``(train.seed, step, dataset index)``, so gradient accumulation and DDP reproduce the single-process result.
Objectives: :mod:`latte.training.tasks.lavie_objectives`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
from torch import nn

from latte.config import ConfigError, load_yaml, option, to_dict
from latte.data.transforms import (DOWNSAMPLE_KERNELS, bicubic_upsample, downsample, frame_size,
                                    interpolation_condition, random_crop_offsets)
from latte.diffusion import DiffusionConfig, noise_augmentation
from latte.diffusion.gaussian import GaussianDiffusion, beta_schedule, mean_flat
from latte.io import load_state_dict_strict, read_state_dict
from latte.models.config import UNet3DConfig
from latte.training.config import (AutoencoderConfig, DataConfig, TextEncoderConfig, TrainConfig,
                                   ValidationConfig, WandbConfig)
from latte.seeding import mix_seed
from latte.training.randomness import per_sample_draws
from latte.training.tasks.latte import LatteTask
from latte.training.tasks.lavie_objectives import (interpolation_baseline, interpolation_inputs,
                                                   super_resolution_inputs)

__all__ = ["LavieConfig", "LavieRunConfig", "LavieTask", "train_lavie", "load_lavie_run_config", "is_lavie_config",
           "STAGES"]

STAGES = ("base", "interp", "vsr")
_DRAW_EXTRA = 2  # key of the per-sample generator for stage-specific draws (1 = VAE posterior samples)
_DRAW_BASELINE = 3  # key of the VAE posterior samples of the vsr residual's baseline


@dataclass
class LavieConfig:
    """Which LaVie cascade stage a run trains and the stage's objective settings."""

    stage: Literal["base", "interp", "vsr"] = option(
        "base", "base: text-to-video (ε); interp: temporal interpolation ×interp_factor (ε on cat([x_t, cond])); "
                "vsr: video super-resolution ×scale_factor (v, low-resolution video + noise-level label)")
    conditioning: Literal["text", "none"] = option(
        "text", "text: captions through text_encoder (dropped to the empty caption with train.text_dropout_prob); "
                "none: a single zero text token (unconditional toy runs, no text encoder)")
    interp_factor: int = option(
        4, "interp: frames per base-frame interval k; clips have k·(n−1)+1 frames (LaVie: 4, 16 → 61)")
    cond_noise_max: int = option(
        0, "interp: noise-augment the condition latents with q_sample(cond, t_aug), t_aug uniform in "
           "[0, cond_noise_max]; 0 = clean condition")
    scale_factor: int = option(4, "vsr: upscaling factor s; must equal the autoencoder's downsampling factor "
                                  "(the latents and the low-resolution video share one grid)")
    downsample_kernel: Literal["area", "bicubic"] = option(
        "area", "vsr: how the low-resolution condition is made: area (mean of s×s blocks) or bicubic "
                "(antialiased, as PIL)")
    max_noise_level: int = option(
        350, "vsr: the low-resolution video is noised (scaled-linear schedule) at a level uniform in "
             "[0, max_noise_level], passed as the class label (LaVie: 350, the U-Net's limit)")
    patch_size: Optional[int] = option(
        None, "vsr: train on random square crops of this many high-resolution pixels (a multiple of "
              "scale_factor; the paper: 320); null = whole frames")
    residual: bool = option(
        False, "interp / vsr: the U-Net denoises the clip minus a baseline made from its condition, and sampling "
               "adds the baseline back — interp: the linear blend of the condition frames (latents); vsr: the "
               "bicubic ×scale_factor upsampling of the clean low-resolution video, encoded (one more VAE encode "
               "per step with a real VAE). With diffusion.prediction_type sample an untrained U-Net returns the "
               "baseline, so a small model starts from the classic method and learns the correction. Ours, not "
               "LaVie's (the released stages: false)")
    temporal_only: Optional[bool] = option(
        None, "train only the temporal layers (parameter names containing 'temp'); null = true for vsr "
              "initialised from a 2-D U-Net (official), false otherwise")

    def validate(self) -> None:
        if self.interp_factor < 1 or self.scale_factor < 1:
            raise ConfigError("lavie.interp_factor and lavie.scale_factor must be >= 1")
        if not 0 <= self.cond_noise_max < 1000:
            raise ConfigError(f"lavie.cond_noise_max: must be in [0, 999], got {self.cond_noise_max}")
        if self.max_noise_level < 0:
            raise ConfigError(f"lavie.max_noise_level: must be >= 0, got {self.max_noise_level}")
        if self.patch_size is not None and (self.patch_size < 1 or self.patch_size % self.scale_factor):
            raise ConfigError(f"lavie.patch_size: must be a positive multiple of scale_factor "
                              f"({self.scale_factor}), got {self.patch_size}")
        if self.residual and self.stage == "base":
            raise ConfigError("lavie.residual: only the interp and vsr stages have a baseline to add to (their "
                              "condition); the base stage starts from noise alone")
        if self.downsample_kernel not in DOWNSAMPLE_KERNELS:
            raise ConfigError(f"lavie.downsample_kernel: one of {', '.join(DOWNSAMPLE_KERNELS)}")


@dataclass
class LavieRunConfig:
    """Everything ``latte train`` needs for a LaVie stage: the stage, its U-Net, diffusion, data, encoders,
    optimisation."""

    lavie: LavieConfig = option(help="the cascade stage and its objective", factory=LavieConfig)
    unet: UNet3DConfig = option(help="the video U-Net (see latte.models.config.UNet3DConfig)", factory=UNet3DConfig)
    diffusion: DiffusionConfig = option(help="the diffusion process (LaVie: linear betas; vsr: v_prediction)",
                                        factory=DiffusionConfig)
    data: DataConfig = option(help="the training clips", factory=DataConfig)
    autoencoder: AutoencoderConfig = option(help="latents: the SD VAE for base/interp, the x4-upscaler VAE for vsr",
                                            factory=AutoencoderConfig)
    text_encoder: TextEncoderConfig = option(help="captions (lavie.conditioning text)", factory=TextEncoderConfig)
    train: TrainConfig = option(help="optimisation, precision, checkpoints, distribution", factory=TrainConfig)
    validation: ValidationConfig = option(
        help="validation videos through the cascade pipeline: base from validation.prompts, interp / vsr from the "
             "first clips of the data's val split (every k-th frame / downsampled xs)", factory=ValidationConfig)
    wandb: WandbConfig = option(help="optional Weights & Biases logging", factory=WandbConfig)

    def validate(self) -> None:
        lv, unet, d = self.lavie, self.unet, self.diffusion
        if lv.stage == "vsr" and d.prediction_type == "epsilon":
            raise ConfigError("diffusion.prediction_type: the vsr stage predicts v (LaVie's) or x0; set v_prediction "
                              "(or sample, e.g. with lavie.residual; an ε-predicting tiny VSR samples noise)")
        if d.timestep_respacing:
            raise ConfigError("diffusion.timestep_respacing: LaVie stages train on all diffusion steps; remove it")
        if self.train.preservation.weight:
            raise ConfigError("train.preservation: Latte models only (LaVie stages are fine-tuned on clips; use "
                              "train.preservation.weight 0)")
        latent = unet.out_channels
        expected_in = {"base": latent, "interp": 2 * latent, "vsr": latent + unet.low_res_channels}[lv.stage]
        if unet.in_channels != expected_in:
            raise ConfigError(f"unet.in_channels: the {lv.stage} stage feeds {expected_in} channels (out_channels "
                              f"{latent}{' x2' if lv.stage == 'interp' else ''}"
                              f"{' + low_res_channels' if lv.stage == 'vsr' else ''}), got {unet.in_channels}")
        if lv.stage == "vsr" and unet.low_res_channels != 3:
            raise ConfigError("unet.low_res_channels: the vsr stage concatenates the RGB low-resolution video (3)")
        if lv.stage != "vsr" and (unet.low_res_channels or unet.num_class_embeds):
            raise ConfigError(f"unet.low_res_channels / num_class_embeds: only the vsr stage has them "
                              f"(lavie.stage is {lv.stage})")
        if lv.stage == "vsr" and lv.max_noise_level > min(unet.max_noise_level, unet.num_class_embeds - 1):
            raise ConfigError(f"lavie.max_noise_level ({lv.max_noise_level}) exceeds what the U-Net accepts "
                              f"(unet.max_noise_level {unet.max_noise_level}, num_class_embeds "
                              f"{unet.num_class_embeds})")
        if lv.stage == "interp" and (self.data.num_frames - 1) % lv.interp_factor:
            n = (self.data.num_frames - 1) // lv.interp_factor + 1
            raise ConfigError(f"data.num_frames: interpolation ×{lv.interp_factor} trains on clips of "
                              f"{lv.interp_factor}·(n−1)+1 frames (e.g. {lv.interp_factor * (n - 1) + 1}), "
                              f"got {self.data.num_frames}")
        if lv.stage == "interp" and self.data.frame_interval != 1 and self.data.kind != "synthetic":
            raise ConfigError("data.frame_interval: the interp stage reads consecutive frames; set 1")
        if self.train.num_images and lv.stage != "base":
            raise ConfigError(f"train.num_images: image-video joint training is for the base stage, not {lv.stage}")
        v = self.validation
        if v.class_labels:
            raise ConfigError("validation.class_labels: LaVie stages are text-conditional or unconditional")
        if lv.conditioning == "none" and (v.prompts or v.cfg_scale != 1.0):
            raise ConfigError("validation.prompts / validation.cfg_scale: lavie.conditioning is none (no text to "
                              "prompt or guide with); remove them")
        if v.every and lv.stage == "base" and lv.conditioning == "text" and not v.prompts:
            raise ConfigError("validation.prompts: required for validation videos of a text-conditional base stage")
        if lv.temporal_only and self.train.trainable != "all":
            raise ConfigError(f"lavie.temporal_only and train.trainable ({self.train.trainable}) both choose what "
                              "trains; keep one")


def init_source(path) -> str:
    """What ``train.init_from`` holds: ``"unet2d"`` (a diffusers 2-D U-Net folder or weights without temporal
    layers) or ``"unet3d"`` (a released LaVie checkpoint or one of our U-Net folders)."""
    from latte.models.unet3d import is_temporal_key

    path = Path(path).expanduser()
    if path.is_dir():
        if any((path / f"diffusion_pytorch_model.{ext}").is_file() for ext in ("safetensors", "bin")):
            return "unet2d"
        if (path / "model.safetensors").is_file():
            return "unet3d"
        raise ConfigError(f"train.init_from: {path} holds neither a diffusers U-Net (diffusion_pytorch_model."
                          "safetensors) nor one of our U-Nets (model.safetensors)")
    if not path.is_file():
        raise ConfigError(f"train.init_from: {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            keys = list(f.keys())
    else:
        keys = list(read_state_dict(path))
    return "unet3d" if any(is_temporal_key(k) for k in keys) else "unet2d"


def is_lavie_config(data: dict) -> bool:
    """Whether parsed YAML is a LaVie run config (it has a ``lavie:`` section)."""
    return isinstance(data, dict) and "lavie" in data


def load_lavie_run_config(path, overrides: Optional[list[str]] = None) -> LavieRunConfig:
    """Read and validate a LaVie run config YAML file (with ``key.sub=value`` overrides)."""
    return load_yaml(path, LavieRunConfig, overrides)


class LavieTask(LatteTask):
    """``latte train`` for a LaVie stage (see the module docstring). Captions, encoders, latents on the fly or
    from the cache, and checkpoints work as in :class:`~latte.training.tasks.latte.LatteTask`."""

    model_dir = "model"
    lora_targets = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"]

    def __init__(self, config: LavieRunConfig, dataset=None):
        super().__init__(config, dataset)
        self.stage = config.lavie.stage
        self.name = f"train lavie-{self.stage}"

    # ------------------------------------------------------------------------------------------- the model
    def build_model(self, device: torch.device, resuming: bool) -> nn.Module:
        from latte.models.unet3d import UNet3D

        self.device = device
        cfg, lv = self.config, self.config.lavie
        init = cfg.train.init_from
        source = init_source(init) if init else None
        if init and not resuming:
            model = self._init_model(Path(init).expanduser(), source)
        else:
            model = UNet3D(cfg.unet)
        # decided from the config alone, so a resumed run trains the same parameters
        temporal_only = lv.temporal_only if lv.temporal_only is not None else (
            self.stage == "vsr" and source == "unet2d")
        if temporal_only and cfg.train.trainable == "all":
            cfg.train.trainable = ["*temp*"]  # read by the engine right after build_model
        return model

    def _init_model(self, path: Path, source: str) -> nn.Module:
        """The U-Net initialised from ``train.init_from`` (see the module docstring)."""
        from latte.interop.lavie import init_from_unet2d
        from latte.models.unet3d import UNet3D

        if source == "unet2d":
            self.messages.append(f"init_from {path}: 2-D U-Net weights inflated to the {self.stage} stage "
                                 "(temporal layers at the official initialisation)")
            return init_from_unet2d(path if path.is_dir() else read_state_dict(path), self.config.unet)
        model = UNet3D(self.config.unet)
        load_state_dict_strict(model, read_state_dict(path), str(path))
        self.messages.append(f"init_from {path}: every U-Net weight loaded (strict)")
        return model

    def setup(self, engine) -> None:
        d = self.config.diffusion
        self.diffusion = GaussianDiffusion(beta_schedule(d.noise_schedule, d.diffusion_steps), learn_sigma=False,
                                           prediction_type=d.prediction_type)
        self.augmentation = noise_augmentation() if self.stage == "vsr" else None
        self.engine = engine
        if self.stage == "vsr" and self.autoencoder.downsample_factor != self.config.lavie.scale_factor:
            raise ConfigError(f"lavie.scale_factor ({self.config.lavie.scale_factor}) must equal the autoencoder's "
                              f"downsampling ({self.autoencoder.downsample_factor}): latents and the "
                              "low-resolution video share one grid")

    def dataset(self, engine):
        """The clips (as for Latte); a vsr stage's latent cache must hold the low-resolution clips its condition
        is made from (``latte cache`` on this config writes them)."""
        data = super().dataset(engine)
        header = getattr(data, "header", None)
        if self.stage == "vsr" and header is not None:
            from latte.data.latents import CacheMismatchError

            lv = self.config.lavie
            wanted = {"factor": lv.scale_factor, "kernel": lv.downsample_kernel}
            if header.get("low_res") != wanted:
                raise CacheMismatchError(
                    f"the latent cache at {data.root} holds low-resolution clips {header.get('low_res')}, the vsr "
                    f"stage needs {wanted} (lavie.scale_factor, lavie.downsample_kernel); run `latte cache` on this "
                    "config into a new data.cache_dir")
        return data

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        """The outermost repeated blocks (ResBlocks, transformers, temporal modules): FSDP2 shards each."""
        blocks = model.repeated_blocks()
        inner = {id(m) for b in blocks for m in b.modules() if m is not b}
        return [b for b in blocks if id(b) not in inner]

    @property
    def text_encoder(self):
        if self._text_encoder is None:
            from latte.encoders import build_text_encoder

            encoder = build_text_encoder(self.config.text_encoder, device=self.device)
            if encoder.dim != self.config.unet.cross_attention_dim:
                raise ConfigError(f"unet.cross_attention_dim ({self.config.unet.cross_attention_dim}) must equal the "
                                  f"text encoder's feature size ({encoder.dim}, text_encoder.kind "
                                  f"{self.config.text_encoder.kind})")
            self.text_encoder = encoder
        return self._text_encoder

    @text_encoder.setter
    def text_encoder(self, encoder) -> None:
        LatteTask.text_encoder.fset(self, encoder)

    # -------------------------------------------------------------------------------------------- the loss
    def _text(self, batch: dict, drop: torch.Tensor, batch_size: int, frames: int, num_images: int):
        """``(encoder_hidden_states, mask)``: per-sample caption features (dropped ones replaced by the empty
        caption), per frame ``(B, F, L, D)`` when joint-training stills bring their own captions."""
        if self.config.lavie.conditioning == "none":
            return torch.zeros(batch_size, 1, self.config.unet.cross_attention_dim, device=self.device), None
        dropped = (drop < self.config.train.text_dropout_prob).tolist()
        hidden, mask = self._text_features(batch, "caption", "text", dropped)
        if num_images and ("image_captions" in batch or "image_text" in batch):
            img_hidden, img_mask = self._text_features(batch, "image_captions", "image_text", dropped)
            video = frames - num_images
            hidden = torch.cat([hidden[:, None].expand(-1, video, -1, -1), img_hidden.to(hidden)], dim=1)
            mask = torch.cat([mask[:, None].expand(-1, video, -1), img_mask.to(mask)], dim=1)
        return hidden, mask

    def _extra_generator(self, ctx, key: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(mix_seed(ctx.seed, ctx.step, key, _DRAW_EXTRA))

    def _vsr_pair(self, batch: dict, ctx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(latents, low-res video, level, low-res noise)`` of a vsr micro-batch: from videos (crop, encode,
        downsample) or from the latent cache (``latents`` and ``low_res`` on one grid: crop both at the same
        place; the crop offsets are the same draws as from videos)."""
        lv = self.config.lavie
        s = lv.scale_factor
        cached = "latents" in batch
        if cached:
            full_latents = batch["latents"].to(self.device, torch.float32)
            full_low = batch["low_res"].to(self.device, torch.float32)
            height, width = full_low.shape[-2] * s, full_low.shape[-1] * s
        else:
            video = batch["video"].to(self.device, torch.float32)
            height, width = video.shape[-2:]
        latents, lows, levels, noises = [], [], [], []
        for i, key in enumerate(batch["index"].tolist()):
            g = self._extra_generator(ctx, key)
            top, left, size_h, size_w = 0, 0, height, width
            if lv.patch_size is not None:
                top, left = random_crop_offsets(height, width, lv.patch_size, lv.patch_size, s, g)
                size_h = size_w = lv.patch_size
            if cached:
                rows = slice(top // s, (top + size_h) // s)
                cols = slice(left // s, (left + size_w) // s)
                latents.append(full_latents[i:i + 1, ..., rows, cols])
                low = full_low[i:i + 1, ..., rows, cols]
            else:
                clip = video[i:i + 1, ..., top:top + size_h, left:left + size_w]
                low = downsample(clip, s, lv.downsample_kernel)
            levels.append(torch.randint(0, lv.max_noise_level + 1, (1,), generator=g, device=self.device))
            noises.append(torch.randn(low.shape, generator=g, device=self.device))
            if not cached:
                posterior = torch.Generator(device=self.device).manual_seed(mix_seed(ctx.seed, ctx.step, key, 1))
                with torch.no_grad():
                    latents.append(self.autoencoder.encode(clip, generator=posterior).float())
            lows.append(low)
        return torch.cat(latents), torch.cat(lows), torch.cat(levels), torch.cat(noises)

    def _vsr_baseline(self, low_res: torch.Tensor, ctx, keys: list[int]) -> torch.Tensor:
        """``lavie.residual``: latents of the bicubic upsampling of the clean low-resolution crops
        ``(B, 3, F, h, w)`` → ``(B, C, F, h, w)`` (VAE posterior samples keyed per item like the targets')."""
        up = bicubic_upsample(low_res, self.config.lavie.scale_factor)
        latents = []
        for i, key in enumerate(keys):
            seed = mix_seed(ctx.seed, ctx.step, key, _DRAW_BASELINE)
            posterior = torch.Generator(device=self.device).manual_seed(seed)
            with torch.no_grad():
                latents.append(self.autoencoder.encode(up[i:i + 1], generator=posterior).float())
        return torch.cat(latents)

    def loss(self, model: nn.Module, batch: dict, ctx) -> dict[str, torch.Tensor]:
        keys = batch["index"].tolist()
        if self.stage == "vsr":
            x0, low_res, level, low_noise = self._vsr_pair(batch, ctx)
        else:
            x0 = self.latents(batch, ctx.step)
        b, _, f = x0.shape[:3]
        if not self._batch_checked:
            self._check_batch(batch, x0)
        t, noise, drop = per_sample_draws(keys, ctx.seed, ctx.step, self.diffusion.num_timesteps,
                                          tuple(x0.shape[1:]), self.device)
        num_images = self.config.train.num_images if self.stage == "base" else 0
        # every text position is attended to, padding included, as LaVie / Stable Diffusion train and as the
        # cascade pipeline samples (it passes no mask)
        text, _ = self._text(batch, drop, b, f, num_images)
        kwargs = {}
        if self.stage == "base":
            sample, target = self.diffusion.q_sample(x0, t, noise), self.diffusion.target(x0, t, noise)
            kwargs["num_images"] = num_images
        elif self.stage == "interp":
            cond = interpolation_condition(x0, self.config.lavie.interp_factor)
            if self.config.lavie.residual:
                x0 = x0 - interpolation_baseline(x0, self.config.lavie.interp_factor)
            cond_t = cond_noise = None
            if self.config.lavie.cond_noise_max:
                cond_t, cond_noise = [], []
                for key in keys:
                    g = self._extra_generator(ctx, key)
                    cond_t.append(torch.randint(0, self.config.lavie.cond_noise_max + 1, (1,), generator=g,
                                                device=self.device))
                    cond_noise.append(torch.randn(x0.shape[1:], generator=g, device=self.device))
                cond_t, cond_noise = torch.cat(cond_t), torch.stack(cond_noise)
            sample, target = interpolation_inputs(self.diffusion, x0, cond, t, noise, cond_t, cond_noise)
        else:
            if self.config.lavie.residual:
                x0 = x0 - self._vsr_baseline(low_res, ctx, keys)
            inputs = super_resolution_inputs(self.diffusion, self.augmentation, x0, low_res, t, noise, level,
                                             low_noise)
            sample, target = inputs.sample, inputs.target
            kwargs.update(low_res=inputs.low_res, class_labels=inputs.class_labels)
        with ctx.autocast():
            prediction = model(sample, t, text, **kwargs)
        mse = mean_flat((target - prediction.float()) ** 2)
        return {"loss": mse.mean()}

    def _check_batch(self, batch: dict, x0: torch.Tensor) -> None:
        """First batch only: the data must fit the U-Net."""
        channels = self.config.unet.out_channels
        if x0.shape[1] != channels:
            raise ConfigError(f"the data gives latents with {x0.shape[1]} channels but unet.out_channels is "
                              f"{channels}; check the autoencoder")
        if self.config.lavie.conditioning == "text" and "caption" not in batch and "text" not in batch:
            raise ConfigError("lavie.conditioning text needs captions (data.kind captions or synthetic); the dataset "
                              f"items have only {', '.join(sorted(batch))}; or set lavie.conditioning none")
        self._batch_checked = True

    def batch_items(self, batch: dict) -> int:
        x = batch["latents"] if "latents" in batch else batch["video"]
        return x.shape[0] * x.shape[2]

    # ------------------------------------------------------------------------------------------ checkpoints
    def check_resume(self, checkpoint_dir: Path) -> None:
        import yaml

        saved = yaml.safe_load((checkpoint_dir / "run_config.yaml").read_text())
        for section in ("lavie", "unet"):
            mine = to_dict(getattr(self.config, section))
            if saved.get(section) != mine:
                diff = sorted(k for k in set(saved.get(section, {})) | set(mine)
                              if saved.get(section, {}).get(k) != mine.get(k))
                raise ConfigError(f"--resume {checkpoint_dir}: the checkpoint's {section} section differs from this "
                                  f"config in {section}.{f', {section}.'.join(diff)}")

    def save_config(self, folder: Path) -> None:
        from latte.training.config import save_run_config

        save_run_config(self.config, Path(folder) / "run_config.yaml")

    # ------------------------------------------------------------------------------------------- validation
    def pipeline(self, model: nn.Module):
        """A :class:`~latte.sampling.cascade.CascadePipeline` holding this stage: ``model`` with this run's
        encoders and noise schedule (what :func:`~latte.sampling.cascade.load_trained_stage` builds from the
        saved checkpoint)."""
        from latte.sampling.cascade import CascadePipeline, trained_stage

        text = self.text_encoder if self.config.lavie.conditioning == "text" else None
        stage = trained_stage(model, to_dict(self.config), self.autoencoder, text)
        return CascadePipeline(**{self.stage: stage}, device=self.device)

    def validation_clips(self, count: int) -> list[dict]:
        """The first ``count`` clips of the data's val split (read from the videos, also when training from the
        latent cache): ``{video (1, 3, F, H, W) in [-1, 1], caption?}``."""
        from latte.data import build_dataset

        data = build_dataset(self.config.data, split="val", use_cache=False, progress=False)
        if len(data) < count:
            raise ConfigError(f"validation.num_samples: {count} videos, but the val split of data: has only "
                              f"{len(data)} clips")
        clips = []
        for k in range(count):
            item = data[k]
            clips.append({"video": item["video"][None].float(), "caption": item.get("caption")})
        return clips

    @torch.no_grad()
    def validation_videos(self, model: nn.Module) -> np.ndarray:
        """uint8 ``(N, F, H, W, 3)``, one video per ``validation.seeds`` entry, from the cascade pipeline running
        this stage alone: base from ``validation.prompts`` at the data's frames and size; interp from every
        k-th frame of a val clip; vsr from a val clip downsampled ×s (``lavie.downsample_kernel``)."""
        from latte.sampling.cascade import StageSettings

        v, lv, data = self.config.validation, self.config.lavie, self.config.data
        seeds = v.seeds or list(range(v.num_samples))
        pipe = self.pipeline(model)
        settings = {self.stage: StageSettings(negative_prompt="", cfg_scale=v.cfg_scale, steps=v.steps,
                                              sampler=v.sampler)}
        clips = self.validation_clips(len(seeds)) if self.stage != "base" else [{}] * len(seeds)
        videos = []
        for k, (seed, clip) in enumerate(zip(seeds, clips)):
            prompt = ""  # lavie.conditioning none: the zero text token, whatever the prompt
            if lv.conditioning == "text":
                prompt = v.prompts[k % len(v.prompts)] if v.prompts else clip.get("caption") or ""
            options = {}
            if self.stage == "base":
                height, width = frame_size(data.image_size)
                options.update(frames=data.num_frames, height=height, width=width, window=0)
            elif self.stage == "interp":
                options.update(input=clip["video"][:, :, ::lv.interp_factor], interp_factor=lv.interp_factor)
            else:
                low = downsample(clip["video"], lv.scale_factor, lv.downsample_kernel)
                options.update(input=low, vsr_chunk=low.shape[2], noise_level=pipe.stages["vsr"].noise_level)
            out = pipe.run(prompt, stages=[self.stage], seed=seed, settings=settings, progress=False, **options)
            videos.append(out.video)
        return np.stack(videos)


def train_lavie(config: LavieRunConfig, dataset=None, resume: Optional[str] = None, device: Optional[str] = None,
                on_step_end=None, progress: bool = True):
    """Train the LaVie stage ``config`` describes on the engine (``latte train`` on a config with ``lavie:``).

    ``dataset``: any map-style dataset of dicts (``video (3, F, H, W)`` in [-1, 1] or, base/interp,
    ``latents (C, F, h, w)``; ``caption``; ``index``); None builds it from ``config.data``."""
    from latte.training.engine import run

    return run(LavieTask(config, dataset), config.train, resume=resume, device=device, on_step_end=on_step_end,
               progress=progress, wandb=config.wandb)
