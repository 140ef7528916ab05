"""The LaVie stages on the training engine: each passes the engine's guarantees (loss decreases, bit-exact resume
after an interruption, DDP = single-process gradient accumulation, FSDP2 wraps the U-Net blocks), and the
stage-specific set-up works (initialisation from a 2-D U-Net / a released checkpoint, temporal-only and LoRA
training, joint image-video batches, config errors)."""
import os
import signal

import pytest
import torch
import torch.multiprocessing as mp
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

from latte.config import ConfigError, from_dict, to_dict
from latte.interop.lavie import unet3d_config_from_official
from latte.models.unet3d import BLOCK_CLASSES, is_temporal_key
from latte.training import TensorItems
from latte.training import checkpoint as ckpt
from latte.training.engine import run
from latte.seeding import seed_everything
from latte.training.tasks.lavie import LavieRunConfig, LavieTask, train_lavie
from helpers import REFERENCE, FakeTextEncoder, free_port, moving_blobs, state_of

TINY_UNET = dict(block_out_channels=[32, 32], layers_per_block=1, num_heads=1, norm_num_groups=8,
                 cross_attention_dim=16)
STAGE_UNET = {
    "base": dict(in_channels=4, out_channels=4, attention_levels=[True, False], cross_attention_only=[False, False]),
    "interp": dict(in_channels=8, out_channels=4, attention_levels=[True, False], cross_attention_only=[False, False],
                   spatial_attention="sparse_causal", temporal_attention="plain", temporal_attention_after_ff=True),
    # identity autoencoder with 2x2 space-to-depth: 12 latent channels on the x2 low-resolution grid
    "vsr": dict(in_channels=15, out_channels=12, low_res_channels=3, attention_levels=[False, True],
                cross_attention_only=[False, True], linear_projection=True, temporal_attention_name="attn_temporal",
                temporal_resblocks=True, temporal_modules=True, num_class_embeds=400),
}
STAGES = list(STAGE_UNET)


def lavie_config(stage: str, run_dir, **train) -> dict:
    """Plain-data config of a tiny U-Net for ``stage`` (trained on :func:`lavie_dataset`)."""
    t = dict(run_dir=str(run_dir), max_steps=4, batch_size=4, lr=1e-3, ema_decay=0.9, log_every=2, ckpt_every=2,
             num_workers=0, seed=7)
    t.update(train)
    lavie = {"stage": stage, "conditioning": "none"}
    config = {"lavie": lavie, "unet": dict(TINY_UNET, **STAGE_UNET[stage]), "autoencoder": {"kind": "identity"},
              "data": {"num_frames": 4}, "train": t}
    if stage == "interp":
        lavie.update(interp_factor=4, cond_noise_max=100)
        config["data"]["num_frames"] = 5
    if stage == "vsr":
        lavie.update(scale_factor=2, patch_size=8, max_noise_level=50)
        config["autoencoder"]["patch_factor"] = 2
        config["diffusion"] = {"prediction_type": "v_prediction"}
    return config


def lavie_dataset(stage: str, n: int = 16) -> TensorItems:
    """Moving blobs: latents ``(4, F, 8, 8)`` for base/interp, videos ``(3, 4, 16, 16)`` for vsr."""
    if stage == "vsr":
        return TensorItems(videos=torch.nn.functional.interpolate(moving_blobs(n, 3, 4, 8), scale_factor=(1, 2, 2)))
    return TensorItems(moving_blobs(n, 4, 5 if stage == "interp" else 4, 8))


def build(data: dict) -> LavieRunConfig:
    return from_dict(LavieRunConfig, data)


def distributed_worker(rank: int, world_size: int, port: int, config: dict, stage: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    train_lavie(build(config), dataset=lavie_dataset(stage), device="cpu", progress=False)


def _assert_identical(a_dir, b_dir):
    for which in ("model", "ema"):
        a, b = state_of(a_dir, which), state_of(b_dir, which)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), which
    sa, sb = ckpt.load_train_state(a_dir), ckpt.load_train_state(b_dir)
    assert sa["step"] == sb["step"] and sa["data"] == sb["data"]
    ea, eb = sa["optimizer"]["state"], sb["optimizer"]["state"]
    assert all(torch.equal(ea[k]["exp_avg_sq"], eb[k]["exp_avg_sq"]) for k in ea)


