"""The error every part of :mod:`lens_emotion.geometry` raises for bad input."""

from __future__ import annotations

from lens_emotion.errors import LensEmotionError

__all__ = ["GeometryError"]


class GeometryError(LensEmotionError, ValueError):
    """Bad input to an emotion-geometry analysis (the message names the fix)."""
