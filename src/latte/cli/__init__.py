"""The ``latte`` command.

Every module in this package that defines ``register(subparsers)`` adds one subcommand; ``register`` must
import heavy dependencies lazily (inside the command's handler) so that ``latte --help`` stays fast.
A handler is attached with ``parser.set_defaults(func=handler)`` and receives the parsed ``argparse.Namespace``;
it returns an exit code (or None for 0).

Errors: a handler raises; :func:`main` prints a user error (:func:`user_errors`: config, input file, output
folder problems, whose messages name what is wrong) as one line ``latte <cmd>: error: <message>`` with exit code 2
and no traceback. A command whose every ``ValueError`` is about its arguments (sampling, evaluation) opts in with
``parser.set_defaults(user_value_errors=True)``. ``--debug`` anywhere on the line, or ``LATTE_DEBUG=1``, shows
the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from latte import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latte",
        description="Latte video diffusion: train, sample and evaluate latent video transformers.",
    )
    parser.add_argument("--version", action="version", version=f"latte-video {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: environment variable LATTE_DEBUG=1)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is the whole story (it names the file/key/value and what was expected): the CLI
    prints them as one line instead of a traceback. Everything else is a bug and keeps its traceback."""
    from latte.config import ConfigError
    from latte.data.skips import EmptyDatasetError
    from latte.io import InputError, OutputError
    from latte.training.guard import NonFiniteError

    return (ConfigError, InputError, OutputError, EmptyDatasetError, NonFiniteError, FileNotFoundError,
            NotADirectoryError, IsADirectoryError, PermissionError)


def _command_name(parser: argparse.ArgumentParser, argv: list[str]) -> str:
    """``latte data scan`` -> ``"data scan"``: the subcommand words of ``argv``."""
    words = []
    for token in argv:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or token not in actions[0].choices:
            if token.startswith("-"):
                continue
            break
        words.append(token)
        parser = actions[0].choices[token]
    return " ".join(words)


def main(argv: list[str] | None = None) -> int:
    """Run the ``latte`` command. A user error (:func:`user_errors`) prints ``latte <cmd>: error: <message>`` and
    returns 2; ``--debug`` (or ``LATTE_DEBUG=1``) re-raises it with its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("LATTE_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]  # accepted anywhere on the line, not only before the command
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("latte: interrupted", file=sys.stderr)
        return 130
    except (ValueError, *user_errors()) as e:
        if debug or not (isinstance(e, user_errors()) or getattr(args, "user_value_errors", False)):
            raise
        name = _command_name(parser, argv)
        message = str(e) if not isinstance(e, OSError) or not e.filename else _os_message(e)
        print(f"latte{' ' + name if name else ''}: error: {message}", file=sys.stderr)
        return 2
    return int(code or 0)


def _os_message(e: OSError) -> str:
    """``[Errno 2] No such file or directory: 'x'`` -> ``x: No such file or directory``."""
    return f"{e.filename}: {e.strerror or e}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
