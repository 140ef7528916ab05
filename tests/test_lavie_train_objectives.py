"""LaVie training objectives on hand-computed tiny examples: the interpolation condition (official 16 -> 61 map and
its ×k generalisation), condition noise augmentation, the super-resolution pair (downsampling, aligned crops,
low-resolution noise augmentation on the scaled-linear schedule, v target), and the synthetic ground truth of
the cascade (the same clip at k x the frame rate and s x the size)."""
import math
import os

import numpy as np
import pytest
import torch

from latte.data.synthetic import render_clip
from latte.data.transforms import (downsample, expand_base_frames, interpolation_condition,
                                   interpolation_source_frames, random_crop_offsets)
from latte.diffusion import noise_augmentation
from latte.diffusion.gaussian import GaussianDiffusion, beta_schedule
from latte.training.tasks.lavie_objectives import (interpolation_baseline, interpolation_inputs,
                                                   super_resolution_inputs)

from helpers import REFERENCE

PIPELINE = torch.load(os.path.join(REFERENCE, "lavie_pipeline_tiny.pt"), weights_only=True)
LINEAR = GaussianDiffusion(beta_schedule("linear", 1000), learn_sigma=False)
LINEAR_V = GaussianDiffusion(beta_schedule("linear", 1000), learn_sigma=False, prediction_type="v_prediction")


# ---------------------------------------------------------------------------------------------- interpolation
def test_official_16_to_61_map():
    ref = PIPELINE["interp_conditioning"]
    idx = interpolation_source_frames(16, 4)
    assert idx.tolist() == ref["base_frame_of_output"].tolist()
    assert np.bincount(idx).tolist() == [3] + [4] * 14 + [2]  # spec §8
    cond = expand_base_frames(ref["base16"], 4)
    assert torch.equal(cond, ref["copied_from_base16"])
    # the official route: slots filled with base frames, latents picked at 0,4,...,60, x4, trimmed [1:-2]
    assert torch.equal(expand_base_frames(ref["latents_of_read_frames"][:, :, ref["lr_indice"]], 4), ref["copied"])


@pytest.mark.parametrize("k, expected", [
    (1, [0, 1, 2]),
    (2, [0, 0, 1, 1, 2]),  # the midpoint goes to the earlier frame
    (3, [0, 0, 1, 1, 1, 2, 2]),  # nearest, no ties: (j+1)//3
    (4, [0, 0, 0, 1, 1, 1, 1, 2, 2]),
])
def test_interpolation_map_generalises_to_factor_k(k, expected):
    idx = interpolation_source_frames(3, k)
    assert idx.tolist() == expected and len(idx) == k * 2 + 1
    assert idx[::k].tolist() == [0, 1, 2]  # every k-th output frame is conditioned on its own base frame
    j = np.arange(len(idx))
    assert (np.abs(j / k - idx) <= 0.5).all()  # nearest base frame


def test_interpolation_condition_from_one_high_rate_clip():
    video = torch.arange(9.0).reshape(1, 1, 9, 1, 1).expand(2, 3, 9, 2, 2)  # frame j has value j
    cond = interpolation_condition(video, 4)
    assert cond.shape == video.shape
    assert cond[0, 0, :, 0, 0].tolist() == [0, 0, 0, 4, 4, 4, 4, 8, 8]
    with pytest.raises(ValueError, match=r"4·\(n−1\)\+1 frames"):
        interpolation_condition(video[:, :, :8], 4)


def test_interpolation_inputs_and_condition_augmentation():
    x0 = torch.tensor([1.0, -2.0]).reshape(1, 1, 2, 1, 1)
    cond = torch.tensor([0.5, 0.5]).reshape(1, 1, 2, 1, 1)
    noise = torch.tensor([0.25, 1.0]).reshape(1, 1, 2, 1, 1)
    cond_noise = torch.tensor([-1.0, 2.0]).reshape(1, 1, 2, 1, 1)
    t, ct = torch.tensor([999]), torch.tensor([10])
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    model_input, target = interpolation_inputs(LINEAR, x0, cond, t, noise)
    assert model_input.shape == (1, 2, 2, 1, 1) and torch.equal(target, noise)
    a = abar[999]
    expected = [math.sqrt(a) * 1.0 + math.sqrt(1 - a) * 0.25, math.sqrt(a) * -2.0 + math.sqrt(1 - a) * 1.0]
    assert model_input[0, 0, :, 0, 0].tolist() == pytest.approx(expected, abs=1e-6)
    assert model_input[0, 1, :, 0, 0].tolist() == [0.5, 0.5]  # condition passed clean
    augmented, _ = interpolation_inputs(LINEAR, x0, cond, t, noise, ct, cond_noise)
    a = abar[10]
    assert augmented[0, 1, :, 0, 0].tolist() == pytest.approx(
        [math.sqrt(a) * 0.5 - math.sqrt(1 - a), math.sqrt(a) * 0.5 + 2 * math.sqrt(1 - a)], abs=1e-6)
    assert torch.equal(augmented[:, :1], model_input[:, :1])


