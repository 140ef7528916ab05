"""The LaVie cascade: base text-to-video → temporal interpolation (16 → 61 frames) → ×4 video super-resolution.

>>> pipe = CascadePipeline.from_lavie_dir("pretrained_models", stages=("base", "interp", "vsr"), device="cuda",
...                                       dtype="float16", offload=True)
>>> out = pipe.run("a panda playing guitar", seed=400)
>>> out.video.shape                      # (61, 1280, 2048, 3) uint8, at out.fps = 24
>>> batch = pipe(["a cat", "a dog"], seed=0)   # LattePipeline-style batch: SampleOutput (uint8 videos, records)

Stages run in the order base, interp, vsr; any subset in that order works (the four official options are base;
base+interp; base+vsr; base+interp+vsr), and a cascade without base starts from a given video (``input=``).
The base stage is a LaVie base U-Net (:class:`LavieStage`) or any text-to-video Latte model
(:class:`LatteBaseStage`); a Latte model trained with frame conditioning also makes image-to-video and extensions
of a video (``run(..., image=, extend=)``), which the later stages interpolate and upscale. Each stage has its
own prompt, negative prompt, guidance, steps and sampler (:class:`StageSettings`; unset fields take the official
per-stage defaults, :data:`STAGE_DEFAULTS`).

Behaviour (``spec_lavie.md`` §7–8):

* base: ε-prediction, DDPM 50 steps (timesteps 980…0), guidance 7.5, rows ``[negative, prompt]``;
* interp: conditioning latents of the input frames (VAE posterior samples), output frame ``j`` conditioned on
  the nearest input frame (official ``⌊(j+1)/4⌋`` for k = 4) (``n → k(n−1)+1`` frames, k = 4: 16 → 61), the
  official respaced DDIM-50 (eta 0), guidance 4, rows ``[prompt, "None"]``;
* vsr: v-prediction DDIM 50 (981…1, last step to ᾱ₀), guidance 5, negative ``"blur, worst quality"``, the
  low-res frames noised once per chunk at noise level 50 with the scaled-linear schedule, chunks of 8 frames
  (each an independent pipeline call; one generator runs through all), optionally overlapping and blended.

Samplers are :func:`latte.sampling.samplers.sample_loop` (official respaced loops and diffusers schedulers).
``official=True`` reproduces the official script route: each stage re-reads an mp4 written by the previous one,
stages 2–3 take the file name (prompt with spaces → underscores) as their prompt and interpolation appends
", 4k."; by default decoded frames pass between stages in memory and every stage gets the user prompt.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from latte.config import ConfigError
from latte.data import to_uint8
from latte.data.transforms import bicubic_upsample, frame_size, interpolation_source_frames, linear_blend
from latte.data.video_io import probe_video, read_all_frames, write_mp4
from latte.diffusion.gaussian import beta_schedule
from latte.encoders import build_autoencoder, build_text_encoder
from latte.encoders.text import ZeroTextEncoder
from latte.encoders.loading import MissingWeightsError, read_json, resolve_device, resolve_dtype
from latte.interop.lavie import OfficialLaVie, load_lavie
from latte.models.unet3d import UNet3D
from latte.sampling.given_frames import Given
from latte.sampling.long_video import TemporalWindows, reschedule_noise, resolve_windows, windowed
from latte.sampling.pipeline import SampleOutput
from latte.sampling.samplers import OFFICIAL_SAMPLERS, StepCallback, check_sampler, draw_noise, sample_loop

PathLike = Union[str, Path]

__all__ = ["STAGES", "OFFICIAL_STAGE_SETS", "STAGE_DEFAULTS", "StageSettings", "LavieStage", "LatteBaseStage",
           "CascadePipeline", "CascadeOutput", "resolve_stages", "load_lavie_stage", "scheduler_options_for",
           "interp_condition_indices", "interp_num_frames", "noise_augment", "augmentation_alphas_cumprod",
           "frame_chunks", "blend_chunks",
           "frame_change_at_borders", "official_uint8", "LAVIE_FILES", "ENCODER_DIRS", "check_lavie_dir",
           "trained_stage", "load_trained_stage"]

STAGES = ("base", "interp", "vsr")
OFFICIAL_STAGE_SETS = (("base",), ("base", "interp"), ("base", "vsr"), ("base", "interp", "vsr"))

# official frame rates of each stage's output (the base script writes 8 fps, interpolation 24 fps)
STAGE_FPS = {"base": 8.0, "interp": 24.0}
INTERP_PROMPT_SUFFIX = ", 4k."  # appended by the official interpolation script
VAE_SCALING = {"base": 0.18215, "interp": 0.18215, "vsr": 0.08333}  # SD 1.4 VAE / x4-upscaler VAE


@dataclass
class StageSettings:
    """What one stage runs with; ``None`` = the official default of that stage (:data:`STAGE_DEFAULTS`).

    ``timestep_offset``: diffusers samplers only, the 'leading' spacing offset (0: 980…0, 1: 981…1 for 50
    steps); ``None`` = the official list (DDPM 980…0, DDIM 981…1).
    """

    prompt: Optional[str] = None
    negative_prompt: Optional[str] = None
    cfg_scale: Optional[float] = None
    steps: Optional[int] = None
    sampler: Optional[str] = None
    timestep_offset: Optional[int] = None
    seed: Optional[int] = None


STAGE_DEFAULTS = {
    "base": StageSettings(negative_prompt="", cfg_scale=7.5, steps=50, sampler="ddpm-diffusers"),
    "interp": StageSettings(negative_prompt="None", cfg_scale=4.0, steps=50, sampler="ddim"),
    "vsr": StageSettings(negative_prompt="blur, worst quality", cfg_scale=5.0, steps=50, sampler="ddim-diffusers"),
}


def scheduler_options_for(sampler: str, timestep_offset: Optional[int] = None) -> Optional[dict]:
    """diffusers scheduler settings giving LaVie's step lists: ``ddpm-diffusers`` 980…0 (diffusers 0.16, LaVie's
    pin; offset 1 gives newer diffusers' 981…1); ``ddim-diffusers`` 981…1 with the last step going to ᾱ₀
    (``set_alpha_to_one`` False). Official respaced loops take no options."""
    if sampler in OFFICIAL_SAMPLERS:
        if timestep_offset is not None:
            raise ValueError(f"timestep_offset applies to diffusers samplers, not the official loop '{sampler}'")
        return None
    if sampler == "ddpm-diffusers":
        return {"steps_offset": 0 if timestep_offset is None else int(timestep_offset)}
    if sampler == "ddim-diffusers":
        return {"steps_offset": 1 if timestep_offset is None else int(timestep_offset), "set_alpha_to_one": False}
    return None if timestep_offset is None else {"steps_offset": int(timestep_offset)}


# ------------------------------------------------------------------------------------------- small functions

def interp_num_frames(num_frames: int, factor: int = 4) -> int:
    """Frames after interpolation: ``n → k(n−1)+1`` (16 → 61 for k = 4)."""
    return factor * (num_frames - 1) + 1


def interp_condition_indices(num_frames: int, factor: int = 4) -> list[int]:
    """Input frame conditioning each output frame, the rule the interpolation stage is trained with
    (:func:`latte.data.transforms.interpolation_source_frames`: the nearest input frame, ties to the earlier;
    official ``⌊(j+1)/4⌋`` for k = 4: frame 0 three times, 1…14 four times, 15 twice); output frame ``k·m`` is
    input frame ``m``."""
    if factor < 2:
        raise ValueError(f"interpolation factor must be >= 2, got {factor}")
    return interpolation_source_frames(num_frames, factor).tolist()


def augmentation_alphas_cumprod(num_steps: int = 1000) -> torch.Tensor:
    """ᾱ of the VSR low-res augmentation schedule: scaled-linear ``β = linspace(√1e-4, √0.02, T)²`` (float32, as
    the diffusers ``DDPMScheduler`` computes it)."""
    betas = torch.linspace(1e-4 ** 0.5, 0.02 ** 0.5, num_steps, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def noise_augment(low_res: torch.Tensor, noise: torch.Tensor, noise_level: int) -> torch.Tensor:
    """``√ᾱˢ_n · lr + √(1−ᾱˢ_n) · ε`` (low-res video in [−1, 1], any shape; in ``low_res.dtype``)."""
    acp = augmentation_alphas_cumprod()[int(noise_level)].to(device=low_res.device, dtype=low_res.dtype)
    return acp.sqrt() * low_res + (1 - acp).sqrt() * noise.to(low_res)


def frame_chunks(num_frames: int, chunk: int = 8, overlap: int = 0) -> list[tuple[int, int]]:
    """``[start, end)`` frame ranges: consecutive chunks of ``chunk`` frames (the last one shorter), as official
    (16 → 8+8, 61 → 7×8+5); with ``overlap`` > 0 consecutive chunks share ``overlap`` frames."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 frame, got {chunk}")
    if not 0 <= overlap <= chunk // 2:
        raise ValueError(f"overlap must be in [0, chunk // 2] = [0, {chunk // 2}], got {overlap}")
    stride = chunk - overlap
    chunks, start = [], 0
    while True:
        end = min(start + chunk, num_frames)
        chunks.append((start, end))
        if end >= num_frames:
            return chunks
        start += stride


