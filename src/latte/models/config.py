"""Configuration of the Latte transformer family and the official size table."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional

from latte.config import ConfigError, check_ranges, option

VARIANTS = ("interleaved", "late_fusion", "factorized_attention", "factorized_heads")


@dataclass
class LatteConfig:
    """Every architectural choice of the paper's design space (``spec_latte_paper.md``) as one field."""

    input_size: int = option(32, "latent height/width the model is built for (image_size // 8 for the SD VAE); "
                                 "other sizes work at run time, sin-cos tables are computed for the actual grid", min=1)
    num_frames: int = option(16, "video frames the model is built for; other frame counts work at run time", min=1)
    in_channels: int = option(4, "latent channels C of the input (B, C, F, H, W)", min=1)
    patch_size: int = option(2, "spatial patch size p (Latte-X/p)", min=1)
    hidden_size: int = option(1152, "transformer width D", min=4)
    depth: int = option(28, "number of blocks counted as the official table does (spatial + temporal blocks; "
                            "variant 'factorized_attention' builds depth/2 blocks with two attentions each)", min=1)
    num_heads: int = option(16, "attention heads (head dim = hidden_size / num_heads)", min=1)
    mlp_ratio: float = option(4.0, "MLP hidden width as a multiple of hidden_size", above=0)
    learn_sigma: bool = option(True, "predict the learned-range variance: output has 2*in_channels channels")
    variant: Literal["interleaved", "late_fusion", "factorized_attention", "factorized_heads"] = option(
        "interleaved", "block arrangement: 'interleaved' (variant 1, official: spatial/temporal blocks alternate), "
                       "'late_fusion' (variant 2: all spatial blocks then all temporal), 'factorized_attention' "
                       "(variant 3: spatial then temporal attention inside one block), 'factorized_heads' "
                       "(variant 4: half the heads spatial, half temporal)")
    patch_embedding: Literal["frame", "tubelet"] = option(
        "frame", "'frame': per-frame p×p patches (official); 'tubelet': 3-D patches spanning tubelet_size frames")
    tubelet_size: int = option(2, "frames per tubelet (patch_embedding='tubelet' only); num_frames must divide", min=1)
    injection: Literal["adaln", "tokens"] = option(
        "adaln", "how timestep/class enter the blocks: 'adaln' (S-AdaLN / adaLN-Zero, official) or 'tokens' "
                 "(extra tokens prepended to every attention sequence)")
    adaln: Literal["block", "single"] = option(
        "block", "adaLN parameterisation (injection='adaln'): 'block' = a Linear per block (DiT/Latte), "
                 "'single' = one shared Linear plus a learned table per block (PixArt / Latte text-to-video)")
    temporal_pe: Literal["absolute", "rope"] = option(
        "absolute", "temporal position: 'absolute' fixed sin-cos added once before the first temporal attention "
                    "(official) or 'rope' rotary embedding inside every temporal attention")
    conditioning: Literal["none", "class", "text"] = option(
        "none", "'none' (unconditional), 'class' (label embedding + null class for CFG) or 'text' "
                "(cross-attention to text-encoder features in the spatial attentions)")
    num_classes: int = option(0, "number of classes (conditioning='class'); the null class id is num_classes", min=0)
    class_dropout_prob: float = option(0.1, "training-time probability of replacing a label by the null class; "
                                            "> 0 adds the null row to the embedding table (official)",
                                       min=0.0, below=1.0)
    text_dim: int = option(4096, "feature size of the text encoder's hidden states (T5-XXL 4096, MiniLM 384)", min=1)
    text_adaln: bool = option(
        False, "text models: also add the caption's mean-pooled projected features to the adaLN conditioning "
               "(timestep) vector, so every block, temporal ones included, sees the caption (as the official "
               "latte.py 'extras=78' path does with a pooled text embedding); false = cross-attention only, "
               "as the official text-to-video model")
    pe_base_size: Optional[int] = option(
        None, "spatial sin-cos positions: null = integer patch indices (Latte/MAE, extends to larger grids); "
              "an int = positions rescaled so the grid always spans this many patches (PixArt / Latte-T2V)", min=1)
    attention_backend: Literal["auto", "sdpa", "math"] = option(
        "auto", "'sdpa' = torch scaled_dot_product_attention (fused kernels); 'math' = explicit softmax, as the "
                "official code (the benchmark baseline); 'auto' = sdpa, except bf16/fp16 on CPU where the explicit "
                "softmax is faster (BENCHMARKS.md). All three compute the same function")
    gradient_checkpointing: bool = option(False, "recompute each block's activations in the backward pass "
                                                 "(less memory, ~30% more compute)")
    frame_conditioning: bool = option(
        False, "given clean frames (image-to-video, extension): the model takes forward(frame_mask=(B, F)) "
               "marking frames of x that are clean, given latents; a zero-initialised patch embedding of "
               "[x * mask, mask] is added to the tokens (so a model trained without it is fine-tuned into it "
               "unchanged at first). Off: no extra weights, official checkpoints load as they are")

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.learn_sigma else self.in_channels

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def validate(self) -> None:
        check_ranges(self, "model.")
        if self.input_size % self.patch_size:
            raise ConfigError(f"model.input_size ({self.input_size}) must be divisible by model.patch_size "
                              f"({self.patch_size})")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"model.hidden_size ({self.hidden_size}) must be divisible by model.num_heads "
                              f"({self.num_heads})")
        if self.variant != "factorized_heads" and self.depth % 2:
            raise ConfigError(f"model.depth ({self.depth}) must be even for variant '{self.variant}' "
                              "(it counts spatial + temporal blocks)")
        if self.variant == "factorized_heads" and self.num_heads % 2:
            raise ConfigError("model.num_heads must be even for variant 'factorized_heads'")
        if self.temporal_pe == "rope" and self.head_dim % 2:
            raise ConfigError("model.temporal_pe='rope' needs an even head dim (hidden_size / num_heads)")
        if self.patch_embedding == "tubelet" and (self.tubelet_size < 1 or self.num_frames % self.tubelet_size):
            raise ConfigError(f"model.num_frames ({self.num_frames}) must be divisible by model.tubelet_size "
                              f"({self.tubelet_size})")
        if self.conditioning == "class" and self.num_classes < 1:
            raise ConfigError("model.num_classes must be >= 1 when model.conditioning is 'class'")
        if self.text_adaln and self.conditioning != "text":
            raise ConfigError("model.text_adaln needs model.conditioning 'text'")
        if self.hidden_size % 4:
            raise ConfigError("model.hidden_size must be divisible by 4 (2-D sin-cos embedding)")

    def replace(self, **changes) -> "LatteConfig":
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new


