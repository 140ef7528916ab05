"""Latte benchmark suite: training throughput, sampling time, VAE time, against the official-style baseline.

    python benchmarks/run.py --configs tiny,S/2 --device cpu
    python benchmarks/run.py --device cuda                      # every configuration, GPU defaults

Configurations (``benchmarks/setups.py``): tiny, S/2, B/2, XL/2 (16 frames × 32×32 latents = 16×256²,
class-conditional, 101 classes) and T2V (Latte-T2V, 16 × 64×64 latents = 16×512², 120 text tokens).
Paths: ``official`` (the baseline: float32 eager, explicit-softmax attention), ``sdpa``, ``bf16`` (sdpa +
bf16 autocast), ``bf16-math`` (bf16 autocast + explicit softmax: the fastest on CPU), ``bf16-compile`` / ``sdpa-compile`` (+ torch.compile of each block). Every measurement runs in
its own process (clean peak memory); times are medians of ``--repeats`` calls after a warm-up call.

Reported:
- training: seconds per optimiser step from cached latents, clips/s and frames/s (per device), peak memory,
  MFU = 3 · forward matmul FLOPs (``latte.models.flops``) / step seconds / device peak; on CPU the peak is a
  measured 1536² GEMM in the path's dtype, on GPU the datasheet dense peak (bf16, or TF32 for float32);
  with on-the-fly VAE encoding: (encode seconds per clip · batch + step seconds) per step.
- sampling with CFG (one batched forward of 2B per step): seconds per video for DDPM-250, DDIM-50 and
  DPM-Solver-20, *extrapolated* from a timed short DDIM loop (``--sample-steps`` real steps; one model
  evaluation per step for all three samplers), at batch 1 and at the best of ``--sample-batches``.
- VAE encode/decode seconds per clip (frame-wise, so extrapolated linearly from ``--vae-frames`` frames).
Results are appended to BENCHMARKS.md with date, device, versions and the exact command (raw numbers to
benchmarks/results.jsonl).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SAMPLERS = {"DDPM-250": 250, "DDIM-50": 50, "DPM-Solver-20": 20}
GIB = 1024 ** 3


def parse_args(argv=None):
    import torch

    from setups import PATHS, SETUPS

    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if cuda else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--configs", help=f"comma list of {', '.join(SETUPS)} (default: cpu: those that fit a small "
                                     "CPU machine; cuda: all)")
    p.add_argument("--paths", help=f"comma list of {', '.join(PATHS)}; 'official' (the baseline) is always "
                                   "run; the last one also gets the batch sweep and the checkpointing row "
                                   "(default: cpu official,sdpa,bf16,bf16-math; cuda official,sdpa,bf16,"
                                   "bf16-compile)")
    p.add_argument("--train-batch", type=int, help="clips per training step (default: cpu 1, cuda 8)")
    p.add_argument("--sample-batches", help="comma list of sampling batch sizes, the best is reported "
                                            "(default: cpu 1,2; cuda 1,4,16)")
    p.add_argument("--sample-steps", type=int, help="real DDIM steps timed per sampling measurement "
                                                    "(default: cpu 2, cuda 10)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (median reported)")
    p.add_argument("--vae", choices=["sd", "tiny"], help="VAE architecture for the encode/decode timings "
                                                         "(default: cpu tiny, cuda sd)")
    p.add_argument("--vae-frames", type=int, help="frames actually encoded/decoded (default: cpu 2, cuda 16)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="also time the last --paths entry with gradient checkpointing (memory/speed trade-off)")
    p.add_argument("--threads", type=int, help="torch intra-op threads on CPU (default: torch's choice)")
    p.add_argument("--task-timeout", type=int, default=3600, help="seconds before one measurement is abandoned")
    p.add_argument("--output", default=str(HERE.parent / "BENCHMARKS.md"), help="markdown file appended to")
    p.add_argument("--no-write", action="store_true", help="print the report only")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    on_cpu = args.device == "cpu"
    args.configs = (args.configs.split(",") if args.configs else
                    [n for n, s in SETUPS.items() if s.cpu_default or not on_cpu])
    paths = args.paths.split(",") if args.paths else ["official", "sdpa", "bf16",
                                                      "bf16-math" if on_cpu else "bf16-compile"]
    args.paths = ["official"] + [x for x in paths if x != "official"]
    for name, known, what in [(c, SETUPS, "configuration") for c in args.configs] + \
                             [(x, PATHS, "path") for x in args.paths]:
        if name not in known:
            p.error(f"unknown {what} '{name}' (known: {', '.join(known)})")
    args.train_batch = args.train_batch or (1 if on_cpu else 8)
    args.sample_batches = [int(b) for b in (args.sample_batches or ("1,2" if on_cpu else "1,4,16")).split(",")]
    args.sample_steps = args.sample_steps or (2 if on_cpu else 10)
    args.vae = args.vae or ("tiny" if on_cpu else "sd")
    args.vae_frames = args.vae_frames or (2 if on_cpu else 16)
    return args


def run_measurement(spec: dict, timeout: int) -> dict:
    """Runs one measurement in a fresh process; returns its result or ``{"error": reason}``."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    reason = "killed (out of memory?)" if proc.returncode in (-9, 137) else tail
    return {"error": f"exit {proc.returncode}: {reason}"}


