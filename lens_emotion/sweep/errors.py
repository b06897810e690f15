"""Errors of the sweep package (its lowest module)."""

from __future__ import annotations

from lens_emotion.errors import LensEmotionError

__all__ = ["SweepConfigError", "SweepError"]


class SweepError(LensEmotionError, ValueError):
    """A sweep cannot run as asked: a bad option, output folder or runner choice."""


class SweepConfigError(SweepError):
    """A sweep config is invalid; the message has one line per bad field, naming the fix."""
