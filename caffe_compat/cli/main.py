"""``caffe-compat``: Caffe's ``caffe`` tool plus info, convert, zoo and the recipes.

Each subcommand lives in ``caffe_compat/cli/cmd_<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
User errors (missing file, syntax error, corrupt file, unknown layer) print one line
and exit with status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Optional, Sequence

from caffe_compat.errors import CaffeCompatError

USER_ERRORS = (CaffeCompatError, FileNotFoundError, IsADirectoryError, PermissionError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caffe-compat",
        description="Run Caffe prototxt/caffemodel work on MXNet Gluon with Caffe's numbers.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import caffe_compat.cli as cli_pkg
    for mod in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if mod.name.startswith("cmd_"):
            importlib.import_module(f"caffe_compat.cli.{mod.name}").register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        if args.debug:
            raise
        msg = str(exc)
        if isinstance(exc, OSError) and exc.filename:
            msg = f"{exc.filename}: {exc.strerror}"
        msg = "; ".join(part.strip() for part in msg.splitlines() if part.strip())
        print(f"caffe-compat {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
