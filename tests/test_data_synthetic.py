"""Synthetic moving shapes/digits: deterministic by seed, and captions/labels match the pixels."""
import numpy as np
import pytest
import torch

from latte.config import from_dict
from latte.data import DataConfig, SyntheticDataset, SyntheticSpec, build_dataset, caption_for, render_clip
from latte.data.synthetic import COLORS


def centroid_and_color(frame: np.ndarray):
    ink = frame.astype(float).sum(-1) > 120  # black background
    ys, xs = np.nonzero(ink)
    return np.array([xs.mean(), ys.mean()]), frame[ink].mean(0)


def nearest_color(rgb) -> str:
    return min(COLORS, key=lambda c: np.abs(np.array(COLORS[c]) - rgb).sum())


def test_same_seed_same_clips_other_seed_other_clips():
    spec = SyntheticSpec()
    a = SyntheticDataset(spec, 8, 6, 32, seed=3)
    b = SyntheticDataset(spec, 8, 6, 32, seed=3)
    c = SyntheticDataset(spec, 8, 6, 32, seed=4)
    for i in range(8):
        assert torch.equal(a[i]["video"], b[i]["video"]) and a[i]["caption"] == b[i]["caption"]
    assert any(not torch.equal(a[i]["video"], c[i]["video"]) for i in range(8))


@pytest.mark.parametrize("pattern", ["shapes", "digits"])
def test_captions_and_labels_match_content(pattern):
    ds = SyntheticDataset(SyntheticSpec(pattern=pattern), 24, 8, 32, seed=0)
    combos = ds.spec.combinations()
    moves = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
    for i in range(len(ds)):
        item, attrs = ds[i], ds.attributes(i)
        assert item["caption"] == caption_for(attrs)
        assert {k: v for k, v in attrs.items() if k != "speed"} == combos[item["y"]]
        frames = ds.render(i)
        (c0, rgb), (c1, _) = centroid_and_color(frames[0]), centroid_and_color(frames[-1])
        step = c1 - c0
        axis = int(np.argmax(np.abs(step)))
        dx, dy = moves[attrs["direction"]]
        assert (dx, dy)[axis] == np.sign(step[axis]) and abs(step[axis]) > 3, (item["caption"], step)
        assert nearest_color(rgb) == attrs["color"], item["caption"]
        assert attrs["color"] in item["caption"] and attrs["direction"] in item["caption"]


def test_shapes_are_distinguishable():
    attrs = {"color": "red", "direction": "left", "speed": "slow"}
    areas = {s: (render_clip({**attrs, "shape": s}, 1, 32, seed=0)[0].sum(-1) > 120).sum()
             for s in ("circle", "square", "triangle", "ring", "cross")}
    assert len(set(areas.values())) == 5 and min(areas.values()) > 40  # large enough to see at 32 px


def test_heldout_split_contains_only_heldout_combinations():
    cfg = from_dict(DataConfig, {"kind": "synthetic", "image_size": 32, "num_frames": 4,
                                 "synthetic": {"num_videos": 64, "heldout_videos": 16,
                                               "heldout": ["red circle", "blue square up"]}})
    train, held = build_dataset(cfg), build_dataset(cfg, split="heldout")
    val = build_dataset(cfg, split="val")
    assert len(train) == 64 and len(held) == 16

    def is_held(attrs):
        return (attrs.get("shape"), attrs["color"]) == ("circle", "red") or \
            (attrs.get("shape"), attrs["color"], attrs["direction"]) == ("square", "blue", "up")

    assert not any(is_held(train.attributes(i)) for i in range(len(train)))
    assert not any(is_held(val.attributes(i)) for i in range(len(val)))
    assert all(is_held(held.attributes(i)) for i in range(len(held)))
    assert {held.attributes(i)["direction"] for i in range(len(held))} == {"left", "right", "up", "down"}
    assert train.class_names == held.class_names and "red circle moving left" in train.class_names
    assert not torch.equal(train[0]["video"], val[0]["video"])


def test_joint_images_from_synthetic_clips():
    cfg = from_dict(DataConfig, {"image_size": 32, "num_frames": 4, "synthetic": {"num_videos": 4}})
    item = build_dataset(cfg, num_images=2)[0]
    assert item["video"].shape == (3, 6, 32, 32) and len(item["image_captions"]) == 2
    assert item["y_images"].shape == (2,)


