"""The fast execution paths compute the same function as the reference (official-style) path.

- SDPA attention vs explicit softmax (``attention_backend='math'``), float32: outputs and gradients within 1e-5.
- bf16 autocast vs float32 (documented tolerance): on a randomised tiny model the bf16 output's error is below
  3% of the output's RMS (bf16 keeps 8 mantissa bits, ~0.4% per rounding, accumulated over the blocks), and a
  10-step training run's losses stay within 1% of float32's at every step.
"""
import pytest
import torch

from latte.diffusion import create_diffusion
from latte.models import Latte, LatteConfig

PATH_COMBOS = [
    dict(variant="interleaved", conditioning="class"),
    dict(variant="late_fusion", temporal_pe="rope"),
    dict(variant="factorized_attention", conditioning="text", injection="tokens"),
    dict(variant="factorized_heads", conditioning="class", injection="tokens"),
    dict(variant="interleaved", conditioning="text", adaln="single", pe_base_size=2),
]


def tiny_config(**kw) -> LatteConfig:
    base = dict(input_size=8, num_frames=4, in_channels=4, patch_size=2, hidden_size=32, depth=4, num_heads=4,
                num_classes=5, text_dim=12)
    return LatteConfig(**{**base, **kw})


def randomized(cfg: LatteConfig, seed: int = 1) -> Latte:
    """Same random weights for any ``attention_backend`` (official init zeroes the output paths)."""
    torch.manual_seed(0)
    model = Latte(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def inputs(cfg: LatteConfig, b: int = 2, num_images: int = 0):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(b, cfg.in_channels, cfg.num_frames, cfg.input_size, cfg.input_size, generator=g)
    kw = {"num_images": num_images}
    if cfg.conditioning == "class":
        kw["y"] = torch.tensor([1, 4])[:b]
    if cfg.conditioning == "text":
        kw["text"] = torch.randn(b, 5, cfg.text_dim, generator=g)
        kw["text_mask"] = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)[:b]
    return x, torch.tensor([3, 700])[:b], kw


@pytest.mark.parametrize("combo", PATH_COMBOS, ids=[c["variant"] + "-" + c.get("conditioning", "none")
                                                     for c in PATH_COMBOS])
def test_sdpa_equals_math_attention_forward_and_backward(combo):
    sdpa = randomized(tiny_config(**combo, attention_backend="sdpa"))
    math = randomized(tiny_config(**combo, attention_backend="math"))
    x, t, kw = inputs(sdpa.config, num_images=1 if combo["variant"] == "interleaved" else 0)
    out_sdpa, out_math = sdpa(x, t, **kw), math(x, t, **kw)
    torch.testing.assert_close(out_sdpa, out_math, atol=1e-5, rtol=1e-5)
    out_sdpa.square().mean().backward()
    out_math.square().mean().backward()
    for (name, a), (_, b) in zip(sdpa.named_parameters(), math.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_bf16_autocast_forward_within_tolerance(backend):
    """Both attention kernels under bf16 (on CPU the math path is the faster one in bf16)."""
    cfg = tiny_config(conditioning="class", attention_backend=backend)
    model = randomized(cfg).eval()
    x, t, kw = inputs(cfg)
    with torch.no_grad():
        ref = model(x, t, **kw)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = model(x, t, **kw)
    assert fast.dtype == torch.bfloat16  # autocast really ran the matmuls in bf16
    rel = (fast.float() - ref).norm() / ref.norm()
    assert 1e-5 < rel < 0.03, f"bf16 relative error {rel:.4f}"


def test_auto_backend_is_sdpa_in_float32_and_explicit_softmax_in_cpu_bf16():
    """'auto' (the default) picks the faster kernel per precision: the same numbers as that backend, bit for bit."""
    models = {b: randomized(tiny_config(conditioning="class", attention_backend=b)).eval()
              for b in ("auto", "sdpa", "math")}
    assert LatteConfig().attention_backend == "auto"
    x, t, kw = inputs(models["auto"].config)
    with torch.no_grad():
        assert torch.equal(models["auto"](x, t, **kw), models["sdpa"](x, t, **kw))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto, math, sdpa = (models[b](x, t, **kw) for b in ("auto", "math", "sdpa"))
    assert torch.equal(auto, math) and not torch.equal(auto, sdpa)


def _losses(precision, steps=10):
    torch.manual_seed(0)
    cfg = tiny_config(conditioning="class")
    model = Latte(cfg).train()  # official init, as a real run
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0)
    diffusion = create_diffusion("")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 4, 8, 8, generator=g)
    y = torch.tensor([0, 3])
    losses = []

    def forward(xt, t, **kw):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            return model(xt, t, **kw).float()

    t, noise = torch.tensor([100, 800]), torch.randn(x.shape, generator=g)  # a fixed target: loss must fall
    for _ in range(steps):
        loss = diffusion.training_losses(forward, x, t, {"y": y}, noise=noise)["loss"].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_bf16_loss_curve_matches_float32():
    fp32, bf16 = _losses("float32"), _losses("bf16")
    assert fp32[-1] < 0.95 * fp32[0]  # the run does learn
    for step, (a, b) in enumerate(zip(fp32, bf16)):
        assert abs(a - b) <= 0.01 * abs(a), f"step {step}: float32 {a:.4f} vs bf16 {b:.4f}"
