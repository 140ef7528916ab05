"""LaVie stages beyond the objectives: the latent cache of each stage (``latte cache`` on a LaVie config, training
from it, the same loss as from videos), non-square clips, and validation videos through the cascade pipeline."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from latte.cli.cache import load_cache_config
from latte.config import ConfigError, from_dict
from latte.data import build_dataset
from latte.data.cache import build_cache
from latte.data.latents import CacheMismatchError
from latte.encoders import build_autoencoder
from latte.training.engine import StepContext
from latte.training.tasks.lavie import LavieRunConfig, LavieTask, train_lavie

from helpers import LAVIE_STAGE_UNET, tiny_lavie_config

STAGES = list(LAVIE_STAGE_UNET)
ENGINE = SimpleNamespace(dist=SimpleNamespace(is_main=False))  # what LavieTask.dataset reads of the engine


def write_cache(tmp_path, config: dict, **cache) -> dict:
    """Run what ``latte cache`` runs on ``config`` (a YAML file); returns the config with the cache in use."""
    config["data"]["cache_dir"] = str(tmp_path / "cache")
    path = tmp_path / "stage.yaml"
    path.write_text(yaml.safe_dump({**config, "cache": {"num_workers": 0, "dtype": "float32", "views": 1,
                                                        "batch_size": 3, **cache}}))
    cfg = load_cache_config(path)
    build_cache(cfg, build_autoencoder(cfg.autoencoder), None, progress=False)
    return cfg


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_trains_from_its_latent_cache_with_the_loss_of_the_videos(tmp_path, stage):
    config = tiny_lavie_config(stage, tmp_path / "run")
    cache_cfg = write_cache(tmp_path, config)
    assert cache_cfg.cache.text_features is False  # lavie.conditioning none
    assert cache_cfg.cache.low_res_factor == (2 if stage == "vsr" else 0)

    cached = from_dict(LavieRunConfig, {**config, "train": {**config["train"], "use_cache": True}})
    losses = []
    train_lavie(cached, device="cpu", progress=False, on_step_end=lambda e: losses.append(e.last_stats["loss"]))
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))

    # the same clips, seeds and weights give the same loss from the cache as from the videos
    from_videos = from_dict(LavieRunConfig, config)
    tasks = {name: LavieTask(cfg) for name, cfg in (("videos", from_videos), ("cache", cached))}
    torch.manual_seed(0)
    model = tasks["videos"].build_model(torch.device("cpu"), False)
    items = {name: task.dataset(ENGINE) for name, task in tasks.items()}
    assert "low_res" in items["cache"][0] if stage == "vsr" else "low_res" not in items["cache"][0]
    ctx = StepContext(step=3, seed=5, device=torch.device("cpu"), precision="float32")
    loss = {}
    for name, task in tasks.items():
        task.build_model(torch.device("cpu"), False)
        task.setup(None)
        batch = torch.utils.data.default_collate([items[name][i] for i in (1, 4)])
        loss[name] = task.loss(model, batch, ctx)["loss"]
    torch.testing.assert_close(loss["cache"], loss["videos"], rtol=1e-5, atol=1e-6)


def test_vsr_cache_must_hold_the_stage_condition(tmp_path):
    config = tiny_lavie_config("vsr", tmp_path / "run")
    with pytest.raises(ConfigError, match="cache.low_res_kernel: .*downsample_kernel"):
        write_cache(tmp_path, config, low_res_kernel="bicubic")
    write_cache(tmp_path, config)
    config["lavie"]["downsample_kernel"] = "bicubic"
    task = LavieTask(from_dict(LavieRunConfig, {**config, "train": {**config["train"], "use_cache": True}}))
    task.build_model(torch.device("cpu"), False)
    with pytest.raises(CacheMismatchError, match="kernel.*bicubic.*latte cache"):
        task.dataset(ENGINE)


# ------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("stage, text", [(s, False) for s in STAGES] + [("base", True)])
def test_validation_videos_equal_the_cascade_pipeline_of_the_checkpoint(tmp_path, stage, text):
    from latte.data.transforms import downsample
    from latte.data.video_io import read_all_frames, write_gif
    from latte.sampling.cascade import CascadePipeline, StageSettings, load_trained_stage
    from latte.training.engine import Engine

    config = tiny_lavie_config(stage, tmp_path, ckpt_every=2)
    config["validation"] = {"every": 2, "num_samples": 2, "seeds": [3, 4], "sampler": "ddim", "steps": 3, "fps": 4}
    prompts, cfg_scale = ["", ""], 1.0
    if text:  # MiniLM captions, guided against the empty caption
        prompts, cfg_scale = ["a red circle moving left", "a blue square"], 3.0
        config["lavie"]["conditioning"] = "text"
        config["unet"]["cross_attention_dim"] = 384
        config["text_encoder"] = {"kind": "minilm", "max_length": 16}
        config["validation"].update(prompts=prompts, cfg_scale=cfg_scale)
    run = from_dict(LavieRunConfig, config)
    engine = Engine(LavieTask(run), run.train, device="cpu", progress=False)
    result = engine.fit()
    written = tmp_path / "samples" / "step_0000002"
    assert sorted(p.name for p in written.iterdir()) == ["sample_0.gif", "sample_0.mp4", "sample_1.gif",
                                                         "sample_1.mp4"]

    pipe = CascadePipeline(**{stage: load_trained_stage(result.last_checkpoint)})  # the EMA weights
    settings = {stage: StageSettings(negative_prompt="", cfg_scale=cfg_scale, steps=3, sampler="ddim")}
    val = build_dataset(from_dict(LavieRunConfig, config).data, split="val")
    sampled = []
    for k, seed in enumerate([3, 4]):
        clip = val[k]["video"][None]
        options = {"base": dict(frames=4, height=8, width=8, window=0),
                   "interp": dict(input=clip[:, :, ::2], interp_factor=2),
                   "vsr": dict(input=downsample(clip, 2), vsr_chunk=4, noise_level=20)}[stage]
        out = pipe.run(prompts[k], stages=[stage], seed=seed, settings=settings, progress=False, **options)
        sampled.append(out.video)
    sampled = np.stack(sampled)
    assert sampled.shape == (2, 5 if stage == "interp" else 4, 16 if stage == "vsr" else 8,
                             16 if stage == "vsr" else 8, 3)
    np.testing.assert_array_equal(engine.task.validation_videos(engine.ema), sampled)
    for k in range(2):  # the files hold these videos (GIF: byte for byte; x264 under CPU contention need not be)
        reference = write_gif(tmp_path / f"ref_{k}.gif", sampled[k], fps=4)
        assert (written / f"sample_{k}.gif").read_bytes() == reference.read_bytes()
        assert read_all_frames(written / f"sample_{k}.mp4").shape == sampled[k].shape
    assert not np.array_equal(sampled[0], sampled[1])


def test_validation_settings_are_checked(tmp_path):
    config = tiny_lavie_config("base", tmp_path)
    config["validation"] = {"every": 2, "cfg_scale": 2.0}
    with pytest.raises(ConfigError, match="lavie.conditioning is none"):
        from_dict(LavieRunConfig, config)
    config["lavie"]["conditioning"] = "text"
    config["validation"] = {"every": 2}
    with pytest.raises(ConfigError, match="validation.prompts: required"):
        from_dict(LavieRunConfig, config)


# ------------------------------------------------------------------------------------------------- non-square
def test_every_stage_trains_on_non_square_clips_and_the_cascade_samples_them(tmp_path):
    """24x40 clips (vsr: 48x80, whole frames): two training steps per stage, then the three trained stages
    sample base -> interp -> vsr at 24x40 through the cascade pipeline."""
    from latte.sampling.cascade import CascadePipeline, StageSettings, load_trained_stage

    runs = {}
    for stage in STAGES:
        config = tiny_lavie_config(stage, tmp_path / stage, size=[24, 40])
        if stage == "vsr":
            config["lavie"]["patch_size"] = None
        run = from_dict(LavieRunConfig, config)
        item = build_dataset(run.data)[0]
        assert item["video"].shape[-2:] == ((48, 80) if stage == "vsr" else (24, 40))
        losses = []
        result = train_lavie(run, device="cpu", progress=False,
                             on_step_end=lambda e: losses.append(e.last_stats["loss"]))
        assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
        runs[stage] = load_trained_stage(result.last_checkpoint)
    pipe = CascadePipeline(**runs)
    settings = {s: StageSettings(negative_prompt="", cfg_scale=1.0, steps=2, sampler="ddim") for s in STAGES}
    out = pipe.run("", seed=0, settings=settings, frames=4, height=24, width=40, window=0, interp_factor=2,
                   vsr_chunk=4, noise_level=10, progress=False)
    assert [(r["frames"], r["height"], r["width"]) for r in out.stages] == [(4, 24, 40), (7, 24, 40), (7, 48, 80)]
    assert out.video.shape == (7, 48, 80, 3)


def test_non_square_crops_keep_the_center_at_the_target_aspect_ratio():
    from latte.data.transforms import center_crop_resize, frame_size, resize_center_crop

    video = torch.arange(60.0).repeat(2, 3, 30, 1)  # (F, 3, 30, 60): each column holds its index
    assert frame_size(16) == (16, 16) and frame_size([24, 40]) == (24, 40)
    out = center_crop_resize(video, (24, 40))  # the centered 30x50 window (columns 5..54), resized
    assert out.shape == (2, 3, 24, 40)
    torch.testing.assert_close(out[0, 0, 0], torch.nn.functional.interpolate(
        torch.arange(5.0, 55.0)[None, None], size=40, mode="linear", align_corners=False)[0, 0])
    out = resize_center_crop(video, (24, 40))  # scaled x0.8 to 24x48, then the centered 40 columns
    assert out.shape == (2, 3, 24, 40)
    # output column j is scaled column 4 + j, i.e. source column (4 + j + 0.5) / 0.8 - 0.5 of the ramp
    torch.testing.assert_close(out[0, 0, 0, :3], (torch.arange(4.0, 7.0) + 0.5) / 0.8 - 0.5)
    # a square size is the square crop as before: the largest centered square / the short side scaled to it
    torch.testing.assert_close(center_crop_resize(video, 20), center_crop_resize(video, (20, 20)))
    torch.testing.assert_close(center_crop_resize(video, 20)[0, 0, 0, 0], torch.nn.functional.interpolate(
        torch.arange(15.0, 45.0)[None, None], size=20, mode="linear", align_corners=False)[0, 0, 0])


def test_synthetic_clips_render_non_square_at_every_rate_and_scale():
    from latte.data.synthetic import render_clip
    from latte.data.transforms import downsample

    for direction in ("left", "up"):
        attrs = {"shape": "circle", "color": "red", "direction": direction, "speed": "fast"}
        np.testing.assert_array_equal(render_clip(attrs, 4, 16, seed=3), render_clip(attrs, 4, (16, 16), seed=3))
        base = render_clip(attrs, 4, (24, 40), seed=3)
        assert base.shape == (4, 24, 40, 3)
        assert not np.array_equal(base[0], base[-1])  # it moves
        np.testing.assert_array_equal(render_clip(attrs, 4, (24, 40), seed=3, frame_rate=2)[::2], base)
        fine = torch.from_numpy(render_clip(attrs, 4, (24, 40), seed=3, upscale=2)).float()
        area = downsample(fine.permute(3, 0, 1, 2), 2).permute(1, 2, 3, 0)
        assert (area - torch.from_numpy(base).float()).abs().mean() < 1.0


# ------------------------------------------------------------------------------------------ residual stages
@pytest.mark.parametrize("stage", ["interp", "vsr"])
def test_residual_stages_start_from_the_classic_baseline(tmp_path, stage):
    """lavie.residual with x0 prediction: a U-Net that outputs zeros trains on the residual over the baseline
    (its loss is the baseline's error) and samples exactly the baseline: the linear blend of the input frames
    (interp), the bicubic upsampling (vsr)."""
    from latte.data.transforms import bicubic_upsample, downsample, linear_blend
    from latte.sampling.cascade import StageSettings

    config = tiny_lavie_config(stage, tmp_path / "run")
    config["lavie"]["residual"] = True
    config["diffusion"] = {"prediction_type": "sample"}
    task = LavieTask(from_dict(LavieRunConfig, config))
    model = task.build_model(torch.device("cpu"), False)
    task.setup(None)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    batch = torch.utils.data.default_collate([task.dataset(ENGINE)[i] for i in (0, 3)])
    ctx = StepContext(step=1, seed=5, device=torch.device("cpu"), precision="float32")
    loss = task.loss(model, batch, ctx)["loss"]
    video = batch["video"]
    if stage == "interp":  # identity autoencoder: the latents are the pixels
        torch.testing.assert_close(loss, (video - linear_blend(video[:, :, ::2], 2)).pow(2).mean())
    plain = LavieTask(from_dict(LavieRunConfig, {**config, "lavie": {**config["lavie"], "residual": False}}))
    plain.build_model(torch.device("cpu"), False)
    plain.setup(None)
    assert 0 < loss < 0.5 * plain.loss(model, batch, ctx)["loss"]  # the baseline explains most of the clip

    settings = StageSettings(prompt="", negative_prompt="", cfg_scale=1.0, steps=3, sampler="ddim")
    clip = video[:1]
    outputs = {}
    for name, t in (("residual", task), ("plain", plain)):
        lavie_stage = t.pipeline(model).stages[stage]
        g = torch.Generator().manual_seed(0)
        if stage == "interp":
            outputs[name] = lavie_stage.interpolate(clip[:, :, ::2], settings, g, factor=2)
        else:
            outputs[name] = lavie_stage.upscale_chunk(downsample(clip, 2), settings, g, noise_level=10)
    expected = linear_blend(clip[:, :, ::2], 2) if stage == "interp" else bicubic_upsample(downsample(clip, 2), 2)
    assert plain.pipeline(model).stages[stage].describe().get("residual") is None
    assert task.pipeline(model).stages[stage].describe()["residual"] is True
    torch.testing.assert_close(outputs["residual"], expected, atol=1e-5, rtol=0)
    assert (outputs["plain"] - expected).abs().max() > 0.1  # without the baseline the zero U-Net makes zeros
