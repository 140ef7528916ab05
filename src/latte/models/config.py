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
