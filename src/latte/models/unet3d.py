"""The LaVie video U-Nets: base text-to-video, temporal interpolation and video super-resolution, one family.

The three released models are configurations of :class:`UNet3D` (presets in ``latte.models.config``): Stable
Diffusion's U-Net inflated to video. State-dict keys are the official ones (diffusers names for the spatial
layers), so the released checkpoints and diffusers 2-D U-Nets load one to one.

Tensor layout. ``forward`` takes and returns ``(B, C, F, H, W)``. Inside, the stream is kept frame-batched,
``(B·F, C, H, W)`` (video frames then images, batch outer): 2-D convolutions and the per-frame transformer norm
see frames as batch items. Frame-spanning GroupNorms (ResBlocks, output norm), temporal convolutions and temporal
attention regroup it. Transformer tokens are ``(B·F, H·W, C)`` (spatial) or ``(B·H·W, F, C)`` (temporal).

Per level (down i, mid, up i), as the official code:
    down:  [ResBlock → Transformer3D?] × layers_per_block → Downsample (not the last level) → Temporal?
    mid:   ResBlock → Transformer3D → ResBlock → Temporal?
    up:    [concat skip → ResBlock → Transformer3D?] × (layers_per_block+1) → Upsample (not last) → Temporal?
(Temporal? = the VSR temporal module.) Skips: the conv_in output, every down ResBlock/transformer output and every
downsampler output (not the temporal modules'), consumed last-in first-out.

Joint image-video input (``num_images`` > 0): the last ``num_images`` frames are independent images. Every
per-frame layer runs on them as on video frames; what mixes frames skips them: temporal attention, temporal
ResBlocks and temporal modules leave image frames unchanged, sparse-causal attention lets an image attend only
to itself, and the frame-spanning GroupNorms normalise the video frames together and each image on its own. So an
image's output depends only on that image, the timestep and the text.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from latte.models.config import UNet3DConfig
from latte.models.pretrained import PretrainedMixin
from latte.models.layers import GEGLUFeedForward, apply_rope, attend, merge_heads, rope_tables, split_heads, \
    timestep_embedding

ROTARY_DIM = 32  # features of each head rotated by the temporal RoPE
RELATIVE_BUCKETS = 32  # relative-position bias table rows (16 for keys before or at the query, 16 after)
RELATIVE_MAX_DISTANCE = 32
TEMPORAL_NORM_GROUPS, TEMPORAL_NORM_EPS = 32, 1e-6  # temporal ResBlocks / temporal modules (fixed officially)
TRANSFORMER_NORM_EPS = 1e-6


# --------------------------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------------------------


def relative_position_buckets(n: int, device=None) -> torch.Tensor:
    """Bucket ``(n, n)`` of (query i, key j): with ``m = i - j``, ``16·[m < 0] + (|m| if |m| < 8 else
    min(15, 8 + ⌊ln(|m|/8)/ln 4 · 8⌋))`` (T5-style, 32 buckets, max distance 32)."""
    pos = torch.arange(n, dtype=torch.long, device=device)
    m = pos[:, None] - pos[None, :]
    half = RELATIVE_BUCKETS // 2
    exact = half // 2
    dist = m.abs()
    # the official expression, float32 log over a double constant (bucket boundaries depend on it)
    large = exact + (torch.log(dist.float() / exact) / math.log(RELATIVE_MAX_DISTANCE / exact)
                     * (half - exact)).long()
    large = large.clamp(max=half - 1)
    return (m < 0).long() * half + torch.where(dist < exact, dist, large)


def rotary_inv_freq(dim: int = ROTARY_DIM) -> torch.Tensor:
    """``10000^(-2i/dim)``, i < dim/2: the frequencies stored as ``rotary_emb.freqs`` in the released models."""
    return 1.0 / 10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)


@dataclass
class UNetContext:
    """What every layer needs besides the stream; built once per forward.

    ``frames``: F (video frames + images); ``num_images``: the last frames that are images; ``temb``: time
    (+ noise level) embedding ``(B, D_t)``; ``text``: ``(B·F, L, D_text)``; ``text_bias``: additive mask
    ``(B·F, 1, 1, L)`` or None; ``backend``: attention backend.
    """

    frames: int
    num_images: int
    temb: torch.Tensor
    text: Optional[torch.Tensor]
    text_bias: Optional[torch.Tensor]
    backend: str

    @property
    def num_video(self) -> int:
        return self.frames - self.num_images


def frame_group_norm(norm: nn.GroupNorm, x: torch.Tensor, ctx: UNetContext) -> torch.Tensor:
    """GroupNorm whose statistics span frames: ``x (B·F, C, H, W)``, per sample over the video frames together
    (the official 5-D GroupNorm) and over each image frame on its own."""
    bf, c, h, w = x.shape
    f, fv = ctx.frames, ctx.num_video
    if fv == f:
        return norm(x.view(bf // f, f, c, h, w).transpose(1, 2)).transpose(1, 2).reshape(bf, c, h, w)
    x5 = x.view(bf // f, f, c, h, w)
    images = norm(x5[:, fv:].reshape(-1, c, h, w)).view(bf // f, f - fv, c, h, w)
    if fv == 0:
        return images.reshape(bf, c, h, w)
    video = norm(x5[:, :fv].transpose(1, 2)).transpose(1, 2)  # (B, Fv, C, H, W)
    return torch.cat([video, images], dim=1).reshape(bf, c, h, w)


def per_frame_temb(proj: nn.Linear, ctx: UNetContext) -> torch.Tensor:
    """``proj(SiLU(temb))`` broadcast to every frame: ``(B·F, C, 1, 1)``."""
    return proj(F.silu(ctx.temb)).repeat_interleave(ctx.frames, dim=0)[:, :, None, None]


# --------------------------------------------------------------------------------------------------------------
# Convolutional layers
# --------------------------------------------------------------------------------------------------------------


class ResBlock(nn.Module):
    """``shortcut(x) + conv2(SiLU(GN2(conv1(SiLU(GN1 x)) + Linear(SiLU temb))))``; 3x3 frame convolutions,
    GroupNorms spanning frames. Keys ``norm1, conv1, time_emb_proj, norm2, conv2[, conv_shortcut]``."""

    def __init__(self, cin: int, cout: int, temb_dim: int, groups: int, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, ctx: UNetContext) -> torch.Tensor:
        h = self.conv1(F.silu(frame_group_norm(self.norm1, x, ctx)))
        h = h + per_frame_temb(self.time_emb_proj, ctx)
        h = self.conv2(F.silu(frame_group_norm(self.norm2, h, ctx)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class TemporalResBlock(nn.Module):
    """ResBlock over time on the video frames (image frames pass unchanged): GroupNorm(32, eps 1e-6) over the
    video, ``conv1`` kernel (k,1,1), ``conv2`` kernel (3,1,1), zero padding in time, optional timestep term."""

    def __init__(self, channels: int, kernel: int, temb_dim: Optional[int]):
        super().__init__()
        self.norm1 = nn.GroupNorm(TEMPORAL_NORM_GROUPS, channels, eps=TEMPORAL_NORM_EPS)
        self.conv1 = nn.Conv3d(channels, channels, (kernel, 1, 1), padding=((kernel - 1) // 2, 0, 0))
        self.time_emb_proj = nn.Linear(temb_dim, channels) if temb_dim else None
        self.norm2 = nn.GroupNorm(TEMPORAL_NORM_GROUPS, channels, eps=TEMPORAL_NORM_EPS)
        self.conv2 = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))

    def forward(self, x: torch.Tensor, ctx: UNetContext) -> torch.Tensor:
        bf, c, h, w = x.shape
        f, fv = ctx.frames, ctx.num_video
        if fv == 0:
            return x
        x5 = x.view(bf // f, f, c, h, w)
        v = x5[:, :fv].transpose(1, 2)  # (B, C, Fv, H, W)
        hid = self.conv1(F.silu(self.norm1(v)))
        if self.time_emb_proj is not None:
            hid = hid + self.time_emb_proj(F.silu(ctx.temb))[:, :, None, None, None]
        hid = self.conv2(F.silu(self.norm2(hid)))
        out = (v + hid).transpose(1, 2)
        if fv < f:
            out = torch.cat([out, x5[:, fv:]], dim=1)
        return out.reshape(bf, c, h, w)


class TemporalModule(nn.Module):
    """VSR temporal module: ``x + shift_conv(ResBlock(TemporalResBlock_k5(x)))`` on the video frames.
    ``shift_conv`` (1x1) starts at zero, so a new module is the identity."""

    def __init__(self, channels: int, temb_dim: int):
        super().__init__()
        self.resblocks_3d_t = TemporalResBlock(channels, 5, temb_dim)
        self.resblocks_3d_s = ResBlock(channels, channels, temb_dim, TEMPORAL_NORM_GROUPS, TEMPORAL_NORM_EPS)
        self.shift_conv = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.shift_conv.weight)
        nn.init.zeros_(self.shift_conv.bias)

    def forward(self, x: torch.Tensor, ctx: UNetContext) -> torch.Tensor:
        if ctx.num_images == 0:
            return x + self.shift_conv(self.resblocks_3d_s(self.resblocks_3d_t(x, ctx), ctx))
        if ctx.num_video == 0:
            return x
        bf, c, h, w = x.shape
        b, f, fv = bf // ctx.frames, ctx.frames, ctx.num_video
        x5 = x.view(b, f, c, h, w)
        video = x5[:, :fv].reshape(b * fv, c, h, w)
        vctx = UNetContext(fv, 0, ctx.temb, None, None, ctx.backend)
        video = video + self.shift_conv(self.resblocks_3d_s(self.resblocks_3d_t(video, vctx), vctx))
        return torch.cat([video.view(b, fv, c, h, w), x5[:, fv:]], dim=1).reshape(bf, c, h, w)


class Downsample(nn.Module):
    """3x3 frame convolution, stride 2, padding 1 (``downsamplers.0.conv``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest resize to ``size`` (×2, or the next skip's H, W for sizes not divisible by 2^(levels-1)),
    then a 3x3 frame convolution (``upsamplers.0.conv``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        dtype = x.dtype
        if dtype == torch.bfloat16:  # nearest upsampling in bf16 is slow or missing on some backends
            x = x.float()
        return self.conv(F.interpolate(x, size=size, mode="nearest").to(dtype))


# --------------------------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head attention: ``to_q, to_k, to_v`` (no bias), ``to_out.0``; keys/values from ``context`` (text,
    cross-attention) or from ``x`` itself. ``kv_frames``: sparse-causal key/value frame indices."""

    def __init__(self, dim: int, heads: int, context_dim: Optional[int] = None):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim or dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim or dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def forward(self, x: torch.Tensor, ctx: UNetContext, context: Optional[torch.Tensor] = None,
                bias: Optional[torch.Tensor] = None, kv_frames: Optional[tuple] = None) -> torch.Tensor:
        source = x if context is None else context
        k, v = self.to_k(source), self.to_v(source)
        if kv_frames is not None:  # (B·F, N, C): keys of frame first[i] then of frame prev[i]
            bf, n, c = k.shape
            first, prev = kv_frames

            def gather(t):
                t = t.view(bf // ctx.frames, ctx.frames, n, c)
                return torch.cat([t[:, first], t[:, prev]], dim=2).reshape(bf, 2 * n, c)

            k, v = gather(k), gather(v)
        q, k, v = (split_heads(t, self.heads) for t in (self.to_q(x), k, v))
        return self.to_out[0](merge_heads(attend(q, k, v, bias, ctx.backend)))


class RotaryFreqs(nn.Module):
    """Holds the rotary frequencies as the released checkpoints store them (``freqs`` [16], not trained)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("freqs", rotary_inv_freq())


class RelativePositionBias(nn.Module):
    """Learned bias ``(heads, F, F)`` indexed by the relative-position bucket of (query, key)."""

    def __init__(self, heads: int):
        super().__init__()
        self.relative_attention_bias = nn.Embedding(RELATIVE_BUCKETS, heads)

    def forward(self, n: int) -> torch.Tensor:
        buckets = relative_position_buckets(n, self.relative_attention_bias.weight.device)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)


class TemporalAttention(nn.Module):
    """Self-attention over frames ``(B·N, F, C)``; with ``rope``: rotary embedding on the first 32 features of
    each head (adjacent pairs, positions 0..F-1) and a learned relative-position bias on the logits."""

    def __init__(self, dim: int, heads: int, rope: bool):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        if rope:
            self.time_rel_pos_bias = RelativePositionBias(heads)
            self.rotary_emb = RotaryFreqs()
        nn.init.zeros_(self.to_out[0].weight)  # official init: a new temporal attention adds nothing

    def forward(self, x: torch.Tensor, backend: str) -> torch.Tensor:
        q, k, v = (split_heads(lin(x), self.heads) for lin in (self.to_q, self.to_k, self.to_v))
        bias = None
        if hasattr(self, "rotary_emb"):
            n = x.shape[1]
            cos, sin = rope_tables(n, 0, x.device, q.dtype, inv_freq=self.rotary_emb.freqs, interleaved=True)
            q, k = apply_rope(q, cos, sin, interleaved=True), apply_rope(k, cos, sin, interleaved=True)
            bias = self.time_rel_pos_bias(n)
        return self.to_out[0](merge_heads(attend(q, k, v, bias, backend)))


# --------------------------------------------------------------------------------------------------------------
# Transformer
# --------------------------------------------------------------------------------------------------------------


class BasicTransformerBlock(nn.Module):
    """``attn1`` (spatial self-, sparse-causal or text cross-attention) → ``attn2`` (text) → temporal attention →
    ``ff`` (or ff before the temporal attention, interpolation); each pre-LayerNorm and residual.
    Tokens ``(B·F, N, C)``."""

    def __init__(self, dim: int, cfg: UNet3DConfig, cross_only: bool):
        super().__init__()
        h = cfg.num_heads
        self.cross_only = cross_only
        self.sparse_causal = cfg.spatial_attention == "sparse_causal" and not cross_only
        self.after_ff = cfg.temporal_attention_after_ff
        self.attn1 = Attention(dim, h, cfg.cross_attention_dim if cross_only else None)
        self.norm1 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, h, cfg.cross_attention_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.temporal_name = cfg.temporal_attention_name
        self.temporal_norm_name = "norm_temp" if self.temporal_name == "attn_temp" else "norm_temporal"
        self.add_module(self.temporal_name, TemporalAttention(dim, h, rope=cfg.temporal_attention == "rope"))
        self.add_module(self.temporal_norm_name, nn.LayerNorm(dim))
        self.ff = GEGLUFeedForward(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, ctx: UNetContext) -> torch.Tensor:
        h = self.norm1(x)
        if self.cross_only:
            x = x + self.attn1(h, ctx, ctx.text, ctx.text_bias)
        elif self.sparse_causal:
            x = x + self.attn1(h, ctx, kv_frames=sparse_causal_frames(ctx, x.device))
        else:
            x = x + self.attn1(h, ctx)
        x = x + self.attn2(self.norm2(x), ctx, ctx.text, ctx.text_bias)
        if self.after_ff:
            x = x + self.ff(self.norm3(x))
            return self._temporal(x, ctx)
        x = self._temporal(x, ctx)
        return x + self.ff(self.norm3(x))

    def _temporal(self, x: torch.Tensor, ctx: UNetContext) -> torch.Tensor:
        """Residual temporal attention over the video frames; image frames pass unchanged."""
        bf, n, c = x.shape
        f, fv = ctx.frames, ctx.num_video
        if fv == 0:
            return x
        x4 = x.view(bf // f, f, n, c)
        video = x4[:, :fv].transpose(1, 2).reshape(-1, fv, c)  # (B·N, Fv, C)
        norm, attn = self._modules[self.temporal_norm_name], self._modules[self.temporal_name]
        video = video + attn(norm(video), ctx.backend)
        out = video.view(bf // f, n, fv, c).transpose(1, 2)
        if fv < f:
            out = torch.cat([out, x4[:, fv:]], dim=1)
        return out.reshape(bf, n, c)


def sparse_causal_frames(ctx: UNetContext, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Key/value frames of each frame: (0, max(i-1, 0)) for video frame i; (i, i) for an image (itself)."""
    fv, f = ctx.num_video, ctx.frames
    idx = torch.arange(f, device=device)
    first = torch.where(idx < fv, torch.zeros_like(idx), idx)
    prev = torch.where(idx < fv, (idx - 1).clamp(min=0), idx)
    return first, prev


class Transformer3D(nn.Module):
    """[temporal ResBlock →] per-frame GroupNorm (eps 1e-6) → ``proj_in`` → one transformer block →
    ``proj_out`` → + residual. ``proj_in/out``: 1x1 convolutions or Linear layers (``linear_projection``)."""

    def __init__(self, dim: int, cfg: UNet3DConfig, cross_only: bool):
        super().__init__()
        if cfg.temporal_resblocks:
            self.resblock_temporal = TemporalResBlock(dim, 3, None)
        self.linear = cfg.linear_projection
        self.norm = nn.GroupNorm(cfg.norm_num_groups, dim, eps=TRANSFORMER_NORM_EPS)
        self.proj_in = nn.Linear(dim, dim) if self.linear else nn.Conv2d(dim, dim, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(dim, cfg, cross_only)])
        self.proj_out = nn.Linear(dim, dim) if self.linear else nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, ctx: UNetContext) -> torch.Tensor:
        if hasattr(self, "resblock_temporal"):
            x = self.resblock_temporal(x, ctx)
        bf, c, h, w = x.shape
        tokens = self.norm(x)
        if not self.linear:
            tokens = self.proj_in(tokens)
        tokens = tokens.permute(0, 2, 3, 1).reshape(bf, h * w, c)
        if self.linear:
            tokens = self.proj_in(tokens)
        tokens = self.transformer_blocks[0](tokens, ctx)
        if self.linear:
            tokens = self.proj_out(tokens)
        tokens = tokens.reshape(bf, h, w, c).permute(0, 3, 1, 2)
        if not self.linear:
            tokens = self.proj_out(tokens)
        return tokens + x


# --------------------------------------------------------------------------------------------------------------
# Levels
# --------------------------------------------------------------------------------------------------------------


def run(block: nn.Module, x: torch.Tensor, ctx: UNetContext, checkpointing: bool) -> torch.Tensor:
    """``block(x, ctx)``, recomputed in the backward pass when gradient checkpointing is on."""
    if checkpointing and torch.is_grad_enabled():
        return checkpoint(block, x, ctx, use_reentrant=False)
    return block(x, ctx)


class DownLevel(nn.Module):
    """``resnets.j`` [+ ``attentions.j``] for j < layers_per_block, then ``downsamplers.0`` (not the last level).
    Returns the output and the skips it records."""

    def __init__(self, cin: int, cout: int, cfg: UNet3DConfig, attention: bool, cross_only: bool, last: bool):
        super().__init__()
        n = cfg.layers_per_block
        self.resnets = nn.ModuleList(ResBlock(cin if j == 0 else cout, cout, cfg.time_embed_dim, cfg.norm_num_groups,
                                              cfg.norm_eps) for j in range(n))
        if attention:
            self.attentions = nn.ModuleList(Transformer3D(cout, cfg, cross_only) for _ in range(n))
        if not last:
            self.downsamplers = nn.ModuleList([Downsample(cout)])

    def forward(self, x, ctx, checkpointing):
        skips = []
        for j, resnet in enumerate(self.resnets):
            x = run(resnet, x, ctx, checkpointing)
            if hasattr(self, "attentions"):
                x = run(self.attentions[j], x, ctx, checkpointing)
            skips.append(x)
        if hasattr(self, "downsamplers"):
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class MidLevel(nn.Module):
    """``resnets.0`` → ``attentions.0`` (self-attention attn1) → ``resnets.1``."""

    def __init__(self, ch: int, cfg: UNet3DConfig):
        super().__init__()
        self.resnets = nn.ModuleList(ResBlock(ch, ch, cfg.time_embed_dim, cfg.norm_num_groups, cfg.norm_eps)
                                     for _ in range(2))
        self.attentions = nn.ModuleList([Transformer3D(ch, cfg, cross_only=False)])

    def forward(self, x, ctx, checkpointing):
        x = run(self.resnets[0], x, ctx, checkpointing)
        x = run(self.attentions[0], x, ctx, checkpointing)
        return run(self.resnets[1], x, ctx, checkpointing)


class UpLevel(nn.Module):
    """For j ≤ layers_per_block: concat the next skip on C, ``resnets.j`` [+ ``attentions.j``]; then
    ``upsamplers.0`` (not the last level)."""

    def __init__(self, prev: int, cout: int, skip_channels: list[int], cfg: UNet3DConfig, attention: bool,
                 cross_only: bool, last: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResBlock((prev if j == 0 else cout) + skip, cout, cfg.time_embed_dim, cfg.norm_num_groups, cfg.norm_eps)
            for j, skip in enumerate(skip_channels))
        if attention:
            self.attentions = nn.ModuleList(Transformer3D(cout, cfg, cross_only) for _ in skip_channels)
        if not last:
            self.upsamplers = nn.ModuleList([Upsample(cout)])

    def forward(self, x, skips, ctx, checkpointing, size=None):
        for j, resnet in enumerate(self.resnets):
            x = run(resnet, torch.cat([x, skips.pop()], dim=1), ctx, checkpointing)
            if hasattr(self, "attentions"):
                x = run(self.attentions[j], x, ctx, checkpointing)
        if hasattr(self, "upsamplers"):
            x = self.upsamplers[0](x, size)
        return x


class TimestepMLP(nn.Module):
    """``linear_1`` (C0→4C0), SiLU, ``linear_2`` (4C0→4C0) on the sinusoidal features."""

    def __init__(self, cin: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(cin, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


# --------------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------------

BLOCK_CLASSES = (ResBlock, Transformer3D, TemporalModule)


class UNet3D(PretrainedMixin, nn.Module):
    """Video latent-diffusion U-Net (LaVie base / interpolation / super-resolution). See the module docstring."""

    config_class = UNet3DConfig

    def __init__(self, config: UNet3DConfig):
        super().__init__()
        config.validate()
        self.config = cfg = config
        ch = cfg.block_out_channels
        n = cfg.num_levels
        tdim = cfg.time_embed_dim
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.time_embedding = TimestepMLP(ch[0], tdim)
        if cfg.num_class_embeds:
            self.class_embedding = nn.Embedding(cfg.num_class_embeds, tdim)

        self.down_blocks = nn.ModuleList()
        skip_channels = [ch[0]]
        for i in range(n):
            cin = ch[max(i - 1, 0)]
            self.down_blocks.append(DownLevel(cin, ch[i], cfg, cfg.attention_levels[i], cfg.cross_attention_only[i],
                                              last=i == n - 1))
            skip_channels += [ch[i]] * cfg.layers_per_block + ([ch[i]] if i < n - 1 else [])
        self.mid_block = MidLevel(ch[-1], cfg)
        self.up_blocks = nn.ModuleList()
        prev = ch[-1]
        for i in range(n):
            level = n - 1 - i  # the down level this up level mirrors
            skips = [skip_channels.pop() for _ in range(cfg.layers_per_block + 1)]
            self.up_blocks.append(UpLevel(prev, ch[level], skips, cfg, cfg.attention_levels[level],
                                          cfg.cross_attention_only[level], last=i == n - 1))
            prev = ch[level]
        if cfg.temporal_modules:
            self.down_temporal_blocks = nn.ModuleList(TemporalModule(c, tdim) for c in ch)
            self.mid_temporal_block = TemporalModule(ch[-1], tdim)
            self.up_temporal_blocks = nn.ModuleList(TemporalModule(c, tdim) for c in reversed(ch))
            self.temporal_rotary_emb = RotaryFreqs()  # unused copy kept by the released VSR checkpoint
        self.conv_norm_out = nn.GroupNorm(cfg.norm_num_groups, ch[0], eps=cfg.norm_eps)
        self.conv_out = nn.Conv2d(ch[0], cfg.out_channels, 3, padding=1)

    # -- what the training engine wraps, checkpoints and trains ---------------------------------------------
    def repeated_blocks(self) -> list[nn.Module]:
        """Every ResBlock, Transformer3D and TemporalModule in execution order (the units gradient checkpointing
        recomputes; FSDP can wrap each, or use ``BLOCK_CLASSES`` in an auto-wrap policy)."""
        return [m for m in self.modules() if isinstance(m, BLOCK_CLASSES)]

    def temporal_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of the temporal layers: names containing ``temp`` (``attn_temp``, ``norm_temp``,
        ``attn_temporal``, ``resblock_temporal``, ``*_temporal_block(s)``). Everything else is spatial and maps
        one to one onto a diffusers ``UNet2DConditionModel``."""
        return ((name, p) for name, p in self.named_parameters() if is_temporal_key(name))

    # -- forward ---------------------------------------------------------------------------------------------
    def forward(
        self,
        sample: torch.Tensor,
        timestep: Union[torch.Tensor, float, int],
        encoder_hidden_states: Optional[torch.Tensor] = None,
        encoder_attention_mask: Optional[torch.Tensor] = None,
        *,
        low_res: Optional[torch.Tensor] = None,
        class_labels: Optional[torch.Tensor] = None,
        num_images: int = 0,
    ) -> torch.Tensor:
        """Predict the model output (epsilon; v for the VSR stage) for noisy latents.

        Args:
            sample: ``(B, C, F, H, W)``; interpolation: ``cat([x_t, cond])`` on C. Any F, H, W.
            timestep: ``(B,)`` or a scalar (broadcast to B).
            encoder_hidden_states: text features ``(B, L, D_text)``, or ``(B, F, L, D_text)`` one per frame
                (e.g. captions of joint-training images).
            encoder_attention_mask: ``(B, L)`` (or ``(B, F, L)``) 1 on real tokens; None = all tokens.
            low_res: super-resolution: the low-resolution video ``(B, 3, F, H, W)`` in [-1, 1].
            class_labels: super-resolution: noise level ``(B,)`` of the low-resolution augmentation (≤ 350).
            num_images: the last ``num_images`` frames are independent images (joint image-video training).
        Returns:
            ``(B, out_channels, F, H, W)``.
        """
        cfg = self.config
        x, ctx = self.embed(sample, timestep, encoder_hidden_states, encoder_attention_mask, low_res=low_res,
                            class_labels=class_labels, num_images=num_images)
        ckpt = cfg.gradient_checkpointing
        skips = [x]
        for i, down in enumerate(self.down_blocks):
            x, level_skips = down(x, ctx, ckpt)
            skips += level_skips
            if cfg.temporal_modules:
                x = run(self.down_temporal_blocks[i], x, ctx, ckpt)
        x = self.mid_block(x, ctx, ckpt)
        if cfg.temporal_modules:
            x = run(self.mid_temporal_block, x, ctx, ckpt)
        for i, up in enumerate(self.up_blocks):
            level_skips = skips[-len(up.resnets):]
            del skips[-len(up.resnets):]
            size = tuple(skips[-1].shape[-2:]) if skips else None
            x = up(x, level_skips, ctx, ckpt, size)
            if cfg.temporal_modules:
                x = run(self.up_temporal_blocks[i], x, ctx, ckpt)
        return self.head(x, ctx)

    def embed(
        self,
        sample: torch.Tensor,
        timestep: Union[torch.Tensor, float, int],
        encoder_hidden_states: Optional[torch.Tensor] = None,
        encoder_attention_mask: Optional[torch.Tensor] = None,
        *,
        low_res: Optional[torch.Tensor] = None,
        class_labels: Optional[torch.Tensor] = None,
        num_images: int = 0,
    ) -> tuple[torch.Tensor, UNetContext]:
        """The part of :meth:`forward` before the levels (same arguments): ``conv_in`` features
        ``(B·F, C0, H, W)`` and the :class:`UNetContext`."""
        cfg = self.config
        if cfg.low_res_channels:
            if low_res is None:
                raise ValueError("this is a super-resolution U-Net: pass low_res, (B, 3, F, H, W)")
            sample = torch.cat([sample, low_res.to(sample.dtype)], dim=1)
        b, c, f, h, w = sample.shape
        if c != cfg.in_channels:
            raise ValueError(f"sample has {c} channels (with low_res), the model expects {cfg.in_channels}")
        if not 0 <= num_images <= f:
            raise ValueError(f"num_images ({num_images}) must be in [0, frames={f}]")
        if encoder_hidden_states is None:
            raise ValueError("pass encoder_hidden_states, (B, L, D_text) text features")

        t = torch.as_tensor(timestep, device=sample.device)
        t = t.reshape(-1).expand(b) if t.numel() == 1 else t
        temb = self.time_embedding(timestep_embedding(t, cfg.block_out_channels[0]).to(self.conv_in.weight.dtype))
        if cfg.num_class_embeds:
            if class_labels is None:
                raise ValueError("this U-Net is conditioned on a noise level: pass class_labels, (B,) integers")
            labels = torch.as_tensor(class_labels, device=sample.device).reshape(-1).expand(b)
            if labels.device.type != "meta" and bool((labels > cfg.max_noise_level).any()):
                raise ValueError(f"noise level (class_labels) must be <= {cfg.max_noise_level}, got "
                                 f"{labels.tolist()}")
            temb = temb + self.class_embedding(labels).to(temb.dtype)

        text = encoder_hidden_states
        text = text.flatten(0, 1) if text.dim() == 4 else text.repeat_interleave(f, dim=0)  # (B·F, L, D)
        bias = None
        if encoder_attention_mask is not None:
            mask = encoder_attention_mask
            mask = mask.flatten(0, 1) if mask.dim() == 3 else mask.repeat_interleave(f, dim=0)
            bias = ((1.0 - mask.to(text.dtype)) * -10000.0)[:, None, None, :]
        ctx = UNetContext(frames=f, num_images=num_images, temb=temb, text=text, text_bias=bias,
                          backend=cfg.attention_backend)
        return self.conv_in(sample.transpose(1, 2).reshape(b * f, c, h, w)), ctx

    def head(self, x: torch.Tensor, ctx: UNetContext) -> torch.Tensor:
        """Output norm and ``conv_out``: ``(B·F, C0, H, W)`` → ``(B, out_channels, F, H, W)``."""
        x = self.conv_out(F.silu(frame_group_norm(self.conv_norm_out, x, ctx)))
        bf, _, h, w = x.shape
        return x.view(bf // ctx.frames, ctx.frames, -1, h, w).transpose(1, 2).contiguous()


def is_temporal_key(name: str) -> bool:
    """True for state-dict keys / parameter names of temporal layers (they contain ``temp``)."""
    return "temp" in name
