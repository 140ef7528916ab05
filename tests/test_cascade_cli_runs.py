"""`latte cascade` with stages trained by `latte train` on LaVie configs (--base-run / --interp-run / --vsr-run):
tiny unconditional stages trained for two steps, then run through the CLI from an input video and from a prompt;
the sidecars name each run's checkpoint and the official per-stage defaults still apply; wrong runs and
conflicting flags are errors naming them. A frame-conditioned Latte base (--base-latte with --image / --extend)
makes image-to-video and extensions before these stages interpolate and upscale them."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latte.cli import main
from latte.config import from_dict
from latte.data.video_io import read_all_frames
from latte.encoders.autoencoders import IdentityAutoencoder
from latte.sampling import LattePipeline
from latte.sampling.cascade import CascadePipeline, LatteBaseStage, StageSettings, load_trained_stage
from latte.training.tasks.lavie import LavieRunConfig, train_lavie

from helpers import FakeTextEncoder, tiny_lavie_config, tiny_model, write_run, write_text_run, write_video


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


# ------------------------------------------------------------- given frames: a frame-conditioned Latte base stage
def fc_cascade(runs, frame_conditioning=True) -> CascadePipeline:
    """A tiny random-weight text-to-video Latte base (4 frames of 8x8 px, frame conditioning) + the trained
    interp (x2) and vsr (x2) stages."""
    latte = LattePipeline(tiny_model(conditioning="text", text_dim=16, frame_conditioning=frame_conditioning),
                          IdentityAutoencoder(), FakeTextEncoder())
    return CascadePipeline(base=LatteBaseStage(latte), interp=load_trained_stage(runs["interp"][0]),
                           vsr=load_trained_stage(runs["vsr"][0]))


FAST = {s: StageSettings(steps=2) for s in ("base", "interp", "vsr")}


def test_image_to_video_and_extension_happen_before_interpolation_and_super_resolution(runs):
    pipe = fc_cascade(runs)
    assert pipe.frame_conditioning
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    kw = dict(settings=FAST, interp_factor=2, vsr_chunk=4, noise_level=pipe.stages["vsr"].noise_level, seed=3,
              progress=False)
    out = pipe.run("a red square", image=image, **kw)
    base, interp, vsr = out.stages
    np.testing.assert_array_equal(base["video"][0], image)  # the sampler holds the given frame exactly
    assert base["video"].shape == (4, 8, 8, 3) and interp["frames"] == 7 and out.video.shape == (7, 16, 16, 3)
    assert base["given_frames"]["mode"] == "image" and base["given_frames"]["given_frames"] == 1
    assert base["given_frames"]["clip_frames"] == 4 and "source" not in base["given_frames"]  # an array
    plain = pipe.run("a red square", stages=["base"], **kw)
    assert "given_frames" not in plain.stages[0] and not np.array_equal(plain.stages[0]["video"][0], image)

    video = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    out = pipe.run("a red square", stages=["base", "interp"], extend=video, context_frames=1, frames=9, **kw)
    base = out.stages[0]
    np.testing.assert_array_equal(base["video"][:5], video)  # the extension starts with the given video
    assert base["frames"] == 9 and out.video.shape == (17, 8, 8, 3)  # 9 -> 2(9 - 1) + 1
    record = base["given_frames"]
    assert (record["mode"], record["given_frames"], record["context_frames"], record["clips"]) == ("extend", 5, 1, 2)
    batch = pipe(["a red square"], stages=[], extend=video, frames=9, steps=2, progress=False)  # batch interface
    assert batch.records[0]["stages"][0]["given_frames"]["mode"] == "extend"


def test_given_frames_without_a_frame_conditioned_latte_base_are_refused(runs):
    image = np.zeros((8, 8, 3), np.uint8)
    lavie = CascadePipeline(base=load_trained_stage(runs["base"][0]))
    assert not lavie.frame_conditioning
    with pytest.raises(ValueError, match="image: the base stage is a LaVie U-Net, which has no frame conditioning"):
        lavie.run("a", stages=["base"], image=image, settings=FAST, progress=False)
    with pytest.raises(ValueError, match="context_frames: the base stage is a LaVie U-Net"):
        lavie.run("a", stages=["base"], context_frames=2, settings=FAST, progress=False)
    plain = fc_cascade(runs, frame_conditioning=False)
    with pytest.raises(ValueError, match=r"extend: this model was not trained with given frames "
                                         r"\(model.frame_conditioning: false\)"):
        plain.run("a", stages=["base"], extend=np.zeros((3, 8, 8, 3), np.uint8), settings=FAST, progress=False)
    with pytest.raises(ValueError, match="image: given frames condition the base stage, and stages interp start"):
        fc_cascade(runs).run("a", stages=["interp"], input=np.zeros((3, 8, 8, 3), np.uint8), image=image,
                             progress=False)


def test_cli_extends_a_video_with_a_frame_conditioned_latte_base_then_interpolates(runs, tmp_path):
    base = write_text_run(tmp_path / "fc", frame_conditioning=True)  # 8 frames of 16x16 px
    clip = write_video(tmp_path / "clip.mp4", 5, 16, 16)
    out = tmp_path / "out"
    assert run_cli("--prompt", "a red circle moving left", "--out", out, "--stages", "base,interp", "--base-latte",
                   base, "--interp-run", runs["interp"][0], "--extend", clip, "--context-frames", 4,
                   "--interp-factor", 2, "--base-steps", 2, "--interp-steps", 2, "--save-intermediate") == 0
    assert read_all_frames(out / "00000.base.mp4").shape == (9, 16, 16, 3)  # 5 given + one more clip of 8 - 4
    assert read_all_frames(out / "00000.mp4").shape == (17, 16, 16, 3)
    base_record = json.loads((out / "00000.json").read_text())["stages"][0]
    assert base_record["frames"] == 9 and base_record["model"]["model"] == "latte"
    given = base_record["given_frames"]
    assert (given["mode"], given["source"], given["given_frames"], given["context_frames"]) == (
        "extend", str(clip), 5, 4)


def test_cli_given_frames_errors_name_the_flag(runs, tmp_path, capsys):
    image = tmp_path / "first.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    clip = write_video(tmp_path / "clip.mp4", 3, 16, 16)
    out = tmp_path / "out"

    def error(*argv) -> str:
        assert run_cli("--out", out, *argv) == 2
        return capsys.readouterr().err

    err = error("--prompt", "a", "--stages", "base", "--base-run", runs["base"][0], "--image", image)
    assert "--image: the base stage is a LaVie U-Net (--base-run), which has no frame conditioning" in err
    assert "model.frame_conditioning: true as the base (--base-latte RUN)" in err
    err = error("--prompt", "a", "--stages", "base", "--lavie-dir", tmp_path, "--context-frames", 2)
    assert "--context-frames: the base stage is a LaVie U-Net (--lavie-dir / --base-unet)" in err
    err = error("--stages", "interp", "--input", clip, "--interp-run", runs["interp"][0], "--extend", clip)
    assert "--extend: given frames condition the base stage, and stages interp start from the input video" in err
    fc = write_text_run(tmp_path / "fc", frame_conditioning=True)
    err = error("--prompt", "a", "--stages", "base", "--base-latte", fc, "--image", image, "--extend", clip)
    assert "--image and --extend: give one" in err
    err = error("--prompt", "a", "--stages", "base", "--base-latte", fc, "--image", clip)
    assert f"--image {clip}: cannot be read as an image" in err
    plain = write_text_run(tmp_path / "plain")
    err = error("--prompt", "a", "--stages", "base", "--base-latte", plain, "--image", image, "--base-steps", 1)
    assert "image: this model was not trained with given frames (model.frame_conditioning: false)" in err
    assert not out.exists() or not any(out.iterdir())  # nothing was written
