"""The synthetic-data classifier and the offline metrics it gives (synthetic FVD, attribute accuracy)."""
import json

import numpy as np
import pytest
import torch

from latte.cli import main
from latte.config import from_dict
from latte.metrics.frechet import frechet_distance_from_features
from latte.metrics.synthetic import (ClassifierTrainConfig, attribute_accuracy, every_frame_check, frame_attributes,
                                     load_classifier, parse_caption, read_video_folder, requested_attributes,
                                     save_classifier, synthetic_real_videos, temporal_consistency)
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


def _clip(attrs: dict, seed: int, size: int = 24, scale: float = 0.45) -> torch.Tensor:
    from latte.data.synthetic import render_clip

    frames = render_clip(dict(attrs, speed="fast"), 8, size, seed, object_scale=scale)
    return torch.from_numpy(frames).permute(3, 0, 1, 2)


def test_per_frame_check_finds_real_clips_right_in_every_frame():
    from latte.data.synthetic import SyntheticDataset, SyntheticSpec

    for spec in (SyntheticSpec(shapes=("circle", "square", "triangle"), object_scale=0.4),  # the quickstart's
                 SyntheticSpec(shapes=("circle", "square", "triangle", "ring", "cross"),
                               colors=("red", "green", "blue", "yellow", "magenta", "cyan", "white"),
                               background="noise")):
        data = SyntheticDataset(spec, 24, 8, 32, seed=1, split="val")
        videos = torch.stack([torch.from_numpy(data.render(i)).permute(3, 0, 1, 2) for i in range(24)])
        frames = frame_attributes(videos, spec)
        assert frames["color"].shape == frames["shape"].shape == (24, 8)
        for i in range(24):
            attrs = data.attributes(i)
            assert set(frames["color"][i]) == {attrs["color"]} and set(frames["shape"][i]) == {attrs["shape"]}
        assert frames["shape_iou"].min() > 0.75


def test_every_frame_check_catches_colour_flicker_the_clip_classifier_misses(classifier_dir, tmp_path):
    from latte.data.synthetic import caption_for
    from latte.data.video_io import write_mp4

    detector, meta = load_classifier(classifier_dir)
    asked, videos = [], []
    for i in range(16):
        attrs = {"shape": ["circle", "square"][i % 2], "color": ["red", "blue"][i // 2 % 2],
                 "direction": ["left", "right", "up", "down"][i // 4]}
        other = "blue" if attrs["color"] == "red" else "red"
        clean, swapped = _clip(attrs, seed=i), _clip(dict(attrs, color=other), seed=i)  # same path, other colour
        spliced = clean.clone()
        spliced[:, 1::4] = swapped[:, 1::4]  # 2 of 8 frames in the other colour: the majority stays right
        videos += [clean, spliced]
        asked += [{"caption": caption_for(attrs)}] * 2
    videos = torch.stack(videos)
    clean = every_frame_check(videos[0::2], asked[0::2], detector, meta)
    assert clean["color_every_frame"] == clean["shape_every_frame"] == 1.0 and clean["flicker"] == 0.0
    assert clean["every_frame_joint"] == clean["clip_joint"] >= 0.7
    spliced = every_frame_check(videos[1::2], asked[1::2], detector, meta)
    assert spliced["color_flicker"] == spliced["flicker"] == 1.0 and spliced["shape_flicker"] == 0.0
    assert spliced["every_frame_joint"] == 0.0 and spliced["color_every_frame"] == 0.0
    assert spliced["clip_joint"] >= 0.5  # the clip classifier alone calls most of them right
    # the same numbers through the sample-folder reader (lossless mp4 + sidecars, as `latte sample` writes)
    for i in range(8):
        write_mp4(tmp_path / f"{i:04d}.mp4", videos[2 * i + 1].permute(1, 2, 3, 0).numpy(), crf=0)
        (tmp_path / f"{i:04d}.json").write_text(json.dumps(asked[2 * i + 1]))
    read, metas = read_video_folder(tmp_path)
    assert read.shape == (8, 3, 8, 24, 24) and metas == asked[1:16:2]
    assert every_frame_check(read, metas, detector, meta)["color_flicker"] == 1.0


def test_every_frame_check_catches_shape_changes_and_vanishing_objects(classifier_dir):
    detector, meta = load_classifier(classifier_dir)
    spec = meta["train_config_obj"].synthetic.spec()
    attrs = {"shape": "circle", "color": "red", "direction": "right"}
    circle, square = _clip(attrs, seed=3), _clip(dict(attrs, shape="square"), seed=3)
    morphing = circle.clone()
    morphing[:, 4:] = square[:, 4:]
    vanishing = circle.clone()
    vanishing[:, 5] = 0
    frames = frame_attributes(torch.stack([morphing, vanishing]), spec)
    assert list(frames["shape"][0]) == ["circle"] * 4 + ["square"] * 4
    assert set(frames["color"][0]) == {"red"} and frames["color"][1][5] == frames["shape"][1][5] == ""
    result = every_frame_check(torch.stack([morphing, vanishing]), [{"attributes": attrs}] * 2, detector, meta)
    assert result["shape_flicker"] == 1.0 and result["color_flicker"] == 0.5 and result["flicker"] == 1.0
    assert result["every_frame_joint"] == 0.0 and result["num_videos"] == 2
    with pytest.raises(ValueError, match="uint8 videos"):
        frame_attributes(morphing.float()[None], spec)
