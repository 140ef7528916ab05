"""The released official Latte checkpoints: configs, key mapping (both directions) and official-signature wrappers.

* ``load_latte(checkpoint, config)``: ``ffs.pt`` / ``skytimelapse.pt`` / ``taichi-hd.pt`` (unconditional
  Latte-XL/2), ``ucf101.pt`` (class-conditional) or any ``Latte``/``LatteIMG`` state dict; ``config`` = the
  official constructor kwargs (input_size, patch_size, hidden_size, depth, num_heads, num_frames, num_classes,
  learn_sigma, extras, ...). Returns :class:`OfficialLatte` (official layout ``(B, F, C, H, W)``).
* ``load_latte_t2v(checkpoint, config=None)``: ``t2v.pt`` or the Latte-1 ``transformer/`` folder
  (config.json + weights). Returns :class:`OfficialLatteT2V` (layout ``(B, C, F, H, W)``).
* ``save_official(model, path)`` writes our model back in the official layout (round trip).

Key mapping is strict: a checkpoint key that maps nowhere, or a model key no checkpoint key fills, is an error
naming it. The frozen sin-cos tables of the official ``Latte`` (``pos_embed``, ``temp_embed``) are checked
against ours (they are recomputed for the actual grid at run time, not stored).
"""
from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn as nn

from latte.config import ConfigError
from latte.io import InputError, WeightsError, load_state_dict_strict, read_state_dict
from latte.models import Latte, LatteConfig
from latte.models.latte import sincos_1d, sincos_2d

StateDict = dict[str, torch.Tensor]


class CheckpointError(WeightsError):
    """A checkpoint that does not fit the model: the message names the file and the keys."""


def _load_strict(model: nn.Module, state: StateDict, source: str) -> None:
    """:func:`latte.io.load_state_dict_strict`, its error raised as a :class:`CheckpointError`."""
    try:
        load_state_dict_strict(model, state, source)
    except WeightsError as e:
        raise CheckpointError(str(e)) from None


# --------------------------------------------------------------------------------------------------------------
# Latte / LatteIMG (class-conditional and unconditional)
# --------------------------------------------------------------------------------------------------------------

_LATTE_DEFAULTS = dict(input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
                       mlp_ratio=4.0, num_frames=16, class_dropout_prob=0.1, num_classes=1000, learn_sigma=True,
                       extras=1)


def latte_config_from_official(config: dict) -> LatteConfig:
    """Official ``Latte(...)`` constructor kwargs → ``LatteConfig`` (extras 1 = unconditional, 2 = class)."""
    known = set(_LATTE_DEFAULTS) | {"attention_mode"}
    unknown = [k for k in config if k not in known]
    if unknown:
        raise ConfigError(f"unknown official Latte argument(s) {unknown}; known: {sorted(known)}")
    c = {**_LATTE_DEFAULTS, **config}
    if c["extras"] not in (1, 2):
        raise ConfigError(f"official extras={c['extras']} is not supported (1 = unconditional, 2 = class; "
                          "78 is a dead code path of the official repository)")
    cfg = LatteConfig(
        input_size=c["input_size"], patch_size=c["patch_size"], in_channels=c["in_channels"],
        hidden_size=c["hidden_size"], depth=c["depth"], num_heads=c["num_heads"], mlp_ratio=c["mlp_ratio"],
        num_frames=c["num_frames"], learn_sigma=c["learn_sigma"],
        conditioning="class" if c["extras"] == 2 else "none",
        num_classes=c["num_classes"] if c["extras"] == 2 else 0,
        class_dropout_prob=c["class_dropout_prob"], attention_backend="sdpa",
    )
    cfg.validate()
    return cfg


def _check_sincos(name: str, value: torch.Tensor, expected: torch.Tensor, source: str) -> None:
    if tuple(value.shape) != tuple(expected.shape):
        raise CheckpointError(f"{source}: '{name}' has shape {tuple(value.shape)}, expected {tuple(expected.shape)}"
                              " (input_size / num_frames / hidden_size of the config do not match the checkpoint)")
    if not torch.allclose(value.float(), expected.float(), atol=1e-4):
        raise CheckpointError(f"{source}: '{name}' is not the fixed sin-cos table this model computes; "
                              "a checkpoint with learned position embeddings is not supported")


