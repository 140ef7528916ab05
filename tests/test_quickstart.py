"""The README's main command, shortened ('smoke' budget): every stage runs end to end and resumes."""
import json

import pytest

from latte.quickstart import Quickstart


@pytest.mark.slow
def test_quickstart_smoke_end_to_end_and_resume(tmp_path):
    out = tmp_path / "qs"
    messages = []
    qs = Quickstart(out, budget="smoke", progress=False, log=messages.append)
    stages = qs.run()
    assert list(stages) == list(Quickstart.STAGES) and all(stages.values())
    # videos for every training / held-out combination, with sidecars naming their prompt
    sidecars = sorted((out / "samples" / "train").glob("*.json"))
    assert len(sidecars) == 36 and len(list((out / "samples" / "heldout").glob("*.mp4"))) == 12
    assert json.loads(sidecars[0].read_text())["prompt"].startswith("a ")
    assert list((out / "samples" / "showcase_heldout").glob("*.gif"))
    # bars the shortened stages reach: the VAE learns (+5 dB), the evaluator reads colour (4 colours, chance
    # 0.25) after 20 steps and finds the real clips right in every frame, and the 10-step generator is
    # measurably worse than real data
    assert stages["vae"]["psnr"] > stages["vae"]["psnr_before"] + 5, stages["vae"]
    assert stages["classifier"]["val_accuracy"]["color"] >= 0.9, stages["classifier"]
    ev = stages["eval"]
    assert ev["synthetic_fvd"] > 2 * ev["synthetic_fvd_real_baseline"] > 0, ev
    real = ev["every_frame"]["real"]
    assert real["color_every_frame"] == real["shape_every_frame"] == 1.0 and real["flicker"] == 0.0, real
    for name, count in (("train", 36), ("heldout", 12)):  # the every-frame count is the stricter one
        check = ev["every_frame"][name]
        assert check["every_frame_joint"] <= check["clip_joint"] and check["num_videos"] == count
    for name in ("train", "heldout"):  # the synthetic metrics read clips at the evaluator's size, not resized
        fake = json.loads((out / "eval" / f"{name}_combinations.json").read_text())["runs"][0]["fake"]
        assert fake["resolution"] is None and fake["resize"] is None, fake
        # the clip classifier on the mp4s agrees with the per-frame check's own per-clip count
        assert ev[f"accuracy_{name}"]["joint"] == ev["every_frame"][name]["clip_joint"]
    report = (out / "report.md").read_text()
    assert "held-out combinations" in report and "right in every frame" in report
    assert "loss_curve.png" in report and (out / "loss_curve.png").is_file()
    for name in ("vae", "latte", "cache", "classifier"):
        assert (out / "configs" / f"{name}.yaml").is_file()

    # interrupted after sampling: the rerun skips what is done and redoes only the rest
    (out / "stages" / "eval.json").unlink()
    (out / "stages" / "report.json").unlink()
    messages.clear()
    Quickstart(out, budget="smoke", progress=False, log=messages.append).run()
    skipped = [m for m in messages if "skipped" in m]
    assert len(skipped) == 6 and any("evaluate: finished" in m for m in messages)
