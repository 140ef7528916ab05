"""Matmul FLOPs of a Latte forward pass, by hand formula per layer (for MFU and benchmark reports).

A matmul of an ``(m, k)`` by a ``(k, n)`` matrix counts ``2·m·k·n`` FLOPs (one multiply and one add per term);
convolutions count as the matmul they are. Element-wise work (norms, activations, softmax, modulation,
position embeddings) is not counted, as in the usual MFU convention (PaLM appendix B). The formulas follow the
work ``latte.models.latte`` actually executes, e.g. temporal blocks see only the video frames of a joint
image-video batch, and attention counts ``Q·Kᵀ`` and ``A·V`` over the full (non-causal) sequence.

Training FLOPs are taken as 3 × forward (backward ≈ 2 × forward), so
``MFU = 3 · forward_flops(batch) / step_seconds / device_peak_flops`` (without the recomputation that gradient
checkpointing adds, which is overhead, not model FLOPs).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from latte.models.config import LatteConfig
from latte.models.latte import block_kinds

__all__ = ["FlopCount", "forward_flops"]


@dataclass
class FlopCount:
    """Forward matmul FLOPs by part: ``embed`` (patch embedding), ``conditioning`` (timestep MLP, adaLN
    regressions, caption projection), ``attention_proj`` (qkv and output projections of self-attention),
    ``attention_scores`` (``Q·Kᵀ`` and ``A·V``), ``cross_attention`` (all of cross-attention), ``mlp``,
    ``final`` (output projection)."""

    parts: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def training(self) -> int:
        """FLOPs of one training step (forward + backward) taken as 3 × forward."""
        return 3 * self.total

    def add(self, part: str, flops: int) -> None:
        self.parts[part] += int(flops)


def _linear(rows: int, d_in: int, d_out: int) -> int:
    return 2 * rows * d_in * d_out


def forward_flops(
    cfg: LatteConfig,
    batch: int = 1,
    frames: Optional[int] = None,
    height: Optional[int] = None,
    width: Optional[int] = None,
    num_images: int = 0,
    text_length: int = 120,
    per_image_conditioning: bool = False,
) -> FlopCount:
    """Matmul FLOPs of ``Latte(cfg)`` on latents ``(batch, C, frames, height, width)``.

    Args:
        frames, height, width: latent frames and size; default ``cfg.num_frames`` and ``cfg.input_size``.
        num_images: the last frames are independent images (image-video joint training).
        text_length: text tokens ``L`` per prompt (text-conditional models only).
        per_image_conditioning: the images carry their own labels (``y_images``) / captions (``image_text``).
    """
    f = cfg.num_frames if frames is None else frames
    h = cfg.input_size if height is None else height
    w = cfg.input_size if width is None else width
    b, d, p = batch, cfg.hidden_size, cfg.patch_size
    s = cfg.tubelet_size if cfg.patch_embedding == "tubelet" else 1
    f_tok, n = f // s, (h // p) * (w // p)  # token frames, tokens per frame
    fv, k = f_tok - num_images, num_images
    tokens = b * f_tok * n
    per_image = per_image_conditioning and k > 0
    text = cfg.conditioning == "text"
    n_prefix = 1 + (cfg.conditioning == "class") if cfg.injection == "tokens" else 0
    fc = f_tok if per_image and cfg.conditioning == "class" else 1  # conditioning vectors per sample
    mlp_hidden = int(d * cfg.mlp_ratio)
    count = FlopCount()

    count.add("embed", _linear(tokens, cfg.in_channels * s * p * p, d))
    count.add("conditioning", _linear(b, 256, d) + _linear(b, d, d))  # timestep MLP
    if text:
        count.add("conditioning", _linear(b * text_length * (1 + (k if per_image else 0)), cfg.text_dim, d)
                  + _linear(b * text_length * (1 + (k if per_image else 0)), d, d))
    kinds = block_kinds(cfg)
    adaln_block = cfg.injection == "adaln" and cfg.adaln == "block"
    if cfg.injection == "adaln" and cfg.adaln == "single":
        n_mod = 9 if kinds[0] == "factorized" else 6
        count.add("conditioning", _linear(b * fc, d, n_mod * d))

    def self_attention(seqs: int, length: int, heads_fraction: float = 1.0) -> None:
        """Scores of ``seqs`` sequences of ``length`` queries over ``length + n_prefix`` keys."""
        count.add("attention_scores", 2 * 2 * seqs * length * (length + n_prefix) * d * heads_fraction)

    def projections(rows: int, prefix_rows: int) -> None:
        count.add("attention_proj", _linear(rows, d, 3 * d) + _linear(rows, d, d) + _linear(prefix_rows, d, 3 * d))

    def cross(query_rows: int, contexts: int, queries_per_context: int) -> None:
        count.add("cross_attention", _linear(query_rows, d, d) + _linear(contexts * text_length, d, 2 * d)
                  + 2 * 2 * contexts * queries_per_context * text_length * d + _linear(query_rows, d, d))

    for kind in kinds:
        # temporal blocks of a joint batch run on the video frames only (images skip them entirely)
        frames_in = fv if kind == "temporal" else f_tok
        rows = b * frames_in * n
        block_fc = min(fc, frames_in)
        if adaln_block:
            count.add("conditioning", _linear(b * block_fc, d, (9 if kind == "factorized" else 6) * d))
        if kind in ("spatial", "factorized", "split_heads"):
            projections(rows, b * f_tok * n_prefix)
            self_attention(b * f_tok, n, 0.5 if kind == "split_heads" else 1.0)
        if kind == "split_heads":
            self_attention(b * n, fv, 0.5)
        if kind in ("temporal", "factorized"):
            projections(b * fv * n, b * n * n_prefix)
            self_attention(b * n, fv)
        if text and kind != "temporal":
            if per_image:
                cross(b * fv * n, b, fv * n)
                cross(b * k * n, b * k, n)
            else:
                cross(rows, b, f_tok * n)
        count.add("mlp", _linear(rows, d, mlp_hidden) + _linear(rows, mlp_hidden, d))

    if adaln_block:
        count.add("conditioning", _linear(b * fc, d, 2 * d))
    count.add("final", _linear(tokens, d, s * p * p * cfg.out_channels))
    return count
