"""Personalisation: LoRA on the spatial layers only (train.lora.layers: spatial); the temporal layers stay
bit-identical, the shipped recipe's adapter is a small fraction of its model, and prior preservation
(train.preservation) keeps the frozen model's predictions, item by item, through resume and DDP."""
import os

import pytest
import torch
import torch.multiprocessing as mp

from latte.config import SHIPPED_CONFIGS, ConfigError, from_dict, to_dict
from latte.data.loader import TensorItems
from latte.models import Latte, LatteConfig
from latte.models.lora import ADAPTER_FILE, apply_lora_file, merge_lora, save_lora
from latte.training.config import LoraConfig, load_run_config
from latte.training.trainable import apply_trainable, is_temporal
from latte.training.trainer import Trainer, train
from helpers import (TINY_TEXT_MODEL, build, free_port, tiny, tiny_config, tiny_dataset, tiny_lavie_config,
                     write_text_run)

RECIPE = SHIPPED_CONFIGS / "personalize" / "quickstart_lora.yaml"


def _temporal_keys(model):
    return [k for k in model.state_dict() if is_temporal(model, k.rsplit(".", 1)[0])]


def test_spatial_lora_training_leaves_every_temporal_parameter_bit_identical(tmp_path):
    base = tiny_config(tmp_path / "base", max_steps=4, lr=1e-2)
    base["model"].update(conditioning="class", num_classes=3)
    base_result = train(build(base), dataset=tiny_dataset(classes=3))
    data = tiny_config(tmp_path / "lora", max_steps=3, ckpt_every=3, lr=5e-2, trainable="lora",
                       init_from=str(base_result.last_checkpoint.parent.parent),
                       lora={"rank": 2, "alpha": 4.0, "layers": "spatial"})
    data["model"].update(conditioning="class", num_classes=3)
    trainer = Trainer(build(data), dataset=tiny_dataset(classes=3))
    adapted = [n for n in trainer.model.lora_settings["modules"]]
    kinds = {i: blk.kind for i, blk in enumerate(trainer.model.blocks)}
    assert adapted and all(kinds[int(n.split(".")[1])] == "spatial" for n in adapted)
    assert {kinds[int(n.split(".")[1])] for n in adapted} == {"spatial"} and "temporal" in kinds.values()
    result = trainer.fit()
    folder = result.last_checkpoint / "model"
    before = Latte.from_pretrained(folder)  # the base weights, saved beside the adapter
    after = merge_lora(apply_lora_file(Latte.from_pretrained(folder), folder))  # adapter folded in
    b, a = before.state_dict(), after.state_dict()
    temporal = _temporal_keys(after)
    assert temporal and all(torch.equal(a[k], b[k]) for k in temporal)
    spatial_changed = [k for k in a if k not in temporal and not torch.equal(a[k], b[k])]
    assert spatial_changed and all(kinds[int(k.split(".")[1])] == "spatial" for k in spatial_changed)


def test_factorized_attention_keeps_its_temporal_attention_out_and_split_heads_is_refused():
    lora = from_dict(LoraConfig, {"rank": 2, "layers": "spatial"})
    model = tiny("factorized_attention")
    apply_trainable(model, "lora", lora, ["attn.qkv", "attn_temporal.qkv", "mlp.fc1"])
    assert model.lora_settings["modules"] and not any("temporal" in n for n in model.lora_settings["modules"])
    with pytest.raises(ConfigError, match="factorized_heads"):
        apply_trainable(tiny("factorized_heads"), "lora", lora, ["attn.qkv"])


def test_recipe_adapter_is_at_most_five_percent_of_the_model_file(tmp_path):
    config = load_run_config(RECIPE)
    assert config.train.trainable == "lora" and config.train.lora.layers == "spatial"
    model = Latte(config.model)
    model.save_pretrained(tmp_path / "base")
    apply_trainable(model, "lora", config.train.lora, ["attn.qkv", "attn.proj", "cross_attn.*", "mlp.fc1", "mlp.fc2"])
    save_lora(model, tmp_path / "adapter")
    adapter_bytes = (tmp_path / "adapter" / ADAPTER_FILE).stat().st_size
    ratio = adapter_bytes / (tmp_path / "base" / "model.safetensors").stat().st_size
    assert ratio <= 0.05, ratio
    assert not any(is_temporal(model, n) for n in model.lora_settings["modules"])
    # the recipe is the quickstart model with one-frame clips: same parameters, so its adapter applies there
    quick = load_run_config(SHIPPED_CONFIGS / "quickstart" / "latte.yaml", ["autoencoder.path=vae"]).model
    assert LatteConfig(**{**vars(quick), "num_frames": 1}) == config.model
    # ... and encodes captions / reads outputs as the quickstart model does (train.init_from checks this)
    quick_run = load_run_config(SHIPPED_CONFIGS / "quickstart" / "latte.yaml", ["autoencoder.path=vae"])
    assert config.text_encoder == quick_run.text_encoder
    assert config.diffusion.prediction_type == quick_run.diffusion.prediction_type


