"""Step caching vs fewer steps: model evaluations, wall time and fidelity / quality, in one run.

    OMP_NUM_THREADS=1 python benchmarks/bench_cache.py random --setup S/2 --frames 4 --size 8
    OMP_NUM_THREADS=1 python benchmarks/bench_cache.py unet
    python benchmarks/bench_cache.py random --device cuda --setup XL/2 --frames 16 --size 32 --reference ddim:50
    python benchmarks/bench_cache.py random --device cuda --dtype float16 --setup T2V --frames 16 --size 64 \
        --reference ddim:50
    OMP_NUM_THREADS=1 python benchmarks/bench_cache.py quickstart --run /work/qs_main
    python benchmarks/bench_cache.py plot            # benchmarks/cache_speed_quality.png from the results

``random``: a random-weight Latte (``benchmarks/setups.py``), class-conditional, CFG 4, latents only. The
reference is the official sampler (DDPM-250) uncached; every row is timed in the same process and reports
model evaluations (calls that ran the transformer blocks), the speed-up vs the reference in process CPU time
(1 thread: robust to other jobs on a shared machine) and in wall time, and the relative L2 difference of the
final latents from the reference's (same seeds).

``unet``: the tiny LaVie U-Nets (base, interpolation, super-resolution: 2 levels, the weights of the
official-parity test fixtures) and a narrow random-init U-Net with the LaVie base layout (4 levels, 2 ResBlocks
each, 8 × 16² latents), DeepCache intervals vs DDIM-50 uncached, with the same fewer-step baselines.

``quickstart``: the quickstart's trained text-to-video model. The reference is DDIM-50 / CFG 4 uncached
(``--reference``); for
every setting it samples the quickstart's prompt sets (training and held-out combinations), then evaluates
them as ``latte quickstart``'s eval stage does (joint attribute accuracy on both sets, synthetic FVD).

Raw rows go to ``benchmarks/cache_results.jsonl``; the plot to ``benchmarks/cache_speed_quality.png``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "cache_results.jsonl"
PLOT = HERE / "cache_speed_quality.png"

import torch  # noqa: E402

from latte.sampling import LattePipeline  # noqa: E402


def settings(reference: tuple[str, int], thresholds: list[float], fewer: list[int]) -> list[dict]:
    """The rows: the reference uncached, the reference with each threshold, and DDIM / DPM-Solver++ fewer-step
    baselines (uncached)."""
    sampler, steps = reference
    rows = [dict(sampler=sampler, steps=steps, cache="none")]
    rows += [dict(sampler=sampler, steps=steps, cache=f"teacache:{t:g}") for t in thresholds]
    for name in ("ddim", "dpm-solver"):
        rows += [dict(sampler=name, steps=n, cache="none") for n in fewer if (name, n) != (sampler, steps)]
    return rows


RUN = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")  # this process's rows


def _stamp() -> dict:
    return {"run": RUN, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared), torch {torch.__version__}, "
                       f"{torch.get_num_threads()} thread(s)"}


def _warm_up(betas) -> None:
    """Import diffusers and build a scheduler once, so the first diffusers row is not charged for it."""
    from latte.sampling.cache import count_model_calls

    count_model_calls("dpm-solver", 10, betas)


def _computed(records: list[dict], calls_uncached: int) -> float:
    """Mean model evaluations per video (blocks run): the cache's count, or every call when uncached."""
    done = [r.get("cache_computed_calls", calls_uncached) for r in records]
    return sum(done) / len(done)


