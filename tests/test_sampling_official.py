"""Released-checkpoint layouts (tiny stand-ins from tests/fixtures/reference): ucf101-style .pt + VAE folder and
the Latte-1 folder layout (transformer/, vae/, text_encoder/, tokenizer/, scheduler/)."""
import json
import os

import torch
from safetensors.torch import save_file

from latte.sampling import LattePipeline

from helpers import REFERENCE, make_tiny_t5, make_tiny_vae


def fixture(name):
    return torch.load(os.path.join(REFERENCE, name + ".pt"), weights_only=True)


def test_ucf101_checkpoint_defaults_and_official_cfg(tmp_path):
    d = fixture("latte_tiny_extras2")
    torch.save({"ema": d["state_dict"]}, tmp_path / "ucf101.pt")
    pipe = LattePipeline.from_official(tmp_path / "ucf101.pt", vae=make_tiny_vae(tmp_path / "vae"),
                                       config=d["config"])
    assert pipe.source["official_kind"] == "ucf101"  # guessed from the file name
    assert (pipe.defaults.sampler, pipe.defaults.steps, pipe.defaults.cfg_scale) == ("ddpm", 250, 7.0)
    # our guided model function == the official forward_with_cfg (null class = num_classes, eps guided only)
    fn = pipe._model_fn({"y": torch.tensor([2])}, {"y": torch.tensor([5])}, 3.0)
    x = d["x"][:1].transpose(1, 2)  # official (B, F, C, H, W) -> native (B, C, F, H, W)
    with torch.no_grad():
        out = fn(x, torch.tensor([500]))
    torch.testing.assert_close(out.transpose(1, 2), d["cfg_out"][:1], atol=1e-5, rtol=0)
    video = pipe(classes=[3], steps=2, progress=False)
    assert video.videos.shape == (1, 4, 16, 16, 3) and video.records[0]["cfg_scale"] == 7.0


def test_latte1_folder_layout(tmp_path):
    d = fixture("latte_t2v_tiny")
    root = tmp_path / "Latte-1"
    (root / "transformer").mkdir(parents=True)
    (root / "transformer" / "config.json").write_text(json.dumps({"_class_name": "LatteT2V", **d["config"]}))
    save_file(d["state_dict"], str(root / "transformer" / "diffusion_pytorch_model.safetensors"))
    make_tiny_vae(root / "vae")
    make_tiny_t5(root / "t5", d_model=d["config"]["caption_channels"])
    os.rename(root / "t5", root / "text_encoder")
    os.symlink(root / "text_encoder", root / "tokenizer")
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps({  # the Latte-1 config (spec §5.3)
        "_class_name": "DDIMScheduler", "beta_end": 0.02, "beta_schedule": "linear", "beta_start": 0.0001,
        "num_train_timesteps": 1000, "prediction_type": "epsilon", "variance_type": "learned_range",
        "clip_sample": False, "timestep_spacing": "leading"}))
    pipe = LattePipeline.load(root)
    assert (pipe.defaults.sampler, pipe.defaults.steps, pipe.defaults.cfg_scale) == ("ddim-diffusers", 50, 7.5)
    assert pipe.truncate_text and pipe.text_encoder.max_length == 120
    out = pipe(prompts=["a blue circle moving left"], steps=2, progress=False)
    assert out.videos.shape == (1, 4, 16, 16, 3)
    assert out.records[0]["prompt"] == "a blue circle moving left" and out.records[0]["negative_prompt"] == ""


def test_official_script_drives_the_drop_in_with_create_diffusion():
    """The official sample.py / train.py, ported by changing imports only: latte.official.load_latte models in
    the official (B, F, C, H, W) layout, driven by latte.diffusion.create_diffusion (learned-sigma split on the
    channel dim 2, forward_with_cfg with use_fp16, training loss equal to the official one)."""
    from latte.diffusion import create_diffusion
    from latte.official import load_latte

    for name in ("latte_tiny_extras1", "latte_tiny_extras2"):
        d = fixture(name)
        model = load_latte(d["state_dict"], d["config"])
        # training: official train.py calls diffusion.training_losses(model, x, t, model_kwargs) on (B, F, C, H, W)
        diffusion = create_diffusion(timestep_respacing="")
        kwargs = {"y": d["y"]} if d["y"] is not None else {}
        with torch.no_grad():
            loss = diffusion.training_losses(model, d["x"], d["t"], kwargs, noise=d["noise"])
        for key in ("loss", "mse", "vb"):
            torch.testing.assert_close(loss[key], d["loss"][key], atol=1e-5, rtol=1e-5)
        # sampling: official sample.py, DDPM and DDIM over create_diffusion(str(steps))
        diffusion = create_diffusion(str(4))
        z = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0))  # (B, F, C, H, W)
        native = create_diffusion(str(4))
        if d["config"]["extras"] == 2:
            z = torch.cat([z, z], 0)
            y = torch.tensor([2, 5])  # label, null class (num_classes)
            sample_fn, model_kwargs = model.forward_with_cfg, dict(y=y, cfg_scale=4.0, use_fp16=False)
        else:
            sample_fn, model_kwargs = model.forward, dict(y=None, use_fp16=False)
        for loop in ("ddim_sample_loop", "p_sample_loop"):
            torch.manual_seed(1)
            with torch.no_grad():
                official = getattr(diffusion, loop)(sample_fn, z.shape, z, clip_denoised=False,
                                                    model_kwargs=model_kwargs, progress=False, device="cpu")
            assert official.shape == z.shape and torch.isfinite(official).all()
            # the same process in our (B, C, F, H, W) layout gives the same sample
            def ours(x, t, **kw):
                return sample_fn(x.transpose(1, 2), t, **kw).transpose(1, 2)

            torch.manual_seed(1)
            noise = z.transpose(1, 2)
            with torch.no_grad():
                native_sample = getattr(native, loop)(ours, noise.shape, noise, model_kwargs=model_kwargs)
            if loop == "ddim_sample_loop":
                torch.testing.assert_close(official, native_sample.transpose(1, 2), atol=1e-5, rtol=1e-5)
            else:  # the same noise is drawn in another layout: compare the (deterministic) first step's mean
                t = torch.full((z.shape[0],), 3, dtype=torch.long)
                a = diffusion.p_mean_variance(sample_fn, z, t, model_kwargs=model_kwargs)["mean"]
                b = native.p_mean_variance(ours, noise, t, model_kwargs=model_kwargs)["mean"]
                torch.testing.assert_close(a, b.transpose(1, 2), atol=1e-6, rtol=1e-6)


def test_learned_sigma_shape_error_names_both_layouts():
    import pytest

    from latte.diffusion import create_diffusion

    diffusion = create_diffusion("2")
    x = torch.zeros(1, 4, 3, 8, 8)
    with pytest.raises(ValueError, match=r"expected \(1, 8, 3, 8, 8\) \(B, 2C, F, H, W\) or the official layout "
                                         r"\(1, 4, 6, 8, 8\) \(B, F, 2C, H, W\), got \(1, 4, 3, 8, 8\)"):
        diffusion.p_mean_variance(lambda x, t: x, x, torch.tensor([1]))
