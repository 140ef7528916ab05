"""``latte quickstart``: the offline CPU demo (see :mod:`latte.quickstart`)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("quickstart", help="train and sample a small text-to-video Latte on synthetic data "
                                          "(CPU, offline, ~10 min on 2 cores; resumable)")
    p.add_argument("--out", default="quickstart_out", help="output folder (default quickstart_out)")
    p.add_argument("--budget", choices=["full", "smoke"], default="full",
                   help="'smoke' runs every stage with a handful of steps (a test of the path, not of quality)")
    p.add_argument("--cascade", action="store_true",
                   help="then the LaVie cascade on top: train tiny x4 interpolation and x4 super-resolution stages, "
                        "run base -> interp -> vsr and add a section to the report (~10 min more; "
                        "latte.quickstart_cascade)")
    p.add_argument("--extras", action="store_true",
                   help="then personalisation (a new colour from 64 stills, LoRA) and frame conditioning "
                        "(image-to-video, 32-frame extension) on the quickstart's model, with the bars and GIFs in a "
                        "section of the report (latte.quickstart_extras; ~30+ min more on 2 cores, mostly the "
                        "3000-step frame-conditioned fine-tune)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars in any stage (the training stages still print their log lines)")
    p.set_defaults(func=run)


def run(args) -> int:
    from latte.quickstart import Quickstart

    if args.no_progress:  # also the weight-loading bars of transformers (MiniLM)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    qs = Quickstart(args.out, budget=args.budget, progress=not args.no_progress)
    stages = qs.run()
    ev = stages["eval"]
    print("\nattribute accuracy (all attributes right): training combinations "
          f"{ev['accuracy_train']['joint']:.1%}, held-out combinations {ev['accuracy_heldout']['joint']:.1%}")
    print(f"synthetic FVD {ev['synthetic_fvd']:.3f} (real-vs-real baseline {ev['synthetic_fvd_real_baseline']:.3f})")
    gen, real = ev["temporal_generated"], ev["temporal_real"]
    print(f"temporal consistency: frame change {gen['frame_change']:.4f} (real {real['frame_change']:.4f}), "
          f"flicker {gen['flicker']:.4f} (real {real['flicker']:.4f})")
    print(f"\nreport:  {qs.out / 'report.md'}\nvideos:  {qs.paths['samples']}\nmodel:   {qs.paths['latte']}")
    print(f"sample again:  latte sample --checkpoint {qs.paths['latte']} --prompt \"a yellow square moving up\" "
          f"--out {qs.out / 'more'} --format mp4,gif --steps {qs.budget.sampling_steps} "
          f"--cfg-scale {qs.budget.cfg_scale:g} --sampler ddim")
    if args.cascade:
        from latte.quickstart_cascade import CascadeQuickstart, cascade_bars

        cq = CascadeQuickstart(args.out, budget=args.budget, progress=not args.no_progress)
        cq.run()
        _print_bars("cascade (base -> x4 interpolation -> x4 super-resolution)", cascade_bars(cq))
        print(f"cascade videos: {cq.paths['samples']}\nreport section: {cq.out / 'report_cascade.md'}")
    if args.extras:
        from latte.quickstart_extras import ExtrasQuickstart, extras_bars

        eq = ExtrasQuickstart(args.out, budget=args.budget, progress=not args.no_progress)
        eq.run()
        _print_bars("extras (personalisation, frame conditioning)", extras_bars(eq))
        print(f"extras work files: {eq.paths['work']}\nreport section: {eq.out / 'report_extras.md'}")
    return 0


def _print_bars(title: str, bars) -> None:
    """``(measure, value, bar, met)`` rows as ``measure: value (bar: met / NOT met)`` lines under ``title``."""
    print(f"\n{title}:")
    for measure, value, bar, met in bars:
        print(f"  {measure}: {value} ({bar}: {'met' if met else 'NOT met'})")
