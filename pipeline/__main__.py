"""``python -m pipeline <command>``: tools for looking at and checking Polyforge's datasets.

Each command lives in its stage's module and registers itself here through ``register_cli(subparsers)``
(it adds a subparser and sets ``handler``, a function of the parsed args returning the exit code), so a new
command is one more entry in COMMAND_MODULES.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = ("pipeline.inspect", "pipeline.manifest")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register_cli(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
