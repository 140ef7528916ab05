"""Training state across failures and resumes: no checkpoints while the guard skips, one log point per step,
--resume before the first checkpoint, RNG state equal to an uninterrupted run, init_from formats."""
import re

import pytest
import torch
from safetensors.torch import save_file

from latte.data.loader import TensorItems
from latte.training import checkpoint as ckpt
from latte.training.guard import NonFiniteError
from latte.training.trainer import Trainer, train
from helpers import build, moving_blobs, state_of, tiny_config, tiny_dataset


class PoisonAfter(torch.utils.data.Dataset):
    """``tiny_dataset`` whose items turn non-finite once ``poisoned[0]`` is set."""

    def __init__(self):
        self.data, self.poisoned = tiny_dataset(), [False]

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        item = self.data[i]
        if self.poisoned[0]:
            item = {**item, "latents": torch.full_like(item["latents"], float("nan"))}
        return item


def test_no_checkpoint_while_skipping_and_the_error_names_the_healthy_one(tmp_path):
    data = PoisonAfter()

    def poison(trainer):
        if trainer.step == 2:
            data.poisoned[0] = True

    config = build(tiny_config(tmp_path, max_steps=10, ckpt_every=1, max_nonfinite=3))
    with pytest.raises(NonFiniteError, match=r"resume from .*step_0000002"):
        train(config, dataset=data, on_step_end=poison)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "checkpoints")] == [1, 2]  # none of the skipped steps
    assert "checkpoint not written" in (tmp_path / "log.txt").read_text()


def test_all_nonfinite_run_writes_no_checkpoint(tmp_path):
    latents = moving_blobs(16)
    latents[:] = float("nan")
    with pytest.raises(NonFiniteError, match="3 optimizer steps in a row.*no checkpoint"):
        train(build(tiny_config(tmp_path, max_steps=10, max_nonfinite=3, ckpt_every=1)),
              dataset=TensorItems(latents))
    assert ckpt.list_checkpoints(tmp_path / "checkpoints") == []


def _tb_steps(run_dir) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return [e.step for e in acc.Scalars("train/loss")]


def _log_steps(run_dir) -> list[int]:
    return [int(m) for m in re.findall(r"step (\d+)/\d+ loss", (run_dir / "log.txt").read_text())]


def test_one_log_point_per_step_across_a_resume(tmp_path):
    train(build(tiny_config(tmp_path, max_steps=4, ckpt_every=2, log_every=1)), dataset=tiny_dataset())
    train(build(tiny_config(tmp_path, max_steps=7, ckpt_every=2, log_every=1)), dataset=tiny_dataset(),
          resume=str(tmp_path / "checkpoints" / "step_0000002"))  # steps 3, 4 are replayed
    assert _tb_steps(tmp_path) == list(range(1, 8))
    assert _log_steps(tmp_path) == list(range(1, 8))


def test_resume_before_the_first_checkpoint_starts_from_scratch(tmp_path, capsys):
    def stop(trainer):
        raise KeyboardInterrupt  # a crash after step 1, before any checkpoint

    with pytest.raises(KeyboardInterrupt):
        train(build(tiny_config(tmp_path, max_steps=4, ckpt_every=3, log_every=1)), dataset=tiny_dataset(),
              on_step_end=stop)
    result = train(build(tiny_config(tmp_path, max_steps=4, ckpt_every=3, log_every=1)), dataset=tiny_dataset(),
                   resume=str(tmp_path))
    assert result.step == 4 and "no checkpoint yet" in capsys.readouterr().out
    assert _tb_steps(tmp_path) == [1, 2, 3, 4] and _log_steps(tmp_path) == [1, 2, 3, 4]
    fresh = train(build(tiny_config(tmp_path / "fresh", max_steps=4, ckpt_every=3)), dataset=tiny_dataset())
    a, b = state_of(result.last_checkpoint), state_of(fresh.last_checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_rng_state_after_resume_equals_uninterrupted(tmp_path):
    full = train(build(tiny_config(tmp_path / "a", max_steps=6, ckpt_every=3)), dataset=tiny_dataset())
    train(build(tiny_config(tmp_path / "b", max_steps=3, ckpt_every=3)), dataset=tiny_dataset())
    resumed = train(build(tiny_config(tmp_path / "b", max_steps=6, ckpt_every=3)), dataset=tiny_dataset(),
                    resume=str(tmp_path / "b"))
    ra, rb = (ckpt.load_train_state(r.last_checkpoint)["rng"][0] for r in (full, resumed))
    assert torch.equal(ra["torch"], rb["torch"])
    assert torch.equal(ra["numpy"]["keys"], rb["numpy"]["keys"]) and ra["numpy"]["pos"] == rb["numpy"]["pos"]


def test_init_from_a_diffusers_transformer_folder_and_worded_errors(tmp_path):
    first = train(build(tiny_config(tmp_path / "a", max_steps=2)), dataset=tiny_dataset())
    ema = state_of(first.last_checkpoint, "ema")
    (tmp_path / "pipe" / "transformer").mkdir(parents=True)
    save_file(ema, str(tmp_path / "pipe" / "transformer" / "diffusion_pytorch_model.safetensors"))
    trainer = Trainer(build(tiny_config(tmp_path / "b", init_from=str(tmp_path / "pipe"))), dataset=tiny_dataset())
    assert all(torch.equal(v, ema[k]) for k, v in trainer.model.state_dict().items())
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"train.init_from: .*empty holds no weights"):
        Trainer(build(tiny_config(tmp_path / "c", init_from=str(tmp_path / "empty"))), dataset=tiny_dataset())
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"train.init_from: .*bad.pt"):
        Trainer(build(tiny_config(tmp_path / "d", init_from=str(tmp_path / "bad.pt"))), dataset=tiny_dataset())
