"""Frame conditioning: clean given frames marked by a mask (model, loss, sampler), image-to-video and extension."""
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from latte.cli import main
from latte.diffusion.gaussian import GaussianDiffusion, beta_schedule
from latte.encoders.autoencoders import IdentityAutoencoder
from latte.io import load_yaml_mapping
from latte.models import Latte, LatteConfig
from latte.sampling import LattePipeline
from latte.sampling.given_frames import count_clips, extend_clips
from latte.sampling.samplers import sample_loop
from latte.training import train
from latte.training.init_from import init_model_from
from latte.training.randomness import given_frame_masks
from helpers import TINY_RGB_MODEL, build, tiny_config, tiny_dataset, tiny_model, write_run

KW = dict(classes=[1, 2], sampler="ddim", steps=3, cfg_scale=2.0, progress=False)


def fc_model(seed=0):
    """A tiny frame-conditioned class model (4 frames, 8x8 RGB latents) with a non-zero frame embedder."""
    return tiny_model(seed, conditioning="class", num_classes=3, frame_conditioning=True)


@pytest.fixture(scope="module")
def pipe():
    return LattePipeline(fc_model(), IdentityAutoencoder())


def test_off_by_default_with_unchanged_keys_and_old_checkpoints_load_unchanged(tmp_path):
    old = tiny_model(0, conditioning="class", num_classes=3)
    assert LatteConfig().frame_conditioning is False
    assert not any("frame_embedder" in k for k in old.state_dict())
    old.save_pretrained(tmp_path / "old")
    again = Latte.from_pretrained(tmp_path / "old")  # config without the key: loads strictly, same function
    x, t, y = torch.randn(2, 3, 4, 8, 8), torch.tensor([10, 900]), torch.tensor([0, 2])
    assert torch.equal(again(x, t, y=y), old(x, t, y=y))
    with pytest.raises(ValueError, match="frame_mask given, but this model has no frame conditioning"):
        old(x, t, y=y, frame_mask=torch.zeros(2, 4, dtype=torch.bool))


def test_a_checkpoint_without_it_fine_tunes_into_it_starting_from_the_same_function(tmp_path):
    old = tiny_model(0, conditioning="class", num_classes=3)
    old.save_pretrained(tmp_path / "old")
    new = Latte(LatteConfig(**TINY_RGB_MODEL, conditioning="class", num_classes=3, frame_conditioning=True)).eval()
    report = init_model_from(new, tmp_path / "old")
    assert sorted(report.fresh) == ["frame_embedder.proj.bias", "frame_embedder.proj.weight"]
    x, t, y = torch.randn(2, 3, 4, 8, 8), torch.tensor([10, 900]), torch.tensor([0, 2])
    mask = torch.tensor([[True, False, False, False], [True, True, False, False]])
    assert torch.equal(new(x, t, y=y, frame_mask=mask), old(x, t, y=y))  # zero-initialised extra input
    # ... and the mask does reach the output once the embedder has weights (gradient flows into it)
    new(x, t, y=y, frame_mask=mask).square().sum().backward()
    assert new.frame_embedder.proj.weight.grad.abs().sum() > 0


def test_mask_none_equals_all_false_and_a_given_frame_changes_the_output():
    model = fc_model()
    x, t, y = torch.randn(1, 3, 4, 8, 8), torch.tensor([500]), torch.tensor([1])
    none = torch.zeros(1, 4, dtype=torch.bool)
    assert torch.equal(model(x, t, y=y), model(x, t, y=y, frame_mask=none))
    assert not torch.allclose(model(x, t, y=y, frame_mask=torch.tensor([[True, False, False, False]])),
                              model(x, t, y=y))
    with pytest.raises(ValueError, match=r"frame_mask: expected \(B, F\)"):
        model(x, t, y=y, frame_mask=torch.zeros(1, 3, dtype=torch.bool))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm-solver", "euler"])
def test_given_frames_equal_the_given_latents_through_sampling(sampler):
    model = fc_model()
    given = torch.randn(2, 3, 4, 8, 8)
    mask = torch.tensor([[True, False, False, False], [False, False, True, True]])
    seen = []

    def model_fn(x, t):
        seen.append(x.clone())
        return model(x, t, y=torch.tensor([0, 1]), frame_mask=mask)

    noise = torch.randn(2, 3, 4, 8, 8)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    out = sample_loop(model_fn, noise, sampler, 4, beta_schedule("linear", 1000), True, gens, given=(given, mask))
    m = mask[:, None, :, None, None].expand_as(given)
    for x in seen:  # every model input holds them exactly ...
        assert torch.equal(x[m], given[m])
    assert torch.equal(out[m], given[m])  # ... and so does the result
    assert not torch.allclose(out[~m], given[~m])


