"""The design space: every combination builds, runs, trains; temporal mixing; persistence; run-time sizes."""
import itertools

import pytest
import torch

from latte.config import ConfigError, from_dict
from latte.diffusion import create_diffusion
from latte.models import Latte, LatteConfig

from helpers import randomize, tiny

VARIANTS = ["interleaved", "late_fusion", "factorized_attention", "factorized_heads"]
PATCHES = ["frame", "tubelet"]
INJECTIONS = ["adaln", "tokens"]
TEMPORAL = ["absolute", "rope"]
CONDITIONING = ["none", "class", "text"]
COMBOS = list(itertools.product(VARIANTS, PATCHES, INJECTIONS, TEMPORAL, CONDITIONING))


def inputs(model, b=2, frames=4, size=4, num_images=0):
    cfg = model.config
    x = torch.randn(b, cfg.in_channels, frames, size, size)
    kw = {}
    if cfg.conditioning == "class":
        kw["y"] = torch.tensor([0, 2])[:b]
        kw["force_drop_ids"] = torch.tensor([0, 1])[:b]  # one null label so the null row gets a gradient
        if num_images:
            kw["y_images"] = torch.randint(0, 3, (b, num_images))
    if cfg.conditioning == "text":
        kw["text"] = torch.randn(b, 3, cfg.text_dim)
        kw["text_mask"] = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)[:b]
    if num_images:
        kw["num_images"] = num_images
    return x, torch.tensor([5, 600])[:b], kw


@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_every_combination_runs_and_sends_gradient_everywhere(combo):
    model = randomize(tiny(*combo))
    x, t, kw = inputs(model)
    out = model(x, t, **kw)
    assert out.shape == (2, 4, 4, 4, 4)  # (B, 2C, F, H, W)
    out.square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not dead, f"no gradient reaches {dead}"


@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_every_combination_overfits_one_batch(combo):
    torch.manual_seed(0)
    model = tiny(*combo)
    diffusion = create_diffusion("")
    x, _, kw = inputs(model)
    kw.pop("force_drop_ids", None)
    x = x.clamp(-1, 1)
    t = torch.tensor([300, 700])
    noise = torch.randn_like(x)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        loss = diffusion.training_losses(model, x, t, kw, noise=noise)["mse"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], f"{losses[0]:.3f} -> {losses[-1]:.3f}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_temporal_mixing_and_images_skip_it(variant):
    """Changing one video frame changes every video frame's output (temporal attention), never an image's;
    changing an image changes nothing but that image."""
    model = randomize(tiny(variant), std=0.3).eval()
    x = torch.randn(1, 2, 6, 4, 4)  # 4 video frames + 2 images
    t = torch.tensor([10])
    with torch.no_grad():
        base = model(x, t, num_images=2)
        x2 = x.clone()
        x2[:, :, 0] += 1.0
        moved = model(x2, t, num_images=2)
        x3 = x.clone()
        x3[:, :, 5] += 1.0
        image_moved = model(x3, t, num_images=2)
    per_frame = (moved - base).abs().amax(dim=(0, 1, 3, 4))
    assert (per_frame[:4] > 1e-4).all(), per_frame
    assert (per_frame[4:] < 1e-6).all(), per_frame
    per_frame = (image_moved - base).abs().amax(dim=(0, 1, 3, 4))
    assert (per_frame[:5] < 1e-6).all() and per_frame[5] > 1e-4, per_frame


def test_temporal_pe_and_variants_change_the_computation():
    x, t = torch.randn(1, 2, 4, 4, 4), torch.tensor([3])
    outs = {}
    for name, kw in {"abs": {}, "rope": {"temporal": "rope"}, "late": {"variant": "late_fusion"},
                     "fact": {"variant": "factorized_attention"}, "heads": {"variant": "factorized_heads"},
                     "tokens": {"injection": "tokens"}, "single": {"adaln": "single"}}.items():
        torch.manual_seed(0)
        outs[name] = randomize(tiny(depth=4, **kw)).eval()(x, t)  # depth 2 interleaved == late fusion
    for a, b in itertools.combinations(outs, 2):
        assert (outs[a] - outs[b]).abs().max() > 1e-4, (a, b)


def test_official_init_outputs_zero():
    model = tiny()
    x, t, kw = inputs(model)
    assert model(x, t, **kw).abs().max() == 0


