"""What every demo step receives: one :class:`StepContext` instead of seven arguments."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from lens_emotion.demo.config import DemoConfig

if TYPE_CHECKING:
    from lens_emotion.data import EmotionDataset
    from lens_emotion.models import EmotionModel


class StepContext(NamedTuple):
    """The arguments every demo step shares, unpacked at the top of each step.

    Attributes:
        model: The loaded :class:`~lens_emotion.models.EmotionModel`.
        dataset: The rows the step runs on (crowd-enVENT; the SEV prompts for circuits).
        config: The demo's :class:`~lens_emotion.demo.config.DemoConfig`.
        out: The demo's output folder (each step writes a subfolder).
        report: The :class:`~lens_emotion.viz.report.Report` the step adds its section to.
        progress: Show progress bars and step timings.
        seed: The demo's seed.
    """

    model: EmotionModel
    dataset: EmotionDataset
    config: DemoConfig
    out: Path
    report: Any
    progress: bool
    seed: int
