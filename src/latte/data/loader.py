"""A resumable, rank-sharded DataLoader over item-dict datasets.

The data order is the trainer's (``latte.training.data_order``): epoch ``e`` is a permutation seeded by
``seed + e`` (as ``DistributedSampler.set_epoch``), rank ``r`` of ``W`` takes every W-th position, batches are
full (the tail is dropped), and items are built under a seed keyed by ``(seed, epoch, index)`` so augmentations
do not depend on workers. :class:`ResumableLoader` adds the position ``(epoch, batch)`` that a checkpoint saves
and restores: a resumed loader continues with the next batch, not a repeat.
"""
from __future__ import annotations

import os
from typing import Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset

from latte.training.data_order import DataPosition, SeededItems, ShardedBatchSampler, batches_per_epoch, collate_items

__all__ = ["ResumableLoader", "build_loader", "collate_items", "rank_and_world"]


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size (torch.distributed if initialised, else torchrun's env vars)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


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
            kwargs = {"persistent_workers": persistent_workers, "prefetch_factor": prefetch_factor}
        self.loader = DataLoader(SeededItems(dataset, seed), batch_sampler=self.sampler, num_workers=num_workers,
                                 collate_fn=collate_items,
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
