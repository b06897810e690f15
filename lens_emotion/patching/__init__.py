"""Activation patching and ablation (Tak et al., ACL 2025, step 2).

Modules:

* :mod:`.pairs` - seeded source/target pairs with their clean (calibrated) predictions.
* :mod:`.sites` - windowed patching over sites and center layers (transfer / remained /
  neither, logit difference), and what the other analyses share (windows, outcomes).
* :mod:`.heads` - per-query-head patching of ``hook_z``.
* :mod:`.ablation` - zero / mean / random same-norm ablations; the control task's comparisons.
* :mod:`.engines` - the fast, bridge and reference engines (identical results).
* :mod:`.fast` - the last-position forward of Llama-family decoders behind the fast engine.
* :mod:`.figures` - Plotly figures (pure).
* :mod:`.workflow` - the end-to-end run behind ``lens-emotion patch``.
"""

from lens_emotion.patching.ablation import (
    ABLATION_MODES,
    AblationResult,
    ablate_sites,
    compare_control,
    compare_heads,
)
from lens_emotion.patching.engines import (
    METHODS,
    clean_activations,
    fast_path_matches,
    resolve_method,
    run_variants,
)
from lens_emotion.patching.fast import Variant
from lens_emotion.patching.figures import ablation_figure, head_heatmap, transfer_figure
from lens_emotion.patching.heads import HEAD_COLUMNS, HeadPatchingResult, patch_heads
from lens_emotion.patching.pairs import PatchingError, PatchPairs, draw_pairs
from lens_emotion.patching.sites import (
    OUTCOMES,
    SITES,
    TABLE_COLUMNS,
    PatchingResult,
    bootstrap_ci,
    patch_sites,
    windows,
)
from lens_emotion.patching.workflow import (
    CONTROL_TEMPLATE,
    PatchingOutputs,
    PatchingSettings,
    run_patching,
)

__all__ = [
    "ABLATION_MODES",
    "AblationResult",
    "CONTROL_TEMPLATE",
    "HEAD_COLUMNS",
    "HeadPatchingResult",
    "METHODS",
    "OUTCOMES",
    "PatchPairs",
    "PatchingError",
    "PatchingOutputs",
    "PatchingResult",
    "PatchingSettings",
    "SITES",
    "TABLE_COLUMNS",
    "Variant",
    "ablate_sites",
    "ablation_figure",
    "bootstrap_ci",
    "clean_activations",
    "compare_control",
    "compare_heads",
    "draw_pairs",
    "fast_path_matches",
    "head_heatmap",
    "patch_heads",
    "patch_sites",
    "resolve_method",
    "run_patching",
    "run_variants",
    "transfer_figure",
    "windows",
]