def plan(args) -> list[dict]:
    """Every measurement of the run, in order (baseline first so ratios are always available)."""
    common = {"device": args.device, "threads": args.threads}
    specs = []
    for config in args.configs:
        for path in args.paths:
            specs.append({**common, "task": "train", "setup_name": config, "path_name": path,
                          "batch": args.train_batch, "repeats": args.repeats})
        if args.gradient_checkpointing:
            specs.append({**common, "task": "train", "setup_name": config, "path_name": args.paths[-1],
                          "batch": args.train_batch, "repeats": args.repeats, "gradient_checkpointing": True})
        for path in args.paths:
            for batch in (args.sample_batches if path == args.paths[-1] else args.sample_batches[:1]):
                specs.append({**common, "task": "sample", "setup_name": config, "path_name": path, "batch": batch,
                              "steps": args.sample_steps, "repeats": args.repeats})
    for size in sorted({setups_module().SETUPS[c].size for c in args.configs}):
        specs.append({**common, "task": "vae", "shape": args.vae, "frames": args.vae_frames, "size": size,
                      "repeats": args.repeats})
    return specs


def setups_module():
    import setups

    return setups


def environment(args) -> str:
    import diffusers
    import torch

    if args.device == "cuda":
        device = f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}"
    else:
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
                   platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
        device = f"CPU {cpu}, {os.cpu_count()} cores, {args.threads or torch.get_num_threads()} torch threads"
    load = " · load average %.1f/%.1f/%.1f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    return (f"{device}{load} · torch {torch.__version__}, diffusers {diffusers.__version__}, "
            f"python {platform.python_version()}")


def fmt(x, digits=3):
    return "—" if x is None else f"{x:.{digits}g}"


