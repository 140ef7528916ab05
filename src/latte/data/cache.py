"""The latent cache: encode a dataset once, train from the stored latents.

Layout of ``data.cache_dir``::

    cache.json               what was cached: data/autoencoder/text-encoder settings and identities, views,
                             dtype, shard plan, class names. A run with different settings is refused.
    shard_00000.safetensors  tensors "<item>_<view>/latents" (C, F, h, w); for captioned items with a text
                             encoder, "<item>_<view>/text" (L, dim) and "<item>_<view>/text_mask" (L,) bool;
                             with cache.low_res_factor s, "<item>_<view>/low_res" (3, F, H/s, W/s): the clip
                             downsampled xs in [-1, 1] (the LaVie vsr condition; on the latent grid when s is
                             the autoencoder's downsampling, so crops of both are taken at the same place)
    shard_00000.json         the entries of that shard (written after its tensors: marks the shard finished)
    index.json               all entries in item order (written once every shard is finished)

Views: view 0 is the deterministic evaluation clip (centered window, no flip); view 1 is its mirror image when
``data.hflip``; further views use a random window (and random flip) seeded by ``(cache.seed, item, view)``.
Caching is resumable (finished shards are skipped) and runs under ``torchrun``: rank r takes shards r, r+W, ...
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from latte.config import ConfigError, option
from latte.data.config import DataConfig
from latte.data.datasets import build_dataset
from latte.data.latents import (
    AUTOENCODER_KEYS,
    CACHE_FORMAT,
    CachedLatentDataset,
    CacheMismatchError,
    config_differences,
    data_section,
)
from latte.data.skips import SkipCounter, logger
from latte.data.transforms import DOWNSAMPLE_KERNELS, downsample
from latte.data.video_io import VideoReadError
from latte.dist import torchrun_env
from latte.io import atomic_write_json
from latte.encoders.config import AutoencoderConfig, TextEncoderConfig

__all__ = ["CacheOptions", "CacheConfig", "CacheMismatchError", "build_cache", "CachedLatentDataset",
           "CACHE_FORMAT"]

@dataclass
class CacheOptions:
    """How ``latte cache`` encodes (output folder: ``data.cache_dir``)."""

    split: str = option("train", "dataset split to cache (train, val, heldout for synthetic data, or a manifest split)")
    views: int = option(2, "augmented views per clip: 0 = centered window, 1 = its mirror image (if data.hflip), "
                           "more = random windows/flips seeded by cache.seed; training picks one view per access")
    shard_size: int = option(256, "clips per shard file (the unit of resumption and of multi-process work)")
    batch_size: int = option(4, "clips per autoencoder call")
    num_workers: int = option(2, "DataLoader processes decoding clips while the encoder runs")
    dtype: Literal["float16", "float32"] = option("float16", "storage dtype of latents and text features")
    text_features: bool = option(True, "store text-encoder features + masks of captioned items (text-to-video)")
    seed: int = option(0, "seed of random views and of the autoencoder's posterior sampling")
    low_res_factor: int = option(
        0, "also store each clip downsampled by this factor (RGB in [-1, 1]: the LaVie vsr condition; a LaVie vsr "
           "config sets it to lavie.scale_factor); 0 = latents only", min=0)
    low_res_kernel: Literal["area", "bicubic"] = option(
        "area", "kernel of the low_res_factor downsampling (a LaVie vsr config sets lavie.downsample_kernel)")

    def validate(self) -> None:
        if self.low_res_kernel not in DOWNSAMPLE_KERNELS:
            raise ConfigError(f"cache.low_res_kernel: one of {', '.join(DOWNSAMPLE_KERNELS)}, got {self.low_res_kernel!r}")
        for key in ("views", "shard_size", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"cache.{key}: must be >= 1, got {getattr(self, key)}")
        if self.num_workers < 0:
            raise ConfigError(f"cache.num_workers: must be >= 0, got {self.num_workers}")


@dataclass
class CacheConfig:
    """The config of ``latte cache``: a dataset, the encoders and the cache options. A full run config (with
    model/train/... sections) is accepted too; its other sections are validated and not used here."""

    data: DataConfig = option(help="the dataset to encode; data.cache_dir is the output folder", factory=DataConfig)
    autoencoder: AutoencoderConfig = option(help="the autoencoder producing the latents", factory=AutoencoderConfig)
    text_encoder: TextEncoderConfig = option(help="the text encoder for captions (when cache.text_features)",
                                             factory=TextEncoderConfig)
    cache: CacheOptions = option(help="how the cache is written", factory=CacheOptions)

    def validate(self) -> None:
        if not self.data.cache_dir:
            raise ConfigError("data.cache_dir: required by `latte cache` (the folder to write the cache to)")


# ----------------------------------------------------------------------------------------------- writing

def _dist_env() -> tuple[int, int]:
    env = torchrun_env()
    return env.rank, env.world_size


def _header(cfg: CacheConfig, dataset, ae_identity: dict, text_identity: Optional[dict]) -> dict:
    sources = [getattr(r, "path", "") for r in getattr(dataset, "records", [])]
    num_items = len(dataset)
    return {
        "format": CACHE_FORMAT,
        "split": cfg.cache.split,
        "views": cfg.cache.views,
        "dtype": cfg.cache.dtype,
        "seed": cfg.cache.seed,
        "shard_size": cfg.cache.shard_size,
        "num_items": num_items,
        "num_shards": math.ceil(num_items / cfg.cache.shard_size),
        "sources": sources,
        "class_names": getattr(dataset, "class_names", None),
        "data": data_section(cfg.data),
        "autoencoder": {k: getattr(cfg.autoencoder, k) for k in AUTOENCODER_KEYS},
        "autoencoder_identity": ae_identity,
        "text_encoder_identity": text_identity,
        "low_res": low_res_header(cfg.cache),
    }


def low_res_header(opts: CacheOptions) -> Optional[dict]:
    """What a cache records about its low-resolution clips: ``{"factor", "kernel"}``, or None without them."""
    return {"factor": opts.low_res_factor, "kernel": opts.low_res_kernel} if opts.low_res_factor else None


class _ViewItems(torch.utils.data.Dataset):
    """(item, view) pairs of one shard → ``{video, item, view, y?, caption?}`` or ``{error, path, ...}``."""

    def __init__(self, dataset, pairs: list[tuple[int, int]], seed: int, hflip: bool):
        self.dataset, self.pairs, self.seed, self.hflip = dataset, pairs, seed, hflip

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int) -> dict:
        item, view = self.pairs[k]
        try:
            out = load_view(self.dataset, item, view, self.seed, self.hflip)
        except VideoReadError as e:
            return {"item": item, "view": view, "error": e.reason, "path": e.path, "detail": e.detail}
        out.update(item=item, view=view)
        return out


def load_view(dataset, item: int, view: int, seed: int, hflip: bool) -> dict:
    """View ``view`` of item ``item`` (see module docstring). Datasets without ``load`` have only view 0."""
    if not hasattr(dataset, "load"):
        if view != 0:
            raise ValueError("this dataset kind has a single view per item; set cache.views: 1")
        return dict(dataset[item])
    if view == 0:
        return dataset.load(item)
    if view == 1 and hflip:
        return dataset.load(item, flip=True)
    rng = np.random.default_rng([seed, item, view])
    return dataset.load(item, rng=rng, flip=bool(hflip and rng.random() < 0.5))


def _collate_views(batch: list[dict]) -> list[dict]:
    return batch


def _pad_text(hidden: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    if hidden.shape[1] < length:
        pad = length - hidden.shape[1]
        hidden = torch.nn.functional.pad(hidden, (0, 0, 0, pad))
        mask = torch.nn.functional.pad(mask, (0, pad), value=False)
    return hidden, mask


def _encode_captions(text_encoder, captions: list[str], memo: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, L, dim)`` features and ``(B, L)`` masks padded to ``max_length``; each distinct caption is encoded once."""
    new = sorted({c for c in captions if c not in memo})
    if new:
        hidden, mask = _pad_text(*text_encoder.encode(new), text_encoder.max_length)
        for k, caption in enumerate(new):
            memo[caption] = (hidden[k].cpu(), mask[k].cpu())
    return torch.stack([memo[c][0] for c in captions]), torch.stack([memo[c][1] for c in captions])


