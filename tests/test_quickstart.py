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
    # 0.25) after 20 steps, and the 10-step generator is measurably worse than real data
    assert stages["vae"]["psnr"] > stages["vae"]["psnr_before"] + 5, stages["vae"]
    assert stages["classifier"]["val_accuracy"]["color"] >= 0.9, stages["classifier"]
    ev = stages["eval"]
    assert 0.0 <= ev["accuracy_train"]["joint"] <= 1.0 and ev["synthetic_fvd_real_baseline"] > 0
    assert ev["synthetic_fvd"] > 2 * ev["synthetic_fvd_real_baseline"], ev
    report = (out / "report.md").read_text()
    assert "held-out combinations" in report and "loss_curve.png" in report and (out / "loss_curve.png").is_file()
    for name in ("vae", "latte", "cache", "classifier"):
        assert (out / "configs" / f"{name}.yaml").is_file()

    # interrupted after sampling: the rerun skips what is done and redoes only the rest
    (out / "stages" / "eval.json").unlink()
    (out / "stages" / "report.json").unlink()
    messages.clear()
    Quickstart(out, budget="smoke", progress=False, log=messages.append).run()
    skipped = [m for m in messages if "skipped" in m]
    assert len(skipped) == 6 and any("evaluate: finished" in m for m in messages)