def test_recipe_preserves_the_quickstart_training_captions():
    from latte.data.config import SyntheticConfig
    from latte.data.synthetic import caption_for
    from latte.io import load_yaml_mapping

    preservation = load_run_config(RECIPE).train.preservation
    data = load_yaml_mapping(SHIPPED_CONFIGS / "quickstart" / "data.yaml", "quickstart data")
    spec = from_dict(SyntheticConfig, data["synthetic"], prefix="data.synthetic").spec()
    captions = [caption_for(c) for c in spec.combinations() if not spec.is_heldout(c)]
    assert preservation.weight > 0 and preservation.inputs == ["stills"] and preservation.frames == 8
    assert sorted(preservation.prompts) == sorted(captions) and len(captions) == 36


def test_init_from_a_run_with_other_caption_features_is_refused(tmp_path):
    base = tiny_config(tmp_path / "base", max_steps=1)
    base["model"].update(conditioning="class", num_classes=3)
    base_result = train(build(base), dataset=tiny_dataset(classes=3))
    data = tiny_config(tmp_path / "ft", max_steps=1, init_from=str(base_result.last_checkpoint.parent.parent))
    data["model"].update(conditioning="class", num_classes=3)
    data["diffusion"] = {**data.get("diffusion", {}), "prediction_type": "sample"}
    with pytest.raises(ConfigError, match=r"train.init_from .*diffusion.prediction_type: '(epsilon|v_prediction)' "
                                          r"there, 'sample' here"):
        Trainer(build(data), dataset=tiny_dataset(classes=3))


# -- prior preservation by self-distillation (train.preservation) ------------------------------------------------
PRESERVED = ["a red square moving left", "a blue circle moving right"]


def _preserving(run_dir, base_run, weight: float, max_steps: int = 4, **preservation):
    """Spatial LoRA of a tiny text run (``helpers.write_text_run``) on one-frame 'stills', preserving PRESERVED."""
    return build({"model": {**TINY_TEXT_MODEL, "num_frames": 1}, "autoencoder": {"kind": "identity"},
                  "text_encoder": {"kind": "minilm", "max_length": 16},
                  "train": dict(run_dir=str(run_dir), max_steps=max_steps, batch_size=4, lr=5e-2, ema_decay=None,
                                log_every=1, ckpt_every=2, num_workers=0, seed=7, init_from=str(base_run),
                                trainable="lora", lora={"rank": 2, "alpha": 4.0, "layers": "spatial"},
                                text_dropout_prob=0.0,
                                preservation={"weight": weight, "prompts": PRESERVED, "frames": 8, "steps": 2,
                                              **preservation})})


def _stills(n: int = 8) -> TensorItems:
    return TensorItems(torch.randn(n, 3, 1, 16, 16, generator=torch.Generator().manual_seed(0)).clamp(-1, 1),
                       captions=["a purple square moving left"] * n)


def _adapter(checkpoint) -> dict:
    """The LoRA tensors a checkpoint saved beside its base weights."""
    from safetensors.torch import load_file

    return load_file(str(checkpoint / "model" / ADAPTER_FILE))


def _preservation_gap(trainer, keys=(0, 1, 2, 3), step: int = 99) -> torch.Tensor:
    """Per-item preservation loss of the trainer's model against the frozen model (fixed draws)."""
    task = trainer.task
    run = lambda net: (lambda x, t, **kw: net(x, t, **kw).float())  # noqa: E731
    with torch.no_grad():
        return task.preservation.loss(run(trainer.model), run(task.preservation.frozen), task.diffusion.q_sample,
                                      task._captions, list(keys), 7, step)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    return write_text_run(tmp_path_factory.mktemp("base"))


