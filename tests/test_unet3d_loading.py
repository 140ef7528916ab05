"""Loading the LaVie U-Nets: strictness, both checkpoint forms, files, our format, config mapping, diffusers init."""
import os

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

from latte.config import ConfigError
from latte.interop.lavie import (
    OFFICIAL_CONFIGS,
    init_from_unet2d,
    unet3d_config_from_diffusers,
    unet3d_config_from_official,
    unet3d_config_to_official,
)
from latte.models import UNet3D, unet3d_preset
from latte.io import InputError, WeightsError
from latte.official import load_lavie

from helpers import REFERENCE


def fixture(name):
    return torch.load(os.path.join(REFERENCE, f"lavie_{name}_tiny.pt"), weights_only=True)


@pytest.fixture(scope="module")
def base():
    return fixture("base")


@pytest.mark.parametrize("wrap", [False, True], ids=["plain", "ema"])
def test_missing_key_is_named(base, wrap):
    sd = dict(base["state_dict"])
    del sd["down_blocks.0.attentions.0.transformer_blocks.0.attn_temp.to_q.weight"]
    with pytest.raises(WeightsError, match=r"missing 1 key\(s\):.*attn_temp\.to_q\.weight"):
        load_lavie({"ema": sd} if wrap else sd, "base", base["config"])


@pytest.mark.parametrize("wrap", [False, True], ids=["plain", "ema"])
def test_unexpected_key_is_named(base, wrap):
    sd = dict(base["state_dict"], **{"mid_block.attentions.0.extra_layer.weight": torch.zeros(3)})
    with pytest.raises(WeightsError, match=r"unexpected 1 key\(s\):.*mid_block\.attentions\.0\.extra_layer"):
        load_lavie({"ema": sd} if wrap else sd, "base", base["config"])


@pytest.mark.parametrize("wrap", [False, True], ids=["plain", "ema"])
def test_wrong_shape_is_named(base, wrap):
    sd = dict(base["state_dict"])
    key = "up_blocks.1.attentions.0.transformer_blocks.0.attn_temp.time_rel_pos_bias.relative_attention_bias.weight"
    sd[key] = torch.zeros(16, 1)
    with pytest.raises(WeightsError, match=r"wrong shape:.*bias\.weight \(16, 1\) \(model: \(32, 1\)\)"):
        load_lavie({"ema": sd} if wrap else sd, "base", base["config"])


def test_stage_mismatch_is_an_error(base):
    """The base checkpoint is not an interpolation model (8 input channels, no RoPE keys)."""
    with pytest.raises(WeightsError, match="unexpected .*rotary_emb"):
        load_lavie(base["state_dict"], "interp", base["config"])


def test_files_pt_and_safetensors(tmp_path):
    d = fixture("vsr")
    torch.save({"ema": d["state_dict"]}, tmp_path / "lavie_vsr.pt")
    shared = {k: v.clone() for k, v in d["state_dict"].items()}  # safetensors refuses aliased tensors
    save_file(shared, str(tmp_path / "lavie_vsr.safetensors"))
    args = (d["x"], d["t"], d["low_res"], d["encoder_hidden_states"], d["noise_level"])
    with torch.no_grad():
        for path in ("lavie_vsr.pt", "lavie_vsr.safetensors"):
            out = load_lavie(tmp_path / path, "vsr", d["config"])(*args)
            torch.testing.assert_close(out, d["out"], atol=1e-5, rtol=0)


def test_save_load_roundtrip(tmp_path):
    d = fixture("interp")
    model = load_lavie(d["state_dict"], "interp", d["config"]).model
    model.save_pretrained(tmp_path / "unet")
    assert sorted(p.name for p in (tmp_path / "unet").iterdir()) == ["config.json", "model.safetensors"]
    again = UNet3D.from_pretrained(tmp_path / "unet")
    assert again.config == model.config
    with torch.no_grad():
        torch.testing.assert_close(again(d["sample"], d["t"], d["encoder_hidden_states"]), d["out"],
                                   atol=1e-5, rtol=0)
    with pytest.raises(InputError, match="config.json not found: a UNet3D model folder"):
        UNet3D.from_pretrained(tmp_path)


@pytest.mark.parametrize("stage", ["base", "interp", "vsr"])
def test_official_config_mapping(stage):
    ours = unet3d_config_from_official(OFFICIAL_CONFIGS[stage], stage)
    assert ours == unet3d_preset(f"lavie-{stage}")
    back = unet3d_config_to_official(ours, stage)
    assert unet3d_config_from_official(back, stage) == ours
    tiny = unet3d_config_from_official(fixture(stage)["config"], stage)
    assert unet3d_config_from_official(unet3d_config_to_official(tiny, stage), stage) == tiny


