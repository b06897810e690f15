"""Figures of the emotion-geometry analysis: result in, ``go.Figure`` out (nothing written)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from lens_emotion.viz.style import apply_style, ci_band

if TYPE_CHECKING:
    from lens_emotion.geometry.crosspaper import CrossPaperResult
    from lens_emotion.geometry.pca import PCAResult
    from lens_emotion.geometry.rsa import RSAResult
    from lens_emotion.geometry.vectors import EmotionVectorsResult

__all__ = [
    "correlation_figure",
    "crosspaper_figure",
    "pc_scatter_figure",
    "rsa_figure",
    "vector_norms_figure",
]

_COLORS = {
    "pc1_valence_r": "#1f77b4",
    "pc2_arousal_r": "#d62728",
    "text_pc1_pleasantness_rho": "#2ca02c",
    "pc1_arousal_r": "#9467bd",
    "pc2_valence_r": "#8c564b",
}


def _band(fig: go.Figure, x, low, high, color: str, name: str) -> None:
    """A CI band (:func:`lens_emotion.viz.style.ci_band`), skipped where no interval exists."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    if np.isfinite(low).any():
        fig.add_trace(ci_band(list(x), low, high, color, name))


def pc_scatter_figure(result: PCAResult, site: str, layer: int) -> go.Figure:
    """The emotions on PC1 x PC2 at one layer, coloured by human valence."""
    frame = result.scores_frame(site, layer)
    table = result.table[(result.table.site == site) & (result.table.layer == layer)]
    values = dict(zip(table.measure, table.value, strict=True))
    fig = go.Figure(
        go.Scatter(
            x=frame.pc1,
            y=frame.pc2,
            mode="markers+text",
            text=frame.emotion,
            textposition="top center",
            marker={
                "size": 14,
                "color": frame.valence,
                "colorscale": "RdBu",
                "cmid": 0.0,
                "colorbar": {"title": "human valence<br>(pleas. − unpleas.)"},
                "line": {"width": 1, "color": "#333"},
            },
            customdata=np.stack([frame.valence, frame.arousal], axis=1),
            hovertemplate="%{text}<br>PC1 %{x:.3f}, PC2 %{y:.3f}<br>valence %{customdata[0]:.2f}"
            "<br>intensity %{customdata[1]:.2f}<extra></extra>",
        )
    )
    fig.update_xaxes(
        title_text=f"PC1 ({100 * values.get('pc1_var', np.nan):.0f}% of variance)",
        zeroline=True,
    )
    fig.update_yaxes(title_text=f"PC2 ({100 * values.get('pc2_var', np.nan):.0f}%)", zeroline=True)
    return apply_style(
        fig,
        f"Emotion vectors ({result.kind}) on PC1 × PC2, {site} layer {layer}: "
        f"r(PC1, valence) = {values.get('pc1_valence_r', np.nan):.2f}, "
        f"r(PC2, arousal) = {values.get('pc2_arousal_r', np.nan):.2f}",
    )


def correlation_figure(result: PCAResult, site: str | None = None) -> go.Figure:
    """PC1~valence, PC2~arousal and the per-text PC1~pleasantness rho against layer, with CIs."""
    site = site or next(iter(result.scores))
    fig = go.Figure()
    labels = {
        "pc1_valence_r": "r(PC1, valence) over emotions",
        "pc2_arousal_r": "r(PC2, arousal) over emotions",
        "text_pc1_pleasantness_rho": "Spearman(PC1 projection, pleasantness) over texts",
    }
    for name, label in labels.items():
        t = result.measure(name, site)
        if t.empty:
            continue
        color = _COLORS[name]
        _band(fig, t.layer, t.ci_low, t.ci_high, color, label)
        fig.add_trace(
            go.Scatter(x=t.layer, y=t.value, mode="lines+markers", name=label,
                       line={"color": color})
        )  # fmt: skip
    fig.add_hline(y=0, line={"color": "#888", "width": 1})
    fig.update_xaxes(title_text="layer")
    fig.update_yaxes(title_text="correlation", range=[-1.05, 1.05])
    return apply_style(
        fig, f"Valence and arousal against layer ({result.kind} vectors, {result.subset} rows, "
        f"{site})",
    )  # fmt: skip


