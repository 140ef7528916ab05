"""`latte cascade` end to end on tiny stages (the official tiny U-Nets of the fixtures, tiny VAEs and CLIP
text encoders saved in the official pretrained_models/ layout): the four official stage options, chunked VSR
with and without overlap, --input, --official, sidecars, resume; and the errors for missing or wrong weights."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from latte.cli import main
from latte.data.video_io import read_all_frames, write_mp4
from latte.encoders import MissingWeightsError
from latte.sampling.cascade import CascadePipeline, StageSettings, check_lavie_dir, frame_chunks, load_lavie_stage

from helpers import LAVIE_FIXTURES, REFERENCE, WORDS


def run_cli(*argv):
    return main(["cascade", "--no-progress", *map(str, argv)])


FAST = ["--frames", 4, "--height", 16, "--width", 16, "--base-steps", 2, "--interp-steps", 2, "--vsr-steps", 2]


@pytest.mark.parametrize("stages, frames, size, fps", [
    ("base", 4, 16, 8), ("base,interp", 13, 16, 24), ("base,vsr", 4, 64, 8), ("base,interp,vsr", 13, 64, 24)])
def test_the_four_official_options(lavie_dir, tmp_path, stages, frames, size, fps):
    out = tmp_path / "out"
    assert run_cli("--lavie-dir", lavie_dir, "--stages", stages, "--prompt", "a red square", "--out", out,
                   "--save-intermediate", "--vsr-chunk", 8, *FAST) == 0
    video = read_all_frames(out / "00000.mp4")
    assert video.shape == (frames, size, size, 3)
    side = json.loads((out / "00000.json").read_text())
    assert [s["stage"] for s in side["stages"]] == stages.split(",") and side["fps"] == fps
    first = side["stages"][0]
    assert first["sampler"] == "ddpm-diffusers" and first["cfg_scale"] == 7.5 and first["steps"] == 2
    assert first["seed"] == 0 and first["model"]["unet"].endswith("lavie_base.pt")
    for s in side["stages"][1:]:
        assert s["prompt"] == "a red square"  # default: the user's prompt for every stage
        if s["stage"] == "interp":
            assert (s["sampler"], s["cfg_scale"], s["negative_prompt"]) == ("ddim", 4.0, "None")
        else:
            assert (s["sampler"], s["cfg_scale"], s["negative_prompt"], s["noise_level"]) == (
                "ddim-diffusers", 5.0, "blur, worst quality", 50)
    for s in stages.split(",")[:-1]:
        assert (out / side["intermediate"][s]).is_file()


def test_chunked_vsr_with_and_without_overlap_from_an_input_video(lavie_dir, tmp_path):
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 255, (13, 16, 16, 3), dtype=np.uint8)
    write_mp4(tmp_path / "a_blue_circle.mp4", clip, fps=24)
    pipe = CascadePipeline(vsr=load_lavie_stage(lavie_dir, "vsr"))
    fast = {"vsr": StageSettings(steps=2)}
    plain = pipe.run(input=tmp_path / "a_blue_circle.mp4", stages=["vsr"], settings=fast, vsr_chunk=4, seed=3,
                 progress=False)
    assert plain.video.shape == (13, 64, 64, 3) and plain.fps == 24
    assert plain.record["prompt"] == "a blue circle"  # the file name when no prompt is given
    assert plain.stages[0]["chunk"] == 4 and plain.stages[0]["overlap"] == 0
    blended = pipe.run("a blue circle", input=tmp_path / "a_blue_circle.mp4", stages=["vsr"], settings=fast,
                   vsr_chunk=4, vsr_overlap=2, seed=3, progress=False)
    assert blended.video.shape == plain.video.shape and blended.stages[0]["overlap"] == 2
    assert frame_chunks(13, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10), (8, 12), (10, 13)]
    # the first chunk is drawn first from the same generator, so its frames before the overlap agree
    np.testing.assert_array_equal(blended.video[:2], plain.video[:2])
    assert not np.array_equal(blended.video[4:], plain.video[4:])
    # the CLI route: interp + vsr from --input with overlap
    out = tmp_path / "cli"
    assert run_cli("--lavie-dir", lavie_dir, "--stages", "interp,vsr", "--input", tmp_path / "a_blue_circle.mp4",
                   "--out", out, "--vsr-chunk", 8, "--vsr-overlap", 3, "--interp-steps", 2, "--vsr-steps", 2,
                   "--interp-factor", 2) == 0
    side = json.loads((out / "00000.json").read_text())
    assert side["stages"][0]["frames"] == 25 and side["stages"][1]["overlap"] == 3
    assert read_all_frames(out / "00000.mp4").shape == (25, 64, 64, 3)


def test_official_mode_prompts_and_resume(lavie_dir, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--lavie-dir", lavie_dir, "--stages", "base,interp,vsr", "--prompt", "a red square", "--prompt",
            "blue circle", "--out", out, "--official", *FAST]
    assert run_cli(*args) == 0
    side = json.loads((out / "00001.json").read_text())
    assert side["official"] and side["seed"] == 1
    assert [s["prompt"] for s in side["stages"]] == ["blue circle", "blue_circle, 4k.", "blue_circle"]
    before = (out / "00000.mp4").stat().st_mtime_ns
    assert run_cli(*args) == 0  # everything present: nothing is made again
    assert (out / "00000.mp4").stat().st_mtime_ns == before
    assert "2/2 videos" in capsys.readouterr().out


def test_same_seed_same_video_and_per_stage_settings(lavie_dir, tmp_path):
    pipe = CascadePipeline(base=load_lavie_stage(lavie_dir, "base"), interp=load_lavie_stage(lavie_dir, "interp"))

    kw = dict(stages=["base", "interp"], frames=4, height=16, width=16, progress=False)
    s = {"base": StageSettings(steps=2), "interp": StageSettings(steps=2, cfg_scale=1.0, prompt="other")}
    a = pipe.run("a red square", seed=5, settings=s, **kw)
    b = pipe.run("a red square", seed=5, settings=s, **kw)
    np.testing.assert_array_equal(a.video, b.video)
    offloaded = CascadePipeline(base=pipe.stages["base"], interp=pipe.stages["interp"], offload=True)
    np.testing.assert_array_equal(offloaded.run("a red square", seed=5, settings=s, **kw).video, a.video)
    assert offloaded.run("a red square", seed=5, settings=s, **kw).record["offload"] is True
    assert a.stages[1]["prompt"] == "other" and a.stages[1]["cfg_scale"] == 1.0
    with pytest.raises(ValueError, match="no vsr stage"):
        pipe.run("x", stages=["base", "vsr"], **{k: v for k, v in kw.items() if k != "stages"})
    with pytest.raises(ValueError, match="order"):
        pipe.run("x", stages=["interp", "base"], progress=False)
    with pytest.raises(ValueError, match="--input"):
        pipe.run("x", stages=["interp"], progress=False)


def test_missing_or_wrong_weights_are_errors_naming_the_file(lavie_dir, tmp_path, capsys):
    broken = tmp_path / "pm"
    shutil.copytree(lavie_dir, broken)
    (broken / "lavie_vsr.pt").unlink()
    with pytest.raises(MissingWeightsError, match=r"lavie_vsr.pt: not found \(expected the LaVie vsr U-Net"):
        check_lavie_dir(broken)
    check_lavie_dir(broken, ["base", "interp"])  # enough for the stages asked for
    assert run_cli("--lavie-dir", broken, "--stages", "base,vsr", "--prompt", "a", "--out", tmp_path / "o") == 2
    assert "lavie_vsr.pt: not found" in capsys.readouterr().err
    shutil.rmtree(broken / "stable-diffusion-v1-4" / "tokenizer")
    with pytest.raises(MissingWeightsError, match=r"stable-diffusion-v1-4/tokenizer: folder not found \(expected "
                                                  r"the CLIP tokenizer"):
        check_lavie_dir(broken, ["base"])
    with pytest.raises(MissingWeightsError, match="folder not found"):
        check_lavie_dir(tmp_path / "nowhere")
    # a U-Net of the wrong stage, and a text encoder of the wrong width
    wrong = tmp_path / "pm2"
    shutil.copytree(lavie_dir, wrong)
    shutil.copy(wrong / "lavie_interpolation.pt", wrong / "lavie_base.pt")
    with pytest.raises(ValueError, match=r"lavie_base.pt: not a LaVie base U-Net"):
        load_lavie_stage(wrong, "base")
    shutil.rmtree(wrong / "stable-diffusion-x4-upscaler" / "text_encoder")
    from transformers import CLIPTextConfig, CLIPTextModel

    CLIPTextModel(CLIPTextConfig(vocab_size=len(WORDS), hidden_size=24, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2)).save_pretrained(wrong / "stable-diffusion-x4-upscaler" /
                                                                        "text_encoder")
    with pytest.raises(ValueError, match=r"text_encoder/config.json: hidden_size is 24, expected 16"):
        load_lavie_stage(wrong, "vsr")


def test_a_latte_text_to_video_base_followed_by_lavie_stages(lavie_dir):
    from latte.encoders import build_text_encoder
    from latte.encoders.autoencoders import IdentityAutoencoder
    from latte.models import Latte, LatteConfig
    from latte.sampling import LattePipeline
    from latte.sampling.cascade import LatteBaseStage

    torch.manual_seed(0)
    model = Latte(LatteConfig(input_size=8, num_frames=4, in_channels=3, hidden_size=32, depth=2, num_heads=2,
                              conditioning="text", text_dim=16))
    text = build_text_encoder({"kind": "clip", "path": str(lavie_dir / "stable-diffusion-v1-4")})
    latte = LattePipeline(model, IdentityAutoencoder(), text)
    pipe = CascadePipeline(base=LatteBaseStage(latte), interp=load_lavie_stage(lavie_dir, "interp"),
                           vsr=load_lavie_stage(lavie_dir, "vsr"))
    steps = {s: StageSettings(steps=2) for s in ("base", "interp", "vsr")}
    out = pipe.run("a red square", seed=1, settings=steps, progress=False)
    assert out.video.shape == (13, 32, 32, 3) and out.fps == 24
    base = out.stages[0]
    assert base["model"]["model"] == "latte" and base["sampler"] == "ddim-diffusers"  # Latte's own default
    assert base["cfg_scale"] == 7.5 and base["frames"] == 4
    with pytest.raises(ValueError, match="negative prompt"):
        pipe.run("a red square", stages=["base"], settings={"base": StageSettings(steps=1, negative_prompt="blur")},
             progress=False)


def test_batch_interface_and_the_demo_over_a_real_tiny_cascade(lavie_dir, tmp_path):
    from latte.apps.demo import CascadeGenerator, validate_request

    pipe = CascadePipeline.load(lavie_dir)
    assert pipe.optional_stages == ["interp", "vsr"] and pipe.defaults.sampler == "ddpm-diffusers"
    out = pipe(["a red square", "blue circle"], seed=2, steps=2, stages=["interp"], frames=4, height=16, width=16,
               progress=False)
    assert out.videos.shape == (2, 13, 16, 16, 3)
    assert [r["index"] for r in out.records] == [0, 1] and out.records[1]["seed"] == 3
    assert [s["stage"] for s in out.records[0]["stages"]] == ["base", "interp"] and out.records[0]["fps"] == 24
    gen = CascadeGenerator(pipe)
    opts = gen.options()
    assert [s.name for s in opts.stages] == ["interp", "vsr"] and opts.guidance == 7.5
    req = validate_request({"prompt": "a red square", "seed": 1, "steps": 2, "stages": ["vsr"],
                            "negative_prompt": "blue"}, opts)
    seen = []
    pipe.stages["base"].default_size = (4, 16, 16)  # keep the demo run tiny
    result = gen.generate(req, lambda stage, done, total: seen.append((stage, done, total)))
    assert result.videos.shape == (1, 4, 64, 64, 3) and result.records[0]["stages"][0]["negative_prompt"] == "blue"
    assert seen == [("base", 1, 2), ("base", 2, 2), ("vsr", 1, 2), ("vsr", 2, 2)]


def test_our_own_unet_folder_replaces_a_released_stage(lavie_dir, tmp_path):
    from latte.interop.lavie import load_lavie

    m = torch.load(os.path.join(REFERENCE, LAVIE_FIXTURES["interp"]), weights_only=True)
    load_lavie(m["state_dict"], "interp", m["config"]).model.save_pretrained(tmp_path / "my_interp")
    stage = load_lavie_stage(lavie_dir, "interp", unet=tmp_path / "my_interp")
    released = load_lavie_stage(lavie_dir, "interp")
    x = torch.randn(1, 8, 3, 4, 4)
    t, text = torch.tensor([500]), torch.randn(1, 5, 16)
    torch.testing.assert_close(stage.unet(x, t, text), released.unet(x, t, text))
    with pytest.raises(ValueError, match=r"my_interp: not a LaVie base U-Net.*in_channels 8"):
        load_lavie_stage(lavie_dir, "base", unet=tmp_path / "my_interp")
