"""``latte quickstart --cascade``: its helpers on hand-computed examples, the synthetic 4x-rate windows it trains
on, and (slow) the shortened path end to end on top of the base quickstart's smoke run."""
import json

import numpy as np
import pytest
import torch

from latte.data import build_dataset
from latte.data.synthetic import SyntheticDataset, SyntheticSpec
from latte.data.transforms import bicubic_upsample, linear_blend
from latte.quickstart_cascade import CascadeQuickstart, psnr, shrink_to, side_by_side, stage_from_run
from latte.training.tasks.lavie import load_lavie_run_config


def test_linear_blend_and_psnr_by_hand():
    base = torch.tensor([0.0, 1.0, -1.0]).view(1, 1, 3, 1, 1)
    out = linear_blend(base, 4).flatten().tolist()
    assert out == pytest.approx([0, .25, .5, .75, 1, .5, 0, -.5, -1])
    assert linear_blend(base[:, :, :1], 4).flatten().tolist() == [0.0]  # one base frame: itself
    assert linear_blend(base.transpose(1, 2), 2, dim=1).flatten().tolist() == pytest.approx([0, .5, 1, 0, -1])
    a = torch.zeros(2, 3, 1, 2, 2)
    b = torch.full_like(a, 0.2)  # MSE 0.04 -> 10 log10(4 / 0.04) = 20 dB
    assert psnr(a, b) == pytest.approx(20.0, abs=1e-4)
    up = bicubic_upsample(torch.full((1, 3, 2, 4, 4), 0.5), 4)
    assert up.shape == (1, 3, 2, 16, 16) and torch.allclose(up, torch.full_like(up, 0.5), atol=1e-6)


def test_shrink_to_and_side_by_side():
    video = np.zeros((29, 8, 8, 3), np.uint8)
    video[::4, :4, :4] = 200  # the base frames' times carry a bright 4x4 block
    small = shrink_to(video, 8, 2)
    assert small.shape == (8, 2, 2, 3) and (small[:, 0, 0] == 200).all() and (small[:, 1, 1] == 0).all()
    strip = side_by_side([np.zeros((2, 4, 4, 3), np.uint8), np.full((4, 8, 8, 3), 9, np.uint8)], 8)
    assert strip.shape == (4, 8, 16, 3) and (strip[:, :, 8:] == 9).all() and (strip[:, :, :8] == 0).all()


def test_synthetic_windows_at_4x_frame_rate_are_frames_of_the_base_clip_render():
    spec = SyntheticSpec(shapes=("circle",), colors=("red",), speeds=("fast",), object_scale=0.4)
    windows = SyntheticDataset(spec, 6, 8, 16, frame_rate=4, window=9)
    whole = SyntheticDataset(spec, 6, 8, 16)
    for i in range(6):
        clip = whole.render(i, frame_rate=4)  # 29 frames
        item = windows.item_frames(i)
        starts = [s for s in range(0, 21, 4) if np.array_equal(clip[s:s + 9], item)]
        assert item.shape == (9, 16, 16, 3) and starts, i
        # every 4th frame of the window is a frame of the 8-frame clip: the base frames' motion
        assert np.array_equal(item[::4], whole.render(i)[starts[0] // 4:starts[0] // 4 + 3])
    with pytest.raises(ValueError, match="window"):
        SyntheticDataset(spec, 1, 3, 16, frame_rate=4, window=10)


def test_shipped_cascade_configs_load_and_give_4x_pairs():
    interp = load_lavie_run_config("quickstart_cascade/interp")
    item = build_dataset(interp.data)[0]["video"]
    assert item.shape == (3, 9, 32, 32)
    vsr = load_lavie_run_config("quickstart_cascade/vsr")
    assert build_dataset(vsr.data)[0]["video"].shape == (3, 4, 128, 128)
    assert vsr.lavie.patch_size % vsr.lavie.scale_factor == 0


def test_stage_from_run_uses_the_runs_prediction_type(tmp_path):
    from latte.training.tasks.lavie import train_lavie

    cfg = load_lavie_run_config("quickstart_cascade/interp", [
        f"train.run_dir={tmp_path}", "train.max_steps=1", "train.ckpt_every=1", "train.warmup_steps=0",
        "unet.block_out_channels=[32,32]", "data.synthetic.num_videos=4"])
    train_lavie(cfg, device="cpu", progress=False)
    stage = stage_from_run(tmp_path)
    assert stage.kind == "interp" and stage.prediction_type == "sample" and stage.residual  # read from the run
    assert stage.autoencoder.latent_channels == 48
    assert stage_from_run(tmp_path, noise_level=7).noise_level == 7
    with pytest.raises(Exception, match="nothing"):
        stage_from_run(tmp_path / "nothing")


@pytest.mark.slow
def test_cascade_quickstart_smoke_end_to_end_and_resume(tmp_path):
    from latte.quickstart import Quickstart

    out = tmp_path / "qs"
    Quickstart(out, budget="smoke", progress=False, log=lambda m: None).run()
    messages = []
    stages = CascadeQuickstart(out, budget="smoke", progress=False, log=messages.append).run()
    assert list(stages) == list(CascadeQuickstart.STAGES) and all(stages.values())
    ev, sm = stages["eval"], stages["sample"]
    # the baselines are measured right: blending beats repeating, bicubic is a good upsampler on these
    # anti-aliased shapes; the stages' PSNRs are finite numbers (30 training steps reach no bar)
    assert ev["interp"]["linear_blend_psnr"] > ev["interp"]["repeat_psnr"] > 15, ev
    assert ev["vsr"]["bicubic_psnr"] > 25 and np.isfinite(ev["vsr"]["model_psnr"]), ev
    assert ev["interp"]["frames"] == "8 -> 29" and ev["vsr"]["size"] == "32 -> 128", ev
    # the full cascade: 8 frames of 32 px -> 29 frames -> 128 px, evaluated back at the classifier's size
    final = sorted((out / "cascade" / "samples" / "final").glob("*.json"))
    assert len(final) == 2 and json.loads(final[0].read_text())["prompt"].startswith("a ")
    assert sm["accuracy_base"]["num_videos"] == sm["accuracy_final"]["num_videos"] == 2
    assert sm["showcase"] and (out / sm["showcase"][0]).is_file()
    report = (out / "report.md").read_text()
    assert "latte quickstart report" in report and "## The LaVie cascade" in report
    assert (out / "report_cascade.md").is_file()
    # interrupted after sampling: the rerun skips what is done, and the report keeps one cascade section
    (out / "stages" / "cascade_report.json").unlink()
    messages.clear()
    CascadeQuickstart(out, budget="smoke", progress=False, log=messages.append).run()
    assert sum("skipped" in m for m in messages) == 4
    assert (out / "report.md").read_text().count("## The LaVie cascade") == 1
