"""Chart types shared by several analyses: the confusion matrix and label distributions."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import no_type_check

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lens_emotion.viz.style import (
    EMOTION_ORDER,
    LabelCounts,
    PlotInputError,
    apply_style,
    emotion_color,
)

__all__ = ["confusion_figure", "label_distribution_figure"]


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def confusion_figure(
    confusion: np.ndarray,
    label_names: Sequence[str],
    normalize: bool = True,
    title: str | None = None,
) -> go.Figure:
    """Heatmap of a confusion matrix: rows are human labels, columns are predictions.

    With ``normalize=True`` the colour is each row's share (rows sum to 1; an all-zero row
    stays all zero rather than becoming NaN) and each cell shows the share and the raw count.
    Hover text always gives the human label, the prediction, the count, the row share and the
    row total.

    Args:
        confusion: Square ``(n, n)`` array of non-negative counts; ``confusion[i, j]`` is the
            number of items with human label ``i`` predicted as ``j``.
        label_names: The ``n`` label names, in row/column order.
        normalize: Colour by row share (``True``) or by raw count (``False``).
        title: Figure title.

    Returns:
        The styled heatmap figure.

    Raises:
        PlotInputError: If the matrix is not square, does not match ``label_names``, or holds
            negative or non-finite values.
    """
    counts = np.asarray(confusion)
    labels = [str(name) for name in label_names]
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise PlotInputError(
            f"confusion matrix must be square 2-D (n, n), got shape {counts.shape}; pass the "
            "output of sklearn.metrics.confusion_matrix or an equivalent counts array."
        )
    if counts.shape[0] != len(labels):
        raise PlotInputError(
            f"confusion matrix is {counts.shape[0]}x{counts.shape[1]} but {len(labels)} label "
            "names were given; pass one name per row/column, in the matrix's order."
        )
    if counts.shape[0] == 0:
        raise PlotInputError("confusion matrix is empty; pass at least one label.")
    if len(set(labels)) != len(labels):
        raise PlotInputError(
            f"label names repeat: {labels}; pass each label once, in the matrix's order."
        )
    if counts.dtype == np.bool_ or not np.issubdtype(counts.dtype, np.number):
        raise PlotInputError(
            f"confusion matrix must hold numbers, got dtype {counts.dtype}; pass counts."
        )
    if np.iscomplexobj(counts):
        raise PlotInputError("confusion matrix holds complex numbers; pass real counts.")
    counts = counts.astype(float)
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise PlotInputError(
            "confusion matrix holds negative, NaN or infinite values; pass non-negative counts."
        )

    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros_like(counts), where=row_totals > 0)
    z = shares if normalize else counts

    integral = bool(np.all(counts == np.round(counts)))
    count_text = (
        [[f"{int(v):d}" for v in row] for row in counts]
        if integral
        else [[f"{v:.4g}" for v in row] for row in counts]
    )
    if normalize:
        cell_text = [
            [f"{share:.2f}<br>({count})" for share, count in zip(srow, crow, strict=True)]
            for srow, crow in zip(shares, count_text, strict=True)
        ]
    else:
        cell_text = count_text

    n = len(labels)
    customdata = np.empty((n, n, 3), dtype=object)
    for i in range(n):
        total = row_totals[i, 0]
        total_text = f"{int(total):d}" if integral else f"{total:.4g}"
        for j in range(n):
            customdata[i, j] = (count_text[i][j], f"{shares[i, j]:.1%}", total_text)

    cell_font_size = 12 if n <= 8 else 10 if n <= 14 else 8
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=labels,
            text=cell_text,
            texttemplate="%{text}",
            textfont={"size": cell_font_size},
            customdata=customdata,
            hovertemplate=(
                "human: %{y}<br>predicted: %{x}<br>count: %{customdata[0]}"
                "<br>share of row: %{customdata[1]}<br>row total: %{customdata[2]}<extra></extra>"
            ),
            colorscale="Blues",
            zmin=0.0,
            zmax=1.0 if normalize else max(float(counts.max()), 1.0),
            colorbar={"title": {"text": "row share" if normalize else "count"}},
            xgap=1,
            ygap=1,
        )
    )
    apply_style(fig, title=title)
    side = int(min(max(60 * n + 220, 420), 1100))
    fig.update_layout(width=side + 90, height=side)
    fig.update_xaxes(
        title_text="Predicted label",
        type="category",
        tickangle=-45,
        showline=False,
        showgrid=False,
        ticks="",
    )
    fig.update_yaxes(
        title_text="Human label",
        type="category",
        autorange="reversed",
        scaleanchor="x",
        scaleratio=1,
        showline=False,
        showgrid=False,
        ticks="",
    )
    return fig


_SERIES_PATTERNS: tuple[str, ...] = ("", "/", "x", ".", "\\", "+", "-", "|")
_SERIES_OPACITY: tuple[float, ...] = (1.0, 0.75)


def _as_counts(name: str, counts: object) -> dict[str, float]:
    if isinstance(counts, pd.Series):
        items = list(counts.items())
    elif isinstance(counts, Mapping):
        items = list(counts.items())
    else:
        raise PlotInputError(
            f"counts for {name!r} must be a mapping label -> count or a pandas Series, got "
            f"{type(counts).__name__}; e.g. pass df['label'].value_counts()."
        )
    out: dict[str, float] = {}
    for label, value in items:
        if isinstance(value, bool) or not isinstance(value, Real):
            raise PlotInputError(
                f"count for label {label!r} in {name!r} is {value!r}, not a number; pass counts."
            )
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise PlotInputError(
                f"count for label {label!r} in {name!r} is {value!r}; counts must be finite "
                "and non-negative."
            )
        key = str(label)
        out[key] = out.get(key, 0.0) + value
    return out


def _is_count_container(value: object) -> bool:
    return isinstance(value, pd.Series | Mapping)


@no_type_check  # validates its input itself, with clear errors
def label_distribution_figure(
    counts_by_label: LabelCounts | Mapping[str, LabelCounts],
    title: str | None = None,
    *,
    normalize: bool = False,
    label_order: Sequence[str] | None = None,
) -> go.Figure:
    """Bar chart of how often each label occurs, coloured by :data:`EMOTION_COLORS`.

    Pass one set of counts for a single distribution, or a mapping of series name to counts
    to compare several side by side (grouped bars), e.g. human labels vs model predictions::

        label_distribution_figure({"human": df.label.value_counts(),
                                   "predicted": df.prediction.value_counts()}, normalize=True)

    Bars keep their emotion colour in every series; series are told apart by fill pattern
    (the first is solid) and by a legend entry each.

    Args:
        counts_by_label: ``{label: count}`` or a :class:`pandas.Series` indexed by label, or
            ``{series_name: {label: count} | Series}`` for several series.
        title: Figure title.
        normalize: Plot each series' share (each series sums to 1) instead of raw counts;
            useful when series have different totals. Hover shows both either way.
        label_order: Order of the bars. Defaults to the 13 crowd-enVENT labels in
            :data:`EMOTION_ORDER` order (those present), then any other labels alphabetically.
            Labels listed here but absent from the data are shown with zero height.

    Returns:
        The styled bar chart.

    Raises:
        PlotInputError: If the input is empty, mixes counts and series, or holds non-numeric,
            negative or non-finite counts.
    """
    if isinstance(counts_by_label, pd.Series):
        series = {"count": _as_counts("count", counts_by_label)}
        single = True
    elif isinstance(counts_by_label, Mapping):
        if not counts_by_label:
            raise PlotInputError("no counts given; pass at least one label with its count.")
        values = list(counts_by_label.values())
        nested = [_is_count_container(v) for v in values]
        if all(nested):
            series = {str(k): _as_counts(str(k), v) for k, v in counts_by_label.items()}
            single = False
        elif not any(nested):
            series = {"count": _as_counts("count", counts_by_label)}
            single = True
        else:
            raise PlotInputError(
                "counts mix plain numbers and nested series; pass either {label: count} or "
                "{series_name: {label: count}} (e.g. {'human': ..., 'predicted': ...})."
            )
    else:
        raise PlotInputError(
            f"counts must be a mapping or pandas Series, got {type(counts_by_label).__name__}."
        )

    present = {label for s in series.values() for label in s}
    if not present:
        raise PlotInputError("no labels in the counts; pass at least one label with its count.")
    if label_order is None:
        canonical = [label for label in EMOTION_ORDER if label in present]
        order = canonical + sorted(present - set(canonical))
    else:
        order = [str(label) for label in label_order]
        if len(set(order)) != len(order):
            raise PlotInputError("label_order lists a label twice; list each label once.")
        missing = sorted(present - set(order))
        if missing:
            raise PlotInputError(
                f"label_order leaves out labels present in the data: {missing}; add them to "
                "label_order or drop them from the counts."
            )

    colors = [emotion_color(label) for label in order]
    fig = go.Figure()
    for k, (name, counts) in enumerate(series.items()):
        raw = np.array([counts.get(label, 0.0) for label in order], dtype=float)
        total = raw.sum()
        shares = raw / total if total > 0 else np.zeros_like(raw)
        y = shares if normalize else raw
        raw_text = [f"{int(v):d}" if v == round(v) else f"{v:.4g}" for v in raw]
        customdata = np.array(
            [(t, f"{s:.1%}") for t, s in zip(raw_text, shares, strict=True)], dtype=object
        )
        pattern = _SERIES_PATTERNS[k % len(_SERIES_PATTERNS)]
        prefix = "" if single else f"{html.escape(name)}<br>"
        fig.add_trace(
            go.Bar(
                x=order,
                y=y,
                name=name,
                customdata=customdata,
                hovertemplate=(
                    prefix + "%{x}<br>count: %{customdata[0]}<br>share: %{customdata[1]}"
                    "<extra></extra>"
                ),
                marker={
                    "color": colors,
                    "line": {"color": "#333333", "width": 0.8},
                    "pattern": {"shape": pattern, "fgcolor": "#333333", "solidity": 0.25},
                    "opacity": _SERIES_OPACITY[min(k, len(_SERIES_OPACITY) - 1)],
                },
                legendgroup=f"series-{k}",
                showlegend=False,
            )
        )
        if not single:
            # Legend-only swatch in neutral grey, so the legend explains the pattern rather
            # than showing the colour of whichever emotion happens to come first.
            fig.add_trace(
                go.Bar(
                    x=[None],
                    y=[None],
                    name=name,
                    marker={
                        "color": "#DDDDDD",
                        "line": {"color": "#333333", "width": 0.8},
                        "pattern": {"shape": pattern, "fgcolor": "#333333", "solidity": 0.25},
                    },
                    legendgroup=f"series-{k}",
                    showlegend=True,
                    hoverinfo="skip",
                )
            )

    apply_style(fig, title=title)
    fig.update_layout(barmode="group", bargap=0.2, bargroupgap=0.05, height=450)
    fig.update_xaxes(
        title_text="Label", type="category", categoryorder="array", categoryarray=order
    )
    fig.update_yaxes(
        title_text="Share" if normalize else "Count",
        tickformat=".0%" if normalize else None,
        rangemode="tozero",
    )
    return fig