class RandomText:
    """Stand-in text encoder for speed runs of text-to-video models: fixed random features ``(B, 120, dim)``."""

    def __init__(self, dim: int, length: int = 120):
        self.dim, self.length = dim, length

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        return (torch.randn(len(prompts), self.length, self.dim, generator=g),
                torch.ones(len(prompts), self.length, dtype=torch.bool))

    def null_embedding(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(1, self.length, self.dim), torch.ones(1, self.length, dtype=torch.bool)

    def identity(self) -> dict:
        return {"kind": "random-features", "dim": self.dim}


def bench_random(args) -> list[dict]:
    from setups import PATHS, Setup, build_model

    from latte.sampling.cache import count_model_calls

    text = args.setup == "T2V"  # Latte-1 text-to-video: stand-in text features
    model_cfg = dict(preset="Latte-T2V") if text else dict(preset=f"Latte-{args.setup}", conditioning="class",
                                                            num_classes=101)
    setup = Setup(f"{args.setup}-f{args.frames}-s{args.size}", model_cfg, frames=args.frames, size=args.size)
    device = torch.device(args.device)
    model = build_model(setup, PATHS["sdpa"], device)
    pipe = LattePipeline(model, text_encoder=RandomText(model.config.text_dim) if text else None, device=device,
                         dtype=args.dtype)
    _warm_up(pipe.betas)
    kw = dict(seed=0, cfg_scale=4.0, output_type="latent", progress=False, batch_size=args.videos)
    kw.update(prompts=["a video"] * args.videos) if text else kw.update(classes=list(range(args.videos)))
    rows, reference = [], None
    sampler, steps = (args.reference or "ddpm:250").split(":")
    for row in settings((sampler, int(steps)), args.thresholds, args.fewer):
        start, cpu = time.perf_counter(), time.process_time()
        out = pipe(sampler=row["sampler"], steps=row["steps"], cache=row["cache"], **kw)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        calls = count_model_calls(row["sampler"], row["steps"], pipe.betas)
        if reference is None:
            reference = (out.videos, seconds, cpu)
        rel = ((out.videos - reference[0]).norm() / reference[0].norm()).item()
        # CPU: process CPU time (1 thread, robust to other jobs); GPU: wall time
        speedup = reference[2] / cpu if device.type == "cpu" else reference[1] / seconds
        result = {"bench": "random", "model": setup.name, "device": str(device), **row, "model_calls": calls,
                  "evaluations": _computed(out.records, calls), "seconds": seconds, "cpu_seconds": cpu,
                  "seconds_per_video": seconds / args.videos, "speedup": speedup,
                  "wall_speedup": reference[1] / seconds, "rel_diff": rel, **_stamp()}
        rows.append(result)
        print(json.dumps(result), flush=True)
    return rows


def bench_unet(args) -> list[dict]:
    """DeepCache on the tiny LaVie U-Nets (weights of the official-parity fixtures), DDIM-50 reference."""
    from latte.official import load_lavie
    from latte.sampling import sample_loop
    from latte.sampling.cache import count_model_calls, parse_cache
    from latte.sampling.sources import linear_betas

    from latte.models import UNet3D, unet3d_preset

    betas = linear_betas()
    _warm_up(betas)
    rows = []
    for stage in ("base", "interp", "vsr", "base-4-levels"):
        if stage == "base-4-levels":  # the LaVie base layout (4 levels, 2 ResBlocks each), narrow, random init
            torch.manual_seed(0)
            model = UNet3D(unet3d_preset("lavie-base", block_out_channels=(64, 128, 128, 128), num_heads=2,
                                         cross_attention_dim=64)).eval()
            d = {"x": torch.randn(1, 4, 8, 16, 16), "encoder_hidden_states": torch.randn(1, 8, 64)}
        else:
            d = torch.load(HERE.parent / "tests" / "fixtures" / "reference" / f"lavie_{stage}_tiny.pt",
                           weights_only=True)
            model = load_lavie({"ema": d["state_dict"]} if stage == "vsr" else d["state_dict"], stage,
                               d["config"]).model.eval()
        text = d["encoder_hidden_states"]
        x = d["x"] if "x" in d else d["x_t"]
        kw = {"low_res": d["low_res"], "class_labels": d["noise_level"]} if stage == "vsr" else {}
        cond = d.get("cond")  # interpolation: condition latents concatenated on C
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        prediction = "v_prediction" if stage == "vsr" else "epsilon"
        grid = [dict(sampler="ddim", steps=50, cache="none")]
        grid += [dict(sampler="ddim", steps=50, cache=f"deepcache:{n}") for n in args.intervals]
        grid += [dict(sampler=name, steps=n, cache="none") for name in ("ddim", "dpm-solver") for n in args.fewer
                 if (name, n) != ("ddim", 50)]
        reference = None
        for row in grid:
            calls = count_model_calls(row["sampler"], row["steps"], betas)
            cache = parse_cache(row["cache"])
            forward = cache.session(model, x.shape[0], calls) if cache else model

            def model_fn(xt, t):
                return forward(xt if cond is None else torch.cat([xt, cond], dim=1), t, text, **kw)

            start, cpu = time.perf_counter(), time.process_time()
            out = sample_loop(model_fn, noise, row["sampler"], row["steps"], betas, learn_sigma=False,
                              prediction_type=prediction)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            if reference is None:
                reference = (out, seconds, cpu)
            result = {"bench": "unet", "model": f"tiny lavie-{stage} {tuple(x.shape)}", **row, "model_calls": calls,
                      "evaluations": float(forward.computed[0]) if cache else float(calls), "seconds": seconds,
                      "cpu_seconds": cpu, "speedup": reference[2] / cpu, "wall_speedup": reference[1] / seconds,
                      "rel_diff": ((out - reference[0]).norm() / reference[0].norm()).item(), **_stamp()}
            rows.append(result)
            print(json.dumps(result), flush=True)
    return rows


def bench_quickstart(args) -> list[dict]:
    from latte.quickstart import Quickstart
    from latte.sampling.cache import count_model_calls
    from latte.sampling.outputs import save_videos

    qs = Quickstart(out=args.run, budget=args.budget, progress=False, log=lambda _: None)
    if args.per_combo:  # fewer videos per combination than the quickstart's eval (faster, noisier)
        qs.budget = dataclasses.replace(qs.budget, samples_per_combo=args.per_combo[0],
                                        heldout_per_combo=args.per_combo[1])
    checkpoint = args.checkpoint or qs.paths["latte"]
    pipe = LattePipeline.from_run(checkpoint)
    prompt_sets = qs._prompt_sets()
    _warm_up(pipe.betas)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_cache_"))
    rows, reference = [], None
    sampler, steps = (args.reference or "ddim:50").split(":")
    for row in settings((sampler, int(steps)), args.thresholds, args.fewer):
        name = f"{row['sampler']}{row['steps']}-{row['cache'].replace(':', '')}"
        qs.paths = {**qs.paths, "samples": work / name, "eval": work / name / "eval"}
        seconds, cpu, records = 0.0, 0.0, []
        for split, prompts in prompt_sets.items():
            start, cpu0 = time.perf_counter(), time.process_time()
            out = pipe(prompts=prompts, seed=0 if split == "train" else 100_000, sampler=row["sampler"],
                       steps=row["steps"], cfg_scale=4.0, batch_size=32, progress=False, cache=row["cache"])
            seconds, cpu = seconds + time.perf_counter() - start, cpu + time.process_time() - cpu0
            records += out.records
            save_videos(out, qs.paths["samples"] / split, formats=("mp4",), fps=4)
        calls = count_model_calls(row["sampler"], row["steps"], pipe.betas)
        quality = qs.stage_eval()
        if reference is None:
            reference = (seconds, cpu)
        result = {"bench": "quickstart", "model": str(checkpoint), **row, "model_calls": calls,
                  "evaluations": _computed(records, calls), "seconds": seconds, "cpu_seconds": cpu,
                  "speedup": reference[1] / cpu, "wall_speedup": reference[0] / seconds,
                  "videos": len(records), "accuracy_train": quality["accuracy_train"]["joint"],
                  "accuracy_heldout": quality["accuracy_heldout"]["joint"],
                  "synthetic_fvd": quality["synthetic_fvd"], "accuracy_train_all": quality["accuracy_train"],
                  "accuracy_heldout_all": quality["accuracy_heldout"],
                  **_stamp()}
        rows.append(result)
        print(json.dumps(result), flush=True)
    return rows


def plot(path: Path = PLOT) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    panels = [("random", "rel_diff", "Latte-S/2 (random weights): rel. difference\nfrom the uncached reference",
               ""),
              ("unet", "rel_diff", "LaVie-base layout U-Net (4 levels, narrow):\nrel. difference from uncached DDIM-50",
               "4-levels"),
              ("quickstart", "synthetic_fvd", "quickstart T2V model: synthetic FVD", ""),
              ("quickstart", "accuracy_train", "quickstart: joint accuracy, training combinations", ""),
              ("quickstart", "accuracy_heldout", "quickstart: joint accuracy, held-out combinations", "")]
    panels = [p for p in panels if any(r["bench"] == p[0] and p[1] in r for r in rows)]
    cols = min(3, len(panels))
    rows_n = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.2 * cols, 4 * rows_n), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (bench, key, title, model) in zip(axes.flat, panels):
        chosen = _latest([r for r in rows if r["bench"] == bench and key in r and model in r["model"]])
        for label, pick, marker in (("step cache", lambda r: r["cache"] != "none", "o"),
                                    ("DDIM, fewer steps", lambda r: r["cache"] == "none" and r["sampler"] == "ddim"
                                     and r["speedup"] != 1.0, "s"),
                                    ("DPM-Solver++, fewer steps",
                                     lambda r: r["cache"] == "none" and r["sampler"] == "dpm-solver", "^"),
                                    ("uncached reference",
                                     lambda r: r["speedup"] == 1.0 and r["cache"] == "none", "*")):
            pts = sorted((r for r in chosen if pick(r)), key=lambda r: r["speedup"])
            if not pts:
                continue
            ax.plot([r["speedup"] for r in pts], [r[key] for r in pts], marker=marker, label=label)
            for r in pts:
                tag = r["cache"].split(":", 1)[1] if r["cache"] != "none" else str(r["steps"])
                ax.annotate(tag, (r["speedup"], r[key]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        if key == "rel_diff":
            ax.set_yscale("symlog", linthresh=1e-4)
            ax.set_ylim(0, 3 * max(r[key] for r in chosen))
        ax.set_xlabel("speed-up vs uncached reference (process CPU time, 1 thread)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def _latest(rows: list[dict]) -> list[dict]:
    """The rows of the latest run (one process of this script)."""
    last = max(r["run"] for r in rows)
    return [r for r in rows if r["run"] == last]


def table(bench: str) -> str:
    """A markdown table of the latest run of ``bench``."""
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    rows = _latest([r for r in rows if r["bench"] == bench])
    extra = ["accuracy_train", "accuracy_heldout", "synthetic_fvd"] if bench == "quickstart" else ["rel_diff"]
    head = ["setting", "model calls", "evaluations / video", "CPU s", "speed-up (CPU)", "wall s",
            "speed-up (wall)", *extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        name = f"{r['sampler']}-{r['steps']}" + ("" if r["cache"] == "none" else f" + {r['cache']}")
        name = f"{r['model']}: {name}" if bench == "unet" else name
        vals = [name, str(r["model_calls"]), f"{r['evaluations']:.1f}", f"{r['cpu_seconds']:.1f}",
                f"{r['speedup']:.2f}x", f"{r['seconds']:.1f}", f"{r['wall_speedup']:.2f}x",
                *(f"{r[k]:.4f}" if k == "rel_diff" else f"{r[k]:.3f}" for k in extra)]
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", choices=["random", "unet", "quickstart", "plot", "table"])
    ap.add_argument("--setup", default="S/2", help="random: Latte preset (S/2, B/2, XL/2 class-conditional; T2V: "
                                                 "Latte-1 text-to-video with stand-in text features)")
    ap.add_argument("--device", default="cpu", help="random: cpu or cuda (GPU speed-ups use wall time)")
    ap.add_argument("--dtype", default="float32", help="random: float16/bfloat16 on CUDA")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--size", type=int, default=8, help="latent height/width")
    ap.add_argument("--videos", type=int, default=1, help="random: videos per batch")
    ap.add_argument("--thresholds", default="0,0.05,0.1,0.2,0.3")
    ap.add_argument("--fewer", default="10,20,25,50", help="fewer-step baselines (DDIM and DPM-Solver++)")
    ap.add_argument("--intervals", default="1,2,3,5", help="unet: DeepCache full-step intervals")
    ap.add_argument("--run", default="/work/qs_main", help="quickstart output folder")
    ap.add_argument("--checkpoint", default=None, help="quickstart: a checkpoint directory of the run (default: "
                                                       "the latest)")
    ap.add_argument("--reference", default=None, help="the uncached reference SAMPLER:STEPS (default: ddpm:250 "
                                                     "random, ddim:50 quickstart)")
    ap.add_argument("--per-combo", default=None, help="quickstart: videos per training,held-out combination "
                                                      "(default: the quickstart's 6,8)")
    ap.add_argument("--budget", default="full", help="quickstart: the budget the run was made with (prompt sets)")
    ap.add_argument("--work", default=None, help="quickstart: folder for the sampled videos (default: a temp dir)")
    ap.add_argument("--table-of", default="random", help="table: which bench")
    args = ap.parse_args()
    args.thresholds = [float(x) for x in args.thresholds.split(",") if x]
    args.fewer = [int(x) for x in args.fewer.split(",") if x]
    args.intervals = [int(x) for x in args.intervals.split(",") if x]
    args.per_combo = [int(x) for x in args.per_combo.split(",")] if args.per_combo else None
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.bench == "plot":
        return plot()
    if args.bench == "table":
        return print(table(args.table_of))
    rows = {"random": bench_random, "unet": bench_unet, "quickstart": bench_quickstart}[args.bench](args)
    with open(RESULTS, "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(table(args.bench))


if __name__ == "__main__":
    main()
