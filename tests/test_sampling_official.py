"""Released-checkpoint layouts (tiny stand-ins from tests/fixtures/reference): ucf101-style .pt + VAE folder and
the Latte-1 folder layout (transformer/, vae/, text_encoder/, tokenizer/, scheduler/)."""
import json
import os

import torch
from safetensors.torch import save_file

from latte.sampling import LattePipeline

from conftest import REFERENCE
from test_sampling_diffusers import make_tiny_t5, make_tiny_vae


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