# The official size table (depth counts spatial + temporal blocks; mlp ratio 4).
_SIZES = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}
latte_presets: dict[str, dict] = {
    f"Latte-{name}/{p}": dict(depth=d, hidden_size=h, num_heads=n, patch_size=p)
    for name, (d, h, n) in _SIZES.items() for p in (2, 4, 8)
}
# The released text-to-video transformer (Latte-0/Latte-1, t2v.pt): PixArt-alpha XL-2-512 + temporal blocks.
latte_presets["Latte-T2V"] = dict(
    depth=56, hidden_size=1152, num_heads=16, patch_size=2, input_size=64, num_frames=16, conditioning="text",
    text_dim=4096, adaln="single", pe_base_size=32,
)


def preset(name: str, **overrides) -> LatteConfig:
    """``LatteConfig`` for a size-table entry (``"Latte-XL/2"``, ``"Latte-T2V"``, ...) plus overrides."""
    if name not in latte_presets:
        import difflib

        close = difflib.get_close_matches(name, list(latte_presets), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown model preset '{name}'{hint} (known: {', '.join(latte_presets)})")
    cfg = LatteConfig(**{**latte_presets[name], **overrides})
    cfg.validate()
    return cfg


# --------------------------------------------------------------------------------------------------------------
# LaVie video U-Nets (base text-to-video, temporal interpolation, video super-resolution): one family
# --------------------------------------------------------------------------------------------------------------


@dataclass
class UNet3DConfig:
    """A video latent-diffusion U-Net (``latte.models.unet3d.UNet3D``); the three LaVie stages are presets.

    Level lists (``attention_levels``, ``cross_attention_only``) are given for the down path; the up path mirrors
    them (up level i = down level ``levels-1-i``). The mid block always has self-attention.
    """

    in_channels: int = option(4, "channels of conv_in's input: latents (4), + condition latents for "
                                 "interpolation (8), + low_res_channels for super-resolution (7)")
    out_channels: int = option(4, "output channels (epsilon or v of the 4 latent channels)")
    low_res_channels: int = option(0, "super-resolution: channels of the low-resolution video passed as "
                                      "forward(low_res=...) and concatenated after the latents (3 = RGB); 0 = none")
    block_out_channels: tuple[int, ...] = option((320, 640, 1280, 1280), "channels of each resolution level")
    attention_levels: tuple[bool, ...] = option(
        (True, True, True, False), "per down level: ResBlocks followed by a spatio-temporal transformer "
                                   "(CrossAttn*Block3D) or ResBlocks only (DownBlock3D); up levels mirror it")
    cross_attention_only: tuple[bool, ...] = option(
        (False, False, False, False), "per down level: the transformer's first attention (attn1) is a second text "
                                      "cross-attention instead of spatial self-attention (x4-upscaler "
                                      "only_cross_attention); up levels mirror it, the mid block never")
    layers_per_block: int = option(2, "ResBlocks per down level (up levels have one more)")
    num_heads: int = option(8, "attention heads of every attention (the SD config's attention_head_dim)")
    norm_num_groups: int = option(32, "GroupNorm groups of the ResBlocks, transformer input norms and output norm")
    norm_eps: float = option(1e-5, "GroupNorm eps of the ResBlocks and the output norm (transformer norms: 1e-6)")
    cross_attention_dim: int = option(768, "feature size of the text encoder's hidden states (CLIP-L 768, "
                                           "OpenCLIP-H 1024)")
    linear_projection: bool = option(False, "transformer proj_in/proj_out are Linear layers (x4 upscaler) instead "
                                            "of 1x1 convolutions (SD 1.4)")
    spatial_attention: Literal["full", "sparse_causal"] = option(
        "full", "attn1 (where it is self-attention): 'full' = the tokens of the frame itself; 'sparse_causal' = "
                "keys/values of frame 0 and of the previous frame (interpolation model)")
    temporal_attention: Literal["rope", "plain"] = option(
        "rope", "temporal self-attention over the frames at each position: 'rope' = rotary embedding on the first "
                "32 features of each head plus a learned relative-position bias (base, VSR); 'plain' = no "
                "position information (interpolation)")
    temporal_attention_after_ff: bool = option(
        False, "run the temporal attention after the feed-forward (interpolation) instead of before it")
    temporal_attention_name: Literal["attn_temp", "attn_temporal"] = option(
        "attn_temp", "state-dict name of the temporal attention and its LayerNorm: 'attn_temp'/'norm_temp' "
                     "(released base and interpolation) or 'attn_temporal'/'norm_temporal' (released VSR)")
    temporal_resblocks: bool = option(
        False, "start every transformer with a temporal ResBlock (3x1x1 convolutions over frames; VSR)")
    temporal_modules: bool = option(
        False, "temporal module (temporal ResBlock k=5, ResBlock, zero-initialised 1x1 shift conv, residual) after "
               "every down level, the mid block and every up level (VSR)")
    num_class_embeds: int = option(0, "super-resolution: size of the noise-level embedding table added to the "
                                      "timestep embedding (1000); 0 = none")
    max_noise_level: int = option(350, "largest accepted noise level (class label) when num_class_embeds > 0")
    attention_backend: Literal["auto", "sdpa", "math"] = option(
        "auto", "'sdpa' = torch scaled_dot_product_attention; 'math' = explicit softmax (as the official code); "
                "'auto' = sdpa, except bf16/fp16 on CPU (explicit softmax is faster there)")
    gradient_checkpointing: bool = option(False, "recompute each block's activations (ResBlock, transformer, "
                                                 "temporal module) in the backward pass")

    @property
    def num_levels(self) -> int:
        return len(self.block_out_channels)

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.block_out_channels[0]

    def validate(self) -> None:
        n = self.num_levels
        for name in ("attention_levels", "cross_attention_only"):
            if len(getattr(self, name)) != n:
                raise ConfigError(f"unet.{name} has {len(getattr(self, name))} entries, expected one per level "
                                  f"of block_out_channels ({n})")
        for ch in self.block_out_channels:
            if ch % self.norm_num_groups:
                raise ConfigError(f"unet.block_out_channels ({ch}) must be divisible by norm_num_groups "
                                  f"({self.norm_num_groups})")
            if ch % self.num_heads:
                raise ConfigError(f"unet.block_out_channels ({ch}) must be divisible by num_heads ({self.num_heads})")
            if self.temporal_attention == "rope" and ch // self.num_heads < 32:
                raise ConfigError(f"unet.temporal_attention='rope' rotates 32 features per head: channels {ch} / "
                                  f"{self.num_heads} heads is less")
            if (self.temporal_modules or self.temporal_resblocks) and ch % 32:
                raise ConfigError(f"unet temporal ResBlocks use 32 GroupNorm groups: channels {ch} must be "
                                  "divisible by 32")
        if self.low_res_channels >= self.in_channels:
            raise ConfigError("unet.low_res_channels must be smaller than in_channels (latents come first)")

    def replace(self, **changes) -> "UNet3DConfig":
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new


_LAVIE_BASE = dict(in_channels=4, block_out_channels=(320, 640, 1280, 1280),
                   attention_levels=(True, True, True, False), cross_attention_dim=768)
unet3d_presets: dict[str, dict] = {
    # SD 1.4 U-Net + RoPE temporal attention in every transformer block (lavie_base.pt)
    "lavie-base": dict(_LAVIE_BASE),
    # + 4 condition channels, sparse-causal attn1, plain temporal attention after the FF (lavie_interpolation.pt)
    "lavie-interp": dict(_LAVIE_BASE, in_channels=8, spatial_attention="sparse_causal", temporal_attention="plain",
                         temporal_attention_after_ff=True),
    # x4 upscaler U-Net + temporal ResBlocks, RoPE temporal attention, temporal modules (lavie_vsr.pt)
    "lavie-vsr": dict(in_channels=7, low_res_channels=3, block_out_channels=(256, 512, 512, 1024),
                      attention_levels=(False, True, True, True), cross_attention_only=(True, True, True, False),
                      cross_attention_dim=1024, linear_projection=True, temporal_attention_name="attn_temporal",
                      temporal_resblocks=True, temporal_modules=True, num_class_embeds=1000),
}


def unet3d_preset(name: str, **overrides) -> UNet3DConfig:
    """``UNet3DConfig`` of a released LaVie stage (``"lavie-base"``, ``"lavie-interp"``, ``"lavie-vsr"``)."""
    if name not in unet3d_presets:
        import difflib

        close = difflib.get_close_matches(name, list(unet3d_presets), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown U-Net preset '{name}'{hint} (known: {', '.join(unet3d_presets)})")
    cfg = UNet3DConfig(**{**unet3d_presets[name], **overrides})
    cfg.validate()
    return cfg
