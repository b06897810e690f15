"""Demo step: emotion geometry (PC1 ~ valence, RSA vs appraisals, crowd-enVENT vs SEV)."""

from __future__ import annotations

from typing import Any

from lens_emotion.demo.context import StepContext
from lens_emotion.demo.links import output_links


def geometry_step(ctx: StepContext) -> dict[str, Any]:
    """Emotion vectors, PCA vs human valence/arousal, RSA, and the cross-paper comparison.

    Reuses the probing step's activation store (same request: no forward pass) and the
    circuits step's SEV directions (``circuits/directions.safetensors``) when it ran.
    """
    model, dataset, config, out, report, progress, seed = ctx
    from lens_emotion.activations import extract_activations
    from lens_emotion.geometry import GeometrySettings, run_geometry
    from lens_emotion.prompts import build_prompts

    folder = out / "geometry"
    options = dict(config.geometry_settings)
    site = "resid_post" if "resid_post" in config.probe_sites else config.probe_sites[-1]
    options.setdefault("sites", (site,))
    options.setdefault("n_rows", len(dataset))
    settings = GeometrySettings(**options)
    prompts = build_prompts(model, dataset.texts, dataset.labels, dataset.label_names)
    store = extract_activations(
        model, prompts, sites=list(config.probe_sites), positions=1, dataset=dataset,
        batch_size=config.batch_size, seed=seed, progress=progress,
    )  # fmt: skip
    directions = out / "circuits" / "directions.safetensors"
    sev = directions if directions.is_file() else None
    outputs = run_geometry(
        model, dataset, folder, settings, sev, seed=seed, progress=progress, store=store
    )
    s = outputs.summary()
    low, high = s["peak_valence_ci"]
    metrics: dict[str, Any] = {
        "PC1 ~ human valence, peak r [95% CI] (layer, relative depth)": (
            f"{s['peak_valence_r']:.3f} [{low:.3f}, {high:.3f}] (layer "
            f"{s['peak_valence_layer']}, {s['peak_valence_relative_depth']:.2f})"
        ),
        "PC2 ~ arousal (intensity), peak r": f"{s['peak_arousal_r']:.3f}",
        "per-text Spearman(PC1 projection, pleasantness), peak": (
            f"{s['peak_text_pleasantness_rho']:.3f}"
        ),
        "RSA vs appraisal profiles, peak rho (p, layer)": (
            f"{s['peak_rsa_rho']:.3f} ({s['peak_rsa_p']:.3f}, layer {s['peak_rsa_layer']})"
        ),
    }
    if "peak_valence_r_keyword_free" in s:
        metrics["keyword-free rows: PC1 ~ valence, peak r"] = (
            f"{s['peak_valence_r_keyword_free']:.3f} (layer {s['peak_valence_layer_keyword_free']})"
        )
    if "crosspaper_peak_diag_cos" in s:
        metrics["crowd-enVENT vs SEV matched cosine, peak (layer; permutation p)"] = (
            f"{s['crosspaper_peak_diag_cos']:.3f} (layer {s['crosspaper_peak_layer']}; "
            f"{s['crosspaper_perm_p_at_peak']:.4f}); layers beating the permutation baseline: "
            f"{s['crosspaper_layers_beating_permutation']} of {s['crosspaper_n_layers']}"
        )
    report.add_section(
        "Emotion geometry: valence and arousal axes, RSA, and the two papers' directions",
        text=(
            "Emotion vectors (class mean minus grand mean at the last prompt token) are "
            "reduced by PCA per layer; each emotion's PC1 and PC2 scores are correlated with "
            "the writers' own mean valence (pleasantness − unpleasantness) and intensity, with "
            "bootstrap CIs over texts, and repeated on texts naming no emotion word. RSA "
            "compares the vectors' cosine similarities with the similarity of the human "
            "appraisal profiles (label-permutation p). The cross-paper part compares the "
            "crowd-enVENT vectors of the 6 shared emotions with the circuits step's SEV "
            "directions against mismatched and random baselines."
            + ("" if sev is not None else " (No SEV directions: the circuits step did not run.)")
        ),
        metrics=metrics,
        figures=list(outputs.figures.values()),
        links=output_links(folder, out),
    )
    s.pop("by_kind", None)
    return s
