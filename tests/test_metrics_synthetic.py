"""The synthetic-data classifier and the offline metrics it gives (synthetic FVD, attribute accuracy)."""
import json

import numpy as np
import pytest
import torch

from latte.cli import main
from latte.config import from_dict
from latte.metrics.frechet import frechet_distance_from_features
from latte.metrics.synthetic import (ClassifierTrainConfig, attribute_accuracy, load_classifier, parse_caption,
                                     requested_attributes, save_classifier, synthetic_real_videos,
                                     temporal_consistency)
from latte.training.tasks.classifier import train_classifier

TINY = {"synthetic": {"shapes": ["circle", "square"], "colors": ["red", "blue"], "speeds": ["fast"]},
        "num_frames": 8, "image_size": 24, "num_videos": 256, "val_videos": 64, "max_steps": 600, "batch_size": 16,
        "width": 8, "feature_dim": 32, "lr": 5e-3}


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = from_dict(ClassifierTrainConfig, TINY)
    model, metrics = train_classifier(cfg, progress=False)  # ~5 s on one thread
    return save_classifier(model, cfg, metrics, tmp_path_factory.mktemp("classifier"))


def test_classifier_separates_every_attribute(classifier_dir):
    meta = json.loads((classifier_dir / "classifier.json").read_text())
    assert meta["heads"] == {"shape": ["circle", "square"], "color": ["red", "blue"],
                             "direction": ["left", "right", "up", "down"]}
    acc = meta["metrics"]["val_accuracy"]
    assert acc["color"] == 1.0 and acc["direction"] >= 0.95 and acc["shape"] >= 0.85, acc


def test_synthetic_fvd_rises_monotonically_with_noise(classifier_dir):
    detector, meta = load_classifier(classifier_dir)
    cfg = meta["train_config_obj"]
    videos = synthetic_real_videos(cfg, 256, cfg.num_frames, progress=False)
    real_a, real_b = videos[:128], videos[128:]
    feats_a = detector(real_a).double().numpy()
    gen = torch.Generator().manual_seed(0)
    fds = []
    for sigma in (0.0, 0.3, 0.6, 1.0):  # in [-1, 1] units; training adds noise_std=0.05, so it shrugs off less
        noisy = (real_b.float() + sigma * 127.5 * torch.randn(real_b.shape, generator=gen)).clamp(0, 255)
        fds.append(frechet_distance_from_features(feats_a, detector(noisy.round().to(torch.uint8)).double().numpy()))
    assert all(a < b for a, b in zip(fds, fds[1:])), fds
    assert fds[-1] > 3 * fds[0]  # fds[0] is the real-vs-real baseline


def test_attribute_accuracy_from_captions_and_class_ids(classifier_dir):
    detector, meta = load_classifier(classifier_dir)
    heads = meta["heads"]
    assert parse_caption("a red circle moving left", heads) == {"shape": "circle", "color": "red",
                                                                "direction": "left"}
    assert parse_caption("a blue digit 3 moving up", {"digit": list("0123456789")}) == {"digit": "3"}
    spec_cfg = meta["train_config_obj"].synthetic
    assert requested_attributes({"y": 1}, heads, spec_cfg) == {"shape": "circle", "color": "red",
                                                               "direction": "right"}
    from latte.data.synthetic import SyntheticDataset, caption_for

    data = SyntheticDataset(spec_cfg.spec(), 48, 8, 24, seed=5, split="val")
    videos = torch.stack([torch.from_numpy(data.render(i)).permute(3, 0, 1, 2) for i in range(48)])
    preds = {k: v.numpy() for k, v in detector.predict(videos).items()}
    right = [parse_caption(caption_for(data.attributes(i)), heads) for i in range(48)]
    flip = {"left": "right", "right": "left", "up": "down", "down": "up"}
    wrong = [dict(r, direction=flip[r["direction"]]) for r in right]
    good, bad = attribute_accuracy(preds, right, heads), attribute_accuracy(preds, wrong, heads)
    assert good["joint"] >= 0.7 and good["num_videos"] == 48  # the tiny test classifier: shape ~0.9
    assert bad["direction"] <= 0.1 and bad["joint"] <= 0.1 and bad["color"] == good["color"]


def test_temporal_consistency_static_smooth_and_shuffled():
    static = torch.full((2, 3, 8, 4, 4), 100, dtype=torch.uint8)
    assert temporal_consistency(static) == {"frame_change": 0.0, "flicker": 0.0}
    ramp = torch.arange(8, dtype=torch.uint8).mul(10).view(1, 1, 8, 1, 1).expand(1, 3, 8, 4, 4)
    smooth = temporal_consistency(ramp)
    assert smooth["frame_change"] == pytest.approx(10 / 255) and smooth["flicker"] == pytest.approx(0.0)
    shuffled = temporal_consistency(ramp[:, :, [0, 5, 1, 7, 2, 6, 3, 4]])
    assert shuffled["flicker"] > 0.05 and shuffled["frame_change"] > smooth["frame_change"]


def test_eval_cli_on_sample_folders(classifier_dir, tmp_path, capsys):
    from latte.data.synthetic import SyntheticDataset, caption_for
    from latte.data.video_io import write_mp4

    detector, meta = load_classifier(classifier_dir)
    spec = meta["train_config_obj"].synthetic.spec()
    data = SyntheticDataset(spec, 40, 8, 24, seed=9, split="val")
    for step, noise in ((100, 80.0), (200, 0.0)):  # the later "checkpoint" makes cleaner videos
        folder = tmp_path / f"samples_step_{step}"
        rng = np.random.default_rng(step)
        for i in range(40):
            frames = np.clip(data.render(i) + rng.normal(0, noise, (8, 24, 24, 3)), 0, 255).astype(np.uint8)
            write_mp4(folder / f"{i:04d}.mp4", frames, crf=0)
            (folder / f"{i:04d}.json").write_text(json.dumps({"caption": caption_for(data.attributes(i))}))
    out = tmp_path / "eval"
    code = main(["eval", "--fake", str(tmp_path / "samples_step_100"), str(tmp_path / "samples_step_200"),
                 "--metrics", "synthetic-fvd,attribute-accuracy", "--classifier", str(classifier_dir),
                 "--num-clips", "40", "--frames", "8", "--out", str(out), "--no-progress", "--device", "cpu"])
    assert code == 0
    result = json.loads((out / "eval.json").read_text())
    assert (out / "eval.png").stat().st_size > 1000
    runs = {r["fake"]["step"]: r["metrics"] for r in result["runs"]}
    assert set(runs) == {100, 200}
    assert runs[200]["synthetic_fvd"] < runs[100]["synthetic_fvd"]
    assert runs[200]["attribute_accuracy"]["joint"] >= 0.7
    assert result["settings"]["num_fake"] == 40 and result["settings"]["seed"] == 0
    assert result["detectors"]["classifier"]["sha256"] and result["synthetic_real"][0]["clips"] == 40
    assert "synthetic_fvd_real_baseline" in capsys.readouterr().out


def test_classifiers_saved_with_the_old_key_names_still_load(classifier_dir, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(classifier_dir, old)
    meta = json.loads((old / "classifier.json").read_text())
    cfg = meta["train_config"]
    cfg["size"], cfg["steps"] = cfg.pop("image_size"), cfg.pop("max_steps")  # as written before the rename
    (old / "classifier.json").write_text(json.dumps(meta))
    _, loaded = load_classifier(old)
    assert loaded["train_config_obj"].image_size == 24 and loaded["train_config_obj"].max_steps == 600