# ---------------------------------------------------------------------------------------- engine guarantees
@pytest.mark.parametrize("stage", STAGES)
def test_loss_decreases(tmp_path, stage):
    losses = []
    config = build(lavie_config(stage, tmp_path, max_steps=30, lr=3e-3, ckpt_every=100, ema_decay=None))
    train_lavie(config, dataset=lavie_dataset(stage), device="cpu", progress=False,
                on_step_end=lambda engine: losses.append(engine.last_stats["loss"]))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert len(losses) == 30 and last < 0.7 * first, (stage, first, last)


@pytest.mark.parametrize("stage", STAGES)
def test_interrupt_then_resume_is_bit_identical(tmp_path, stage):
    reference = train_lavie(build(lavie_config(stage, tmp_path / "ref", ckpt_every=100)),
                            dataset=lavie_dataset(stage), device="cpu", progress=False)

    def interrupt(engine):
        if engine.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # the engine stops at its next check, with a checkpoint

    config = lavie_config(stage, tmp_path / "run", ckpt_every=100)
    stopped = train_lavie(build(config), dataset=lavie_dataset(stage), device="cpu", progress=False,
                          on_step_end=interrupt)
    assert stopped.stopped_by == "SIGTERM" and 1 <= stopped.step < 4
    assert stopped.last_checkpoint.name == f"step_{stopped.step:07d}"
    resumed = train_lavie(build(config), dataset=lavie_dataset(stage), device="cpu", progress=False,
                          resume=str(tmp_path / "run"))
    assert resumed.step == 4
    _assert_identical(reference.last_checkpoint, resumed.last_checkpoint)


@pytest.mark.parametrize("stage, strategy", [(s, "ddp") for s in STAGES]
                         + [pytest.param("vsr", "fsdp", marks=pytest.mark.slow)])
def test_two_processes_equal_single_process_accumulation(tmp_path, stage, strategy):
    steps = dict(max_steps=2, ckpt_every=2, grad_accum=2)
    single = train_lavie(build(lavie_config(stage, tmp_path / "single", batch_size=4, **steps)),
                         dataset=lavie_dataset(stage), device="cpu", progress=False)
    config = lavie_config(stage, tmp_path / strategy, batch_size=2, distributed=strategy, **steps)
    mp.spawn(distributed_worker, args=(2, free_port(), config, stage), nprocs=2, join=True)
    # A wrong sample, timestep or noise moves a weight by ~lr (1e-3: Adam's first steps are ~lr * sign(grad));
    # float reduction order (conv backward at batch 2 vs 4, gloo all-reduce) by ~1e-5 at most.
    for which in ("model", "ema"):
        a, b = state_of(single.last_checkpoint, which), state_of(tmp_path / strategy / "checkpoints" / "step_0000002",
                                                                 which)
        worst = max(float((a[k] - b[k]).abs().max()) for k in a)
        assert a.keys() == b.keys() and worst < 5e-5, (stage, which, worst)


@pytest.mark.parametrize("stage", STAGES)
def test_fsdp_wraps_every_unet_block_once(tmp_path, stage):
    task = LavieTask(build(lavie_config(stage, tmp_path)))
    model = task.build_model(torch.device("cpu"), resuming=False)
    blocks = task.blocks(model)
    assert blocks and all(isinstance(b, BLOCK_CLASSES) for b in blocks)
    covered = [id(m) for b in blocks for m in b.modules()]
    assert len(covered) == len(set(covered))  # no block inside another: each is sharded once
    every = [m for m in model.modules() if isinstance(m, BLOCK_CLASSES)]
    assert set(map(id, every)) <= set(covered)  # and every ResBlock / transformer / temporal module is in one
    in_blocks = {id(p) for b in blocks for p in b.parameters()}
    outside = sum(p.numel() for p in model.parameters() if id(p) not in in_blocks)
    assert outside < 0.2 * sum(p.numel() for p in model.parameters())  # the bulk is sharded per block


