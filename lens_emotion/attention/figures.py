"""Figures of the attention analysis: pure functions, result in, ``go.Figure`` out.

No files and no model: each function reads a result of :mod:`~lens_emotion.attention.patterns`,
:mod:`~lens_emotion.attention.saliency` or :mod:`~lens_emotion.attention.mass`, and the
results' ``figure()`` / ``heatmap()`` methods delegate here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from lens_emotion.attention.mass import AttentionMassResult
from lens_emotion.attention.patterns import AttentionPatterns
from lens_emotion.attention.saliency import Saliency
from lens_emotion.attention.tokens import GROUP_COLORS, GROUP_LABELS, MASS_GROUPS, AttentionError
from lens_emotion.viz.style import apply_style, ci_band

__all__ = ["mass_figure", "mass_heatmap", "patterns_figure", "saliency_figure"]


def patterns_figure(
    patterns: AttentionPatterns, index: int = 0, layer: int | None = None
) -> go.Figure:
    """Heatmap of one prompt's attention at one layer.

    Heads x key tokens for ``query="final"``; the head-averaged query x key matrix for
    ``"all"``.

    Args:
        patterns: The captured patterns.
        index: The prompt.
        layer: A captured layer (default the last one).
    """
    layer = patterns.layers[-1] if layer is None else layer
    arr = patterns.layer(index, layer)
    tokens = [f"{k}:{t}" for k, t in enumerate(patterns.tokens[index])]
    if patterns.query == "final":
        z, y = arr, [f"H{h}" for h in patterns.heads]
        title = f"Attention of the final token, layer {layer} ({patterns.ids[index]})"
    else:
        z, y = arr.mean(axis=0), tokens[len(tokens) - arr.shape[1] :]
        title = f"Attention (mean of heads), layer {layer} ({patterns.ids[index]})"
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=tokens,
            y=y,
            colorscale="Blues",
            zmin=0,
            colorbar={"title": {"text": "weight"}},
            hovertemplate="key %{x}<br>%{y}<br>weight %{z:.4f}<extra></extra>",
        )
    )
    apply_style(fig, title=title)
    fig.update_xaxes(title_text="key token", tickangle=-60, type="category")
    fig.update_yaxes(title_text="head" if patterns.query == "final" else "query token")
    return fig


def saliency_figure(saliency: Saliency, index: int = 0) -> go.Figure:
    """Bar chart of one prompt's context-token saliencies; emotion-bearing bars coloured.

    Args:
        saliency: The occlusion saliency.
        index: The prompt.
    """
    mask = saliency.emotion_mask(index)
    labels = [
        f"{p}:{t}" for p, t in zip(saliency.positions[index], saliency.tokens[index], strict=True)
    ]
    colors = [GROUP_COLORS["emotion"] if m else GROUP_COLORS["context_rest"] for m in mask]
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=saliency.values[index],
            marker_color=colors,
            hovertemplate="%{x}<br>saliency %{y:.3f}<extra></extra>",
        )
    )
    apply_style(
        fig,
        title=f"Occlusion saliency for '{saliency.predictions[index]}' ({saliency.ids[index]}); "
        "orange-red = emotion-bearing",
    )
    fig.update_xaxes(title_text="event-text token", tickangle=-60, type="category")
    fig.update_yaxes(title_text="drop in log p(prediction)")
    return fig


def mass_figure(
    result: AttentionMassResult,
    normalise: str = "total",
    groups: Sequence[str] | None = None,
) -> go.Figure:
    """Line figure: attention mass of the final token by group vs layer, with CI bands.

    Args:
        result: The attention mass.
        normalise: ``"total"`` (share of the attention; the four partition groups sum to 1)
            or ``"per_token"`` (share divided by the group's token count).
        groups: Groups to draw (default all of :data:`~.tokens.MASS_GROUPS`).

    Raises:
        AttentionError: An unknown ``normalise``.
    """
    mean, low, high = result.layer_stats(normalise)
    chosen = list(groups or MASS_GROUPS)
    fig = go.Figure()
    x = list(result.layers)
    for group in chosen:
        gi = MASS_GROUPS.index(group)
        color = GROUP_COLORS[group]
        fig.add_trace(ci_band(x, low[:, gi], high[:, gi], color, group, alpha=0.18))
        fig.add_trace(
            go.Scatter(
                x=x,
                y=mean[:, gi],
                mode="lines+markers",
                name=GROUP_LABELS[group],
                legendgroup=group,
                line={"color": color, "width": 2.5, "dash": "dot" if gi >= 4 else "solid"},
                marker={"size": 5},
                customdata=np.stack([low[:, gi], high[:, gi]], axis=1),
                hovertemplate=f"{GROUP_LABELS[group]}<br>layer %{{x}}: %{{y:.4f}}"
                "<br>95% CI %{customdata[0]:.4f}-%{customdata[1]:.4f}<extra></extra>",
            )
        )
    what = "total mass (share of attention)" if normalise == "total" else "mass per token"
    apply_style(
        fig,
        title=f"Final-token attention by token group, {what}<br><sup>{result.model_id}, "
        f"'{result.template}' prompt, n={len(result)} prompts, heads averaged, "
        f"{int(result.ci * 100)}% bootstrap CI</sup>",
    )
    fig.update_layout(
        height=580,
        margin={"t": 90, "b": 150},
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": -0.2, "yanchor": "top"},
    )
    fig.update_xaxes(title_text="layer", dtick=max(1, len(x) // 15))
    fig.update_yaxes(title_text=what, rangemode="tozero")
    return fig


def mass_heatmap(
    result: AttentionMassResult, group: str = "emotion", normalise: str = "total"
) -> go.Figure:
    """Layer x head heatmap of the final token's attention to one group, over prompts.

    Args:
        result: The attention mass.
        group: One of :data:`~.tokens.MASS_GROUPS` (default: the emotion-bearing tokens).
        normalise: ``"total"`` or ``"per_token"``.

    Raises:
        AttentionError: An unknown group or ``normalise``.
    """
    if group not in MASS_GROUPS:
        raise AttentionError(f"Unknown group {group!r}; use one of {', '.join(MASS_GROUPS)}.")
    z = result.head_mean(normalise)[..., MASS_GROUPS.index(group)]
    what = "total mass" if normalise == "total" else "mass per token"
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"H{h}" for h in result.heads],
            y=list(result.layers),
            colorscale="Viridis",
            zmin=0,
            colorbar={"title": {"text": what}},
            hovertemplate="layer %{y}, head %{x}<br>%{z:.4f}<extra></extra>",
        )
    )
    apply_style(
        fig,
        title=f"Final-token attention to {GROUP_LABELS[group]} ({what})<br><sup>"
        f"{result.model_id}, n={len(result)} prompts</sup>",
    )
    fig.update_layout(
        height=max(420, 18 * len(result.layers) + 160), width=520 + 20 * len(result.heads)
    )
    fig.update_xaxes(title_text="query head", type="category")
    fig.update_yaxes(
        title_text="layer", autorange="reversed", dtick=max(1, len(result.layers) // 15)
    )
    return fig
