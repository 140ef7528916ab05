"""Building blocks of the training engine: EMA, schedules, guard, data order, RNG state, checkpoints, init."""
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from latte.training import checkpoint as ckpt
from latte.data.loader import SeededItems, ShardedBatchSampler
from latte.training.ema import create_ema, update_ema
from latte.training.guard import NonFiniteError, NonFiniteGuard
from latte.training.randomness import capture_rng_state, per_sample_draws, restore_rng_state
from latte.training.schedules import learning_rate


def test_ema_update_math():
    model = nn.Linear(3, 2)
    ema = create_ema(model)
    assert all(torch.equal(a, b) for a, b in zip(ema.parameters(), model.parameters()))
    assert not any(p.requires_grad for p in ema.parameters()) and not ema.training
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    update_ema(ema, model, decay=0.9)
    for name, p in model.named_parameters():
        expected = 0.9 * before[name] + 0.1 * p
        torch.testing.assert_close(dict(ema.named_parameters())[name], expected, rtol=0, atol=1e-7)
    update_ema(ema, model, decay=0.0)  # decay 0 copies
    assert all(torch.equal(a, b) for a, b in zip(ema.parameters(), model.parameters()))


def test_ema_stays_float32_for_bf16_model():
    model = nn.Linear(3, 2).to(torch.bfloat16)
    ema = create_ema(model)
    update_ema(ema, model, 0.5)
    assert all(p.dtype == torch.float32 for p in ema.parameters())


def test_schedules():
    kw = dict(lr=1.0, warmup_steps=4, max_steps=14)
    assert learning_rate(0, schedule="constant", **kw) == 1.0
    assert [learning_rate(s, schedule="warmup", **kw) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert learning_rate(4, schedule="cosine", **kw) == pytest.approx(1.0)
    assert learning_rate(9, schedule="cosine", **kw) == pytest.approx(0.5)
    assert learning_rate(14, schedule="cosine", min_lr=0.1, **kw) == pytest.approx(0.1)


def test_nonfinite_guard_counts_consecutive():
    guard = NonFiniteGuard(3)
    assert guard.check(0, 1.0, 1.0)
    assert not guard.check(1, math.nan, 1.0)
    assert not guard.check(2, 1.0, math.inf)
    assert guard.check(3, 1.0, 1.0) and guard.consecutive == 0  # a good step resets the count
    assert not guard.check(4, math.nan, 1.0) and not guard.check(5, math.nan, 1.0)
    with pytest.raises(NonFiniteError, match="3 optimizer steps in a row.*max_nonfinite=3"):
        guard.check(6, math.nan, math.nan)
    assert guard.total_skipped == 5


def _epoch(world, rank, batch, start=0, n=10, epoch=0):
    return list(ShardedBatchSampler(n, batch, rank=rank, world_size=world, seed=3, epoch=epoch, start_batch=start))


def test_data_order_shards_and_resumes():
    one = _epoch(1, 0, 4)  # 2 batches of 4 (2 items dropped)
    assert len(one) == 2 and len({k for b in one for k in b}) == 8
    r0, r1 = _epoch(2, 0, 2), _epoch(2, 1, 2)
    for b, (a0, a1) in enumerate(zip(r0, r1)):  # the two ranks together see the single-process batch
        assert sorted(a0 + a1) == sorted(one[b])
    assert _epoch(1, 0, 4, start=1) == one[1:]
    assert _epoch(1, 0, 4, epoch=1) != one  # a new permutation every epoch


def test_seeded_items_make_augmentation_reproducible():
    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"v": torch.rand(2), "r": random.random(), "n": float(np.random.rand())}

    items = SeededItems(Noisy(), seed=1)
    state = torch.get_rng_state()
    a, b = items[(0, 2)], items[(0, 2)]
    assert torch.equal(a["v"], b["v"]) and a["r"] == b["r"] and a["n"] == b["n"] and a["index"] == 2
    assert not torch.equal(items[(1, 2)]["v"], a["v"])
    assert torch.equal(torch.get_rng_state(), state)  # the training RNG is untouched