# --------------------------------------------------------------------------------------- stage set-ups
_UNET2D = {  # the tiny 2-D U-Nets the tiny stages inflate (SD 1.4 style, x4-upscaler style)
    "base": dict(in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")),
    "vsr": dict(in_channels=15, out_channels=12, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), only_cross_attention=[False, True],
                use_linear_projection=True, num_class_embeds=400),
}


def _save_unet2d(folder, stage):
    unet2d = UNet2DConditionModel(sample_size=8, layers_per_block=1, norm_num_groups=8, cross_attention_dim=16,
                                  block_out_channels=(32, 32), attention_head_dim=1, **_UNET2D[stage])
    unet2d.save_pretrained(folder)
    return unet2d.state_dict()


@pytest.mark.parametrize("stage", ["base", "vsr"])
def test_init_from_unet2d_folder(tmp_path, stage):
    """Spatial weights come from the 2-D U-Net; the vsr stage then trains only its temporal layers (official),
    the base stage everything."""
    sd2d = _save_unet2d(tmp_path / "unet", stage)
    config = build(lavie_config(stage, tmp_path / "run", max_steps=2, init_from=str(tmp_path / "unet")))
    result = train_lavie(config, dataset=lavie_dataset(stage), device="cpu", progress=False)
    trained = state_of(result.last_checkpoint)
    spatial = [k for k in trained if not is_temporal_key(k)]
    assert set(spatial) == set(sd2d)
    unchanged = [k for k in spatial if torch.equal(trained[k], sd2d[k])]
    temporal_changed = [k for k in trained if is_temporal_key(k) and "weight" in k]
    if stage == "vsr":
        assert config.train.trainable == ["*temp*"]
        assert len(unchanged) == len(spatial) and temporal_changed
    else:
        assert config.train.trainable == "all" and len(unchanged) < len(spatial) // 2


def test_init_from_released_lavie_checkpoint(tmp_path):
    """A released (official) base checkpoint loads strictly and fine-tunes; a mismatching one is named."""
    fixture = torch.load(os.path.join(REFERENCE, "lavie_base_tiny.pt"), weights_only=True)
    unet = to_dict(unet3d_config_from_official(fixture["config"], "base"))
    save_file({k: v.clone() for k, v in fixture["state_dict"].items()}, str(tmp_path / "lavie_base.safetensors"))
    data = lavie_config("base", tmp_path / "run", max_steps=1, init_from=str(tmp_path / "lavie_base.safetensors"),
                        lr=1e-12)
    data["unet"] = unet
    channels = unet["out_channels"]
    dataset = TensorItems(moving_blobs(8, channels, 4, 8))
    result = train_lavie(build(data), dataset=dataset, device="cpu", progress=False)
    trained = state_of(result.last_checkpoint)
    assert trained.keys() == fixture["state_dict"].keys()
    assert all(torch.allclose(trained[k], fixture["state_dict"][k], atol=1e-6) for k in trained)
    data["unet"] = dict(unet, layers_per_block=unet["layers_per_block"] + 1)
    data["train"]["run_dir"] = str(tmp_path / "bad")
    with pytest.raises(Exception, match="lavie_base.safetensors"):
        train_lavie(build(data), dataset=dataset, device="cpu", progress=False)


def test_lora_trains_only_adapters(tmp_path):
    """LoRA on the U-Net's attention and feed-forward projections: the checkpoint holds the untouched base
    weights (loadable as they are) and a small adapter beside them."""
    from safetensors.torch import load_file

    from latte.models.lora import ADAPTER_FILE

    config = build(lavie_config("base", tmp_path, max_steps=2, trainable="lora", lr=1e-2))
    result = train_lavie(config, dataset=lavie_dataset("base"), device="cpu", progress=False)
    base = state_of(result.last_checkpoint)
    adapter = load_file(str(result.last_checkpoint / "model" / ADAPTER_FILE))
    seed_everything(config.train.seed)  # the engine builds the model right after seeding
    initial = LavieTask(build(lavie_config("base", tmp_path / "init"))).build_model(torch.device("cpu"), False)
    initial = initial.state_dict()
    assert base.keys() == initial.keys() and all(torch.equal(base[k], initial[k]) for k in initial)
    assert adapter and all("lora_" in k for k in adapter)
    assert any(k.endswith(("to_q.lora_A.weight", "ff.net.2.lora_A.weight")) for k in adapter)
    assert any("lora_B" in k and adapter[k].abs().max() > 0 for k in adapter)  # B starts at zero: it moved
    assert sum(v.numel() for v in adapter.values()) < 0.2 * sum(v.numel() for v in base.values())