def test_loss_covers_the_generated_frames_only_and_the_model_sees_them_clean():
    diffusion = GaussianDiffusion(beta_schedule("linear", 1000), learn_sigma=True)
    x0, noise = torch.randn(2, 3, 4, 8, 8), torch.randn(2, 3, 4, 8, 8)
    t = torch.tensor([300, 700])
    mask = torch.tensor([[True, True, False, False], [False, False, False, True]])
    inputs = []

    def model(x, t, bump=0.0):
        inputs.append(x)
        out = torch.cat([torch.zeros_like(x), torch.zeros_like(x)], dim=1)
        out[:, :, :] += bump * mask[:, None, :, None, None]  # change only the given frames' outputs
        return out

    a = diffusion.training_losses(model, x0, t, noise=noise, given_mask=mask)
    b = diffusion.training_losses(model, x0, t, model_kwargs={"bump": 5.0}, noise=noise, given_mask=mask)
    assert torch.equal(a["loss"], b["loss"])
    m = mask[:, None, :, None, None].expand_as(x0)
    assert torch.equal(inputs[0][m], x0[m])
    plain = diffusion.training_losses(model, x0, t, noise=noise)
    assert not torch.allclose(plain["mse"], a["mse"])


def test_training_masks_are_keyed_per_sample_and_leave_a_frame_to_generate():
    masks = given_frame_masks(list(range(200)), 7, 3, 8, ["none", "first", "first_k", "last_k"], 4, "cpu")
    assert torch.equal(masks[:50], given_frame_masks(list(range(50)), 7, 3, 8,
                                                     ["none", "first", "first_k", "last_k"], 4, "cpu"))
    counts = masks.sum(1)
    assert counts.max() <= 4 and (counts == 0).any() and (counts == 1).any() and (counts >= 2).any()
    starts = masks[:, 0] & (counts > 0)
    ends = masks[:, -1] & ~masks[:, 0]
    assert starts.any() and ends.any() and bool((starts | ends | (counts == 0)).all())
    only_first = given_frame_masks(list(range(20)), 0, 0, 4, ["first"], 4, "cpu")
    assert only_first[:, 0].all() and not only_first[:, 1:].any()
    two = given_frame_masks(list(range(20)), 0, 0, 2, ["first_k"], 8, "cpu")  # k is capped at frames - 1
    assert two[:, 0].all() and not two[:, 1].any()


def test_frame_conditioned_training_runs_and_saves_the_new_weights(tmp_path):
    data = tiny_config(tmp_path / "run", max_steps=3, ckpt_every=3)
    data["model"]["frame_conditioning"] = True
    data["train"]["given_frames"] = {"modes": ["first", "last_k"], "max_k": 2}
    train(build(data), dataset=tiny_dataset(8))
    state = load_file(str(tmp_path / "run" / "checkpoints" / "step_0000003" / "model" / "model.safetensors"))
    assert state["frame_embedder.proj.weight"].abs().sum() > 0  # trained from zero (gradients from step 2 on)


def test_plain_length_on_a_frame_conditioned_model_is_plain_sampling(pipe):
    out = pipe(seed=3, output_type="latent", **KW)
    manual = []
    for k, cls in enumerate((1, 2)):
        gen = torch.Generator().manual_seed(3 + k)
        noise = torch.randn((1, 3, 4, 8, 8), generator=gen)
        fn = pipe._model_fn({"y": torch.tensor([cls])}, {"y": torch.tensor([3])}, 2.0)
        manual.append(sample_loop(fn, noise, "ddim", 3, pipe.betas, True, [gen]))
    torch.testing.assert_close(out.videos, torch.cat(manual), rtol=0, atol=1e-5)
    assert "given_frames" not in out.records[0]


def test_autoregressive_extension_keeps_the_first_clip_and_holds_the_context(pipe):
    short = pipe(seed=3, output_type="latent", **KW)
    long = pipe(seed=3, frames=10, output_type="latent", context_frames=2, **KW)
    assert long.videos.shape == (2, 3, 10, 8, 8)
    assert torch.equal(long.videos[:, :, :4], short.videos)  # the first clip is the plain 4-frame video
    rec = long.records[0]["given_frames"]
    assert rec["mode"] == "autoregressive" and rec["clips"] == 4 == count_clips(0, 10, 4, 2)
    assert rec["context_frames"] == 2 and rec["clip_frames"] == 4


