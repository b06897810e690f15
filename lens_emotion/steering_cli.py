"""Deprecated: the ``steer`` command moved to :mod:`lens_emotion.cli.steer`."""

import warnings

from lens_emotion.cli.steer import add_parser, run

warnings.warn(
    "lens_emotion.steering_cli moved to lens_emotion.cli.steer", DeprecationWarning, stacklevel=2
)

__all__ = ["add_parser", "run"]
