"""Training-free long videos on the quickstart model: do 4x-length videos keep their prompt in every window, and
are there jumps where windows meet?

    OMP_NUM_THREADS=1 python benchmarks/bench_long_video.py --run quickstart_out/latte \
        --classifier quickstart_out/classifier [--factor 4] [--videos-per-prompt 1] [--out long_video.json]

For every training combination of the synthetic data ("a red circle moving left", ...), videos of the trained
length (8 frames) and of ``factor`` x that length are sampled with the same prompts and seeds (DDIM, the
quickstart's steps and guidance). The long videos come in two kinds: ``windowed`` (the default for
``--frames`` beyond the trained length: windows of the trained length every half window, fused, rescheduled
noise; :mod:`latte.sampling.long_video`) and ``full`` (``window=0``: temporal attention and position embedding
over all frames, what a plain model does beyond its length). Reported:

* attribute accuracy of the quickstart's evaluator classifier (per head and joint: every asked attribute
  right) on the 8-frame videos, and on each consecutive 8-frame segment of the long videos (frames 0-7, 8-15,
  ...), with the largest drop of a segment's joint accuracy below the 8-frame videos' (issue target: <= 5 points);
* frame-to-frame change (mean |x[t+1] - x[t]|, intensity in [0, 1]) at segment borders (7->8, 15->16, ...)
  versus inside segments, and their ratio (issue target: <= 1.5); the same at every window start (each half
  window with the default stride).

Runs on CPU in a few minutes with one thread (the quickstart model is tiny); ``--max-prompts`` shortens it.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from latte.config import from_dict
from latte.data.config import SyntheticConfig
from latte.data.synthetic import caption_for
from latte.io import load_yaml_mapping
from latte.metrics.synthetic import attribute_accuracy, load_classifier, parse_caption
from latte.quickstart_extras import segment_frame_change
from latte.sampling import LattePipeline, save_videos


def training_prompts(run: Path) -> list[str]:
    """Captions of the synthetic training combinations (held-out ones excluded), from the run's config."""
    data = load_yaml_mapping(run / "run_config.yaml", "run config")["data"]
    spec = from_dict(SyntheticConfig, data["synthetic"], prefix="data.synthetic").spec()
    return [caption_for(c) for c in spec.combinations() if not spec.is_heldout(c)]


def accuracy(detector, heads, videos: torch.Tensor, prompts: list[str]) -> dict:
    """Attribute accuracy of uint8 ``videos (N, 3, T, H, W)`` asked for ``prompts``."""
    predicted = {k: v.numpy() for k, v in detector.predict(videos).items()}
    return attribute_accuracy(predicted, [parse_caption(p, heads) for p in prompts], heads)


def frame_change(videos: torch.Tensor, segment: int) -> dict:
    """:func:`latte.quickstart_extras.segment_frame_change` of uint8 ``videos (N, 3, T, H, W)``."""
    return segment_frame_change(videos.permute(0, 2, 3, 4, 1).numpy(), segment)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="the quickstart's Latte run directory (latest checkpoint)")
    parser.add_argument("--classifier", required=True, help="the quickstart's evaluator classifier folder")
    parser.add_argument("--factor", type=int, default=4, help="long videos are FACTOR x the trained length")
    parser.add_argument("--videos-per-prompt", type=int, default=1)
    parser.add_argument("--max-prompts", type=int, default=None, help="use only the first N training prompts")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (quickstart: 25)")
    parser.add_argument("--cfg-scale", type=float, default=4.0, help="guidance (quickstart: 4)")
    parser.add_argument("--no-full", action="store_true", help="skip the full-attention (window=0) long videos")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="also write the results to this JSON file")
    parser.add_argument("--gifs", default=None, metavar="DIR",
                        help="also save the first 4 videos of each kind as GIFs (+ sidecars) in DIR/<kind>/")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    run = Path(args.run)
    pipe = LattePipeline.from_run(run)
    detector, meta = load_classifier(args.classifier)
    heads = meta["heads"]
    prompts = training_prompts(run)[:args.max_prompts] * args.videos_per_prompt
    trained = pipe.model.config.num_frames
    kw = dict(prompts=prompts, seed=0, sampler="ddim", steps=args.steps, cfg_scale=args.cfg_scale,
              batch_size=16, progress=False)

    def videos(name: str, **extra) -> torch.Tensor:
        t0 = time.perf_counter()
        out = pipe(**kw, **extra)
        print(f"  sampled {len(out)} videos {extra} in {time.perf_counter() - t0:.0f} s", flush=True)
        if args.gifs:
            save_videos(type(out)(out.videos[:4], out.records[:4]), Path(args.gifs) / name, formats=("gif",), fps=4)
        return torch.from_numpy(out.videos).permute(0, 4, 1, 2, 3)  # (N, 3, T, H, W) uint8

    results = {"run": str(run), "source": pipe.source, "trained_frames": trained, "videos": len(prompts),
               "sampler": "ddim", "steps": args.steps, "cfg_scale": args.cfg_scale}
    short = videos("short", frames=trained)
    results["short"] = {"accuracy": accuracy(detector, heads, short, prompts),
                        "frame_change": frame_change(short, trained)}
    kinds = {"windowed": {}} if args.no_full else {"windowed": {}, "full": {"window": 0}}
    for kind, extra in kinds.items():
        long = videos(kind, frames=args.factor * trained, **extra)
        segments = [accuracy(detector, heads, long[:, :, s:s + trained], prompts)
                    for s in range(0, long.shape[2], trained)]
        results[kind] = {
            "segment_accuracy": segments,
            "worst_joint_drop_points": 100 * (results["short"]["accuracy"]["joint"] - min(
                s["joint"] for s in segments)),
            "frame_change": frame_change(long, trained),
            # every window starts (and another ends) each stride frames: the change there vs elsewhere
            "frame_change_at_window_starts": frame_change(long, max(1, trained // 2))}
    results["seconds"] = time.perf_counter() - start

    print(f"\n{len(prompts)} prompts, {trained}-frame model, {args.factor * trained}-frame videos, DDIM {args.steps}, "
          f"guidance {args.cfg_scale}")
    print(f"{'videos':<28}{'joint accuracy':<40}{'change inside':>14}{'at borders':>12}{'ratio':>8}")
    fc = results["short"]["frame_change"]
    print(f"{f'{trained} frames':<28}{results['short']['accuracy']['joint']:<40.3f}{fc['inside']:>14.4f}")
    for kind in kinds:
        r = results[kind]
        acc = " ".join(f"{s['joint']:.3f}" for s in r["segment_accuracy"])
        fc = r["frame_change"]
        print(f"{f'{args.factor * trained} frames, {kind}':<28}{acc:<40}{fc['inside']:>14.4f}{fc['border']:>12.4f}"
              f"{fc['border_over_inside']:>8.2f}")
        edges = r["frame_change_at_window_starts"]["border_over_inside"]
        print(f"{'':<28}worst segment: {r['worst_joint_drop_points']:+.1f} points below {trained}-frame videos; "
              f"change at every window start (each {max(1, trained // 2)} frames) / elsewhere: {edges:.2f}")
    print(f"total {results['seconds']:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
