"""Demo step: emotion circuits on SEV scenarios (Wang et al. 2025)."""

from __future__ import annotations

from typing import Any

from lens_emotion.demo.context import StepContext
from lens_emotion.demo.links import output_links


def circuits_step(ctx: StepContext, judge: Any | None) -> dict[str, Any]:
    """Directions, head/neuron scores, ablation curves, sublayer influence and modulation."""
    model, sev, config, out, report, progress, seed = ctx
    from lens_emotion.circuits.workflow import CircuitSettings, run_circuits

    folder = out / "circuits"
    settings = CircuitSettings(**config.circuit_settings)  # "auto" layers fit the model
    outputs = run_circuits(
        model, sev, folder, seed=seed, settings=settings, judge=judge, progress=progress
    )
    metrics: dict[str, Any] = {}
    consistency = outputs.consistency
    for site, group in consistency.groupby("site", sort=False):
        if "heldout_accuracy" in group and group.heldout_accuracy.notna().any():
            best = group.loc[group.heldout_accuracy.idxmax()]
            metrics[f"{site}: held-out projection accuracy (best layer; chance)"] = (
                f"{best.heldout_accuracy:.3f} (layer {int(best.layer)}; {best.chance:.3f})"
            )
        mid = group.iloc[len(group) // 2]
        metrics[f"{site}: cosine across themes / valences (layer {int(mid.layer)})"] = (
            f"{mid.cos_across_themes:.3f} / {mid.cos_across_valences:.3f}"
        )
    check = outputs.head_check
    metrics["head decomposition vs per-head ablation: max |Δ|"] = (
        f"{check['max_abs_difference']:.2e} over {check['n_heads']} heads "
        f"(largest contribution {check['max_abs_contribution']:.2f})"
    )
    metrics["decomposition / ablation time"] = (
        f"{check['decomposition_einsum_s']:.3f} s / {check['ablation_s']:.1f} s"
    )
    summary: dict[str, Any] = {"head_check_max_abs_difference": check["max_abs_difference"]}
    if outputs.control is not None:
        table = outputs.control
        overall = table[table.emotion == "all"] if "all" in set(table.emotion) else table
        for row in overall.itertuples():
            metrics[f"judged as target, emotion words masked: {row.method} ({row.emotion})"] = (
                f"{row.judged_masked:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]; "
                f"names the emotion {row.names_emotion:.2f}; {row.judges_note}"
            )
        summary["control"] = overall.to_dict(orient="records")
    names = list(outputs.figures)
    first_circuit = next((n for n in names if n.startswith("circuit_")), None)
    chosen = [n for n in names if not n.startswith("circuit_")]
    if first_circuit:
        chosen.append(first_circuit)
    report.add_section(
        "Emotion circuits (SEV scenarios)",
        text=(
            "Context-agnostic emotion directions come from the last prompt token of "
            "emotion-instructed SEV prompts (centred within each scenario × valence, averaged "
            "per emotion, centred again, normalised). Heads and neurons are scored by exact "
            "linear decomposition of what they write onto each direction (checked against "
            "per-head zero ablation), validated by ablating or enhancing the top-k against "
            "random-k controls, and assembled with the most influential sublayers into a "
            "circuit per emotion. Modulating the circuit on neutral prompts is compared with "
            "prompting and direction steering, judged by the offline classifier."
        ),
        metrics=metrics,
        figures=[outputs.figures[n] for n in chosen],
        links=output_links(folder, out),
    )
    return summary
