"""Sizes and choices of a demo run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _default_circuits() -> dict[str, Any]:
    return {
        "n_scenarios": 16,
        "n_eval_scenarios": 8,
        "n_ablation_prompts": 6,
        "max_k_heads": 16,
        "max_k_neurons": 256,
        "n_random": 2,
        "check_prompts": 4,
        "total_effect_heads": 16,
        "total_effect_neurons": 16,
        "gen_ablation_prompts": 3,
        "n_tune_scenarios": 2,
        # equal-size strength grids for modulation and steering (small ones included)
        "gamma_grid": (1.0, 4.0, 16.0),
        "beta_grid": (1.0, 4.0, 16.0),
        "max_new_tokens": 20,
    }


def _default_geometry() -> dict[str, Any]:
    return {"n_boot": 500, "n_perm": 499, "n_random": 500}


@dataclass
class DemoConfig:
    """Sizes and choices of a demo run.

    Attributes:
        n_rows: Rows of a stratified subset of crowd-enVENT, or of the built-in sample set
            when smaller than it (130 rows).
        runs: ``(template, calibration)`` pairs of the inference step.
        batch_size: Prompts per forward pass.
        probe_sites: Sites of the probing step.
        probe_folds: Cross-validation folds of the probes.
        attention_rows: Texts of the attention step (occlusion saliency is the costly part).
        attention_layers: Number of evenly spaced layers of the attention step (first and
            last included; default: all layers).
        patch_pairs: Source/target pairs of the patching step.
        patch_span: Window of layers patched around each centre layer.
        patch_heads: Also patch (and attribute) every query head.
        attribution_pairs: Pairs of the attribution-patching step.
        steer_combos: Appraisal combos steered (theory-check combos are added).
        steer_layers: Centre layers steered (default: the middle layer).
        steer_betas: Steering strengths (RMS units).
        steer_n: Steered texts.
        steer_n_probe: Texts for the appraisal probes (disjoint from the steered ones).
        steer_generate: Also steer free generation, judged offline.
        steer_gen_n: Texts whose continuations are generated.
        steer_max_new_tokens: Tokens per continuation.
        steer_gen_controls: Random same-norm directions per generation cell (the readout
            sweep keeps the workflow's 10 per cell for the theory checks; generation is the
            costly part, so the demo generates for 2).
        circuit_settings: :class:`~lens_emotion.circuits.workflow.CircuitSettings` fields.
        geometry_settings: :class:`~lens_emotion.geometry.GeometrySettings` fields.
    """

    n_rows: int = 260
    runs: tuple[tuple[str, str | None], ...] = (
        ("paper", None),
        ("emotion-list", None),
        ("emotion-list", "content-free"),
        ("emotion-list", "mean"),
    )
    batch_size: int = 16
    probe_sites: tuple[str, ...] = ("attn_out", "mlp_out", "resid_post")
    probe_folds: int = 5
    attention_rows: int = 48
    attention_layers: int | None = None
    patch_pairs: int = 60
    patch_span: int = 3
    patch_heads: bool = True
    attribution_pairs: int = 30
    steer_combos: tuple[str, ...] = ("+pleasantness", "+other_responsblt")
    steer_layers: tuple[int, ...] | None = None
    steer_betas: tuple[float, ...] = (-8.0, -4.0, 0.0, 4.0, 8.0)
    steer_n: int = 40
    steer_n_probe: int = 200
    steer_generate: bool = True
    steer_gen_n: int = 12
    steer_max_new_tokens: int = 20
    steer_gen_controls: int = 2
    circuit_settings: dict[str, Any] = field(default_factory=_default_circuits)
    geometry_settings: dict[str, Any] = field(default_factory=_default_geometry)

    @classmethod
    def quick(cls) -> DemoConfig:
        """Smaller sizes for a smoke run (under 3 minutes on a 2-core CPU)."""
        return cls(
            n_rows=52,
            runs=(("paper", None), ("emotion-list", None), ("emotion-list", "mean")),
            probe_sites=("resid_post",),
            probe_folds=3,
            attention_rows=8,
            attention_layers=5,
            patch_pairs=12,
            patch_heads=False,
            attribution_pairs=8,
            steer_combos=("+pleasantness",),
            steer_betas=(-8.0, 0.0, 8.0),
            steer_n=20,
            steer_n_probe=90,
            steer_generate=False,
            circuit_settings={
                "n_scenarios": 4,
                "n_eval_scenarios": 2,
                "n_ablation_prompts": 2,
                "max_k_heads": 4,
                "max_k_neurons": 8,
                "interventions": ("mean", "scale"),
                "n_random": 1,
                "check_prompts": 2,
                "total_effect_heads": 8,
                "total_effect_neurons": 8,
                "described_consistency": False,
                "generate": False,
            },
            geometry_settings={
                "vectors": ("mean",),
                "n_boot": 200,
                "n_perm": 199,
                "n_random": 200,
            },  # fmt: skip
        )
