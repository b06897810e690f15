"""Demo steps: emotion inference (several prompts and calibrations) and the control task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lens_emotion.demo.context import StepContext

if TYPE_CHECKING:
    from lens_emotion.inference import InferenceResult


def inference_step(ctx: StepContext, scores: dict[str, InferenceResult]) -> dict[str, Any]:
    """Emotion inference under each (template, calibration) run of the config.

    The uncalibrated result of each template is left in ``scores`` (by template name) for the
    later steps, which would otherwise score every row again.
    """
    model, dataset, config, out, report, progress, _ = ctx
    from lens_emotion.inference import infer_emotions, recalibrate
    from lens_emotion.viz import label_distribution_figure

    rows, results = [], {}
    for template, calibration in config.runs:
        name = f"{template}" + (f"_{calibration}" if calibration else "")
        if template not in scores:  # one forward pass per template
            scores[template] = infer_emotions(
                model, dataset, template, batch_size=config.batch_size, progress=progress
            )
        result = recalibrate(scores[template], calibration, model=model)
        result.save(out / "inference" / name)
        results[name] = result
        rows.append((name, result))
    best_name, best = max(results.items(), key=lambda item: item[1].macro_f1)
    metrics = {
        f"{name}: accuracy / macro-F1": f"{r.accuracy:.3f} / {r.macro_f1:.3f}" for name, r in rows
    }
    metrics["chance (uniform over labels)"] = f"{1 / len(dataset.label_names):.3f}"
    metrics["throughput (prompts/s, last run)"] = f"{len(best) / max(best.seconds, 1e-9):.1f}"
    raw = results.get("paper")
    figures = [best.figure()]
    if raw is not None:
        figures.append(
            label_distribution_figure(
                {
                    "human": dict(zip(*_counts(raw.labels), strict=True)),
                    "paper prompt": dict(zip(*_counts(raw.predictions), strict=True)),
                    best_name: dict(zip(*_counts(best.predictions), strict=True)),
                },
                title="How often each label is given: human vs model",
                label_order=list(dataset.label_names),
            )
        )
    links = {}
    for name, _ in rows:
        links[f"{name}/predictions.csv"] = f"inference/{name}/predictions.csv"
        links[f"{name}/metrics.json"] = f"inference/{name}/metrics.json"
    report.add_section(
        "Emotion inference",
        text=(
            "Each text is wrapped in a prompt and every emotion label is scored by the "
            "log-probability of its first token at the answer position (only the last "
            "position is unembedded; batches are length-sorted and left-padded). "
            "'content-free' divides out the label distribution the prompt gives to "
            "content-free inputs (Zhao et al. 2021); 'mean' subtracts each label's mean "
            f"log-prob over these texts. The confusion matrix shows the best run ({best_name})."
        ),
        metrics=metrics,
        figures=figures,
        links=links,
    )
    return {name: {"accuracy": r.accuracy, "macro_f1": r.macro_f1} for name, r in rows}


def _counts(values: Any) -> tuple[list[str], list[int]]:
    import pandas as pd

    counts = pd.Series(list(values)).value_counts()
    return [str(k) for k in counts.index], [int(v) for v in counts.values]


def control_step(ctx: StepContext, scores: dict[str, InferenceResult]) -> dict[str, Any]:
    """The non-emotional control task (first word of the context); its result joins ``scores``."""
    model, dataset, config, out, report, progress, _ = ctx
    from lens_emotion.inference import infer_emotions

    result = infer_emotions(
        model, dataset, "control-first-word", batch_size=config.batch_size, progress=progress
    )
    result.save(out / "inference" / "control-first-word")
    scores["control-first-word"] = result
    report.add_section(
        "Control task: first word of the context",
        text=(
            "The non-emotional control task used by Tak et al.: the same texts, but the "
            "model must name the context's first word. Patching analyses compare which "
            "layers matter for it and for emotion."
        ),
        metrics={
            "accuracy": f"{result.accuracy:.3f}",
            "distinct first words": len(result.label_names),
        },
        links={
            "predictions.csv": "inference/control-first-word/predictions.csv",
            "metrics.json": "inference/control-first-word/metrics.json",
        },
    )
    return {"accuracy": result.accuracy}
