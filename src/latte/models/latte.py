"""The Latte spatio-temporal transformer, all variants of the paper's design space in one module.

Tensor layout. The model takes and returns the native layout ``(B, C, F, H, W)``. Inside, the residual stream
is kept as ``(B, F, N, D)`` (``N = (H/p)·(W/p)`` tokens per frame); an attention only regroups it:
spatial attention runs over the ``N`` tokens of one frame (``(B·F, N, D)``), temporal attention over the ``F``
(video) frames at one spatial position (``(B·N, F, D)``). Modulation, MLPs and residuals never reshape.

Conditioning. ``c`` is one vector per frame ``(B, F_c, D)`` (``F_c`` is 1, or F when joint-training images carry
their own labels): timestep embedding (+ class embedding). With ``injection='adaln'`` it regresses shift/scale/
gate of every block (``adaln='block'``: a Linear per block; ``'single'``: one shared Linear + a per-block table);
with ``injection='tokens'`` it becomes extra key/value tokens in every attention. Text features enter through
cross-attention in the spatial attentions (as the official text-to-video model).

Image-video joint training: the last ``num_images`` frames of the input are independent images; they take part
in spatial attention and skip temporal attention (and the temporal position embedding).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from latte.models.config import LatteConfig
from latte.models.pretrained import PretrainedMixin
from latte.models.layers import Mlp, apply_rope, attend, rope_tables, timestep_embedding

# --------------------------------------------------------------------------------------------------------------
# Position and timestep embeddings (pure functions)
# --------------------------------------------------------------------------------------------------------------


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """``[sin(pos·ω), cos(pos·ω)]`` with ``ω_k = 10000^(-k/(dim/2))``; positions ``(n,)`` → ``(n, dim)``, float64."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.to(torch.float64)[:, None] * omega[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(h: int, w: int, dim: int, base_size: Optional[int] = None) -> torch.Tensor:
    """MAE 2-D sin-cos table ``(h·w, dim)`` for token ``row·w + col``: first half encodes the column, second the row.

    ``base_size=None`` uses integer patch positions; otherwise positions are rescaled so that the grid spans
    ``base_size`` patches (PixArt / official text-to-video ``PatchEmbed`` with interpolation scale 1).
    """
    rows = torch.arange(h, dtype=torch.float64)
    cols = torch.arange(w, dtype=torch.float64)
    if base_size is not None:
        rows, cols = rows / (h / base_size), cols / (w / base_size)
    col_emb = sincos_1d(cols, dim // 2)  # (w, dim/2)
    row_emb = sincos_1d(rows, dim // 2)  # (h, dim/2)
    return torch.cat([col_emb[None, :, :].expand(h, w, -1), row_emb[:, None, :].expand(h, w, -1)], dim=-1).reshape(
        h * w, dim)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


# --------------------------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------------------------


class TimestepEmbedder(nn.Module):
    """``t (B,)`` → ``(B, D)``: 256-d sinusoidal features through Linear-SiLU-Linear."""

    def __init__(self, hidden_size: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freqs = timestep_embedding(t, self.freq_dim).to(self.mlp[0].weight.dtype)
        return self.mlp(freqs)


class LabelEmbedder(nn.Module):
    """Class ids → ``(…, D)``; the extra row ``num_classes`` is the null class (label dropout / CFG)."""

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        self.num_classes, self.dropout_prob = num_classes, dropout_prob
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)

    def forward(self, labels: torch.Tensor, drop: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``drop`` (bool, broadcastable to labels): replace those labels by the null class."""
        if drop is not None:
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        return self.embedding_table(labels)


class CaptionProjection(nn.Module):
    """Text-encoder features ``(B, L, text_dim)`` → ``(B, L, D)`` (Linear-GELU(tanh)-Linear, as PixArt)."""

    def __init__(self, text_dim: int, hidden_size: int):
        super().__init__()
        self.linear_1 = nn.Linear(text_dim, hidden_size)
        self.act = nn.GELU(approximate="tanh")
        self.linear_2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(text)))


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection.

    ``forward(x (B', L, D), prefix=None, rope=None)``: ``prefix (B', P, D)`` are extra key/value-only tokens
    (conditioning tokens); ``rope`` = (cos, sin) tables ``(L, head_dim)`` rotate q and k of the ``L`` tokens.
    """

    def __init__(self, dim: int, num_heads: int, backend: str):
        super().__init__()
        self.num_heads, self.backend = num_heads, backend
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B', L, 3D)`` → ``(3, B', heads, L, head_dim)``."""
        b, n, _ = x.shape
        return x.reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)

    def forward(self, x, prefix=None, rope=None):
        q, k, v = self.heads(self.qkv(x))
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if prefix is not None:
            _, pk, pv = self.heads(self.qkv(prefix))
            k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
        out = attend(q, k, v, backend=self.backend)
        return self.proj(out.transpose(1, 2).flatten(2))


class CrossAttention(nn.Module):
    """Queries from the video tokens, keys/values from the (projected) text; ``bias (B', 1, 1, L)``."""

    def __init__(self, dim: int, num_heads: int, backend: str):
        super().__init__()
        self.num_heads, self.backend = num_heads, backend
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        b, n, d = x.shape
        q = self.q(x).reshape(b, n, self.num_heads, -1).transpose(1, 2)
        k, v = self.kv(context).reshape(b, context.shape[1], 2, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = attend(q, k, v, bias, backend=self.backend)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


@dataclass
class BlockContext:
    """What every block needs besides the residual stream; built once per forward pass.

    ``cond``: adaLN input ``(B, F_c, D)`` (block mode) or the shared projection ``(B, F_c, n_mod·D)`` (single
    mode), or the conditioning tokens ``(B, F_c, P, D)`` (tokens mode). ``text``/``text_bias``: projected text
    ``(B, L, D)`` and additive mask ``(B, 1, 1, L)``; ``image_text``/``image_text_bias`` the same per image
    ``(B·K, L, D)``. ``num_video``: frames that take part in temporal attention (the first ``num_video``).
    ``rope``: cos/sin tables for those frames. ``temporal_pe``: ``(num_video, D)`` added before the first
    temporal attention by the block flagged for it.
    """

    cond: torch.Tensor
    num_video: int
    text: Optional[torch.Tensor] = None
    text_bias: Optional[torch.Tensor] = None
    image_text: Optional[torch.Tensor] = None
    image_text_bias: Optional[torch.Tensor] = None
    rope: Optional[tuple] = None
    temporal_pe: Optional[torch.Tensor] = None


class LatteBlock(nn.Module):
    """One transformer block of kind ``spatial``, ``temporal``, ``factorized`` (spatial + temporal attention,
    variant 3) or ``split_heads`` (variant 4). Residual stream ``x (B, F, N, D)`` in and out."""

    def __init__(self, kind: str, cfg: LatteConfig):
        super().__init__()
        d, h = cfg.hidden_size, cfg.num_heads
        self.kind, self.num_heads = kind, h
        self.tokens = cfg.injection == "tokens"
        self.adaln_single = cfg.injection == "adaln" and cfg.adaln == "single"
        self.cross = cfg.conditioning == "text" and kind != "temporal"
        self.n_mod = 9 if kind == "factorized" else 6
        norm = (lambda: nn.LayerNorm(d, eps=1e-6)) if self.tokens else \
            (lambda: nn.LayerNorm(d, elementwise_affine=False, eps=1e-6))
        self.norm1 = norm()
        self.attn = SelfAttention(d, h, cfg.attention_backend)
        if kind == "factorized":
            self.norm_temporal = norm()
            self.attn_temporal = SelfAttention(d, h, cfg.attention_backend)
        if self.cross:
            self.cross_attn = CrossAttention(d, h, cfg.attention_backend)
        self.norm2 = norm()
        self.mlp = Mlp(d, int(d * cfg.mlp_ratio))
        if not self.tokens:
            if self.adaln_single:
                self.scale_shift_table = nn.Parameter(torch.randn(self.n_mod, d) / d ** 0.5)
            else:
                self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, self.n_mod * d))

    # -- attention over one axis ---------------------------------------------------------------------------
    def _spatial(self, attn: SelfAttention, h: torch.Tensor, ctx: BlockContext) -> torch.Tensor:
        b, f, n, d = h.shape
        prefix = ctx.cond.flatten(0, 1) if self.tokens else None  # (B·F_c, P, D)
        if prefix is not None and prefix.shape[0] != b * f:
            prefix = prefix.repeat_interleave(f // ctx.cond.shape[1], dim=0)
        return attn(h.reshape(b * f, n, d), prefix=prefix).reshape(b, f, n, d)

    def _temporal(self, attn: SelfAttention, h: torch.Tensor, ctx: BlockContext) -> torch.Tensor:
        """Attention over the video frames only; image frames get a zero update (they skip it)."""
        b, f, n, d = h.shape
        fv = ctx.num_video
        hv = h[:, :fv].transpose(1, 2).reshape(b * n, fv, d)
        prefix = ctx.cond[:, 0].repeat_interleave(n, dim=0) if self.tokens else None  # (B·N, P, D)
        out = attn(hv, prefix=prefix, rope=ctx.rope).reshape(b, n, fv, d).transpose(1, 2)
        if fv < f:
            out = torch.cat([out, torch.zeros_like(h[:, fv:])], dim=1)
        return out

    def _split_heads(self, h: torch.Tensor, ctx: BlockContext) -> torch.Tensor:
        """Variant 4: the first heads/2 attend over space, the rest over time, from one qkv projection."""
        b, f, n, d = h.shape
        fv, hh = ctx.num_video, self.num_heads // 2
        q, k, v = self.attn.heads(self.attn.qkv(h.reshape(b * f, n, d)))  # (B·F, heads, N, hd)
        if self.tokens:
            prefix = ctx.cond.flatten(0, 1)
            if prefix.shape[0] != b * f:
                prefix = prefix.repeat_interleave(f // ctx.cond.shape[1], dim=0)
            _, pk, pv = self.attn.heads(self.attn.qkv(prefix))  # (B·F, heads, P, hd)
        backend = self.attn.backend
        # spatial heads
        ks, vs = k[:, :hh], v[:, :hh]
        if self.tokens:
            ks, vs = torch.cat([pk[:, :hh], ks], 2), torch.cat([pv[:, :hh], vs], 2)
        out_s = attend(q[:, :hh], ks, vs, backend=backend)  # (B·F, hh, N, hd)

        # temporal heads: (B·F, hh, N, hd) -> (B·N, hh, Fv, hd)
        def to_time(x):
            x = x.reshape(b, f, hh, n, -1)[:, :fv]
            return x.permute(0, 3, 2, 1, 4).reshape(b * n, hh, fv, -1)

        qt, kt, vt = to_time(q[:, hh:]), to_time(k[:, hh:]), to_time(v[:, hh:])
        if ctx.rope is not None:
            qt, kt = apply_rope(qt, *ctx.rope), apply_rope(kt, *ctx.rope)
        if self.tokens:
            tp = lambda x: x.reshape(b, f, hh, -1, x.shape[-1])[:, 0].repeat_interleave(n, dim=0)  # noqa: E731
            kt, vt = torch.cat([tp(pk[:, hh:]), kt], 2), torch.cat([tp(pv[:, hh:]), vt], 2)
        out_t = attend(qt, kt, vt, backend=backend)  # (B·N, hh, Fv, hd)
        out_t = out_t.reshape(b, n, hh, fv, -1).permute(0, 3, 2, 1, 4)  # (B, Fv, hh, N, hd)
        if fv < f:  # an image attends only to itself over time: the output is its own value
            out_t = torch.cat([out_t, v[:, hh:].reshape(b, f, hh, n, -1)[:, fv:]], dim=1)
        out = torch.cat([out_s.reshape(b, f, hh, n, -1), out_t], dim=2)  # heads in order
        return self.attn.proj(out.permute(0, 1, 3, 2, 4).reshape(b, f, n, d))

    def _cross(self, x: torch.Tensor, ctx: BlockContext) -> torch.Tensor:
        """Cross-attention of every frame's tokens to its caption (un-normalised queries, no gate, as official)."""
        b, f, n, d = x.shape
        fv = ctx.num_video if ctx.image_text is not None else f
        parts = []
        if fv:  # the video frames attend to the video's caption (none: a batch of images only)
            parts.append(self.cross_attn(x[:, :fv].reshape(b, fv * n, d), ctx.text, ctx.text_bias).reshape(b, fv, n, d))
        if fv < f:
            k = f - fv
            img = self.cross_attn(x[:, fv:].reshape(b * k, n, d), ctx.image_text, ctx.image_text_bias)
            parts.append(img.reshape(b, k, n, d))
        return torch.cat(parts, dim=1)

    # -- the block -------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, ctx: BlockContext, add_temporal_pe: bool = False) -> torch.Tensor:
        if self.kind == "temporal" and ctx.num_video < x.shape[1]:  # images skip temporal blocks entirely
            fv = ctx.num_video
            if fv == 0:
                return x
            video_ctx = dataclasses.replace(ctx, cond=ctx.cond[:, :fv] if ctx.cond.shape[1] > 1 else ctx.cond)
            return torch.cat([self.forward(x[:, :fv], video_ctx, add_temporal_pe), x[:, fv:]], dim=1)
        if self.tokens:
            one = torch.ones((), dtype=x.dtype, device=x.device)
            mods = [None, None, one] * (self.n_mod // 3)
        else:
            b, fc = ctx.cond.shape[:2]
            if self.adaln_single:
                m = self.scale_shift_table + ctx.cond.reshape(b, fc, self.n_mod, -1)
            else:
                m = self.adaLN_modulation(ctx.cond).reshape(b, fc, self.n_mod, -1)
            mods = [m[:, :, i, None] for i in range(self.n_mod)]  # each (B, F_c, 1, D)

        def pre(norm, i):
            h = norm(x)
            return h if mods[i] is None else modulate(h, mods[i], mods[i + 1])

        if add_temporal_pe and self.kind in ("temporal", "split_heads"):
            x = self._add_temporal_pe(x, ctx)
        if self.kind == "spatial":
            x = x + mods[2] * self._spatial(self.attn, pre(self.norm1, 0), ctx)
        elif self.kind == "temporal":
            x = x + mods[2] * self._temporal(self.attn, pre(self.norm1, 0), ctx)
        elif self.kind == "split_heads":
            x = x + mods[2] * self._split_heads(pre(self.norm1, 0), ctx)
        else:  # factorized: spatial attention, (text), temporal attention, MLP
            x = x + mods[2] * self._spatial(self.attn, pre(self.norm1, 0), ctx)
            if self.cross:
                x = x + self._cross(x, ctx)
            if add_temporal_pe:
                x = self._add_temporal_pe(x, ctx)
            x = x + mods[5] * self._temporal(self.attn_temporal, pre(self.norm_temporal, 3), ctx)
        if self.cross and self.kind != "factorized":
            x = x + self._cross(x, ctx)
        j = self.n_mod - 3
        return x + mods[j + 2] * self.mlp(pre(self.norm2, j))

    @staticmethod
    def _add_temporal_pe(x: torch.Tensor, ctx: BlockContext) -> torch.Tensor:
        if ctx.temporal_pe is None:
            return x
        fv = ctx.num_video
        pe = ctx.temporal_pe[None, :, None, :].to(x.dtype)
        return torch.cat([x[:, :fv] + pe, x[:, fv:]], dim=1) if fv < x.shape[1] else x + pe


class FinalLayer(nn.Module):
    """Norm (+ adaLN shift/scale) and a linear to ``patch_volume · out_channels`` values per token."""

    def __init__(self, cfg: LatteConfig, patch_volume: int):
        super().__init__()
        d = cfg.hidden_size
        self.mode = "tokens" if cfg.injection == "tokens" else cfg.adaln
        self.norm_final = nn.LayerNorm(d, elementwise_affine=self.mode == "tokens", eps=1e-6)
        self.linear = nn.Linear(d, patch_volume * cfg.out_channels)
        if self.mode == "block":
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        elif self.mode == "single":
            self.scale_shift_table = nn.Parameter(torch.randn(2, d) / d ** 0.5)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x (B, F, N, D)``, ``c (B, F_c, D)`` → ``(B, F, N, patch_volume·C_out)``."""
        h = self.norm_final(x)
        if self.mode == "block":
            shift, scale = self.adaLN_modulation(c)[:, :, None].chunk(2, dim=-1)
            h = modulate(h, shift, scale)
        elif self.mode == "single":
            shift, scale = (self.scale_shift_table[None, None] + c[:, :, None]).unbind(2)
            h = modulate(h, shift[:, :, None], scale[:, :, None])
        return self.linear(h)


# --------------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------------


def block_kinds(cfg: LatteConfig) -> list[str]:
    """The kind of each block in execution order (the variant is only a block arrangement)."""
    half = cfg.depth // 2
    if cfg.variant == "interleaved":
        return ["spatial", "temporal"] * half
    if cfg.variant == "late_fusion":
        return ["spatial"] * half + ["temporal"] * half
    if cfg.variant == "factorized_attention":
        return ["factorized"] * half
    return ["split_heads"] * cfg.depth


class Latte(PretrainedMixin, nn.Module):
    """Latent video diffusion transformer. See the module docstring for layout and conditioning."""

    config_class = LatteConfig

    def __init__(self, config: LatteConfig):
        super().__init__()
        config.validate()
        self.config = cfg = config
        d, p = cfg.hidden_size, cfg.patch_size
        self.tubelet = cfg.tubelet_size if cfg.patch_embedding == "tubelet" else 1
        self.gradient_checkpointing = cfg.gradient_checkpointing
        self.x_embedder = nn.Module()
        if self.tubelet > 1:
            self.x_embedder.proj = nn.Conv3d(cfg.in_channels, d, (self.tubelet, p, p), (self.tubelet, p, p))
        else:
            self.x_embedder.proj = nn.Conv2d(cfg.in_channels, d, p, p)
        if cfg.frame_conditioning:  # [clean given latents, mask] -> tokens, added to x's (zero-initialised)
            self.frame_embedder = nn.Module()
            if self.tubelet > 1:
                self.frame_embedder.proj = nn.Conv3d(cfg.in_channels + 1, d, (self.tubelet, p, p),
                                                     (self.tubelet, p, p))
            else:
                self.frame_embedder.proj = nn.Conv2d(cfg.in_channels + 1, d, p, p)
        self.t_embedder = TimestepEmbedder(d)
        if cfg.conditioning == "class":
            self.y_embedder = LabelEmbedder(cfg.num_classes, d, cfg.class_dropout_prob)
        if cfg.conditioning == "text":
            self.caption_projection = CaptionProjection(cfg.text_dim, d)
            if cfg.text_adaln:
                self.text_pooling = nn.Sequential(nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(LatteBlock(kind, cfg) for kind in block_kinds(cfg))
        if cfg.injection == "adaln" and cfg.adaln == "single":
            self.adaln_single = nn.Sequential(nn.SiLU(), nn.Linear(d, self.blocks[0].n_mod * d))
        self.final_layer = FinalLayer(cfg, self.tubelet * p * p)
        # index of the block that adds the absolute temporal embedding (before the first temporal attention)
        self.temporal_pe_block = next(i for i, blk in enumerate(self.blocks) if blk.kind != "spatial")
        self._pe_cache: dict = {}
        self.initialize_weights()

    # -- initialisation (DiT / official: xavier linears, zeroed adaLN and output => the model outputs 0) ------
    def initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        if hasattr(self, "frame_embedder"):
            nn.init.zeros_(self.frame_embedder.proj.weight)
            nn.init.zeros_(self.frame_embedder.proj.bias)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        if hasattr(self, "y_embedder"):
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        for blk in self.blocks:
            if hasattr(blk, "adaLN_modulation"):
                nn.init.zeros_(blk.adaLN_modulation[-1].weight)
                nn.init.zeros_(blk.adaLN_modulation[-1].bias)
        if hasattr(self, "adaln_single"):
            nn.init.normal_(self.adaln_single[-1].weight, std=0.02)
        if hasattr(self.final_layer, "adaLN_modulation"):
            nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
            nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    # -- fixed sin-cos tables, computed for the actual grid and cached -------------------------------------
    def spatial_pe(self, h: int, w: int, device, dtype) -> torch.Tensor:
        key = ("s", h, w, device, dtype)
        if key not in self._pe_cache:
            pe = sincos_2d(h, w, self.config.hidden_size, self.config.pe_base_size)
            self._pe_cache[key] = pe.to(device=device, dtype=dtype)
        return self._pe_cache[key]

    def temporal_pe(self, f: int, device, dtype) -> torch.Tensor:
        key = ("t", f, device, dtype)
        if key not in self._pe_cache:
            pe = sincos_1d(torch.arange(f), self.config.hidden_size)
            self._pe_cache[key] = pe.to(device=device, dtype=dtype)
        return self._pe_cache[key]

    # -- patchify / unpatchify -------------------------------------------------------------------------------
    def patchify(self, x: torch.Tensor, embedder: Optional[nn.Module] = None) -> torch.Tensor:
        """``(B, C, F, H, W)`` → tokens ``(B, F', N, D)`` (F' = F / tubelet_size) with the spatial PE added.

        ``embedder``: another patch embedding of the same geometry (the frame-conditioning one); no PE then."""
        b, c, f, hgt, wid = x.shape
        p = self.config.patch_size
        if hgt % p or wid % p:
            raise ValueError(f"latent height/width ({hgt}x{wid}) must be divisible by patch_size {p}")
        proj = (embedder or self.x_embedder).proj
        if self.tubelet > 1:
            if f % self.tubelet:
                raise ValueError(f"frame count {f} must be divisible by tubelet_size {self.tubelet}")
            tok = proj(x)  # (B, D, F', h, w)
            tok = tok.flatten(3).permute(0, 2, 3, 1)
        else:
            frames = x.transpose(1, 2).reshape(b * f, c, hgt, wid)
            tok = proj(frames).flatten(2).transpose(1, 2).reshape(b, f, -1, self.config.hidden_size)
        if embedder is not None:
            return tok
        return tok + self.spatial_pe(hgt // p, wid // p, x.device, tok.dtype)

    def frame_tokens(self, x: torch.Tensor, frame_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Frame conditioning: tokens ``(B, F', N, D)`` of ``[x · mask, mask]`` for ``frame_mask (B, F)`` (True on
        the clean, given frames of ``x``; None = no frame given)."""
        b, _, f, hgt, wid = x.shape
        if frame_mask is None:
            frame_mask = torch.zeros(b, f, dtype=torch.bool, device=x.device)
        if tuple(frame_mask.shape) != (b, f):
            raise ValueError(f"frame_mask: expected (B, F) = {(b, f)}, got {tuple(frame_mask.shape)}")
        mask = frame_mask.to(x.dtype)[:, None, :, None, None].expand(b, 1, f, hgt, wid)
        return self.patchify(torch.cat([x * mask, mask], dim=1), self.frame_embedder)

    def unpatchify(self, tok: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """``(B, F', N, s·p·p·C_out)`` → ``(B, C_out, F'·s, H, W)`` (token values ordered (s, p, q, c))."""
        b, f = tok.shape[:2]
        p, s, c = self.config.patch_size, self.tubelet, self.config.out_channels
        gh, gw = h // p, w // p
        x = tok.reshape(b, f, gh, gw, s, p, p, c)
        x = torch.einsum("bfhwspqc->bcfshpwq", x)
        return x.reshape(b, c, f * s, h, w)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        y: Optional[torch.Tensor] = None,
        text: Optional[torch.Tensor] = None,
        text_mask: Optional[torch.Tensor] = None,
        num_images: int = 0,
        y_images: Optional[torch.Tensor] = None,
        image_text: Optional[torch.Tensor] = None,
        image_text_mask: Optional[torch.Tensor] = None,
        force_drop_ids: Optional[torch.Tensor] = None,
        frame_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Predict noise (and variance values) for noisy latents: :meth:`embed`, :meth:`run_blocks`, :meth:`head`.

        Args:
            x: ``(B, C, F, H, W)`` noisy latents; the last ``num_images`` frames are independent images.
            t: ``(B,)`` diffusion timesteps (integers in [0, 1000)).
            y: ``(B,)`` class ids (class-conditional models); ``y_images (B, K)`` the images' classes.
            text: ``(B, L, text_dim)`` text features; ``text_mask (B, L)`` True/1 on real tokens.
            image_text / image_text_mask: ``(B, K, L, text_dim)`` / ``(B, K, L)`` the images' captions.
            force_drop_ids: ``(B,)`` 1 where the class label is replaced by the null class.
            frame_mask: ``(B, F)`` bool, models with ``frame_conditioning`` only: True on frames of ``x`` that are
                clean, given latents (image-to-video, extension); None = none given.
        Returns:
            ``(B, C_out, F, H, W)``; with ``learn_sigma`` channels ``[:C]`` are epsilon, ``[C:]`` variance values.
        """
        tok, ctx, c = self.embed(x, t, y, text, text_mask, num_images, y_images, image_text, image_text_mask,
                                 force_drop_ids, frame_mask)
        return self.head(self.run_blocks(tok, ctx), c, x.shape[-2:])

    def embed(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        y: Optional[torch.Tensor] = None,
        text: Optional[torch.Tensor] = None,
        text_mask: Optional[torch.Tensor] = None,
        num_images: int = 0,
        y_images: Optional[torch.Tensor] = None,
        image_text: Optional[torch.Tensor] = None,
        image_text_mask: Optional[torch.Tensor] = None,
        force_drop_ids: Optional[torch.Tensor] = None,
        frame_mask: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, BlockContext, torch.Tensor]:
        """The part of :meth:`forward` before the blocks (same arguments): tokens ``(B, F', N, D)``, the
        :class:`BlockContext` and the conditioning vector ``c (B, F_c, D)`` of the final layer.
        """
        cfg = self.config
        b = x.shape[0]
        if num_images and self.tubelet > 1:
            raise ValueError("image-video joint training (num_images > 0) needs patch_embedding='frame'")
        tok = self.patchify(x)  # (B, F', N, D)
        if cfg.frame_conditioning:
            tok = tok + self.frame_tokens(x, frame_mask)
        elif frame_mask is not None:
            raise ValueError("frame_mask given, but this model has no frame conditioning "
                             "(model.frame_conditioning: false)")
        fv = tok.shape[1] - num_images

        # conditioning vector per frame (B, F_c, D)
        t_emb = self.t_embedder(t)[:, None]
        parts = [t_emb]
        if cfg.conditioning == "class":
            if y is None:
                raise ValueError("this model is class-conditional: pass y, (B,) class ids")
            labels = y[:, None] if y_images is None else torch.cat([y[:, None], y_images], dim=1)
            drop = None
            if force_drop_ids is not None:
                drop = force_drop_ids.bool()[:, None]
            elif self.training and cfg.class_dropout_prob > 0:  # one draw per sample: video and its images
                drop = (torch.rand(b, device=x.device) < cfg.class_dropout_prob)[:, None]
            y_emb = self.y_embedder(labels, drop)  # (B, 1 or 1+K, D)
            if y_images is not None:  # video frames share the video label, each image has its own
                y_emb = torch.cat([y_emb[:, :1].expand(-1, fv, -1), y_emb[:, 1:]], dim=1)
            parts.append(y_emb)
        text_ctx = text_bias = image_ctx = image_bias = None
        if cfg.conditioning == "text":
            if text is None:
                raise ValueError("this model is text-conditional: pass text, (B, L, text_dim) features")
            text_ctx = self.caption_projection(text.to(tok.dtype))  # (B, L, D)
            text_bias = _mask_bias(text_mask, tok.dtype)
            if image_text is not None:
                image_ctx = self.caption_projection(image_text.flatten(0, 1).to(tok.dtype))  # (B·K, L, D)
                image_mask = None if image_text_mask is None else image_text_mask.flatten(0, 1)
                image_bias = _mask_bias(image_mask, tok.dtype)
            if cfg.text_adaln:  # the caption, mean-pooled over its real tokens, joins the conditioning vector
                pooled = self.text_pooling(_masked_mean(text_ctx, text_mask))[:, None]  # (B, 1, D)
                if image_ctx is not None:
                    per_image = self.text_pooling(_masked_mean(image_ctx, image_mask)).reshape(b, num_images, -1)
                    pooled = torch.cat([pooled.expand(-1, fv, -1), per_image], dim=1)
                parts.append(pooled)
        if cfg.injection == "tokens":
            c = sum(parts)  # for the final layer only (unused there)
            frames = max(p.shape[1] for p in parts)
            cond = torch.stack([p.expand(-1, frames, -1) for p in parts], dim=2)  # (B, F_c, P, D)
        else:
            c = parts[0]
            for part in parts[1:]:
                c = c + part  # (B, F_c, D): F_c is 1, or every frame when images carry their own labels
            cond = self.adaln_single(c) if hasattr(self, "adaln_single") else c

        ctx = BlockContext(cond=cond, num_video=fv, text=text_ctx, text_bias=text_bias, image_text=image_ctx,
                           image_text_bias=image_bias)
        if cfg.temporal_pe == "rope":
            ctx.rope = rope_tables(fv, cfg.head_dim, x.device, tok.dtype)
        elif fv > 1:
            ctx.temporal_pe = self.temporal_pe(fv, x.device, tok.dtype)
        return tok, ctx, c

    def run_blocks(self, tok: torch.Tensor, ctx: BlockContext) -> torch.Tensor:
        """All transformer blocks: residual stream ``(B, F', N, D)`` in and out."""
        for i, block in enumerate(self.blocks):
            add_pe = i == self.temporal_pe_block
            if self.gradient_checkpointing and torch.is_grad_enabled():
                tok = checkpoint(block, tok, ctx, add_pe, use_reentrant=False)
            else:
                tok = block(tok, ctx, add_pe)
        return tok

    def head(self, tok: torch.Tensor, c: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Final layer and unpatchify: ``(B, F', N, D)`` → ``(B, C_out, F, H, W)`` for latent ``size = (H, W)``."""
        return self.unpatchify(self.final_layer(tok, c), *size)


def _masked_mean(features: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean of ``features (B, L, D)`` over the real tokens of ``mask (B, L)`` (all tokens when None) → ``(B, D)``."""
    if mask is None:
        return features.mean(dim=1)
    weights = mask.to(features.dtype)[..., None]
    return (features * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _mask_bias(mask: Optional[torch.Tensor], dtype) -> Optional[torch.Tensor]:
    """``(B, L)`` keep-mask → additive bias ``(B, 1, 1, L)``: ``(1 - mask)·-10000`` as the official model."""
    if mask is None:
        return None
    return ((1.0 - mask.to(dtype)) * -10000.0)[:, None, None, :]
