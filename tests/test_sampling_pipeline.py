"""LattePipeline, samplers, sidecars and class names on tiny random models (identity autoencoder)."""
import json

import numpy as np
import pytest
import torch

from latte.encoders.autoencoders import IdentityAutoencoder
from latte.models import Latte
from latte.sampling import SAMPLERS, LattePipeline, sample_loop, save_videos
from latte.sampling.samplers import DIFFUSERS_SAMPLERS, draw_noise
from latte.sampling.sources import linear_betas

from helpers import tiny_model, write_run


@pytest.fixture(scope="module")
def class_pipe():
    model = tiny_model(conditioning="class", num_classes=3)
    return LattePipeline(model, IdentityAutoencoder(), class_names=["apple", "bird", "car"])


def test_same_seed_same_frames_and_batch_size_does_not_matter(class_pipe):
    kw = dict(classes=["bird", 2], num_videos=3, sampler="ddpm", steps=6, cfg_scale=3.0, progress=False)
    one = class_pipe(seed=5, batch_size=1, **kw)
    three = class_pipe(seed=5, batch_size=3, **kw)
    assert one.videos.shape == (3, 4, 8, 8, 3) and one.videos.dtype == np.uint8
    np.testing.assert_array_equal(one.videos, three.videos)
    other = class_pipe(seed=6, batch_size=3, **kw)
    assert (other.videos != one.videos).any()
    # video i is the video of seed + i: asking for index 2 alone reproduces it (resume / multi-process)
    alone = class_pipe(indices=[2], seed=5, **kw)
    np.testing.assert_array_equal(alone.videos[0], one.videos[2])
    assert [r["seed"] for r in one.records] == [5, 6, 7]
    assert [r["class_id"] for r in one.records] == [1, 2, 1]  # classes are cycled


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs(class_pipe, sampler):
    out = class_pipe(classes=[0, 1], sampler=sampler, steps=4, cfg_scale=2.0, output_type="tensor",
                     progress=False, batch_size=2)
    assert out.videos.shape == (2, 3, 4, 8, 8) and torch.isfinite(out.videos).all()
    assert out.records[0]["sampler"] == sampler and out.records[0]["steps"] == 4


def test_diffusers_ddim_matches_official_strided_ddim(class_pipe):
    """Same timesteps (980, 960, ..., 0) and update: the scheduler adapter drives the model as the official loop."""
    kw = dict(classes=[1], steps=50, cfg_scale=1.0, output_type="latent", progress=False)
    ours = class_pipe(sampler="ddim-stride", **kw).videos
    theirs = class_pipe(sampler="ddim-diffusers", **kw).videos
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("sampler", ["ddim"] + sorted(DIFFUSERS_SAMPLERS))
def test_learned_sigma_split(sampler):
    """Samplers that only use epsilon must ignore the variance half: huge garbage there changes nothing."""
    betas = linear_betas()

    def fake(garbage):
        def fn(x, t):
            eps = 0.3 * x + 0.01 * t.float().reshape(-1, 1, 1, 1, 1)
            return torch.cat([eps, torch.full_like(x, garbage)], dim=1)
        return fn

    gens = lambda: [torch.Generator().manual_seed(3)]  # noqa: E731
    noise = draw_noise((1, 2, 2, 4, 4), gens(), "cpu")
    clean = sample_loop(fake(0.0), noise, sampler, 5, betas, generators=gens())
    dirty = sample_loop(fake(1e6), noise, sampler, 5, betas, generators=gens())
    assert torch.isfinite(clean).all()
    torch.testing.assert_close(clean, dirty, atol=0, rtol=0)


def test_ddpm_uses_the_learned_variance():
    betas = linear_betas()
    fn = lambda v: (lambda x, t: torch.cat([0.3 * x, torch.full_like(x, v)], dim=1))  # noqa: E731
    noise = torch.randn(1, 2, 2, 4, 4)
    a = sample_loop(fn(-1.0), noise, "ddpm", 5, betas, generators=[torch.Generator().manual_seed(0)])
    b = sample_loop(fn(1.0), noise, "ddpm", 5, betas, generators=[torch.Generator().manual_seed(0)])
    assert (a - b).abs().max() > 1e-3


