"""Where does the answer position look? Attention patterns, token groups and emotion tokens.

Tak et al. (ACL 2025) report that early layers attend to syntax, middle layers move attention
onto the emotion-related words of the event description, and the last layers mostly carry the
final token's own representation forward. This package makes that measurable:

- :mod:`~lens_emotion.attention.tokens`: the token groups of a prompt (sink, template, event
  text, final token) and :class:`AttentionError`;
- :mod:`~lens_emotion.attention.patterns`: :func:`capture_patterns` from the bridge's
  ``hook_pattern``, with a shared-prefix key/value cache (:mod:`~.kv_cache`);
- :mod:`~lens_emotion.attention.saliency`: :func:`occlusion_saliency`, which defines the
  emotion-bearing tokens;
- :mod:`~lens_emotion.attention.mass`: :func:`attention_mass`, the final token's attention per
  group, layer and head with bootstrap intervals;
- :mod:`~lens_emotion.attention.figures`: the pure figures;
- :mod:`~lens_emotion.attention.inspector`: :func:`build_inspector`, the offline HTML page;
- :mod:`~lens_emotion.attention.workflow`: :func:`run_attention` with
  :class:`AttentionSettings`.
"""

from lens_emotion.attention.figures import (
    mass_figure,
    mass_heatmap,
    patterns_figure,
    saliency_figure,
)
from lens_emotion.attention.inspector import (
    DEFAULT_LIMIT,
    MAX_SAMPLES,
    InspectorError,
    build_inspector,
)
from lens_emotion.attention.mass import (
    NORMALISATIONS,
    AttentionMassResult,
    attention_mass,
    bootstrap_ci,
    group_counts,
    group_masses,
    layer_bands,
)
from lens_emotion.attention.patterns import AttentionPatterns, capture_patterns
from lens_emotion.attention.saliency import Saliency, occlusion_saliency, prompts_with_saliency
from lens_emotion.attention.tokens import (
    CONTEXT,
    FINAL,
    GROUP_COLORS,
    GROUP_LABELS,
    GROUP_NAMES,
    MASS_GROUPS,
    SINK,
    TEMPLATE,
    AttentionError,
    TokenGroups,
    context_char_span,
    shared_prefix_length,
    token_groups,
)
from lens_emotion.attention.workflow import (
    AttentionOutputs,
    AttentionSettings,
    run_attention,
)

__all__ = [
    "CONTEXT",
    "DEFAULT_LIMIT",
    "FINAL",
    "GROUP_COLORS",
    "GROUP_LABELS",
    "GROUP_NAMES",
    "MASS_GROUPS",
    "MAX_SAMPLES",
    "NORMALISATIONS",
    "SINK",
    "TEMPLATE",
    "AttentionError",
    "AttentionMassResult",
    "AttentionOutputs",
    "AttentionPatterns",
    "AttentionSettings",
    "InspectorError",
    "Saliency",
    "TokenGroups",
    "attention_mass",
    "bootstrap_ci",
    "build_inspector",
    "capture_patterns",
    "context_char_span",
    "group_counts",
    "group_masses",
    "layer_bands",
    "mass_figure",
    "mass_heatmap",
    "occlusion_saliency",
    "patterns_figure",
    "prompts_with_saliency",
    "run_attention",
    "saliency_figure",
    "shared_prefix_length",
    "token_groups",
]
