"""Latent cache: round trip equals on-the-fly encoding, resume skips finished shards, mismatches are refused."""
import json
from pathlib import Path

import pytest
import torch

from latte.config import from_dict
from latte.data import build_dataset
from latte.cli.cache import load_cache_config
from latte.data import DataConfig
from latte.data.cache import CacheConfig, CachedLatentDataset, CacheMismatchError, build_cache
from latte.data.latents import config_differences, data_section
from latte.encoders import build_autoencoder
from helpers import write_video


class StubTextEncoder:
    """Implements the TextEncoder protocol: features from character codes; shorter prompts are padded."""

    dim, max_length = 4, 6

    def encode(self, prompts):
        hidden = torch.zeros(len(prompts), self.max_length, self.dim)
        mask = torch.zeros(len(prompts), self.max_length, dtype=torch.bool)
        for i, p in enumerate(prompts):
            for j, ch in enumerate(p[: self.max_length]):
                hidden[i, j] = ord(ch) / 100.0
                mask[i, j] = True
        return hidden, mask

    def identity(self):
        return {"kind": "stub-text"}


def make_config(tmp_path, **cache):
    videos = tmp_path / "videos"
    names = []
    for k in range(5):
        write_video(videos / f"clip{k}.mp4", 10 + 3 * k, height=20, width=28, marker=True)
        names.append(f"clip{k}.mp4")
    (videos / "bad.mp4").write_bytes(b"")
    lines = ["path,caption"] + [f"{n},clip number {k}" for k, n in enumerate(names)] + ["bad.mp4,broken"]
    (videos / "captions.csv").write_text("\n".join(lines) + "\n")
    return from_dict(CacheConfig, {
        "data": {"kind": "captions", "path": str(videos / "captions.csv"), "image_size": 16, "num_frames": 4,
                 "frame_interval": 2, "cache_dir": str(tmp_path / "cache")},
        "autoencoder": {"kind": "identity", "patch_factor": 2},
        "cache": {"shard_size": 2, "batch_size": 2, "num_workers": 0, "dtype": "float32", **cache},
    })


def test_cache_round_trip_equals_on_the_fly(tmp_path):
    cfg = make_config(tmp_path)
    ae = build_autoencoder(cfg.autoencoder)
    index = build_cache(cfg, ae, StubTextEncoder(), progress=False)
    assert index is not None and (tmp_path / "cache" / "shard_00002.safetensors").exists()
    live = build_dataset(cfg.data, split="val")
    cached = CachedLatentDataset(cfg.data.cache_dir, split="val", expected_data=cfg.data,
                                 expected_autoencoder=cfg.autoencoder)
    assert len(cached) == len(live) == 5
    text = StubTextEncoder()
    for i in range(len(live)):
        item, c = live[i], cached[i]
        expected = ae.encode(item["video"][None])[0]
        assert c["latents"].shape == (12, 4, 8, 8)
        assert torch.allclose(c["latents"], expected, atol=1e-6)
        assert c["caption"] == item["caption"]
        hidden, mask = text.encode([item["caption"]])
        assert torch.equal(c["text"], hidden[0]) and torch.equal(c["text_mask"], mask[0])
    # view 1 is the mirror image of view 0
    entry = cached.items[0][1]
    flipped = cached._tensor(entry["shard"], f"{entry['key']}/latents")
    mirror = live.load(0, flip=True)["video"]
    assert not torch.equal(mirror, live.load(0)["video"])
    assert torch.allclose(flipped, ae.encode(mirror[None])[0], atol=1e-6)
    train = CachedLatentDataset(cfg.data.cache_dir, split="train")
    seen = {tuple(train[0]["latents"][0, 0, 0].tolist()) for _ in range(12)}
    assert len(seen) == 2  # both views are used in training
    assert train.draws_random and not cached.draws_random  # only training picks views: seeded per item


def test_cache_resume_skips_finished_shards(tmp_path):
    cfg = make_config(tmp_path)
    ae = build_autoencoder(cfg.autoencoder)
    # two "ranks" of a world of 2; rank 1 runs first, so the index waits for rank 0
    assert build_cache(cfg, ae, None, rank=1, world_size=2, progress=False) is None
    out = tmp_path / "cache"
    assert sorted(p.name for p in out.glob("shard_*.json")) == ["shard_00001.json"]
    stamp = (out / "shard_00001.safetensors").stat().st_mtime_ns

    calls = []

    class CountingAE:
        def __init__(self, inner):
            self.inner = inner

        def encode(self, video):
            calls.append(video.shape[0])
            return self.inner.encode(video)

        def identity(self):
            return self.inner.identity()

    index = build_cache(cfg, CountingAE(ae), None, rank=0, world_size=1, progress=False)
    assert index is not None
    assert (out / "shard_00001.safetensors").stat().st_mtime_ns == stamp  # not redone
    # shards 0 and 2 remain: items 0, 1, 4 (item 5 is the broken file, skipped by the scan) x 2 views
    assert sum(calls) == 3 * 2
    entries = json.loads(index.read_text())["entries"]
    assert sorted({e["item"] for e in entries}) == [0, 1, 2, 3, 4] and all("text" not in e for e in entries)


