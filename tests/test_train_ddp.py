"""Data parallelism: 2 CPU processes (gloo) with batch B equal one process with batch 2B."""

import pytest
import torch
import torch.multiprocessing as mp

from latte.training import checkpoint as ckpt
from latte.training.trainer import train
from helpers import build, distributed_worker, free_port, state_of, tiny_config, tiny_dataset


def _compare(reference, other_dir):
    for which in ("model", "ema"):
        a, b = state_of(reference, which), state_of(other_dir, which)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=2e-6, msg=f"{which} {k}")


@pytest.mark.parametrize("strategy", ["ddp", pytest.param("fsdp", marks=pytest.mark.slow)])
def test_two_process_run_equals_single_process_on_combined_batch(tmp_path, strategy):
    steps = dict(max_steps=3, ckpt_every=3, grad_accum=2)
    single = train(build(tiny_config(tmp_path / "single", batch_size=4, **steps)), dataset=tiny_dataset())
    config = tiny_config(tmp_path / strategy, batch_size=2, distributed=strategy, **steps)
    mp.spawn(distributed_worker, args=(2, free_port(), config), nprocs=2, join=True)
    out = tmp_path / strategy / "checkpoints" / "step_0000003"
    _compare(single.last_checkpoint, out)
    state = ckpt.load_train_state(out)
    assert state["world_size"] == 2 and len(state["rng"]) == 2  # RNG state of every rank
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # ranks are seeded apart
