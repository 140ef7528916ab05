"""A class-conditional run saves its dataset's class names; sampling resolves --class NAME with them."""
import json

from latte.sampling.pipeline import LattePipeline
from latte.training.trainer import train

from helpers import build


def test_class_run_saves_class_names_and_sampling_uses_them(tmp_path):
    run = tmp_path / "run"
    config = build({
        "model": dict(input_size=4, num_frames=4, in_channels=12, hidden_size=32, depth=2, num_heads=2,
                      conditioning="class", num_classes=4),
        "data": dict(kind="synthetic", image_size=8, num_frames=4, hflip=False,
                     synthetic=dict(num_videos=8, shapes=["circle"], colors=["red"], directions=["left", "right", "up", "down"])),
        "autoencoder": {"kind": "identity", "patch_factor": 2},
        "train": dict(run_dir=str(run), max_steps=2, batch_size=2, num_workers=0, ckpt_every=2, log_every=1),
    })
    train(config)
    names = json.loads((run / "class_names.json").read_text())
    assert names == ["red circle moving left", "red circle moving right", "red circle moving up",
                     "red circle moving down"]
    pipe = LattePipeline.from_run(run)
    out = pipe(classes=["red circle moving up"], steps=2, sampler="ddim", progress=False)
    assert out.records[0]["class_id"] == 2