def latte_state_dict_from_official(sd: StateDict, cfg: LatteConfig, source: str = "checkpoint") -> StateDict:
    """Official ``Latte`` keys are ours, except the frozen tables, which are verified and dropped."""
    sd = dict(sd)
    d = cfg.hidden_size
    grid = cfg.input_size // cfg.patch_size
    if "pos_embed" in sd:
        _check_sincos("pos_embed", sd.pop("pos_embed"), sincos_2d(grid, grid, d)[None], source)
    if "temp_embed" in sd:
        _check_sincos("temp_embed", sd.pop("temp_embed"), sincos_1d(torch.arange(cfg.num_frames), d)[None], source)
    return sd


def latte_state_dict_to_official(model: Latte) -> StateDict:
    cfg = model.config
    grid = cfg.input_size // cfg.patch_size
    out = {"pos_embed": sincos_2d(grid, grid, cfg.hidden_size)[None].float(),
           "temp_embed": sincos_1d(torch.arange(cfg.num_frames), cfg.hidden_size)[None].float()}
    out.update({k: v.detach().clone() for k, v in model.state_dict().items()})
    return out


class OfficialLatte(nn.Module):
    """Our ``Latte`` behind the official signature: ``forward(x (B, F, C, H, W), t, y=None)`` returns
    ``(B, F, 2C, H, W)``. ``latte.diffusion.create_diffusion`` drives it as the official scripts do::

        diffusion = create_diffusion(str(250))
        z = torch.randn(1, 16, 4, 32, 32)                                     # (B, F, C, H, W)
        samples = diffusion.p_sample_loop(model.forward, z.shape, z, model_kwargs=dict(y=None))
        # class-conditional with CFG: z = cat([z, z]); y = cat([labels, null labels (num_classes)])
        samples = diffusion.ddim_sample_loop(model.forward_with_cfg, z.shape, z,
                                             model_kwargs=dict(y=y, cfg_scale=7.0, use_fp16=False))
    """

    def __init__(self, model: Latte):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None,
                text_embedding: Optional[torch.Tensor] = None, use_fp16: bool = False,
                y_image: Optional[torch.Tensor] = None, use_image_num: int = 0) -> torch.Tensor:
        if text_embedding is not None:
            raise ConfigError("text_embedding is the official extras=78 path, which is not supported (dead code in "
                              "the official repository); use the text-to-video model (load_latte_t2v)")
        if use_fp16:  # as the official forward: the caller has cast the model with .half()
            x = x.to(torch.float16)
        out = self.model(x.transpose(1, 2), t, y=y, num_images=use_image_num, y_images=y_image)
        return out.transpose(1, 2)

    def forward_with_cfg(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float = 7.0,
                         use_fp16: bool = False, text_embedding: Optional[torch.Tensor] = None):
        """Official DiT-style CFG: the first half of ``x`` is run with ``y``'s two halves (labels, null labels);
        epsilon (first ``C`` channels, dim 2) is guided, the variance channels pass through per half."""
        c = self.model.config.in_channels
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half]), t, y, text_embedding=text_embedding, use_fp16=use_fp16)
        eps, rest = out[:, :, :c], out[:, :, c:]
        cond, uncond = eps.chunk(2, dim=0)
        half_eps = uncond + cfg_scale * (cond - uncond)
        return torch.cat([torch.cat([half_eps, half_eps]), rest], dim=2)


def load_latte(checkpoint: Union[str, Path, StateDict], config: dict) -> OfficialLatte:
    """Load an official Latte/LatteIMG checkpoint (see module docstring) into our model, strictly."""
    cfg = latte_config_from_official(config)
    source = str(checkpoint) if not isinstance(checkpoint, dict) else "state dict"
    state = latte_state_dict_from_official(read_state_dict(checkpoint), cfg, source)  # a bad file fails fast
    model = Latte(cfg)
    _load_strict(model, state, source)
    return OfficialLatte(model.eval())


# --------------------------------------------------------------------------------------------------------------
# LatteT2V (t2v.pt, Latte-1 transformer/ folder, diffusers LatteTransformer3DModel)
# --------------------------------------------------------------------------------------------------------------

T2V_DEFAULTS = dict(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
                    dropout=0.0, cross_attention_dim=1152, attention_bias=True, sample_size=64, patch_size=2,
                    activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
                    norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=4096, video_length=16)
# settings a LatteTransformer3DModel must have to be our model (diffusers' own class defaults differ: GEGLU,
# no attention bias, layer_norm with affine, eps 1e-5)
T2V_REQUIRED = dict(norm_type="ada_norm_single", activation_fn="gelu-approximate", norm_elementwise_affine=False,
                    attention_bias=True, dropout=0.0, norm_eps=1e-6)