def _blend_weights(start: int, end: int, total: int, overlap: int) -> torch.Tensor:
    """Weights (end − start,): linear ramps over the frames shared with the previous / next chunk."""
    w = torch.ones(end - start)
    if overlap:
        ramp = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
        n = min(overlap, end - start)
        if start > 0:
            w[:n] = torch.minimum(w[:n], ramp[:n])
        if end < total:
            w[-n:] = torch.minimum(w[-n:], ramp.flip(0)[-n:])
    return w


def blend_chunks(pieces: Sequence[torch.Tensor], chunks: Sequence[tuple[int, int]], overlap: int) -> torch.Tensor:
    """Join per-chunk videos ``(B, C, f, H, W)`` into one ``(B, C, F, H, W)``; frames covered by two chunks are
    their linearly cross-faded average (weights sum to 1)."""
    total = chunks[-1][1]
    b, c, _, h, w = pieces[0].shape
    acc = torch.zeros(b, c, total, h, w, dtype=torch.float32, device=pieces[0].device)
    weight = torch.zeros(total, dtype=torch.float32, device=pieces[0].device)
    for piece, (s, e) in zip(pieces, chunks):
        wts = _blend_weights(s, e, total, overlap).to(acc.device)
        acc[:, :, s:e] += piece.float() * wts.view(1, 1, -1, 1, 1)
        weight[s:e] += wts
    return acc / weight.view(1, 1, -1, 1, 1)


def frame_change_at_borders(video: torch.Tensor, chunks: Sequence[tuple[int, int]]) -> dict:
    """The seam measure: mean absolute frame-to-frame change ``|x_{f+1} − x_f|`` (in the video's units) for the
    frame pairs where the set of chunks covering the frame changes (chunk borders) vs all other pairs (inside
    chunks). ``video``: ``(C, F, H, W)`` or ``(B, C, F, H, W)``."""
    v = video.float() if video.ndim == 5 else video.float()[None]
    change = (v[:, :, 1:] - v[:, :, :-1]).abs().mean(dim=(0, 1, 3, 4))  # (F-1,)
    covering = [frozenset(i for i, (s, e) in enumerate(chunks) if s <= f < e) for f in range(v.shape[2])]
    border = [f for f in range(v.shape[2] - 1) if covering[f] != covering[f + 1]]
    inside = [f for f in range(v.shape[2] - 1) if covering[f] == covering[f + 1]]
    b = float(change[border].mean()) if border else float("nan")
    i = float(change[inside].mean()) if inside else float("nan")
    return {"border": b, "inside": i, "ratio": b / i if inside and i > 0 else float("nan"),
            "border_pairs": border}


def official_uint8(video: torch.Tensor, rounding: str = "round") -> np.ndarray:
    """``(3, F, H, W)`` in [−1, 1] → uint8 ``(F, H, W, 3)`` as the official scripts convert: ``round`` (base,
    interp: ``(x/2+0.5)·255 + 0.5``, clamped, truncated) or ``floor`` (VSR: ``clamp(x/2+0.5, 0, 1)·255``
    truncated)."""
    x = video.detach().float().cpu()
    if rounding == "round":
        x = ((x / 2 + 0.5) * 255 + 0.5).clamp(0, 255)
    elif rounding == "floor":
        x = (x / 2 + 0.5).clamp(0, 1) * 255
    else:
        raise ValueError(f"rounding must be 'round' or 'floor', got {rounding!r}")
    return x.to(torch.uint8).permute(1, 2, 3, 0).numpy()


