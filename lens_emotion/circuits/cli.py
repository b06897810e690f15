"""Deprecated: the ``circuits`` command moved to :mod:`lens_emotion.cli.circuits`."""

import warnings

from lens_emotion.cli.circuits import add_parser, run

warnings.warn(
    "lens_emotion.circuits.cli moved to lens_emotion.cli.circuits", DeprecationWarning, stacklevel=2
)

__all__ = ["add_parser", "run"]
