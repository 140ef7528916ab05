"""``LattePipeline``: a trained Latte model, its autoencoder and text encoder, turned into videos.

>>> pipe = LattePipeline.from_run("runs/ucf101")                   # EMA weights of the latest checkpoint
>>> out = pipe(classes=["ApplyEyeMakeup"], num_videos=4, seed=0)   # DDPM 250 / CFG 7 (official defaults)
>>> out.videos.shape                                              # (4, F, H, W, 3) uint8
>>> save_videos(out, "samples/", formats=("mp4", "gif"))

Reproducibility: video ``i`` is drawn from its own ``torch.Generator`` seeded with ``seed + i`` (or ``seeds[i]``),
for its initial noise and every stochastic step, so a video is the same whatever the batch size or the other
videos in the batch (up to the float non-associativity of batched kernels).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal, Optional, Sequence, Union

import numpy as np
import torch

from latte.config import to_dict
from latte.models import Latte
from latte.sampling.cache import CacheLike, TeaCache, count_model_calls, parse_cache
from latte.sampling.given_frames import (Given, count_clips, extend_clips, given_record, pixels_to_model_space,
                                        read_given)
from latte.sampling.long_video import reschedule_noise, resolve_windows, window_starts, windowed
from latte.sampling.samplers import StepCallback, check_sampler, draw_noise, sample_loop
from latte.sampling.sources import Defaults, Parts

PathLike = Union[str, Path]
OutputType = Literal["uint8", "tensor", "latent"]

__all__ = ["LattePipeline", "SampleOutput", "model_config_hash"]


def _cache_record(sessions: list, video: int) -> dict:
    """The step-cache part of a video's record; with temporal windows (one session each) the calls are summed."""
    if sessions[0] is None:
        return {"cache": "none"}
    parts = [s.record(video) for s in sessions]
    return {**parts[0], **{k: sum(p[k] for p in parts) for k in ("cache_computed_calls", "cache_model_calls")}}


