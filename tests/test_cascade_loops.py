"""Loop parity of the cascade stages with the official LaVie pipelines (tiny official models, float32): the base
DDPM pipeline (lavie_base_tiny.pt `pipeline_ddpm`), the interpolation respaced-DDIM loop (lavie_interp_tiny.pt
`ddim_loop`) and the x4 upscale pipeline (lavie_vsr_tiny.pt `pipeline`), to rtol 1e-4 of max |ref|."""
import os

import pytest
import torch

from helpers import REFERENCE
from latte.encoders.autoencoders import DiffusersAutoencoder
from latte.interop.lavie import load_lavie
from latte.sampling.cascade import LavieStage, StageSettings, noise_augment, official_uint8


def load(name):
    return torch.load(os.path.join(REFERENCE, name), weights_only=True)


class FixedText:
    """A text encoder returning given features per prompt (the fixtures hold embeddings, not tokens)."""

    def __init__(self, table):
        self.table, self.dim, self.max_length = table, 16, 5

    def encode(self, prompts):
        hidden = torch.cat([self.table[p] for p in prompts])
        return hidden, torch.ones(hidden.shape[:2], dtype=torch.bool)


def tiny_vae(fx, scaling):
    from diffusers import AutoencoderKL

    cfg = {k: v for k, v in fx["vae_config"].items() if k != "scaling_factor"}
    vae = AutoencoderKL(**cfg)
    renamed = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}  # diffusers 0.16 names
    state = {}
    for k, v in fx["vae_state_dict"].items():
        head, _, leaf = k.rpartition(".")
        parent, _, name = head.rpartition(".")
        state[f"{parent}.{renamed.get(name, name)}.{leaf}" if name in renamed else k] = v
    vae.load_state_dict(state)
    return DiffusersAutoencoder(vae, kind="sd_vae", source={}, chunk_size=4, sample_posterior=True,
                                scaling_factor=scaling)


def close(out, ref, rtol=1e-4):
    err = float((out - ref).abs().max() / ref.abs().max())
    print(f"relative max error {err:.2e}")
    assert err <= rtol, f"max error {err:.2e} of max |ref|"


def test_base_ddpm_pipeline_loop(monkeypatch):
    import diffusers.schedulers.scheduling_ddpm as ddpm_module

    m = load("lavie_base_tiny.pt")
    fx = m["pipeline_ddpm"]
    stage = LavieStage("base", load_lavie(m["state_dict"], "base", m["config"]), tiny_vae(fx, 0.18215),
                       FixedText({}))
    noises = iter([n for n in fx["step_noise"] if n is not None])
    monkeypatch.setattr(ddpm_module, "randn_tensor", lambda shape, **kw: next(noises).clone())  # official draws
    settings = StageSettings(sampler="ddpm-diffusers", steps=fx["num_inference_steps"],
                             cfg_scale=fx["guidance_scale"])
    latents = stage.denoise(fx["latents_init"], settings, fx["prompt_embeds"], fx["negative_prompt_embeds"],
                            torch.Generator())
    close(latents, fx["latents_after_step"][-1])
    video = official_uint8(stage.autoencoder.decode(latents)[0], "round")
    assert (video.astype(int) - fx["video_uint8"][0].numpy().astype(int)).__abs__().max() <= 1


def test_interp_respaced_ddim_loop():
    m = load("lavie_interp_tiny.pt")
    fx = m["ddim_loop"]
    stage = LavieStage("interp", load_lavie(m["state_dict"], "interp", m["config"]), None, FixedText({}))
    assert fx["timestep_map"] == [0, 333, 666, 999]
    settings = StageSettings(sampler="ddim", steps=int(fx["timestep_respacing"]), cfg_scale=fx["cfg_scale"])
    out = stage.denoise(fx["z"][:1], settings, fx["text"][:1], fx["text"][1:], cond=fx["copied"][:1])
    close(out, fx["out"][:1])


def test_vsr_upscale_pipeline_loop():
    m = load("lavie_vsr_tiny.pt")
    fx = m["pipeline"]
    stage = LavieStage("vsr", load_lavie(m["state_dict"], "vsr", m["config"]), tiny_vae(fx, 0.08333),
                       FixedText({}))
    noisy = noise_augment(fx["low_res"], fx["aug_noise"], fx["noise_level"])
    torch.testing.assert_close(noisy, fx["low_res_noisy"], rtol=0, atol=1e-6)
    settings = StageSettings(sampler="ddim-diffusers", steps=fx["num_inference_steps"],
                             cfg_scale=fx["guidance_scale"])
    latents = stage.denoise(fx["latents_init"], settings, fx["prompt_embeds"], fx["negative_prompt_embeds"],
                            low_res=noisy, noise_level=fx["noise_level"])
    close(latents, fx["latents_after_step"][-1])
    images = stage.autoencoder.decode(latents).clamp(-1, 1)[0].transpose(0, 1)  # (F, 3, H, W)
    close(images, fx["images"])


def test_vsr_stage_draws_augmentation_noise_then_latents_from_one_generator():
    """upscale_chunk reproduces the pipeline from a generator seeded like the official run would be: the
    augmentation noise is drawn first, then the initial latents."""
    m = load("lavie_vsr_tiny.pt")
    fx = m["pipeline"]
    text = FixedText({"p": fx["prompt_embeds"], "n": fx["negative_prompt_embeds"]})
    stage = LavieStage("vsr", load_lavie(m["state_dict"], "vsr", m["config"]), tiny_vae(fx, 0.08333), text)
    settings = StageSettings(prompt="p", negative_prompt="n", sampler="ddim-diffusers", steps=3, cfg_scale=5.0)
    g = torch.Generator().manual_seed(7)
    aug = torch.randn(fx["low_res"].shape, generator=g)
    init = torch.randn(fx["latents_init"].shape, generator=g)
    noisy = noise_augment(fx["low_res"], aug, 50)
    ref = stage.denoise(init, settings, fx["prompt_embeds"], fx["negative_prompt_embeds"], low_res=noisy,
                        noise_level=50)
    out = stage.upscale_chunk(fx["low_res"], settings, torch.Generator().manual_seed(7))
    close(out, stage.autoencoder.decode(ref).clamp(-1, 1), rtol=1e-6)
    with pytest.raises(ValueError, match="noise_level"):
        stage.upscale_chunk(fx["low_res"], settings, torch.Generator(), noise_level=351)
