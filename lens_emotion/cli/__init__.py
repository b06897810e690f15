"""The ``lens-emotion`` command line (one module per command; see :mod:`.main`)."""

from lens_emotion.cli.main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
