"""The training data loader: deterministic, resumable, rank-sharded batches of item dicts.

Epoch ``e`` visits a permutation of the dataset drawn from ``seed + e`` (as ``DistributedSampler.set_epoch``).
Rank ``r`` of ``W`` takes positions ``r, r+W, ...`` of the permutation (the tail that does not split evenly is
dropped) and groups them into full batches of ``batch_size``. The position is therefore just ``(epoch, batch)``
and resuming skips to it without reading any data: a resumed loader continues with the next batch, not a repeat.

Items are fetched through :class:`SeededItems`, which seeds every global RNG from ``(seed, epoch, index)``
while the dataset builds the item, so random augmentations do not depend on worker processes, batch splits or
where the run was resumed. The training engine reads its data through :class:`ResumableLoader`.
"""
from __future__ import annotations

import multiprocessing as mp

from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from latte.dist import torchrun_env
from latte.seeding import forked_rng, mix_seed

__all__ = ["ResumableLoader", "build_loader", "collate_items", "rank_and_world", "DataPosition", "SeededItems",
           "ShardedBatchSampler", "TensorItems", "batches_per_epoch"]


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
    """Wraps a map-style dataset; ``items[(epoch, index)]`` builds ``dataset[index]`` under a keyed seed
    (skipped for datasets whose ``draws_random`` attribute is False: their items are the same either way)."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        if getattr(self.dataset, "draws_random", True):
            with forked_rng(mix_seed(self.seed, epoch, index)):
                item = self.dataset[index]
        else:  # a dataset whose items use no randomness needs no seeded fork (~0.15 ms an item)
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


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size (torch.distributed if initialised, else torchrun's env vars)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    env = torchrun_env()
    return env.rank, env.world_size


class ResumableLoader:
    """Iterates this rank's batches one epoch per ``iter()``; ``state_dict()`` is the position after the last
    batch handed out. Worker processes persist across epochs (the batch sampler is re-armed, not rebuilt)."""

    def __init__(self, dataset: Dataset, batch_size: int, *, seed: int = 0, shuffle: bool = True,
                 num_workers: int = 2, pin_memory: Optional[bool] = None, persistent_workers: bool = True,
                 prefetch_factor: int = 2, rank: Optional[int] = None, world_size: Optional[int] = None):
        env_rank, env_world = rank_and_world()
        self.rank = env_rank if rank is None else rank
        self.world_size = env_world if world_size is None else world_size
        if batches_per_epoch(len(dataset), batch_size, self.world_size) < 1:
            raise ValueError(f"dataset of {len(dataset)} items is too small for batch_size {batch_size} x "
                             f"{self.world_size} ranks (no full batch per epoch)")
        self.batch_size, self.seed = batch_size, seed
        self.position = DataPosition()
        self.sampler = ShardedBatchSampler(len(dataset), batch_size, rank=self.rank, world_size=self.world_size,
                                           seed=seed, epoch=0, shuffle=shuffle)
        kwargs = {}
        if num_workers > 0:
            # workers start from a clean single-threaded server process: forking the (multi-threaded) training
            # process can deadlock a worker on a lock another thread held at the fork
            kwargs = {"persistent_workers": persistent_workers, "prefetch_factor": prefetch_factor,
                      "multiprocessing_context": "forkserver" if "forkserver" in mp.get_all_start_methods() else None}
        # its own generator: creating an iterator (each epoch, each resume) must not draw from the global RNG,
        # so the RNG state of a resumed run equals an uninterrupted one
        self.loader = DataLoader(SeededItems(dataset, seed), batch_sampler=self.sampler, num_workers=num_workers,
                                 collate_fn=collate_items, generator=torch.Generator().manual_seed(seed),
                                 pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory, **kwargs)

    def __len__(self) -> int:
        """Full batches per epoch on this rank."""
        return self.sampler.num_batches

    @property
    def epoch(self) -> int:
        return self.position.epoch

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch."""
        self.position = DataPosition(epoch=epoch, batch=0)

    def state_dict(self) -> dict:
        return {**self.position.state_dict(), "seed": self.seed, "batch_size": self.batch_size,
                "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "batch_size", "world_size"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(f"data loader position was saved with {key}={state[key]}, but this loader has "
                                 f"{key}={getattr(self, key)}; the order would differ")
        self.position = DataPosition(epoch=int(state["epoch"]), batch=int(state["batch"]))

    def __iter__(self) -> Iterator[dict]:
        """The remaining batches of the current epoch; afterwards the position moves to the next epoch."""
        self.sampler.epoch, self.sampler.start_batch = self.position.epoch, self.position.batch
        for batch in self.loader:
            self.position.batch += 1
            yield batch
        self.position = DataPosition(epoch=self.position.epoch + 1, batch=0)

    def batches(self) -> Iterator[dict]:
        """Endless stream over epochs."""
        while True:
            yield from self


def build_loader(dataset: Dataset, batch_size: int, *, seed: int = 0, shuffle: bool = True, num_workers: int = 2,
                 pin_memory: Optional[bool] = None, persistent_workers: bool = True,
                 state: Optional[dict] = None, rank: Optional[int] = None,
                 world_size: Optional[int] = None) -> ResumableLoader:
    """A :class:`ResumableLoader`; ``state`` (from ``loader.state_dict()`` in a checkpoint) restores the position."""
    loader = ResumableLoader(dataset, batch_size, seed=seed, shuffle=shuffle, num_workers=num_workers,
                             pin_memory=pin_memory, persistent_workers=persistent_workers, rank=rank,
                             world_size=world_size)
    if state is not None:
        loader.load_state_dict(state)
    return loader
