"""The released LaVie U-Nets: official configs, strict loading, official-signature wrapper, diffusers init.

* ``load_lavie(checkpoint, stage, config=None)``: ``lavie_base.pt`` / ``lavie_interpolation.pt`` /
  ``lavie_vsr.pt`` (plain state dict or ``{"ema": ...}``, ``.pt`` read weights-only, or ``.safetensors``) or a
  state dict. ``stage``: ``"base"``, ``"interp"`` or ``"vsr"``; ``config``: the official constructor kwargs
  (``UNet3DConditionModel`` / ``UNet3DVSRModel`` names), None = the released full-size model. Returns
  :class:`OfficialLaVie`, whose ``forward`` has the official signature of the stage.
* ``unet3d_config_from_official`` / ``unet3d_config_to_official``: official kwargs <-> ``UNet3DConfig``.
* ``init_from_unet2d(folder_or_state_dict, config)``: a new ``UNet3D`` whose spatial weights come one to one from a
  diffusers ``UNet2DConditionModel`` (SD 1.4 for base/interp, the x4 upscaler for VSR); temporal weights start as
  the official initialisation (zeroed output projections / shift convs; interp ``conv_in`` channels 4-7 zero).

Our model's keys are the official keys, so no renaming happens; loading is strict (missing, unexpected and
wrong-shape keys are errors naming them).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn as nn

from latte.config import ConfigError
from latte.io import StateDict, WeightsError, load_state_dict_strict, read_state_dict
from latte.models.config import UNet3DConfig, unet3d_preset
from latte.models.unet3d import UNet3D, is_temporal_key

STAGES = ("base", "interp", "vsr")
_PRESET = {"base": "lavie-base", "interp": "lavie-interp", "vsr": "lavie-vsr"}

# The released full-size models' constructor kwargs (official names).
_SD14 = dict(sample_size=64, in_channels=4, out_channels=4,
             down_block_types=["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D",
                               "DownBlock3D"],
             up_block_types=["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"],
             block_out_channels=[320, 640, 1280, 1280], layers_per_block=2, norm_num_groups=32,
             cross_attention_dim=768, attention_head_dim=8, use_first_frame=False, use_relative_position=False)
OFFICIAL_CONFIGS: dict[str, dict] = {
    "base": dict(_SD14),
    "interp": dict(_SD14, in_channels=8, use_first_frame=True),
    "vsr": dict(
        down_temporal_idx=[0, 1, 2, 3], mid_temporal=True, up_temporal_idx=[0, 1, 2, 3], video_condition=False,
        temporal_module_config=dict(num_attention_layers=1, attention_block_types=["", ""],
                                    cross_frame_attention_mode="0_i-1_i", temporal_shift_fold_div=2,
                                    temporal_shift_direction="right", use_dcn_warpping=False,
                                    use_deformable_conv=True, attention_dim_div=2),
        sample_size=128, in_channels=7, out_channels=4, max_noise_level=350, attention_head_dim=8,
        block_out_channels=[256, 512, 512, 1024],
        down_block_types=["DownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D"],
        up_block_types=["CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "UpBlock3D"],
        only_cross_attention=[True, True, True, False], layers_per_block=2, norm_num_groups=32,
        cross_attention_dim=1024, use_linear_projection=True, num_class_embeds=1000, use_first_frame=False,
        use_relative_position=False),
}

# Official/diffusers arguments that must keep their default value (anything else is not implemented).
_FIXED = dict(center_input_sample=False, flip_sin_to_cos=True, freq_shift=0, mid_block_type=None,
              downsample_padding=1, mid_block_scale_factor=1, act_fn="silu", norm_eps=1e-5,
              dual_cross_attention=False, class_embed_type=None, upcast_attention=False,
              resnet_time_scale_shift="default", use_relative_position=False, video_condition=False)
_IGNORED = {"sample_size", "_class_name", "_diffusers_version", "_name_or_path", "freeze_pretrained_2d_upsampler",
            "temporal_module_config"}
_KNOWN = {"in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels",
          "layers_per_block", "norm_num_groups", "cross_attention_dim", "attention_head_dim", "use_first_frame",
          "only_cross_attention", "use_linear_projection", "num_class_embeds", "max_noise_level",
          "down_temporal_idx", "mid_temporal", "up_temporal_idx"} | set(_FIXED) | _IGNORED


def _levels(block_types: list[str], kind: str) -> tuple[bool, ...]:
    out = []
    for name in block_types:
        base = name.replace("2D", "3D")
        if base not in (f"CrossAttn{kind}Block3D", f"{kind}Block3D"):
            raise ConfigError(f"official {kind.lower()}_block_types entry '{name}' is not supported (expected "
                              f"CrossAttn{kind}Block3D or {kind}Block3D)")
        out.append(base.startswith("CrossAttn"))
    return tuple(out)


def unet3d_config_from_official(config: dict, stage: str) -> UNet3DConfig:
    """Official LaVie (or diffusers ``UNet2DConditionModel``) constructor kwargs of a stage → ``UNet3DConfig``.
    Settings the release does not use are errors naming the key."""
    if stage not in STAGES:
        raise ConfigError(f"unknown LaVie stage '{stage}' (expected one of {', '.join(STAGES)})")
    unknown = sorted(k for k in config if k not in _KNOWN)
    if unknown:
        raise ConfigError(f"unknown official U-Net argument(s) {unknown}")
    for key, value in _FIXED.items():
        if key in config and config[key] != value and not (key == "mid_block_type" and config[key] in (
                "UNetMidBlock3DCrossAttn", "UNetMidBlock2DCrossAttn")):
            raise ConfigError(f"official U-Net argument '{key}' = {config[key]!r} is not supported "
                              f"(only {value!r})")
    c = {**OFFICIAL_CONFIGS[stage], **config}
    down = _levels(list(c["down_block_types"]), "Down")
    up = _levels(list(c["up_block_types"]), "Up")
    if up != tuple(reversed(down)):
        raise ConfigError(f"official up_block_types {c['up_block_types']} must mirror down_block_types "
                          f"{c['down_block_types']}")
    n = len(down)
    heads = c.get("attention_head_dim", 8)
    if not isinstance(heads, int):
        if len(set(heads)) != 1:
            raise ConfigError(f"official attention_head_dim {heads}: one value for all levels is supported")
        heads = heads[0]
    cross_only = c.get("only_cross_attention", False)
    cross_only = tuple([cross_only] * n if isinstance(cross_only, bool) else cross_only)
    fields = dict(
        in_channels=c.get("in_channels", 4), out_channels=c.get("out_channels", 4),
        block_out_channels=tuple(c["block_out_channels"]), attention_levels=down, cross_attention_only=cross_only,
        layers_per_block=c.get("layers_per_block", 2), num_heads=heads, norm_num_groups=c.get("norm_num_groups", 32),
        cross_attention_dim=c.get("cross_attention_dim", 768),
        linear_projection=c.get("use_linear_projection", False),
    )
    if stage == "interp":
        fields.update(spatial_attention="sparse_causal" if c.get("use_first_frame", True) else "full",
                      temporal_attention="plain", temporal_attention_after_ff=True)
    elif c.get("use_first_frame", False):
        raise ConfigError(f"official use_first_frame=True (sparse-causal attention) belongs to the interp stage, "
                          f"not '{stage}'")
    if stage == "vsr":
        temporal = c.get("temporal_module_config") or {}
        if list(temporal.get("attention_block_types", ["", ""])) != ["", ""]:
            raise ConfigError("official temporal_module_config.attention_block_types other than ['', ''] "
                              "(attention inside temporal modules) is not supported")
        levels = list(range(n))
        if sorted(c.get("down_temporal_idx", [])) != levels or sorted(c.get("up_temporal_idx", [])) != levels \
                or not c.get("mid_temporal", False):
            raise ConfigError(f"official temporal modules must be at every level (down_temporal_idx = "
                              f"up_temporal_idx = {levels}, mid_temporal = true)")
        num_class = c.get("num_class_embeds") or 0
        fields.update(low_res_channels=3, temporal_attention_name="attn_temporal", temporal_resblocks=True,
                      temporal_modules=True, num_class_embeds=num_class,
                      max_noise_level=c.get("max_noise_level", 350))
    elif c.get("num_class_embeds"):
        raise ConfigError(f"official num_class_embeds is a VSR (noise-level) argument, not one of stage '{stage}'")
    cfg = UNet3DConfig(**fields)
    cfg.validate()
    return cfg


def unet3d_config_to_official(cfg: UNet3DConfig, stage: str) -> dict:
    """``UNet3DConfig`` → the official constructor kwargs of ``stage`` (inverse of the function above)."""
    down = ["CrossAttnDownBlock3D" if a else "DownBlock3D" for a in cfg.attention_levels]
    up = ["CrossAttnUpBlock3D" if a else "UpBlock3D" for a in reversed(cfg.attention_levels)]
    out = dict(in_channels=cfg.in_channels, out_channels=cfg.out_channels, down_block_types=down,
               up_block_types=up, block_out_channels=list(cfg.block_out_channels),
               layers_per_block=cfg.layers_per_block, norm_num_groups=cfg.norm_num_groups,
               cross_attention_dim=cfg.cross_attention_dim, attention_head_dim=cfg.num_heads,
               use_first_frame=cfg.spatial_attention == "sparse_causal")
    if stage == "vsr":
        levels = list(range(cfg.num_levels))
        out.update(only_cross_attention=list(cfg.cross_attention_only), use_linear_projection=cfg.linear_projection,
                   num_class_embeds=cfg.num_class_embeds, max_noise_level=cfg.max_noise_level,
                   down_temporal_idx=levels, up_temporal_idx=levels, mid_temporal=True, video_condition=False,
                   temporal_module_config=dict(OFFICIAL_CONFIGS["vsr"]["temporal_module_config"]))
    if unet3d_config_from_official(out, stage) != cfg.replace(attention_backend="auto", gradient_checkpointing=False):
        raise ConfigError(f"this U-Net config has no official '{stage}' equivalent")
    return out


class OfficialLaVie(nn.Module):
    """Our ``UNet3D`` behind the official signature of its stage, layout ``(B, C, F, H, W)``:
    base/interp ``forward(sample, timestep, encoder_hidden_states)``; vsr ``forward(sample, timestep, low_res,
    encoder_hidden_states, class_labels)``. Returns the output tensor (not a ``.sample`` wrapper)."""

    def __init__(self, model: UNet3D, stage: str):
        super().__init__()
        self.model, self.stage = model, stage

    @property
    def config(self) -> UNet3DConfig:
        return self.model.config

    def forward(self, sample, timestep, *args, **kwargs):
        if self.stage == "vsr":
            return self._vsr(sample, timestep, *args, **kwargs)
        return self._text(sample, timestep, *args, **kwargs)

    def _text(self, sample, timestep, encoder_hidden_states=None, encoder_attention_mask=None, num_images=0):
        return self.model(sample, timestep, encoder_hidden_states, encoder_attention_mask, num_images=num_images)

    def _vsr(self, sample, timestep, low_res, encoder_hidden_states=None, class_labels=None, num_images=0):
        return self.model(sample, timestep, encoder_hidden_states, low_res=low_res, class_labels=class_labels,
                          num_images=num_images)


def load_lavie(checkpoint: Union[str, Path, StateDict], stage: str, config: Optional[dict] = None) -> OfficialLaVie:
    """Load a released LaVie U-Net (see the module docstring) strictly; returns it in eval mode."""
    cfg = unet3d_config_from_official(config if config is not None else OFFICIAL_CONFIGS[stage], stage)
    source = str(checkpoint) if not isinstance(checkpoint, dict) else "state dict"
    model = UNet3D(cfg)
    load_state_dict_strict(model, read_state_dict(checkpoint), source)
    return OfficialLaVie(model.eval(), stage)


# --------------------------------------------------------------------------------------------------------------
# Initialisation from a diffusers UNet2DConditionModel
# --------------------------------------------------------------------------------------------------------------


def init_from_unet2d(unet2d: Union[str, Path, StateDict], config: Union[UNet3DConfig, str]) -> UNet3D:
    """A new ``UNet3D`` (``config``: a ``UNet3DConfig`` or a stage name for the released size) whose spatial weights
    are the diffusers 2-D U-Net's, one to one. ``unet2d``: a diffusers ``unet/`` folder, a weights file or a state
    dict. Temporal layers keep the official initialisation (zeroed temporal output projections and shift convs);
    extra ``conv_in`` input channels (interpolation's condition latents) start at zero. Strict: a spatial key the
    2-D U-Net lacks, a 2-D key that maps nowhere or a shape mismatch is an error naming it."""
    cfg = unet3d_preset(_PRESET[config]) if isinstance(config, str) else config
    source = str(unet2d) if not isinstance(unet2d, dict) else "state dict"
    sd2d = read_state_dict(unet2d)
    model = UNet3D(cfg)
    own = model.state_dict()
    spatial = {k for k in own if not is_temporal_key(k)}
    missing = sorted(spatial - set(sd2d))
    unexpected = sorted(set(sd2d) - spatial)
    if missing or unexpected:
        parts = [f"{what} key(s) {keys[:8]}{' ...' if len(keys) > 8 else ''}"
                 for what, keys in (("missing spatial", missing), ("unexpected", unexpected)) if keys]
        raise WeightsError(f"{source}: does not match the U-Net's spatial layers: {'; '.join(parts)}")
    new = {}
    for key in spatial:
        value, target = sd2d[key], own[key]
        if key == "conv_in.weight" and value.shape[1] < target.shape[1] and value.shape[0] == target.shape[0]:
            padded = torch.zeros_like(target)
            padded[:, : value.shape[1]] = value
            value = padded
        if tuple(value.shape) != tuple(target.shape):
            raise WeightsError(f"{source}: key '{key}' has shape {tuple(value.shape)}, the U-Net expects "
                                  f"{tuple(target.shape)}")
        new[key] = value.to(target.dtype)
    model.load_state_dict(new, strict=False)
    return model


# diffusers UNet2DConditionModel options that must keep these values (they change the computation, not the keys)
_DIFFUSERS_FIXED = dict(transformer_layers_per_block=1, time_embedding_type="positional", conv_in_kernel=3,
                        conv_out_kernel=3, attention_type="default", addition_embed_type=None, encoder_hid_dim=None,
                        time_cond_proj_dim=None, class_embeddings_concat=False, resnet_out_scale_factor=1.0,
                        resnet_skip_time_act=False, timestep_post_act=None, cross_attention_norm=None,
                        time_embedding_dim=None, time_embedding_act_fn=None, dropout=0.0)


def unet3d_config_from_diffusers(folder: Union[str, Path], stage: str) -> UNet3DConfig:
    """``UNet3DConfig`` for a diffusers ``unet/`` folder (its ``config.json``) inflated to the given stage."""
    path = Path(folder) / "config.json"
    data = json.loads(path.read_text())
    for key, value in _DIFFUSERS_FIXED.items():
        if data.get(key, value) != value:
            raise ConfigError(f"{path}: '{key}' = {data[key]!r} is not supported (only {value!r})")
    keep = {k: v for k, v in data.items() if k in _KNOWN and k not in _IGNORED}
    if data.get("num_attention_heads") is not None:  # newer diffusers name for the head count
        keep["attention_head_dim"] = data["num_attention_heads"]
    if stage == "interp":
        keep["in_channels"] = keep.get("in_channels", 4) + 4
        keep["use_first_frame"] = True
    if stage == "vsr":
        levels = list(range(len(keep["block_out_channels"])))
        keep.update(down_temporal_idx=levels, up_temporal_idx=levels, mid_temporal=True)
    return unet3d_config_from_official(keep, stage)
