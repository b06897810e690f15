"""Error types.

Every user-facing failure is a :class:`LensEmotionError` with a message that names the problem
and the fix; the CLI prints it without a traceback.
"""


class LensEmotionError(Exception):
    """Base class for errors caused by bad input or environment, not by bugs."""


class DataError(LensEmotionError, ValueError):
    """A dataset file is missing, malformed, or holds invalid values."""


class ModelLoadError(LensEmotionError, OSError):
    """A model spec cannot be resolved or loaded."""


class LabelTokenError(LensEmotionError, ValueError):
    """Labels cannot be mapped to distinct scored tokens."""


class TemplateError(LensEmotionError, ValueError):
    """A prompt template is unknown or cannot be applied to this model."""
