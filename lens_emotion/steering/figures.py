"""Figures for steering sweeps: stacked emotion bars against beta, and Sankey diagrams.

* :func:`stacked_bars_figure`: for one combo and layer, the emotion distribution at each beta
  as stacked bars, the steered direction beside the random-direction control.
* :func:`sankey_figure`: how each text's predicted (or judged) emotion moves from the most
  negative beta, through the clean run, to the most positive beta.
* :func:`promotion_figure`: emotion promotion's ``delta_p`` against beta, per emotion and
  layer, beside the random-direction control.

Every function is pure: a table or sweep in, a :class:`plotly.graph_objects.Figure` out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lens_emotion.steering.sweeps import SweepOutcome
from lens_emotion.steering.vectors import SteeringError
from lens_emotion.viz.style import apply_style, ci_band, emotion_color, rgba

__all__ = ["promotion_figure", "sankey_figure", "stacked_bars_figure"]

_OUTCOME_AXIS = {
    "readout": "mean readout probability",
    "generation": "share of generations (judge, emotion words masked)",
}


def stacked_bars_figure(
    table: pd.DataFrame,
    combo: str,
    layer: int,
    outcome: str = "generation",
    title: str | None = None,
) -> go.Figure:
    """Stacked emotion proportions against beta: steered (left) and random control (right).

    Args:
        table: :attr:`lens_emotion.steering.SweepOutcome.table`.
        combo: Combo to show.
        layer: Centre layer to show.
        outcome: ``"readout"`` or ``"generation"`` (axis wording).
        title: Figure title.

    Raises:
        SteeringError: The combo/layer is not in the table.
    """
    rows = table[(table["appraisal_combo"] == combo) & (table["layer"] == int(layer))]
    if rows.empty:
        raise SteeringError(
            f"no rows for combo {combo!r} at layer {layer}; the table has combos "
            f"{sorted(table['appraisal_combo'].unique())} and layers "
            f"{sorted(table['layer'].unique())}."
        )
    panels = [False, True] if rows["control"].any() else [False]
    fig = make_subplots(
        rows=1,
        cols=len(panels),
        shared_yaxes=True,
        subplot_titles=[("random direction (control)" if c else combo) for c in panels],
    )
    emotions = list(dict.fromkeys(rows["emotion"]))
    betas = sorted(rows["beta"].unique())
    labels = [f"{b:g}" for b in betas]
    for col, control in enumerate(panels, start=1):
        part = rows[rows["control"] == control]
        for emotion in emotions:
            sub = part[part["emotion"] == emotion].set_index("beta").reindex(betas)
            fig.add_trace(
                go.Bar(
                    x=labels,
                    y=sub["proportion"],
                    name=emotion,
                    legendgroup=emotion,
                    showlegend=col == 1,
                    marker_color=emotion_color(emotion),
                    customdata=np.stack([sub["ci_low"], sub["ci_high"]], axis=-1),
                    hovertemplate=(
                        f"{emotion}<br>beta %{{x}}<br>%{{y:.3f}} "
                        "(95% CI %{customdata[0]:.3f}-%{customdata[1]:.3f})<extra></extra>"
                    ),
                ),
                row=1,
                col=col,
            )
    apply_style(fig, title or f"{combo}, layer {layer}: emotion distribution against beta")
    # 13 stacked emotions: a vertical legend right of the plot, top of the stack first.
    fig.update_layout(
        barmode="stack",
        height=520,
        width=640 + 360 * (len(panels) - 1),
        legend={
            "orientation": "v",
            "x": 1.02,
            "xanchor": "left",
            "y": 1.0,
            "yanchor": "top",
            "traceorder": "reversed",
        },
        margin={"r": 140},
    )
    fig.update_xaxes(title_text="beta (steering strength)", type="category")
    fig.update_yaxes(title_text=_OUTCOME_AXIS.get(outcome, outcome), range=[0, 1.0], col=1)
    return fig


def sankey_figure(
    sweep: SweepOutcome,
    combo: str,
    layer: int,
    betas: tuple[float, float] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Per-text prediction changes: beta_low <- clean -> beta_high, as a Plotly Sankey.

    Node columns: the prediction under the most negative beta (left), the clean prediction
    (middle) and the prediction under the most positive beta (right). Each text contributes
    one unit to a left link and one to a right link.

    Args:
        sweep: A :class:`~lens_emotion.steering.SweepOutcome`.
        combo: Combo to show.
        layer: Centre layer.
        betas: ``(negative, positive)`` betas; default the extremes of the sweep.
        title: Figure title.
    """
    all_betas = [b for b in sweep.betas() if b != 0.0]
    if not all_betas:
        raise SteeringError("the sweep has no nonzero beta to draw transitions for.")
    low, high = betas if betas is not None else (min(all_betas), max(all_betas))
    names = list(sweep.label_names)
    clean = sweep.values[sweep.clean_index()].argmax(-1)
    left = sweep.select(combo, layer, low)[0].argmax(-1)
    right = sweep.select(combo, layer, high)[0].argmax(-1)
    k = len(names)
    node_labels = (
        [f"{n} (beta {low:g})" for n in names] + names + [f"{n} (beta {high:g})" for n in names]
    )
    colors = [emotion_color(n) for n in names] * 3
    sources, targets, values, link_colors = [], [], [], []
    for a, b, offset_a, offset_b in ((left, clean, 0, k), (clean, right, k, 2 * k)):
        counts = pd.crosstab(a, b)
        for i in counts.index:
            for j in counts.columns:
                if counts.loc[i, j] > 0:
                    sources.append(offset_a + int(i))
                    targets.append(offset_b + int(j))
                    values.append(int(counts.loc[i, j]))
                    link_colors.append(
                        rgba(emotion_color(names[int(i if offset_a == k else j)]), 0.35)
                    )
    fig = go.Figure(
        go.Sankey(
            arrangement="snap",
            node={"label": node_labels, "color": colors, "pad": 12, "thickness": 16},
            link={"source": sources, "target": targets, "value": values, "color": link_colors},
        )
    )
    what = "readout prediction" if sweep.outcome == "readout" else "judged emotion"
    apply_style(
        fig,
        title
        or f"{combo}, layer {layer}: {what} at beta {low:g} <- clean -> beta {high:g} "
        f"(n={len(clean)})",
    )
    fig.update_layout(height=560, width=900)
    return fig


