"""`latte train-vae` on small generated clips: learns, fits the scaling factor, saves/reloads, resumes."""
import json

import pytest
import torch
import yaml

from latte.cli import main
from latte.config import ConfigError, from_dict
from latte.encoders import build_autoencoder
from latte.encoders.vae_training import VAETrainConfig, moving_squares, pick_frames, psnr
from latte.training.tasks.vae import train_vae

TINY = {
    "data": {"source": "squares", "num_videos": 24, "num_frames": 4, "image_size": 16, "holdout_videos": 4},
    "vae": {"block_out_channels": [16, 16], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4,
            "mid_block_attention": False},
    "batch_size": 4, "frames_per_video": None, "lr": 3e-3, "recon_loss": "l1", "warmup_steps": 5, "log_every": 5, "scaling_sample_frames": 64,
}


def tiny_config(tmp_path, **overrides) -> VAETrainConfig:
    return from_dict(VAETrainConfig, {**TINY, "run_dir": str(tmp_path / "run"), **overrides})


def test_moving_squares_are_videos_in_range():
    items = moving_squares(3, num_frames=5, size=12, seed=1)
    v = items[0]["video"]
    assert v.shape == (3, 5, 12, 12) and v.min() >= -1 and v.max() <= 1
    assert (v[:, 0] != v[:, -1]).any()  # things move
    assert torch.equal(moving_squares(3, 5, 12, seed=1)[2]["video"], items[2]["video"])


def test_psnr_known_values():
    x = torch.zeros(2, 3, 4, 4)
    assert psnr(x, x + 0.2)[0].item() == pytest.approx(20.0, abs=1e-4)  # error 0.1 on the [0, 1] scale
    assert psnr(x, x + 5)[0].item() == pytest.approx(6.0206, abs=1e-3)  # clamped to 1: error 0.5 -> 6 dB


def test_cli_trains_improves_psnr_and_saves_loadable_vae(tmp_path):
    cfg_file = tmp_path / "vae.yaml"
    cfg_file.write_text(yaml.safe_dump({**TINY, "run_dir": str(tmp_path / "run")}))
    assert main(["train-vae", str(cfg_file), "--no-progress", "--set", "max_steps=60", "--set", "ckpt_every=30"]) == 0
    report = json.loads((tmp_path / "run" / "vae_report.json").read_text())
    assert report["steps"] == 60 and report["downsample_factor"] == 2
    assert report["psnr"] > report["psnr_before"] + 5, report
    # the fitted scaling factor is stored in the VAE's config and picked up by build_autoencoder
    ae = build_autoencoder({"kind": "trained", "path": str(tmp_path / "run" / "vae")})
    assert ae.scaling_factor == pytest.approx(report["scaling_factor"]) and ae.scaling_factor != 1.0
    videos = torch.stack([it["video"] for it in moving_squares(20, 4, 16, seed=0)])
    z = ae.encode(videos)
    assert z.shape == (20, 4, 4, 8, 8)
    assert z.std().item() == pytest.approx(1.0, rel=0.1)  # unit variance after scaling
    # checkpoints: atomic layout with a latest pointer; train state loads with weights_only=True
    ckpts = tmp_path / "run" / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step_0000060"
    state = torch.load(ckpts / "step_0000030" / "train_state.pt", weights_only=True)
    assert state["step"] == 30 and (ckpts / "step_0000030" / "vae" / "config.json").is_file()
    assert not [p for p in ckpts.iterdir() if p.name.startswith(".tmp")]


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    from diffusers import AutoencoderKL

    data = moving_squares(12, 4, 16, seed=3)
    straight = tiny_config(tmp_path / "a", max_steps=12, ckpt_every=6, lr_schedule="constant",
                           data={**TINY["data"], "holdout_videos": 2})
    train_vae(straight, dataset=data, progress=False)
    resumed = tiny_config(tmp_path / "b", max_steps=12, ckpt_every=6, lr_schedule="constant",
                          data={**TINY["data"], "holdout_videos": 2})
    report = train_vae(resumed, dataset=data, progress=False,
                       resume=tmp_path / "a" / "run" / "checkpoints" / "step_0000006")
    assert report["steps"] == 12 and report["psnr_before"] is not None
    a = AutoencoderKL.from_pretrained(tmp_path / "a" / "run" / "vae").state_dict()
    b = AutoencoderKL.from_pretrained(tmp_path / "b" / "run" / "vae").state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    with pytest.raises(ConfigError, match="vae.block_out_channels"):
        other = tiny_config(tmp_path / "c", max_steps=12, vae={**TINY["vae"], "block_out_channels": [8, 8]})
        train_vae(other, dataset=data, progress=False, resume=tmp_path / "a" / "run")


