"""The ``lens-emotion`` command line: a thin layer over the library's workflows.

Each command is a module of :mod:`lens_emotion.cli` with ``add_parser(sub)`` and
``run(args) -> int``; shared option parsing lives in :mod:`lens_emotion.cli.common`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from lens_emotion.cli.common import OneLineParser, join_signed_values
from lens_emotion.errors import LensEmotionError

__all__ = ["COMMANDS", "build_parser", "main"]

#: Command name -> module under :mod:`lens_emotion.cli`.
COMMANDS: dict[str, str] = {
    "models": "models",
    "data": "data",
    "infer": "infer",
    "probe": "probe",
    "inspect": "inspect",
    "patch": "patch",
    "attribute": "attribute",
    "steer": "steer",
    "circuits": "circuits",
    "geometry": "geometry",
    "figures": "figures",
    "demo": "demo",
    "sweep": "sweep",
}


def _module(command: str):  # noqa: ANN202 - a command module
    return importlib.import_module(f"lens_emotion.cli.{COMMANDS[command]}")


def build_parser() -> OneLineParser:
    """Build the argument parser for all sub-commands."""
    parser = OneLineParser(
        prog="lens-emotion",
        description="Mechanistic interpretability of emotion inference in LLMs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for command in COMMANDS:
        _module(command).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lens-emotion``; returns the exit status.

    Options are parsed and checked before any data is read or any model loaded: a bad value
    exits with status 2 and one line naming the option and a valid example.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(join_signed_values(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return _module(args.command).run(args)
    except LensEmotionError as exc:
        print(f"lens-emotion: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lens-emotion: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
