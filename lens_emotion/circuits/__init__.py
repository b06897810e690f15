"""Emotion circuits (Wang et al. 2025): directions, components, causal tests, modulation.

Modules:

* :mod:`.sev_prompts` - SEV chat prompts (emotion-conditioned and neutral), scenario split.
* :mod:`.capture` - one hooked pass keeping every layer's last-token activations.
* :mod:`.directions` - context-agnostic emotion directions and their consistency.
* :mod:`.components` - head and neuron scores by exact decomposition; explicit head ablation.
* :mod:`.edits` / :mod:`.scoring` - component edits as hooks; fast last-token emotion scores.
* :mod:`.ablation` - ablation / enhancement sweeps with random controls.
* :mod:`.total_effect` - total effect of single components through later layers vs their
  direct score.
* :mod:`.influence` - causal influence of every sublayer on the final emotion score.
* :mod:`.circuit` - per-emotion circuits (JSON).
* :mod:`.generation` - generation with component edits on the KV-cached engine; judged ablation.
* :mod:`.modulation` - circuit modulation vs prompting vs direction steering.
* :mod:`.figures` - Plotly figures.
* :mod:`.workflow` - the end-to-end run behind ``lens-emotion circuits``.
"""

from lens_emotion.circuits.ablation import ComponentMeans, ablation_sweep, default_ks
from lens_emotion.circuits.capture import LastTokenActivations, capture_last_token
from lens_emotion.circuits.circuit import EmotionCircuit, assemble_circuit
from lens_emotion.circuits.components import (
    ComponentScores,
    decomposition_reason,
    head_ablation_effects,
    head_contributions,
    head_output_weights,
    mlp_output_weights,
    neuron_contributions,
    score_components,
    topk_overlap,
)
from lens_emotion.circuits.directions import (
    EmotionDirections,
    compute_directions,
    context_agnostic_directions,
    direction_consistency,
)
from lens_emotion.circuits.edits import ComponentEdit, ablation_edit, edit_hooks
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.circuits.influence import residual_rms, sublayer_influence
from lens_emotion.circuits.scoring import LastTokenScorer
from lens_emotion.circuits.sev_prompts import (
    SevPrompts,
    build_sev_prompts,
    split_files,
    split_scenarios,
)
from lens_emotion.circuits.total_effect import total_effect_summary, total_effects
from lens_emotion.circuits.workflow import CircuitSettings, CircuitsOutputs, run_circuits

__all__ = [
    "CircuitError",
    "CircuitSettings",
    "CircuitsOutputs",
    "ComponentEdit",
    "ComponentMeans",
    "ComponentScores",
    "EmotionCircuit",
    "EmotionDirections",
    "LastTokenActivations",
    "LastTokenScorer",
    "SevPrompts",
    "ablation_edit",
    "ablation_sweep",
    "assemble_circuit",
    "build_sev_prompts",
    "capture_last_token",
    "compute_directions",
    "context_agnostic_directions",
    "default_ks",
    "direction_consistency",
    "edit_hooks",
    "decomposition_reason",
    "head_ablation_effects",
    "head_contributions",
    "head_output_weights",
    "mlp_output_weights",
    "neuron_contributions",
    "residual_rms",
    "run_circuits",
    "score_components",
    "split_files",
    "split_scenarios",
    "sublayer_influence",
    "topk_overlap",
    "total_effect_summary",
    "total_effects",
]
