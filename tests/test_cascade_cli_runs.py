"""`latte cascade` with stages trained by `latte train` on LaVie configs (--base-run / --interp-run / --vsr-run):
tiny unconditional stages trained for two steps, then run through the CLI from an input video and from a prompt;
the sidecars name each run's checkpoint and the official per-stage defaults still apply; wrong runs and
conflicting flags are errors naming them."""
import json
import shutil
from pathlib import Path

import pytest

from latte.cli import main
from latte.config import from_dict
from latte.data.video_io import read_all_frames
from latte.training.tasks.lavie import LavieRunConfig, train_lavie

from helpers import tiny_lavie_config, write_run, write_video


def run_cli(*argv):
    return main(["cascade", "--no-progress", *map(str, argv)])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{stage: (run directory, its last checkpoint)}: base 4x8x8, interp x2 on 8x8, vsr 8 -> 16 px (max noise
    level 20), each trained for two steps with EMA."""
    root = tmp_path_factory.mktemp("lavie_runs")
    trained = {}
    for stage in ("base", "interp", "vsr"):
        config = from_dict(LavieRunConfig, tiny_lavie_config(stage, root / stage, ckpt_every=2))
        trained[stage] = (root / stage, train_lavie(config, device="cpu", progress=False).last_checkpoint)
    return trained


def same_path(a, b) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def test_trained_interp_and_vsr_stages_interpolate_and_upscale_an_input_video(runs, tmp_path):
    clip = write_video(tmp_path / "a_red_circle.mp4", 3, 8, 8, fps=8)
    out = tmp_path / "out"
    # the interp stage from its run directory (latest checkpoint), the vsr stage from a checkpoint directory
    assert run_cli("--stages", "interp,vsr", "--input", clip, "--out", out, "--interp-run", runs["interp"][0],
                   "--vsr-run", runs["vsr"][1], "--interp-factor", 2, "--vsr-chunk", 4, "--interp-steps", 2,
                   "--vsr-steps", 2, "--save-intermediate") == 0
    assert read_all_frames(out / "00000.mp4").shape == (5, 16, 16, 3)  # 3 -> 2(3-1)+1 frames, x2 in space
    assert read_all_frames(out / "00000.interp.mp4").shape == (5, 8, 8, 3)
    side = json.loads((out / "00000.json").read_text())
    interp, vsr = side["stages"]
    assert side["prompt"] == "a red circle" and side["fps"] == 24
    for record, stage in ((interp, "interp"), (vsr, "vsr")):
        assert record["model"]["model"] == f"lavie-{stage}" and record["model"]["weights"] == "ema"
        assert same_path(record["model"]["checkpoint"], runs[stage][1])  # the run's checkpoint, in the sidecar
    assert vsr["model"]["prediction_type"] == "v_prediction"
    # the official per-stage defaults apply to trained stages too; --{stage}-steps overrides
    assert (interp["sampler"], interp["cfg_scale"], interp["negative_prompt"], interp["steps"]) == (
        "ddim", 4.0, "None", 2)
    assert (vsr["sampler"], vsr["cfg_scale"], vsr["negative_prompt"], vsr["steps"]) == (
        "ddim-diffusers", 5.0, "blur, worst quality", 2)
    assert vsr["noise_level"] == 20 and vsr["chunk"] == 4  # min(50, the run's lavie.max_noise_level)


def test_a_whole_cascade_of_trained_stages_from_a_prompt_with_the_raw_weights(runs, tmp_path):
    out = tmp_path / "out"
    assert run_cli("--prompt", "a blue square", "--out", out, "--base-run", runs["base"][0], "--interp-run",
                   runs["interp"][0], "--vsr-run", runs["vsr"][0], "--run-weights", "model", "--interp-factor", 2,
                   "--vsr-chunk", 4, "--vsr-noise-level", 10, "--base-steps", 2, "--interp-steps", 2,
                   "--vsr-steps", 2, "--base-cfg-scale", 1) == 0
    assert read_all_frames(out / "00000.mp4").shape == (7, 16, 16, 3)
    side = json.loads((out / "00000.json").read_text())
    base = side["stages"][0]
    assert (base["frames"], base["height"], base["width"]) == (4, 8, 8)  # the base run's clips by default
    assert (base["sampler"], base["cfg_scale"], base["negative_prompt"]) == ("ddpm-diffusers", 1.0, "")
    assert side["stages"][2]["noise_level"] == 10
    for record in side["stages"]:
        assert record["model"]["weights"] == "model"
        assert same_path(record["model"]["checkpoint"], runs[record["stage"]][1])


def test_wrong_runs_and_conflicting_flags_are_errors_naming_them(runs, tmp_path, capsys):
    clip = write_video(tmp_path / "clip.mp4", 3, 8, 8)
    out = tmp_path / "out"

    def error(*argv) -> str:
        assert run_cli("--out", out, *argv) == 2
        return capsys.readouterr().err

    interp_run, vsr_run = runs["interp"][0], runs["vsr"][0]
    err = error("--stages", "vsr", "--input", clip, "--vsr-run", interp_run)
    assert f"--vsr-run {interp_run}: this run trained the interp stage (lavie.stage: interp in " in err
    assert "not vsr; pass it as --interp-run" in err
    err = error("--prompt", "a", "--stages", "base", "--base-run", runs["vsr"][1])
    assert f"--base-run {runs['vsr'][1]}: this run trained the vsr stage" in err
    err = error("--stages", "interp", "--input", clip, "--interp-run", interp_run, "--interp-unet", "my_unet")
    assert f"--interp-run {interp_run} and --interp-unet both give the interp stage" in err
    err = error("--prompt", "a", "--stages", "base", "--base-run", runs["base"][0], "--base-latte", "runs/t2v")
    assert f"--base-run {runs['base'][0]} and --base-latte both give the base stage" in err
    err = error("--stages", "interp", "--input", clip, "--interp-run", interp_run, "--vsr-run", vsr_run)
    assert f"--vsr-run {vsr_run}: the vsr stage is not in --stages interp" in err
    (tmp_path / "empty").mkdir()
    err = error("--stages", "interp", "--input", clip, "--interp-run", tmp_path / "empty")
    assert f"--interp-run {tmp_path / 'empty'}: not a LaVie training run (expected a run directory" in err
    latte_run = tmp_path / "latte_run"
    write_run(latte_run)
    err = error("--prompt", "a", "--stages", "base", "--base-run", latte_run)
    assert f"--base-run {latte_run}: not a LaVie stage run" in err and "is --base-latte" in err
    no_ema = tmp_path / "no_ema"
    shutil.copytree(runs["interp"][1], no_ema, ignore=shutil.ignore_patterns("ema"))
    err = error("--stages", "interp", "--input", clip, "--interp-run", no_ema)
    assert f"--interp-run {no_ema}: {no_ema} has no ema/ weights (pass --run-weights model)" in err
    err = error("--stages", "interp,vsr", "--input", clip, "--interp-run", interp_run)
    assert "the vsr stage needs --lavie-dir (the folder with the LaVie weights), or --vsr-run" in err
    assert not out.exists() or not any(out.iterdir())  # nothing was written
