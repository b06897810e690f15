"""The shared visual layer: one style, one colour per emotion, offline export, pages and views.

- :mod:`lens_emotion.viz.style`: :func:`apply_style`, :func:`emotion_color`, :func:`ci_band`.
- :mod:`lens_emotion.viz.charts`: figures several analyses share (confusion, label counts).
- :mod:`lens_emotion.viz.export`: :func:`write_figure` (HTML, PNG/SVG/PDF), page fragments.
- :mod:`lens_emotion.viz.circuitsvis`: CircuitsVis views that render offline.
- :mod:`lens_emotion.viz.report`: the self-contained HTML report page.
"""

from lens_emotion.viz.charts import confusion_figure, label_distribution_figure
from lens_emotion.viz.export import (
    STATIC_FORMATS,
    figure_html_fragment,
    write_figure,
    write_figure_or_html,
)
from lens_emotion.viz.style import (
    EMOTION_COLORS,
    EMOTION_ORDER,
    PLOTLY_CONFIG,
    LabelCounts,
    PlotInputError,
    StaticExportError,
    apply_style,
    ci_band,
    emotion_color,
    rgba,
)

__all__ = [
    "EMOTION_COLORS",
    "EMOTION_ORDER",
    "PLOTLY_CONFIG",
    "STATIC_FORMATS",
    "LabelCounts",
    "PlotInputError",
    "StaticExportError",
    "apply_style",
    "ci_band",
    "confusion_figure",
    "emotion_color",
    "figure_html_fragment",
    "label_distribution_figure",
    "rgba",
    "write_figure",
    "write_figure_or_html",
]
