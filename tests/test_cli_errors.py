"""Every failure a user can cause ends in one line naming the file/key/value, a non-zero exit code and no
traceback (``--debug`` / ``LATTE_DEBUG=1`` shows it)."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from latte.cli import main
from latte.models import Latte, LatteConfig

from helpers import T2V, make_tiny_t5, make_tiny_vae, t2v_model, write_run

TINY = dict(input_size=8, num_frames=4, in_channels=4, hidden_size=32, depth=2, num_heads=2)


class Evil:
    """A pickle that would run a command when unpickled without weights_only."""

    def __reduce__(self):
        return (os.system, ("echo PWNED",))


def run_cli(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()  # drop what building the fixtures printed
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def assert_clean_error(code: int, err: str, command: str, *names) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("WARNING", "INFO"))]
    assert len(lines) == 1 and lines[0].startswith(f"latte {command}: error: "), err
    for name in names:
        assert str(name) in lines[0], (name, err)


def corrupt_files(tmp_path):
    """A truncated safetensors, garbage bytes, a hostile pickle, a pickle that is not a state dict."""
    good = tmp_path / "good.safetensors"
    save_file({"w": torch.zeros(64)}, str(good))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:40])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    hostile = tmp_path / "hostile.pt"
    torch.save({"ema": Evil()}, hostile)
    listed = tmp_path / "list.pt"
    torch.save([1, 2, 3], listed)
    return {"truncated": truncated, "garbage": garbage, "hostile": hostile, "list": listed}


# ---------------------------------------------------------------------------------------------- the CLI frame


def test_subprocess_one_line_no_traceback_and_debug_shows_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("LATTE_DEBUG", None)
    cmd = [sys.executable, "-m", "latte", "data", "scan", str(bad)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith(f"latte data scan: error: {bad}: not valid YAML (line 2"), out.stderr
    debug = subprocess.run(cmd + ["--debug"], capture_output=True, text=True, env=env, timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "InputError" in debug.stderr


def test_debug_env_variable_reraises(tmp_path, monkeypatch):
    from latte.io import InputError

    bad = tmp_path / "bad.yaml"
    bad.write_text("- not a mapping\n")
    monkeypatch.setenv("LATTE_DEBUG", "1")
    with pytest.raises(InputError, match="mapping"):
        main(["data", "scan", str(bad)])


def test_bugs_keep_their_traceback(monkeypatch):
    """A plain ValueError of a command that did not opt in (user_value_errors) is a bug: it propagates."""
    import argparse

    from latte import cli

    def broken(args):
        raise ValueError("an internal bug")

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=broken)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    with pytest.raises(ValueError, match="internal bug"):
        cli.main([])


# ------------------------------------------------------------------------------------------------- weights


@pytest.mark.parametrize("kind", ["truncated", "garbage", "hostile", "list"])
def test_sample_checkpoint_bad_weights(tmp_path, capsys, kind):
    bad = corrupt_files(tmp_path)[kind]
    target = bad.with_name("ffs" + bad.suffix)  # an official file name (kind guessed from it)
    bad.rename(target)
    code, err = run_cli(capsys, "sample", "--checkpoint", target, "--out", tmp_path / "out", "--no-progress")
    assert_clean_error(code, err, "sample", target)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    if kind == "hostile":
        assert "refused to unpickle" in err and "weights_only=False" not in err


def test_sample_model_folder_with_corrupt_or_missing_weights(tmp_path, capsys):
    folder = tmp_path / "model"
    Latte(LatteConfig(**TINY)).save_pretrained(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    code, err = run_cli(capsys, "sample", "--checkpoint", folder, "--out", tmp_path / "out")
    assert_clean_error(code, err, "sample", weights, "safetensors")
    weights.unlink()
    save_file({"other": torch.zeros(1)}, str(weights))
    code, err = run_cli(capsys, "sample", "--checkpoint", folder, "--out", tmp_path / "out")
    assert_clean_error(code, err, "sample", weights, "missing")
    (folder / "config.json").write_text("{not json")
    code, err = run_cli(capsys, "sample", "--checkpoint", folder, "--out", tmp_path / "out")
    assert_clean_error(code, err, "sample", folder / "config.json", "JSON")
    code, err = run_cli(capsys, "sample", "--checkpoint", tmp_path / "absent.pt", "--out", tmp_path / "out")
    assert_clean_error(code, err, "sample", tmp_path / "absent.pt")


def _model_folder(tmp_path, **cfg):
    folder = tmp_path / "model"
    Latte(LatteConfig(**{**TINY, **cfg})).save_pretrained(folder)
    return folder


def test_sample_vae_bad_weights(tmp_path, capsys):
    folder = _model_folder(tmp_path)
    vae = tmp_path / "vae"
    vae.mkdir()
    (vae / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", "latent_channels": 4}))
    weights = vae / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage" * 4)
    code, err = run_cli(capsys, "sample", "--checkpoint", folder, "--vae", vae, "--out", tmp_path / "out")
    assert_clean_error(code, err, "sample", weights)
    code, err = run_cli(capsys, "sample", "--checkpoint", folder, "--vae", tmp_path / "nope",
                        "--out", tmp_path / "out")
    assert_clean_error(code, err, "sample", tmp_path / "nope")
    # a single-file VAE that reads fine but has no config: the hint names the folder layout, not a corrupt file
    single = tmp_path / "vae.safetensors"
    save_file({"encoder.conv_in.weight": torch.zeros(1)}, str(single))
    code, err = run_cli(capsys, "sample", "--checkpoint", folder, "--vae", single, "--out", tmp_path / "out")
    assert_clean_error(code, err, "sample", single, "single weights file", "single_file_config")
    # a corrupt single file is named as corrupt (the old hint blamed a missing config)
    single.write_bytes(b"garbage" * 5)
    code, err = run_cli(capsys, "sample", "--checkpoint", folder, "--vae", single, "--out", tmp_path / "out")
    assert_clean_error(code, err, "sample", single, "not a valid safetensors file")
    assert "single_file_config" not in err
    hostile = tmp_path / "vae.ckpt"
    torch.save({"state_dict": Evil()}, hostile)
    code, err = run_cli(capsys, "sample", "--checkpoint", folder, "--vae", hostile, "--out", tmp_path / "out")
    assert_clean_error(code, err, "sample", hostile, "refused to unpickle")


def test_sample_text_encoder_bad_weights(tmp_path, capsys):
    folder = tmp_path / "model"
    t2v_model().save_pretrained(folder)
    vae = make_tiny_vae(tmp_path / "vae")
    t5 = make_tiny_t5(tmp_path / "t5")
    assert T2V["text_dim"] == 16
    weights = t5 / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])
    argv = ["sample", "--checkpoint", folder, "--vae", vae, "--prompt", "a red square", "--out", tmp_path / "out"]
    code, err = run_cli(capsys, *argv, "--text-encoder", t5)
    assert_clean_error(code, err, "sample", weights)
    weights.unlink()
    torch.save({"shared.weight": Evil()}, t5 / "pytorch_model.bin")
    code, err = run_cli(capsys, *argv, "--text-encoder", t5)
    assert_clean_error(code, err, "sample", t5 / "pytorch_model.bin", "refused to unpickle")
    code, err = run_cli(capsys, *argv, "--text-encoder", tmp_path / "absent")
    assert_clean_error(code, err, "sample", tmp_path / "absent")


def test_autoencoder_and_text_encoder_path_bad_weights(tmp_path):
    from latte.encoders import AutoencoderConfig, TextEncoderConfig, build_autoencoder, build_text_encoder
    from latte.encoders.loading import MissingWeightsError
    from latte.io import WeightsError

    vae = tmp_path / "vae"
    vae.mkdir()
    (vae / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    (vae / "diffusion_pytorch_model.bin").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match=f"{vae / 'diffusion_pytorch_model.bin'}: not a readable torch"):
        build_autoencoder(AutoencoderConfig(kind="sd_vae", path=str(vae)))
    te = tmp_path / "te"
    te.mkdir()
    (te / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (te / "tokenizer.json").write_text("{}")
    (te / "model.safetensors").write_bytes(b"\x00" * 3)
    with pytest.raises(WeightsError, match=f"{te / 'model.safetensors'}"):
        build_text_encoder(TextEncoderConfig(kind="minilm", path=str(te)))
    with pytest.raises(MissingWeightsError, match=str(tmp_path / "missing")):
        build_autoencoder(AutoencoderConfig(kind="sd_vae", path=str(tmp_path / "missing")))


@pytest.mark.parametrize("kind", ["truncated", "hostile", "list"])
def test_import_bad_weights(tmp_path, capsys, kind):
    src = tmp_path / "diffusers" / "transformer"
    src.mkdir(parents=True)
    (src / "config.json").write_text(json.dumps({"_class_name": "LatteTransformer3DModel", "num_layers": 1,
                                                 "num_attention_heads": 2, "attention_head_dim": 8,
                                                 "cross_attention_dim": 16, "caption_channels": 16,
                                                 "sample_size": 8}))
    bad = corrupt_files(tmp_path)[kind]
    name = "diffusion_pytorch_model.safetensors" if bad.suffix == ".safetensors" else "diffusion_pytorch_model.bin"
    shutil.copy(bad, src / name)
    code, err = run_cli(capsys, "import", "--from", "diffusers", src.parent, tmp_path / "out")
    assert_clean_error(code, err, "import", src / name)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["truncated", "garbage", "hostile", "list"])
def test_eval_detector_bad_weights(tmp_path, capsys, kind):
    from latte.data.video_io import write_mp4

    import numpy as np

    fake = tmp_path / "fake"
    fake.mkdir()
    write_mp4(fake / "a.mp4", np.zeros((4, 16, 16, 3), np.uint8), fps=4)
    bad = corrupt_files(tmp_path)[kind]
    code, err = run_cli(capsys, "eval", "--real", fake, "--fake", fake, "--i3d-path", bad, "--num-clips", 1,
                        "--frames", 4, "--out", tmp_path / "eval", "--no-progress")
    assert_clean_error(code, err, "eval", bad)
    code, err = run_cli(capsys, "eval", "--real", fake, "--fake", fake, "--i3d-path", tmp_path / "none.pt",
                        "--out", tmp_path / "eval", "--no-progress")
    assert_clean_error(code, err, "eval", tmp_path / "none.pt")


# ---------------------------------------------------------------------------------------------------- YAML


@pytest.mark.parametrize("text,expected", [("data: [unclosed\n", "not valid YAML (line"),
                                           ("- a\n- b\n", "must be a YAML mapping"),
                                           ("\xff\xfe", None)])
@pytest.mark.parametrize("command", ["data scan", "cache", "train"])
def test_every_config_command_reports_broken_yaml(tmp_path, capsys, command, text, expected):
    config = tmp_path / "config.yaml"
    if expected is None:
        config.write_bytes(b"\xff\xfe\x00garbage")
        expected = "not a text file"
    else:
        config.write_text(text)
    code, err = run_cli(capsys, *command.split(), config)
    assert_clean_error(code, err, command, config, expected)
    code, err = run_cli(capsys, *command.split(), tmp_path / "absent.yaml")
    assert_clean_error(code, err, command, tmp_path / "absent.yaml", "not found")


def test_sample_run_with_broken_run_config(tmp_path, capsys):

    ckpt = write_run(tmp_path / "run")
    (ckpt / "run_config.yaml").write_text("model: {hidden_size: [\n")
    code, err = run_cli(capsys, "sample", "--checkpoint", tmp_path / "run", "--class", "0", "--out",
                        tmp_path / "out")
    assert_clean_error(code, err, "sample", ckpt / "run_config.yaml", "not valid YAML")
    (ckpt / "run_config.yaml").write_text("- just\n- a list\n")
    code, err = run_cli(capsys, "sample", "--checkpoint", tmp_path / "run", "--class", "0", "--out",
                        tmp_path / "out")
    assert_clean_error(code, err, "sample", ckpt / "run_config.yaml", "mapping")


def test_eval_classifier_json_broken(tmp_path, capsys):
    folder = tmp_path / "clf"
    folder.mkdir()
    (folder / "classifier.json").write_text("{broken")
    save_file({"w": torch.zeros(1)}, str(folder / "classifier.safetensors"))
    fake = tmp_path / "fake"
    fake.mkdir()
    code, err = run_cli(capsys, "eval", "--real", "synthetic", "--fake", fake, "--metrics", "synthetic-fvd",
                        "--classifier", folder, "--out", tmp_path / "eval", "--no-progress")
    assert_clean_error(code, err, "eval", folder / "classifier.json", "JSON")


# --------------------------------------------------------------------------------------------------- outputs


def test_sampling_outputs_disk_full_and_unwritable_folder(tmp_path, capsys, monkeypatch):
    import errno

    import latte.data.video_io as video_io
    from latte.encoders.autoencoders import IdentityAutoencoder
    from latte.io import OutputError
    from latte.sampling import LattePipeline, save_videos

    model = Latte(LatteConfig(**{**TINY, "in_channels": 3})).eval()
    out = LattePipeline(model, IdentityAutoencoder())(num_videos=1, steps=2, sampler="ddim", progress=False)

    def full(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(video_io, "write_mp4", full)
    with pytest.raises(OutputError, match=f"no space left on the device writing {tmp_path / 'videos' / '00000.mp4'}"):
        save_videos(out, tmp_path / "videos", formats=("mp4",))
    assert not (tmp_path / "videos" / "00000.json").exists()  # not marked finished: a rerun remakes it
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=f"cannot write to {blocker / 'videos'}"):
        save_videos(out, blocker / "videos", formats=("mp4",))
    # the CLI says so before loading the model
    folder = _model_folder(tmp_path)
    code, err = run_cli(capsys, "sample", "--checkpoint", folder, "--out", blocker / "videos")
    assert_clean_error(code, err, "sample", f"cannot write to {blocker / 'videos'}")


def test_sample_no_progress(tmp_path, capsys):

    write_run(tmp_path / "run")
    argv = ["sample", "--checkpoint", tmp_path / "run", "--class", "bird", "--steps", 2, "--sampler", "ddim",
            "--format", "gif"]
    assert main([str(a) for a in argv + ["--out", tmp_path / "quiet", "--no-progress"]]) == 0
    quiet = capsys.readouterr()
    assert "%|" not in quiet.err and "1/1 videos" in quiet.out
    assert main([str(a) for a in argv + ["--out", tmp_path / "loud"]]) == 0
    assert "%|" in capsys.readouterr().err  # the default shows bars (so the check above can fail)
