"""Figures of attribution patching: result in, ``go.Figure`` out (nothing written, no model).

- :func:`estimates_figure`: mean AtP estimate against layer, one line per site.
- :func:`comparison_figure`: AtP estimate against the real single-layer patch effect.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lens_emotion.attribution.atp import HEAD_SITE, AttributionError
from lens_emotion.viz.style import SITE_COLORS, apply_style, ci_band, site_color

if TYPE_CHECKING:
    from lens_emotion.attribution.atp import AttributionResult
    from lens_emotion.attribution.compare import PatchingComparison

__all__ = ["SITE_COLORS", "comparison_figure", "estimates_figure"]


def estimates_figure(result: AttributionResult, title: str | None = None) -> go.Figure:
    """Mean AtP estimate against layer, one line per site (band: ±1 standard error).

    Args:
        result: The AtP estimates.
        title: Figure title (default: says what is drawn and over how many pairs).

    Returns:
        The figure.
    """
    fig = go.Figure()
    x = list(result.layers)
    sem_scale = 1.0 / math.sqrt(max(1, result.n_pairs))
    for k, site in enumerate(result.sites):
        values = result.site_effects[:, k]
        mean, sem = values.mean(axis=0), values.std(axis=0, ddof=0) * sem_scale
        color = site_color(site)
        fig.add_trace(ci_band(x, mean - sem, mean + sem, color, name=site, alpha=0.15))
        fig.add_trace(
            go.Scatter(
                x=x,
                y=mean,
                mode="lines+markers",
                name=site,
                legendgroup=site,
                line={"color": color},
            )
        )
    apply_style(
        fig,
        title
        or f"Attribution patching: estimated change of the logit difference ({result.n_pairs} "
        "pairs, last token)",
    )
    fig.update_xaxes(title_text="layer")
    fig.update_yaxes(title_text="AtP estimate: Δ logit diff (source − target label)")
    return fig


def comparison_figure(
    comparison: PatchingComparison, title: str | None = None, level: str = "mean"
) -> go.Figure:
    """Scatter of AtP estimate against the real patch effect, coloured by site.

    Left panel: per-layer sites; right panel: heads. The dashed line is ``y = x``; legend
    entries and panel titles give Pearson ``r`` and Spearman ``ρ`` at the same level.

    Args:
        comparison: AtP next to real patching.
        title: Figure title.
        level: ``"mean"`` (one point per component, mean over pairs) or ``"pair"`` (one
            point per pair and component).

    Returns:
        The figure.

    Raises:
        AttributionError: Unknown level, or ``"pair"`` without per-pair real effects.
    """
    if level not in {"mean", "pair"}:
        raise AttributionError(f"level must be 'mean' or 'pair', not {level!r}.")
    data = comparison.points if level == "mean" else comparison.pair_points
    if data is None:
        raise AttributionError("No per-pair real effects were given; use level='mean'.")

    def corr_text(key: str) -> str:
        c = comparison.correlations.get(key, {})
        c = c.get("per_pair", {}) if level == "pair" else c
        return f"r={c.get('pearson', math.nan):.2f}, ρ={c.get('spearman', math.nan):.2f}"

    panels = [("sites", data[data.site != HEAD_SITE])]
    if (data.site == HEAD_SITE).any():
        panels.append((HEAD_SITE, data[data.site == HEAD_SITE]))
    titles = [
        f"{'heads (hook_z)' if key == HEAD_SITE else 'sites'}: {corr_text(key)}"
        for key, _ in panels
    ]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=titles)
    size = 7 if level == "mean" else 4
    for col, (_, rows) in enumerate(panels, start=1):
        for site, group in rows.groupby("site", sort=False):
            label = "head (hook_z)" if site == HEAD_SITE else f"{site} ({corr_text(site)})"
            heads = group["head"].astype("float").fillna(-1).astype(int)
            pair = group["pair"] if "pair" in group else [None] * len(group)
            hover = [
                f"{site} L{layer}"
                + (f" H{h}" if h >= 0 else "")
                + (f" pair {p}" if p is not None else "")
                for layer, h, p in zip(group["layer"], heads, pair, strict=True)
            ]
            fig.add_trace(
                go.Scatter(
                    x=group["patch_effect"],
                    y=group["atp_effect"],
                    mode="markers",
                    name=label,
                    text=hover,
                    marker={
                        "color": site_color(site),
                        "size": size,
                        "opacity": 0.85 if level == "mean" else 0.5,
                    },
                    hovertemplate="%{text}<br>patch %{x:.3f}<br>AtP %{y:.3f}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        lo = float(min(rows.patch_effect.min(), rows.atp_effect.min()))
        hi = float(max(rows.patch_effect.max(), rows.atp_effect.max()))
        fig.add_trace(
            go.Scatter(
                x=[lo, hi],
                y=[lo, hi],
                mode="lines",
                line={"dash": "dash", "color": "#888888"},
                showlegend=False,
                hoverinfo="skip",
            ),
            row=1,
            col=col,
        )
        what = "mean over pairs" if level == "mean" else "per pair"
        fig.update_xaxes(title_text=f"real patch: Δ logit diff ({what})", row=1, col=col)
        fig.update_yaxes(title_text="AtP estimate", row=1, col=col)
    n = int(comparison.cost.get("n_pairs", 0))
    apply_style(
        fig,
        title or f"Attribution patching vs single-layer activation patching ({n} pairs)",
    )
    fig.update_layout(
        width=520 * len(panels) + 80,
        height=600,
        legend={"y": -0.16, "yanchor": "top", "x": 0.5, "xanchor": "center"},
        margin={"b": 120},
    )
    return fig
