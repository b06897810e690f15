"""Demo step: where the final token attends, with offline CircuitsVis views."""

from __future__ import annotations

from typing import Any

from lens_emotion.demo.context import StepContext


def attention_step(ctx: StepContext) -> dict[str, Any]:
    """Final-token attention mass by token group, saliency and CircuitsVis views."""
    model, dataset, config, out, report, progress, seed = ctx
    from lens_emotion.attention.workflow import AttentionSettings, run_attention
    from lens_emotion.viz.circuitsvis import attention_heads_view

    settings = AttentionSettings(
        rows=config.attention_rows,
        template="emotion-list",
        layers=_spaced_layers(model.n_layers, config.attention_layers),
        keep_patterns=True,
        seed=seed,
        formats=(),  # the report embeds the figures
    )
    outputs = run_attention(model, dataset, out / "attention", settings, progress=progress)
    result, paths = outputs.result, outputs.files
    bands = result.band_frame()
    metrics: dict[str, Any] = {}
    for row in bands.to_dict(orient="records"):
        wanted = row["group"] in {"sink", "template", "context", "final"}
        if (wanted and row["normalise"] == "total") or row["group"] == "emotion_enrichment":
            metrics[f"{row['band']} ({row['layers']}): {row['group']}"] = (
                f"{row['mean']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
            )
    html = []
    if result.saliency is not None:
        html.append(result.saliency.view(0))
    if result.patterns is not None and result.patterns.query == "final":
        layer = result.layers[len(result.layers) * 2 // 3]
        li = result.layers.index(layer)
        pattern = result.patterns.patterns[0][li]  # [head, key]: the final token's query
        html.append(
            attention_heads_view(
                result.patterns.tokens[0], pattern, title=f"Final-token attention, layer {layer}"
            )
        )
    report.add_section(
        "Attention: what the final token looks at, layer by layer",
        text=(
            "Attention mass of the final token on the attention sink (first token), the "
            "template, the event text and itself, per layer; emotion-bearing tokens are the "
            "top 20% of event-text tokens by occlusion saliency (hiding the token lowers the "
            "predicted label's log-prob most). Enrichment = per-token mass on emotion-bearing "
            "tokens / per-token mass on the rest of the event text. Below: the saliency of "
            "one text and the final-token attention of every head at one layer "
            "(CircuitsVis, embedded offline)."
        ),
        metrics=metrics,
        figures=[result.figure(), result.heatmap(group="emotion")],
        html=html,
        links={p.name: f"attention/{p.name}" for p in paths if p.suffix in {".csv", ".json"}},
    )
    return {"bands": bands.to_dict(orient="records"), "n_rows": len(result)}


def _spaced_layers(n_layers: int, k: int | None) -> list[int] | None:
    """``k`` evenly spaced layers from the first to the last (``None``: all)."""
    if k is None or k >= n_layers:
        return None
    return sorted({round(i * (n_layers - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]
