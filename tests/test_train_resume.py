"""Crash safety: SIGKILL mid-run or mid-save, then ``--resume``, ends bit-identical to an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from latte.training import checkpoint as ckpt
from latte.training.trainer import train
from helpers import build, state_of, tiny_config, tiny_dataset

WORKER = Path(__file__).with_name("helpers.py")


def _run(config: dict, tmp_path, *args) -> subprocess.CompletedProcess:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(WORKER.parent), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(WORKER), str(path), *args], capture_output=True, text=True,
                          env=env, timeout=120)


def _assert_identical(a_dir, b_dir):
    for which in ("model", "ema"):
        a, b = state_of(a_dir, which), state_of(b_dir, which)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), which
    sa, sb = ckpt.load_train_state(a_dir), ckpt.load_train_state(b_dir)
    assert sa["step"] == sb["step"] and sa["data"] == sb["data"]
    ea, eb = sa["optimizer"]["state"], sb["optimizer"]["state"]
    assert all(torch.equal(ea[k]["exp_avg_sq"], eb[k]["exp_avg_sq"]) for k in ea)


def test_sigkill_mid_run_then_resume_is_bit_identical(tmp_path):
    # 16 items / batch 4 = 4 batches per epoch, so the run crosses epochs and the kill lands mid-epoch
    config = tiny_config(tmp_path / "run", max_steps=9, ckpt_every=3, keep_last=5)
    reference = train(build(tiny_config(tmp_path / "ref", max_steps=9, ckpt_every=3)), dataset=tiny_dataset())

    killed = _run(config, tmp_path, "--kill-at-step", "5")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step_0000003"

    resumed = _run(config, tmp_path, "--resume", str(tmp_path / "run"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["step"] == 9
    _assert_identical(reference.last_checkpoint, tmp_path / "run" / "checkpoints" / "step_0000009")


def test_sigkill_during_save_keeps_previous_checkpoint(tmp_path):
    config = tiny_config(tmp_path / "run", max_steps=6, ckpt_every=2)
    killed = _run(config, tmp_path, "--kill-in-save", "4")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    root = tmp_path / "run" / "checkpoints"
    assert any(p.name.startswith(".tmp-step_0000004") for p in root.iterdir())  # died mid-write
    latest = ckpt.latest_checkpoint(root)
    assert latest.name == "step_0000002"
    from latte.models.latte import Latte

    Latte.from_pretrained(latest / "ema")  # loadable on its own
    assert ckpt.load_train_state(latest)["step"] == 2

    resumed = _run(config, tmp_path, "--resume", str(tmp_path / "run"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not any(p.name.startswith(".tmp") for p in root.iterdir())
    reference = train(build(tiny_config(tmp_path / "ref", max_steps=6, ckpt_every=2)), dataset=tiny_dataset())
    _assert_identical(reference.last_checkpoint, root / "step_0000006")


@pytest.mark.slow
def test_sigterm_in_subprocess_exits_cleanly_with_checkpoint(tmp_path):
    config = tiny_config(tmp_path / "run", max_steps=50, ckpt_every=100)
    done = _run(config, tmp_path, "--signal-at-step", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"step": 3, "stopped_by": "SIGTERM"}
    assert ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step_0000003"
