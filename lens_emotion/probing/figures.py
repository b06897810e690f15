"""Figures of the probing analyses: result tables in, Plotly figures out (pure).

Each :mod:`lens_emotion.probing` result's ``figure()`` (and ``EmotionProbeResult.heatmap``)
calls one of these. Nothing here fits a probe or writes a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale

from lens_emotion.probing.store import ProbeError
from lens_emotion.viz.style import PlotInputError, apply_style, site_color

if TYPE_CHECKING:
    from lens_emotion.probing.appraisals import AlignmentResult

__all__ = [
    "SITE_LABELS",
    "alignment_figure",
    "appraisal_r2_figure",
    "emotion_accuracy_figure",
    "ordered_sites",
    "position_accuracy_figure",
    "site_color",
    "site_label",
    "site_layer_heatmap",
]

#: Readable names of TransformerLens sites, as used in figures.
SITE_LABELS: dict[str, str] = {
    "attn_out": "MHSA (attn_out)",
    "mlp_out": "FFN (mlp_out)",
    "resid_mid": "mid-block residual (resid_mid)",
    "resid_post": "hidden (resid_post)",
    "z": "attention heads (z)",
}
_SITE_ORDER = ("attn_out", "mlp_out", "resid_mid", "resid_post", "z")


def site_label(site: str) -> str:
    """Readable figure name of a site, e.g. ``"MHSA (attn_out)"``; unknown sites unchanged."""
    return SITE_LABELS.get(site, site)


def ordered_sites(sites: Sequence[str]) -> list[str]:
    """Sites in figure order: attn_out, mlp_out, resid_mid, resid_post, z, then the rest."""
    known = [s for s in _SITE_ORDER if s in sites]
    return known + [s for s in dict.fromkeys(sites) if s not in known]


def emotion_accuracy_figure(
    table: pd.DataFrame,
    n_folds: int | str = "?",
    position: int = -1,
    title: str | None = None,
) -> go.Figure:
    """Grouped bars of CV accuracy per layer, one bar per site (MHSA, FFN, hidden).

    Error bars are the sd over folds; the shuffled-label control of each site is a short
    dark tick on its bar, and the majority-class baseline a dashed line.

    Args:
        table: An emotion-probe table (``EmotionProbeResult.table``).
        n_folds: CV folds, for the default title.
        position: Token position probed, for the default title.
        title: Figure title (default: says folds, rows and position).
    """
    layers = sorted(table["layer"].unique())
    fig = go.Figure()
    for i, site in enumerate(ordered_sites(list(table["site"].unique()))):
        rows = table[table["site"] == site].set_index("layer").reindex(layers)
        name = site_label(site)
        fig.add_trace(
            go.Bar(
                x=layers,
                y=rows["accuracy_mean"],
                error_y={"type": "data", "array": rows["accuracy_sd"], "thickness": 1},
                name=name,
                marker_color=site_color(site, i),
                offsetgroup=site,
                legendgroup=site,
                customdata=np.stack(
                    [rows["accuracy_sd"], rows["macro_f1"], rows["selectivity"]], axis=1
                ),
                hovertemplate=(
                    f"{name}<br>layer %{{x}}<br>accuracy %{{y:.3f}} ± %{{customdata[0]:.3f}}"
                    "<br>macro-F1 %{customdata[1]:.3f}<br>selectivity %{customdata[2]:.3f}"
                    "<extra></extra>"
                ),
            )
        )
        fig.add_trace(
            go.Scatter(
                x=layers,
                y=rows["shuffled_control"],
                mode="markers",
                name=f"shuffled control, {name}",
                marker={
                    "symbol": "line-ew-open",
                    "size": 10,
                    "line": {"width": 2.5, "color": "#222222"},
                    "color": "#222222",
                },
                offsetgroup=site,
                legendgroup=site,
                showlegend=i == 0,
                hovertemplate=(
                    f"{name}<br>layer %{{x}}<br>shuffled-label control %{{y:.3f}}<extra></extra>"
                ),
            )
        )
    if len(fig.data) > 1:
        fig.data[1].name = "shuffled-label control"
    majority = table.groupby("layer")["majority_baseline"].mean().reindex(layers)
    fig.add_trace(
        go.Scatter(
            x=layers,
            y=majority,
            mode="lines",
            name="majority baseline",
            line={"color": "#555555", "dash": "dash", "width": 1.5},
            hovertemplate="majority baseline %{y:.3f}<extra></extra>",
        )
    )
    n = int(table["n"].max()) if len(table) else 0
    default_title = (
        f"Emotion probe accuracy by layer ({n_folds}-fold CV, n={n}, position {position})"
    )
    apply_style(fig, title=title or default_title)
    fig.update_layout(
        barmode="group",
        scattermode="group",
        bargap=0.15,
        height=520,
        margin={"t": 130},
        legend={"x": 0.0, "xanchor": "left", "y": 1.02, "yanchor": "bottom"},
    )
    fig.update_xaxes(title_text="layer", tickmode="array", tickvals=layers)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02])
    return fig


def site_layer_heatmap(
    table: pd.DataFrame, metric: str = "accuracy_mean", title: str | None = None
) -> go.Figure:
    """Sites x layers heatmap of one numeric column of an emotion-probe table.

    Args:
        table: An emotion-probe table (one row per site and layer).
        metric: The column shown; accuracies are drawn on a fixed ``[0, 1]`` scale.
        title: Figure title (default: ``"<metric> by site and layer"``).
    """
    sites = ordered_sites(list(table["site"].unique()))
    grid = table.pivot(index="site", columns="layer", values=metric).reindex(sites)
    bounded = metric in ("accuracy_mean", "macro_f1", "majority_baseline", "shuffled_control")
    fig = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=[str(c) for c in grid.columns],
            y=[site_label(s) for s in sites],
            colorscale="Viridis",
            zmin=0.0 if bounded else None,
            zmax=1.0 if bounded else None,
            text=np.vectorize(lambda v: f"{v:.2f}")(grid.to_numpy()),
            texttemplate="%{text}",
            textfont={"size": 9},
            colorbar={"title": {"text": metric}},
            hovertemplate="%{y}<br>layer %{x}<br>" + metric + " %{z:.3f}<extra></extra>",
        )
    )
    apply_style(fig, title=title or f"{metric} by site and layer")
    fig.update_layout(height=160 + 60 * len(sites))
    fig.update_xaxes(title_text="layer", type="category", showgrid=False)
    fig.update_yaxes(type="category", autorange="reversed", showgrid=False)
    return fig


def position_accuracy_figure(
    table: pd.DataFrame, site: str = "", title: str | None = None
) -> go.Figure:
    """Accuracy vs layer, one line per token position (error bars: sd over folds).

    Args:
        table: A position-probe table (``PositionProbeResult.table``).
        site: The probed site, for the default title.
        title: Figure title.
    """
    positions = sorted(table["position"].unique())
    colors = sample_colorscale("Viridis", np.linspace(0.0, 0.85, max(len(positions), 2)))
    fig = go.Figure()
    for i, pos in enumerate(positions):
        rows = table[table["position"] == pos].sort_values("layer")
        name = "last token (-1)" if pos == -1 else f"position {pos}"
        fig.add_trace(
            go.Scatter(
                x=rows["layer"],
                y=rows["accuracy_mean"],
                error_y={"type": "data", "array": rows["accuracy_sd"], "thickness": 1},
                mode="lines+markers",
                name=name,
                line={"color": colors[i], "width": 3 if pos == -1 else 1.8},
                hovertemplate=f"{name}<br>layer %{{x}}<br>accuracy %{{y:.3f}}<extra></extra>",
            )
        )
    majority = table.groupby("layer")["majority_baseline"].mean().sort_index()
    fig.add_trace(
        go.Scatter(
            x=majority.index,
            y=majority.to_numpy(),
            mode="lines",
            name="majority baseline",
            line={"color": "#555555", "dash": "dash", "width": 1.5},
        )
    )
    apply_style(fig, title=title or f"Emotion probe accuracy by token position, {site_label(site)}")
    fig.update_layout(height=460)
    fig.update_xaxes(title_text="layer", tickmode="array", tickvals=sorted(majority.index))
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02])
    return fig


def appraisal_r2_figure(
    table: pd.DataFrame,
    appraisal_names: Sequence[str],
    site: str = "resid_post",
    highlight: Sequence[str] = ("pleasantness",),
    title: str | None = None,
) -> go.Figure:
    """Cross-validated R² vs layer at one site, one line per appraisal.

    Appraisals in ``highlight`` are drawn thick and dark; the others thin, in a
    qualitative palette. Hover shows R² ± sd.

    Args:
        table: An appraisal-probe table (``AppraisalProbeResult.table``).
        appraisal_names: Appraisals, in line order.
        site: The site shown.
        highlight: Appraisals drawn thick.
        title: Figure title.

    Raises:
        PlotInputError: No probes at ``site``.
    """
    at_site = table[table["site"] == site]
    if at_site.empty:
        raise PlotInputError(
            f"no appraisal probes at site {site!r}; probed sites: {sorted(table['site'].unique())}."
        )
    palette = qualitative.Dark24
    fig = go.Figure()
    for i, name in enumerate(appraisal_names):
        rows = at_site[at_site["appraisal"] == name].sort_values("layer")
        strong = name in highlight
        fig.add_trace(
            go.Scatter(
                x=rows["layer"],
                y=rows["r2_mean"],
                mode="lines+markers" if strong else "lines",
                name=name,
                line={
                    "color": "#111111" if strong else palette[i % len(palette)],
                    "width": 4 if strong else 1.4,
                },
                opacity=1.0 if strong else 0.75,
                customdata=rows["r2_sd"],
                hovertemplate=(
                    f"{name}<br>layer %{{x}}<br>R² %{{y:.3f}} ± %{{customdata:.3f}}<extra></extra>"
                ),
            )
        )
    apply_style(fig, title=title or f"Appraisal probes: cross-validated R², {site_label(site)}")
    fig.update_layout(
        height=520,
        legend={"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1.0, "yanchor": "top"},
    )
    fig.update_xaxes(
        title_text="layer", tickmode="array", tickvals=sorted(at_site["layer"].unique())
    )
    fig.update_yaxes(title_text="R² (test folds)", zeroline=True, zerolinecolor="#999999")
    return fig


def alignment_figure(
    result: AlignmentResult,
    layer: int | None = None,
    zmax: float | None = None,
    title: str | None = None,
) -> go.Figure:
    """Emotions x appraisals cosine heatmap with a slider over layers.

    One heatmap per layer; the slider shows one at a time. The diverging colour scale is
    centred at 0 and symmetric, ``[-zmax, zmax]`` with ``zmax`` the largest absolute
    cosine over all layers unless given.

    Args:
        result: The :class:`~lens_emotion.probing.appraisals.AlignmentResult`.
        layer: Layer shown first; default the last compared layer.
        zmax: Colour-scale limit; default the largest ``|cosine|``.
        title: Figure title prefix.

    Raises:
        ProbeError: ``layer`` was not compared.
    """
    shown = result.layers[-1] if layer is None else int(layer)
    if shown not in result.layers:
        raise ProbeError(f"layer {layer} was not compared; compared layers: {list(result.layers)}.")
    limit = zmax if zmax is not None else float(np.nanmax(np.abs(result.table["cosine"])))
    limit = max(limit, 1e-6)
    head = title or f"Emotion vs appraisal probe directions, {site_label(result.site)}"
    fig = go.Figure()
    for layer_ in result.layers:
        grid = result.matrix(layer_)
        fig.add_trace(
            go.Heatmap(
                z=grid.to_numpy(),
                x=list(result.appraisal_names),
                y=list(result.emotion_names),
                zmin=-limit,
                zmax=limit,
                zmid=0.0,
                colorscale="RdBu_r",
                visible=layer_ == shown,
                name=f"layer {layer_}",
                colorbar={"title": {"text": "cosine"}},
                xgap=1,
                ygap=1,
                hovertemplate=(
                    f"layer {layer_}<br>emotion %{{y}}<br>appraisal %{{x}}"
                    "<br>cosine %{z:.3f}<extra></extra>"
                ),
            )
        )
    steps = []
    for i, layer_ in enumerate(result.layers):
        visible = [j == i for j in range(len(result.layers))]
        steps.append(
            {
                "method": "update",
                "label": str(layer_),
                "args": [{"visible": visible}, {"title.text": f"{head}, layer {layer_}"}],
            }
        )
    apply_style(fig, title=f"{head}, layer {shown}")
    fig.update_layout(
        sliders=[
            {
                "active": result.layers.index(shown),
                "currentvalue": {"prefix": "layer "},
                "pad": {"t": 170},
                "steps": steps,
            }
        ],
        height=560 + 24 * len(result.emotion_names),
        width=max(760, 300 + 34 * len(result.appraisal_names)),
        margin={"b": 60},
    )
    fig.update_xaxes(title_text="appraisal", type="category", tickangle=-45, showgrid=False)
    fig.update_yaxes(title_text="emotion", type="category", autorange="reversed", showgrid=False)
    return fig
