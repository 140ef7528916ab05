"""Step-level parity of the cascade's samplers with the official LaVie fixtures (lavie_pipeline_tiny.pt): the
step lists, one DDPM / DDIM / v-DDIM / respaced-DDIM step, the VSR noise augmentation, the 16 → 61 conditioning
map and the VSR frame chunks. No U-Net needed."""
import os

import numpy as np
import pytest
import torch

from helpers import REFERENCE
from latte.diffusion.gaussian import beta_schedule, respaced, space_timesteps
from latte.sampling.cascade import (STAGE_DEFAULTS, augmentation_alphas_cumprod, blend_chunks,
                                    frame_change_at_borders, frame_chunks, interp_condition_indices,
                                    interp_num_frames, noise_augment, official_uint8, scheduler_options_for)
from latte.sampling.samplers import make_scheduler

FIX = torch.load(os.path.join(REFERENCE, "lavie_pipeline_tiny.pt"), weights_only=True)
BETAS = beta_schedule("linear", 1000)


def scheduler(stage: str, offset=None, prediction_type="epsilon"):
    sampler = STAGE_DEFAULTS[stage].sampler
    return make_scheduler(sampler, BETAS, prediction_type, scheduler_options_for(sampler, offset))


def test_official_step_lists():
    ddpm = scheduler("base")
    ddpm.set_timesteps(50)
    assert ddpm.timesteps.tolist() == FIX["base_ddpm"]["timesteps"].tolist() == list(range(980, -1, -20))
    newer = scheduler("base", offset=1)  # newer diffusers' DDPM: 981..1
    newer.set_timesteps(50)
    assert newer.timesteps.tolist() == list(range(981, 0, -20))
    ddim = scheduler("vsr", prediction_type="v_prediction")
    ddim.set_timesteps(50)
    assert ddim.timesteps.tolist() == FIX["vsr_ddim"]["timesteps"].tolist() == FIX["base_ddim"]["timesteps"].tolist()
    interp = sorted(space_timesteps(1000, str(STAGE_DEFAULTS["interp"].steps)))
    assert interp == FIX["interp_ddim"]["timestep_map_50"]


def test_base_ddpm_steps(monkeypatch):
    import diffusers.schedulers.scheduling_ddpm as ddpm_module

    sched = scheduler("base")
    sched.set_timesteps(50)
    for step in FIX["base_ddpm"]["steps"]:
        t = int(sched.timesteps[step["index"]])
        assert t == step["t"]
        noise = step["variance_noise"]
        monkeypatch.setattr(ddpm_module, "randn_tensor", lambda shape, **kw: noise.clone())  # the official draw
        out = sched.step(step["model_output"], t, step["sample"], generator=torch.Generator()).prev_sample
        ref = step["prev_sample"]
        assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_base_ddim_step():
    fx = FIX["base_ddim"]
    sched = make_scheduler("ddim-diffusers", BETAS, "epsilon", scheduler_options_for("ddim-diffusers"))
    sched.set_timesteps(50)
    assert int(sched.timesteps[fx["index"]]) == fx["t"]
    out = sched.step(fx["model_output"], fx["t"], fx["sample"], eta=0.0).prev_sample
    torch.testing.assert_close(out, fx["prev_sample"], rtol=0, atol=1e-5 * float(fx["prev_sample"].abs().max()))


def test_vsr_v_prediction_ddim_steps_including_the_last():
    sched = scheduler("vsr", prediction_type="v_prediction")
    sched.set_timesteps(50)
    for step in FIX["vsr_ddim"]["steps"]:
        assert int(sched.timesteps[step["index"]]) == step["t"]
        out = sched.step(step["model_output"], step["t"], step["sample"], eta=0.0).prev_sample
        ref = step["prev_sample"]
        assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()
    # set_alpha_to_one matters at the last step (t=1 -> alpha_bar_0); 1.0 would give a different answer
    wrong = make_scheduler("ddim-diffusers", BETAS, "v_prediction", {"steps_offset": 1})
    wrong.set_timesteps(50)
    last = FIX["vsr_ddim"]["steps"][-1]
    out = wrong.step(last["model_output"], last["t"], last["sample"], eta=0.0).prev_sample
    assert (out - last["prev_sample"]).abs().max() > 1e-3