_T2V_IGNORED = {"norm_num_groups", "num_vector_embeds", "use_linear_projection", "only_cross_attention",
                "double_self_attention", "upcast_attention", "attention_type", "_class_name", "_diffusers_version",
                "_name_or_path", "num_layers_temporal"}


def t2v_config_from_official(config: dict) -> LatteConfig:
    """``LatteT2V`` / diffusers ``LatteTransformer3DModel`` config → ``LatteConfig``; unsupported settings are
    errors naming the key."""
    c = {**T2V_DEFAULTS, **{k: v for k, v in config.items() if k not in _T2V_IGNORED}}
    unknown = [k for k in c if k not in T2V_DEFAULTS]
    if unknown:
        raise ConfigError(f"unknown text-to-video config key(s) {unknown}")
    problems = [f"{key} = {c[key]!r} (expected {value!r})" for key, value in T2V_REQUIRED.items() if c[key] != value]
    problems += [f"{key} = null (expected an integer)" for key in ("in_channels", "out_channels", "patch_size",
                                                                    "caption_channels", "cross_attention_dim")
                 if c[key] is None]
    if problems:  # e.g. a LatteTransformer3DModel built with diffusers' own class defaults (GEGLU, no bias)
        raise ConfigError("this LatteTransformer3DModel configuration cannot be imported: " + "; ".join(problems)
                          + ". Supported: the Latte-1 / t2v.pt architecture, which `latte export` writes "
                          "(docs/sampling.md, 'diffusers export / import')")
    hidden = c["num_attention_heads"] * c["attention_head_dim"]
    if c["cross_attention_dim"] != hidden:
        raise ConfigError(f"cross_attention_dim ({c['cross_attention_dim']}) must equal the inner dim ({hidden})")
    if c["out_channels"] not in (c["in_channels"], 2 * c["in_channels"]):
        raise ConfigError("out_channels must be in_channels or 2*in_channels (learned sigma)")
    span = _diffusers_pe_span(c["sample_size"], c["patch_size"])
    if span.denominator != 1:
        raise ConfigError(f"sample_size {c['sample_size']} with patch_size {c['patch_size']}: position "
                          f"embeddings span {span} patches, which pe_base_size (an integer) cannot express")
    cfg = LatteConfig(
        input_size=c["sample_size"], num_frames=c["video_length"], in_channels=c["in_channels"],
        patch_size=c["patch_size"], hidden_size=hidden, depth=2 * c["num_layers"],
        num_heads=c["num_attention_heads"], learn_sigma=c["out_channels"] == 2 * c["in_channels"],
        conditioning="text", text_dim=c["caption_channels"], adaln="single",
        pe_base_size=int(span),
    )
    cfg.validate()
    return cfg


def t2v_config_to_official(cfg: LatteConfig) -> dict:
    """``LatteConfig`` → the diffusers ``LatteTransformer3DModel`` config (only for models it can express)."""
    if not (cfg.conditioning == "text" and cfg.adaln == "single" and cfg.injection == "adaln"
            and cfg.variant == "interleaved" and cfg.patch_embedding == "frame" and cfg.temporal_pe == "absolute"
            and cfg.mlp_ratio == 4.0 and not cfg.text_adaln and not cfg.frame_conditioning):
        raise ConfigError("only text-conditional, interleaved, frame-patch, adaLN-single models with absolute "
                          "temporal PE, mlp_ratio 4, no text_adaln and no frame_conditioning have the official "
                          "text-to-video layout")
    return dict(T2V_DEFAULTS, num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
                in_channels=cfg.in_channels, out_channels=cfg.out_channels, num_layers=cfg.depth // 2,
                cross_attention_dim=cfg.hidden_size, sample_size=diffusers_sample_size(cfg),
                patch_size=cfg.patch_size, caption_channels=cfg.text_dim, video_length=cfg.num_frames)