def test_official_config_errors():
    with pytest.raises(ConfigError, match="unknown official U-Net argument.*'blocks_out'"):
        unet3d_config_from_official({"blocks_out": 3}, "base")
    with pytest.raises(ConfigError, match="'upcast_attention' = True"):
        unet3d_config_from_official({"upcast_attention": True}, "base")
    with pytest.raises(ConfigError, match="unknown LaVie stage 'sr'"):
        unet3d_config_from_official({}, "sr")
    with pytest.raises(ConfigError, match="did you mean 'lavie-vsr'"):
        unet3d_preset("lavie-vrs")


# -- initialisation from a diffusers 2-D U-Net ------------------------------------------------------------------

_COMMON = dict(sample_size=8, out_channels=4, layers_per_block=1, norm_num_groups=8, cross_attention_dim=16)
_UNET2D = {
    "base": dict(in_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=(40, 40),
                 attention_head_dim=1),
    "interp": dict(in_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=(32, 32),
                   attention_head_dim=2),
    "vsr": dict(in_channels=7, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), block_out_channels=(32, 32), attention_head_dim=1,
                only_cross_attention=[False, True], use_linear_projection=True, num_class_embeds=400),
}


@pytest.mark.parametrize("stage", ["base", "interp", "vsr"])
def test_init_from_diffusers_unet2d(tmp_path, stage):
    """Spatial weights map one to one: with the temporal layers made the identity, one frame through the
    inflated model equals the 2-D U-Net. Temporal layers start as the official init."""
    unet2d = UNet2DConditionModel(**_COMMON, **_UNET2D[stage]).eval()
    unet2d.save_pretrained(tmp_path)
    cfg = unet3d_config_from_diffusers(tmp_path, stage)
    model = init_from_unet2d(tmp_path, cfg).eval()
    sd = model.state_dict()
    # official initialisation of the new layers
    zeroed = [k for k in sd if k.endswith("to_out.0.weight") and "temp" in k] + [k for k in sd if "shift_conv" in k]
    assert zeroed and all(sd[k].abs().max() == 0 for k in zeroed)
    if stage == "interp":
        assert sd["conv_in.weight"][:, 4:].abs().max() == 0
        torch.testing.assert_close(sd["conv_in.weight"][:, :4], unet2d.state_dict()["conv_in.weight"])
    for name, p in model.temporal_parameters():  # the official init is not the identity: make it so
        if name.endswith("to_out.0.bias") or "resblock_temporal.conv2" in name:
            p.data.zero_()
    x, text, t = torch.randn(2, 4, 1, 8, 8), torch.randn(2, 5, 16), torch.tensor([10, 500])
    with torch.no_grad():
        if stage == "vsr":
            low_res, level = torch.randn(2, 3, 1, 8, 8), torch.tensor([20, 300])
            ref = unet2d(torch.cat([x, low_res], 1)[:, :, 0], t, text, class_labels=level).sample
            out = model(x, t, text, low_res=low_res, class_labels=level)
        else:
            ref = unet2d(x[:, :, 0], t, text).sample
            out = model(torch.cat([x, torch.randn_like(x)], 1) if stage == "interp" else x, t, text)
    torch.testing.assert_close(out[:, :, 0], ref, atol=1e-5, rtol=0)


def test_init_from_diffusers_mismatch_is_named(tmp_path):
    unet2d = UNet2DConditionModel(**_COMMON, **_UNET2D["base"])
    sd = unet2d.state_dict()
    del sd["mid_block.resnets.0.conv1.weight"]
    sd["mid_block.foo.weight"] = torch.zeros(1)
    cfg = unet3d_config_from_official(dict(OFFICIAL_CONFIGS["base"], block_out_channels=[40, 40],
                                           down_block_types=["CrossAttnDownBlock3D", "DownBlock3D"],
                                           up_block_types=["UpBlock3D", "CrossAttnUpBlock3D"], layers_per_block=1,
                                           norm_num_groups=8, cross_attention_dim=16, attention_head_dim=1), "base")
    with pytest.raises(WeightsError, match=r"missing spatial key.*mid_block\.resnets\.0\.conv1\.weight.*"
                                              r"unexpected key.*mid_block\.foo\.weight"):
        init_from_unet2d(sd, cfg)
