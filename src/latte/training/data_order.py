"""Deterministic, resumable, rank-sharded data order.

Epoch ``e`` visits a permutation of the dataset drawn from ``seed + e`` (as ``DistributedSampler``). Rank ``r`` of
``W`` takes positions ``r, r+W, ...`` of the permutation (the tail that does not split evenly is dropped) and
groups them into batches of ``batch_size`` (an incomplete last batch is dropped). The position is therefore just
``(epoch, batch)`` and resuming skips to it without reading any data.

Items are fetched through :class:`SeededItems`, which seeds every global RNG from ``(seed, epoch, index)``
while the dataset builds the item, so random augmentations do not depend on worker processes, batch splits or
where the run was resumed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, Sampler

from latte.training.randomness import forked_rng, mix_seed


@dataclass
class DataPosition:
    epoch: int = 0
    batch: int = 0  # batches of the epoch already consumed by this rank

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch}


def batches_per_epoch(dataset_len: int, batch_size: int, world_size: int) -> int:
    return (dataset_len // world_size) // batch_size


class ShardedBatchSampler(Sampler):
    """Yields lists of ``(epoch, index)`` keys: this rank's batches of one epoch, from ``start_batch`` on."""

    def __init__(self, dataset_len: int, batch_size: int, *, rank: int, world_size: int, seed: int, epoch: int,
                 start_batch: int = 0, shuffle: bool = True):
        self.dataset_len, self.batch_size = dataset_len, batch_size
        self.rank, self.world_size, self.seed, self.epoch = rank, world_size, seed, epoch
        self.start_batch, self.shuffle = start_batch, shuffle
        self.num_batches = batches_per_epoch(dataset_len, batch_size, world_size)

    def __len__(self) -> int:
        return max(0, self.num_batches - self.start_batch)

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.dataset_len, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.dataset_len)
        usable = (self.dataset_len // self.world_size) * self.world_size
        mine = order[:usable][self.rank::self.world_size].tolist()
        for b in range(self.start_batch, self.num_batches):
            yield [(self.epoch, i) for i in mine[b * self.batch_size:(b + 1) * self.batch_size]]


class SeededItems(Dataset):
    """Wraps a map-style dataset; ``items[(epoch, index)]`` builds ``dataset[index]`` under a keyed seed."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        with forked_rng(mix_seed(self.seed, epoch, index)):
            item = self.dataset[index]
        if not isinstance(item, dict):
            raise TypeError(f"dataset items must be dicts (video/latents, y, caption, index); got {type(item).__name__}")
        item = dict(item)
        item["index"] = index
        return item


def collate_items(items: list[dict]) -> dict:
    """Batch item dicts: tensors are stacked, numbers become a tensor, strings and lists stay lists."""
    out = {}
    for key in items[0]:
        values = [item[key] for item in items]
        first = values[0]
        if isinstance(first, torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(first, (int, float)) and not isinstance(first, bool):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out


class TensorItems(Dataset):
    """An in-memory dataset: ``latents (N, C, F, h, w)`` (or ``videos (N, 3, F, H, W)``) with optional class
    ids ``y (N,)`` or ``captions`` (N strings). Items are dicts as the real datasets return."""

    def __init__(self, latents: torch.Tensor | None = None, *, videos: torch.Tensor | None = None,
                 y: torch.Tensor | None = None, captions: list[str] | None = None):
        if (latents is None) == (videos is None):
            raise ValueError("TensorItems: pass exactly one of latents or videos")
        self.key, self.data = ("latents", latents) if latents is not None else ("video", videos)
        n = len(self.data)
        if (y is not None and len(y) != n) or (captions is not None and len(captions) != n):
            raise ValueError(f"TensorItems: y / captions must have {n} entries like the tensors")
        self.y, self.captions = y, captions

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        item = {self.key: self.data[index], "index": index}
        if self.y is not None:
            item["y"] = int(self.y[index])
        if self.captions is not None:
            item["caption"] = self.captions[index]
        return item