def test_base_joint_image_video_with_captions_and_dropout(tmp_path):
    """Video frames get the clip's caption, each appended still its own; dropped captions are the empty one."""
    data = lavie_config("base", tmp_path, max_steps=2, num_images=2, text_dropout_prob=0.5)
    data["lavie"]["conditioning"] = "text"
    dataset = TensorItems(moving_blobs(8, 4, 6, 8), captions=[f"clip {i}" for i in range(8)])
    items = [dict(dataset[i], image_captions=[f"still {i}a", f"still {i}bb"]) for i in range(8)]

    class WithStills(torch.utils.data.Dataset):
        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            return items[i]

    task = LavieTask(build(data), WithStills())
    seen = []
    model = task.build_model(torch.device("cpu"), False)
    forward = model.forward

    def spy(sample, t, text, **kw):
        seen.append((sample.shape, text.clone(), kw["num_images"]))
        return forward(sample, t, text, **kw)

    model.forward = spy
    task.build_model = lambda device, resuming: model
    task.text_encoder = FakeTextEncoder()  # features depend on the caption length
    run(task, task.config.train, device="cpu", progress=False)
    assert len(seen) == 2
    dropped = []
    for shape, text, num_images in seen:
        assert shape[2] == 6 and num_images == 2 and text.shape[:2] == (4, 6)
        for row in text:
            video, stills = row[:4], row[4:]
            assert all(torch.equal(v, video[0]) for v in video)  # one caption for the clip's frames
            dropped.append(bool(video[0].abs().sum() == 0))
            assert dropped[-1] == bool(stills.abs().sum() == 0)  # a dropped sample drops its stills' captions too
            if not dropped[-1]:
                assert not torch.equal(stills[0], video[0]) and not torch.equal(stills[0], stills[1])
    assert any(dropped) and not all(dropped)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="prediction_type"):
        build({**lavie_config("vsr", "x"), "diffusion": {"prediction_type": "epsilon"}})
    with pytest.raises(ConfigError, match=r"data.num_frames.*4·\(n−1\)\+1"):
        build({**lavie_config("interp", "x"), "data": {"num_frames": 6}})
    with pytest.raises(ConfigError, match="unet.in_channels: the interp stage feeds 8"):
        data = lavie_config("interp", "x")
        data["unet"]["in_channels"] = 4
        build(data)
    with pytest.raises(ConfigError, match="lavie.patch_size"):
        data = lavie_config("vsr", "x")
        data["lavie"]["patch_size"] = 9
        build(data)
    with pytest.raises(ConfigError, match="train.num_images"):
        build({**lavie_config("interp", "x"), "train": {"num_images": 2}, "data": {"num_frames": 5}})


def test_interp_trains_from_the_latent_cache(tmp_path):
    """Base and interp latents can come from `latte cache` (same data and autoencoder sections)."""
    from latte.data.cache import CacheConfig, build_cache
    from latte.encoders import build_autoencoder

    data = {"kind": "synthetic", "image_size": 8, "num_frames": 5, "cache_dir": str(tmp_path / "cache"),
            "synthetic": {"num_videos": 8}}
    cache = from_dict(CacheConfig, {"data": data, "autoencoder": {"kind": "identity"},
                                    "cache": {"num_workers": 0, "dtype": "float32", "views": 1,
                                              "text_features": False}})
    build_cache(cache, build_autoencoder(cache.autoencoder), None, progress=False)
    config = lavie_config("interp", tmp_path / "run", max_steps=2, use_cache=True)
    config["data"] = data
    config["unet"].update(in_channels=6, out_channels=3)  # RGB "latents" of the identity autoencoder
    seen = []
    train_lavie(build(config), device="cpu", progress=False,
                on_step_end=lambda engine: seen.append(engine.last_stats["loss"]))
    assert len(seen) == 2 and all(torch.isfinite(torch.tensor(seen)))
