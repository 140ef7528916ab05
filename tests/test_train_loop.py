"""The training loop on a tiny model: learning, accumulation, precision, the non-finite guard, signals."""
import math
import os
import signal

import pytest
import torch

from latte.training import checkpoint as ckpt
from latte.data.loader import TensorItems
from latte.training.guard import NonFiniteError
from latte.training.trainer import Trainer, train
from helpers import build, moving_blobs, state_of, tiny_config, tiny_dataset


def _losses(run_dir, dataset, **train_kw):
    losses = []
    result = train(build(tiny_config(run_dir, **train_kw)), dataset=dataset,
                   on_step_end=lambda tr: losses.append(tr.last_stats["loss"]))
    return result, losses


def test_loss_falls_on_synthetic_data(tmp_path):
    _, losses = _losses(tmp_path, tiny_dataset(32), max_steps=60, batch_size=8, lr=3e-3, ckpt_every=1000,
                        clip_grad_norm=None)
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert first > 0.6 and last < 0.5 * first, (first, last)


def test_grad_accumulation_equals_big_batch(tmp_path):
    big, _ = _losses(tmp_path / "big", tiny_dataset(), max_steps=3, batch_size=8, grad_accum=1)
    acc, _ = _losses(tmp_path / "acc", tiny_dataset(), max_steps=3, batch_size=4, grad_accum=2)
    a, b = state_of(big.last_checkpoint), state_of(acc.last_checkpoint)
    moved = sum((a[k] - state_of(big.last_checkpoint, "ema")[k]).abs().sum() for k in a)
    assert moved > 0
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_bf16_runs_and_learns(tmp_path):
    result, losses = _losses(tmp_path, tiny_dataset(32), max_steps=40, batch_size=8, lr=3e-3, precision="bf16",
                             ckpt_every=1000, clip_grad_norm=None)
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:5]) / 5
    assert all(v.dtype == torch.float32 for v in state_of(result.last_checkpoint).values())


def test_fp16_loss_scaling_runs(tmp_path):
    result, losses = _losses(tmp_path, tiny_dataset(), max_steps=4, precision="fp16")
    state = ckpt.load_train_state(result.last_checkpoint)
    assert state["grad_scaler"]["scale"] > 0 and all(math.isfinite(x) for x in losses)


def test_nonfinite_steps_are_skipped_then_stop(tmp_path):
    latents = moving_blobs(16)
    latents[:] = float("nan")
    with pytest.raises(NonFiniteError, match="3 optimizer steps in a row"):
        train(build(tiny_config(tmp_path, max_steps=10, max_nonfinite=3, ckpt_every=1)), dataset=TensorItems(latents))
    assert ckpt.list_checkpoints(tmp_path / "checkpoints") == []  # no checkpoint while steps are skipped
    assert "skipped (non-finite" in (tmp_path / "log.txt").read_text()


def test_skipped_step_leaves_weights_untouched(tmp_path):
    latents = moving_blobs(16)
    latents[:8] = float("inf")  # the one batch of 16 contains poisoned items
    trainer = Trainer(build(tiny_config(tmp_path, max_steps=1, batch_size=16)), dataset=TensorItems(latents))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    ema_before = {k: v.clone() for k, v in trainer.ema.state_dict().items()}
    batch = next(trainer.batches())
    stats = trainer.train_step([batch])
    assert stats["skipped"] == 1.0
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert all(torch.equal(ema_before[k], v) for k, v in trainer.ema.state_dict().items())


def test_never_writes_nonfinite_weights(tmp_path):
    trainer = Trainer(build(tiny_config(tmp_path)), dataset=tiny_dataset())
    with torch.no_grad():
        trainer.model.final_layer.linear.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="final_layer.linear.weight"):
        trainer.save_checkpoint()
    assert ckpt.list_checkpoints(tmp_path / "checkpoints") == []


def test_sigterm_finishes_step_and_checkpoints(tmp_path):
    def send(trainer):
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    result = train(build(tiny_config(tmp_path, max_steps=50, ckpt_every=100)), dataset=tiny_dataset(),
                   on_step_end=send)
    assert result.stopped_by == "SIGTERM"
    # the signal arrives after step 2's checkpoint decision, so the run stops (and saves) after step 3
    assert result.step == 3 and result.last_checkpoint.name == "step_0000003"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_resume_in_process_is_exact(tmp_path):
    full = train(build(tiny_config(tmp_path / "a", max_steps=6, ckpt_every=3)), dataset=tiny_dataset())
    part = build(tiny_config(tmp_path / "b", max_steps=3, ckpt_every=3))
    train(part, dataset=tiny_dataset())
    resumed = train(build(tiny_config(tmp_path / "b", max_steps=6, ckpt_every=3)), dataset=tiny_dataset(),
                    resume=str(tmp_path / "b"))
    for which in ("model", "ema"):
        a, b = state_of(full.last_checkpoint, which), state_of(resumed.last_checkpoint, which)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_refuses_to_overwrite_a_run(tmp_path):
    from latte.config import ConfigError

    train(build(tiny_config(tmp_path, max_steps=1)), dataset=tiny_dataset())
    with pytest.raises(ConfigError, match="already holds checkpoints.*--resume"):
        train(build(tiny_config(tmp_path, max_steps=1)), dataset=tiny_dataset())


def test_resume_rejects_different_model(tmp_path):
    from latte.config import ConfigError

    train(build(tiny_config(tmp_path, max_steps=1)), dataset=tiny_dataset())
    other = tiny_config(tmp_path, max_steps=2)
    other["model"]["hidden_size"] = 64
    with pytest.raises(ConfigError, match="model.hidden_size"):
        train(build(other), dataset=tiny_dataset(), resume=str(tmp_path))


def test_class_conditional_with_label_dropout(tmp_path):
    """Dropped labels (drawn per sample with class_dropout_prob) are embedded as the null class num_classes."""
    data = tiny_config(tmp_path, max_steps=2)
    data["model"].update(conditioning="class", num_classes=3, class_dropout_prob=0.5)
    trainer = Trainer(build(data), dataset=tiny_dataset(classes=3))
    assert trainer.model.y_embedder.embedding_table.weight.shape == (4, 32)  # 3 classes + the null class
    calls = []

    def spy(module, args, out):  # the table as it was at this call (it trains)
        calls.append((args[0], args[1].reshape(args[0].shape), out.detach(),
                      module.embedding_table.weight.detach().clone()))

    trainer.model.y_embedder.register_forward_hook(spy)
    trainer.fit()
    dropped = 0
    for labels, drop, out, table in calls:
        assert torch.equal(out[drop], table[3].expand_as(out[drop]))  # dropped -> the null row
        assert torch.equal(out[~drop], table[labels[~drop]])  # kept -> their own class
        dropped += int(drop.sum())
    assert len(calls) == 2 and 0 < dropped < 8  # 2 steps x 4 samples, p = 0.5
