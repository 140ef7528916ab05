"""Validation samples go through the sampling pipeline: a validation video is what `latte sample` makes from
the saved checkpoint with the same seed, sampler, steps and guidance (also with batch-truncated text
features and cfg_scale > 1, which the old separate validation sampler could not run)."""
import numpy as np
import pytest

from latte.config import ConfigError
from latte.data.video_io import read_all_frames, write_gif
from latte.sampling.pipeline import LattePipeline
from latte.training.trainer import Trainer
from helpers import build, tiny_config

PROMPTS = ["a red circle moving left", "a blue square"]


def _text_run(tmp_path, truncate: bool) -> dict:
    data = tiny_config(tmp_path, max_steps=2, ckpt_every=2)
    data["model"].update(in_channels=12, conditioning="text", text_dim=384)
    data["data"] = {"kind": "synthetic", "image_size": 16, "num_frames": 4, "hflip": False,
                    "synthetic": {"num_videos": 8, "shapes": ["circle", "square"], "colors": ["red", "blue"],
                                  "directions": ["left", "right"]}}
    data["autoencoder"] = {"kind": "identity", "patch_factor": 2}
    data["text_encoder"] = {"kind": "minilm", "max_length": 16, "truncate_to_valid": truncate}
    data["validation"] = {"every": 2, "num_samples": 2, "seeds": [11, 12], "sampler": "ddim", "steps": 3,
                          "prompts": PROMPTS, "cfg_scale": 3.0, "fps": 4}
    return data


@pytest.mark.parametrize("truncate", [False, True])
def test_validation_video_equals_latte_sample_of_the_checkpoint(tmp_path, truncate):
    trainer = Trainer(build(_text_run(tmp_path, truncate)))
    result = trainer.fit()
    written = tmp_path / "samples" / "step_0000002"
    assert sorted(p.name for p in written.iterdir()) == ["sample_0.gif", "sample_0.mp4", "sample_1.gif",
                                                         "sample_1.mp4"]
    pipe = LattePipeline.from_run(result.last_checkpoint)  # what `latte sample CHECKPOINT` loads (EMA)
    sampled = pipe(prompts=PROMPTS, seeds=[11, 12], sampler="ddim", steps=3, cfg_scale=3.0, progress=False).videos
    assert sampled.shape == (2, 4, 16, 16, 3)
    validation = trainer.task.validation_videos(trainer.ema)
    np.testing.assert_array_equal(validation, sampled)
    for k in range(2):  # the files hold these videos: the GIF byte for byte (lossless, deterministic); the
        # mp4 decodes close to them (x264 under CPU load is not bit-reproducible across encodes)
        reference = write_gif(tmp_path / f"ref_{k}.gif", sampled[k], fps=4).read_bytes()
        assert (written / f"sample_{k}.gif").read_bytes() == reference
        decoded = read_all_frames(written / f"sample_{k}.mp4").astype(float)
        means = np.abs(decoded.mean(axis=(1, 2)) - sampled[k].mean(axis=(1, 2)))  # per frame and channel
        assert decoded.shape == sampled[k].shape and means.max() < 12, means
    assert not np.array_equal(sampled[0], sampled[1])


def test_old_validation_keys_name_the_new_ones(tmp_path):
    data = tiny_config(tmp_path)
    data["validation"] = {"num_steps": 3}
    with pytest.raises(ConfigError, match="'validation.num_steps' was renamed: use 'validation.steps'"):
        build(data)
    data["validation"] = {"guidance_scale": 2.0}
    with pytest.raises(ConfigError, match="'validation.guidance_scale' was renamed: use 'validation.cfg_scale'"):
        build(data)
    data["validation"] = {"sampler": "ddmi"}
    with pytest.raises(ConfigError, match="validation.sampler: unknown sampler 'ddmi'"):
        build(data)