def test_cache_made_with_other_settings_is_refused(tmp_path):
    cfg = make_config(tmp_path)
    build_cache(cfg, build_autoencoder(cfg.autoencoder), None, progress=False)
    other = make_config(tmp_path, seed=1)
    with pytest.raises(CacheMismatchError, match="seed"):
        build_cache(other, build_autoencoder(cfg.autoencoder), None, progress=False)
    bigger = from_dict(CacheConfig, {**json.loads(json.dumps(_as_dict(cfg))),
                                     "autoencoder": {"kind": "identity", "patch_factor": 4}})
    with pytest.raises(CacheMismatchError, match="patch_factor"):
        build_cache(bigger, build_autoencoder(bigger.autoencoder), None, progress=False)
    with pytest.raises(CacheMismatchError, match="patch_factor"):
        CachedLatentDataset(cfg.data.cache_dir, expected_autoencoder=bigger.autoencoder)
    with pytest.raises(CacheMismatchError, match="num_frames"):
        changed = from_dict(CacheConfig, {**_as_dict(cfg), "data": {**_as_dict(cfg)["data"], "num_frames": 8}})
        build_dataset(changed.data, use_cache=True)
    cached = CachedLatentDataset(cfg.data.cache_dir)
    with pytest.raises(CacheMismatchError, match="another autoencoder"):
        cached.check_autoencoder(build_autoencoder(bigger.autoencoder))


def test_cache_made_before_an_option_existed_is_accepted_at_the_options_default(tmp_path):
    cfg = make_config(tmp_path)
    build_cache(cfg, build_autoencoder(cfg.autoencoder), None, progress=False)
    header_path = Path(cfg.data.cache_dir) / "cache.json"
    header = json.loads(header_path.read_text())
    del header["data"]["synthetic"]["partial_captions"]  # as written before the option was added
    header_path.write_text(json.dumps(header))
    CachedLatentDataset(cfg.data.cache_dir, expected_data=cfg.data)
    build_cache(cfg, build_autoencoder(cfg.autoencoder), None, progress=False)  # resuming the build too
    new = data_section(cfg.data)
    new["synthetic"]["partial_captions"] = 0.5  # not the default: the cache was not made that way
    assert config_differences(header["data"], new, "data.", data_section(DataConfig())) == [
        "data.synthetic.partial_captions: cache has 'None', now '0.5'"]


def _as_dict(cfg):
    from latte.config import to_dict

    return to_dict(cfg)


def test_cache_config_accepts_a_run_config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  kind: synthetic\n  cache_dir: c\nautoencoder:\n  kind: identity\ncache:\n  views: 1\n"
                    "train:\n  batch_size: 2\n")
    cfg = load_cache_config(path)
    assert cfg.cache.views == 1 and cfg.data.cache_dir == "c"
    path.write_text("data:\n  kind: synthetic\n  cache_dir: c\nautoencoder:\n  kind: identity\ntrian:\n  batch_size: 2\n")
    with pytest.raises(Exception, match="trian"):
        load_cache_config(path)


def test_data_modules_import_each_other_without_cycles():
    """Every ``latte.data.*`` import (module top or inside a function) forms an acyclic graph: the cache
    writer uses build_dataset, build_dataset uses the cache reader (latte.data.latents), not the writer."""
    import ast
    from pathlib import Path

    import latte.data

    folder = Path(latte.data.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        if path.name == "__init__.py":
            continue
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("latte.data."):
                deps.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[2] for a in node.names if a.name.startswith("latte.data."))
        graph[path.stem] = deps - {path.stem}
    assert "datasets" in graph["cache"] and "latents" in graph["datasets"]

    def visit(name, stack):
        assert name not in stack, f"import cycle: {' -> '.join(stack + [name])}"
        for dep in graph.get(name, ()):
            visit(dep, stack + [name])

    for name in graph:
        visit(name, [])
