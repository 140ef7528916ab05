"""The Latte task of ``latte train``: a video diffusion transformer on latents, with every conditioning.

Per micro-batch:

1. latents: read from the batch (latent cache / in-memory tensors) or encoded on the fly by the autoencoder
   (posterior samples keyed by ``(seed, step, dataset index)``);
2. per-sample timestep, noise and condition dropout drawn from ``(seed, step, dataset index)``
   (:func:`latte.training.randomness.per_sample_draws`), so accumulation and DDP reproduce the single-process
   result;
3. conditions: class labels (dropped to the null class with ``model.class_dropout_prob``) or caption features
   (dropped to the empty caption with ``train.text_dropout_prob``), plus the stills of image-video joint
   training (``train.num_images``);
4. ``loss = mean(mse + vb)`` of the diffusion, the model run under the configured autocast.

Validation samples come from :class:`latte.sampling.pipeline.LattePipeline` on the EMA weights, so a
validation video is the video ``latte sample`` makes from the saved checkpoint with the same seed and settings.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from latte.config import ConfigError, to_dict
from latte.io import load_yaml_mapping
from latte.training.config import RunConfig, save_run_config
from latte.seeding import mix_seed
from latte.training.randomness import given_frame_masks, per_sample_draws
from latte.models.lora import ADAPTER_FILE, has_lora, join_lora_state, save_lora, split_lora_state
from latte.training.tasks import TaskBase

__all__ = ["LatteTask", "CaptionFeatures"]


class CaptionFeatures:
    """Text-encoder features of captions, memoised per caption (up to ``limit_bytes``) when the features do not
    depend on the batch; the empty caption ``""`` is the null caption of classifier-free guidance."""

    def __init__(self, encoder, limit_bytes: int = 256 * 2**20):
        self.encoder = encoder
        self.limit_bytes = limit_bytes
        self.memo: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hidden (B, L, dim), mask (B, L))`` of the captions."""
        encoder = self.encoder
        if getattr(encoder, "truncate_to_valid", False):  # the length depends on the batch: no memo
            return encoder.encode(captions)
        memo = self.memo
        missing = list(dict.fromkeys(c for c in captions if c not in memo))
        if missing:
            hidden, mask = encoder.encode(missing)
            per_entry = hidden[0].numel() * hidden.element_size()
            for c, h, m in zip(missing, hidden, mask):
                if len(memo) * per_entry < self.limit_bytes:
                    memo[c] = (h, m)
            if any(c not in memo for c in captions):  # memo full: encode this batch directly
                return encoder.encode(captions)
        return torch.stack([memo[c][0] for c in captions]), torch.stack([memo[c][1] for c in captions])


