"""Dataset kinds on small generated files; bad input is skipped with the right reasons."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from latte.config import ConfigError, from_dict
from latte.data import DataConfig, EmptyDatasetError, build_dataset
from helpers import make_broken_corpus, ramp_video, write_vfr, write_video, write_with_codec

SMALL = {"image_size": 16, "num_frames": 4, "frame_interval": 2}


def config(**kw) -> DataConfig:
    return from_dict(DataConfig, {**SMALL, **kw})


def check_video(item, frames=4, size=16):
    video = item["video"]
    assert video.shape == (3, frames, size, size) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1


def test_videos_kind_recursive(tmp_path):
    write_video(tmp_path / "a" / "x.mp4", 20)
    write_video(tmp_path / "b" / "deeper" / "y.mkv", 9, height=40, width=30)
    ds = build_dataset(config(kind="videos", path=str(tmp_path)))
    assert len(ds) == 2 and ds.class_names is None
    for i in range(2):
        item = ds[i]
        check_video(item)
        assert item["index"] == i and "y" not in item and "caption" not in item


def test_eval_split_is_deterministic_train_is_random(tmp_path):
    write_video(tmp_path / "x.mp4", 60)
    cfg = config(kind="videos", path=str(tmp_path), hflip=False)
    val = build_dataset(cfg, split="val")
    assert torch.equal(val[0]["video"], val[0]["video"])
    train = build_dataset(cfg, split="train")
    torch.manual_seed(1)
    clips = {tuple(train[0]["video"][0, :, 0, 0].tolist()) for _ in range(8)}
    assert len(clips) > 1  # random temporal windows


def test_classes_kind_sorted_mapping_and_override(tmp_path):
    for name in ("walk", "Apply", "run"):
        write_video(tmp_path / name / f"{name}_1.mp4", 10)
    ds = build_dataset(config(kind="classes", path=str(tmp_path)))
    assert ds.class_names == ["Apply", "run", "walk"]
    labels = {ds.records[i].path.split("/")[-2]: ds[i]["y"] for i in range(len(ds))}
    assert labels == {"Apply": 0, "run": 1, "walk": 2}
    fixed = build_dataset(config(kind="classes", path=str(tmp_path), class_names=["walk", "run", "Apply"]))
    assert fixed.class_names == ["walk", "run", "Apply"]
    assert sorted(fixed[i]["y"] for i in range(3)) == [0, 1, 2]
    with pytest.raises(EmptyDatasetError, match="swim"):
        build_dataset(config(kind="classes", path=str(tmp_path), class_names=["swim"]))


def test_frame_folders_kind_reads_frames_in_natural_order(tmp_path):
    clip = tmp_path / "clip_a"
    clip.mkdir()
    for t, frame in enumerate(ramp_video(12, 20, 20)):
        Image.fromarray(frame).save(clip / f"img_{t}.png")  # img_10 must come after img_9
    (tmp_path / "empty_clip").mkdir()
    cfg = config(kind="frame_folders", path=str(tmp_path), frame_interval=3, frame_sampling="stride",
                 hflip=False, image_size=20)
    ds = build_dataset(cfg, split="val")
    assert len(ds) == 1
    video = ds[0]["video"]
    # val window of 12 frames over 12: begin 0, stride 3 -> frames 0, 3, 6, 9 (brightness 8 t)
    expected = torch.tensor([0, 3, 6, 9]) * 8 / 127.5 - 1
    assert torch.allclose(video[0, :, 0, 0], expected, atol=1e-5)


def write_captions(tmp_path, rows, fmt):
    if fmt == "csv":
        path = tmp_path / "captions.csv"
        lines = ["path,caption,split"] + [",".join(f'"{v}"' for v in row) for row in rows]
        path.write_text("\n".join(lines) + "\n")
    else:
        path = tmp_path / "captions.jsonl"
        path.write_text("\n".join(json.dumps({"path": p, "caption": c, "split": s}) for p, c, s in rows) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_captions_kind_splits_and_path_escape(tmp_path, fmt):
    data = tmp_path / "data"
    write_video(data / "videos" / "a.mp4", 10)
    write_video(data / "videos" / "b.mp4", 10)
    write_video(tmp_path / "outside.mp4", 10)  # exists, but outside the manifest's folder
    rows = [("videos/a.mp4", "a cat, jumping", "train"), ("videos/b.mp4", "a dog", "validation"),
            ("../outside.mp4", "escape", "train"), (str(tmp_path / "outside.mp4"), "absolute escape", "train"),
            ("videos/missing.mp4", "gone", "train"), ("videos/a.mp4", "", "train")]
    manifest = write_captions(data, rows, fmt)
    train = build_dataset(config(kind="captions", path=str(manifest)))
    assert len(train) == 1 and train[0]["caption"] == "a cat, jumping"
    check_video(train[0])
    counts = train.counter.counts
    assert counts["path_escapes_root"] == 2 and counts["missing"] == 1 and counts["bad_manifest_row"] == 1
    val = build_dataset(config(kind="captions", path=str(manifest)), split="val")
    assert [val[i]["caption"] for i in range(len(val))] == ["a dog"]


def test_captions_manifest_bad_rows_and_non_utf8(tmp_path):
    write_video(tmp_path / "a.mp4", 10)
    write_video(tmp_path / "b.mp4", 10)
    lines = [b'{"video_file_name": "a.mp4", "prompt": "fine"}', b"{not json", b"[1, 2]",
             b'{"video_file_name": "b.mp4", "prompt": "caf\xe9 latin-1"}']
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b"\n".join(lines))
    ds = build_dataset(config(kind="captions", path=str(manifest)))
    assert len(ds) == 1 and ds[0]["caption"] == "fine"
    assert ds.counter.counts == {"bad_manifest_row": 2, "caption_not_utf8": 1}
    csv_manifest = tmp_path / "m.csv"
    csv_manifest.write_bytes(b"video_file_name|prompt\na.mp4|ok\nb.mp4|caf\xe9\n")
    ds = build_dataset(config(kind="captions", path=str(csv_manifest)))
    assert len(ds) == 1 and ds[0]["caption"] == "ok" and ds.counter.counts == {"caption_not_utf8": 1}


def test_broken_corpus_is_skipped_with_reasons(tmp_path):
    expected = make_broken_corpus(tmp_path)
    ds = build_dataset(config(kind="videos", path=str(tmp_path), num_frames=8, frame_interval=2))
    usable = sorted(p.split("/")[-1] for p in (r.path for r in ds.records))
    assert usable == sorted(name for name, reason in expected.items() if reason is None)
    got = {path.split("/")[-1]: reason for path, reason in ds.counter.reasons.items()}
    assert got == {name: reason for name, reason in expected.items() if reason is not None}
    for i in range(len(ds)):  # every usable clip decodes, whatever its size/format/frame rate
        check_video(ds[i], frames=8)
    skip = build_dataset(config(kind="videos", path=str(tmp_path), num_frames=8, frame_interval=2,
                                short_clips="skip"))
    assert skip.counter.reasons[str(tmp_path / "short.mp4")] == "too_short"


def test_failure_at_load_time_is_replaced_and_counted(tmp_path):
    for name in ("a", "b", "c"):
        write_video(tmp_path / f"{name}.mp4", 10)
    ds = build_dataset(config(kind="videos", path=str(tmp_path)), split="val")
    (tmp_path / "b.mp4").write_bytes(b"")  # breaks after the scan
    item = ds[1]
    assert item["index"] == 2  # deterministic replacement: the next item
    assert ds.counter.reasons == {str(tmp_path / "b.mp4"): "empty_file"}
    assert ds[1]["index"] == 2  # remembered, not retried


def test_header_overestimating_length_is_corrected(tmp_path):

    write_vfr(tmp_path / "vfr.mkv", 30)
    ds = build_dataset(config(kind="videos", path=str(tmp_path), num_frames=16, frame_interval=2), split="val")
    assert ds.records[0].num_frames > 30  # duration x rate estimate
    check_video(ds[0], frames=16)
    assert ds.records[0].num_frames == 30 and ds.counter.total == 0


def test_zero_usable_items_error_lists_reasons(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "b.mp4").write_bytes(b"garbage")
    with pytest.raises(EmptyDatasetError, match=r"empty_file 1.*unreadable 1|unreadable 1.*empty_file 1"):
        build_dataset(config(kind="videos", path=str(tmp_path)))
    with pytest.raises(EmptyDatasetError, match="is not a folder"):
        build_dataset(config(kind="videos", path=str(tmp_path / "nonexistent")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyDatasetError, match="nothing matching"):
        build_dataset(config(kind="videos", path=str(tmp_path / "empty")))


def test_images_kind_and_joint_training(tmp_path):
    for cls in ("cats", "dogs"):
        (tmp_path / "img" / cls).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(np.full((20, 24, 3), 40 * k, np.uint8)).save(tmp_path / "img" / cls / f"{k}.jpg")
    (tmp_path / "img" / "dogs" / "broken.png").write_bytes(b"nope")
    images = build_dataset(config(kind="images", path=str(tmp_path / "img")))
    assert len(images) == 4 and images.class_names == ["cats", "dogs"]
    assert images.counter.counts == {"unreadable": 1}
    check_video(images[0], frames=1)
    for name in ("run", "walk"):
        write_video(tmp_path / "vid" / name / "1.mp4", 10)
    cfg = config(kind="classes", path=str(tmp_path / "vid"), image_path=str(tmp_path / "img"))
    joint = build_dataset(cfg, num_images=3)
    item = joint[0]
    check_video(item, frames=4 + 3)
    assert item["y_images"].shape == (3,) and set(item["y_images"].tolist()) <= {0, 1}
    own = build_dataset(config(kind="classes", path=str(tmp_path / "vid")), num_images=2)
    item = own[1]  # stills drawn from the clips themselves carry their class
    check_video(item, frames=6)
    assert joint.class_names == ["run", "walk"] and item["y_images"].tolist() in ([0, 0], [0, 1], [1, 0], [1, 1])


def test_config_validation_messages():
    with pytest.raises(ConfigError, match="data.path"):
        from_dict(DataConfig, {"kind": "videos"})
    with pytest.raises(ConfigError, match="frame_samplin"):
        from_dict(DataConfig, {"frame_samplin": "stride"})
    with pytest.raises(ConfigError, match="purple"):
        from_dict(DataConfig, {"synthetic": {"colors": ["purple"]}})


def test_synthetic_section_is_refused_for_other_kinds():
    with pytest.raises(ConfigError, match="data.synthetic: only used by kind 'synthetic'"):
        from_dict(DataConfig, {"kind": "videos", "path": "clips", "synthetic": {"num_videos": 8}})


def test_frame_folder_with_a_corrupt_frame_is_skipped_once_and_never_reread(tmp_path, monkeypatch, caplog):
    import latte.data.video_io as video_io

    for name in ("a_clip", "b_clip"):
        (tmp_path / name).mkdir()
        for t, frame in enumerate(ramp_video(8, 16, 16)):
            Image.fromarray(frame).save(tmp_path / name / f"{t}.png")
    (tmp_path / "a_clip" / "2.png").write_bytes(b"not a png")  # found only when read (scan: header)
    ds = build_dataset(config(kind="frame_folders", path=str(tmp_path), hflip=False), split="val")
    assert len(ds) == 2
    reads = []
    original = video_io.read_image
    monkeypatch.setattr(video_io, "read_image", lambda path: reads.append(str(path)) or original(path))
    with caplog.at_level("WARNING"):
        for _ in range(3):
            assert ds[0]["index"] == 1  # replaced by the next clip
    assert ds.counter.reasons == {str(tmp_path / "a_clip"): "unreadable"}
    assert ds.counter.total == 1
    assert sum("a_clip" in r for r in reads) <= 4  # the first access only (4 frames), never again
    assert len([r for r in caplog.records if "a_clip" in r.getMessage()]) == 1  # reported once
    assert "2.png" in caplog.text  # the bad frame is named


def test_scan_decode_and_header_agree_on_a_truncated_video(tmp_path):

    full = write_with_codec(tmp_path / "full.mkv", ramp_video(60, 32, 32), "mpeg4", "yuv420p", fps=10)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "trunc.mkv").write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    results = {}
    for scan in ("header", "decode"):
        cfg = config(kind="videos", path=str(tmp_path / "data"), num_frames=16, frame_interval=3, scan=scan,
                     short_clips="skip", hflip=False)
        ds = build_dataset(cfg, split="val", progress=False)
        item = ds[0]
        check_video(item, frames=16)
        results[scan] = (len(ds), ds.counter.total, ds.records[0].num_frames, item["video"])
    assert results["header"][:3] == results["decode"][:3] == (1, 0, results["decode"][2])
    assert 48 <= results["decode"][2] < 60  # the true (decoded) length, not the header's 60
    assert torch.equal(results["header"][3], results["decode"][3])