def test_preservation_starts_at_zero_and_draws_per_item(tmp_path, text_run):
    trainer = Trainer(_preserving(tmp_path / "run", text_run, 1.0, inputs=["stills", "videos"]), dataset=_stills(),
                      progress=False)
    prep = trainer.task.preservation
    assert prep.latents.shape == (2, 3, 8, 16, 16)  # one 8-frame video per preserved prompt
    assert torch.all(_preservation_gap(trainer) == 0)  # the adapter starts as the identity: exactly the frozen model
    with torch.no_grad():  # move the adapter: the loss sees it, item by item as in one batch
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    together = _preservation_gap(trainer, keys=(3, 5))
    apart = torch.cat([_preservation_gap(trainer, keys=(3,)), _preservation_gap(trainer, keys=(5,))])
    assert torch.all(together > 0) and torch.allclose(together, apart, rtol=1e-4, atol=1e-7)


def test_preservation_keeps_the_frozen_models_predictions_and_resumes_exactly(tmp_path, text_run):
    free = Trainer(_preserving(tmp_path / "free", text_run, 0.0), dataset=_stills(), progress=False)
    free.fit()
    kept = Trainer(_preserving(tmp_path / "kept", text_run, 30.0), dataset=_stills(), progress=False)
    result = kept.fit()
    free.task.preservation = kept.task.preservation  # measure both against the same frozen model and videos
    gap_free, gap_kept = _preservation_gap(free).mean(), _preservation_gap(kept).mean()
    assert gap_kept < 0.5 * gap_free, (gap_kept, gap_free)
    # bit-exact resume: the preserved videos are sampled again, identically, at the restart
    part = _preserving(tmp_path / "part", text_run, 30.0, max_steps=2)
    train(part, dataset=_stills())
    resumed = train(_preserving(tmp_path / "part", text_run, 30.0), dataset=_stills(), resume=str(tmp_path / "part"))
    a, b = _adapter(result.last_checkpoint), _adapter(resumed.last_checkpoint)
    assert a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("change, message", [
    ({"preservation": {"weight": 1.0, "prompts": []}}, "train.preservation.prompts: required"),
    ({"preservation": {"weight": 1.0, "prompts": PRESERVED, "inputs": ["frames"]}}, "train.preservation.inputs"),
    ({"preservation": {"weight": 1.0, "prompts": PRESERVED}, "init_from": None}, "needs train.init_from or"),
])
def test_preservation_config_errors_name_the_key(tmp_path, change, message):
    data = to_dict(_preserving(tmp_path, tmp_path / "base", 1.0))
    data["train"].update(change)
    with pytest.raises(ConfigError, match=message):
        build(data)


def test_preservation_is_refused_for_class_models_and_lavie_stages(tmp_path):
    data = tiny_config(tmp_path, init_from=str(tmp_path / "base"), preservation={"weight": 1.0, "prompts": PRESERVED})
    data["model"].update(conditioning="class", num_classes=3)
    with pytest.raises(ConfigError, match="text-conditional"):
        build(data)
    from latte.training.tasks.lavie import LavieRunConfig

    lavie = tiny_lavie_config("base", tmp_path, preservation={"weight": 1.0, "prompts": PRESERVED})
    with pytest.raises(ConfigError, match="Latte models only"):
        from_dict(LavieRunConfig, lavie)


def _preserving_worker(rank: int, world_size: int, port: int, config: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    train(build(config), dataset=_stills(), device="cpu", progress=False)


def test_preservation_under_ddp_equals_single_process_accumulation(tmp_path, text_run):
    """The preservation forward runs outside DDP's wrapper (one wrapped forward per backward): gradients still
    reach every rank's all-reduce, and the per-item draws make two ranks equal one process accumulating."""
    single = to_dict(_preserving(tmp_path / "single", text_run, 30.0, max_steps=2))
    single["train"].update(grad_accum=2)
    reference = train(build(single), dataset=_stills(), progress=False)
    ddp = to_dict(_preserving(tmp_path / "ddp", text_run, 30.0, max_steps=2))
    ddp["train"].update(grad_accum=2, batch_size=2, distributed="ddp")
    mp.spawn(_preserving_worker, args=(2, free_port(), ddp), nprocs=2, join=True)
    a, b = _adapter(reference.last_checkpoint), _adapter(tmp_path / "ddp" / "checkpoints" / "step_0000002")
    assert a.keys() == b.keys() and any(a[k].abs().sum() > 0 for k in a if "lora_B" in k)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=2e-6, msg=k)
