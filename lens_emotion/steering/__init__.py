"""Appraisal steering: unique-effect vectors, sweeps, emotion promotion, theory checks."""

from lens_emotion.steering.sweeps import *  # noqa: F403
from lens_emotion.steering.sweeps import __all__  # noqa: F401
