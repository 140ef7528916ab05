"""``latte quickstart --extras``: the helpers it shares with ``benchmarks/bench_extras.py`` (object hue, the new
colour's stills, the seam measure, the report section, the bars) and (slow) the shortened path end to end on top of
the base quickstart's smoke run."""
import colorsys
import json
import re

import numpy as np
import pytest
from PIL import Image

from latte.data.synthetic import render_clip
from latte.metrics.synthetic import hue_in_range, object_hue
from latte.quickstart_extras import (BARS, NEW_COLOURS, REPORT_BEGIN, REPORT_END, ExtrasQuickstart, colour_stills,
                                     extras_bars, frame_conditioning_config, segment_frame_change)
from latte.quickstart_report import write_report_section


def test_object_hue_matches_colorsys_and_ignores_the_background():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (1, 40, 40, 3)).astype(np.uint8)
    x = pixels.reshape(-1, 3) / 255.0
    keep = (x.max(1) > 0.35) & ((x.max(1) - x.min(1)) / np.maximum(x.max(1), 1e-6) > 0.4)
    angles = np.array([colorsys.rgb_to_hsv(*p)[0] for p in x[keep]]) * 2 * np.pi
    expected = np.degrees(np.arctan2(np.sin(angles).mean(), np.cos(angles).mean())) % 360
    hue, share = object_hue(pixels)
    assert hue == pytest.approx(expected, abs=1e-9) and share == pytest.approx(keep.mean())
    assert np.isnan(object_hue(np.zeros((2, 8, 8, 3), np.uint8))[0])  # no object: nan, share 0
    # red wraps around 0 degrees: the circular mean of 350 and 10 degrees is 0, not 180
    red_ish = np.array([[[255, 0, 43], [255, 43, 0]]], np.uint8)
    assert min(object_hue(red_ish)[0], 360 - object_hue(red_ish)[0]) < 1


def test_orange_stills_fall_in_orange_and_red_renders_do_not(tmp_path):
    manifest = colour_stills(tmp_path / "stills", 6, ["circle", "square", "triangle"], ["left", "up"], "orange")
    rows = manifest.read_text().splitlines()
    assert rows[0] == "path,caption" and len(rows) == 7
    assert rows[1] == "000.png,a orange circle moving left" and rows[4] == "003.png,a orange circle moving up"
    stills = np.stack([np.asarray(Image.open(tmp_path / "stills" / r.split(",")[0])) for r in rows[1:]])
    low, high = NEW_COLOURS["orange"][1]
    assert stills.shape == (6, 32, 32, 3) and all(low <= object_hue(s)[0] <= high for s in stills)
    red = render_clip({"shape": "circle", "color": "red", "direction": "left", "speed": "fast"}, 8, 32, 0, "black", 0.4)
    assert not low <= object_hue(red)[0] <= high
    videos = np.stack([stills[:1].repeat(8, 0), red])  # one orange video, one red
    stats = hue_in_range(videos, (low, high))
    assert stats["videos_in_hue_range"] == 0.5 and np.isfinite(stats["median_hue_deg"])


def test_segment_frame_change_by_hand():
    videos = np.zeros((1, 8, 2, 2, 3), np.uint8)
    videos[:, 4:] = 51  # one jump of 0.2 at the border 3 -> 4 of 4-frame segments
    videos[:, 1] = 17  # inside segment 0: 0 -> 1/15 -> 0
    out = segment_frame_change(videos, 4)
    assert out["border"] == pytest.approx(0.2)
    assert out["inside"] == pytest.approx(2 / 15 / 6)  # two steps of 1/15 among the six inside pairs
    assert out["border_over_inside"] == pytest.approx(0.2 / (2 / 15 / 6))
    assert set(segment_frame_change(videos, 8)) == {"inside"}  # one segment: no border


def test_report_section_is_replaced_between_markers_and_appended_once(tmp_path):
    (tmp_path / "report.md").write_text("# latte quickstart report\n\nbase numbers\n")
    for n in (1, 2):
        section = f"{REPORT_BEGIN}\n## extras\nrun {n}\n{REPORT_END}\n"
        write_report_section(tmp_path, "extras", "title", section, REPORT_BEGIN, REPORT_END)
    text = (tmp_path / "report.md").read_text()
    assert text.startswith("# latte quickstart report\n\nbase numbers\n") and text.count("## extras") == 1
    assert "run 2" in text and "run 1" not in text
    assert (tmp_path / "report_extras.md").read_text() == f"# title\n\n{REPORT_BEGIN}\n## extras\nrun 2\n{REPORT_END}\n"


def test_frame_conditioning_config_turns_the_base_run_into_a_wrap_fine_tune(tmp_path):
    import yaml

    base = tmp_path / "latte"
    base.mkdir()
    (base / "run_config.yaml").write_text(yaml.safe_dump({
        "model": {"frame_conditioning": False}, "data": {"synthetic": {"motion": "bounded"}},
        "train": {"use_cache": True, "max_steps": 9000}, "validation": {"every": 500}}))
    cfg = frame_conditioning_config(base, tmp_path / "fc", 30)
    assert cfg["model"]["frame_conditioning"] is True and cfg["data"]["synthetic"]["motion"] == "wrap"
    assert cfg["train"]["use_cache"] is False and cfg["train"]["init_from"] == str(base)
    assert cfg["train"]["max_steps"] == cfg["train"]["ckpt_every"] == 30 and cfg["validation"]["every"] == 0
    assert frame_conditioning_config(base, tmp_path / "fc", 3000)["train"]["ckpt_every"] == 500  # resumable
    assert frame_conditioning_config(base, tmp_path / "fc", 30, "bounded")["train"]["use_cache"] is True