def test_per_sample_draws_do_not_depend_on_batch_split():
    t, noise, u = per_sample_draws([5, 9, 2], seed=1, step=4, num_timesteps=1000, latent_shape=(2, 3),
                                   device=torch.device("cpu"))
    t2, noise2, u2 = per_sample_draws([9], seed=1, step=4, num_timesteps=1000, latent_shape=(2, 3),
                                      device=torch.device("cpu"))
    assert t[1] == t2[0] and torch.equal(noise[1], noise2[0]) and u[1] == u2[0]
    t3, _, _ = per_sample_draws([5, 9, 2], seed=1, step=5, num_timesteps=1000, latent_shape=(2, 3),
                                device=torch.device("cpu"))
    assert not torch.equal(t, t3)
    assert t.min() >= 0 and t.max() < 1000


def test_rng_state_roundtrip_is_weights_only_loadable(tmp_path):
    state = capture_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (torch.rand(3), random.random(), np.random.rand())
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1] and np.random.rand() == expected[2]


def _fill(value):
    def fill(d):
        torch.save({"step": value}, d / ckpt.TRAIN_STATE)
    return fill


def test_checkpoint_write_latest_and_prune(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (10, 20, 30, 40, 50):
        ckpt.write_checkpoint(root, step, _fill(step))
    assert (root / "latest").read_text().strip() == "step_0000050"
    removed = ckpt.prune_checkpoints(root, keep_last=2, keep_every=20)
    assert sorted(p.name for p in removed) == ["step_0000010", "step_0000030"]
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [20, 40, 50]
    assert ckpt.resolve_checkpoint(tmp_path) == root / "step_0000050"
    assert ckpt.resolve_checkpoint(root / "step_0000020") == root / "step_0000020"
    assert ckpt.load_train_state(ckpt.resolve_checkpoint(tmp_path))["step"] == 50
    with pytest.raises(FileNotFoundError, match="no checkpoint found"):
        ckpt.resolve_checkpoint(tmp_path / "nothing")


def test_failed_write_keeps_previous_checkpoint(tmp_path):
    root = tmp_path / "checkpoints"
    ckpt.write_checkpoint(root, 1, _fill(1))

    def broken(d):
        torch.save({"step": 2}, d / ckpt.TRAIN_STATE)
        raise OSError("disk full")

    with pytest.raises(OSError):
        ckpt.write_checkpoint(root, 2, broken)
    assert ckpt.latest_checkpoint(root).name == "step_0000001"
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [1]  # the half-written one is not listed
    ckpt.remove_stale_tmp(root)
    assert not any(p.name.startswith(".tmp") for p in root.iterdir())


def test_init_from_matches_name_and_shape(tmp_path):
    from latte.models.config import LatteConfig
    from latte.models.latte import Latte
    from latte.training.init_from import init_model_from

    small = dict(input_size=8, num_frames=4, hidden_size=32, depth=2, num_heads=2)
    model = Latte(LatteConfig(**small, conditioning="class", num_classes=3))
    dit = {k: torch.full_like(v, 0.5) for k, v in model.state_dict().items()}
    dit["y_embedder.embedding_table.weight"] = torch.zeros(1001, 32)  # DiT's ImageNet table: wrong shape
    dit["pos_embed"] = torch.zeros(1, 16, 32)  # an image DiT checkpoint (no temp_embed)
    torch.save({"ema": dit}, tmp_path / "dit.pt")

    report = init_model_from(model, tmp_path / "dit.pt", temporal_from_spatial=True)
    assert "y_embedder.embedding_table.weight" in report.fresh
    assert dict(report.skipped)["pos_embed"] == "not in this model"
    assert "shape (1001, 32)" in dict(report.skipped)["y_embedder.embedding_table.weight"]
    assert torch.all(model.blocks[1].attn.qkv.weight == 0.5)  # temporal block got DiT block 1 (official)

    fresh = Latte(LatteConfig(**small, conditioning="class", num_classes=3))
    before = fresh.blocks[1].attn.qkv.weight.clone()
    report = init_model_from(fresh, tmp_path / "dit.pt", temporal_from_spatial=False)
    assert torch.equal(fresh.blocks[1].attn.qkv.weight, before)
    assert torch.all(fresh.blocks[0].attn.qkv.weight == 0.5)
    assert "blocks.1.attn.qkv.weight" in report.fresh
    assert "loaded" in report.summary()
