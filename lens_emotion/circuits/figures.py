"""Plotly figures of the emotion-circuit analyses, styled with the suite's ``apply_style``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lens_emotion.circuits.circuit import EmotionCircuit
from lens_emotion.circuits.components import ComponentScores
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.viz.style import apply_style, ci_band, emotion_color, rgba

__all__ = [
    "ablation_figure",
    "circuit_figure",
    "consistency_figure",
    "control_figure",
    "head_heatmap",
    "influence_figure",
    "tuning_figure",
]


def ablation_figure(table: pd.DataFrame) -> go.Figure:
    """Emotion score against k: top-k (solid) vs random-k control (dashed), per emotion.

    One panel per (component type, intervention). Scores are shown relative to the unedited
    score of each emotion (1 = unchanged) when every baseline is positive, else raw.
    """
    if table.empty:
        raise CircuitError("the ablation table is empty; run ablation_sweep() first.")
    kinds = list(dict.fromkeys(table.component_type))
    interventions = list(dict.fromkeys(table.intervention))
    relative = bool((table.baseline > 0).all())
    titles = [f"{kind}s · {iv}" for kind in kinds for iv in interventions]
    fig = make_subplots(rows=len(kinds), cols=len(interventions), subplot_titles=titles)
    for r, kind in enumerate(kinds, start=1):
        for c, intervention in enumerate(interventions, start=1):
            part = table[(table.component_type == kind) & (table.intervention == intervention)]
            for emotion, rows in part.groupby("emotion", sort=False):
                rows = rows.sort_values("k")
                scale = rows.baseline.to_numpy() if relative else 1.0
                color = emotion_color(str(emotion))
                first = r == 1 and c == 1
                fig.add_trace(
                    go.Scatter(
                        x=rows.k,
                        y=rows.score / scale,
                        mode="lines+markers",
                        name=str(emotion),
                        legendgroup=str(emotion),
                        showlegend=first,
                        line={"color": color},
                        hovertemplate=f"{emotion} top-k<br>k=%{{x}}<br>%{{y:.3f}}<extra></extra>",
                    ),
                    row=r,
                    col=c,
                )
                fig.add_trace(
                    go.Scatter(
                        x=rows.k,
                        y=rows.control_score / scale,
                        mode="lines",
                        name=f"{emotion} (random k)",
                        legendgroup=str(emotion),
                        showlegend=False,
                        line={"color": color, "dash": "dash", "width": 1.5},
                        hovertemplate=f"{emotion} random<br>k=%{{x}}<br>%{{y:.3f}}<extra></extra>",
                    ),
                    row=r,
                    col=c,
                )
            fig.update_xaxes(type="log", title_text="k", row=r, col=c)
    ytitle = "emotion score / unedited" if relative else "emotion score"
    for r in range(1, len(kinds) + 1):
        fig.update_yaxes(title_text=ytitle, row=r, col=1)
    fig.update_layout(height=330 * len(kinds) + 120, width=380 * len(interventions) + 120)
    return apply_style(fig, "Intervening on top-k components (solid) vs random k (dashed)")


def head_heatmap(scores: ComponentScores) -> go.Figure:
    """Layer x head heatmaps of the head scores, one panel per emotion."""
    if scores.kind != "head":
        raise CircuitError("head_heatmap() needs head scores (score_components(...)['head']).")
    n = len(scores.emotions)
    cols = 3 if n > 3 else n
    rows = int(np.ceil(n / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(scores.emotions))
    bound = float(scores.score.abs().max()) or 1.0
    for i, emotion in enumerate(scores.emotions):
        fig.add_trace(
            go.Heatmap(
                z=scores.score[i].numpy(),
                x=list(range(scores.n_units)),
                y=list(range(scores.n_layers)),
                zmin=-bound,
                zmax=bound,
                colorscale="RdBu",
                reversescale=True,
                showscale=i == 0,
                colorbar={"title": "score"},
                hovertemplate="layer %{y}, head %{x}<br>score %{z:.3f}<extra>"
                + emotion
                + "</extra>",
            ),
            row=i // cols + 1,
            col=i % cols + 1,
        )
    fig.update_xaxes(title_text="head")
    fig.update_yaxes(title_text="layer")
    fig.update_layout(height=380 * rows + 100, width=330 * cols + 120)
    return apply_style(fig, "Head scores: emotion-specific write along v_e (exact decomposition)")


def influence_figure(table: pd.DataFrame) -> go.Figure:
    """Sublayer influence ``I = delta_s / (alpha * sigma)`` per layer, attention and MLP."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["attention", "MLP"], shared_yaxes=True)
    for c, name in enumerate(("attn", "mlp"), start=1):
        part = table[table.sublayer == name]
        for emotion, rows in part.groupby("emotion", sort=False):
            rows = rows.sort_values("layer")
            fig.add_trace(
                go.Scatter(
                    x=rows.layer,
                    y=rows.influence,
                    mode="lines+markers",
                    name=str(emotion),
                    legendgroup=str(emotion),
                    showlegend=c == 1,
                    line={"color": emotion_color(str(emotion))},
                ),
                row=1,
                col=c,
            )
        fig.update_xaxes(title_text="layer", row=1, col=c)
    fig.update_yaxes(title_text="influence I = Δs / (α·σ)", row=1, col=1)
    fig.update_layout(height=460, width=1000)
    return apply_style(fig, "Sublayer influence on the final emotion score")