def model_config_hash(model: Latte) -> str:
    """Short hash of the model's architecture config (identifies which model made a video)."""
    text = json.dumps(to_dict(model.config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class SampleOutput:
    """Videos and one metadata record per video (what the JSON sidecar holds).

    ``videos``: uint8 numpy ``(N, F, H, W, 3)`` (``output_type='uint8'``), float ``(N, 3, F, H, W)`` in
    [-1, 1] (``'tensor'``) or latents ``(N, C, F, h, w)`` (``'latent'``).
    """

    videos: Union[np.ndarray, torch.Tensor]
    records: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


class LattePipeline:
    """Sampling from a Latte model. Build it with :meth:`from_run`, :meth:`from_official`, :meth:`from_diffusers`
    or :meth:`load` (auto-detects the format); call it to get videos."""

    def __init__(self, model: Latte, autoencoder=None, text_encoder=None, *, betas: Optional[np.ndarray] = None,
                 defaults: Optional[Defaults] = None, class_names: Optional[list[str]] = None,
                 truncate_text: bool = False, source: Optional[dict] = None, device=None, dtype=None,
                 prediction_type: str = "epsilon"):
        """``model`` in native layout; ``autoencoder`` (:class:`latte.encoders.Autoencoder`) is needed for
        pixel output; ``text_encoder`` for text models. ``betas``: the training noise schedule (default linear
        1e-4..0.02 over 1000 steps); ``prediction_type``: what the model predicts ('epsilon' or
        'v_prediction'). ``truncate_text``: the official single-prompt behaviour (``mask_feature``): each
        prompt's features are cut to its valid tokens and the empty-prompt features to the same length, all
        attended. ``dtype`` (float16/bfloat16) is applied to the transformer on CUDA only."""
        from latte.diffusion.gaussian import check_prediction_type
        from latte.encoders.loading import resolve_dtype
        from latte.sampling.sources import DEFAULTS, linear_betas

        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.eval().requires_grad_(False).to(device=self.device, dtype=self.dtype)
        self.autoencoder = autoencoder
        self.text_encoder = text_encoder
        self.betas = np.asarray(betas if betas is not None else linear_betas(), dtype=np.float64)
        self.prediction_type = check_prediction_type(prediction_type)
        self.defaults = defaults or DEFAULTS[model.config.conditioning]
        self.class_names = list(class_names) if class_names else None
        self.truncate_text = truncate_text
        self.source = dict(source or {})
        self.config_hash = model_config_hash(model)

    # ---------------------------------------------------------------------------------------------- building
    @classmethod
    def _from_parts(cls, parts: Parts, device=None, dtype=None, vae: Optional[PathLike] = None,
                    text_encoder: Optional[PathLike] = None, need_decoder: bool = True) -> "LattePipeline":
        from latte.encoders import build_autoencoder, build_text_encoder
        from latte.sampling.sources import text_encoder_config_for, vae_config_for

        device = torch.device(device) if device is not None else torch.device("cpu")
        ae_cfg = vae_config_for(vae) if vae is not None else parts.autoencoder
        te_cfg = parts.text_encoder
        if text_encoder is not None:
            te_cfg = text_encoder_config_for(text_encoder, max_length=te_cfg.max_length if te_cfg else None)
        if ae_cfg is None and need_decoder:
            raise FileNotFoundError(f"{parts.source.get('checkpoint')}: no autoencoder known for this model; pass "
                                    "vae= (--vae PATH: a diffusers VAE folder or a folder holding vae/)")
        if parts.model.config.conditioning == "text" and te_cfg is None:
            raise FileNotFoundError(f"{parts.source.get('checkpoint')}: this text-to-video model needs a text "
                                    "encoder; pass text_encoder= (--text-encoder PATH: e.g. a T5 folder)")
        autoencoder = build_autoencoder(ae_cfg, device=device, dtype=dtype) if ae_cfg is not None else None
        text = build_text_encoder(te_cfg, device=device) if te_cfg is not None else None
        return cls(parts.model, autoencoder, text, betas=parts.betas, prediction_type=parts.prediction_type,
                   defaults=parts.defaults, class_names=parts.class_names, truncate_text=parts.truncate_text,
                   source=parts.source, device=device, dtype=dtype)

    @classmethod
    def from_run(cls, run_or_checkpoint: PathLike, ema: bool = True, device=None, dtype=None,
                 vae: Optional[PathLike] = None, text_encoder: Optional[PathLike] = None) -> "LattePipeline":
        """From a run directory (latest checkpoint) or one ``checkpoints/step_XXXXXXX`` directory; encoders and
        noise schedule come from its ``run_config.yaml`` (``vae`` / ``text_encoder`` override the paths)."""
        from latte.sampling.sources import load_run

        return cls._from_parts(load_run(run_or_checkpoint, ema=ema), device, dtype, vae, text_encoder)

    @classmethod
    def from_official(cls, checkpoint: PathLike, vae: Optional[PathLike] = None, kind: Optional[str] = None,
                      config: Optional[dict] = None, text_encoder: Optional[PathLike] = None, device=None,
                      dtype=None) -> "LattePipeline":
        """From a released checkpoint (see :func:`latte.sampling.sources.load_official`)."""
        from latte.sampling.sources import load_official

        return cls._from_parts(load_official(checkpoint, vae, kind, config, text_encoder), device, dtype)

    @classmethod
    def from_diffusers(cls, folder: PathLike, device=None, dtype=None, vae: Optional[PathLike] = None,
                       text_encoder: Optional[PathLike] = None) -> "LattePipeline":
        """From a diffusers ``LattePipeline`` folder (transformer/, vae/, text_encoder/, tokenizer/, scheduler/)."""
        from latte.sampling.sources import load_diffusers

        return cls._from_parts(load_diffusers(folder, vae, text_encoder), device, dtype)

    @classmethod
    def load(cls, checkpoint: PathLike, ema: bool = True, device=None, dtype=None, vae: Optional[PathLike] = None,
             text_encoder: Optional[PathLike] = None, kind: Optional[str] = None) -> "LattePipeline":
        """Any supported source, detected from the path: run/checkpoint directory, Latte model folder, diffusers
        folder, official ``.pt`` file or transformer folder."""
        from latte.sampling import sources

        found = sources.detect_source(checkpoint)
        if found == "run":
            return cls.from_run(checkpoint, ema, device, dtype, vae, text_encoder)
        if found == "model_folder":
            return cls._from_parts(sources.load_model_folder(checkpoint), device, dtype, vae, text_encoder)
        if found == "diffusers":
            return cls.from_diffusers(checkpoint, device, dtype, vae, text_encoder)
        return cls._from_parts(sources.load_official(checkpoint, vae, kind, None, text_encoder), device, dtype)

    def apply_lora(self, path: PathLike, scale: float = 1.0, merge: bool = False) -> "LattePipeline":
        """Add the LoRA adapter at ``path`` (a folder with ``adapter.safetensors``, e.g. ``CHECKPOINT/ema``),
        its update scaled by ``scale``; ``merge`` folds it into the weights (same videos, faster)."""
        from latte.models.lora import apply_lora_file, merge_lora

        model = apply_lora_file(self.model.float(), path, scale)
        if merge:
            model = merge_lora(model)
        self.model = model.eval().requires_grad_(False).to(device=self.device, dtype=self.dtype)
        self.source.update(lora=str(path), lora_scale=float(scale))
        return self

    # ------------------------------------------------------------------------------------------- conditions
    @property
    def conditioning(self) -> str:
        return self.model.config.conditioning

    def resolve_class(self, value: Union[int, str]) -> int:
        """A class id from an id or a name of the run's class-name mapping."""
        num = self.model.config.num_classes
        if isinstance(value, str) and not value.lstrip("-").isdigit():
            if not self.class_names:
                raise ValueError(f"class '{value}': this model has no saved class names; pass an id in "
                                 f"[0, {num})")
            if value not in self.class_names:
                import difflib

                close = difflib.get_close_matches(value, self.class_names, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise ValueError(f"unknown class '{value}'{hint}")
            return self.class_names.index(value)
        idx = int(value)
        if not 0 <= idx < num:
            raise ValueError(f"class id {idx} out of range [0, {num})")
        return idx

    def class_name(self, idx: int) -> Optional[str]:
        return self.class_names[idx] if self.class_names and idx < len(self.class_names) else None

    def _text_conditions(self, prompts: list[str], negative_prompt: str = "") -> tuple[dict, dict]:
        """Conditional and unconditional text kwargs for a batch of prompts; the unconditional branch is the
        empty prompt, or ``negative_prompt`` when one is given."""
        hidden, mask = self.text_encoder.encode(prompts)
        if negative_prompt:
            null_hidden, null_mask = self.text_encoder.encode([negative_prompt])
            short = hidden.shape[1] - null_hidden.shape[1]  # encoders that cut to valid tokens: pad to match
            if short > 0:
                null_hidden = torch.nn.functional.pad(null_hidden, (0, 0, 0, short))
                null_mask = torch.nn.functional.pad(null_mask, (0, short))
        else:
            null_hidden, null_mask = self.text_encoder.null_embedding()
        b = hidden.shape[0]
        if self.truncate_text:  # official mask_feature: valid tokens only, negative cut to the same length
            lengths = mask.sum(dim=1).clamp(min=1)
            length = int(lengths.max())
            keep = torch.arange(length, device=mask.device)[None] < lengths[:, None]
            cond = {"text": hidden[:, :length], "text_mask": keep}
            uncond = {"text": null_hidden[:, :length].expand(b, -1, -1), "text_mask": keep}
        else:
            length = hidden.shape[1]
            cond = {"text": hidden, "text_mask": mask}
            uncond = {"text": null_hidden[:, :length].expand(b, -1, -1),
                      "text_mask": null_mask[:, :length].expand(b, -1)}
        to = lambda d: {k: v.to(self.device) for k, v in d.items()}  # noqa: E731
        return to(cond), to(uncond)

    def _model_fn(self, cond: dict, uncond: dict, cfg_scale: float, forward=None):
        """``(x, t) -> output`` with guidance; ``forward`` replaces the model's forward (a cache session)."""
        from latte.diffusion import classifier_free_guidance

        forward = forward or self.model

        def run(x, t, **kwargs):
            return forward(x.to(self.dtype), t, **kwargs).float()

        if cfg_scale > 1.0 and self.conditioning != "none":
            return classifier_free_guidance(run, cfg_scale, cond, uncond, self.model.config.in_channels)
        return lambda x, t: run(x, t, **cond)

    # --------------------------------------------------------------------------------------------- sampling
    def _plan(self, prompts, classes, num_videos, seed, seeds, indices) -> list[dict]:
        """One record per video: index, seed and its prompt or class."""
        cond = self.conditioning
        if indices is None:
            if num_videos is None:
                num_videos = len(prompts) if prompts else (len(classes) if classes else 1)
            indices = list(range(num_videos))
        indices = [int(i) for i in indices]
        if seeds is not None and len(seeds) != len(indices):
            raise ValueError(f"seeds: expected one per video ({len(indices)}), got {len(seeds)}")
        if cond == "text" and not prompts:
            raise ValueError("this is a text-to-video model: pass prompts (--prompt / --prompts)")
        if cond == "class" and not classes:
            raise ValueError("this is a class-conditional model: pass classes (--class NAME_OR_ID)")
        if cond != "text" and prompts:
            raise ValueError(f"prompts given, but the model is not text-conditional (conditioning '{cond}')")
        if cond != "class" and classes:
            raise ValueError(f"classes given, but the model is not class-conditional (conditioning '{cond}')")
        class_ids = [self.resolve_class(c) for c in classes] if classes else None
        plan = []
        for k, i in enumerate(indices):
            rec = {"index": i, "seed": int(seeds[k]) if seeds is not None else int(seed) + i}
            if prompts:
                rec["prompt"] = prompts[i % len(prompts)]
            if class_ids:
                rec["class_id"] = class_ids[i % len(class_ids)]
                rec["class_name"] = self.class_name(rec["class_id"])
            plan.append(rec)
        return plan

    def _settings(self, sampler, steps, cfg_scale, frames, height, width) -> dict:
        cfg = self.model.config
        sampler = sampler or self.defaults.sampler
        check_sampler(sampler)
        cfg_scale = self.defaults.cfg_scale if cfg_scale is None else float(cfg_scale)
        if not math.isfinite(cfg_scale) or cfg_scale < 0:
            raise ValueError(f"cfg_scale: expected a finite number >= 0 (1 disables guidance), got {cfg_scale}")
        for name, value in (("steps", steps), ("frames", frames), ("height", height), ("width", width)):
            if value is not None and int(value) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value}")
        if cfg_scale > 1.0 and self.conditioning == "none":
            raise ValueError("cfg_scale > 1 needs a class- or text-conditional model; this one is unconditional")
        if cfg_scale > 1.0 and self.conditioning == "class" and cfg.class_dropout_prob <= 0:
            raise ValueError("this class-conditional model has no null class (class_dropout_prob 0): "
                             "classifier-free guidance is impossible, use cfg_scale 1")
        factor = self.autoencoder.downsample_factor if self.autoencoder is not None else 1
        height = height or cfg.input_size * factor
        width = width or cfg.input_size * factor
        if height % (factor * cfg.patch_size) or width % (factor * cfg.patch_size):
            raise ValueError(f"height/width ({height}x{width}) must be multiples of {factor * cfg.patch_size} "
                             f"(autoencoder downsampling {factor} x patch size {cfg.patch_size})")
        return dict(sampler=sampler, steps=int(steps or self.defaults.steps), cfg_scale=cfg_scale,
                    frames=int(frames or cfg.num_frames), height=int(height), width=int(width))

    def describe(self) -> dict:
        """Provenance shared by every video of this pipeline (goes into each sidecar)."""
        info = {**self.source, "model_config_hash": self.config_hash, "conditioning": self.conditioning,
                "prediction_type": self.prediction_type,
                "dtype": str(self.dtype).removeprefix("torch."), "device": str(self.device)}
        if self.autoencoder is not None:
            info["autoencoder"] = self.autoencoder.identity()
        if self.text_encoder is not None:
            info["text_encoder"] = self.text_encoder.identity()
            info["negative_prompt"] = ""
            info["truncate_text"] = self.truncate_text
        return info

    def iter_batches(self, prompts: Optional[Sequence[str]] = None,
                     classes: Optional[Sequence[Union[int, str]]] = None, num_videos: Optional[int] = None,
                     seed: int = 0, seeds: Optional[Sequence[int]] = None, indices: Optional[Sequence[int]] = None,
                     sampler: Optional[str] = None, steps: Optional[int] = None, cfg_scale: Optional[float] = None,
                     frames: Optional[int] = None, height: Optional[int] = None, width: Optional[int] = None,
                     batch_size: int = 1, output_type: OutputType = "uint8",
                     progress: bool = True, negative_prompt: str = "",
                     callback: Optional[StepCallback] = None, cache: CacheLike = None, window: Optional[int] = None,
                     window_stride: Optional[int] = None, image: Optional[Given] = None,
                     extend: Optional[Given] = None,
                     context_frames: Optional[int] = None) -> Iterator[SampleOutput]:
        """Like :meth:`__call__`, yielding one :class:`SampleOutput` per batch (for saving as you go)."""
        if negative_prompt and self.conditioning != "text":
            raise ValueError(f"negative_prompt needs a text-conditional model (conditioning '{self.conditioning}')")
        if isinstance(prompts, str):
            prompts = [prompts]
        if isinstance(classes, (int, str)):
            classes = [classes]
        cfg = self.model.config
        given_kind = "image" if image is not None else ("extend" if extend is not None else None)
        given_pixels = given_source = None
        if image is not None and extend is not None:
            raise ValueError("image and extend: give one (a first frame, or a video to continue)")
        if given_kind and not cfg.frame_conditioning:
            raise ValueError(f"{given_kind}: this model was not trained with given frames "
                             "(model.frame_conditioning: false); fine-tune it with model.frame_conditioning: true "
                             "(train.init_from the checkpoint), or use window= for training-free long videos")
        use_clips = cfg.frame_conditioning and window is None and window_stride is None
        if given_kind and not use_clips:
            raise ValueError(f"{given_kind}: window / window_stride are for training-free long videos; a "
                             "frame-conditioned model continues clips by itself (context_frames)")
        context = cfg.num_frames // 2 if context_frames is None else int(context_frames)
        if given_kind:
            given_pixels, given_source = read_given(image if image is not None else extend, given_kind)
            if frames is None:  # one clip: the image's, or one more clip after the video
                frames = cfg.num_frames if given_kind == "image" else len(given_pixels) + cfg.num_frames - context
        settings = self._settings(sampler, steps, cfg_scale, frames, height, width)
        cache = parse_cache(cache)
        if cache is not None and not isinstance(cache, TeaCache):
            raise ValueError(f"cache '{cache.spec()}' is for the LaVie U-Nets; a Latte transformer takes "
                             "'teacache:THRESHOLD' (or 'none')")
        num_calls = count_model_calls(settings["sampler"], settings["steps"], self.betas) if cache else 0
        plan = self._plan(list(prompts or []), list(classes or []), num_videos, seed, seeds, indices)
        if output_type != "latent" and self.autoencoder is None:
            raise ValueError("no autoencoder: only output_type='latent' is possible")
        factor = self.autoencoder.downsample_factor if self.autoencoder is not None else 1
        shape = (cfg.in_channels, settings["frames"], settings["height"] // factor, settings["width"] // factor)
        tubelet = cfg.tubelet_size if cfg.patch_embedding == "tubelet" else 1
        prefix = torch.zeros((1, *shape[:1], 0, *shape[2:]), device=self.device)
        if given_kind:
            if self.autoencoder is None:
                raise ValueError(f"{given_kind}: needs the model's autoencoder to encode the given frames")
            pixels = pixels_to_model_space(given_pixels, settings["height"], settings["width"], given_kind)
            with torch.no_grad():  # a fixed generator: the given latents do not depend on the video's seed
                prefix = self.autoencoder.encode(pixels.to(self.device),
                                                 generator=torch.Generator(self.device.type).manual_seed(0)).float()
        windows = None if use_clips else resolve_windows(settings["frames"], cfg.num_frames, window, window_stride,
                                                         tubelet)
        if use_clips and (tubelet > 1 and (cfg.num_frames % tubelet or context % tubelet)):
            raise ValueError(f"context_frames ({context}) must be a multiple of the tubelet size {tubelet}")
        num_windows = len(window_starts(shape[1], windows.size, windows.stride)) if windows else 1
        if use_clips:
            num_windows = count_clips(prefix.shape[2], shape[1], cfg.num_frames, context)
        shared = self.describe()
        batch_size = max(1, int(batch_size))
        for start in range(0, len(plan), batch_size):
            batch = plan[start:start + batch_size]
            generators = [torch.Generator(self.device.type).manual_seed(r["seed"]) for r in batch]
            if use_clips:
                noise = None  # drawn clip by clip (_clip_sampler)
            elif windows is None:
                noise = draw_noise((len(batch), *shape), generators, self.device)
            else:  # longer than the trained clip: sliding windows over time (latte.sampling.long_video)
                first = draw_noise((len(batch), shape[0], windows.size, *shape[2:]), generators, self.device)
                noise = reschedule_noise(first, windows, generators, shape[1])
            cond, uncond = {}, {}
            if self.conditioning == "class":
                cond["y"] = torch.tensor([r["class_id"] for r in batch], device=self.device)
                uncond["y"] = torch.full_like(cond["y"], cfg.num_classes)
            elif self.conditioning == "text":
                cond, uncond = self._text_conditions([r["prompt"] for r in batch], negative_prompt)
            # a fresh cache session per batch, and per temporal window (each window is its own input sequence)
            sessions = [cache.session(self.model, len(batch), num_calls) if cache else None
                        for _ in range(num_windows)]
            if use_clips:  # frame conditioning: clip after clip, each given the previous clip's last frames
                latents = extend_clips(self._clip_sampler(cond, uncond, settings, sessions, generators, progress,
                                                          callback),
                                       prefix.expand(len(batch), -1, -1, -1, -1), shape[1], cfg.num_frames, context)
            else:
                model_fns = [self._model_fn(cond, uncond, settings["cfg_scale"], s) for s in sessions]
                model_fn = windowed(model_fns, windows) if windows is not None else model_fns[0]
                latents = sample_loop(model_fn, noise, settings["sampler"], settings["steps"], self.betas,
                                      cfg.learn_sigma, generators, progress=progress,
                                      prediction_type=self.prediction_type, callback=callback)
            records = [{**r, **settings, **shared, **_cache_record(sessions, k)} for k, r in enumerate(batch)]
            for r in records:
                if negative_prompt:
                    r["negative_prompt"] = negative_prompt
                if windows is not None:
                    r["temporal_window"] = windows.record()
                if use_clips and (given_kind or num_windows > 1):
                    r["given_frames"] = given_record(given_kind or "autoregressive", given_source, prefix.shape[2],
                                                     context, cfg.num_frames, num_windows)
            yield SampleOutput(self._finish(latents, output_type), records)

    def _clip_sampler(self, cond: dict, uncond: dict, settings: dict, sessions: list, generators, progress,
                      callback):
        """``(given (B, C, L, h, w), mask (B, L), clip index) -> clip``: one clip with its given frames held and
        marked for the model (``frame_mask``); the noise comes from each video's generator, clip after clip."""
        cfg = self.model.config

        def sample_clip(given: torch.Tensor, mask: torch.Tensor, index: int) -> torch.Tensor:
            noise = draw_noise(given.shape, generators, self.device)
            fn = self._model_fn({**cond, "frame_mask": mask}, {**uncond, "frame_mask": mask}, settings["cfg_scale"],
                                sessions[index])
            return sample_loop(fn, noise, settings["sampler"], settings["steps"], self.betas, cfg.learn_sigma,
                               generators, progress=progress, prediction_type=self.prediction_type,
                               callback=callback, given=(given, mask) if bool(mask.any()) else None)

        return sample_clip

    @torch.no_grad()
    def _finish(self, latents: torch.Tensor, output_type: OutputType):
        if output_type == "latent":
            return latents
        video = self.autoencoder.decode(latents).float()  # (B, 3, F, H, W), chunked inside the autoencoder
        if output_type == "tensor":
            return video
        from latte.data import to_uint8

        return np.stack([to_uint8(v) for v in video])

    def __call__(self, prompts: Optional[Sequence[str]] = None, classes: Optional[Sequence[Union[int, str]]] = None,
                 num_videos: Optional[int] = None, seed: int = 0, seeds: Optional[Sequence[int]] = None,
                 sampler: Optional[str] = None, steps: Optional[int] = None, cfg_scale: Optional[float] = None,
                 frames: Optional[int] = None, height: Optional[int] = None, width: Optional[int] = None,
                 batch_size: int = 1, output_type: OutputType = "uint8", progress: bool = True,
                 indices: Optional[Sequence[int]] = None, negative_prompt: str = "",
                 callback: Optional[StepCallback] = None, cache: CacheLike = None, window: Optional[int] = None,
                 window_stride: Optional[int] = None, image: Optional[Given] = None, extend: Optional[Given] = None,
                 context_frames: Optional[int] = None) -> SampleOutput:
        """Sample ``num_videos`` videos (default: one per prompt/class, prompts and classes are cycled).

        Args:
            prompts / classes: text prompts (text models) or class ids/names (class models).
            seed: video ``i`` uses seed ``seed + i``; ``seeds`` gives every video's seed explicitly.
            sampler, steps, cfg_scale: default to the model's official settings (``self.defaults``).
            frames, height, width: output size in frames and pixels (default: the model's training size).
            batch_size: videos denoised together (does not change the result).
            output_type: ``'uint8'`` (numpy ``(N, F, H, W, 3)``), ``'tensor'`` (``(N, 3, F, H, W)`` in [-1, 1])
                or ``'latent'`` (``(N, C, F, h, w)``).
            indices: the global indices of the videos to make (multi-process / resume); overrides num_videos.
            negative_prompt: text models: the guidance's unconditional branch encodes this prompt instead of
                the empty one (recorded in the sidecar).
            callback: ``callback(step, total)`` after every sampler step of each batch (may raise to stop).
            cache: step cache (:mod:`latte.sampling.cache`): None / ``'none'``, a spec such as
                ``'teacache:0.1'``, or a :class:`~latte.sampling.cache.TeaCache`. Recorded in every record
                (``cache``, ``cache_computed_calls``, ``cache_model_calls``; summed over temporal windows).
            window, window_stride: temporal windows (frames) for videos longer than the model's trained length
                (:mod:`latte.sampling.long_video`). Default: when ``frames`` exceeds the trained length, windows
                of the trained length every half window; ``window=0`` turns them off (full attention over all
                frames). Recorded in the sidecar as ``temporal_window``. A frame-conditioned model
                (``model.frame_conditioning``) instead continues clip by clip (see ``context_frames``) unless a
                window is given.
            image: image-to-video (frame-conditioned models): the first frame, a path or uint8 ``(H, W, 3)``; it
                is encoded and held as latent frame 0 (same image for every video).
            extend: continue a video (path or uint8 ``(F, H, W, 3)``): the output starts with its frames and has
                ``frames`` frames in all (default: one more clip).
            context_frames: frames of the previous clip given to the next one (default half the trained clip);
                also for ``frames`` beyond the trained length on a frame-conditioned model. Recorded in the
                sidecar as ``given_frames`` (mode, source, counts).
        """
        outs = list(self.iter_batches(prompts, classes, num_videos, seed, seeds, indices, sampler, steps, cfg_scale,
                                      frames, height, width, batch_size, output_type, progress, negative_prompt,
                                      callback, cache, window, window_stride, image, extend, context_frames))
        if not outs:
            return SampleOutput(np.zeros((0,), np.uint8), [])
        records = [r for o in outs for r in o.records]
        if isinstance(outs[0].videos, np.ndarray):
            return SampleOutput(np.concatenate([o.videos for o in outs]), records)
        return SampleOutput(torch.cat([o.videos for o in outs]), records)
