"""Demo step: appraisal steering with unique-effect vectors, checked against appraisal theory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lens_emotion.demo.context import StepContext
from lens_emotion.demo.links import output_links

if TYPE_CHECKING:
    pass


def steering_step(ctx: StepContext, judge_data_path: Path | None) -> dict[str, Any]:
    """Readout and judged-generation sweeps of appraisal unique-effect vectors."""
    model, dataset, config, out, report, progress, seed = ctx
    from lens_emotion.steering.workflow import SteeringSettings, run_steering

    folder = out / "steering"
    settings = SteeringSettings(
        combos=tuple(config.steer_combos),
        layers=tuple(config.steer_layers) if config.steer_layers else (model.n_layers // 2,),
        betas=tuple(config.steer_betas),
        n=config.steer_n,
        n_probe=min(config.steer_n_probe, len(dataset) - config.steer_n),
        n_folds=min(config.probe_folds, 3),
        generate=config.steer_generate,
        gen_n=config.steer_gen_n,
        gen_controls=config.steer_gen_controls,
        max_new_tokens=config.steer_max_new_tokens,
        judge_data_path=judge_data_path,
        batch_size=config.batch_size,
        seed=seed,
    )
    outputs = run_steering(model, dataset, folder, settings, progress=progress)
    metrics: dict[str, Any] = {}
    if outputs.judge is not None:
        validation = outputs.judge.get("validation", {})
        if "accuracy" in validation:
            metrics["judge held-out accuracy (majority baseline)"] = (
                f"{validation['accuracy']:.3f} ({validation.get('majority_baseline', 0):.3f})"
            )
    checks = []
    for row in outputs.theory_summary.itertuples():
        key = f"theory [{row.outcome}]: {row.description}"
        metrics[key] = f"{row.verdict} ({row.cells_passed}/{row.cells} cells)"
        checks.append(
            {"prediction": row.prediction, "outcome": row.outcome, "verdict": row.verdict}
        )
    names = list(outputs.figures)
    chosen = [n for n in names if n.startswith("readout_bars")][:2]
    chosen += [n for n in names if n.startswith("generation_bars")][:1]
    chosen += [n for n in names if n.startswith("readout_sankey")][:1]
    report.add_section(
        "Appraisal steering (unique-effect vectors)",
        text=(
            "Ridge appraisal probes give a direction per appraisal in the residual stream; the "
            "unique-effect vector of an appraisal is that direction projected orthogonal to the "
            "span of all the others (the projection is applied). Adding β·RMS·z/‖z‖ at the "
            "chosen layer shifts the emotion read out at the answer position (outcome 1) and "
            "the emotion of freely generated continuations, judged by an offline sentence-"
            "embedding classifier independent of the steered model (outcome 2); random "
            "same-norm directions are the control. The theory checks test appraisal theory's "
            "predictions (e.g. +pleasantness → joy and pride rise) and are reported as they "
            "come out, pass or fail."
        ),
        metrics=metrics,
        figures=[outputs.figures[n] for n in chosen],
        links=output_links(folder, out),
    )
    return {"theory_checks": checks}
