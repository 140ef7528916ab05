"""diffusers interop with tiny random weights: export → LatteTransformer3DModel / LattePipeline, import back."""
import json
import shutil

import pytest
import torch

from latte.config import ConfigError
from latte.interop.diffusers import import_from_diffusers, save_transformer
from latte.models import Latte, LatteConfig
from latte.sampling import LattePipeline

from helpers import T2V, make_tiny_t5, make_tiny_vae, t2v_model, tiny_model


@pytest.fixture(scope="module")
def t2v_run(tmp_path_factory):
    """A text-to-video run with a tiny T5 (word tokenizer) and a tiny diffusers AutoencoderKL (factor 2)."""
    from latte.training.config import run_config_from_dict, save_run_config

    root = tmp_path_factory.mktemp("t2v")
    make_tiny_t5(root / "t5")
    make_tiny_vae(root / "vae")
    ckpt = root / "run" / "checkpoints" / "step_0000001"
    t2v_model(1).save_pretrained(ckpt / "ema")
    t2v_model(2).save_pretrained(ckpt / "model")
    cfg = run_config_from_dict({"model": T2V, "autoencoder": {"kind": "sd_vae", "path": str(root / "vae")},
                                "text_encoder": {"kind": "t5", "path": str(root / "t5")},
                                "train": {"run_dir": str(root / "run")}})
    save_run_config(cfg, ckpt / "run_config.yaml")
    torch.save({"step": torch.tensor(1)}, ckpt / "train_state.pt")
    (root / "run" / "checkpoints" / "latest").write_text(ckpt.name)
    # the same weights read as a v-prediction run
    shutil.copytree(root / "run", root / "run_v")
    cfg.diffusion.prediction_type = "v_prediction"
    save_run_config(cfg, root / "run_v" / "checkpoints" / ckpt.name / "run_config.yaml")
    return root


def test_transformer_round_trip_matches_diffusers(tmp_path):
    from diffusers import LatteTransformer3DModel

    ours = t2v_model()
    save_transformer(ours, tmp_path / "transformer")
    theirs = LatteTransformer3DModel.from_pretrained(tmp_path / "transformer").eval()
    x, t, text = torch.randn(2, 4, 4, 8, 8), torch.tensor([10, 600]), torch.randn(2, 5, 16)
    with torch.no_grad():
        a = ours(x, t, text=text)
        b = theirs(x, t, encoder_hidden_states=text, return_dict=False)[0]
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        # a padding mask in ours equals dropping the padded tokens in diffusers (whose mask path is unusable)
        mask = torch.tensor([[1, 1, 1, 0, 0]], dtype=torch.bool)
        torch.testing.assert_close(ours(x[:1], t[:1], text=text[:1], text_mask=mask),
                                   theirs(x[:1], t[:1], encoder_hidden_states=text[:1, :3], return_dict=False)[0],
                                   atol=1e-5, rtol=0)
    import_from_diffusers(tmp_path, tmp_path / "ours")
    back = Latte.from_pretrained(tmp_path / "ours")
    assert back.config == ours.config
    for k, v in ours.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_export_rejects_models_diffusers_cannot_express(tmp_path):
    with pytest.raises(ConfigError, match="cannot be exported to diffusers"):
        save_transformer(tiny_model(conditioning="class", num_classes=3), tmp_path / "x")


@pytest.mark.parametrize("run, prediction_type", [("run", "epsilon"), ("run_v", "v_prediction")])
def test_exported_run_runs_in_diffusers_pipeline_like_ours(t2v_run, tmp_path, run, prediction_type):
    """End to end: `latte export` → diffusers.LattePipeline gives our pipeline's video for the same seed (for an
    epsilon and a v-prediction run: diffusers' scheduler reads the exported prediction_type)."""
    from diffusers import LattePipeline as DiffusersLattePipeline

    from latte.cli import main

    out = tmp_path / "export"
    assert main(["export", "--to", "diffusers", str(t2v_run / run), str(out)]) == 0
    index = json.loads((out / "model_index.json").read_text())
    assert index["transformer"] == ["diffusers", "LatteTransformer3DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKL"] and index["text_encoder"][1] == "T5EncoderModel"
    scheduler = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert "variance_type" not in scheduler and scheduler["prediction_type"] == prediction_type

    theirs = DiffusersLattePipeline.from_pretrained(str(out))
    theirs.set_progress_bar_config(disable=True)
    kw = dict(num_inference_steps=3, guidance_scale=4.0, video_length=4, height=16, width=16)
    video = theirs("a red square", negative_prompt="", generator=torch.Generator().manual_seed(7),
                   output_type="pt", clean_caption=False, **kw).frames  # (1, F, 3, H, W) in [0, 1]

    ours = LattePipeline.from_diffusers(out)
    assert ours.defaults.sampler == "ddim-diffusers" and ours.truncate_text
    assert ours.prediction_type == prediction_type
    mine = ours(prompts=["a red square"], seed=7, steps=3, cfg_scale=4.0, frames=4, height=16, width=16,
                output_type="tensor", progress=False).videos  # (1, 3, F, H, W) in [-1, 1]
    torch.testing.assert_close((mine / 2 + 0.5).clamp(0, 1).transpose(1, 2), video, atol=1e-4, rtol=0)

    # the run itself (EMA weights, masked prompt features) samples from the same weights
    run_pipe = LattePipeline.from_run(t2v_run / run)
    assert run_pipe.prediction_type == prediction_type
    assert all(torch.equal(v, ours.model.state_dict()[k]) for k, v in run_pipe.model.state_dict().items())