class LatteTask(TaskBase):
    """``latte train``: builds :class:`latte.models.latte.Latte` from ``config.model``; see the module docstring."""

    name = "train"
    model_dir = "model"
    throughput_unit = "frames"
    lora_targets = ["attn.qkv", "attn.proj", "cross_attn.*", "mlp.fc1", "mlp.fc2"]

    def __init__(self, config: RunConfig, dataset: Optional[Dataset] = None):
        super().__init__()
        self.config = config
        self._dataset = dataset
        self._autoencoder = None
        self._text_encoder = None
        self._captions: Optional[CaptionFeatures] = None
        self._batch_checked = False
        self.device = torch.device("cpu")
        self.preservation = None  # train.preservation (built in setup)
        self.validation_every = config.validation.every
        self.resume_command = f"latte train CONFIG --resume {config.train.run_dir}"

    # ------------------------------------------------------------------------------------------- the model
    def build_model(self, device: torch.device, resuming: bool) -> nn.Module:
        from latte.models.latte import Latte

        self.device = device
        model = Latte(self.config.model)
        tc = self.config.train
        if tc.init_from and not resuming:
            from latte.training.init_from import check_init_meaning, init_model_from

            check_init_meaning(tc.init_from, to_dict(self.config))
            self.messages.append(init_model_from(model, tc.init_from, tc.init_temporal_from_spatial).summary())
        return model

    def setup(self, engine) -> None:
        from latte.diffusion import diffusion_from_config

        self.diffusion = diffusion_from_config(self.config.diffusion, self.config.model.learn_sigma)
        self.engine = engine
        if self.config.train.preservation.weight:  # the frozen starting model samples the videos to keep
            from latte.models.latte import Latte
            from latte.training.init_from import init_model_from
            from latte.training.preservation import Preservation

            tc = self.config.train
            frozen = Latte(self.config.model)
            init_model_from(frozen, tc.preservation.frozen_from or tc.init_from, tc.init_temporal_from_spatial)
            engine.info(f"train.preservation: sampling {len(tc.preservation.prompts)} videos of the frozen model")
            self.preservation = Preservation.build(self, frozen.to(self.device),
                                                   progress=engine.progress and engine.dist.is_main)

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return list(model.blocks)

    def dataset(self, engine) -> Dataset:
        from latte.data import build_dataset

        data = self._dataset if self._dataset is not None else build_dataset(self.config, split="train",
                                                                              progress=engine.dist.is_main)
        self._dataset = data
        if hasattr(data, "check_autoencoder"):  # latents cached by another VAE (same path) are refused
            data.check_autoencoder(self.autoencoder)
        return data

    @property
    def autoencoder(self):
        if self._autoencoder is None:
            from latte.encoders import build_autoencoder

            self.config.autoencoder.validate()
            self._autoencoder = build_autoencoder(self.config.autoencoder, device=self.device)
        return self._autoencoder

    @property
    def text_encoder(self):
        if self._text_encoder is None:
            from latte.encoders import build_text_encoder

            encoder = build_text_encoder(self.config.text_encoder, device=self.device)
            if encoder.dim != self.config.model.text_dim:
                raise ConfigError(f"model.text_dim ({self.config.model.text_dim}) must equal the text encoder's "
                                  f"feature size ({encoder.dim}, text_encoder.kind {self.config.text_encoder.kind})")
            self.text_encoder = encoder
        return self._text_encoder

    @text_encoder.setter
    def text_encoder(self, encoder) -> None:
        """Use ``encoder`` (any :class:`latte.encoders.base.TextEncoder`) for captions and validation prompts."""
        self._text_encoder = encoder
        self._captions = CaptionFeatures(encoder)

    # -------------------------------------------------------------------------------------------- the loss
    def latents(self, batch: dict, step: int) -> torch.Tensor:
        """``(B, C, F[+K], h, w)`` float32 latents of a micro-batch."""
        if "latents" in batch:
            return batch["latents"].to(self.device, torch.float32)
        video = batch["video"].to(self.device)
        out = []
        with torch.no_grad():
            for i, key in enumerate(batch["index"].tolist()):  # one keyed generator per sample: reproducible
                seed = mix_seed(self.config.train.seed, step, key, 1)
                generator = torch.Generator(device=self.device).manual_seed(seed)
                out.append(self.autoencoder.encode(video[i:i + 1], generator=generator))
        return torch.cat(out).float()

    def _check_batch(self, batch: dict, x0: torch.Tensor) -> None:
        """First batch only: the data must fit the model (channels, size, frames, labels/captions)."""
        cfg, k = self.config.model, self.config.train.num_images
        expected = (cfg.in_channels, cfg.num_frames + k, cfg.input_size, cfg.input_size)
        if tuple(x0.shape[1:]) != expected:
            raise ConfigError(
                f"the data gives latents (C, F, h, w) = {tuple(x0.shape[1:])} but the model expects {expected} "
                f"(model.in_channels, model.num_frames + train.num_images, model.input_size x2); check "
                "data.num_frames, data.image_size and the autoencoder's downsampling/latent channels")
        needs = {"class": ("y", "class labels (data.kind classes or synthetic)"),
                 "text": ("caption", "captions (data.kind captions or synthetic)")}.get(cfg.conditioning)
        if needs and needs[0] not in batch and not (cfg.conditioning == "text" and "text" in batch):
            raise ConfigError(f"model.conditioning '{cfg.conditioning}' needs {needs[1]}; the dataset items have "
                              f"only {', '.join(sorted(batch))}")
        self._batch_checked = True

    def condition(self, batch: dict, drop: torch.Tensor) -> dict:
        """Model keyword arguments: class labels / text features with guidance dropout (sample ``i`` is dropped
        when ``drop[i]`` < the dropout probability) and the joint-image inputs."""
        cfg, kwargs = self.config.model, {}
        if self.config.train.num_images:
            kwargs["num_images"] = self.config.train.num_images
        if cfg.conditioning == "class":
            kwargs["y"] = batch["y"].to(self.device)
            kwargs["force_drop_ids"] = (drop < cfg.class_dropout_prob).long()
            if "y_images" in batch:
                kwargs["y_images"] = batch["y_images"].to(self.device)
        elif cfg.conditioning == "text":
            dropped = (drop < self.config.train.text_dropout_prob).tolist()
            kwargs["text"], kwargs["text_mask"] = self._text_features(batch, "caption", "text", dropped)
            if "image_captions" in batch or "image_text" in batch:
                images_text, images_mask = self._text_features(batch, "image_captions", "image_text", dropped)
                kwargs["image_text"], kwargs["image_text_mask"] = images_text, images_mask
        return kwargs

    def _text_features(self, batch: dict, caption_key: str, feature_key: str, dropped: list[bool]):
        """Text features of the captions (or cached features), dropped samples replaced by the empty caption."""
        if feature_key in batch:  # precomputed (latent cache)
            hidden = batch[feature_key].to(self.device, torch.float32)
            mask = batch[f"{feature_key}_mask"].to(self.device).bool()
            null_hidden, null_mask = self.text_encoder.null_embedding()
            length = hidden.shape[-2]
            for i, d in enumerate(dropped):
                if d:
                    hidden[i] = null_hidden[0, :length].to(hidden)
                    mask[i] = null_mask[0, :length].to(mask)
            return hidden, mask
        encoder = self.text_encoder  # builds the caption memo on first use
        captions = batch[caption_key]
        if captions and isinstance(captions[0], list):  # per-sample lists of image captions (B, K)
            flat = ["" if d else c for caps, d in zip(captions, dropped) for c in caps]
            hidden, mask = self._captions(flat)
            k = len(captions[0])
            return hidden.reshape(len(captions), k, *hidden.shape[1:]), mask.reshape(len(captions), k, -1)
        assert encoder is self._captions.encoder
        return self._captions(["" if d else c for c, d in zip(captions, dropped)])

    def loss(self, model: nn.Module, batch: dict, ctx) -> dict[str, torch.Tensor]:
        x0 = self.latents(batch, ctx.step)
        if not self._batch_checked:
            self._check_batch(batch, x0)
        t, noise, drop = per_sample_draws(batch["index"].tolist(), ctx.seed, ctx.step, self.diffusion.num_timesteps,
                                          tuple(x0.shape[1:]), self.device)
        kwargs = self.condition(batch, drop)
        given = None
        if self.config.model.frame_conditioning:  # clean given frames: the loss covers the others only
            gf, video_frames = self.config.train.given_frames, x0.shape[2] - self.config.train.num_images
            given = given_frame_masks(batch["index"].tolist(), ctx.seed, ctx.step, video_frames, gf.modes, gf.max_k,
                                      self.device)
            given = torch.nn.functional.pad(given, (0, x0.shape[2] - video_frames))  # joint images: never given
            kwargs["frame_mask"] = given

        def under_autocast(net):  # the model under autocast, returning float32 (losses are float32)
            def run(x, t, **kw):
                with ctx.autocast():
                    return net(x, t, **kw).float()
            return run

        terms = self.diffusion.training_losses(under_autocast(model), x0, t, model_kwargs=kwargs, noise=noise,
                                               given_mask=given)
        out = {"loss": terms["loss"].mean(), "mse": terms["mse"].mean(), "vb": terms["vb"].mean()}
        if self.preservation is not None:  # DDP: one wrapped forward per backward; the second runs unwrapped
            student = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
            preserve = self.preservation.loss(under_autocast(student), under_autocast(self.preservation.frozen),
                                              self.diffusion.q_sample, self._captions, batch["index"].tolist(),
                                              ctx.seed, ctx.step).mean()
            out["loss"] = out["loss"] + self.config.train.preservation.weight * preserve
            out["preserve"] = preserve.detach()
        return out

    def batch_items(self, batch: dict) -> int:
        x = batch["latents"] if "latents" in batch else batch["video"]
        return x.shape[0] * x.shape[2]

    # ------------------------------------------------------------------------------------------ checkpoints
    def save_weights(self, model: nn.Module, folder: Path, state_dict: Optional[dict]) -> None:
        """A ``Latte.save_pretrained`` folder; with LoRA the base weights there (loadable as they are) and the
        adapter beside them (``adapter.safetensors`` + ``adapter_config.json``: ``latte sample --lora``)."""
        if not has_lora(model):
            model.save_pretrained(folder, state_dict=state_dict)
            return
        base, adapter = split_lora_state(state_dict if state_dict is not None else model.state_dict())
        model.save_pretrained(folder, state_dict=base)
        save_lora(model, folder, adapter)

    def load_weights(self, model: nn.Module, folder: Path) -> None:
        from safetensors.torch import load_file

        state = load_file(str(Path(folder) / "model.safetensors"))
        if has_lora(model):
            state = join_lora_state(model, state, load_file(str(Path(folder) / ADAPTER_FILE)))
        model.load_state_dict(state)

    def save_config(self, folder: Path) -> None:
        save_run_config(self.config, Path(folder) / "run_config.yaml")
        class_names = getattr(self._dataset, "class_names", None)
        if class_names and self.config.model.conditioning == "class":  # sampling resolves --class NAME with it
            (Path(folder) / "class_names.json").write_text(json.dumps(list(class_names), indent=1) + "\n")

    def check_resume(self, checkpoint_dir: Path) -> None:
        saved = load_yaml_mapping(checkpoint_dir / "run_config.yaml", "run config")
        mine = to_dict(self.config.model)
        if saved.get("model") != mine:
            diff = [k for k in set(saved.get("model", {})) | set(mine) if saved.get("model", {}).get(k) != mine.get(k)]
            raise ConfigError(f"--resume {checkpoint_dir}: the checkpoint's model section differs from this config "
                              f"in model.{', model.'.join(sorted(diff))}")

    def config_dict(self) -> dict:
        return to_dict(self.config)

    # ------------------------------------------------------------------------------------------- validation
    def pipeline(self, model: nn.Module):
        """A :class:`~latte.sampling.pipeline.LattePipeline` of ``model`` with this run's encoders and noise
        schedule (what ``latte sample`` builds from the saved checkpoint)."""
        from latte.diffusion.gaussian import beta_schedule
        from latte.sampling.pipeline import LattePipeline

        d = self.config.diffusion
        text = self.text_encoder if self.config.model.conditioning == "text" else None
        return LattePipeline(model, self.autoencoder, text, betas=beta_schedule(d.noise_schedule, d.diffusion_steps),
                             prediction_type=d.prediction_type, device=self.device)

    @torch.no_grad()
    def validation_videos(self, model: nn.Module) -> np.ndarray:
        """uint8 ``(N, F, H, W, 3)``: one video per ``validation.seeds`` entry from ``model`` via the pipeline."""
        v = self.config.validation
        seeds = v.seeds or list(range(v.num_samples))
        cond = self.config.model.conditioning
        prompts = [v.prompts[k % len(v.prompts)] for k in range(len(seeds))] if cond == "text" else None
        classes = [v.class_labels[k % len(v.class_labels)] for k in range(len(seeds))] if cond == "class" else None
        out = self.pipeline(model)(prompts=prompts, classes=classes, seeds=seeds, sampler=v.sampler, steps=v.steps,
                                   cfg_scale=v.cfg_scale, progress=False)
        return out.videos

    def validate(self, engine) -> list[Path]:
        """Sample from the EMA weights, write ``RUN/samples/step_XXXXXXX/sample_K.{mp4,gif}`` and TensorBoard."""
        from latte.data.video_io import write_gif, write_mp4

        if engine.run_dir is None:
            return []
        fps = self.config.validation.fps
        import copy

        ema = engine.ema if engine.ema is not None else copy.deepcopy(engine.model)  # the pipeline freezes it
        videos = self.validation_videos(ema)
        out_dir = engine.run_dir / "samples" / f"step_{engine.step:07d}"
        paths = []
        for k, frames in enumerate(videos):
            paths.append(write_mp4(out_dir / f"sample_{k}.mp4", frames, fps=fps))
            write_gif(out_dir / f"sample_{k}.gif", frames, fps=fps)
            if engine.writer is not None:
                strip = np.concatenate(list(frames), axis=1)  # (H, F*W, 3)
                engine.writer.add_image(f"validation/sample_{k}", strip, engine.step, dataformats="HWC")
            if engine.wandb_run is not None:
                import wandb

                engine.wandb_run.log({f"validation/sample_{k}": wandb.Video(str(out_dir / f"sample_{k}.gif"))},
                                     step=engine.step)
        return paths
