"""The engine knows no model: a toy U-Net-shaped task (``m(sample, timestep, encoder_hidden_states)``) trains,
checkpoints and resumes bit-exactly through it, with EMA, accumulation and a trainable subset."""
import torch
from torch import nn

from latte.data.loader import TensorItems
from latte.seeding import mix_seed
from latte.training.config import TrainConfig
from latte.training.engine import Engine
from latte.training.tasks import TaskBase


class ToyUNet(nn.Module):
    """``(B, C, F, H, W)``, timestep ``(B,)``, text ``(B, L, D)`` -> ``(B, C, F, H, W)``."""

    def __init__(self, channels: int = 4, text_dim: int = 8):
        super().__init__()
        self.down = nn.Conv3d(channels, 16, 3, padding=1)
        self.mid = nn.Conv3d(16, 16, 3, padding=1)
        self.up = nn.Conv3d(16, channels, 3, padding=1)
        self.text = nn.Linear(text_dim, 16)
        self.time = nn.Linear(1, 16)

    def forward(self, sample, timestep, encoder_hidden_states):
        cond = self.text(encoder_hidden_states.mean(1)) + self.time(timestep[:, None].float() / 1000)
        h = torch.relu(self.down(sample) + cond[:, :, None, None, None])
        return self.up(torch.relu(self.mid(h)))


class ToyTask(TaskBase):
    name = "toy"

    def __init__(self, n: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.data = TensorItems(torch.randn(n, 4, 2, 8, 8, generator=g))

    def build_model(self, device, resuming):
        return ToyUNet()

    def blocks(self, model):
        return [model.down, model.mid, model.up]

    def dataset(self, engine):
        return self.data

    def loss(self, model, batch, ctx):
        x0 = batch["latents"].to(ctx.device)
        noises, ts = [], []
        for key in batch["index"].tolist():  # per-sample draws keyed by (seed, step, index)
            g = torch.Generator().manual_seed(mix_seed(ctx.seed, ctx.step, key))
            ts.append(torch.randint(0, 1000, (1,), generator=g))
            noises.append(torch.randn(x0.shape[1:], generator=g))
        t, noise = torch.cat(ts), torch.stack(noises)
        text = torch.ones(len(x0), 3, 8)
        with ctx.autocast():
            pred = model(x0 + noise, t, encoder_hidden_states=text).float()
        mse = (pred - noise).pow(2).mean()
        return {"loss": mse, "mse": mse}


def _train(run_dir, resume=None, **kw):
    cfg = TrainConfig(run_dir=str(run_dir), seed=1, lr=1e-3, ema_decay=0.9, log_every=1, num_workers=0,
                      **{"max_steps": 6, "batch_size": 4, "ckpt_every": 3, **kw})
    engine = Engine(ToyTask(), cfg, resume=resume, progress=False)
    return engine, engine.fit()


def _weights(result, which="model"):
    from safetensors.torch import load_file

    return load_file(str(result.last_checkpoint / which / "model.safetensors"))


def test_a_toy_task_trains_and_resumes_exactly(tmp_path):
    engine, full = _train(tmp_path / "a")
    assert full.step == 6 and engine.last_stats["mse"] == engine.last_stats["loss"]
    _train(tmp_path / "b", max_steps=3)
    _, resumed = _train(tmp_path / "b", resume=str(tmp_path / "b"))
    for which in ("model", "ema"):
        a, b = _weights(full, which), _weights(resumed, which)
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(_weights(full)[k], _weights(full, "ema")[k]) for k in _weights(full))


def test_accumulation_and_a_trainable_subset(tmp_path):
    _, big = _train(tmp_path / "big", max_steps=2, batch_size=8)
    _, acc = _train(tmp_path / "acc", max_steps=2, batch_size=4, grad_accum=2)
    a, b = _weights(big), _weights(acc)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    engine, _ = _train(tmp_path / "sub", max_steps=2, trainable=["up.*"])
    torch.manual_seed(1)  # the engine seeds train.seed before build_model
    start = ToyUNet().state_dict()
    after = engine.model.state_dict()
    assert all(torch.equal(start[k], after[k]) == (not k.startswith("up.")) for k in after)
