"""Trainable subsets and LoRA fine-tuning: only the chosen parameters move, the adapter is small and saved on
its own, `latte sample --lora` applies it, and merging it gives the same outputs."""
import pytest
import torch

from latte.config import ConfigError
from latte.models import Latte
from latte.models.lora import ADAPTER_FILE, apply_lora_file, merge_lora
from latte.sampling.pipeline import LattePipeline
from latte.training.trainer import Trainer, train
from helpers import build, state_of, tiny_config, tiny_dataset


def _lora_config(tmp_path, **lora):
    data = tiny_config(tmp_path / "lora", max_steps=3, ckpt_every=3, lr=1e-2, trainable="lora",
                       init_from=str(tmp_path / "base"), lora={"rank": 2, "alpha": 4.0, **lora})
    data["model"].update(conditioning="class", num_classes=3, class_dropout_prob=0.1)
    return data


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("lora")
    base = tiny_config(tmp_path / "base", max_steps=8, lr=1e-2)
    base["model"].update(conditioning="class", num_classes=3, class_dropout_prob=0.1)
    base_result = train(build(base), dataset=tiny_dataset(classes=3))
    (tmp_path / "base").mkdir(exist_ok=True)
    trainer = Trainer(build(_lora_config(tmp_path)), dataset=tiny_dataset(classes=3))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.fit()
    return tmp_path, base_result, trainer, before, result


def test_only_adapter_parameters_change(lora_run):
    _, base_result, trainer, before, _ = lora_run
    after = trainer.model.state_dict()
    adapters = [k for k in after if "lora_" in k]
    assert adapters and all(".attn." in k or ".mlp." in k or "cross_attn" in k for k in adapters)
    assert all(torch.equal(before[k], after[k]) for k in after if "lora_" not in k)
    assert any(not torch.equal(before[k], after[k]) for k in adapters if "lora_B" in k)  # B starts at zero
    trainable = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    named = dict(trainer.model.named_parameters())
    assert trainable == {id(named[k]) for k in named if "lora_" in k}


def test_adapter_is_saved_small_and_beside_loadable_base_weights(lora_run):
    tmp_path, base_result, _, _, result = lora_run
    ema = result.last_checkpoint / "ema"
    adapter = (ema / ADAPTER_FILE).stat().st_size
    assert adapter < 0.25 * (ema / "model.safetensors").stat().st_size
    base = Latte.from_pretrained(ema)  # the base weights load as a plain Latte: init_from's EMA, unchanged
    init = state_of(base_result.last_checkpoint, "ema")
    assert all(torch.equal(v, init[k]) for k, v in base.state_dict().items())


def test_merged_equals_unmerged_and_sampling_applies_the_adapter(lora_run):
    _, _, _, _, result = lora_run
    ema = result.last_checkpoint / "model"  # the raw weights: the adapter after 3 steps, not its EMA
    torch.manual_seed(0)
    x, t, y = torch.randn(2, 4, 4, 8, 8), torch.tensor([10, 500]), torch.tensor([0, 2])
    with torch.no_grad():
        plain = Latte.from_pretrained(ema).eval()(x, t, y=y)  # eval: no random label dropout
        adapted = apply_lora_file(Latte.from_pretrained(ema).eval(), ema, scale=0.7)
        unmerged = adapted(x, t, y=y)
        merged = merge_lora(adapted)(x, t, y=y)
    assert not any("lora_" in k for k in adapted.state_dict())
    assert (unmerged - plain).abs().max() > 1e-4  # the adapter does something
    torch.testing.assert_close(merged, unmerged, rtol=0, atol=1e-5)

    # `latte sample CHECKPOINT` applies the run's adapter; --lora PATH on a base model does the same
    run_videos = LattePipeline.from_run(result.last_checkpoint, ema=False)(classes=[1], seed=3, steps=2, sampler="ddim",
                                                                cfg_scale=1, output_type="latent", progress=False)
    pipe = LattePipeline(Latte.from_pretrained(ema), None, None).apply_lora(ema)
    lora_videos = pipe(classes=[1], seed=3, steps=2, sampler="ddim", cfg_scale=1, output_type="latent",
                       progress=False)
    torch.testing.assert_close(run_videos.videos, lora_videos.videos, rtol=0, atol=0)
    assert lora_videos.records[0]["lora"] == str(ema)


def test_resume_of_a_lora_run_is_exact(tmp_path, lora_run):
    src, _, _, _, full = lora_run
    data = _lora_config(src)
    data["train"].update(run_dir=str(tmp_path / "b"), max_steps=2, ckpt_every=2)
    train(build(data), dataset=tiny_dataset(classes=3))
    data["train"].update(max_steps=3, ckpt_every=3)
    resumed = train(build(data), dataset=tiny_dataset(classes=3), resume=str(tmp_path / "b"))
    for which in ("model", "ema"):
        for name in ("model.safetensors", ADAPTER_FILE):
            from safetensors.torch import load_file

            a = load_file(str(full.last_checkpoint / which / name))
            b = load_file(str(resumed.last_checkpoint / which / name))
            assert all(torch.equal(a[k], b[k]) for k in a), (which, name)


def test_trainable_name_patterns_freeze_the_rest(tmp_path):
    data = tiny_config(tmp_path, max_steps=3, trainable=["final_layer.*", "blocks.1.*"])  # zero-init final layer:
    # the blocks get gradients only once it has moved
    trainer = Trainer(build(data), dataset=tiny_dataset())
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    after = trainer.model.state_dict()
    moved = {k for k in after if not torch.equal(before[k], after[k])}
    assert all(k.startswith(("blocks.1.", "final_layer.")) for k in moved)
    assert any(k.startswith("blocks.1.") for k in moved) and any(k.startswith("final_layer.") for k in moved)
    with pytest.raises(ConfigError, match="train.trainable: pattern 'nope.*' matches no parameter"):
        Trainer(build(tiny_config(tmp_path / "x", trainable=["nope.*"])), dataset=tiny_dataset())
