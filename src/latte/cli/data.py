"""``latte data``: generate synthetic datasets on disk, scan a dataset for unusable files."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("data", help="dataset tools: generate synthetic data, scan a dataset for bad files")
    cmds = p.add_subparsers(title="data commands", metavar="DATA_COMMAND")

    g = cmds.add_parser("generate", help="write procedural moving shapes/digits as mp4 files + captions/class manifests")
    g.add_argument("out", help="output folder")
    g.add_argument("--pattern", choices=["shapes", "digits"], default="shapes", help="what moves (default shapes)")
    g.add_argument("--num-videos", type=int, default=512, help="clips in the train split (default 512)")
    g.add_argument("--num-val", type=int, default=0, help="clips in the val split (same combinations, other placements)")
    g.add_argument("--num-heldout", type=int, default=0, help="clips in the heldout split (needs --heldout)")
    g.add_argument("--heldout", nargs="*", default=[], metavar="PHRASE",
                   help="attribute combinations kept out of train/val, e.g. 'red circle' 'blue square up'")
    g.add_argument("--size", type=int, default=32, help="frame side in pixels (default 32)")
    g.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    g.add_argument("--fps", type=int, default=8, help="frame rate of the mp4 files (default 8)")
    g.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    g.add_argument("--background", choices=["black", "gray", "noise"], default="black", help="background")
    g.add_argument("--layout", choices=["flat", "classes"], default="flat",
                   help="flat: OUT/videos/<split>/*.mp4; classes: OUT/<split>/<id>_<class>/*.mp4 (UCF101-style)")
    g.set_defaults(func=run_generate)

    s = cmds.add_parser("scan", help="check every file of the configured dataset and report unusable ones by reason")
    s.add_argument("config", help="YAML file with a `data:` section (a run config works)")
    s.add_argument("--split", default="train", help="split to scan (default train)")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set data.scan=decode")
    s.add_argument("--list", action="store_true", help="also list every skipped file with its reason")
    s.set_defaults(func=run_scan)
    p.set_defaults(func=lambda args: p.print_help())


def run_generate(args) -> int:
    from latte.config import from_dict
    from latte.data.config import SyntheticConfig
    from latte.data.synthetic import export_synthetic

    syn = from_dict(SyntheticConfig, {"pattern": args.pattern, "heldout": args.heldout, "seed": args.seed,
                                      "background": args.background}, prefix="synthetic")
    if args.num_heldout and not args.heldout:
        print("latte data generate: --num-heldout needs --heldout phrases (e.g. --heldout 'red circle')")
        return 2
    counts = {"train": args.num_videos, "val": args.num_val, "heldout": args.num_heldout}
    written = export_synthetic(args.out, syn.spec(), counts, num_frames=args.frames, size=args.size,
                               seed=args.seed, fps=args.fps, layout=args.layout)
    print(f"wrote {', '.join(f'{n} {s}' for s, n in written.items())} clips to {args.out} "
          f"(manifests: captions.csv, captions.jsonl; class_names.json)")
    return 0


def load_data_config(path: str, overrides: list[str]):
    """The ``data:`` section of a YAML file (other sections are not read)."""
    from latte.config import ConfigError, apply_overrides, from_dict
    from latte.data.config import DataConfig
    from latte.io import load_yaml_mapping

    raw = load_yaml_mapping(path)
    apply_overrides(raw, overrides)
    if "data" not in raw:
        raise ConfigError(f"{path}: no `data:` section")
    try:
        return from_dict(DataConfig, raw["data"] or {}, prefix="data")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def run_scan(args) -> int:
    from latte.data.datasets import build_dataset
    from latte.data.skips import EmptyDatasetError

    cfg = load_data_config(args.config, args.overrides)
    try:
        dataset = build_dataset(cfg, split=args.split, use_cache=False)
    except EmptyDatasetError as e:
        print(f"latte data scan: {e}")
        return 1
    counter = getattr(dataset, "counter", None)
    if counter is None:  # synthetic data has nothing to scan
        print(f"{cfg.kind}: {len(dataset)} items (generated, nothing to scan)")
        return 0
    if args.list:
        for path, reason in sorted(counter.reasons.items()):
            print(f"{reason}\t{path}")
    print(counter.summary(len(dataset)))
    if getattr(dataset, "class_names", None):
        print(f"{len(dataset.class_names)} classes: {', '.join(dataset.class_names[:10])}"
              + (" ..." if len(dataset.class_names) > 10 else ""))
    return 0
