"""Figures of emotion inference: pure functions, result in, Plotly figure out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lens_emotion.viz.charts import confusion_figure

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from lens_emotion.inference.scoring import InferenceResult

__all__ = ["confusion_matrix_figure"]


def confusion_matrix_figure(result: InferenceResult, normalize: bool = True) -> go.Figure:
    """Confusion-matrix heatmap of an inference result's scored rows.

    Rows are human labels, columns predictions (:func:`lens_emotion.viz.confusion_figure`);
    the title names the template, the calibration, accuracy, macro-F1 and the row count.

    Args:
        result: An :class:`~lens_emotion.inference.InferenceResult`.
        normalize: Colour by each row's share (``True``) or by raw count.

    Returns:
        The styled heatmap.
    """
    title = (
        f"{result.template} prompt, {result.calibration or 'uncalibrated'}: "
        f"accuracy {result.accuracy:.2f}, macro-F1 {result.macro_f1:.2f} (n={len(result)})"
    )
    return confusion_figure(result.confusion, result.label_names, normalize=normalize, title=title)