def build_cache(cfg: CacheConfig, autoencoder, text_encoder=None, *, rank: Optional[int] = None,
                world_size: Optional[int] = None, device: Optional[torch.device] = None,
                progress: bool = True) -> Optional[Path]:
    """Encode ``cfg.data`` (split ``cfg.cache.split``) into ``cfg.data.cache_dir``.

    ``autoencoder``/``text_encoder`` implement the protocols of ``latte.encoders.base``. Shards already finished
    are skipped. Returns the path of ``index.json`` once every shard is done (by any rank), else None.
    """
    env_rank, env_world = _dist_env()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    opts = cfg.cache
    if opts.views >= 2 and not cfg.data.hflip:
        logger.warning("cache.views 2 with data.hflip false: view 1 is a random window, not a mirror image")
    if opts.views > 1 and cfg.data.kind in ("synthetic", "images"):
        raise ConfigError(f"cache.views: kind '{cfg.data.kind}' has one view per item; set cache.views: 1")
    out = Path(cfg.data.cache_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    dataset = build_dataset(cfg.data, split=opts.split, progress=progress and rank == 0)
    use_text = bool(opts.text_features and text_encoder is not None)
    header = _header(cfg, dataset, autoencoder.identity(), text_encoder.identity() if use_text else None)
    header_path = out / "cache.json"
    if header_path.exists():
        diffs = config_differences(json.loads(header_path.read_text()), header,
                                   defaults={"data": data_section(DataConfig())})
        if diffs:
            raise CacheMismatchError(f"{out} holds a cache made with other settings; delete it or choose another "
                                     f"data.cache_dir. Differences: " + "; ".join(diffs[:8]))
    elif rank == 0:
        atomic_write_json(header_path, header)

    dtype = getattr(torch, opts.dtype)
    num_shards = header["num_shards"]
    mine = [s for s in range(rank, num_shards, world_size) if not (out / f"shard_{s:05d}.json").exists()]
    skipped_done = len(range(rank, num_shards, world_size)) - len(mine)
    counter = getattr(dataset, "counter", SkipCounter("cache"))
    total_clips = sum(min(opts.shard_size, len(dataset) - s * opts.shard_size) for s in mine) * opts.views
    bar = tqdm(total=total_clips, desc=f"caching (rank {rank}/{world_size})", unit="clip", disable=not progress,
               dynamic_ncols=True)
    if skipped_done:
        logger.info("cache: %d finished shard(s) of rank %d skipped", skipped_done, rank)
    text_memo: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # captions repeat (views, synthetic data)
    for shard in mine:
        first, last = shard * opts.shard_size, min((shard + 1) * opts.shard_size, len(dataset))
        pairs = [(i, v) for i in range(first, last) for v in range(opts.views)]
        loader = torch.utils.data.DataLoader(_ViewItems(dataset, pairs, opts.seed, cfg.data.hflip),
                                             batch_size=opts.batch_size, num_workers=opts.num_workers,
                                             collate_fn=_collate_views)
        tensors: dict[str, torch.Tensor] = {}
        entries, failures = [], []
        generator = torch.Generator(device=device or "cpu").manual_seed(opts.seed * 1_000_003 + shard)
        for batch in loader:
            good = [b for b in batch if "error" not in b]
            for b in batch:
                if "error" in b:
                    counter.add(b["path"], b["error"], b["detail"])
                    failures.append({"item": b["item"], "view": b["view"], "path": b["path"], "reason": b["error"]})
            bar.update(len(batch))
            if not good:
                continue
            video = torch.stack([b["video"] for b in good])
            if device is not None:
                video = video.to(device)
            with torch.no_grad():
                low_res = downsample(video.float(), opts.low_res_factor, opts.low_res_kernel) \
                    if opts.low_res_factor else None
                try:
                    latents = autoencoder.encode(video, generator=generator)
                except TypeError:  # an autoencoder without posterior sampling
                    latents = autoencoder.encode(video)
                hidden = mask = None
                captions = [b.get("caption") for b in good]
                if use_text and all(c is not None for c in captions):
                    hidden, mask = _encode_captions(text_encoder, captions, text_memo)
            for k, b in enumerate(good):
                key = f"{b['item']}_{b['view']}"
                tensors[f"{key}/latents"] = latents[k].to("cpu", dtype).contiguous()
                entry = {"key": key, "item": b["item"], "view": b["view"], "shard": f"shard_{shard:05d}.safetensors"}
                if low_res is not None:
                    tensors[f"{key}/low_res"] = low_res[k].to("cpu", dtype).contiguous()
                if hidden is not None:
                    tensors[f"{key}/text"] = hidden[k].to("cpu", dtype).contiguous()
                    tensors[f"{key}/text_mask"] = mask[k].to("cpu", torch.bool).contiguous()
                    entry["text"] = True
                for name in ("y", "caption"):
                    if name in b:
                        entry[name] = int(b[name]) if name == "y" else b[name]
                entries.append(entry)
        shard_file = out / f"shard_{shard:05d}.safetensors"
        tmp = shard_file.with_suffix(f".tmp{os.getpid()}")
        save_file(tensors, str(tmp), metadata={"format": str(CACHE_FORMAT)})
        os.replace(tmp, shard_file)
        atomic_write_json(out / f"shard_{shard:05d}.json", {"entries": entries, "failures": failures})
    bar.close()
    return finalize_index(out, num_shards)


def finalize_index(out: Path, num_shards: int) -> Optional[Path]:
    """Merge the shard entry files into ``index.json`` when all ``num_shards`` are finished."""
    parts = [out / f"shard_{s:05d}.json" for s in range(num_shards)]
    if not all(p.exists() for p in parts):
        missing = sum(not p.exists() for p in parts)
        logger.info("cache: %d shard(s) still running on other ranks; index.json is written by the last one", missing)
        return None
    entries, failures = [], []
    for p in parts:
        part = json.loads(p.read_text())
        entries += part["entries"]
        failures += part["failures"]
    entries.sort(key=lambda e: (e["item"], e["view"]))
    index = out / "index.json"
    atomic_write_json(index, {"format": CACHE_FORMAT, "entries": entries, "failures": failures})
    logger.info("cache: %d clips in %d shards at %s (%d failed to load)", len(entries), num_shards, out, len(failures))
    return index


