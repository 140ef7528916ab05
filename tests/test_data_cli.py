"""`latte data generate`, `latte data scan` and `latte cache` end to end on tiny synthetic files."""
import csv

import torch

from latte.cli import main
from latte.config import from_dict
from latte.data import DataConfig, build_dataset


def test_generate_scan_and_cache(tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["data", "generate", str(out), "--num-videos", "6", "--num-heldout", "2", "--heldout", "red circle",
                 "--size", "16", "--frames", "4", "--layout", "classes"]) == 0
    rows = list(csv.DictReader(open(out / "captions.csv")))
    assert len(rows) == 8 and {r["split"] for r in rows} == {"train", "heldout"}
    assert all(r["caption"] == f"a {r['color']} {r['shape']} moving {r['direction']}" for r in rows)
    assert all(r["shape"] == "circle" and r["color"] == "red" for r in rows if r["split"] == "heldout")

    # the class-folder layout gives the same class ids as the manifest labels
    classes = build_dataset(from_dict(DataConfig, {"kind": "classes", "path": str(out / "train"), "image_size": 16,
                                                   "num_frames": 4, "frame_interval": 1}), split="val")
    labels = {r["path"]: int(r["label"]) for r in rows}
    for i, record in enumerate(classes.records):
        assert classes[i]["y"] == labels[str(record.path).split(str(out) + "/")[1]]

    (out / "train" / "000_red_circle_moving_left" / "broken.mp4").write_bytes(b"")
    config = tmp_path / "cfg.yaml"
    config.write_text(f"data:\n  kind: captions\n  path: {out / 'captions.csv'}\n  image_size: 16\n  num_frames: 4\n"
                      f"  frame_interval: 1\n  hflip: false\n  cache_dir: {tmp_path / 'cache'}\n"
                      "autoencoder:\n  kind: identity\ncache:\n  views: 1\n  num_workers: 0\n  text_features: false\n")
    capsys.readouterr()
    assert main(["data", "scan", str(config), "--set", "data.kind=classes", "--set", f"data.path={out / 'train'}",
                 "--list"]) == 0
    printed = capsys.readouterr().out
    assert "empty_file\t" in printed and "6 usable items; skipped 1: empty_file 1" in printed
    assert main(["data", "scan", str(config), "--split", "val"]) == 1  # no val rows: an error that says why
    assert "no rows of split 'val'" in capsys.readouterr().out

    assert main(["cache", str(config), "--no-progress"]) == 0
    cached = build_dataset(from_dict(DataConfig, {**_data(config), "kind": "captions"}), use_cache=True)
    assert len(cached) == 6 and cached[0]["latents"].shape == (3, 4, 16, 16)
    assert cached[0]["latents"].dtype == torch.float32 and "caption" in cached[0]


def _data(config):
    import yaml

    return yaml.safe_load(config.read_text())["data"]