@pytest.mark.parametrize("input_size, pe_base_size, sample_size", [(8, 8, 16), (8, 4, 8), (64, 32, 64), (32, 32, 64)])
def test_export_of_models_trained_at_another_size_than_their_position_base(tmp_path, input_size, pe_base_size,
                                                                           sample_size):
    """configs/t2v.yaml trains at 256 px (latents 32) with the released pe_base_size 32: diffusers expresses it
    with sample_size 64 (its position embedding spans sample_size // p patches); the outputs match at the
    trained size and `latte import` restores input_size from latte_export.json."""
    from diffusers import LatteTransformer3DModel

    from latte.interop.official import diffusers_sample_size

    cfg = LatteConfig(**{**T2V, "input_size": input_size, "pe_base_size": pe_base_size})
    assert diffusers_sample_size(cfg) == sample_size
    if input_size > 8:
        return  # the size table only (the shipped configs/t2v.yaml and the released model)
    torch.manual_seed(0)
    ours = Latte(cfg).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_transformer(ours, tmp_path / "transformer")
    (tmp_path / "latte_export.json").write_text(json.dumps({"input_size": input_size}))
    theirs = LatteTransformer3DModel.from_pretrained(tmp_path / "transformer").eval()
    assert theirs.config.sample_size == sample_size
    x, t, text = torch.randn(1, 4, 4, input_size, input_size), torch.tensor([300]), torch.randn(1, 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, t, text=text), theirs(x, t, encoder_hidden_states=text,
                                                                 return_dict=False)[0], atol=1e-5, rtol=0)
    import_from_diffusers(tmp_path, tmp_path / "ours")
    assert Latte.from_pretrained(tmp_path / "ours").config == cfg


def test_shipped_t2v_config_is_exportable():
    from latte.config import resolve_config
    from latte.interop.official import t2v_config_to_official
    from latte.io import load_yaml_mapping

    model = load_yaml_mapping(resolve_config("t2v"))["model"]
    config = t2v_config_to_official(LatteConfig(**{k: v for k, v in model.items() if k != "gradient_checkpointing"}))
    assert config["sample_size"] == 64 and config["patch_size"] == 2


def test_import_of_diffusers_class_defaults_names_every_unsupported_setting(tmp_path, capsys):
    """A LatteTransformer3DModel built with diffusers' own defaults (GEGLU, no attention bias, layer_norm) is not
    the Latte architecture: `latte import` says which settings differ, in one line."""
    from diffusers import LatteTransformer3DModel

    from latte.cli import main

    LatteTransformer3DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                            num_layers=1, cross_attention_dim=16, caption_channels=16, sample_size=8,
                            patch_size=2).save_pretrained(tmp_path / "transformer")
    assert main(["import", "--from", "diffusers", str(tmp_path), str(tmp_path / "ours")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("latte import: error: ") and "Traceback" not in err
    for setting in ("activation_fn = 'geglu'", "attention_bias = False", "norm_type = 'layer_norm'",
                    "norm_elementwise_affine = True", "norm_eps = 1e-05"):
        assert setting in err, setting
    assert not (tmp_path / "ours").exists()


def test_export_records_truncate_text_and_diffusers_matches_truncated_sampling(t2v_run, tmp_path):
    """Our runs sample with --truncate-text off (each prompt, the empty one included, attends to its own valid
    tokens); diffusers' LattePipeline cuts both to the prompt's valid length (mask_feature=True). The export
    records the run's setting; diffusers gives the run's video sampled with truncate_text on, and with guidance
    > 1 the run's default differs (which docs/sampling.md says)."""
    from diffusers import LattePipeline as DiffusersLattePipeline

    from latte.cli import main

    out = tmp_path / "export"
    assert main(["export", "--to", "diffusers", str(t2v_run / "run"), str(out)]) == 0
    record = json.loads((out / "latte_export.json").read_text())
    assert record["truncate_text"] is False and "--truncate-text on" in record["note"]
    assert record["input_size"] == T2V["input_size"]
    theirs = DiffusersLattePipeline.from_pretrained(str(out))
    theirs.set_progress_bar_config(disable=True)
    video = theirs("a red square", generator=torch.Generator().manual_seed(7), num_inference_steps=3,
                   guidance_scale=4.0, video_length=4, height=16, width=16, negative_prompt="", output_type="pt",
                   clean_caption=False).frames
    run_pipe = LattePipeline.from_run(t2v_run / "run")
    results = {}
    for truncate in (False, True):
        run_pipe.truncate_text = truncate
        mine = run_pipe(prompts=["a red square"], seed=7, sampler="ddim-diffusers", steps=3, cfg_scale=4.0,
                        frames=4, height=16, width=16, output_type="tensor", progress=False).videos
        results[truncate] = (mine / 2 + 0.5).clamp(0, 1).transpose(1, 2)
    torch.testing.assert_close(results[True], video, atol=1e-4, rtol=0)
    assert (results[False] - video).abs().max() > 1e-3  # the setting matters with guidance > 1