def test_runtime_frames_and_resolution_differ_from_config():
    model = randomize(tiny()).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 2, 7, 6, 10), torch.tensor([1]))  # 7 frames, non-square 6x10 latents
    assert out.shape == (1, 4, 7, 6, 10)
    rope = randomize(tiny(temporal="rope")).eval()
    assert rope(torch.randn(1, 2, 9, 8, 8), torch.tensor([1])).shape == (1, 4, 9, 8, 8)


def test_save_and_load_give_identical_outputs(tmp_path):
    model = randomize(tiny("factorized_heads", cond="text", temporal="rope")).eval()
    x, t, kw = inputs(model)
    model.save_pretrained(tmp_path / "m")
    loaded = Latte.from_pretrained(tmp_path / "m").eval()
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(model(x, t, **kw), loaded(x, t, **kw))


def test_gradient_checkpointing_same_gradients():
    a = randomize(tiny("factorized_attention", cond="class"))
    b = randomize(tiny("factorized_attention", cond="class", gradient_checkpointing=True))
    x, t, kw = inputs(a)
    for m in (a, b):
        m(x, t, **kw).square().mean().backward()
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-6, rtol=1e-5, msg=n)


def test_math_attention_equals_sdpa():
    a = randomize(tiny(cond="text"))
    b = randomize(tiny(cond="text", attention_backend="math"))
    x, t, kw = inputs(a)
    torch.testing.assert_close(a(x, t, **kw), b(x, t, **kw), atol=1e-5, rtol=1e-5)


def test_config_validation_names_keys():
    with pytest.raises(ConfigError, match="did you mean 'variant'"):
        from_dict(LatteConfig, {"varient": "interleaved"})
    with pytest.raises(ConfigError, match="variant"):
        from_dict(LatteConfig, {"variant": "spatial_only"})
    with pytest.raises(ConfigError, match="num_heads"):
        from_dict(LatteConfig, {"hidden_size": 30, "num_heads": 4})
    with pytest.raises(ConfigError, match="tubelet_size"):
        from_dict(LatteConfig, {"patch_embedding": "tubelet", "num_frames": 5})
    with pytest.raises(ConfigError, match="depth: expected an integer"):
        from_dict(LatteConfig, {"depth": "deep"})


@pytest.mark.parametrize("injection", INJECTIONS)
def test_text_adaln_reaches_every_block_and_joint_images(injection):
    """With text_adaln the pooled caption joins the conditioning vector: the output depends on the caption even
    without any cross-attention path (proj zeroed), and per-image captions condition their own frames."""
    model = randomize(tiny(cond="text", injection=injection, text_adaln=True))
    x, t, kw = inputs(model)
    model(x, t, **kw).square().mean().backward()
    assert model.text_pooling[1].weight.grad.abs().max() > 0
    with torch.no_grad():
        for blk in model.blocks:
            if hasattr(blk, "cross_attn"):
                blk.cross_attn.proj.weight.zero_()
                blk.cross_attn.proj.bias.zero_()
        other = dict(kw, text=torch.randn_like(kw["text"]))
        assert (model(x, t, **kw) - model(x, t, **other)).abs().max() > 1e-4
        x6 = torch.randn(2, 2, 6, 4, 4)
        image_text = torch.randn(2, 2, 3, 8)
        a = model(x6, t, num_images=2, image_text=image_text, **kw)
        image_text[:, 1] += 1.0  # change the second image's caption: only that frame changes
        b = model(x6, t, num_images=2, image_text=image_text, **kw)
    per_frame = (a - b).abs().amax(dim=(0, 1, 3, 4))
    assert (per_frame[:5] < 1e-6).all() and per_frame[5] > 1e-4, per_frame


def test_text_adaln_requires_text():
    with pytest.raises(ConfigError, match="text_adaln"):
        from_dict(LatteConfig, {"text_adaln": True})


@pytest.mark.parametrize("injection", INJECTIONS)
def test_a_batch_of_images_only_equals_the_images_of_a_joint_batch(injection):
    """num_images = F (no video frame: stills skip every temporal module): each image comes out as it does next to
    a video in a joint batch."""
    model = randomize(tiny(cond="text", injection=injection, text_adaln=True)).eval()
    _, t, kw = inputs(model)
    x6, image_text = torch.randn(2, 2, 6, 4, 4), torch.randn(2, 2, 3, 8)
    with torch.no_grad():
        joint = model(x6, t, num_images=2, image_text=image_text, **kw)
        alone = model(x6[:, :, 4:], t, num_images=2, image_text=image_text, **kw)
    assert alone.shape == joint[:, :, 4:].shape
    assert torch.allclose(alone, joint[:, :, 4:], atol=1e-5), (alone - joint[:, :, 4:]).abs().max()
