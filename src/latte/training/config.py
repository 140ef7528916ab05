"""The run configuration of ``latte train``: one YAML file, validated into :class:`RunConfig`.

Sections ``model``, ``diffusion``, ``data``, ``autoencoder`` and ``text_encoder`` are owned by their packages;
``train``, ``validation`` and ``wandb`` are defined here. Cross-section rules live in :meth:`RunConfig.validate`.
"""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Literal, Optional, Union


from latte.config import ConfigError, from_dict, load_yaml, option, to_dict
from latte.io import atomic_write_yaml

__all__ = ["LoraConfig", "PreservationConfig", "TrainConfig", "ValidationConfig", "WandbConfig", "RunConfig",
           "load_run_config", "save_run_config"]


def _section(module: str, name: str) -> type:
    """The config section ``module.name``; an empty placeholder while that package has not landed yet."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        placeholder = dataclasses.make_dataclass(f"Pending{name}", [])
        placeholder.__doc__ = f"(placeholder: {module}.{name} is not available in this installation)"
        return placeholder


LatteConfig = _section("latte.models.config", "LatteConfig")
DiffusionConfig = _section("latte.diffusion", "DiffusionConfig")
DataConfig = _section("latte.data", "DataConfig")
AutoencoderConfig = _section("latte.encoders.config", "AutoencoderConfig")
TextEncoderConfig = _section("latte.encoders.config", "TextEncoderConfig")


@dataclasses.dataclass
class LoraConfig:
    """Low-rank adapters (``peft``) for ``train.trainable: lora``."""

    rank: int = option(8, "rank r of each adapter (B A with A: r x in, B: out x r)", min=1)
    alpha: float = option(8.0, "scale numerator: the adapter adds (alpha / rank) * B A x", above=0)
    targets: list[str] = option(help="fnmatch patterns of the nn.Linear module names to adapt (a pattern also matches "
                                     "as a suffix); empty: the task's attention and MLP projections", factory=list)
    layers: Literal["all", "spatial"] = option(
        "all", "'spatial': adapt only the targets outside temporal modules (Latte temporal blocks and temporal "
               "attentions, LaVie attn_temp / temporal modules stay frozen and bit-identical): personalisation "
               "from still images, as LaVie; 'all': every target")


GIVEN_FRAME_MODES = ("none", "first", "first_k", "last_k")


@dataclasses.dataclass
class GivenFramesConfig:
    """Which frames a frame-conditioned model (``model.frame_conditioning``) is given clean in training."""

    modes: list[str] = option(help="per clip, one of these is drawn uniformly (repeat a mode to weight it): 'none' "
                                   "(text-to-video), 'first' (image-to-video), 'first_k' / 'last_k' (k clean frames "
                                   "at the start / end; 'first_k' is what extension uses)",
                              factory=lambda: list(GIVEN_FRAME_MODES))
    max_k: int = option(4, "largest k of 'first_k' / 'last_k' (k is drawn uniformly from 1..max_k, at most the "
                           "clip's frames - 1); keep sampling's extension context (--context-frames, default half the clip) within it",
                        min=1)

    def validate(self) -> None:
        if not self.modes:
            raise ConfigError("train.given_frames.modes: empty; use [none] to give no frames")
        for mode in self.modes:
            if mode not in GIVEN_FRAME_MODES:
                raise ConfigError(f"train.given_frames.modes: unknown mode '{mode}' (known: "
                                  f"{', '.join(GIVEN_FRAME_MODES)})")


PRESERVATION_INPUTS = ("videos", "stills")


@dataclasses.dataclass
class PreservationConfig:
    """Prior preservation by self-distillation (fine-tuning on a few stills, personalisation; a new skill that must
    not cost the old ones): before training the frozen starting model (``train.init_from``, or ``frozen_from``)
    samples a video of each of ``prompts``; every training item is paired with one of them, noised at its own
    random timestep, and the trained model's prediction on it is pulled toward the frozen model's (mean squared
    difference, times ``weight``, added to the loss)."""

    weight: float = option(0.0, "weight of the preservation loss added to the diffusion loss; 0 = off (needs "
                                "train.init_from, a text-conditional model and prompts)", min=0)
    prompts: list[str] = option(help="captions the model must keep rendering as it did (e.g. its training "
                                     "captions; repeat one to give it more videos)", factory=list)
    frozen_from: Optional[str] = option(
        None, "the model whose videos are kept (anything train.init_from takes); null = train.init_from. Set it "
              "when continuing a fine-tune (init_from the earlier run) that must stay close to the original model")
    frames: int = option(0, "frames of each preserved video (the length you sample); 0 = model.num_frames",
                         min=0)
    inputs: list[str] = option(
        help="what the frozen model's predictions are kept on: 'stills' (one frame of each preserved clip: the "
             "regime of training on images; pinning it leaves an adapter nothing to learn from the stills but their "
             "new content) and / or 'videos' (the whole clips: the regime of sampling; measured to keep the old "
             "prompts as well but to hold back the new content, BENCHMARKS.md)",
        factory=lambda: ["stills"])
    steps: int = option(25, "DDIM steps of the preserved videos", min=1)
    cfg_scale: float = option(1.0, "classifier-free guidance of the preserved videos (1.0 = none)", min=1)
    null_caption_prob: float = option(0.1, "share of preserved items compared under the empty caption (the "
                                           "unconditional branch of guidance)", min=0, max=1)

    def validate(self) -> None:
        if not self.inputs or any(i not in PRESERVATION_INPUTS for i in self.inputs):
            raise ConfigError(f"train.preservation.inputs: one or both of {', '.join(PRESERVATION_INPUTS)}, got "
                              f"{self.inputs}")
        if self.weight and not self.prompts:
            raise ConfigError("train.preservation.prompts: required when train.preservation.weight > 0 (the "
                              "captions whose videos must not change)")


@dataclasses.dataclass
class TrainConfig:
    """Optimisation, precision, checkpointing and distribution settings."""

    run_dir: str = option("runs/latte", "directory of this run: resolved config, logs, TensorBoard, checkpoints, samples")
    seed: int = option(3407, "global seed; rank r seeds its generators with seed + r, per-sample noise is keyed by seed")
    max_steps: int = option(1000, "number of optimizer steps to train for (the run ends at this step)", min=1)
    batch_size: int = option(5, "videos per device per micro-step (official local_batch_size)", min=1)
    grad_accum: int = option(1, "micro-steps accumulated per optimizer step; global batch = batch_size x grad_accum x world size", min=1)
    lr: float = option(1e-4, "peak learning rate of AdamW", above=0, max=1)
    betas: tuple[float, float] = option((0.9, 0.999), "AdamW betas", min=0, below=1)
    weight_decay: float = option(0.0, "AdamW decoupled weight decay", min=0)
    eps: float = option(1e-8, "AdamW epsilon", above=0, max=1)
    lr_schedule: Literal["constant", "warmup", "cosine"] = option(
        "constant", "learning-rate schedule: constant; warmup (linear 0 -> lr over warmup_steps, then constant); "
                    "cosine (linear warmup, then cosine decay to min_lr at max_steps)")
    warmup_steps: int = option(0, "linear warmup length in optimizer steps (warmup and cosine schedules)", min=0)
    min_lr: float = option(0.0, "final learning rate of the cosine schedule", min=0, max=1)
    clip_grad_norm: Optional[float] = option(0.1, "max global L2 norm of the gradients; null disables clipping (the norm is still logged)", above=0)
    start_clip_step: int = option(0, "clip only from this optimizer step on (official start_clip_iter); before it the norm is only measured", min=0)
    ema_decay: Optional[float] = option(0.9999, "decay of the float32 exponential moving average of the weights, updated after every optimizer step; null: no EMA", min=0, below=1)
    trainable: Union[Literal["all", "lora"], list[str]] = option(
        "all", "which parameters train: all; lora (low-rank adapters on train.lora.targets, everything else frozen); "
               "or a list of fnmatch patterns over parameter names (e.g. ['blocks.*.attn.*']), everything else frozen")
    lora: LoraConfig = option(help="LoRA adapters (train.trainable: lora)", factory=lambda: LoraConfig())
    given_frames: GivenFramesConfig = option(help="clean given frames per clip (models with "
                                                  "model.frame_conditioning only)", factory=lambda: GivenFramesConfig())
    preservation: PreservationConfig = option(
        help="prior preservation by self-distillation (fine-tuning on a few stills)",
        factory=lambda: PreservationConfig())
    precision: Literal["float32", "bf16", "fp16"] = option(
        "float32", "compute precision: float32; bf16 autocast; fp16 autocast with dynamic loss scaling (weights stay float32)")
    loss_scale_init: float = option(65536.0, "initial loss scale for precision fp16 (dynamic: halves on overflow, doubles after loss_scale_window good steps)", above=0)
    loss_scale_window: int = option(2000, "steps without overflow before the fp16 loss scale doubles", min=1)
    compile: bool = option(False, "wrap the model with torch.compile")
    tf32: bool = option(True, "allow TF32 matmuls/convolutions on CUDA (ignored on CPU)")
    distributed: Literal["ddp", "fsdp"] = option(
        "ddp", "multi-process strategy under torchrun: ddp (replicated weights) or fsdp (FSDP2 fully_shard per block)")
    num_workers: int = option(2, "DataLoader worker processes per rank (0 = load in the training process)", min=0)
    log_every: int = option(50, "optimizer steps between log lines / TensorBoard scalars", min=1)
    ckpt_every: int = option(10000, "optimizer steps between checkpoints (a final checkpoint is always written)", min=1)
    keep_last: int = option(3, "how many most recent checkpoints to keep (older ones are deleted unless kept by keep_every)", min=1)
    keep_every: Optional[int] = option(None, "keep every checkpoint whose step is a multiple of this permanently (null: none)", min=1)
    max_nonfinite: int = option(5, "stop the run after this many optimizer steps in a row with a non-finite loss or gradient", min=1)
    text_dropout_prob: float = option(
        0.1, "text conditioning: probability that a caption is replaced by the empty caption during training (for CFG)", min=0, below=1)
    init_from: Optional[str] = option(
        None, "initialise the model from weights: an official Latte .pt, an image DiT .pt, our checkpoint directory "
              "or a model.safetensors; keys are matched by name and shape and a report is printed")
    init_temporal_from_spatial: bool = option(
        True, "with init_from an image DiT checkpoint: true copies DiT block i into Latte block i also for temporal blocks "
              "(the official behaviour); false leaves temporal blocks freshly initialised")
    use_cache: bool = option(False, "train from the latent cache (data.cache_dir) instead of encoding videos on the fly")
    num_images: int = option(0, "image-video joint training: still images appended after the video frames of each sample (official 8)", min=0)
    deterministic: bool = option(
        False, "use deterministic algorithms (torch.use_deterministic_algorithms); required for bit-exact resume on GPU")

    def validate(self) -> None:
        if self.warmup_steps < 0 or (self.lr_schedule != "constant" and self.warmup_steps >= self.max_steps):
            raise ConfigError(f"train.warmup_steps: must be >= 0 and < train.max_steps ({self.max_steps}), got {self.warmup_steps}")
        if self.lr_schedule == "constant" and self.warmup_steps:
            raise ConfigError("train.warmup_steps: has no effect with lr_schedule 'constant'; use lr_schedule 'warmup'")
        if self.min_lr and self.lr_schedule != "cosine":
            raise ConfigError("train.min_lr: only used by lr_schedule 'cosine'")
        if self.min_lr > self.lr:
            raise ConfigError(f"train.min_lr: must be <= train.lr ({self.lr}), got {self.min_lr}")
        if self.keep_every is not None and self.keep_every < 1:
            raise ConfigError(f"train.keep_every: must be >= 1 or null, got {self.keep_every}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"train.betas: expected two numbers in [0, 1), got {list(self.betas)}")
        if self.loss_scale_init <= 0 or self.loss_scale_window < 1:
            raise ConfigError("train.loss_scale_init must be > 0 and train.loss_scale_window >= 1")
        if self.distributed == "fsdp" and self.precision == "fp16":
            raise ConfigError("train.precision: fp16 loss scaling is not supported with distributed 'fsdp'; use bf16")
        if isinstance(self.trainable, list) and not self.trainable:
            raise ConfigError("train.trainable: an empty list trains nothing; use all, lora or name patterns")
        if self.num_images < 0 or self.num_workers < 0:
            raise ConfigError("train.num_images / train.num_workers: must be >= 0")
        self.given_frames.validate()
        self.preservation.validate()


@dataclasses.dataclass
class ValidationConfig:
    """Periodic sampling from the EMA weights during training, through the sampling pipeline (``latte sample``)."""

    RENAMED = {"num_steps": "steps", "guidance_scale": "cfg_scale"}

    every: int = option(0, "optimizer steps between validation samples; 0 disables validation", min=0)
    num_samples: int = option(2, "videos per validation round (one per seed)", min=1)
    seeds: list[int] = option(help="noise seeds, one per sample (fixed, so rounds are comparable); default 0, 1, ...",
                              factory=list)
    class_labels: list[int] = option(help="class-conditional models: the class of each sample (cycled)", factory=list)
    prompts: list[str] = option(help="text-conditional models: the prompt of each sample (cycled)", factory=list)
    sampler: str = option("ddim", "sampler of the validation videos (as `latte sample --sampler`)")
    steps: int = option(50, "sampling steps per validation video (as `latte sample --steps`)", min=1)
    cfg_scale: float = option(1.0, "classifier-free guidance scale for class/text models, 1.0 = none (as `latte sample --cfg-scale`)", min=0)
    fps: int = option(8, "frame rate of the written mp4/GIF files", min=1)

    def validate(self) -> None:
        if self.every < 0 or self.num_samples < 1 or self.steps < 1:
            raise ConfigError("validation: every must be >= 0, num_samples and steps >= 1")
        if self.seeds and len(self.seeds) != self.num_samples:
            raise ConfigError(f"validation.seeds: expected {self.num_samples} seeds (num_samples), got {len(self.seeds)}")
        if self.cfg_scale < 1.0:
            raise ConfigError(f"validation.cfg_scale: must be >= 1.0, got {self.cfg_scale}")
        from latte.sampling.samplers import check_sampler

        try:
            check_sampler(self.sampler)
        except ValueError as e:
            raise ConfigError(f"validation.sampler: {e}") from None


@dataclasses.dataclass
class WandbConfig:
    """Optional Weights & Biases logging (needs ``pip install wandb``)."""

    enabled: bool = option(False, "log scalars and validation videos to Weights & Biases")
    project: str = option("latte", "W&B project name")
    entity: Optional[str] = option(None, "W&B entity (team or user); null = your default")
    run_name: Optional[str] = option(None, "W&B run name; null = the run directory's name")
    mode: Literal["online", "offline"] = option("online", "W&B mode; offline writes under the run directory")


@dataclasses.dataclass
class RunConfig:
    """Everything ``latte train`` needs: model, diffusion, data, encoders, optimisation, validation."""

    model: LatteConfig = option(help="the Latte transformer (see the model section)", factory=LatteConfig)
    diffusion: DiffusionConfig = option(help="the diffusion process and loss", factory=DiffusionConfig)
    data: DataConfig = option(help="the training dataset", factory=DataConfig)
    autoencoder: AutoencoderConfig = option(help="the video autoencoder mapping pixels to latents", factory=AutoencoderConfig)
    text_encoder: TextEncoderConfig = option(help="the text encoder (text-conditional models only)", factory=TextEncoderConfig)
    train: TrainConfig = option(help="optimisation, precision, checkpoints, distribution", factory=TrainConfig)
    validation: ValidationConfig = option(help="periodic sampling from the EMA weights", factory=ValidationConfig)
    wandb: WandbConfig = option(help="optional Weights & Biases logging", factory=WandbConfig)

    def validate(self) -> None:
        model, diffusion = self.model, self.diffusion
        sigma_model, sigma_diff = getattr(model, "learn_sigma", None), getattr(diffusion, "learn_sigma", None)
        if sigma_model is not None and sigma_diff is not None and sigma_model != sigma_diff:
            raise ConfigError(f"diffusion.learn_sigma ({sigma_diff}) must equal model.learn_sigma ({sigma_model})")
        conditioning = getattr(model, "conditioning", "none")
        if self.validation.every and conditioning == "class" and not self.validation.class_labels:
            raise ConfigError("validation.class_labels: required for a class-conditional model (model.conditioning: class)")
        if self.validation.every and conditioning == "text" and not self.validation.prompts:
            raise ConfigError("validation.prompts: required for a text-conditional model (model.conditioning: text)")
        if self.validation.prompts and conditioning != "text":
            raise ConfigError("validation.prompts: only used when model.conditioning is 'text'")
        if self.validation.class_labels and conditioning != "class":
            raise ConfigError("validation.class_labels: only used when model.conditioning is 'class'")
        num_classes = getattr(model, "num_classes", None)
        if num_classes is not None and any(not 0 <= c < num_classes for c in self.validation.class_labels):
            raise ConfigError(f"validation.class_labels: every label must be in [0, model.num_classes={num_classes})")
        if self.train.preservation.weight:
            if conditioning != "text":
                raise ConfigError("train.preservation: keeps a text-conditional model's videos of prompts; "
                                  f"model.conditioning is '{conditioning}'")
            if not (self.train.init_from or self.train.preservation.frozen_from):
                raise ConfigError("train.preservation: needs train.init_from or train.preservation.frozen_from (the "
                                  "frozen model whose videos are kept)")


def load_run_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read and validate a run config YAML file (with ``key.sub=value`` overrides)."""
    return load_yaml(path, RunConfig, overrides)


def save_run_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (every key, defaults included)."""
    atomic_write_yaml(path, to_dict(config))


def run_config_from_dict(data: dict) -> RunConfig:
    return from_dict(RunConfig, data)
