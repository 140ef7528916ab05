"""Numerical parity with the official Latte code (fixtures in tests/fixtures/reference, see its README)."""
import json
import os

import pytest
import torch

from latte.diffusion import create_diffusion
from latte.interop.official import (
    CheckpointError,
    latte_state_dict_to_official,
    t2v_state_dict_to_official,
)
from latte.models import Latte, preset
from latte.official import load_latte, load_latte_t2v, read_state_dict, save_official

from helpers import REFERENCE


def fixture(name):
    return torch.load(os.path.join(REFERENCE, name + ".pt"), weights_only=True)


@pytest.mark.parametrize("name", ["latte_tiny_extras1", "latte_tiny_extras2"])
def test_latte_forward_matches_official(name):
    d = fixture(name)
    model = load_latte(d["state_dict"], d["config"])
    with torch.no_grad():
        out = model(d["x"], d["t"], d["y"])
    assert out.shape == d["out"].shape
    torch.testing.assert_close(out, d["out"], atol=1e-5, rtol=0)


def test_class_cfg_matches_official():
    d = fixture("latte_tiny_extras2")
    model = load_latte(d["state_dict"], d["config"])
    x = d["x"]
    with torch.no_grad():
        out = model.forward_with_cfg(torch.cat([x[:1], x[:1]]), torch.tensor([500, 500]), torch.tensor([2, 5]), 3.0)
    torch.testing.assert_close(out, d["cfg_out"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["latte_tiny_extras1", "latte_tiny_extras2"])
def test_training_loss_matches_official(name):
    d = fixture(name)
    model = load_latte(d["state_dict"], d["config"]).model
    diffusion = create_diffusion("")
    with torch.no_grad():  # native layout (B, C, F, H, W); the per-sample means are layout independent
        losses = diffusion.training_losses(model, d["x"].transpose(1, 2), d["t"], {"y": d["y"]},
                                           noise=d["noise"].transpose(1, 2))
    for key in ("loss", "mse", "vb"):
        torch.testing.assert_close(losses[key], d["loss"][key], atol=1e-5, rtol=0)


def test_t2v_forward_matches_official():
    d = fixture("latte_t2v_tiny")
    model = load_latte_t2v(d["state_dict"], d["config"])
    with torch.no_grad():
        out = model(d["x"], d["t"], d["enc"])
    assert out.shape == d["out"].shape
    torch.testing.assert_close(out, d["out"], atol=1e-5, rtol=0)


def test_t2v_mask_is_used():
    d = fixture("latte_t2v_tiny")
    model = load_latte_t2v(d["state_dict"], d["config"])
    full = torch.ones(2, 5, dtype=torch.bool)
    masked = full.clone()
    masked[:, 3:] = False
    with torch.no_grad():
        a = model(d["x"], d["t"], d["enc"], full)
        b = model(d["x"], d["t"], d["enc"], masked)
        c = model(d["x"], d["t"], d["enc"][:, :3])  # padding masked == padding absent (bias -1e4)
    torch.testing.assert_close(a, d["out"], atol=1e-5, rtol=0)
    assert (a - b).abs().max() > 1e-4
    torch.testing.assert_close(b, c, atol=1e-5, rtol=0)


def test_official_round_trip(tmp_path):
    for name in ("latte_tiny_extras2", "latte_t2v_tiny"):
        d = fixture(name)
        loader = load_latte_t2v if "t2v" in name else load_latte
        model = loader(d["state_dict"], d["config"])
        path = tmp_path / f"{name}.pt"
        save_official(model, path)
        back = read_state_dict(path)
        assert set(back) == set(d["state_dict"])
        for k, v in d["state_dict"].items():
            torch.testing.assert_close(back[k], v, atol=1e-6, rtol=0, msg=k)


def test_released_key_layouts_are_covered():
    """Our exporters produce exactly the keys and shapes of the released XL/2 and t2v checkpoints."""
    with open(os.path.join(REFERENCE, "latte_xl2_state_dict_shapes.json")) as f:
        xl = json.load(f)
    with open(os.path.join(REFERENCE, "latte_t2v_state_dict_shapes.json")) as f:
        t2v = json.load(f)
    with torch.device("meta"):
        uncond = Latte(preset("Latte-XL/2"))
        ucf = Latte(preset("Latte-XL/2", conditioning="class", num_classes=101))
        t2v_model = Latte(preset("Latte-T2V"))
    for model, ref in ((uncond, xl["Latte-XL/2 uncond (ffs/sky/taichi)"]),
                       (ucf, xl["Latte-XL/2 class-cond ucf101"]), (t2v_model, t2v)):
        exported = (t2v_state_dict_to_official(model) if model.config.conditioning == "text"
                    else latte_state_dict_to_official(model))
        assert {k: list(v.shape) for k, v in exported.items()} == {k: list(v) for k, v in ref.items()}


def test_strict_loading_names_keys():
    d = fixture("latte_tiny_extras1")
    sd = dict(d["state_dict"])
    sd["blocks.0.attn.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="blocks.0.attn.extra.weight"):
        load_latte(sd, d["config"])
    sd = dict(d["state_dict"])
    del sd["blocks.3.mlp.fc2.bias"]
    with pytest.raises(CheckpointError, match="blocks.3.mlp.fc2.bias"):
        load_latte(sd, d["config"])
    sd = dict(d["state_dict"])
    with pytest.raises(CheckpointError, match="temp_embed"):
        load_latte(sd, {**d["config"], "num_frames": 8})


def test_checkpoint_wrappers(tmp_path):
    d = fixture("latte_tiny_extras1")
    for wrap in ("ema", "model", None):
        path = tmp_path / f"{wrap}.pt"
        torch.save({wrap: d["state_dict"]} if wrap else d["state_dict"], path)
        model = load_latte(str(path), d["config"])
        with torch.no_grad():
            torch.testing.assert_close(model(d["x"], d["t"]), d["out"], atol=1e-5, rtol=0)


def test_parameter_counts_match_official_table():
    expected = {"Latte-S/2": 32_480_672, "Latte-B/2": 129_547_040, "Latte-L/2": 456_815_648,
                "Latte-XL/2": 673_681_568}
    for name, count in expected.items():
        with torch.device("meta"):
            model = Latte(preset(name, input_size=32, num_frames=16))
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == count, name
    with torch.device("meta"):
        ucf = Latte(preset("Latte-XL/2", conditioning="class", num_classes=101))
    assert sum(p.numel() for p in ucf.parameters()) == 673_799_072