def promotion_figure(table: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Emotion promotion's ``delta_p`` against beta: one line per emotion and layer.

    Solid lines with 95% CI bands are the emotion-probe weights ``w_e``; dotted lines of the
    same colour are the random same-norm directions (the control).

    Args:
        table: :attr:`lens_emotion.steering.PromotionResult.table`.
        title: Figure title.

    Raises:
        SteeringError: The table is empty.
    """
    if table.empty:
        raise SteeringError("the promotion table is empty; promote at least one emotion.")
    fig = go.Figure()
    for (emotion, layer), rows in table.groupby(["emotion", "layer"], sort=False):
        color = emotion_color(str(emotion))
        name = f"{emotion} (layer {layer})"
        for control in (False, True):
            part = rows[rows["control"] == control].sort_values("beta")
            if part.empty:
                continue
            label = f"{name}, random" if control else name
            if not control:
                fig.add_trace(
                    ci_band(
                        part["beta"].to_numpy(),
                        part["delta_p_ci_low"].to_numpy(),
                        part["delta_p_ci_high"].to_numpy(),
                        color,
                        name,
                    )
                )
            fig.add_trace(
                go.Scatter(
                    x=part["beta"],
                    y=part["delta_p"],
                    mode="lines+markers",
                    name=label,
                    legendgroup=name,
                    line={"color": color, "dash": "dot" if control else "solid"},
                    hovertemplate=f"{label}<br>beta %{{x:g}}<br>delta_p %{{y:.3f}}<extra></extra>",
                )
            )
    apply_style(fig, title or "Emotion promotion: normalised change of p(e) against beta")
    fig.update_xaxes(title_text="beta (multiple of w_e)")
    fig.update_yaxes(title_text="delta_p (share of the possible change)", range=[-1.0, 1.0])
    return fig
