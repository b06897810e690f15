"""Cross-model figures of a sweep, drawn from its long table (pure: table in, figure out).

Depth is relative (``layer / (n_layers - 1)``), so models of different depth share an axis.
Where a figure averages, it averages the table's rows over seeds (and, unless a template is
named, over templates), per model, site and layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lens_emotion.patching.figures import SITE_LABELS
from lens_emotion.sweep.summary import localisation
from lens_emotion.viz.style import EMOTION_COLORS, apply_style, ci_band

__all__ = [
    "SWEEP_FIGURES",
    "GEOMETRY_PANELS",
    "depth_curves_figure",
    "geometry_depth_figure",
    "model_colors",
    "patching_depth_figure",
    "peak_vs_stabilisation_figure",
    "probe_depth_figure",
    "sweep_figures",
    "template_robustness_figure",
]


#: Legend under the panels (the panel titles sit where apply_style puts the legend).
_BELOW = {"orientation": "h", "x": 0, "xanchor": "left", "y": -0.28, "yanchor": "top"}


def model_colors(models: Sequence[str]) -> dict[str, str]:
    """One colour per model, in order, from the shared palette."""
    palette = list(EMOTION_COLORS.values())
    return {m: palette[(4 * i) % len(palette)] for i, m in enumerate(dict.fromkeys(models))}


def _curves(table: pd.DataFrame, analysis: str, metric: str, template: str | None) -> pd.DataFrame:
    rows = table[
        (table["analysis"] == analysis)
        & (table["metric"] == metric)
        & (table["status"] == "done")
        & table["layer"].notna()
    ]
    if template is not None:
        rows = rows[rows["template"] == template]
    keys = ["model", "site", "layer", "relative_depth"]
    return (
        rows.groupby(keys, sort=False)[["value", "ci_low", "ci_high"]]
        .mean()
        .reset_index()
        .sort_values(["model", "site", "layer"], kind="stable")
    )


def _depth_note(fig: go.Figure) -> None:
    """Say under the panels what relative depth is."""
    fig.add_annotation(
        text="relative depth = layer / (n_layers − 1)",
        xref="paper",
        yref="paper",
        x=1.0,
        y=-0.28,
        xanchor="right",
        yanchor="top",
        showarrow=False,
        font={"size": 12, "color": "#555555"},
    )


def _add_model_lines(
    fig: go.Figure,
    curves: pd.DataFrame,
    colors: dict[str, str],
    col: int,
    metric: str,
    *,
    bands: bool,
) -> None:
    """One line per model of ``curves`` (from :func:`_curves`) in panel ``col``, CI bands too."""
    for model, rows in curves.groupby("model", sort=False):
        color = colors[model]
        if bands and rows["ci_low"].notna().all():
            fig.add_trace(
                ci_band(rows["relative_depth"], rows["ci_low"], rows["ci_high"], color, model),
                row=1,
                col=col,
            )
        fig.add_trace(
            go.Scatter(
                x=rows["relative_depth"],
                y=rows["value"],
                mode="lines+markers",
                name=model,
                legendgroup=model,
                showlegend=col == 1,
                line={"color": color},
                hovertemplate=f"{model}<br>depth %{{x:.2f}}<br>{metric} %{{y:.3f}}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(title_text="relative depth", row=1, col=col)


def depth_curves_figure(
    table: pd.DataFrame,
    analysis: str,
    metric: str,
    *,
    sites: Sequence[str] | None = None,
    template: str | None = None,
    title: str | None = None,
    y_title: str | None = None,
) -> go.Figure:
    """``metric`` against relative depth, one line per model, one panel per site.

    Args:
        table: A sweep's long table.
        analysis: The analysis whose rows are drawn (``"probe"``, ``"patch"``).
        metric: The metric (``"accuracy"``, ``"transfer"``).
        sites: Panels (default: the sites in the rows, in order; ``embedding`` left out).
        template: Only this template's rows (default: the mean over templates).
        title: Figure title.
        y_title: y-axis title (default: the metric).

    Returns:
        The figure (an annotation says so when the table has no such rows).
    """
    curves = _curves(table, analysis, metric, template)
    if sites is None:
        sites = [s for s in dict.fromkeys(curves["site"]) if s != "embedding"]
    sites = list(sites) or ["(none)"]
    fig = make_subplots(
        rows=1,
        cols=len(sites),
        shared_yaxes=True,
        subplot_titles=[SITE_LABELS.get(s, s) for s in sites],
    )
    colors = model_colors(table["model"].tolist())
    single = template is not None and table["seed"].nunique() == 1
    for col, site in enumerate(sites, start=1):
        _add_model_lines(fig, curves[curves["site"] == site], colors, col, metric, bands=single)
    fig.update_yaxes(title_text=y_title or metric, row=1, col=1)
    if curves.empty:
        fig.add_annotation(text=f"no {analysis} {metric} rows", showarrow=False)
    scope = f"template {template}" if template else "mean over templates"
    fig = apply_style(fig, title or f"{analysis} {metric} by relative depth ({scope})")
    _depth_note(fig)
    return fig.update_layout(legend=_BELOW)


def probe_depth_figure(table: pd.DataFrame, template: str | None = None) -> go.Figure:
    """Probe accuracy against relative depth, one line per model, a panel per site."""
    return depth_curves_figure(
        table,
        "probe",
        "accuracy",
        template=template,
        title="Emotion-probe accuracy by relative depth"
        + (f" ({template})" if template else " (mean over templates)"),
        y_title="CV accuracy",
    )


def patching_depth_figure(table: pd.DataFrame, template: str | None = None) -> go.Figure:
    """Patching transfer rate against relative depth, one line per model, a panel per site."""
    return depth_curves_figure(
        table,
        "patch",
        "transfer",
        template=template,
        title="Activation-patching transfer by relative depth"
        + (f" ({template})" if template else " (mean over templates)"),
        y_title="transfer rate",
    )


#: Panels of :func:`geometry_depth_figure`: metric -> (panel title).
GEOMETRY_PANELS = {
    "pc1_valence_r": "PC1 ~ human valence (r)",
    "pc2_arousal_r": "PC2 ~ arousal proxy (r)",
    "rsa_rho": "RSA with appraisal profiles (rho)",
}


def geometry_depth_figure(table: pd.DataFrame, template: str | None = None) -> go.Figure:
    """Emotion geometry against relative depth: does the valence axis appear at the same depth?

    One panel per measure (:data:`GEOMETRY_PANELS`: PC1-valence and PC2-arousal correlations
    of the emotion vectors, and the RSA against the human appraisal profiles), one line per
    model, on ``resid_post``; with one template and one seed the bootstrap CIs are drawn.
    """
    rows = table[table["site"] == "resid_post"] if len(table) else table
    metrics = list(GEOMETRY_PANELS)
    fig = make_subplots(
        rows=1, cols=len(metrics), shared_yaxes=True, subplot_titles=list(GEOMETRY_PANELS.values())
    )
    colors = model_colors(table["model"].tolist())
    templates = rows["template"].nunique() if len(rows) else 0
    single = (template is not None or templates == 1) and table["seed"].nunique() == 1
    empty = True
    for col, metric in enumerate(metrics, start=1):
        curves = _curves(rows, "geometry", metric, template)
        empty = empty and curves.empty
        _add_model_lines(fig, curves, colors, col, metric, bands=single)
    fig.update_yaxes(title_text="correlation", row=1, col=1)
    if empty:
        fig.add_annotation(text="no geometry rows", showarrow=False)
    if template is None and templates == 1:
        template = str(rows["template"].iloc[0])
    scope = f"template {template}" if template else "mean over templates"
    fig = apply_style(fig, f"Emotion geometry by relative depth ({scope})")
    _depth_note(fig)
    return fig.update_layout(legend=_BELOW)


def peak_vs_stabilisation_figure(table: pd.DataFrame) -> go.Figure:
    """Peak MHSA-patching depth against probe stabilisation depth, per model and template.

    One marker per (model, template), coloured by model, with the diagonal: a marker above it
    means the MHSA patching peak comes later than the probe signal stabilises.
    """
    loc = localisation(table).dropna(subset=["probe_plateau_depth", "attn_peak_depth"])
    colors = model_colors(table["model"].tolist())
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line={"dash": "dot", "color": EMOTION_COLORS["neutral"]},
            name="same depth",
            hoverinfo="skip",
        )
    )
    for model, rows in loc.groupby("model", sort=False):
        fig.add_trace(
            go.Scatter(
                x=rows["probe_plateau_depth"],
                y=rows["attn_peak_depth"],
                mode="markers+text",
                text=rows["template"],
                textposition="top center",
                name=model,
                marker={"size": 11, "color": colors[model]},
                hovertemplate=f"{model} %{{text}}<br>probe plateau %{{x:.2f}}"
                "<br>MHSA peak %{y:.2f}<extra></extra>",
            )
        )
    fig.update_xaxes(
        title_text="probe stabilisation depth (resid_post, 95% of best)", range=[-0.05, 1.05]
    )
    fig.update_yaxes(title_text="peak MHSA-patching depth", range=[-0.05, 1.05])
    if loc.empty:
        fig.add_annotation(text="needs probe and patch jobs", showarrow=False)
    return apply_style(fig, "Where attention patching peaks vs where the probe signal settles")


def template_robustness_figure(table: pd.DataFrame) -> go.Figure:
    """Where the localisation moves as the template changes: one panel per model.

    Per template: the probe plateau depth, the MHSA patching peak and the FFN patching peak
    (relative depths); flat lines mean the localisation does not depend on the template.
    """
    loc = localisation(table)
    models = list(dict.fromkeys(loc["model"])) or ["(none)"]
    fig = make_subplots(rows=1, cols=len(models), shared_yaxes=True, subplot_titles=models)
    palette = list(EMOTION_COLORS.values())
    series = {
        "probe_plateau_depth": ("probe plateau", palette[9]),
        "attn_peak_depth": ("MHSA patching peak", palette[0]),
        "mlp_peak_depth": ("FFN patching peak", palette[5]),
    }
    for col, model in enumerate(models, start=1):
        rows = loc[loc["model"] == model]
        for key, (label, color) in series.items():
            if key not in rows or rows[key].isna().all():
                continue
            fig.add_trace(
                go.Scatter(
                    x=rows["template"],
                    y=rows[key],
                    mode="lines+markers",
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
                    line={"color": color},
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="template", row=1, col=col)
    fig.update_yaxes(title_text="relative depth", range=[-0.05, 1.05], row=1, col=1)
    fig = apply_style(fig, "Template robustness: localisation per template")
    return fig.update_layout(legend=_BELOW)


#: Figure name -> function of the table (what ``run_sweep`` writes under ``figures/``).
SWEEP_FIGURES = {
    "probe_accuracy_by_depth": probe_depth_figure,
    "patching_transfer_by_depth": patching_depth_figure,
    "mhsa_peak_vs_probe_plateau": peak_vs_stabilisation_figure,
    "template_robustness": template_robustness_figure,
    "geometry_by_depth": geometry_depth_figure,
}


def sweep_figures(table: pd.DataFrame) -> dict[str, go.Figure]:
    """Every cross-model figure the table has rows for (see :data:`SWEEP_FIGURES`)."""
    analyses = set(table["analysis"]) if len(table) else set()
    wanted = {
        "probe_accuracy_by_depth": "probe" in analyses,
        "patching_transfer_by_depth": "patch" in analyses,
        "mhsa_peak_vs_probe_plateau": {"probe", "patch"} <= analyses,
        "template_robustness": bool({"probe", "patch"} & analyses)
        and table.loc[table["analysis"].isin(["probe", "patch"]), "template"].nunique() > 1,
        "geometry_by_depth": "geometry" in analyses,
    }
    return {name: fn(table) for name, fn in SWEEP_FIGURES.items() if wanted[name]}
