"""UNet3D behaviour beyond the fixtures: joint image-video input, sizes, backends, checkpointing, bf16, helpers."""
import pytest
import torch

from latte.config import ConfigError
from latte.models import UNet3D, UNet3DConfig, unet3d_preset

TINY = dict(block_out_channels=(32, 32), layers_per_block=1, num_heads=1, norm_num_groups=8, cross_attention_dim=16)
STAGES = {
    "base": dict(TINY, attention_levels=(True, False), cross_attention_only=(False, False)),
    "interp": dict(TINY, in_channels=8, attention_levels=(True, False), cross_attention_only=(False, False),
                   num_heads=2, spatial_attention="sparse_causal", temporal_attention="plain",
                   temporal_attention_after_ff=True),
    "vsr": dict(TINY, in_channels=7, low_res_channels=3, attention_levels=(False, True),
                cross_attention_only=(False, True), linear_projection=True, temporal_attention_name="attn_temporal",
                temporal_resblocks=True, temporal_modules=True, num_class_embeds=400),
}


def tiny_model(stage, **changes):
    model = UNet3D(UNet3DConfig(**{**STAGES[stage], **changes}))
    with torch.no_grad():  # the official init zeroes temporal outputs: randomise so every path matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def inputs(stage, b=2, f=5, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = 8 if stage == "interp" else 4
    kw = dict(sample=torch.randn(b, c, f, h, w, generator=g), timestep=torch.tensor([10, 700][:b]),
              encoder_hidden_states=torch.randn(b, 5, 16, generator=g))
    if stage == "vsr":
        kw.update(low_res=torch.randn(b, 3, f, h, w, generator=g), class_labels=torch.tensor([0, 350][:b]))
    return kw


@pytest.mark.parametrize("stage", ["base", "interp", "vsr"])
def test_joint_image_video_images_depend_only_on_themselves(stage):
    """The last num_images frames are images: changing the video frames or another image leaves an image's
    output unchanged, and an image gives the same output as when run alone (a batch of one image)."""
    model = tiny_model(stage)
    kw = inputs(stage, f=6)
    num_images = 2
    with torch.no_grad():
        out = model(**kw, num_images=num_images)
        changed = {k: v.clone() if torch.is_tensor(v) else v for k, v in kw.items()}
        changed["sample"][:, :, :4] += torch.randn_like(changed["sample"][:, :, :4])
        changed["sample"][:, :, 4] *= -1.0  # image 0 changes; image 1 must not notice
        if stage == "vsr":
            changed["low_res"][:, :, :5] += 1.0
        out2 = model(**changed, num_images=num_images)
        torch.testing.assert_close(out2[:, :, 5], out[:, :, 5], atol=1e-5, rtol=0)
        assert (out2[:, :, :5] - out[:, :, :5]).abs().amax(dim=(0, 1, 3, 4)).min() > 1e-3
        alone = {k: v[:, :, 5:6] if k in ("sample", "low_res") else v for k, v in kw.items()}
        torch.testing.assert_close(model(**alone, num_images=1)[:, :, 0], out[:, :, 5], atol=1e-5, rtol=0)
        # the video part is the same as without images
        video = {k: v[:, :, :4] if k in ("sample", "low_res") else v for k, v in kw.items()}
        torch.testing.assert_close(model(**video), out[:, :, :4], atol=1e-5, rtol=0)


@pytest.mark.parametrize("stage", ["base", "interp", "vsr"])
@pytest.mark.parametrize("size", [(3, 9, 13), (1, 6, 10), (7, 8, 8)])
def test_any_frame_count_and_non_power_of_two_sizes(stage, size):
    f, h, w = size
    model = tiny_model(stage)
    with torch.no_grad():
        out = model(**inputs(stage, f=f, h=h, w=w))
    assert out.shape == (2, 4, f, h, w) and torch.isfinite(out).all()


