"""Training-free long videos (latte.sampling.long_video): sliding temporal windows and rescheduled noise."""
import json

import numpy as np
import pytest
import torch

from latte.cli import main
from latte.encoders.autoencoders import IdentityAutoencoder
from latte.sampling import LattePipeline
from latte.sampling.cascade import CascadePipeline, StageSettings, load_lavie_stage
from latte.sampling.long_video import (TemporalWindows, reschedule_noise, resolve_windows, window_starts,
                                       window_weights, windowed)
from helpers import tiny_model, write_run  # tiny 4-frame models, a run directory (lavie_dir: conftest.py)

KW = dict(classes=[1, 2], sampler="ddpm", steps=4, cfg_scale=2.0, output_type="latent", progress=False)


@pytest.fixture(scope="module")
def pipe():  # trained length 4 frames, interleaved spatial/temporal blocks, absolute temporal PE
    return LattePipeline(tiny_model(conditioning="class", num_classes=3), IdentityAutoencoder())


def test_window_of_the_trained_length_is_plain_sampling(pipe):
    plain = pipe(seed=3, **KW).videos
    for window in (4, None):  # explicit window = trained length = frames, and the default
        out = pipe(seed=3, frames=4, window=window, **KW)
        assert torch.equal(out.videos, plain)  # bit-identical: same noise, same generator state, same model calls
        assert "temporal_window" not in out.records[0]


@pytest.mark.parametrize("frames", [8, 16])
def test_longer_videos_have_the_right_shape_and_record_the_windows(pipe, frames):
    out = pipe(seed=0, frames=frames, **KW)
    assert out.videos.shape == (2, 3, frames, 8, 8) and torch.isfinite(out.videos).all()
    assert out.records[0]["frames"] == frames
    assert out.records[0]["temporal_window"] == {"size": 4, "stride": 2, "fusion": "pyramid",
                                                 "noise": "shuffled-repeat"}
    again = pipe(seed=0, frames=frames, **KW)
    assert torch.equal(again.videos, out.videos)  # deterministic per seed


def test_the_model_only_ever_sees_windows_of_the_trained_length():
    model = tiny_model(conditioning="class", num_classes=3)
    y, t = torch.tensor([1]), torch.tensor([500])
    seen = []

    def model_fn(x, t):
        seen.append(x.shape[2])
        return model(x, t, y=y)

    fused = windowed(model_fn, TemporalWindows(4, 2))
    x = torch.randn(1, 3, 16, 8, 8)
    out = fused(x, t)
    assert out.shape == (1, 6, 16, 8, 8) and seen == [4] * 7  # starts 0, 2, ..., 12
    # frames 0-1 lie in the first window only: perturbing the last frames leaves them bit-identical ...
    x2 = x.clone()
    x2[:, :, 12:] += 3.0
    out2 = fused(x2, t)
    assert torch.equal(out2[:, :, :2], out[:, :, :2])
    assert not torch.allclose(out2[:, :, 12:], out[:, :, 12:])
    # ... whereas full temporal attention over all 16 frames lets them reach frame 0
    full = model(x, t, y=y), model(x2, t, y=y)
    assert not torch.allclose(full[0][:, :, :2], full[1][:, :, :2])
    # the fused value of a frame is the pyramid-weighted mean of the windows holding it
    per_window = {s: model(x[:, :, s:s + 4], t, y=y) for s in (0, 2)}
    w = window_weights(4)
    expected = (w[2] * per_window[0][:, :, 2] + w[0] * per_window[2][:, :, 0]) / (w[2] + w[0])
    torch.testing.assert_close(out[:, :, 2], expected)


def test_window_layout():
    assert window_starts(16, 4, 2) == [0, 2, 4, 6, 8, 10, 12]
    assert window_starts(10, 4, 4) == [0, 4, 6]  # the last window ends at the last frame
    assert window_starts(4, 4, 2) == [0]
    assert window_weights(8).tolist() == [1, 2, 3, 4, 4, 3, 2, 1]
    assert resolve_windows(32, 8) == TemporalWindows(8, 4)
    assert resolve_windows(8, 8) is None and resolve_windows(32, 8, window=0) is None
    assert resolve_windows(8, 8, window=4) == TemporalWindows(4, 2)
    assert resolve_windows(32, 8, window=6, stride=3) == TemporalWindows(6, 3)
    assert resolve_windows(32, 8, multiple=2) == TemporalWindows(8, 4)
    with pytest.raises(ValueError, match="window_stride: expected 1..window"):
        resolve_windows(32, 8, stride=9)
    with pytest.raises(ValueError, match="tubelet size 2"):
        resolve_windows(32, 8, window=5, multiple=2)
    with pytest.raises(ValueError, match="pass window too"):
        resolve_windows(8, 8, stride=2)


