"""The FLOP counter: a hand count for a tiny model, and agreement with torch's op-level counter everywhere."""
import itertools

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from latte.models import Latte, LatteConfig, preset
from latte.models.flops import forward_flops


def test_tiny_model_matches_hand_count():
    # Unconditional interleaved model, batch 1: 4 frames of 8x8 latents, p=2 -> N=16 tokens/frame, T=64 tokens,
    # D=32, 4 heads (head dim 8), MLP 128, 2 blocks (one spatial, one temporal), learned sigma (8 output channels).
    cfg = LatteConfig(input_size=8, num_frames=4, in_channels=4, patch_size=2, hidden_size=32, depth=2,
                      num_heads=4)
    embed = 2 * 64 * (4 * 2 * 2) * 32                    # patch conv as a (T, C·p·p) x (C·p·p, D) matmul
    timestep = 2 * 256 * 32 + 2 * 32 * 32               # Linear(256, D), Linear(D, D) on one row
    adaln = 2 * (2 * 32 * 6 * 32) + 2 * 32 * 2 * 32     # 6D per block, 2D in the final layer
    qkv_proj = 2 * 64 * 32 * 96 + 2 * 64 * 32 * 32      # per block
    spatial_scores = 2 * 2 * (4 * 4) * 16 * 16 * 8      # QK^T and AV: 4 frames x 4 heads, 16x16 scores, hd 8
    temporal_scores = 2 * 2 * (16 * 4) * 4 * 4 * 8      # 16 positions x 4 heads, 4x4 scores
    mlp = 2 * (2 * 64 * 32 * 128)                       # fc1 + fc2, per block
    final = 2 * 64 * 32 * (2 * 2 * 8)
    count = forward_flops(cfg)
    assert count.parts["embed"] == embed
    assert count.parts["conditioning"] == timestep + adaln
    assert count.parts["attention_scores"] == spatial_scores + temporal_scores
    assert count.parts["mlp"] == 2 * mlp
    assert count.total == embed + timestep + adaln + 2 * qkv_proj + spatial_scores + temporal_scores + 2 * mlp + final
    assert count.training == 3 * count.total
    assert forward_flops(cfg, batch=3).total == 3 * count.total  # linear in batch


def test_latte_xl2_is_in_the_expected_range():
    # Latte-XL/2 at 16x32x32 latents: ~28 blocks x 4096 tokens x 24·D² ≈ 3.65 TFLOP of linears plus attention.
    total = forward_flops(preset("Latte-XL/2")).total
    assert 3.6e12 < total < 4.3e12


COMBOS = [c for c in itertools.product(
    ["interleaved", "late_fusion", "factorized_attention", "factorized_heads"],
    ["adaln-block", "adaln-single", "tokens"], ["none", "class", "text"], ["frame", "tubelet"], [0, 2])
    if not (c[3] == "tubelet" and c[4])]


@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(map(str, c)) for c in COMBOS])
def test_counter_agrees_with_torch_flop_counter(combo):
    """torch's FlopCounterMode counts every mm/bmm/conv executed (math attention: CPU flash SDPA is uncounted)."""
    variant, injection, conditioning, patches, num_images = combo
    cfg = LatteConfig(input_size=8, num_frames=4, in_channels=3, patch_size=2, hidden_size=32, depth=4,
                      num_heads=4, variant=variant, injection=injection.split("-")[0],
                      adaln=injection.split("-")[-1] if "-" in injection else "block", conditioning=conditioning,
                      num_classes=5, text_dim=12, patch_embedding=patches, attention_backend="math")
    model, b, length = Latte(cfg).eval(), 2, 7
    per_image = num_images > 0 and conditioning != "none"
    kw = {"num_images": num_images}
    if conditioning == "class":
        kw["y"] = torch.tensor([1, 2])
        if per_image:
            kw["y_images"] = torch.tensor([[0, 1], [2, 3]])
    if conditioning == "text":
        kw["text"], kw["text_mask"] = torch.randn(b, length, 12), torch.ones(b, length, dtype=torch.bool)
        if per_image:
            kw["image_text"] = torch.randn(b, num_images, length, 12)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(b, 3, 4, 8, 6), torch.tensor([3, 9]), **kw)
    expected = forward_flops(cfg, batch=b, height=8, width=6, num_images=num_images, text_length=length,
                             per_image_conditioning=per_image)
    assert counter.get_total_flops() == expected.total
