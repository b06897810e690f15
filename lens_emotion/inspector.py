"""Deprecated path: moved to :mod:`lens_emotion.attention.inspector` (kept for one release)."""

from lens_emotion._deprecated import reexport

reexport(__name__, "lens_emotion.attention.inspector", globals())