def test_extend_clips_gives_each_clip_the_last_frames():
    calls = []

    def sample_clip(given, mask, index):
        calls.append((given.clone(), mask.clone()))
        return torch.where(mask[:, None, :, None, None], given, torch.full_like(given, float(index + 1)))

    prefix = torch.arange(3.0).reshape(1, 1, 3, 1, 1)
    video = extend_clips(sample_clip, prefix, 9, 4, 2)
    assert video.flatten().tolist() == [0, 1, 2, 1, 1, 2, 2, 3, 3]
    assert [m.flatten().tolist() for _, m in calls] == [[True, True, False, False]] * 3
    assert calls[1][0][0, 0, :2].flatten().tolist() == [1, 1]  # the previous clip's last two frames
    with pytest.raises(ValueError, match="context_frames"):
        extend_clips(sample_clip, prefix, 9, 4, 4)


def test_image_to_video_holds_the_image_as_frame_zero(pipe):
    image = (np.arange(8 * 8 * 3).reshape(8, 8, 3) * 1.3).astype(np.uint8)
    out = pipe(seed=0, image=image, output_type="tensor", **KW)
    expected = torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1
    for v in out.videos:
        assert torch.equal(v[:, 0], expected)  # identity autoencoder: latent frame 0 is the image exactly
    assert out.videos.shape == (2, 3, 4, 8, 8)
    assert out.records[0]["given_frames"]["mode"] == "image" and out.records[0]["frames"] == 4


def test_extend_a_video_keeps_its_frames(pipe):
    video = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    out = pipe(seed=0, extend=video, output_type="uint8", **KW)
    assert out.videos.shape == (2, 5 + 4 - 2, 8, 8, 3)  # default: one more clip with half a clip of context
    assert np.array_equal(out.videos[0, :5], video) and np.array_equal(out.videos[1, :5], video)
    assert out.records[0]["given_frames"]["given_frames"] == 5


def test_image_on_a_model_without_frame_conditioning_is_refused():
    plain = LattePipeline(tiny_model(conditioning="class", num_classes=3), IdentityAutoencoder())
    with pytest.raises(ValueError, match="model.frame_conditioning: false"):
        plain(image=np.zeros((8, 8, 3), np.uint8), **KW)


def _fc_run(tmp_path):
    ckpt = write_run(tmp_path / "run")
    for which, seed in (("model", 0), ("ema", 1)):
        fc_model(seed).save_pretrained(ckpt / which)
    cfg = load_yaml_mapping(ckpt / "run_config.yaml", "run config")
    cfg["model"]["frame_conditioning"] = True
    (ckpt / "run_config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "run"


def test_cli_image_to_video_writes_the_sidecar(tmp_path):
    run = _fc_run(tmp_path)
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(tmp_path / "first.png")
    code = main(["sample", "--checkpoint", str(run), "--class", "bird", "--steps", "2", "--sampler", "ddim",
                 "--image", str(tmp_path / "first.png"), "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 0
    record = json.loads((tmp_path / "out" / "00000.json").read_text())
    assert record["given_frames"]["source"] == str(tmp_path / "first.png")


@pytest.mark.parametrize("flag,content,message", [
    ("--image", None, "missing"),
    ("--image", b"not an image", "cannot be read as an image"),
    ("--extend", b"not a video", "cannot be read as a video"),
    ("--extend", "dir", "is a folder"),
])
def test_cli_bad_given_files_fail_before_loading(tmp_path, capsys, flag, content, message):
    path = tmp_path / ("given.png" if flag == "--image" else "given.mp4")
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    code = main(["sample", "--checkpoint", str(tmp_path / "no_such_run"), "--class", "1", flag, str(path),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and flag in err and message in err and str(path) in err


def test_cli_image_on_a_plain_model_names_the_option(tmp_path, capsys):
    write_run(tmp_path / "run")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "first.png")
    code = main(["sample", "--checkpoint", str(tmp_path / "run"), "--class", "1", "--image",
                 str(tmp_path / "first.png"), "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2 and "model.frame_conditioning: false" in capsys.readouterr().err
