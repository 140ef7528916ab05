"""The benchmark suite's measurements and report run end to end on the tiny configuration (in-process, fast)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import measure  # noqa: E402
import run  # noqa: E402
from setups import SETUPS, time_calls  # noqa: E402


@pytest.fixture(scope="module")
def tiny_results():
    args = run.parse_args(["--configs", "tiny", "--paths", "official,bf16", "--device", "cpu", "--repeats", "1",
                           "--sample-batches", "1", "--sample-steps", "1", "--vae-frames", "1"])
    specs = run.plan(args)
    results = [measure.run_task(spec) for spec in specs]
    return args, specs, results


def test_plan_runs_baseline_first_and_every_task(tiny_results):
    args, specs, _ = tiny_results
    assert args.paths[0] == "official"
    assert [(s["task"], s.get("path_name")) for s in specs] == [
        ("train", "official"), ("train", "bf16"), ("sample", "official"), ("sample", "bf16"), ("vae", None)]


def test_measurements_are_consistent(tiny_results):
    _, specs, results = tiny_results
    train = results[0]
    assert train["median_s"] > 0 and train["peak_memory_bytes"] > 0
    assert 0 < train["mfu"] < 1
    assert train["mfu"] == pytest.approx(train["train_flops"] / train["median_s"] / train["device_peak_flops"])
    sample = results[2]
    assert sample["seconds_per_step"] == pytest.approx(sample["median_s"] / specs[2]["steps"])
    assert results[4]["encode_s"] > 0 and results[4]["decode_s"] > 0


def test_report_has_every_table_and_speedups(tiny_results):
    args, specs, results = tiny_results
    text = run.report(args, specs, results, "python benchmarks/run.py --configs tiny")
    for heading in ("Training step", "on-the-fly VAE", "Sampling with classifier-free guidance", "VAE ("):
        assert heading in text
    assert "| tiny | official | 1 |" in text and "DPM-Solver-20" in text
    assert text.count("1×") >= 2  # the baseline's own ratio, training and sampling
    # a failed measurement is reported as skipped with its reason, not a crash
    broken = list(results)
    broken[1] = {"error": "exit -9: killed (out of memory?)"}
    assert "skipped: exit -9: killed (out of memory?)" in run.report(args, specs, broken, "cmd")


def test_unknown_names_are_rejected():
    with pytest.raises(SystemExit):
        run.parse_args(["--configs", "tiny,XXL/2"])
    assert set(SETUPS) == {"tiny", "S/2", "B/2", "XL/2", "T2V"}


def test_time_calls_reports_median_and_first_call():
    calls = []
    stats = time_calls(lambda: calls.append(1), device=__import__("torch").device("cpu"), repeats=3, warmup=2)
    assert len(calls) == 5 and len(stats["times_s"]) == 3 and stats["first_call_s"] is not None
