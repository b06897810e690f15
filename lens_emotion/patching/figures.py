"""Figures of activation patching: transfer curves, head heatmap, ablations, control task.

Pure: a result's table (or effect map) in, a :class:`plotly.graph_objects.Figure` out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from jaxtyping import Float
from plotly.subplots import make_subplots

from lens_emotion.viz.style import SITE_COLORS, apply_style, ci_band, site_color

__all__ = [
    "SITE_COLORS",
    "SITE_LABELS",
    "ablation_figure",
    "head_heatmap",
    "transfer_figure",
]


SITE_LABELS: dict[str, str] = {
    "attn_out": "MHSA (attn_out)",
    "mlp_out": "FFN (mlp_out)",
    "resid_post": "hidden state (resid_post)",
}
"""Legend name of each patched site."""


def transfer_figure(
    table: pd.DataFrame,
    title: str = "Activation patching: transfer rate",
    control: pd.DataFrame | None = None,
) -> go.Figure:
    """Transfer rate against center layer, one line per site, with 95% CI bands.

    Args:
        table: A :attr:`~lens_emotion.patching.PatchingResult.table`.
        title: Figure title.
        control: Optional control-task table, drawn dashed in the same colours.
    """
    fig = go.Figure()
    for frame, dash, suffix in ((table, "solid", ""), (control, "dash", " - control task")):
        if frame is None:
            continue
        for site in frame.site.unique():
            rows = frame[frame.site == site].sort_values("center_layer")
            color = site_color(site)
            name = SITE_LABELS.get(site, site) + suffix
            x = rows.center_layer.to_numpy()
            fig.add_trace(
                ci_band(
                    x,
                    rows.transfer_ci_low.to_numpy(),
                    rows.transfer_ci_high.to_numpy(),
                    color,
                    name,
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=rows.transfer,
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    line={"color": color, "dash": dash, "width": 2.5},
                    marker={"size": 6},
                    customdata=np.stack(
                        [rows.transfer_ci_low, rows.transfer_ci_high, rows.mean_logit_diff_change],
                        axis=-1,
                    ),
                    hovertemplate="layer %{x}: transfer %{y:.2f} "
                    "[%{customdata[0]:.2f}, %{customdata[1]:.2f}]<br>"
                    "mean logit-diff change %{customdata[2]:.2f}<extra>" + name + "</extra>",
                )
            )
    span = int(table.span.iloc[0]) if len(table) else 0
    fig.update_xaxes(title_text=f"center layer (window of {span})", dtick=2)
    fig.update_yaxes(title_text="transfer rate", range=[-0.02, 1.02])
    apply_style(fig, title)
    if control is not None:  # six entries: legend under the plot, clear of the title
        _legend_below(fig)
    return fig


def _legend_below(fig: go.Figure) -> None:
    fig.update_layout(
        legend={"orientation": "h", "y": -0.16, "yanchor": "top", "x": 0.0, "xanchor": "left"},
        margin={"b": 140},
    )


def head_heatmap(
    effects: Float[np.ndarray, "n_layers n_heads"],
    layers: Sequence[int],
    title: str = "Head patching: mean change in logit difference",
) -> go.Figure:
    """Layer x head heatmap of mean logit-difference changes (diverging, centred at 0)."""
    limit = float(np.abs(effects).max()) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=effects,
            x=[f"H{h}" for h in range(effects.shape[1])],
            y=list(layers),
            colorscale="RdBu_r",
            zmin=-limit,
            zmax=limit,
            colorbar={"title": "Δ logit diff"},
            hovertemplate="layer %{y}, head %{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="query head")
    fig.update_yaxes(title_text="layer", autorange=True)
    fig.update_layout(height=max(420, 18 * len(layers) + 160))
    return apply_style(fig, title)


def ablation_figure(table: pd.DataFrame, title: str = "Ablation: prediction kept") -> go.Figure:
    """Kept rate against center layer: one panel per ablation mode, one line per site."""
    modes = list(table["mode"].unique())
    fig = make_subplots(
        rows=1, cols=len(modes), shared_yaxes=True, subplot_titles=[f"{m} ablation" for m in modes]
    )
    for col, mode in enumerate(modes, start=1):
        for site in table.site.unique():
            rows = table[(table["mode"] == mode) & (table.site == site)].sort_values("center_layer")
            color = site_color(site)
            name = SITE_LABELS.get(site, site)
            x = rows.center_layer.to_numpy()
            band = ci_band(
                x, rows.kept_ci_low.to_numpy(), rows.kept_ci_high.to_numpy(), color, name
            )
            fig.add_trace(band, row=1, col=col)
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=rows.kept,
                    mode="lines",
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    line={"color": color, "width": 2.5},
                    hovertemplate="layer %{x}: kept %{y:.2f}<extra>" + name + "</extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="center layer", row=1, col=col)
    fig.update_yaxes(title_text="prediction kept", range=[-0.02, 1.02], row=1, col=1)
    fig.update_layout(width=max(900, 380 * len(modes)))
    apply_style(fig, title)
    _legend_below(fig)
    return fig