def test_interp_respaced_ddim_step():
    fx = FIX["interp_ddim"]
    diffusion = respaced(BETAS, space_timesteps(1000, "50"), learn_sigma=False)
    np.testing.assert_allclose(diffusion.alphas_cumprod, fx["alphas_cumprod_respaced"].numpy(), rtol=1e-12)
    seen = {}

    def model(x, t, **_):
        seen["x"], seen["t"] = x, t
        assert torch.equal(torch.cat([x, fx["cond"]], dim=1), fx["model_input"])
        return fx["eps"]

    t = torch.tensor([fx["index"]])
    out = diffusion.ddim_sample(model, fx["x_t"], t, eta=0.0)
    assert seen["t"].tolist() == fx["t_model"].tolist()  # the model sees the original timestep 612
    torch.testing.assert_close(out["pred_xstart"], fx["pred_xstart"], rtol=0, atol=1e-5)
    torch.testing.assert_close(out["sample"], fx["out"], rtol=0, atol=1e-5)


def test_vsr_noise_augmentation():
    fx = FIX["vsr_noise_aug"]
    acp = augmentation_alphas_cumprod()[fx["noise_level"]]
    assert abs(float(acp.sqrt()) - fx["sqrt_alpha_cumprod"]) < 1e-7
    assert abs(float((1 - acp).sqrt()) - fx["sqrt_one_minus_alpha_cumprod"]) < 1e-7
    torch.testing.assert_close(noise_augment(fx["image"], fx["noise"], fx["noise_level"]), fx["noisy"],
                               rtol=0, atol=1e-6)
    half = noise_augment(fx["image"].half(), fx["noise"].half(), fx["noise_level"]).float()
    torch.testing.assert_close(half, fx["noisy_fp16"], rtol=0, atol=2e-3)


def test_interp_conditioning_map_16_to_61():
    fx = FIX["interp_conditioning"]
    idx = interp_condition_indices(16, 4)
    assert len(idx) == interp_num_frames(16) == 61
    assert idx == fx["base_frame_of_output"].tolist()
    assert torch.equal(fx["base16"][:, :, idx], fx["copied_from_base16"])
    # the official route (61 slots, index_select, repeat_interleave, trim) is the same map
    slots = fx["read_frame_indices"].tolist()
    assert [slots[i] for i in fx["lr_indice"].tolist()] == list(range(16))
    per_base = fx["latents_of_read_frames"][:, :, fx["lr_indice"]]  # the latents of base frames 0..15
    assert torch.equal(per_base[:, :, idx], fx["copied"])
    # generalised factor: n -> k(n-1)+1, key frames at multiples of k
    assert interp_condition_indices(3, 2) == [0, 0, 1, 1, 2]  # nearest input frame, ties to the earlier
    from latte.data.transforms import interpolation_source_frames  # the rule the interpolation task trains with
    assert interp_condition_indices(5, 3) == interpolation_source_frames(5, 3).tolist()
    assert [interp_condition_indices(5, 3)[3 * m] for m in range(5)] == list(range(5))
    with pytest.raises(ValueError, match="factor"):
        interp_condition_indices(16, 1)


def test_vsr_chunks_official_and_overlapped():
    for n, ref in FIX["vsr_chunks"].items():
        assert frame_chunks(n, 8) == [tuple(c) for c in ref]
    assert frame_chunks(16, 8, 2) == [(0, 8), (6, 14), (12, 16)]
    with pytest.raises(ValueError, match="overlap"):
        frame_chunks(16, 8, 5)


def test_blend_is_exact_where_chunks_agree_and_cross_fades_where_they_do_not():
    video = torch.randn(1, 3, 16, 4, 4)
    chunks = frame_chunks(16, 8, 3)
    torch.testing.assert_close(blend_chunks([video[:, :, s:e] for s, e in chunks], chunks, 3), video)
    pieces = [torch.full((1, 1, e - s, 1, 1), float(i)) for i, (s, e) in enumerate(chunks)]
    out = blend_chunks(pieces, chunks, 3)[0, 0, :, 0, 0]
    assert out[:5].eq(0).all() and out[5:8].tolist() == pytest.approx([0.25, 0.5, 0.75])  # 0 -> 1 ramp
    assert out[8:10].eq(1).all()


def test_seam_measure_sees_a_jump_at_chunk_borders():
    t = torch.linspace(0, 1, 16).view(1, 1, 16, 1, 1).expand(1, 3, 16, 4, 4).clone()
    chunks = frame_chunks(16, 8)
    smooth = frame_change_at_borders(t, chunks)
    assert smooth["border_pairs"] == [7] and smooth["ratio"] == pytest.approx(1.0, rel=1e-5)
    t[:, :, 8:] += 0.5
    assert frame_change_at_borders(t, chunks)["ratio"] > 5


def test_official_uint8_conversions():
    x = torch.tensor([-1.0, -0.999, 0.0, 0.5, 1.0, 2.0]).view(1, 1, 1, 6).expand(3, 1, 1, 6)
    assert official_uint8(x, "round")[0, 0, :, 0].tolist() == [0, 0, 128, 191, 255, 255]
    assert official_uint8(x, "floor")[0, 0, :, 0].tolist() == [0, 0, 127, 191, 255, 255]