def consistency_figure(table: pd.DataFrame) -> go.Figure:
    """Held-out projection accuracy (emotion named / described) and cross-context cosines."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=["held-out accuracy (argmax projection)", "cosine across contexts"],
    )
    dashes = {"resid_mid": "dot", "resid_post": "solid"}
    for site, rows in table.groupby("site", sort=False):
        rows = rows.sort_values("layer")
        lines = (  # column, legend name, colour, subplot column (accuracies only where present)
            ("heldout_accuracy", f"{site} accuracy (named emotion)", "#0072B2", 1),
            ("heldout_accuracy_described", f"{site} accuracy (described emotion)", "#CC79A7", 1),
            ("cos_across_themes", f"{site} across themes", "#D55E00", 2),
            ("cos_across_valences", f"{site} across valences", "#009E73", 2),
        )
        for column, name, color, col in lines:
            if col == 1 and column not in rows:
                continue
            fig.add_trace(
                go.Scatter(
                    x=rows.layer,
                    y=rows[column],
                    name=name,
                    line={"dash": dashes.get(str(site), "solid"), "color": color},
                ),
                row=1,
                col=col,
            )
    if "chance" in table:
        fig.add_hline(
            y=float(table.chance.iloc[0]), line_dash="dash", line_color="#888", row=1, col=1
        )
    fig.update_xaxes(title_text="layer")
    apply_style(fig, "Consistency of the context-agnostic emotion directions")
    fig.update_layout(
        height=520,
        width=1050,
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0.0},
        margin={"b": 150},
    )
    return fig


def control_figure(table: pd.DataFrame) -> go.Figure:
    """The primary metric per method and target emotion, with scenario-bootstrap intervals.

    Bars are ``judged_masked``: the share of replies the offline judge labels as the target
    after every emotion word form is masked (a reply that only names the emotion earns
    nothing). Tables with the older ``accuracy`` column (unmasked judge) are drawn with it.
    """
    palette = {
        "neutral": "#BBBBBB",
        "prompting": "#0072B2",
        "steering": "#E69F00",
        "circuit": "#009E73",
    }
    if "judged_masked" in table:
        value, title = "judged_masked", "judged as target, emotion words masked (primary)"
    else:
        value, title = "accuracy", "judged as target"
    fig = make_subplots(rows=1, cols=1, subplot_titles=[title])
    for method, rows in table.groupby("method", sort=False):
        fig.add_trace(
            go.Bar(
                x=rows.emotion,
                y=rows[value],
                name=str(method),
                marker_color=palette.get(str(method), "#666666"),
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (rows["ci_high"] - rows[value]).to_numpy(),
                    "arrayminus": (rows[value] - rows["ci_low"]).to_numpy(),
                },
            )
        )
    fig.update_yaxes(range=[0, 1], title_text="share of replies")
    apply_style(fig, "Emotion expression on held-out scenarios (95% bootstrap CI)")
    fig.update_layout(
        barmode="group",
        height=520,
        width=760,
        legend={"orientation": "h", "yanchor": "top", "y": -0.15, "xanchor": "left", "x": 0.0},
        margin={"b": 120},
    )
    return fig


def tuning_figure(table: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Judged accuracy (emotion words masked) against strength, with its scenario-bootstrap CI.

    One line per strength grid (the ``strength`` column); the degenerate share is drawn as a
    dashed line, since the tuning rule admits only settings below its ceiling.
    """
    x = table["strength"].to_numpy(dtype=float)
    color = "#009E73"
    fig = go.Figure()
    fig.add_trace(ci_band(x, table["ci_low"], table["ci_high"], color, "judged_masked"))
    fig.add_trace(
        go.Scatter(
            x=x,
            y=table["judged_masked"],
            mode="lines+markers",
            name="judged as target (masked)",
            legendgroup="judged_masked",
            line={"color": color},
        )
    )
    if "degenerate_rate" in table:
        fig.add_trace(
            go.Scatter(
                x=x,
                y=table["degenerate_rate"],
                mode="lines+markers",
                name="degenerate replies",
                line={"color": "#666666", "dash": "dash"},
            )
        )
    fig.update_xaxes(title_text="strength")
    fig.update_yaxes(range=[0, 1], title_text="share of replies")
    return apply_style(fig, title or "Strength tuning on discovery scenarios (95% CI)")


