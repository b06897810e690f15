"""Demo step: activation patching, ablations, the control task and attribution patching."""

from __future__ import annotations

from typing import Any

from lens_emotion.demo.context import StepContext
from lens_emotion.demo.links import output_links


def patching_step(ctx: StepContext, scores: dict[str, Any]) -> dict[str, Any]:
    """Windowed patching per site, head patching, ablations and the control task.

    ``scores`` holds the inference step's uncalibrated results, reused to draw the pairs.
    """
    model, dataset, config, out, report, progress, seed = ctx
    from lens_emotion.patching import PatchingSettings, run_patching

    folder = out / "patching"
    settings = PatchingSettings(
        n_pairs=config.patch_pairs,
        span=config.patch_span,
        seed=seed,
        heads=config.patch_heads,
        ablations=True,
        control=True,
        formats=("html",),  # the report embeds the figures; no static copies
        batch_size=config.batch_size,
    )
    outputs = run_patching(
        model,
        dataset,
        folder,
        settings,
        progress=progress,
        inference=scores.get("emotion-list"),
        control_inference=scores.get("control-first-word"),
    )
    pairs = outputs.sites.pairs
    metrics: dict[str, Any] = {
        "pairs (kept / examined)": f"{len(pairs)} / {pairs.n_candidates}",
        "engine": outputs.sites.method,
    }
    peaks = outputs.sites.peaks()
    for row in peaks.itertuples():
        metrics[f"{row.site}: peak transfer (layer, depth)"] = (
            f"{row.peak_transfer:.2f} [{row.peak_ci_low:.2f}, {row.peak_ci_high:.2f}] "
            f"(layer {row.peak_layer}, {row.relative_depth:.2f})"
        )
    if outputs.control_comparison is not None and len(outputs.control_comparison):
        for row in outputs.control_comparison.itertuples():
            metrics[f"control task: {row.site} transfer at the emotion peak"] = (
                f"{row.control_transfer_at_emotion_peak:.2f} "
                f"(emotion {row.emotion_peak_transfer:.2f})"
            )
    wanted = [k for k in ("transfer", "heads", "ablations", "control") if k in outputs.figures]
    report.add_section(
        "Causal localization: activation patching",
        text=(
            f"Pairs of texts with different human emotions (and different clean predictions) "
            f"are drawn with seed {seed}. For each site and centre layer c, the target's "
            f"last-token activation is overwritten with the source's in layers c−w…c+w "
            f"(span {config.patch_span}); 'transfer' = the patched prediction becomes the "
            "source's. Patched runs start from the cached clean state and recompute only the "
            "last position. Also: per-query-head patching of hook_z, zero/mean/random "
            "ablations, and the same patching on the non-emotional control task."
        ),
        metrics=metrics,
        figures=[outputs.figures[k] for k in wanted],
        links=output_links(folder, out),
    )
    return {
        "pairs": len(pairs),
        "peaks": peaks.to_dict(orient="records"),
    }


def attribution_step(ctx: StepContext, scores: dict[str, Any]) -> dict[str, Any]:
    """Attribution patching (AtP) and its agreement with real single-layer patching."""
    model, dataset, config, out, report, progress, seed = ctx
    from lens_emotion.attribution import AttributionSettings, run_attribution

    folder = out / "attribution"
    settings = AttributionSettings(
        n_pairs=config.attribution_pairs, seed=seed, heads=config.patch_heads, compare=True
    )
    outputs = run_attribution(
        model, dataset, folder, settings, progress=progress, inference=scores.get("emotion-list")
    )
    metrics: dict[str, Any] = {"pairs": outputs.atp.n_pairs}
    cost = outputs.atp.cost()
    metrics["cost (forward-pass equivalents): AtP / one forward per patch"] = (
        f"{cost['atp_fpe']:.0f} / {cost['patching_fpe']:.0f}"
    )
    figures = list(outputs.figures.values())  # estimates, then the scatter vs real patching
    summary: dict[str, Any] = {}
    if outputs.comparison is not None:
        for key, corr in outputs.comparison.correlations.items():
            metrics[f"{key}: Pearson / Spearman vs real patching"] = (
                f"{corr['pearson']:.3f} / {corr['spearman']:.3f} (n={corr['n']})"
            )
            summary[key] = {"pearson": corr["pearson"], "spearman": corr["spearman"]}
    report.add_section(
        "Attribution patching (AtP)",
        text=(
            "A linear estimate of every patch at once: (a_source − a_target) · ∂metric/∂a on "
            "the target run, with the metric = logit difference between the source's and the "
            "target's predicted labels; two forward passes and one backward pass per pair "
            "(node level, grouped-query attention handled per query head). The scatter "
            "checks it against real single-layer patching."
        ),
        metrics=metrics,
        figures=figures,
        links=output_links(folder, out),
    )
    return {"pairs": outputs.atp.n_pairs, "correlations": summary}
