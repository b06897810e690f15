"""Attribution patching (AtP): every patch effect estimated from one backward pass per pair.

- :mod:`~lens_emotion.attribution.atp`: the estimates (:func:`attribute`,
  :func:`attribution_patch`, :class:`AttributionResult`), the finite-difference reference
  :func:`interpolation_patch` and :func:`patching_cost`;
- :mod:`~lens_emotion.attribution.compare`: AtP against real single-layer patching
  (:func:`compare_with_patching`, :class:`PatchingComparison`);
- :mod:`~lens_emotion.attribution.figures`: the figures (pure);
- :mod:`~lens_emotion.attribution.workflow`: :func:`run_attribution` with
  :class:`AttributionSettings` (``lens-emotion attribute``).
"""

from lens_emotion.attribution.atp import (
    ATP_SITES,
    HEAD_SITE,
    AttributionError,
    AttributionResult,
    attribute,
    attribution_patch,
    interpolation_patch,
    patching_cost,
)
from lens_emotion.attribution.compare import PatchingComparison, compare_with_patching
from lens_emotion.attribution.figures import SITE_COLORS, comparison_figure, estimates_figure
from lens_emotion.attribution.workflow import (
    AttributionOutputs,
    AttributionSettings,
    run_attribution,
)

__all__ = [
    "ATP_SITES",
    "HEAD_SITE",
    "SITE_COLORS",
    "AttributionError",
    "AttributionOutputs",
    "AttributionResult",
    "AttributionSettings",
    "PatchingComparison",
    "attribute",
    "attribution_patch",
    "compare_with_patching",
    "comparison_figure",
    "estimates_figure",
    "interpolation_patch",
    "patching_cost",
    "run_attribution",
]
