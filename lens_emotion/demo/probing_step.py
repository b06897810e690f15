"""Demo step: per-layer emotion and appraisal probes (Tak et al., step 1)."""

from __future__ import annotations

from typing import Any

from lens_emotion.demo.context import StepContext


def probing_step(ctx: StepContext) -> dict[str, Any]:
    """Per-layer emotion and appraisal probes with their alignment."""
    model, dataset, config, out, report, progress, seed = ctx
    from lens_emotion.probing import ProbingSettings, run_probing

    folds = min(config.probe_folds, min(dataset.label_counts().values()))
    settings = ProbingSettings(
        sites=tuple(config.probe_sites),
        n_folds=folds,
        seed=seed,
        num_threads=1,
        batch_size=config.batch_size,
    )
    outputs = run_probing(model, dataset, out / "probing", settings, progress=progress)
    table = outputs.emotion.table
    summary = outputs.summary()
    metrics: dict[str, Any] = {}
    for site in config.probe_sites:
        best = summary["best"][site]
        metrics[f"{site}: best layer (accuracy ± sd)"] = (
            f"{best['layer']} ({best['accuracy_mean']:.3f} ± {best['accuracy_sd']:.3f})"
        )
    metrics["embedding baseline (resid_pre of block 0)"] = f"{summary['embedding_accuracy']:.3f}"
    metrics["majority baseline"] = f"{table.majority_baseline.iloc[0]:.3f}"
    figures = [outputs.emotion.figure(), outputs.emotion.heatmap()]
    if outputs.appraisal is not None:
        r2 = outputs.appraisal.table
        plea = r2[(r2.appraisal == "pleasantness") & (r2.site == config.probe_sites[-1])]
        best_r2 = plea.loc[plea.r2_mean.idxmax()]
        metrics["pleasantness R² (best layer)"] = (
            f"{best_r2.r2_mean:.3f} (layer {int(best_r2.layer)})"
        )
        figures += [outputs.figures["probe_appraisals"], outputs.figures["alignment"]]
    report.add_section(
        "Probing: where emotion and appraisals are linearly decodable",
        text=(
            f"Linear probes on {', '.join(config.probe_sites)} at the last prompt token of "
            f"every layer ({folds}-fold stratified CV, standardised features, class-balanced "
            "L2 logistic regression; shuffled-label control and majority baseline alongside). "
            "Ridge probes predict the 21 appraisal ratings; the alignment map shows the cosine "
            f"between emotion and appraisal probe directions per layer ({len(dataset)} texts)."
        ),
        metrics=metrics,
        figures=figures,
        links={
            name: f"probing/{rel}"
            for name, rel in sorted(outputs.files.items())
            if rel.endswith((".csv", ".json"))
        },
    )
    return {"best": {k: v for k, v in metrics.items()}, "n_rows": outputs.n_rows}
