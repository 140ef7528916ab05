"""Conditioning modes, image-video joint training, the dataset pipeline, validation samples and init_from."""
import pytest
import torch

from latte.config import ConfigError
from latte.training.trainer import Trainer, train
from helpers import FakeTextEncoder, build, state_of, tiny_config, tiny_dataset


def _synthetic_config(tmp_path, conditioning: dict, **train_kw):
    data = tiny_config(tmp_path, **{"max_steps": 2, "ckpt_every": 2, **train_kw})
    data["model"].update(in_channels=12, **conditioning)
    data["data"] = {"kind": "synthetic", "image_size": 16, "num_frames": 4, "hflip": False,
                    "synthetic": {"num_videos": 16, "shapes": ["circle", "square"], "colors": ["red", "blue"],
                                  "directions": ["left", "right"]}}
    data["autoencoder"] = {"kind": "identity", "patch_factor": 2}
    return data


def test_text_conditioning_drops_captions_to_empty(tmp_path):
    data = tiny_config(tmp_path, text_dropout_prob=0.5)
    data["model"].update(conditioning="text", text_dim=16)
    trainer = Trainer(build(data), dataset=tiny_dataset())
    trainer.task.text_encoder = FakeTextEncoder()
    batch = {"caption": ["a red circle", "a blue square"]}
    kwargs = trainer.task.condition(batch, drop=torch.tensor([0.2, 0.9]))
    null, null_mask = FakeTextEncoder().encode([""])
    assert torch.equal(kwargs["text"][0], null[0]) and torch.equal(kwargs["text_mask"][0], null_mask[0])
    assert torch.equal(kwargs["text"][1], FakeTextEncoder().encode(["a blue square"])[0][0])
    calls = trainer.task.text_encoder.calls
    trainer.task.condition(batch, drop=torch.tensor([0.9, 0.9]))
    trainer.task.condition(batch, drop=torch.tensor([0.9, 0.9]))
    assert trainer.task.text_encoder.calls == calls + 1  # features of seen captions are memoised


def test_class_dropout_is_forced_per_sample(tmp_path):
    data = tiny_config(tmp_path)
    data["model"].update(conditioning="class", num_classes=3, class_dropout_prob=0.3)
    trainer = Trainer(build(data), dataset=tiny_dataset(classes=3))
    kwargs = trainer.task.condition({"y": torch.tensor([0, 2])}, drop=torch.tensor([0.1, 0.5]))
    assert kwargs["force_drop_ids"].tolist() == [1, 0]


def test_text_joint_training_with_validation_on_synthetic_data(tmp_path):
    data = _synthetic_config(tmp_path, {"conditioning": "text", "text_dim": 16}, num_images=2)
    data["validation"] = {"every": 2, "num_samples": 2, "steps": 2, "prompts": ["a red circle moving left"],
                          "cfg_scale": 2.0}
    config = build(data)
    trainer = Trainer(config)
    trainer.task.text_encoder = FakeTextEncoder()
    seen = {}
    original = trainer.forward_model.forward

    def spy(x, t, **kw):
        seen.update(shape=tuple(x.shape), **{k: v for k, v in kw.items() if k != "text"})
        return original(x, t, **kw)

    trainer.forward_model.forward = spy
    result = trainer.fit()
    assert result.step == 2
    assert seen["shape"] == (4, 12, 4 + 2, 8, 8) and seen["num_images"] == 2
    assert seen["image_text"].shape == (4, 2, 5, 16)  # the stills carry their own captions
    samples = tmp_path / "samples" / "step_0000002"
    assert sorted(p.name for p in samples.iterdir()) == ["sample_0.gif", "sample_0.mp4", "sample_1.gif",
                                                         "sample_1.mp4"]
    assert any((tmp_path / "tensorboard").iterdir())


def test_class_joint_training_passes_image_labels(tmp_path):
    data = _synthetic_config(tmp_path, {"conditioning": "class", "num_classes": 8}, num_images=2)
    trainer = Trainer(build(data))
    seen = {}
    original = trainer.forward_model.forward
    trainer.forward_model.forward = lambda x, t, **kw: (seen.update(kw), original(x, t, **kw))[1]
    trainer.fit()
    assert seen["y_images"].shape == (4, 2) and seen["y"].shape == (4,)


def test_data_that_does_not_fit_the_model_is_a_config_error(tmp_path):
    data = _synthetic_config(tmp_path, {})
    data["model"]["in_channels"] = 4
    with pytest.raises(ConfigError, match=r"model\.in_channels"):
        train(build(data))


def test_init_from_our_run_and_official_pt(tmp_path):
    first = train(build(tiny_config(tmp_path / "a", max_steps=2)), dataset=tiny_dataset())
    trainer = Trainer(build(tiny_config(tmp_path / "b", init_from=str(tmp_path / "a"))), dataset=tiny_dataset())
    ema = state_of(first.last_checkpoint, "ema")
    assert all(torch.equal(v, ema[k]) for k, v in trainer.model.state_dict().items())
    official = {k: v + 1 for k, v in ema.items()}
    official["temp_embed"] = torch.zeros(1, 4, 32)  # official Latte stores its frozen sin-cos tables
    torch.save({"ema": official}, tmp_path / "0001000.pt")
    trainer = Trainer(build(tiny_config(tmp_path / "c", init_from=str(tmp_path / "0001000.pt"))),
                      dataset=tiny_dataset())
    assert all(torch.equal(v, official[k]) for k, v in trainer.model.state_dict().items())


def test_worker_processes_do_not_change_the_result(tmp_path):
    """Item randomness (here: which stills join a clip) is seeded per (epoch, index): 0 or 2 DataLoader
    workers train identically."""
    results = []
    for workers in (0, 2):
        data = _synthetic_config(tmp_path / str(workers), {}, num_workers=workers, max_steps=5, ckpt_every=5,
                                 num_images=2)
        results.append(state_of(train(build(data)).last_checkpoint))
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_wandb_without_package_is_a_config_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails as when not installed
    data = tiny_config(tmp_path, max_steps=1)
    data["wandb"] = {"enabled": True}
    with pytest.raises(ConfigError, match=r"wandb\.enabled"):
        train(build(data), dataset=tiny_dataset())


def test_training_from_the_latent_cache(tmp_path):
    from latte.config import from_dict
    from latte.data.cache import CacheConfig, build_cache
    from latte.encoders import build_autoencoder

    data = _synthetic_config(tmp_path / "run", {"conditioning": "class", "num_classes": 8}, use_cache=True)
    data["data"]["cache_dir"] = str(tmp_path / "cache")
    cache_cfg = from_dict(CacheConfig, {"data": data["data"], "autoencoder": data["autoencoder"],
                                        "cache": {"views": 1, "num_workers": 0, "dtype": "float32",
                                                  "text_features": False}})
    build_cache(cache_cfg, build_autoencoder(cache_cfg.autoencoder))
    trainer = Trainer(build(data))
    assert type(trainer.dataset).__name__ == "CachedLatentDataset"
    assert trainer.fit().step == 2