def test_rescheduled_noise_repeats_shuffled_chunks_deterministically_per_seed():
    windows = TemporalWindows(4, 2)

    def noise(seed):
        gen = torch.Generator().manual_seed(seed)
        first = torch.randn(1, 3, 4, 2, 2, generator=gen)
        return first, reschedule_noise(first, windows, [gen], 11)

    first, a = noise(0)
    assert a.shape == (1, 3, 11, 2, 2) and torch.equal(a[:, :, :4], first)
    assert torch.equal(noise(0)[1], a) and not torch.equal(noise(1)[1], a)
    base = sorted(first[0, 0, :, 0, 0].tolist())
    for s in (0, 2, 4, 6):  # every stride-aligned window holds a permutation of the first window's noise frames
        assert sorted(a[0, 0, s:s + 4, 0, 0].tolist()) == base
    assert a[0, 0, 10, 0, 0].item() in base
    assert not torch.equal(a[:, :, 1:], a[:, :, :-1])


def test_cli_frames_beyond_the_trained_length(tmp_path):
    write_run(tmp_path / "run")
    out = tmp_path / "out"
    assert main(["sample", "--checkpoint", str(tmp_path / "run"), "--class", "bird", "--frames", "12",
                 "--window", "4", "--window-stride", "3", "--sampler", "ddim", "--steps", "2", "--format", "gif",
                 "--out", str(out), "--quiet"]) == 0
    side = json.loads((out / "00000.json").read_text())
    assert side["frames"] == 12 and side["temporal_window"]["size"] == 4 and side["temporal_window"]["stride"] == 3
    assert main(["sample", "--checkpoint", str(tmp_path / "run"), "--class", "bird", "--frames", "12",
                 "--window-stride", "9", "--steps", "2", "--out", str(tmp_path / "bad"), "--quiet"]) == 2


def test_lavie_base_unet_extends_with_the_same_windows():
    """The fusion wraps any (x, t) -> output function: the LaVie base U-Net (RoPE temporal attention, temporal
    convolutions) gets 16-frame outputs in which the first window's frames ignore the last frames."""
    from latte.models import UNet3D, UNet3DConfig

    torch.manual_seed(0)
    unet = UNet3D(UNet3DConfig(block_out_channels=(32, 32), layers_per_block=1, num_heads=1, norm_num_groups=8,
                               cross_attention_dim=16, attention_levels=(True, False),
                               cross_attention_only=(False, False)))
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    text = torch.randn(1, 5, 16)
    fused = windowed(lambda x, t: unet(x, t, encoder_hidden_states=text), resolve_windows(16, 8))
    x, t = torch.randn(1, 4, 16, 8, 8), torch.tensor([500])
    out = fused(x, t)
    x2 = x.clone()
    x2[:, :, 12:] += 3.0
    out2 = fused(x2, t)
    assert out.shape == (1, 4, 16, 8, 8)
    assert torch.equal(out2[:, :, :4], out[:, :, :4]) and not torch.allclose(out2[:, :, 12:], out[:, :, 12:])


def test_step_cache_keeps_one_state_per_window(pipe):
    kw = {**KW, "sampler": "ddim", "steps": 5}
    plain = pipe(seed=1, frames=8, **kw)
    exact = pipe(seed=1, frames=8, cache="teacache:0", **kw)  # threshold 0: every call computed = uncached
    torch.testing.assert_close(exact.videos, plain.videos)
    rec = pipe(seed=1, frames=8, cache="teacache:100", **kw).records[0]
    assert rec["cache_model_calls"] == 3 * 5 and rec["temporal_window"]["size"] == 4  # 3 windows x 5 calls
    assert 3 * 2 <= rec["cache_computed_calls"] < 3 * 5  # each window computes at least its first and last call


def test_cascade_extends_the_base_video_before_interpolation(lavie_dir):
    base = load_lavie_stage(lavie_dir, "base")
    base.trained_frames = 4  # the tiny base stands for a model trained on 4 frames
    pipe = CascadePipeline(base=base, interp=load_lavie_stage(lavie_dir, "interp"))
    kw = dict(stages=["base", "interp"], height=16, width=16, progress=False,
              settings={"base": StageSettings(steps=2), "interp": StageSettings(steps=2)})
    long = pipe.run("a red square", frames=8, **kw)
    assert long.stages[0]["frames"] == 8 and long.stages[0]["temporal_window"]["size"] == 4
    assert long.stages[0]["temporal_window"]["stride"] == 2 and long.video.shape[0] == 4 * 7 + 1
    plain, same = pipe.run("a red square", frames=4, **kw), pipe.run("a red square", frames=4, window=4, **kw)
    np.testing.assert_array_equal(plain.video, same.video)
    assert "temporal_window" not in plain.stages[0]
