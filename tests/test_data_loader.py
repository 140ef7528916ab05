"""Resumable loader: a restored position continues with the next batch; ranks are disjoint; collate."""
import itertools

import pytest
import torch

from latte.data.loader import build_loader


class Items(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"video": torch.full((3, 2, 4, 4), float(i)) + torch.rand(()), "y": i % 3, "caption": f"clip {i}",
                "index": i}


def indices(batches):
    return [b["index"].tolist() for b in batches]


def test_resume_continues_with_next_batch_across_epochs():
    data = Items(10)
    reference = indices(itertools.islice(build_loader(data, 3, seed=5, num_workers=0).batches(), 7))
    loader = build_loader(data, 3, seed=5, num_workers=0)
    first = indices(itertools.islice(loader.batches(), 4))  # 3 batches per epoch: ends inside epoch 1
    state = loader.state_dict()
    assert state["epoch"] == 1 and state["batch"] == 1
    resumed = build_loader(data, 3, seed=5, num_workers=0, state=state)
    assert first + indices(itertools.islice(resumed.batches(), 3)) == reference
    assert reference[0] != reference[3]  # epochs are reshuffled (seed + epoch)


def test_restored_items_are_identical_and_collated():
    data = Items(8)
    a = next(iter(build_loader(data, 4, seed=1, num_workers=0)))
    b = next(iter(build_loader(data, 4, seed=1, num_workers=0)))
    assert torch.equal(a["video"], b["video"])  # per-item randomness keyed by (seed, epoch, index)
    assert a["video"].shape == (4, 3, 2, 4, 4) and a["y"].dtype == torch.int64
    assert a["caption"] == [f"clip {i}" for i in a["index"].tolist()]


def test_ranks_are_disjoint_and_mismatched_state_refused():
    data = Items(12)
    seen = [sum(indices(build_loader(data, 2, seed=0, num_workers=0, rank=r, world_size=2)), []) for r in (0, 1)]
    assert not set(seen[0]) & set(seen[1]) and len(seen[0]) == len(seen[1]) == 6
    state = build_loader(data, 2, num_workers=0, rank=0, world_size=2).state_dict()
    with pytest.raises(ValueError, match="batch_size"):
        build_loader(data, 3, num_workers=0, rank=0, world_size=2, state=state)


def test_workers_give_the_same_batches():
    data = Items(6)
    plain = indices(build_loader(data, 2, seed=3, num_workers=0))
    loader = build_loader(data, 2, seed=3, num_workers=1)
    assert indices(loader) == plain
    assert len(indices(loader)) == 3  # second epoch through the same persistent worker


def test_seeded_items_fork_the_rng_only_for_datasets_that_draw_random(monkeypatch):
    import latte.data.loader as loader

    class Draws(torch.utils.data.Dataset):
        def __init__(self, draws_random):
            self.draws_random = draws_random

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"x": torch.rand(3)}

    forks = []
    real = loader.forked_rng
    monkeypatch.setattr(loader, "forked_rng", lambda seed: forks.append(seed) or real(seed))
    random_items = loader.SeededItems(Draws(True), seed=0)
    assert torch.equal(random_items[(0, 1)]["x"], random_items[(0, 1)]["x"])  # keyed: reproducible
    assert len(forks) == 2
    plain = loader.SeededItems(Draws(False), seed=0)
    plain[(0, 1)]
    assert len(forks) == 2  # no fork: such a dataset promises not to use the RNG