def circuit_figure(circuit: EmotionCircuit, n_layers: int | None = None) -> go.Figure:
    """The circuit as a layered graph flowing into the final emotion readout.

    Attention sublayers sit above the residual stream, MLP sublayers below; a node's size
    grows with its members' summed estimated effect and its colour with its influence.
    Edges join consecutive circuit sublayers along the stream and every node to the readout.
    """
    if not circuit.sublayers:
        raise CircuitError(f"the {circuit.emotion} circuit has no sublayers to draw.")
    layers = [s["layer"] for s in circuit.sublayers]
    last = (n_layers - 1) if n_layers else max(layers)
    readout_x = last + 1.5
    color = emotion_color(circuit.emotion)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[-0.5, readout_x],
            y=[0, 0],
            mode="lines",
            line={"color": "#CCCCCC", "width": 6},
            hoverinfo="skip",
            showlegend=False,
        )
    )
    nodes = sorted(circuit.sublayers, key=lambda s: (s["layer"], s["sublayer"] != "attn"))
    xs = [s["layer"] - 0.2 if s["sublayer"] == "attn" else s["layer"] + 0.2 for s in nodes]
    ys = [1.0 if s["sublayer"] == "attn" else -1.0 for s in nodes]
    effects = np.asarray([max(s["effect"], 0.0) for s in nodes])
    sizes = (
        12 + 38 * np.sqrt(effects / effects.max()) if effects.max() > 0 else np.full(len(nodes), 14)
    )
    for (x0, y0), (x1, y1) in zip(
        zip(xs, ys, strict=True), list(zip(xs, ys, strict=True))[1:], strict=False
    ):
        fig.add_trace(
            go.Scatter(
                x=[x0, x1],
                y=[y0, y1],
                mode="lines",
                line={"color": "#999999", "width": 1},
                hoverinfo="skip",
                showlegend=False,
            )
        )
    for x, y, s in zip(xs, ys, nodes, strict=True):
        width = 0.5 + 3.0 * (max(s["effect"], 0.0) / effects.max() if effects.max() > 0 else 0)
        fig.add_trace(
            go.Scatter(
                x=[x, readout_x],
                y=[y, 0],
                mode="lines",
                line={"color": rgba(color, 0.35), "width": width},
                hoverinfo="skip",
                showlegend=False,
            )
        )

    def members(s: dict) -> str:
        if s["sublayer"] == "attn":
            heads = [f"H{h['head']}" for h in circuit.heads if h["layer"] == s["layer"]]
            return ", ".join(heads) or "(no heads chosen)"
        neurons = [f"N{n['neuron']}" for n in circuit.neurons if n["layer"] == s["layer"]]
        shown = ", ".join(neurons[:12]) + (" ..." if len(neurons) > 12 else "")
        return shown or "(no neurons chosen)"

    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="markers+text",
            text=[f"{'A' if s['sublayer'] == 'attn' else 'M'}{s['layer']}" for s in nodes],
            textposition=["top center" if y > 0 else "bottom center" for y in ys],
            marker={
                "size": sizes,
                "color": [s["influence"] for s in nodes],
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": "influence"},
                "line": {"color": "#333333", "width": 1},
            },
            customdata=[
                [s["sublayer"], s["layer"], s["influence"], s["effect"], members(s)] for s in nodes
            ],
            hovertemplate="%{customdata[0]} layer %{customdata[1]}"
            "<br>influence %{customdata[2]:.2f}<br>estimated effect %{customdata[3]:.2f}"
            "<br>%{customdata[4]}<extra></extra>",
            showlegend=False,
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[readout_x],
            y=[0],
            mode="markers+text",
            text=[f"{circuit.emotion} score"],
            textposition="middle right",
            marker={"size": 26, "color": color, "symbol": "diamond"},
            hoverinfo="text",
            showlegend=False,
        )
    )
    fig.update_xaxes(title_text="layer", range=[-1, readout_x + 6])
    fig.update_yaxes(
        tickvals=[1, 0, -1],
        ticktext=["attention", "residual", "MLP"],
        range=[-1.8, 1.8],
        showgrid=False,
    )
    fig.update_layout(height=420, width=1100)
    n_h, n_n = len(circuit.heads), len(circuit.neurons)
    return apply_style(fig, f"{circuit.emotion} circuit: {n_h} heads, {n_n} neurons")