# ------------------------------------------------------------------------------------------ super-resolution
def test_scaled_linear_augmentation_matches_official():
    ref = PIPELINE["vsr_noise_aug"]
    assert ref["config"]["beta_schedule"] == "scaled_linear"
    aug = noise_augmentation()
    n = torch.tensor([ref["noise_level"]])
    # the official coefficients are float32 cumulative products, ours float64 (then cast): equal to 2e-6
    assert float(aug.sqrt_alphas_cumprod[50]) == pytest.approx(ref["sqrt_alpha_cumprod"], abs=2e-6)
    assert float(aug.sqrt_one_minus_alphas_cumprod[50]) == pytest.approx(ref["sqrt_one_minus_alpha_cumprod"], abs=2e-6)
    torch.testing.assert_close(aug.q_sample(ref["image"], n, ref["noise"]), ref["noisy"], atol=1e-5, rtol=0)
    betas = beta_schedule("scaled_linear", 1000)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    assert betas[500] == pytest.approx(((1e-2 + (0.02 ** 0.5 - 1e-2) * 500 / 999)) ** 2)


def test_super_resolution_inputs_v_target_and_level_label():
    z0 = torch.tensor([2.0, -1.0]).reshape(1, 1, 1, 1, 2)
    noise = torch.tensor([0.5, 0.5]).reshape(1, 1, 1, 1, 2)
    low_res = torch.full((1, 3, 1, 1, 2), 0.8)
    low_noise = torch.full((1, 3, 1, 1, 2), -1.0)
    t, level = torch.tensor([600]), torch.tensor([350])
    out = super_resolution_inputs(LINEAR_V, noise_augmentation(), z0, low_res, t, noise, level, low_noise)
    a = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[600]
    s = np.cumprod(1 - np.linspace(1e-2, 0.02 ** 0.5, 1000) ** 2)[350]
    v = [math.sqrt(a) * 0.5 - math.sqrt(1 - a) * 2.0, math.sqrt(a) * 0.5 + math.sqrt(1 - a) * 1.0]
    assert out.target.flatten().tolist() == pytest.approx(v, abs=1e-6)
    assert out.sample.flatten().tolist() == pytest.approx(
        [math.sqrt(a) * 2 + math.sqrt(1 - a) * 0.5, -math.sqrt(a) + math.sqrt(1 - a) * 0.5], abs=1e-6)
    assert out.low_res.flatten().tolist() == pytest.approx([math.sqrt(s) * 0.8 - math.sqrt(1 - s)] * 6, abs=1e-6)
    assert out.class_labels.tolist() == [350]
    # x0 and eps come back from (x_t, v) as in the VSR sampler (spec §7)
    x0 = math.sqrt(a) * out.sample - math.sqrt(1 - a) * out.target
    torch.testing.assert_close(x0, z0, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="frames and size of the latents"):
        super_resolution_inputs(LINEAR, noise_augmentation(), z0, low_res[..., :1], t, noise, level, low_noise)


def test_downsample_kernels():
    x = torch.arange(16.0).reshape(1, 1, 1, 4, 4)
    assert downsample(x, 2, "area").flatten().tolist() == [2.5, 4.5, 10.5, 12.5]  # block means
    assert downsample(x, 4, "area").flatten().tolist() == [7.5]
    ramp = torch.linspace(-1, 1, 64).reshape(1, 1, 64).expand(2, 3, 5, 64, 64)
    bic = downsample(ramp, 4, "bicubic")  # a linear ramp stays linear away from the borders
    assert bic.shape == (2, 3, 5, 16, 16)
    assert torch.allclose(bic[..., 3:13], downsample(ramp, 4, "area")[..., 3:13], atol=1e-5)
    step = torch.zeros(1, 1, 1, 64, 64)
    step[..., 32:] = 1.0  # bicubic overshoots at an edge (negative lobes); area does not
    assert downsample(step, 4, "bicubic").min() < -0.01 and downsample(step, 4, "area").min() == 0
    with pytest.raises(ValueError, match="not divisible"):
        downsample(torch.zeros(1, 3, 1, 10, 12), 4)
    with pytest.raises(ValueError, match="area, bicubic"):
        downsample(x, 2, "nearest")