def test_guidance_and_condition_errors(class_pipe):
    kw = dict(classes=[1], sampler="ddim", steps=4, output_type="latent", progress=False)
    guided = class_pipe(cfg_scale=4.0, **kw).videos
    plain = class_pipe(cfg_scale=1.0, **kw).videos
    assert (guided - plain).abs().max() > 1e-4
    with pytest.raises(ValueError, match="class-conditional model: pass classes"):
        class_pipe(num_videos=1, progress=False)
    with pytest.raises(ValueError, match="unknown class 'brid'; did you mean 'bird'"):
        class_pipe(classes=["brid"], progress=False)
    with pytest.raises(ValueError, match="unknown sampler"):
        class_pipe(classes=[0], sampler="eulr", progress=False)
    uncond = LattePipeline(tiny_model(), IdentityAutoencoder())
    with pytest.raises(ValueError, match="unconditional"):
        uncond(num_videos=1, cfg_scale=3.0, progress=False)
    assert uncond.defaults.sampler == "ddpm" and uncond.defaults.steps == 250
    assert class_pipe.defaults.cfg_scale == 7.0


def test_sidecar_content(class_pipe, tmp_path):
    from latte.data import probe_video

    out = class_pipe(classes=["car"], num_videos=2, seed=11, sampler="ddim", steps=3, cfg_scale=2.5,
                     progress=False)
    sidecars = save_videos(out, tmp_path, formats=("mp4", "gif", "png-grid"), fps=4)
    assert [p.name for p in sidecars] == ["00000.json", "00001.json"]
    meta = json.loads(sidecars[1].read_text())
    assert meta["index"] == 1 and meta["seed"] == 12
    assert meta["class_id"] == 2 and meta["class_name"] == "car"
    assert (meta["sampler"], meta["steps"], meta["cfg_scale"], meta["fps"]) == ("ddim", 3, 2.5, 4)
    assert (meta["frames"], meta["height"], meta["width"]) == (4, 8, 8)
    assert meta["model_config_hash"] == class_pipe.config_hash and len(meta["model_config_hash"]) == 16
    assert meta["files"] == {"mp4": "00001.mp4", "gif": "00001.gif", "png-grid": "00001.png"}
    assert probe_video(tmp_path / "00001.mp4").num_frames == 4
    for name in meta["files"].values():
        assert (tmp_path / name).stat().st_size > 0


def test_from_run_uses_ema_and_saved_class_names(tmp_path):
    ckpt = write_run(tmp_path / "run")
    pipe = LattePipeline.from_run(tmp_path / "run")
    ema = Latte.from_pretrained(ckpt / "ema")
    assert all(torch.equal(v, ema.state_dict()[k]) for k, v in pipe.model.state_dict().items())
    assert pipe.resolve_class("bird") == 1 and pipe.resolve_class("2") == 2
    assert pipe.source["checkpoint"] == str(ckpt) and pipe.source["weights"] == "ema"
    raw = LattePipeline.from_run(ckpt, ema=False)
    assert raw.source["weights"] == "model"
    assert not torch.equal(raw.model.final_layer.linear.weight, pipe.model.final_layer.linear.weight)
    # without class_names.json the run config's data.class_names is the mapping; without either, ids only
    (tmp_path / "run" / "class_names.json").unlink()
    bare = LattePipeline.from_run(tmp_path / "run")
    with pytest.raises(ValueError, match="no saved class names"):
        bare.resolve_class("bird")
    assert bare.resolve_class(1) == 1


def test_cli_sample_from_run(tmp_path, capsys):
    from latte.cli import main

    write_run(tmp_path / "run")
    out = tmp_path / "out"
    args = ["sample", "--checkpoint", str(tmp_path / "run"), "--class", "bird", "--class", "0", "--num-videos", "3",
            "--sampler", "ddim", "--steps", "3", "--out", str(out), "--format", "gif,png-grid", "--quiet"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"0000{i}.{e}" for i in range(3) for e in ("gif", "json", "png")]
    assert json.loads((out / "00002.json").read_text())["class_name"] == "bird"
    assert "3/3 videos" in capsys.readouterr().out
    bad = [a if a != str(out) else str(tmp_path / "out2") for a in args] + ["--class", "zebra"]
    assert main(bad) == 2  # unknown class name: actionable error, exit code 2
    assert "unknown class 'zebra'" in capsys.readouterr().err
