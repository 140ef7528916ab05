"""`latte sample` under torchrun with 2 gloo processes: videos split by rank, exactly N files, resume."""
import json

import pytest

from helpers import torchrun, write_run


@pytest.mark.slow
def test_two_processes_split_videos_and_resume(tmp_path):
    write_run(tmp_path / "run")
    out = tmp_path / "out"
    base = ["--checkpoint", str(tmp_path / "run"), "--class", "bird", "--sampler", "ddim", "--steps", "2",
            "--out", str(out), "--format", "gif", "--device", "cpu", "--quiet"]
    first = torchrun(base + ["--num-videos", "5"], tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "5/5 videos" in first.stdout and "5 made now by 2 process(es)" in first.stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{i:05d}.{e}" for i in range(5) for e in ("gif", "json")]
    assert [json.loads((out / f"{i:05d}.json").read_text())["seed"] for i in range(5)] == [0, 1, 2, 3, 4]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    (out / "00003.json").unlink()  # an interrupted video: its sidecar (written last) is missing
    second = torchrun(base + ["--num-videos", "7"], tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "7/7 videos" in second.stdout and "3 made now" in second.stdout and "4 already present" in second.stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{i:05d}.{e}" for i in range(7) for e in ("gif", "json")]
    for i in (0, 1, 2, 4):  # finished videos were not touched
        assert (out / f"{i:05d}.gif").stat().st_mtime_ns == stamps[f"{i:05d}.gif"]