def _to_model_space(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(F, H, W, 3)`` → ``(1, 3, F, H, W)`` in [−1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float() / 127.5 - 1
    return x.permute(3, 0, 1, 2)[None]


# ------------------------------------------------------------------------------------------------- stages

def _text_features(text_encoder, prompts: list[str], device) -> torch.Tensor:
    """``(B, L, D)`` features of ``prompts``. CLIP encoders are run as Stable Diffusion runs them (padded to
    ``max_length``, ``last_hidden_state`` of every position, no attention mask); other encoders through their
    ``encode``."""
    model, tokenizer = getattr(text_encoder, "model", None), getattr(text_encoder, "tokenizer", None)
    if model is not None and tokenizer is not None and type(model).__name__ == "CLIPTextModel":
        ids = tokenizer(prompts, padding="max_length", max_length=text_encoder.max_length, truncation=True,
                        return_tensors="pt")["input_ids"]
        with torch.no_grad():
            hidden = model(input_ids=ids.to(next(model.parameters()).device)).last_hidden_state
    else:
        hidden = text_encoder.encode(prompts)[0]
    return hidden.float().to(device)


def _move_encoder(encoder, device, dtype: Optional[torch.dtype] = None) -> None:
    """Move an autoencoder (its ``vae``) or a text encoder (its ``model``) to ``device`` / ``dtype``."""
    if encoder is None:
        return
    net = getattr(encoder, "vae", None)
    net = net if isinstance(net, torch.nn.Module) else getattr(encoder, "model", None)
    if isinstance(net, torch.nn.Module):
        net.to(device=device, dtype=dtype) if dtype is not None else net.to(device)
    elif hasattr(encoder, "patch_factor"):  # the identity autoencoder only records its device
        encoder.device = torch.device(device)


class LavieStage:
    """One LaVie U-Net (``kind`` base | interp | vsr) with its VAE and text encoder.

    ``unet`` follows the LaVie forward signatures: base/interp ``unet(sample (B, C, F, h, w), t (B,),
    encoder_hidden_states (B, L, D))``, vsr ``unet(sample, t, low_res (B, 3, F, h, w), encoder_hidden_states,
    class_labels (B,))``; the output (or its ``.sample``) is ε (base, interp) or v (vsr) with 4 channels.
    ``autoencoder``: a :class:`latte.encoders.Autoencoder` (SD 1.4 VAE ×0.18215, or the ×4-upscaler VAE
    ×0.08333 for vsr); ``text_encoder``: a :class:`latte.encoders.TextEncoder` (CLIP for the released stages).
    ``source``: provenance recorded in sidecars. ``prediction_type``: what the U-Net predicts (default LaVie's:
    ε for base and interp, v for vsr). ``residual`` (interp / vsr, ours: ``lavie.residual``): the U-Net makes
    the latents minus a baseline — the linear blend of the input frames' latents (interp), the encoded bicubic
    upsampling of the clean low-resolution chunk (vsr) — which is added back. Stages trained with
    ``latte train``: :func:`load_trained_stage`.
    """

    def __init__(self, kind: str, unet: torch.nn.Module, autoencoder, text_encoder, *,
                 betas: Optional[np.ndarray] = None, source: Optional[dict] = None, noise_level: int = 50,
                 max_noise_level: int = 350, prediction_type: Optional[str] = None, residual: bool = False):
        if kind not in STAGES:
            raise ValueError(f"stage kind must be one of {STAGES}, got {kind!r}")
        if residual and kind == "base":
            raise ValueError("residual: only the interp and vsr stages have a baseline (their input video)")
        self.residual = bool(residual)
        self.kind = kind
        self.unet = unet.eval().requires_grad_(False)
        self.autoencoder = autoencoder
        self.text_encoder = text_encoder
        self.betas = np.asarray(betas if betas is not None else beta_schedule("linear", 1000), dtype=np.float64)
        # LaVie's released stages: ε (base, interp), v (vsr); stages trained here record their own
        self.prediction_type = prediction_type or ("v_prediction" if kind == "vsr" else "epsilon")
        self.source = dict(source or {})
        self.noise_level = int(noise_level)
        self.max_noise_level = int(max_noise_level)
        self.dtype = torch.float32
        self.default_size = (16, 320, 512)  # base: frames, height, width of the official base videos
        self.trained_frames = 16  # base: longer videos sample with temporal windows of this length

    # ----------------------------------------------------------------------------------------- placement
    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def to(self, device, dtype: Optional[torch.dtype] = None) -> "LavieStage":
        """Move U-Net, VAE and text encoder; ``dtype`` applies to the U-Net and VAE (half only on CUDA)."""
        device = torch.device(device)
        if dtype is not None:
            self.dtype = dtype if device.type == "cuda" else torch.float32
        self.unet.to(device=device, dtype=self.dtype)
        _move_encoder(self.autoencoder, device, self.dtype)
        _move_encoder(self.text_encoder, device)
        return self

    def describe(self) -> dict:
        info = {"model": "lavie-" + self.kind, **self.source, "prediction_type": self.prediction_type,
                "dtype": str(self.dtype).removeprefix("torch.")}
        if self.residual:
            info["residual"] = True
        if self.autoencoder is not None and hasattr(self.autoencoder, "identity"):
            info["autoencoder"] = self.autoencoder.identity()
        if hasattr(self.text_encoder, "identity"):
            info["text_encoder"] = self.text_encoder.identity()
        return info

    # ------------------------------------------------------------------------------------------ pieces
    def _unet(self, *args, **kwargs) -> torch.Tensor:
        args = [a.to(self.dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
        kwargs = {k: v.to(self.dtype) if torch.is_tensor(v) and v.is_floating_point() else v
                  for k, v in kwargs.items()}
        out = self.unet(*args, **kwargs)
        return getattr(out, "sample", out).float()

    def guided_model_fn(self, text_cond: torch.Tensor, text_uncond: torch.Tensor, cfg_scale: float,
                        cond: Optional[torch.Tensor] = None, low_res: Optional[torch.Tensor] = None,
                        noise_level: Optional[int] = None):
        """``fn(x (B, 4, F, h, w), t (B,))`` → guided ε or v. Rows as official: base and vsr run
        ``[uncond, cond]``, interp ``[cond, uncond]``; interp concatenates ``cond`` latents on channels, vsr
        passes ``low_res`` and the noise level as class label. ``cfg_scale`` ≤ 1 runs the conditional row only."""
        cond_first = self.kind == "interp"
        guided = cfg_scale > 1.0
        if guided:
            rows = (text_cond, text_uncond) if cond_first else (text_uncond, text_cond)
            text = torch.cat(rows)
        else:
            text = text_cond

        def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            n = 2 if guided else 1
            xs = torch.cat([x] * n)
            ts = torch.cat([t] * n)
            if self.kind == "interp":
                out = self._unet(torch.cat([xs, torch.cat([cond] * n)], dim=1), ts, text)
            elif self.kind == "vsr":
                labels = torch.full((xs.shape[0],), int(noise_level), dtype=torch.long, device=x.device)
                out = self._unet(xs, ts, torch.cat([low_res] * n), text, labels)
            else:
                out = self._unet(xs, ts, text)
            if not guided:
                return out
            first, second = out.chunk(2)
            c, u = (first, second) if cond_first else (second, first)
            return u + cfg_scale * (c - u)

        return fn

    def denoise(self, noise: torch.Tensor, settings: StageSettings, text_cond: torch.Tensor,
                text_uncond: torch.Tensor, generator: Optional[torch.Generator] = None,
                cond: Optional[torch.Tensor] = None, low_res: Optional[torch.Tensor] = None,
                noise_level: Optional[int] = None, progress: bool = False,
                callback: Optional[StepCallback] = None,
                windows: Optional[TemporalWindows] = None) -> torch.Tensor:
        """The sampling loop of one stage: ``noise (1, 4, F, h, w)`` → latents, with ``settings``' sampler,
        steps and guidance (all set), text features ``(1, L, D)``, and the stage's extra inputs (interp:
        ``cond`` latents; vsr: augmented ``low_res`` and its ``noise_level``). ``windows``: the U-Net sees
        only these temporal windows, fused (long videos, :mod:`latte.sampling.long_video`)."""
        fn = self.guided_model_fn(text_cond, text_uncond, settings.cfg_scale, cond=cond, low_res=low_res,
                                  noise_level=noise_level)
        if windows is not None:
            fn = windowed(fn, windows)
        opts = scheduler_options_for(settings.sampler, settings.timestep_offset)
        generators = [generator] if generator is not None else None
        return sample_loop(fn, noise.to(self.device), settings.sampler, settings.steps, self.betas,
                           learn_sigma=False, generators=generators, progress=progress,
                           prediction_type=self.prediction_type, callback=callback, scheduler_options=opts)

    def _texts(self, settings: StageSettings) -> tuple[torch.Tensor, torch.Tensor]:
        feats = _text_features(self.text_encoder, [settings.prompt, settings.negative_prompt], self.device)
        return feats[:1], feats[1:]

    # ------------------------------------------------------------------------------------------- stages
    @torch.no_grad()
    def generate(self, settings: StageSettings, generator: torch.Generator, frames: int = 16,
                 height: int = 320, width: int = 512, progress: bool = False,
                 callback: Optional[StepCallback] = None, window: Optional[int] = None,
                 window_stride: Optional[int] = None) -> tuple[torch.Tensor, dict]:
        """Base stage: text → video ``(1, 3, F, H, W)`` in ~[−1, 1] (not clamped) and what the stage's record
        adds (``temporal_window`` for long videos). More frames than the trained 16: sliding temporal windows
        (``window``/``window_stride``, as :class:`LattePipeline`)."""
        d = self.autoencoder.downsample_factor
        if height % d or width % d:
            raise ValueError(f"height/width ({height}x{width}) must be multiples of the VAE factor {d}")
        text_cond, text_uncond = self._texts(settings)
        windows = resolve_windows(frames, self.trained_frames, window, window_stride)
        first = frames if windows is None else windows.size
        noise = draw_noise((1, self.autoencoder.latent_channels, first, height // d, width // d), [generator],
                           self.device)
        if windows is not None:
            noise = reschedule_noise(noise, windows, [generator], frames)
        latents = self.denoise(noise, settings, text_cond, text_uncond, generator, progress=progress,
                               callback=callback, windows=windows)
        return self.autoencoder.decode(latents).float(), ({"temporal_window": windows.record()} if windows else {})

    @torch.no_grad()
    def interpolate(self, video: torch.Tensor, settings: StageSettings, generator: torch.Generator,
                    factor: int = 4, progress: bool = False, callback: Optional[StepCallback] = None) -> torch.Tensor:
        """Interp stage: video ``(1, 3, n, H, W)`` in [−1, 1] → ``(1, 3, k(n−1)+1, H, W)``. The input frames are
        VAE-encoded (posterior samples, drawn first from ``generator``), output frame ``j`` is conditioned on
        the nearest input frame (:func:`interp_condition_indices`), all output latents start from noise; input
        frames are not pasted back. A ``residual`` stage adds the linear blend of the input latents."""
        latents = self.autoencoder.encode(video.to(self.device), generator=generator)
        cond = latents[:, :, interp_condition_indices(video.shape[2], factor)]
        noise = draw_noise((1, latents.shape[1], *cond.shape[2:]), [generator], self.device)
        text_cond, text_uncond = self._texts(settings)
        made = self.denoise(noise, settings, text_cond, text_uncond, generator, cond=cond, progress=progress,
                            callback=callback)
        if self.residual:
            made = made + linear_blend(latents, factor)
        return self.autoencoder.decode(made).float()

    @torch.no_grad()
    def upscale_chunk(self, low_res: torch.Tensor, settings: StageSettings, generator: torch.Generator,
                      noise_level: Optional[int] = None, progress: bool = False,
                      callback: Optional[StepCallback] = None) -> torch.Tensor:
        """VSR on one chunk: ``(1, 3, f, h, w)`` in [−1, 1] → ``(1, 3, f, h·4, w·4)`` clamped to [−1, 1]. The
        generator draws the augmentation noise first, then the initial latents (official order); a ``residual``
        stage then encodes the bicubic upsampling of the clean chunk (posterior samples from the generator) and
        adds it to the U-Net's latents."""
        level = self.noise_level if noise_level is None else int(noise_level)
        if not 0 <= level <= self.max_noise_level:
            raise ValueError(f"noise_level must be in [0, {self.max_noise_level}], got {level}")
        low_res = low_res.to(self.device).float()
        aug = draw_noise(low_res.shape, [generator], self.device)
        noisy = noise_augment(low_res.to(self.dtype), aug.to(self.dtype), level).float()
        noise = draw_noise((1, self.autoencoder.latent_channels, *low_res.shape[2:]), [generator], self.device)
        text_cond, text_uncond = self._texts(settings)
        latents = self.denoise(noise, settings, text_cond, text_uncond, generator, low_res=noisy, noise_level=level,
                               progress=progress, callback=callback)
        if self.residual:
            up = bicubic_upsample(low_res, self.autoencoder.downsample_factor)
            latents = latents + self.autoencoder.encode(up, generator=generator).float()
        return self.autoencoder.decode(latents).float().clamp(-1, 1)

    @torch.no_grad()
    def upscale(self, video: torch.Tensor, settings: StageSettings, generator: torch.Generator, chunk: int = 8,
                overlap: int = 0, noise_level: Optional[int] = None, progress: bool = False,
                callback: Optional[StepCallback] = None) -> torch.Tensor:
        """VSR stage: ``(1, 3, F, h, w)`` → ``(1, 3, F, 4h, 4w)`` in chunks (official: 8 frames, no overlap);
        overlapping chunks are cross-faded over their shared frames."""
        chunks = frame_chunks(video.shape[2], chunk, overlap)
        pieces = []
        for k, (s, e) in enumerate(chunks):  # steps are reported over all chunks
            step = (lambda done, total, k=k: callback(k * total + done, total * len(chunks))) if callback else None
            pieces.append(self.upscale_chunk(video[:, :, s:e], settings, generator, noise_level, progress,
                                             step).cpu())
        return blend_chunks(pieces, chunks, overlap)


class LatteBaseStage:
    """A text-to-video :class:`latte.sampling.LattePipeline` as the cascade's base stage (ours alone: a Latte
    base followed by LaVie-style stages). The pipeline's own defaults apply to unset settings; the negative
    prompt must be empty (Latte guides with the empty prompt). A model trained with frame conditioning
    (``model.frame_conditioning``) also makes image-to-video and extensions of a video (``image`` / ``extend``
    of :meth:`generate`), which the later stages then interpolate and upscale."""

    kind = "base"

    def __init__(self, pipe):
        if pipe.conditioning != "text":
            raise ValueError(f"the cascade base must be a text-to-video model; this Latte model is "
                             f"'{pipe.conditioning}'-conditional")
        self.pipe = pipe
        self.dtype = pipe.dtype
        self.default_size = (None, None, None)  # the Latte model's own frames / size
        self.trained_frames = pipe.model.config.num_frames

    @property
    def device(self) -> torch.device:
        return self.pipe.device

    @property
    def frame_conditioning(self) -> bool:
        """Whether the model takes given frames (image-to-video, extension)."""
        return bool(self.pipe.model.config.frame_conditioning)

    def to(self, device, dtype: Optional[torch.dtype] = None) -> "LatteBaseStage":
        """Move the Latte model, its autoencoder and text encoder; ``dtype`` (half only on CUDA) applies to the
        model and autoencoder."""
        device = torch.device(device)
        if dtype is not None:
            self.dtype = dtype if device.type == "cuda" else torch.float32
        self.pipe.model.to(device=device, dtype=self.dtype)
        _move_encoder(self.pipe.autoencoder, device, self.dtype)
        _move_encoder(self.pipe.text_encoder, device)
        self.pipe.device, self.pipe.dtype = device, self.dtype
        return self

    def describe(self) -> dict:
        return {"model": "latte", **self.pipe.describe()}

    def defaults(self) -> StageSettings:
        d = self.pipe.defaults
        return StageSettings(negative_prompt="", cfg_scale=d.cfg_scale, steps=d.steps, sampler=d.sampler)

    @torch.no_grad()
    def generate(self, settings: StageSettings, generator: torch.Generator, frames: Optional[int] = None,
                 height: Optional[int] = None, width: Optional[int] = None, progress: bool = False,
                 callback: Optional[StepCallback] = None, window: Optional[int] = None,
                 window_stride: Optional[int] = None, image: Optional[Given] = None, extend: Optional[Given] = None,
                 context_frames: Optional[int] = None) -> tuple[torch.Tensor, dict]:
        """The base video ``(1, 3, F, H, W)`` in [−1, 1] and what the stage's record adds (``temporal_window``,
        ``given_frames``). ``image`` / ``extend`` / ``context_frames``: image-to-video and extension, as
        :class:`LattePipeline` takes them (its errors: e.g. a model without frame conditioning)."""
        if settings.negative_prompt:
            raise ValueError("a Latte base stage guides with the empty prompt; a negative prompt is not supported")
        out = self.pipe(prompts=[settings.prompt], seeds=[settings.seed], sampler=settings.sampler,
                        steps=settings.steps, cfg_scale=settings.cfg_scale, frames=frames, height=height, width=width,
                        output_type="tensor", progress=progress, callback=callback, window=window,
                        window_stride=window_stride, image=image, extend=extend, context_frames=context_frames)
        record = out.records[0]
        return out.videos.float(), {k: record[k] for k in ("temporal_window", "given_frames") if k in record}


# ---------------------------------------------------------------------------------------------- the cascade

@dataclass
class CascadeOutput:
    """``video``: uint8 ``(F, H, W, 3)`` of the last stage at ``fps``; ``stages``: one dict per stage run
    (``stage``, ``video`` uint8, ``fps``, ``settings``, ``seed``, ``model``, ``seconds``)."""

    video: np.ndarray
    fps: float
    stages: list[dict] = field(default_factory=list)
    record: dict = field(default_factory=dict)


def resolve_stages(stages: Sequence[str], has_input: bool) -> tuple[str, ...]:
    stages = tuple(s.strip() for s in stages if s.strip())
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise ValueError(f"unknown stage(s) {bad or list(stages)}: choose from {', '.join(STAGES)}")
    if list(stages) != sorted(set(stages), key=STAGES.index):
        raise ValueError(f"stages {','.join(stages)}: each at most once, in the order base, interp, vsr")
    if has_input and "base" in stages:
        raise ValueError("an input video replaces the base stage: use stages interp and/or vsr with input")
    if not has_input and "base" not in stages:
        raise ValueError(f"stages {','.join(stages)} start from a video: pass input= (--input video.mp4)")
    return stages


def check_given_frames(names: Sequence[str], stages: Sequence[str], latte_base: bool,
                       base_what: str = "a LaVie U-Net", remedy: str = "LatteBaseStage, --base-latte") -> None:
    """Given frames (``names``: image / extend / context_frames) condition the base stage, which must run and be a
    Latte model (``latte_base``; a LaVie base U-Net, ``base_what``, has no frame conditioning; a Latte model
    without it is refused by :class:`LattePipeline`, naming ``model.frame_conditioning``)."""
    if not names:
        return
    what = " / ".join(names)
    if "base" not in stages:
        raise ValueError(f"{what}: given frames condition the base stage, and stages {','.join(stages)} start "
                         "from the input video instead; run the base stage (without input)")
    if not latte_base:
        raise ValueError(f"{what}: the base stage is {base_what}, which has no frame conditioning (it cannot be "
                         "given a first frame or a video to continue); use a Latte text-to-video model trained "
                         f"with model.frame_conditioning: true as the base ({remedy})")


class CascadePipeline:
    """Base → interp → vsr (any subset, in that order). Build from stage objects or :meth:`from_lavie_dir`.

    Args:
        base: a :class:`LavieStage` of kind base or a :class:`LatteBaseStage` (or None).
        interp, vsr: :class:`LavieStage` of kind interp / vsr (or None).
        device: where stages run; ``dtype``: float16 / bfloat16 for U-Nets and VAEs on CUDA (CPU: float32).
        offload: keep every stage on the CPU except the one running (bounds accelerator memory to one stage).
    """

    def __init__(self, base=None, interp=None, vsr=None, *, device=None, dtype=None, offload: bool = False):
        for name, stage in (("interp", interp), ("vsr", vsr)):
            if stage is not None and getattr(stage, "kind", None) != name:
                raise ValueError(f"{name}: expected a LavieStage of kind '{name}', got {stage!r}")
        if base is not None and getattr(base, "kind", None) != "base":
            raise ValueError(f"base: expected a base stage, got {base!r}")
        self.stages = {"base": base, "interp": interp, "vsr": vsr}
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = resolve_dtype(dtype, self.device)
        self.offload = offload
        for stage in self.stages.values():
            if stage is not None:
                stage.to("cpu" if offload else self.device, self.dtype)

    @classmethod
    def from_lavie_dir(cls, lavie_dir: PathLike, stages: Sequence[str] = STAGES, *, unets: Optional[dict] = None,
                       latte_base=None, device=None, dtype=None, offload: bool = False,
                       vae_chunk: Optional[int] = None) -> "CascadePipeline":
        """Stages from a folder laid out like the official ``pretrained_models/`` (see :func:`check_lavie_dir`).
        ``unets``: per-stage overrides of the U-Net weights (a LaVie ``.pt`` or our own saved U-Net folder);
        ``latte_base``: a text-to-video :class:`LattePipeline` used as the base stage instead of LaVie's."""
        wanted = [s for s in stages if not (s == "base" and latte_base is not None)]
        built = {s: load_lavie_stage(lavie_dir, s, unet=(unets or {}).get(s), vae_chunk=vae_chunk,
                                     device=resolve_device("cpu")) for s in wanted}
        if latte_base is not None and "base" in stages:
            built["base"] = LatteBaseStage(latte_base)
        return cls(**built, device=device, dtype=dtype, offload=offload)

    @classmethod
    def load(cls, lavie_dir: PathLike, device=None, dtype=None, offload: bool = False) -> "CascadePipeline":
        """Every stage whose U-Net file is in ``lavie_dir`` (official layout; the base is required)."""
        root = Path(lavie_dir).expanduser()
        stages = [s for s in STAGES if (root / LAVIE_FILES[s]).is_file()]
        check_lavie_dir(root, stages if "base" in stages else ["base", *stages])
        return cls.from_lavie_dir(root, stages, device=device, dtype=dtype, offload=offload)

    # ------------------------------------------------------------------- the text-to-video batch interface
    conditioning = "text"

    @property
    def defaults(self) -> StageSettings:
        """The base stage's default sampler, steps, guidance and negative prompt."""
        base = self.stages["base"]
        if base is None:
            raise ValueError("this cascade has no base stage")
        return base.defaults() if isinstance(base, LatteBaseStage) else STAGE_DEFAULTS["base"]

    @property
    def optional_stages(self) -> list[str]:
        """The loaded stages after the base (e.g. ``["interp", "vsr"]``)."""
        return [s for s in STAGES[1:] if self.stages[s] is not None]

    @property
    def clip_frames(self) -> int:
        """Frames of one base clip: the base stage's trained length (official base 16; 0 without a base)."""
        base = self.stages["base"]
        return 0 if base is None else int(base.trained_frames)

    def describe_size(self) -> str:
        base = self.stages["base"]
        frames, height, width = base.default_size if base is not None else (None, None, None)
        if frames is None:
            return "the base model's size; interpolation n -> 4(n-1)+1 frames, super-resolution x4"
        return (f"{frames} frames of {height}x{width} px; interpolation -> {interp_num_frames(frames)} frames, "
                f"super-resolution -> {height * 4}x{width * 4} px")

    def __call__(self, prompts: Union[str, Sequence[str]], num_videos: Optional[int] = None, seed: int = 0,
                 sampler: Optional[str] = None, steps: Optional[int] = None, cfg_scale: Optional[float] = None,
                 negative_prompt: Optional[str] = None, stages: Optional[Sequence[str]] = None,
                 batch_size: int = 1, progress: bool = True,
                 callback: Optional[Callable[[str, int, int], None]] = None,
                 indices: Optional[Sequence[int]] = None, **options) -> "SampleOutput":
        """Text-to-video videos through the cascade, like :class:`LattePipeline` (and what ``latte demo
        --cascade`` calls): video ``i`` has prompt ``prompts[i % len]`` and seed ``seed + i``.

        ``sampler``, ``cfg_scale`` and ``negative_prompt`` set the base stage; ``steps`` every stage; the other
        stages keep their official defaults. ``stages``: the stages to run after the base (default: all loaded;
        "base" may be listed). ``batch_size`` is accepted for interface compatibility: videos are made one at a
        time. ``options``: any other :meth:`run` argument. Returns uint8 videos ``(N, F, H, W, 3)`` and one
        record per video (``index``, ``fps`` and the cascade record of :meth:`run`).
        """
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("pass at least one prompt")
        chosen = list(self.optional_stages if stages is None else stages)
        run_stages = ["base", *[s for s in chosen if s != "base"]]
        base = StageSettings(sampler=sampler, steps=steps, cfg_scale=cfg_scale, negative_prompt=negative_prompt)
        settings = {"base": base, **{s: StageSettings(steps=steps) for s in run_stages[1:]}}
        settings.update(options.pop("settings", None) or {})
        indices = list(indices) if indices is not None else list(range(num_videos or len(prompts)))
        videos, records = [], []
        for i in indices:
            out = self.run(prompts[i % len(prompts)], stages=run_stages, seed=seed + i, settings=settings,
                           progress=progress, callback=callback, **options)
            videos.append(out.video)
            records.append({"index": i, **out.record})
        return SampleOutput(np.stack(videos), records)

    # ------------------------------------------------------------------------------------------- running
    def settings_for(self, stage: str, prompt: str, given: Optional[StageSettings], seed: int,
                     official: bool, name_prompt: Optional[str] = None) -> StageSettings:
        """The settings a stage runs with: explicit values, else the stage's official defaults. The prompt is
        the user's, or in official mode the file name for stages after base (+ ", 4k." for interp)."""
        obj = self.stages[stage]
        base = obj.defaults() if isinstance(obj, LatteBaseStage) else STAGE_DEFAULTS[stage]
        given = given or StageSettings()
        merged = StageSettings(**{k: (getattr(given, k) if getattr(given, k) is not None else getattr(base, k))
                                  for k in StageSettings.__dataclass_fields__})
        if merged.prompt is None:
            text = name_prompt if (official and stage != "base" and name_prompt is not None) else prompt
            if official and stage == "interp":
                text = text + INTERP_PROMPT_SUFFIX
            merged.prompt = text
        if merged.seed is None:
            merged.seed = int(seed)
        check_sampler(merged.sampler)
        if merged.steps < 1:
            raise ValueError(f"{stage}: steps must be >= 1, got {merged.steps}")
        if stage != "base" or isinstance(obj, LavieStage):
            scheduler_options_for(merged.sampler, merged.timestep_offset)  # validates the combination
        return merged

    @property
    def frame_conditioning(self) -> bool:
        """Whether the base stage takes given frames (``image`` / ``extend`` of :meth:`run`): a Latte model
        trained with ``model.frame_conditioning``."""
        base = self.stages["base"]
        return isinstance(base, LatteBaseStage) and base.frame_conditioning

    def _place(self, stage_obj, active: bool) -> None:
        if self.offload:
            stage_obj.to(self.device if active else "cpu", self.dtype)
            if not active and self.device.type == "cuda":
                torch.cuda.empty_cache()

    def run(self, prompt: Optional[str] = None, *, stages: Sequence[str] = STAGES,
                 input: Optional[Union[PathLike, np.ndarray, torch.Tensor]] = None, seed: int = 0,
                 settings: Optional[dict] = None, official: bool = False, frames: Optional[int] = None,
                 height: Optional[int] = None, width: Optional[int] = None, interp_factor: int = 4,
                 vsr_chunk: int = 8, vsr_overlap: int = 0, noise_level: int = 50, input_fps: float = 8.0,
                 progress: bool = True, workdir: Optional[PathLike] = None,
                 callback: Optional[Callable[[str, int, int], None]] = None, window: Optional[int] = None,
                 window_stride: Optional[int] = None, image: Optional[Given] = None, extend: Optional[Given] = None,
                 context_frames: Optional[int] = None) -> CascadeOutput:
        """Run the cascade for one prompt.

        Args:
            prompt: the text for every stage (per-stage ``settings[stage].prompt`` overrides it). With ``input``
                and no prompt, the input file's name (underscores → spaces) is used.
            stages: which stages, in order (base, interp, vsr).
            input: a video to start from instead of the base stage: an mp4 path, uint8 ``(F, H, W, 3)``, or a
                float ``(1, 3, F, H, W)`` in [−1, 1].
            seed: every stage's generator is seeded with it (as each official script seeds itself) unless its
                settings give a seed.
            settings: ``{stage: StageSettings}``; unset fields take the official per-stage defaults.
            official: the official script route (mp4 re-read between stages, file name as prompt, ", 4k.").
            frames / height / width: the base video (default LaVie 16×320×512, or the Latte model's size).
            interp_factor: k in n → k(n−1)+1 frames; vsr_chunk / vsr_overlap: frames per VSR call and frames
            shared (cross-faded) by consecutive chunks; noise_level: VSR low-res augmentation level.
            input_fps: frame rate of an array ``input`` (an mp4 input keeps its own).
            workdir: where official mode writes its intermediate mp4 files (default: a temporary folder).
            callback: ``callback(stage, step, total)`` after every sampler step of every stage (VSR counts the
                steps of all its chunks); it may raise to stop.
            window / window_stride: base videos longer than the base model's trained length are sampled with
                sliding temporal windows (default: the trained length, half of it; 0: off), before interpolation
                and super-resolution; recorded in the base stage's record as ``temporal_window``.
            image / extend / context_frames: a Latte base stage trained with frame conditioning
                (:class:`LatteBaseStage`) makes image-to-video (``image``: the first frame, a path or uint8
                ``(H, W, 3)``) or continues a video (``extend``: a path or uint8 ``(F, H, W, 3)``; ``frames`` is
                the total length), before interpolation and super-resolution; as :class:`LattePipeline`.
                Recorded in the base stage's record as ``given_frames``.
        """
        stages = resolve_stages(stages, input is not None)
        missing = [s for s in stages if self.stages[s] is None]
        if missing:
            raise ValueError(f"this cascade has no {', '.join(missing)} stage (built with "
                             f"{', '.join(s for s, v in self.stages.items() if v is not None) or 'none'})")
        given = {"image": image, "extend": extend, "context_frames": context_frames}
        check_given_frames([name for name, value in given.items() if value is not None], stages,
                           isinstance(self.stages["base"], LatteBaseStage))
        settings = dict(settings or {})
        video, fps, name_prompt = None, STAGE_FPS["base"], None
        if input is not None:
            if isinstance(input, (str, Path)):
                path = Path(input)
                if not path.is_file():
                    raise FileNotFoundError(f"input video not found: {path}")
                fps = probe_video(path).fps or input_fps
                video = _to_model_space(read_all_frames(path))
                name_prompt = path.stem
                if prompt is None:
                    prompt = path.stem.replace("_", " ")
            elif isinstance(input, np.ndarray):
                video, fps = _to_model_space(input), input_fps
            else:
                video, fps = input.float(), input_fps
        if prompt is None:
            raise ValueError("a prompt is needed (every stage is text-conditional)")
        if name_prompt is None:
            name_prompt = prompt.replace(" ", "_")
        tmp = None
        if official and workdir is None:
            tmp = tempfile.TemporaryDirectory(prefix="latte-cascade-")
            workdir = tmp.name
        results = []
        try:
            for k, stage in enumerate(stages):
                obj = self.stages[stage]
                step = (lambda done, total, stage=stage: callback(stage, done, total)) if callback else None
                s = self.settings_for(stage, prompt, settings.get(stage), seed, official, name_prompt)
                generator = torch.Generator(self.device.type).manual_seed(s.seed)
                start = time.perf_counter()
                self._place(obj, True)
                if stage == "base":
                    size = [v if v is not None else d for v, d in zip((frames, height, width), obj.default_size)]
                    given_kwargs = {k: v for k, v in given.items() if v is not None}  # Latte base stages only
                    video, base_record = obj.generate(s, generator, *size, progress=progress, callback=step,
                                                      window=window, window_stride=window_stride, **given_kwargs)
                    fps = STAGE_FPS["base"]
                elif stage == "interp":
                    video = obj.interpolate(video.clamp(-1, 1), s, generator, interp_factor, progress, step)
                    fps = STAGE_FPS["interp"]
                else:
                    video = obj.upscale(video.clamp(-1, 1), s, generator, vsr_chunk, vsr_overlap, noise_level,
                                        progress, step)
                self._place(obj, False)
                video = video.cpu().clamp(-1, 1)
                rounding = "floor" if stage == "vsr" else "round"
                frames_u8 = official_uint8(video[0], rounding) if official else to_uint8(video[0])
                info = {"stage": stage, **{k2: v for k2, v in asdict(s).items()}, "fps": fps,
                        "frames": int(video.shape[2]), "height": int(video.shape[3]), "width": int(video.shape[4]),
                        "seconds": round(time.perf_counter() - start, 3), "model": obj.describe()}
                if stage == "base":
                    info.update(base_record)  # temporal_window, given_frames
                if stage == "interp":
                    info["interp_factor"] = interp_factor
                if stage == "vsr":
                    info.update(noise_level=noise_level, chunk=vsr_chunk, overlap=vsr_overlap)
                results.append({**info, "video": frames_u8})
                if official and k + 1 < len(stages):  # the next stage re-reads what this one wrote
                    path = Path(workdir) / f"{stage}" / f"{name_prompt}.mp4"
                    write_mp4(path, frames_u8, fps=fps)
                    video = _to_model_space(read_all_frames(path))
        finally:
            if tmp is not None:
                tmp.cleanup()
        record = {"prompt": prompt, "seed": int(seed), "stages": [{k2: v for k2, v in r.items() if k2 != "video"}
                                                                   for r in results],
                  "official": official, "offload": self.offload, "device": str(self.device),
                  "dtype": str(self.dtype).removeprefix("torch."), "fps": fps}
        return CascadeOutput(results[-1]["video"], fps, results, record)


# ---------------------------------------------------------------------------------------------- released weights

LAVIE_FILES = {"base": "lavie_base.pt", "interp": "lavie_interpolation.pt", "vsr": "lavie_vsr.pt"}
ENCODER_DIRS = {"base": "stable-diffusion-v1-4", "interp": "stable-diffusion-v1-4",
                "vsr": "stable-diffusion-x4-upscaler"}
_PART_FILES = {
    "vae": ["config.json", "diffusion_pytorch_model.safetensors|diffusion_pytorch_model.bin"],
    "text_encoder": ["config.json", "model.safetensors|pytorch_model.bin"],
    "tokenizer": ["vocab.json|tokenizer.json"],
}
_PART_WHAT = {"vae": "the diffusers AutoencoderKL", "text_encoder": "the CLIPTextModel",
              "tokenizer": "the CLIP tokenizer"}


def check_lavie_dir(lavie_dir: PathLike, stages: Sequence[str] = STAGES, unets: Optional[dict] = None) -> dict:
    """Check a folder laid out like the official ``pretrained_models/``; returns ``{stage: unet path}``.

    Expected: ``lavie_base.pt``, ``lavie_interpolation.pt``, ``lavie_vsr.pt`` (for the stages asked for, unless
    ``unets`` gives another path), ``stable-diffusion-v1-4/{vae,text_encoder,tokenizer}`` (base, interp) and
    ``stable-diffusion-x4-upscaler/{vae,text_encoder,tokenizer}`` (vsr). Anything missing is a
    :class:`latte.encoders.MissingWeightsError` naming the path and what was expected there.
    """
    root = Path(lavie_dir).expanduser()
    if not root.is_dir():
        raise MissingWeightsError(f"--lavie-dir {root}: folder not found (expected the official pretrained_models/ "
                                  f"layout: {', '.join(LAVIE_FILES.values())}, {ENCODER_DIRS['base']}/, "
                                  f"{ENCODER_DIRS['vsr']}/)")
    found = {}
    for stage in stages:
        given = (unets or {}).get(stage)
        path = Path(given).expanduser() if given else root / LAVIE_FILES[stage]
        if not path.exists():
            raise MissingWeightsError(f"{path}: not found (expected the LaVie {stage} U-Net weights"
                                      f"{', ' + LAVIE_FILES[stage] + ' from the LaVie release' if not given else ''})")
        found[stage] = path
        enc = root / ENCODER_DIRS[stage]
        for part, files in _PART_FILES.items():
            folder = enc / part
            if not folder.is_dir():
                raise MissingWeightsError(f"{folder}: folder not found (expected {_PART_WHAT[part]} of "
                                          f"{ENCODER_DIRS[stage]} for the {stage} stage: {', '.join(files)})")
            for entry in files:
                if not any((folder / name).is_file() for name in entry.split("|")):
                    raise MissingWeightsError(f"{folder}: missing {entry.replace('|', ' or ')} ({_PART_WHAT[part]}"
                                              f" of {ENCODER_DIRS[stage]} for the {stage} stage)")
    return found


def _load_unet(path: Path, stage: str) -> torch.nn.Module:
    """A LaVie U-Net (``latte.interop.lavie.load_lavie``) from a released ``.pt`` (full size; a ``.json`` of
    official constructor kwargs next to it gives another size, e.g. ``lavie_base.json``) or from our own
    folder (``config.json`` with those kwargs + the weights). A file of the wrong stage or shape is an error
    naming it."""
    config_file = path / "config.json" if path.is_dir() else path.with_suffix(".json")
    config = read_json(config_file) if config_file.is_file() else None
    if path.is_dir() and config is None:
        raise FileNotFoundError(f"{path}: a U-Net folder needs config.json (UNet3D.save_pretrained's, or the "
                                "official constructor kwargs next to the weights)")
    try:
        if config is not None and "attention_levels" in config:  # our own folder (UNet3D.save_pretrained)
            model = UNet3D.from_pretrained(path)
            wanted = {"base": (4, 0), "interp": (8, 0), "vsr": (7, 3)}[stage]
            if (model.config.in_channels, model.config.low_res_channels) != wanted:
                raise ValueError(f"in_channels {model.config.in_channels} / low_res_channels "
                                 f"{model.config.low_res_channels}, expected {wanted[0]} / {wanted[1]}")
            return OfficialLaVie(model.eval(), stage)
        return load_lavie(path, stage, config)
    except (RuntimeError, KeyError, ValueError, ConfigError) as e:
        raise ValueError(f"{path}: not a LaVie {stage} U-Net (expected the weights of {LAVIE_FILES[stage]}"
                         f"{' with the kwargs in ' + config_file.name if config is not None else ''}): {e}") from e


def trained_stage(unet: UNet3D, run: dict, autoencoder, text_encoder=None,
                  source: Optional[dict] = None) -> LavieStage:
    """The :class:`LavieStage` of a U-Net trained by ``latte train`` on a LaVie config (``run``: that config as
    plain data, e.g. a checkpoint's ``run_config.yaml``): its noise schedule and prediction type, its frames and
    size as the base defaults, the vsr noise level min(50, ``lavie.max_noise_level``); ``text_encoder`` None (a
    ``lavie.conditioning: none`` stage) is the single zero token the stage was trained with."""
    lavie, diffusion, data = run["lavie"], run["diffusion"], run["data"]
    kind = lavie["stage"]
    if text_encoder is None:
        text_encoder = ZeroTextEncoder(unet.config.cross_attention_dim)
    stage = LavieStage(kind, OfficialLaVie(unet, kind), autoencoder, text_encoder,
                       betas=beta_schedule(diffusion["noise_schedule"], diffusion["diffusion_steps"]),
                       prediction_type=diffusion["prediction_type"], source=source,
                       residual=bool(lavie.get("residual", False)),
                       noise_level=min(50, int(lavie["max_noise_level"])),
                       max_noise_level=int(unet.config.max_noise_level or 0))
    height, width = frame_size(data["image_size"])
    stage.default_size = (int(data["num_frames"]), int(height), int(width))
    stage.trained_frames = int(data["num_frames"])
    return stage


def load_trained_stage(path: PathLike, ema: bool = True, device=None) -> LavieStage:
    """The stage a ``latte train`` LaVie run saved: ``path`` is its run directory (latest checkpoint) or a
    checkpoint directory; the EMA weights by default (those validation samples come from), with the run's
    autoencoder and text encoder. Use it as ``CascadePipeline(interp=load_trained_stage("runs/lavie_interp"))``."""
    from latte.io import load_yaml_mapping
    from latte.models.lora import ADAPTER_FILE, apply_lora_file
    from latte.sampling.sources import _checkpoint_dir

    ckpt = _checkpoint_dir(Path(path).expanduser())
    which = "ema" if ema else "model"
    run = load_yaml_mapping(ckpt / "run_config.yaml", "run config")
    if "lavie" not in run:
        raise ConfigError(f"{ckpt / 'run_config.yaml'}: not a LaVie stage run (no lavie: section); sample a Latte "
                          "run with `latte sample`")
    unet = UNet3D.from_pretrained(ckpt / which)
    source = {"checkpoint": str(ckpt), "weights": which}
    if (ckpt / which / ADAPTER_FILE).is_file():
        apply_lora_file(unet, ckpt / which)
        source["lora"] = str(ckpt / which)
    device = resolve_device(device or "cpu")
    autoencoder = build_autoencoder(run["autoencoder"], device=device)
    text = build_text_encoder(run["text_encoder"], device=device) if run["lavie"]["conditioning"] == "text" else None
    return trained_stage(unet, run, autoencoder, text, source)


def _check_part(path: Path, what: str, key: str, expected, actual) -> None:
    if expected is not None and actual != expected:
        raise ValueError(f"{path}: {key} is {actual}, expected {expected} ({what})")


def load_lavie_stage(lavie_dir: PathLike, stage: str, unet: Optional[PathLike] = None,
                     vae_chunk: Optional[int] = None, device=None) -> LavieStage:
    """One :class:`LavieStage` from ``lavie_dir`` (official layout); ``unet`` overrides the U-Net weights.
    The text encoder's width must match the U-Net's cross-attention width, and the VAE must have 4 latent
    channels; a mismatch is an error naming the file and the expected value."""
    path = check_lavie_dir(lavie_dir, [stage], {stage: unet} if unet else None)[stage]
    enc = Path(lavie_dir).expanduser() / ENCODER_DIRS[stage]
    model = _load_unet(path, stage)
    cfg = getattr(model, "config", None)
    text_dim = getattr(cfg, "cross_attention_dim", None) if cfg is not None else None
    if isinstance(cfg, dict):
        text_dim = cfg.get("cross_attention_dim")
    if stage == "vsr":
        max_noise_level = int(getattr(cfg, "max_noise_level", 350) or 350)
    te_cfg = read_json(enc / "text_encoder" / "config.json")
    _check_part(enc / "text_encoder" / "config.json", f"the {stage} U-Net attends to {text_dim}-d text",
                "hidden_size", text_dim, te_cfg.get("hidden_size"))
    vae_cfg = read_json(enc / "vae" / "config.json")
    _check_part(enc / "vae" / "config.json", f"the {stage} U-Net denoises 4-channel latents", "latent_channels", 4,
                vae_cfg.get("latent_channels", 4))
    chunk = vae_chunk or (4 if stage == "vsr" else 8)
    autoencoder = build_autoencoder({"kind": "sd_vae", "path": str(enc), "subfolder": "vae", "chunk_size": chunk,
                                     "scaling_factor": VAE_SCALING[stage], "sample_posterior": True}, device=device)
    text = build_text_encoder({"kind": "clip", "path": str(enc), "max_length": 77}, device=device)
    return LavieStage(stage, model, autoencoder, text, source={"unet": str(path), "encoders": str(enc)},
                      max_noise_level=max_noise_level if stage == "vsr" else 350)
