"""Linear probing of emotions and appraisals in stored activations (Tak et al., step 1).

Modules:

* :mod:`.store` - the activation-store protocol, input checks, :class:`ProbeError`, the
  directions files (:func:`load_directions`).
* :mod:`.solvers` - the fits: scikit-learn logistic regression, ridge, MLP, standardisation,
  thread pools (and the batched torch L-BFGS solver).
* :mod:`.emotions` - emotion probes per (site, layer) with controls and directions,
  cross-dataset evaluation, token positions.
* :mod:`.appraisals` - appraisal ridge probes and the emotion-appraisal alignment.
* :mod:`.figures` - Plotly figures of the results (pure).
* :mod:`.workflow` - the end-to-end run behind ``lens-emotion probe`` (:func:`run_probing`).
"""

from lens_emotion.probing.appraisals import (
    ALIGNMENT_COLUMNS,
    APPRAISAL_PROBE_COLUMNS,
    AlignmentResult,
    AppraisalProbeResult,
    appraisal_alignment,
    probe_appraisals,
)
from lens_emotion.probing.emotions import (
    DEFAULT_MAX_ITER,
    EMOTION_EVAL_COLUMNS,
    EMOTION_PROBE_COLUMNS,
    EmotionProbeResult,
    PositionProbeResult,
    evaluate_emotion_probes,
    probe_emotions,
    probe_positions,
)
from lens_emotion.probing.figures import SITE_LABELS, site_label
from lens_emotion.probing.solvers import fit_threads
from lens_emotion.probing.store import (
    ProbeConvergenceWarning,
    ProbeError,
    SupportsActivations,
    load_directions,
)
from lens_emotion.probing.workflow import ProbingOutputs, ProbingSettings, run_probing

__all__ = [
    "ALIGNMENT_COLUMNS",
    "APPRAISAL_PROBE_COLUMNS",
    "DEFAULT_MAX_ITER",
    "EMOTION_EVAL_COLUMNS",
    "EMOTION_PROBE_COLUMNS",
    "SITE_LABELS",
    "AlignmentResult",
    "AppraisalProbeResult",
    "EmotionProbeResult",
    "PositionProbeResult",
    "ProbeConvergenceWarning",
    "ProbeError",
    "ProbingOutputs",
    "ProbingSettings",
    "SupportsActivations",
    "appraisal_alignment",
    "evaluate_emotion_probes",
    "fit_threads",
    "load_directions",
    "probe_appraisals",
    "probe_emotions",
    "probe_positions",
    "run_probing",
    "site_label",
]
