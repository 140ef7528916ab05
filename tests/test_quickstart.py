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
    ev = stages["eval"]
    assert 0.0 <= ev["accuracy_train"]["joint"] <= 1.0 and ev["synthetic_fvd_real_baseline"] > 0
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