class _Results:  # stage results as the markers hold them
    def __init__(self, personalise, frames):
        self.results = {"personalise": personalise, "frames": frames}

    def stage_result(self, name):
        return self.results[name]


def _stage_results(hue=0.95, direction=0.92, old=(0.90, 0.88), fraction=0.031, seconds=120.0,
                   segments=(0.9, 0.88, 0.87, 0.9), short=0.9, base_short=0.91, ratio=1.2):
    personalise = {"colour": "orange", "hue_range_deg": [20, 50], "adapter_fraction": fraction,
                   "train_seconds": seconds, "new_colour_lora": {"videos_in_hue_range": hue, "direction": direction},
                   "new_colour_base": {"videos_in_hue_range": 0.0, "direction": 0.5},
                   "old_colours_base": {"joint": old[0]}, "old_colours_lora": {"joint": old[1]}}
    frames = {"extension": {"frames": 32, "segment_joint": list(segments), "short_joint": short,
                            "base_short_joint": base_short,
                            "worst_drop_points": 100 * (short - min(segments)),
                            "worst_drop_points_vs_base": 100 * (base_short - min(segments)),
                            "frame_change": {"border_over_inside": ratio}}}
    return _Results(personalise, frames)


def test_extras_bars_are_the_issues_bars():
    rows = extras_bars(_stage_results())
    assert len(rows) == 8 and all(met for *_, met in rows), rows
    failing = {  # each bar fails on its own just past its threshold
        0: {"hue": 0.89}, 1: {"direction": 0.89}, 2: {"old": (0.90, 0.869)}, 3: {"fraction": 0.051},
        4: {"seconds": 181.0}, 5: {"short": 0.921}, 6: {"base_short": 0.921}, 7: {"ratio": 1.51}}
    for row, change in failing.items():
        met = [m for *_, m in extras_bars(_stage_results(**change))]
        assert met == [i != row for i in range(8)], (row, change, met)
    assert not extras_bars(_stage_results(seconds=None))[4][3]  # a reused adapter was not timed
    assert BARS["border_over_inside"] == 1.5 and BARS["adapter_fraction"] == 0.05


def _is_gif(path) -> bool:
    with Image.open(path) as im:
        return im.format == "GIF" and im.n_frames > 1


@pytest.mark.slow
def test_extras_quickstart_smoke_end_to_end_and_resume(tmp_path, capsys):
    from latte.cli import main

    out = tmp_path / "qs"  # the CLI runs the base quickstart first, then the extras, and prints every bar
    assert main(["quickstart", "--out", str(out), "--budget", "smoke", "--extras", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "[extras 3/3] write the extras report section: finished" in printed
    qs = ExtrasQuickstart(out, budget="smoke")
    for measure, value, bar, met in extras_bars(qs):
        assert f"  {measure}: {value} ({bar}: {'met' if met else 'NOT met'})" in printed
    stages = {name: qs.stage_result(name) for name in qs.STAGES}
    assert all(stages.values())
    for name in ExtrasQuickstart.STAGES:
        assert json.loads((out / "stages" / f"extras_{name}.json").read_text())["seconds"] >= 0
    p, f = stages["personalise"], stages["frames"]
    # personalisation: the recipe's adapter (a few % of the model) on 64 stills; 24 orange prompts x 1 seed
    assert p["stills"] == 64 and p["steps"] == 2 and 0 < p["adapter_fraction"] < 0.1, p
    assert p["preservation_weight"] > 0 and p["old_colours_base"]["num_videos"] == 36, p
    assert 0 <= p["new_colour_lora"]["videos_in_hue_range"] <= 1 and len(p["gifs"]) == 2
    # frame conditioning: frame 0 of image-to-video is the given frame through the autoencoder
    assert f["fine_tune_steps"] == 2 and f["i2v_val"]["videos"] == f["i2v_heldout"]["videos"] == 1, f
    assert f["i2v_val"]["psnr_frame0_db"] > 10, f
    ext = f["extension"]
    assert ext["frames"] == 32 and ext["context_frames"] == 4 and len(ext["segment_joint"]) == 4, ext
    assert ext["frame_change"]["border_over_inside"] > 0 and len(f["evaluator_on_true_wrap_segments"]) == 4
    # the report: one section between the markers, every bar, valid GIFs next to it
    report = (out / "report.md").read_text()
    assert "latte quickstart report" in report and report.count(REPORT_BEGIN) == report.count(REPORT_END) == 1
    section = report.split(REPORT_BEGIN)[1].split(REPORT_END)[0]
    for measure, value, bar, met in extras_bars(qs):
        assert f"| {measure} | {value} | {bar}: {'met' if met else 'NOT met'} |" in section
    gifs = re.findall(r"!\[[^\]]*\]\(([^)]+\.gif)\)", section)
    assert len(gifs) == 6 and all(_is_gif(out / g) for g in gifs), gifs  # 2 adapter, 2 i2v, 2 extensions
    assert (out / "report_extras.md").read_text().count(REPORT_BEGIN) == 1
    # interrupted before the report: the rerun skips the two measuring stages, the report keeps one section
    (out / "stages" / "extras_report.json").unlink()
    messages = []
    ExtrasQuickstart(out, budget="smoke", progress=False, log=messages.append).run()
    assert sum("skipped" in m for m in messages) == 2
    assert (out / "report.md").read_text().count("## Personalisation and frame conditioning") == 1
