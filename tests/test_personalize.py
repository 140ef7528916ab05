"""Personalisation: LoRA on the spatial layers only (train.lora.layers: spatial); the temporal layers stay
bit-identical, and the shipped recipe's adapter is a small fraction of its model."""
import pytest
import torch

from latte.config import SHIPPED_CONFIGS, ConfigError, from_dict
from latte.models import Latte, LatteConfig
from latte.models.lora import ADAPTER_FILE, apply_lora_file, merge_lora, save_lora
from latte.training.config import LoraConfig, load_run_config
from latte.training.trainable import apply_trainable, is_temporal
from latte.training.trainer import Trainer, train
from helpers import build, tiny, tiny_config, tiny_dataset

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