def _diffusers_pe_span(sample_size: int, patch_size: int) -> Fraction:
    """How many patches diffusers' ``PatchEmbed`` makes the sin-cos grid span: ``base_size / interpolation_scale``
    with ``base_size = sample_size // patch_size`` and ``interpolation_scale = max(sample_size // 64, 1)``
    (our ``pe_base_size``)."""
    return Fraction(sample_size // patch_size, max(sample_size // 64, 1))


def diffusers_sample_size(cfg: LatteConfig) -> int:
    """The diffusers ``sample_size`` whose position embedding equals ours (``pe_base_size``): ``input_size``
    when it does (the released model: 64 latents, pe_base_size 32), else the smallest size that does (a model
    trained at 256 px with the released pe_base_size 32, configs/t2v.yaml, exports as sample_size 64).
    diffusers' ``sample_size`` is then only the pipeline's default size: pass ``height``/``width``."""
    if cfg.pe_base_size is None:
        raise ConfigError("pe_base_size is null (integer patch positions): diffusers always rescales positions "
                          "(PixArt style); train with pe_base_size set (e.g. 32, as the released model)")
    if _diffusers_pe_span(cfg.input_size, cfg.patch_size) == cfg.pe_base_size:
        return cfg.input_size
    for size in range(cfg.patch_size, 64 * 64 + 1, cfg.patch_size):
        if _diffusers_pe_span(size, cfg.patch_size) == cfg.pe_base_size:
            return size
    raise ConfigError(f"pe_base_size {cfg.pe_base_size} with patch_size {cfg.patch_size} has no diffusers "
                      "sample_size (diffusers spans sample_size // patch_size / max(sample_size // 64, 1) patches)")


def _expand(pairs) -> dict[str, str]:
    """``{official: ours}`` with ``{wb}`` expanded to weight and bias."""
    return {o.format(wb=wb): u.format(wb=wb) for o, u in pairs for wb in ("weight", "bias")}


# one-to-one renames, official -> ours (top level, and inside a block)
_T2V_TOP = _expand([
    ("scale_shift_table", "final_layer.scale_shift_table"),
    ("pos_embed.proj.{wb}", "x_embedder.proj.{wb}"),
    ("proj_out.{wb}", "final_layer.linear.{wb}"),
    ("adaln_single.emb.timestep_embedder.linear_1.{wb}", "t_embedder.mlp.0.{wb}"),
    ("adaln_single.emb.timestep_embedder.linear_2.{wb}", "t_embedder.mlp.2.{wb}"),
    ("adaln_single.linear.{wb}", "adaln_single.1.{wb}"),
    ("caption_projection.linear_1.{wb}", "caption_projection.linear_1.{wb}"),
    ("caption_projection.linear_2.{wb}", "caption_projection.linear_2.{wb}"),
])
_T2V_BLOCK = _expand([
    ("scale_shift_table", "scale_shift_table"),
    ("attn1.to_out.0.{wb}", "attn.proj.{wb}"),
    ("attn2.to_q.{wb}", "cross_attn.q.{wb}"),
    ("attn2.to_out.0.{wb}", "cross_attn.proj.{wb}"),
    ("ff.net.0.proj.{wb}", "mlp.fc1.{wb}"),
    ("ff.net.2.{wb}", "mlp.fc2.{wb}"),
])
# fused projections: ours = cat(official parts, dim 0)
_T2V_FUSED = {"attn.qkv": ("attn1", ("to_q", "to_k", "to_v")), "cross_attn.kv": ("attn2", ("to_k", "to_v"))}
_BLOCK_RE = re.compile(r"(transformer_blocks|temporal_transformer_blocks)\.(\d+)\.(.+)")
T2V_EXTRA_KEYS = ("caption_projection.y_embedding",)  # unused in forward; kept for round trips


def t2v_state_dict_from_official(sd: StateDict, source: str = "checkpoint") -> tuple[StateDict, StateDict, list]:
    """Official/diffusers T2V keys → ours. Returns (mapped, extras kept for round trips, unexpected keys)."""
    mapped, extras, unexpected = {}, {}, []
    fused_parts = {f"{attn}.{p}.{wb}": (ours, wb, p)
                   for ours, (attn, parts) in _T2V_FUSED.items() for p in parts for wb in ("weight", "bias")}
    pieces: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        if key in T2V_EXTRA_KEYS:
            extras[key] = value
        elif key in _T2V_TOP:
            mapped[_T2V_TOP[key]] = value
        elif (m := _BLOCK_RE.fullmatch(key)) is not None:
            kind, i, rest = m.groups()
            block = f"blocks.{2 * int(i) + (kind == 'temporal_transformer_blocks')}"
            if rest in _T2V_BLOCK:
                mapped[f"{block}.{_T2V_BLOCK[rest]}"] = value
            elif rest in fused_parts:
                ours, wb, part = fused_parts[rest]
                pieces.setdefault((block, ours, wb), {})[part] = value
            else:
                unexpected.append(key)
        else:
            unexpected.append(key)
    for (block, ours, wb), got in pieces.items():
        attn, parts = _T2V_FUSED[ours]
        missing = [f"{attn}.{p}.{wb}" for p in parts if p not in got]
        if missing:
            raise CheckpointError(f"{source}: {block}: missing key(s) {missing}")
        mapped[f"{block}.{ours}.{wb}"] = torch.cat([got[p] for p in parts], dim=0)
    return mapped, extras, unexpected


def t2v_state_dict_to_official(model: Latte, extras: Optional[StateDict] = None,
                               include_extras: bool = True) -> StateDict:
    """Our text-to-video model → official ``LatteT2V`` keys (diffusers keys with ``include_extras=False``)."""
    cfg = model.config
    t2v_config_to_official(cfg)  # raises if the layout cannot be expressed
    top = {u: o for o, u in _T2V_TOP.items()}
    in_block = {u: o for o, u in _T2V_BLOCK.items()}
    out: StateDict = {}
    for key, value in model.state_dict().items():
        value = value.detach().clone()
        m = re.fullmatch(r"blocks\.(\d+)\.(.+)", key)
        if m is None:
            out[top[key]] = value
            continue
        idx, rest = int(m.group(1)), m.group(2)
        prefix = f"{'temporal_transformer_blocks' if idx % 2 else 'transformer_blocks'}.{idx // 2}"
        ours, _, wb = rest.rpartition(".")
        if ours in _T2V_FUSED:
            attn, parts = _T2V_FUSED[ours]
            for part, chunk in zip(parts, value.chunk(len(parts), dim=0)):
                out[f"{prefix}.{attn}.{part}.{wb}"] = chunk.clone()
        else:
            out[f"{prefix}.{in_block[rest]}"] = value
    if include_extras:
        default = torch.zeros(120, cfg.text_dim)
        out["caption_projection.y_embedding"] = (extras or {}).get("caption_projection.y_embedding", default)
    return out


class OfficialLatteT2V(nn.Module):
    """Our text-to-video model behind the official signature:
    ``forward(x (B, C, F, H, W), t, encoder_hidden_states (B, L, text_dim), encoder_attention_mask (B, L))``."""

    def __init__(self, model: Latte, extras: Optional[StateDict] = None):
        super().__init__()
        self.model = model
        self.extras = dict(extras or {})  # e.g. caption_projection.y_embedding, written back by save_official

    def forward(self, x, t, encoder_hidden_states, encoder_attention_mask=None, use_image_num: int = 0):
        return self.model(x, t, text=encoder_hidden_states, text_mask=encoder_attention_mask,
                          num_images=use_image_num)


def load_latte_t2v(checkpoint: Union[str, Path, StateDict], config: Optional[dict] = None) -> OfficialLatteT2V:
    """Load ``t2v.pt``, a Latte-1/diffusers ``transformer/`` folder or a state dict (``config`` = the
    ``LatteT2V`` config; read from ``config.json`` in the folder when omitted)."""
    source = str(checkpoint) if not isinstance(checkpoint, dict) else "state dict"
    if config is None:
        cfg_file = Path(checkpoint) / "config.json" if not isinstance(checkpoint, dict) else None
        if cfg_file is None or not cfg_file.is_file():
            raise ConfigError(f"{source}: no config given and no config.json next to the weights")
        try:
            config = json.loads(cfg_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{cfg_file}: not valid JSON ({e})") from None
    cfg = t2v_config_from_official(config)
    state = read_state_dict(checkpoint)
    mapped, extras, unexpected = t2v_state_dict_from_official(state, source)
    model = Latte(cfg)
    _load_strict(model, {**mapped, **{k: state[k] for k in unexpected}}, source)
    return OfficialLatteT2V(model.eval(), extras)


def save_official(model: Union[Latte, OfficialLatte, OfficialLatteT2V], path: Union[str, Path]) -> None:
    """Write a model in the official layout: ``{"ema": state_dict}`` (Latte) or the bare ``LatteT2V`` dict."""
    extras = getattr(model, "extras", None)
    inner = model.model if isinstance(model, (OfficialLatte, OfficialLatteT2V)) else model
    if inner.config.conditioning == "text":
        sd = t2v_state_dict_to_official(inner, extras)
    else:
        sd = {"ema": latte_state_dict_to_official(inner)}
    torch.save(sd, str(path))
