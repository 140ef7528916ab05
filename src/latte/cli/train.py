"""``latte train CONFIG [--set key=value ...] [--resume [RUN_DIR|CHECKPOINT]]``."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("train", help="train a Latte model or a LaVie cascade stage from a run config (YAML)",
                       description="Train a Latte video diffusion model, or a LaVie cascade stage (base, "
                                   "interpolation, super-resolution: a config with a lavie: section). Launch "
                                   "with torchrun for DDP/FSDP.")
    p.add_argument("config", help="run config: a YAML file or a shipped config name (ucf101, ffs, t2v, tiny_t2v, "
                                  "lavie/base, lavie/tiny_interp, ...; see docs/training.md, docs/lavie_training.md "
                                  "and `latte config-docs`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.lr=5e-5 (repeatable; value parsed as YAML)")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN_DIR|CHECKPOINT",
                   help="continue a run exactly: its run directory (latest checkpoint) or one checkpoint "
                        "directory; without a value, train.run_dir of the config")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (log lines every train.log_every steps are still printed)")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging
    import sys

    from latte.config import ConfigError, resolve_config
    from latte.io import InputError, load_yaml_mapping
    from latte.training.config import load_run_config
    from latte.training.guard import NonFiniteError
    from latte.training.tasks.lavie import is_lavie_config, load_lavie_run_config, train_lavie
    from latte.training.trainer import train

    try:
        raw = load_yaml_mapping(resolve_config(args.config))
    except InputError as e:
        raise ConfigError(str(e)) from None
    if is_lavie_config(raw):  # a LaVie cascade stage (lavie: section)
        config = load_lavie_run_config(args.config, args.overrides)
        entry = train_lavie
    else:
        config = load_run_config(args.config, args.overrides)
        entry = train
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        result = entry(config, resume=args.resume, device=args.device, progress=args.progress)
    except NonFiniteError as e:
        print(f"latte train: {e}", file=sys.stderr)
        return 3
    except FileNotFoundError as e:
        print(f"latte train: {e}", file=sys.stderr)
        return 2
    print(f"latte train: finished at step {result.step} ({result.stopped_by}); "
          f"last checkpoint {result.last_checkpoint}")
    return 0