@pytest.mark.parametrize("stage", ["base", "interp", "vsr"])
def test_sdpa_equals_math(stage):
    kw = inputs(stage)
    torch.manual_seed(1)
    model = tiny_model(stage, attention_backend="math")
    with torch.no_grad():
        ref = model(**kw, num_images=1)
        model.config.attention_backend = "sdpa"
        torch.testing.assert_close(model(**kw, num_images=1), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("stage", ["base", "vsr"])
def test_gradient_checkpointing_same_gradients(stage):
    kw = inputs(stage, f=3)
    model = tiny_model(stage).train()
    grads = []
    for ckpt in (False, True):
        model.config.gradient_checkpointing = ckpt
        model.zero_grad()
        model(**kw, num_images=1).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == len(list(model.parameters()))
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5, msg=name)


def test_bf16_autocast_close_to_float32():
    model = tiny_model("vsr")
    kw = inputs("vsr")
    with torch.no_grad():
        ref = model(**kw)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(**kw)
    assert out.shape == ref.shape
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max()


def test_noise_level_and_input_errors():
    model = tiny_model("vsr")
    kw = inputs("vsr")
    with pytest.raises(ValueError, match="noise level.*<= 350"):
        model(**dict(kw, class_labels=torch.tensor([0, 351])))
    with pytest.raises(ValueError, match="pass low_res"):
        model(**dict(kw, low_res=None))
    with pytest.raises(ValueError, match="pass class_labels"):
        model(**dict(kw, class_labels=None))
    with pytest.raises(ValueError, match="num_images"):
        model(**kw, num_images=6)
    with pytest.raises(ValueError, match="sample has 6 channels"):
        model(**dict(kw, sample=kw["sample"][:, :3]))


def test_text_per_frame_and_mask():
    """Text given per frame equals the shared text repeated; a mask of ones changes nothing, masking changes."""
    model = tiny_model("base")
    kw = inputs("base", f=3)
    text = kw["encoder_hidden_states"]
    with torch.no_grad():
        ref = model(**kw)
        per_frame = model(**dict(kw, encoder_hidden_states=text[:, None].expand(-1, 3, -1, -1)))
        torch.testing.assert_close(per_frame, ref, atol=1e-6, rtol=0)
        torch.testing.assert_close(model(**kw, encoder_attention_mask=torch.ones(2, 5)), ref, atol=1e-6, rtol=0)
        mask = torch.tensor([[1, 1, 0, 0, 0]] * 2)
        assert (model(**kw, encoder_attention_mask=mask) - ref).abs().max() > 1e-4


def test_block_and_temporal_parameter_listing():
    model = tiny_model("vsr")
    blocks = model.repeated_blocks()
    kinds = {type(b).__name__ for b in blocks}
    assert kinds == {"ResBlock", "Transformer3D", "TemporalModule"}
    # 2 down + 2 mid + 4 up ResBlocks, 1 + 1 + 2 transformers, 5 temporal modules (+1 ResBlock inside each)
    assert len(blocks) == 8 + 4 + 5 + 5
    names = [n for n, _ in model.temporal_parameters()]
    assert names and all("temp" in n for n in names)
    assert any(n.startswith("down_temporal_blocks.0.") for n in names)
    assert any(".resblock_temporal." in n for n in names) and any(".attn_temporal.to_q." in n for n in names)
    spatial = [n for n, _ in model.named_parameters() if n not in set(names)]
    assert "conv_in.weight" in spatial and not any("temp" in n for n in spatial)
    # the rotary frequencies are stored (released checkpoints have them) but are not trainable parameters
    assert "temporal_rotary_emb.freqs" in model.state_dict()
    assert not any(n.endswith("freqs") for n, _ in model.named_parameters())


def test_config_validation():
    with pytest.raises(ConfigError, match="attention_levels has 3 entries"):
        UNet3DConfig(**dict(STAGES["base"], attention_levels=(True, False, False))).validate()
    with pytest.raises(ConfigError, match="rotates 32 features per head"):
        unet3d_preset("lavie-base", num_heads=16, block_out_channels=(320, 640, 1280, 256))
