"""The ``latte`` command.

Every module in this package that defines ``register(subparsers)`` adds one subcommand; ``register`` must
import heavy dependencies lazily (inside the command's handler) so that ``latte --help`` stays fast.
A handler is attached with ``parser.set_defaults(func=handler)`` and receives the parsed ``argparse.Namespace``;
it returns an exit code (or None for 0).
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from latte import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latte",
        description="Latte video diffusion: train, sample and evaluate latent video transformers.",
    )
    parser.add_argument("--version", action="version", version=f"latte-video {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from latte.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    try:
        code = args.func(args)
    except ConfigError as e:
        print(f"latte: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("latte: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
