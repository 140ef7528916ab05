"""The LaVie U-Nets reproduce the official code: tiny fixtures, the temporal-attention unit, released key tables."""
import json
import os

import pytest
import torch

from latte.models import UNet3D, unet3d_preset
from latte.models.unet3d import TemporalAttention, relative_position_buckets
from latte.official import load_lavie

from conftest import REFERENCE


def fixture(name):
    return torch.load(os.path.join(REFERENCE, f"lavie_{name}_tiny.pt"), weights_only=True)


@pytest.mark.parametrize("backend", ["math", "sdpa"])
def test_base_reproduces_official(backend):
    d = fixture("base")
    model = load_lavie(d["state_dict"], "base", d["config"])
    model.model.config.attention_backend = backend
    with torch.no_grad():
        out = model(d["x"], d["t"], d["encoder_hidden_states"])
        first = model(d["x"][:1], 999, d["encoder_hidden_states"][:1])  # python-int timestep
    torch.testing.assert_close(out, d["out"], atol=1e-5, rtol=0)
    torch.testing.assert_close(first, d["out_t999_first"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["math", "sdpa"])
def test_interp_reproduces_official(backend):
    d = fixture("interp")
    model = load_lavie(d["state_dict"], "interp", d["config"])
    model.model.config.attention_backend = backend
    assert torch.equal(d["sample"], torch.cat([d["x_t"], d["cond"]], dim=1))
    with torch.no_grad():
        out = model(d["sample"], d["t"], d["encoder_hidden_states"])
    torch.testing.assert_close(out, d["out"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["math", "sdpa"])
def test_vsr_reproduces_official(backend):
    d = fixture("vsr")
    model = load_lavie({"ema": d["state_dict"]}, "vsr", d["config"])
    model.model.config.attention_backend = backend
    with torch.no_grad():
        out = model(d["x"], d["t"], d["low_res"], d["encoder_hidden_states"], d["noise_level"])
    torch.testing.assert_close(out, d["out"], atol=1e-5, rtol=0)


def test_temporal_attention_unit_bias_and_buckets_exact():
    u = fixture("base")["temporal_attention_unit"]
    cfg = u["config"]
    assert (cfg["rotary_dim"], cfg["num_buckets"], cfg["max_distance"]) == (32, 32, 32)
    attn = TemporalAttention(cfg["query_dim"], cfg["heads"], rope=True)
    attn.load_state_dict(u["state_dict"])
    with torch.no_grad():
        for backend in ("math", "sdpa"):
            torch.testing.assert_close(attn(u["x"], backend), u["out"], atol=1e-5, rtol=0)
        assert torch.equal(attn.time_rel_pos_bias(u["x"].shape[1]), u["bias"])
    for n, table in u["buckets"].items():
        assert torch.equal(relative_position_buckets(int(n)), table), n
    # the spec's statements: |n| = 8..15 -> 8,8,9,9,10,10,11,11; keys after the query use buckets 16..31
    b = relative_position_buckets(61)
    assert b[15, 0:8].flip(0).tolist() == [8, 8, 9, 9, 10, 10, 11, 11]
    assert b[0, 1] == 17 and b[1, 0] == 1 and b[0, 60] == 31


@pytest.mark.parametrize("stage", ["base", "interp", "vsr"])
def test_full_size_keys_and_shapes_equal_released_tables(stage):
    with open(os.path.join(REFERENCE, f"lavie_{stage}_state_dict_shapes.json")) as f:
        released = json.load(f)
    with torch.device("meta"):
        model = UNet3D(unet3d_preset(f"lavie-{stage}"))
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(ours) - set(released)) == []
    assert sorted(set(released) - set(ours)) == []
    assert {k: v for k, v in ours.items() if released[k] != v} == {}
