"""The error type of the emotion-circuit analyses."""

from __future__ import annotations

from lens_emotion.errors import LensEmotionError


class CircuitError(LensEmotionError, ValueError):
    """Bad input to an emotion-circuit analysis (shapes, emotions, components, sizes).

    The message names the problem and the fix; the CLI turns it into exit status 2.
    """