def test_config_errors_are_actionable(tmp_path):
    with pytest.raises(ConfigError, match="'steps' was renamed: use 'max_steps'"):
        tiny_config(tmp_path, steps=5)
    with pytest.raises(ConfigError, match="'grad_clip' was renamed: use 'clip_grad_norm'"):
        tiny_config(tmp_path, grad_clip=1.0)
    with pytest.raises(ConfigError, match="norm_num_groups"):
        tiny_config(tmp_path, vae={**TINY["vae"], "norm_num_groups": 5})
    with pytest.raises(ConfigError, match="data.dataset: required"):
        tiny_config(tmp_path, data={"source": "dataset"})
    with pytest.raises(ConfigError, match="data.image_size: only used when data.source is 'squares'"):
        tiny_config(tmp_path, data={"source": "dataset", "dataset": {"kind": "synthetic"}, "image_size": 64})
    with pytest.raises(ConfigError, match="divisible by the downsample factor 4"):
        train_vae(tiny_config(tmp_path, vae={**TINY["vae"], "block_out_channels": [8, 8, 8]}),
                  dataset=moving_squares(6, 2, 18), progress=False)


def test_trains_on_a_latte_data_dataset(tmp_path):
    dataset = {"kind": "synthetic", "image_size": 16, "num_frames": 2, "hflip": False,
               "synthetic": {"num_videos": 6}}
    cfg = tiny_config(tmp_path, max_steps=2, data={"source": "dataset", "dataset": dataset, "holdout_videos": 2},
                      scaling_sample_frames=4)
    report = train_vae(cfg, progress=False)
    assert report["steps"] == 2 and report["heldout_frames"] == 4
    with pytest.raises(ConfigError, match="data.dataset.kind"):
        train_vae(tiny_config(tmp_path, data={"source": "dataset", "dataset": {"kind": "nope"}}), progress=False)


def test_frames_per_video_draws_a_subset_of_each_video():
    frames = torch.arange(3 * 5, dtype=torch.float32).view(15, 1, 1, 1).expand(15, 3, 2, 2)
    picked = pick_frames(frames, videos=3, per_video=2, generator=torch.Generator().manual_seed(0))
    ids = picked[:, 0, 0, 0].long().view(3, 2)
    assert picked.shape == (6, 3, 2, 2)
    assert ((ids // 5) == torch.arange(3)[:, None]).all()  # two frames from each video
    assert (ids % 5 == ids[0] % 5).all() and ids[0, 0] != ids[0, 1]
    assert pick_frames(frames, 3, None, None) is frames


def test_decoder_fine_tune_keeps_every_latent_and_changes_only_the_decoder(tmp_path):
    from diffusers import AutoencoderKL

    data = moving_squares(12, 4, 16, seed=3)
    base = tiny_config(tmp_path / "base", max_steps=8, data={**TINY["data"], "holdout_videos": 2})
    train_vae(base, dataset=data, progress=False)
    folder = tmp_path / "base" / "run" / "vae"
    other = moving_squares(12, 4, 16, seed=9)  # new content to decode
    tuned = tiny_config(tmp_path / "tuned", max_steps=30, init_from=str(folder), trainable="decoder",
                        data={**TINY["data"], "holdout_videos": 2})
    report = train_vae(tuned, dataset=other, progress=False)
    a = AutoencoderKL.from_pretrained(folder)
    b = AutoencoderKL.from_pretrained(tmp_path / "tuned" / "run" / "vae")
    sa, sb = a.state_dict(), b.state_dict()
    after_latent = [k for k in sa if k.startswith(("decoder.", "post_quant_conv."))]
    assert after_latent and all(torch.equal(sa[k], sb[k]) for k in sa if k not in after_latent)
    assert any(not torch.equal(sa[k], sb[k]) for k in after_latent)
    assert b.config.scaling_factor == a.config.scaling_factor == report["scaling_factor"]
    videos = torch.stack([it["video"] for it in other[:3]])
    encode = lambda path: build_autoencoder({"kind": "trained", "path": str(path)}).encode(  # noqa: E731
        videos, generator=torch.Generator().manual_seed(0))  # the same posterior draw
    za, zb = encode(folder), encode(tmp_path / "tuned" / "run" / "vae")
    assert torch.equal(za, zb)  # the same latents: models trained on them keep working
    assert report["psnr"] > report["psnr_before"]  # decoding the new content improved from the start


def test_decoder_fine_tune_needs_a_matching_trained_folder(tmp_path):
    with pytest.raises(ConfigError, match="set init_from"):
        tiny_config(tmp_path, trainable="decoder")
    data = moving_squares(6, 4, 16, seed=3)
    train_vae(tiny_config(tmp_path / "base", max_steps=2, data={**TINY["data"], "holdout_videos": 2}), dataset=data,
              progress=False)
    wrong = tiny_config(tmp_path / "w", max_steps=2, init_from=str(tmp_path / "base" / "run" / "vae"),
                        trainable="decoder", vae={**TINY["vae"], "latent_channels": 8},
                        data={**TINY["data"], "holdout_videos": 2})
    with pytest.raises(ConfigError, match=r"vae.latent_channels \(\[4\] there, \[8\] here\)"):
        train_vae(wrong, dataset=data, progress=False)
    with pytest.raises(ConfigError, match="not an AutoencoderKL folder"):
        train_vae(tiny_config(tmp_path / "x", init_from=str(tmp_path)), dataset=data, progress=False)