def test_partial_captions_leave_out_one_attribute_word_in_the_train_split_only():
    cfg = {"kind": "synthetic", "image_size": 16, "num_frames": 2,
           "synthetic": {"num_videos": 400, "heldout_videos": 8, "partial_captions": 0.5, "heldout": ["red circle"]}}
    train = build_dataset(from_dict(DataConfig, cfg))
    kinds = {"full": 0, "no colour": 0, "no object": 0}
    for i in range(len(train)):
        attrs, caption = train.attributes(i), train.caption(i)
        if i < 4:  # the item carries the same caption (rendering every clip would be slow)
            assert train[i]["caption"] == caption
        assert caption.endswith(f"moving {attrs['direction']}")
        if caption == caption_for(attrs):
            kinds["full"] += 1
        elif caption == f"a {attrs['shape']} moving {attrs['direction']}":
            kinds["no colour"] += 1
        else:
            assert caption == f"a {attrs['color']} shape moving {attrs['direction']}", caption
            kinds["no object"] += 1
    assert all(130 <= kinds["full"] <= 270 and 50 <= n <= 150 for k, n in kinds.items() if k != "full"), kinds
    assert SyntheticDataset(train.spec, 400, 2, 16).caption(7) == train.caption(7)  # seeded
    for split in ("val", "heldout"):  # evaluation captions stay whole
        other = build_dataset(from_dict(DataConfig, cfg), split=split)
        assert all(other.caption(i) == caption_for(other.attributes(i)) for i in range(8))
    with pytest.raises(Exception, match="partial_captions"):
        from_dict(DataConfig, {**cfg, "synthetic": {"partial_captions": 1.5}})


def _centroid_x(frame: np.ndarray) -> float:
    ink = frame.astype(np.float64).sum(-1)
    return float((ink.sum(0) * np.arange(frame.shape[1])).sum() / ink.sum())


def test_wrap_motion_crosses_the_edge_and_goes_on_past_the_clip():
    attrs = {"shape": "square", "color": "red", "direction": "right", "speed": "fast"}
    bounded = render_clip(attrs, 8, 32, seed=3, object_scale=0.4)
    with pytest.raises(ValueError, match="wrap"):
        render_clip(attrs, 8, 32, seed=3, object_scale=0.4, frames=range(12))
    wrap = render_clip(attrs, 8, 32, seed=3, object_scale=0.4, frames=range(40), motion="wrap")
    assert wrap.shape == (40, 32, 32, 3)
    # the same amount of ink in every frame (nothing leaves the torus), the same speed as bounded clips
    ink = wrap.astype(np.float64).sum(axis=(1, 2, 3))
    assert np.allclose(ink, ink[0], rtol=0.05)  # edge anti-aliasing varies with the sub-pixel position
    step = np.diff([_centroid_x(f) for f in bounded]).mean()
    crossings = 0
    for a, b in zip(wrap[:-1], wrap[1:]):
        shift = (_centroid_x(b) - _centroid_x(a))
        crossings += shift < 0  # the centroid jumps back while the object straddles the edge
    assert 2 <= crossings <= 20  # 40 frames at ~2 px per frame cross a 32 px frame about twice
    # a torus along x: frame t+n is frame t rolled right by the distance travelled in n frames (mod 32)
    profile = wrap.astype(np.float64).sum(axis=(1, 3))  # (T, W) ink per column
    for n in (5, 17, 30):
        lag = int(np.argmax([np.dot(np.roll(profile[0], k), profile[n]) for k in range(32)]))
        assert abs((lag - step * n + 16) % 32 - 16) <= 1, (n, lag, step * n)
    # the object straddles both edges at some frame
    assert any(f[:, 0].any() and f[:, -1].any() for f in wrap)
    with pytest.raises(ValueError, match="motion"):
        render_clip(attrs, 8, 32, motion="bounce")


def test_wrap_motion_from_the_config():
    cfg = from_dict(DataConfig, {"kind": "synthetic", "num_frames": 8, "image_size": 32,
                                 "synthetic": {"motion": "wrap", "num_videos": 4}})
    assert cfg.synthetic.spec().motion == "wrap"
    with pytest.raises(Exception, match="motion"):
        from_dict(DataConfig, {"kind": "synthetic", "synthetic": {"motion": "bounce"}})
