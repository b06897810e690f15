"""The one-command demo (``lens-emotion demo``): every analysis, one offline report page."""

from lens_emotion.demo.config import DemoConfig
from lens_emotion.demo.runner import run_demo

__all__ = ["DemoConfig", "run_demo"]