def rsa_figure(result: RSAResult) -> go.Figure:
    """RSA (Spearman over the upper triangles) against layer; filled markers: p < 0.05."""
    fig = go.Figure()
    for i, site in enumerate(result.model_similarity):
        t = result.table[result.table.site == site]
        rho = t[t.measure == "rsa_rho"].sort_values("layer")
        p = t[t.measure == "rsa_p"].sort_values("layer")
        color = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"][i % 4]
        fig.add_trace(
            go.Scatter(
                x=rho.layer,
                y=rho.value,
                mode="lines+markers",
                name=site,
                line={"color": color},
                marker={"symbol": ["circle" if v < 0.05 else "circle-open" for v in p.value],
                        "size": 9},
                customdata=p.value,
                hovertemplate="layer %{x}: rho %{y:.3f}, p %{customdata:.3f}<extra></extra>",
            )
        )  # fmt: skip
    fig.add_hline(y=0, line={"color": "#888", "width": 1})
    fig.update_xaxes(title_text="layer")
    fig.update_yaxes(title_text="Spearman rho (model vs human similarity)")
    return apply_style(
        fig,
        f"RSA: emotion-vector cosines ({result.kind}) vs appraisal-profile similarity "
        f"(filled: permutation p < 0.05)",
    )


def crosspaper_figure(
    result: CrossPaperResult, site: str | None = None, layer: int | None = None
) -> go.Figure:
    """crowd-enVENT x SEV cosine heatmap at one layer, the diagonal annotated with its CI."""
    site = site or ("resid_post" if "resid_post" in result.sites else result.sites[0])
    layer = result.peak_layer(site) if layer is None else layer
    li = result.layers.index(layer)
    m = result.cosines[site][li]
    ci = result.diag_ci[site][li]
    text = [[f"{m[i, j]:.2f}" for j in range(m.shape[1])] for i in range(m.shape[0])]
    for i in range(m.shape[0]):
        if np.isfinite(ci[i]).all():
            text[i][i] = f"<b>{m[i, i]:.2f}</b><br>[{ci[i, 0]:.2f}, {ci[i, 1]:.2f}]"
        else:
            text[i][i] = f"<b>{m[i, i]:.2f}</b>"
    limit = float(max(0.1, np.abs(m).max()))
    fig = go.Figure(
        go.Heatmap(
            z=m,
            x=list(result.sev_emotions),
            y=list(result.crowd_emotions),
            text=text,
            texttemplate="%{text}",
            colorscale="RdBu",
            zmid=0.0,
            zmin=-limit,
            zmax=limit,
            colorbar={"title": "cosine"},
        )
    )
    t = result.table[(result.table.site == site) & (result.table.layer == layer)]
    values = dict(zip(t.measure, t.value, strict=True))
    fig.update_xaxes(title_text="SEV context-agnostic direction (Wang et al.)")
    fig.update_yaxes(title_text="crowd-enVENT vector (Tak et al.)", autorange="reversed")
    return apply_style(
        fig,
        f"Cross-paper cosines, {site} layer {layer}: matched {values.get('diag_cos', np.nan):.2f}"
        f" vs mismatched {values.get('perm_mean', np.nan):.2f} (perm. p "
        f"{values.get('perm_p', np.nan):.3f}), random q95 {values.get('random_q95', np.nan):.2f}",
    )


def vector_norms_figure(result: EmotionVectorsResult, site: str | None = None) -> go.Figure:
    """Norm of each emotion's vector against layer (heatmap)."""
    site = site or result.sites[0]
    t = result.table[result.table.site == site]
    wide = t.pivot(index="emotion", columns="layer", values="norm").reindex(result.emotions)
    fig = go.Figure(
        go.Heatmap(z=wide.values, x=list(wide.columns), y=list(wide.index),
                   colorscale="Viridis", colorbar={"title": "norm"})
    )  # fmt: skip
    fig.update_xaxes(title_text="layer")
    return apply_style(fig, f"Emotion vector norms ({result.kind}, {site})")