def test_random_crops_are_aligned_and_cover_the_frame():
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(400):
        top, left = random_crop_offsets(16, 24, 8, 8, multiple=4, generator=g)
        assert top % 4 == 0 and left % 4 == 0 and top + 8 <= 16 and left + 8 <= 24
        seen.add((top, left))
    assert seen == {(t, l) for t in (0, 4, 8) for l in (0, 4, 8, 12, 16)}
    high = torch.randn(1, 3, 2, 16, 24)
    top, left = random_crop_offsets(16, 24, 8, 8, multiple=4, generator=g)
    crop_low = downsample(high, 4)[..., top // 4: top // 4 + 2, left // 4: left // 4 + 2]
    torch.testing.assert_close(downsample(high[..., top:top + 8, left:left + 8], 4), crop_low)
    with pytest.raises(ValueError, match="larger than the frame"):
        random_crop_offsets(8, 8, 16, 8)


# --------------------------------------------------------------------------------- synthetic ground truth
@pytest.mark.parametrize("background", ["black", "noise"])
def test_synthetic_clip_at_k_times_the_frame_rate(background):
    attrs = {"shape": "circle", "color": "red", "direction": "right", "speed": "fast"}
    base = render_clip(attrs, 6, 16, seed=3, background=background)
    fast = render_clip(attrs, 6, 16, seed=3, background=background, frame_rate=4)
    assert fast.shape == (21, 16, 16, 3)
    assert np.array_equal(fast[::4], base)  # exactly the base clip at every 4th frame
    assert not np.array_equal(fast[1], fast[0]) and not np.array_equal(fast[1], fast[4])  # in-between motion
    assert np.array_equal(render_clip(attrs, 21, 16, seed=3, background=background), fast)


@pytest.mark.parametrize("background", ["black", "noise"])
def test_synthetic_clip_at_s_times_the_size(background):
    attrs = {"digit": "3", "color": "blue", "direction": "up", "speed": "slow"}
    base = render_clip(attrs, 4, 16, seed=1, background=background).astype(np.float64)
    big = render_clip(attrs, 4, 16, seed=1, background=background, upscale=4)
    assert big.shape == (4, 64, 64, 3)
    area = big.astype(np.float64).reshape(4, 16, 4, 16, 4, 3).mean(axis=(2, 4))
    psnr = 10 * np.log10(255 ** 2 / ((area - base) ** 2).mean())
    assert psnr > 33  # the same scene: differences only in the anti-aliasing of edge pixels
    other = render_clip(attrs, 4, 16, seed=2, background=background).astype(np.float64)
    assert 10 * np.log10(255 ** 2 / ((area - other) ** 2).mean()) < 25


# ------------------------------------------------------------------------------------------ residual (ours)
def test_targets_follow_the_prediction_type():
    x0, noise, t = torch.tensor([[2.0]]), torch.tensor([[0.5]]), torch.tensor([300])
    a = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[300]
    x0_proc = GaussianDiffusion(beta_schedule("linear", 1000), learn_sigma=False, prediction_type="sample")
    assert LINEAR.target(x0, t, noise).item() == 0.5
    assert LINEAR_V.target(x0, t, noise).item() == pytest.approx(math.sqrt(a) * 0.5 - math.sqrt(1 - a) * 2.0)
    assert x0_proc.target(x0, t, noise).item() == 2.0
    x_t = x0_proc.q_sample(x0, t, noise)
    for process in (LINEAR, LINEAR_V, x0_proc):  # every parametrisation gives x0 back from its own target
        assert process.xstart_from_prediction(x_t, t, process.target(x0, t, noise)).item() == pytest.approx(2.0)
    cond = torch.zeros(1, 1, 1, 1, 1)
    _, target = interpolation_inputs(x0_proc, x0.view(1, 1, 1, 1, 1), cond, t, noise.view(1, 1, 1, 1, 1))
    assert target.item() == 2.0


def test_interpolation_baseline_is_the_blend_of_every_kth_frame():
    clip = torch.tensor([0.0, 9.0, 9.0, 9.0, 4.0, 9.0, 9.0, 9.0, -4.0]).view(1, 1, 9, 1, 1)
    base = interpolation_baseline(clip, 4).flatten().tolist()
    assert base == pytest.approx([0, 1, 2, 3, 4, 2, 0, -2, -4])
    # the residual is zero at the condition frames and the in-between frames' difference elsewhere
    residual = (clip - interpolation_baseline(clip, 4)).flatten().tolist()
    assert residual[::4] == [0.0, 0.0, 0.0] and residual[1] == 8.0