def report(args, specs, results, command) -> str:
    setups = setups_module()
    by_key = {}
    for spec, res in zip(specs, results):
        key = (spec["task"], spec.get("setup_name"), spec.get("path_name"), spec.get("batch"),
               spec.get("gradient_checkpointing", False), spec.get("size"))
        by_key[key] = res
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [f"## {stamp} — {args.device}", "", f"- Device and versions: {environment(args)}",
             f"- Command: `{command}`",
             f"- Paths: " + "; ".join(f"`{p}` = {setups.PATHS[p].description}" for p in args.paths), ""]

    vae = {spec["size"]: res for spec, res in zip(specs, results) if spec["task"] == "vae"}
    lines += [f"### Training step, batch {args.train_batch} (median of {args.repeats}; speed-up = official step "
              "time / this step time)", "",
              "| config | path | step s | clips/s | frames/s | speed-up | peak mem GiB | MFU | peak used for MFU |",
              "|---|---|---|---|---|---|---|---|---|"]
    for config in args.configs:
        base = by_key.get(("train", config, "official", args.train_batch, False, None), {})
        rows = [(p, False) for p in args.paths] + ([(args.paths[-1], True)] if args.gradient_checkpointing else [])
        for path, ckpt in rows:
            res = by_key[("train", config, path, args.train_batch, ckpt, None)]
            name = path + (" + grad. checkpointing" if ckpt else "")
            if "error" in res:
                lines.append(f"| {config} | {name} | skipped: {res['error']} ||||||")
                continue
            s, frames = res["median_s"], setups.SETUPS[config].frames
            ratio = base["median_s"] / s if "median_s" in base else None
            lines.append(f"| {config} | {name} | {fmt(s)} | {fmt(args.train_batch / s)} | "
                         f"{fmt(args.train_batch * frames / s)} | {fmt(ratio)}× | "
                         f"{res['peak_memory_bytes'] / GIB:.2f} | {100 * res['mfu']:.1f}% | "
                         f"{res['device_peak_flops'] / 1e12:.3g} TFLOP/s ({res['device_peak_source']}) |")
    lines += ["", f"### Training with on-the-fly VAE encoding ({args.vae}-shaped random VAE, encode time "
                  f"extrapolated from {args.vae_frames} frames), batch {args.train_batch}", "",
              "| config | path | encode s/clip | step s | total s/step | clips/s | frames/s |", "|---|---|---|---|---|---|---|"]
    for config in args.configs:
        setup = setups.SETUPS[config]
        enc = vae.get(setup.size, {})
        for path in (args.paths[0], args.paths[-1]):
            res = by_key[("train", config, path, args.train_batch, False, None)]
            if "error" in res or "error" in enc:
                lines.append(f"| {config} | {path} | skipped: {res.get('error') or enc.get('error')} |||||")
                continue
            enc_clip = enc["encode_s"] * setup.frames / enc["frames"]
            total = enc_clip * args.train_batch + res["median_s"]
            lines.append(f"| {config} | {path} | {fmt(enc_clip)} | {fmt(res['median_s'])} | {fmt(total)} | "
                         f"{fmt(args.train_batch / total)} | {fmt(args.train_batch * setup.frames / total)} |")
    lines += ["", f"### Sampling with classifier-free guidance: seconds per video (extrapolated from a timed "
                  f"{args.sample_steps}-step DDIM loop; one batched 2B forward per step; speed-up per model "
                  "evaluation vs official at batch 1; VAE decode not included)", "",
              "| config | path | batch | s/step | " + " | ".join(SAMPLERS) + " | speed-up | peak mem GiB |",
              "|---|---|---|---|" + "---|" * len(SAMPLERS) + "---|---|"]
    for config in args.configs:
        base = by_key.get(("sample", config, "official", args.sample_batches[0], False, None), {})
        for spec, res in zip(specs, results):
            if spec["task"] != "sample" or spec["setup_name"] != config:
                continue
            b = spec["batch"]
            if "error" in res:
                lines.append(f"| {config} | {spec['path_name']} | {b} | skipped: {res['error']} |" + "|" * 5)
                continue
            per_video = res["seconds_per_step"] / b
            ratio = base["seconds_per_step"] / per_video if "seconds_per_step" in base else None
            lines.append(f"| {config} | {spec['path_name']} | {b} | {fmt(res['seconds_per_step'])} | "
                         + " | ".join(fmt(n * per_video) for n in SAMPLERS.values())
                         + f" | {fmt(ratio)}× | {res['peak_memory_bytes'] / GIB:.2f} |")
    lines += ["", f"### VAE ({args.vae}-shaped, random weights, float32, frame-wise; per clip, extrapolated "
                  f"from {args.vae_frames} frames)", "", "| latents | pixels | frames | encode s/clip | decode s/clip |",
              "|---|---|---|---|---|"]
    for size, res in sorted(vae.items()):
        frames = max(setups.SETUPS[c].frames for c in args.configs if setups.SETUPS[c].size == size)
        if "error" in res:
            lines.append(f"| {size}² | {8 * size}² | {frames} | skipped: {res['error']} ||")
            continue
        scale = frames / res["frames"]
        lines.append(f"| {size}² | {8 * size}² | {frames} | {fmt(res['encode_s'] * scale)} | "
                     f"{fmt(res['decode_s'] * scale)} |")
    skipped = [n for n, s in setups.SETUPS.items() if n not in args.configs]
    if skipped:
        lines += ["", f"Not run: {', '.join(skipped)} (not requested; on CPU they exceed this machine's memory "
                      "or a reasonable time: run them on a GPU)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        from measure import run_task

        result = run_task(json.loads(args.worker))
        print("RESULT " + json.dumps(result))
        return
    from tqdm import tqdm

    command = "python benchmarks/run.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    specs = plan(args)
    results = []
    bar = tqdm(specs, desc="benchmarks", unit="measurement")
    for spec in bar:
        bar.set_postfix_str(f"{spec['task']} {spec.get('setup_name', spec.get('shape'))} "
                            f"{spec.get('path_name', '')} b{spec.get('batch', '')}")
        results.append(run_measurement(spec, args.task_timeout))
        if "error" in results[-1]:
            tqdm.write(f"{spec}: {results[-1]['error']}")
    text = report(args, specs, results, command)
    print(text)
    raw = HERE / "results.jsonl"
    if not args.no_write:
        with open(args.output, "a") as f:
            f.write("\n" + text)
        with open(raw, "a") as f:
            f.write(json.dumps({"command": command, "specs": specs, "results": results}) + "\n")
        print(f"appended to {args.output} (raw numbers: {raw})")


if __name__ == "__main__":
    main()
