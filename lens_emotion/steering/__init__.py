"""Appraisal steering (Tak et al., step 3): unique-effect vectors, sweeps, promotion, theory.

* :mod:`.vectors`: signed appraisal combos, unique-effect and minimum-norm steering vectors,
  random control directions;
* :mod:`.sweeps`: steered conditions, the readout and generation sweeps, :class:`SweepOutcome`;
* :mod:`.promotion`: Tak et al.'s emotion promotion with emotion-probe weights;
* :mod:`.theory`: appraisal-theory predictions tested against random directions (Holm);
* :mod:`.figures`: stacked bars, Sankey diagrams, promotion curves (pure);
* :mod:`.workflow`: :func:`run_steering` with :class:`SteeringSettings`.
"""

from lens_emotion.stats import bootstrap_mean_ci
from lens_emotion.steering.figures import promotion_figure, sankey_figure, stacked_bars_figure
from lens_emotion.steering.promotion import (
    PROMOTION_COLUMNS,
    PromotionResult,
    emotion_promotion,
    promotion_vector,
)
from lens_emotion.steering.sweeps import (
    CLEAN,
    GENERATION_COLUMNS,
    GENERATION_INSTRUCTION,
    GENERATION_PREFIX,
    STEERING_COLUMNS,
    SteeringCondition,
    SweepOutcome,
    build_conditions,
    conditions_frame,
    generation_prompts,
    generation_sweep,
    readout_sweep,
)
from lens_emotion.steering.theory import (
    THEORY_ALPHA,
    THEORY_CHECK_COLUMNS,
    THEORY_CHECK_FILE_COLUMNS,
    THEORY_PREDICTIONS,
    THEORY_SUMMARY_COLUMNS,
    TheoryPrediction,
    annotate_checks,
    check_predictions,
    holm_adjust,
    required_combos,
    summarize_checks,
    validate_theory_cell,
)
from lens_emotion.steering.vectors import (
    AppraisalCombo,
    SteeringError,
    appraisal_matrix,
    appraisal_readout,
    combo_vector,
    min_norm_readout_vector,
    random_direction,
    unique_effect_vector,
)
from lens_emotion.steering.workflow import (
    SteeringOutputs,
    SteeringSettings,
    check_appraisal_names,
    run_steering,
    split_rows,
)

__all__ = [
    "CLEAN",
    "GENERATION_COLUMNS",
    "GENERATION_INSTRUCTION",
    "GENERATION_PREFIX",
    "PROMOTION_COLUMNS",
    "STEERING_COLUMNS",
    "THEORY_ALPHA",
    "THEORY_CHECK_COLUMNS",
    "THEORY_CHECK_FILE_COLUMNS",
    "THEORY_PREDICTIONS",
    "THEORY_SUMMARY_COLUMNS",
    "AppraisalCombo",
    "PromotionResult",
    "SteeringCondition",
    "SteeringError",
    "SteeringOutputs",
    "SteeringSettings",
    "SweepOutcome",
    "TheoryPrediction",
    "annotate_checks",
    "appraisal_matrix",
    "appraisal_readout",
    "bootstrap_mean_ci",
    "build_conditions",
    "check_appraisal_names",
    "check_predictions",
    "combo_vector",
    "conditions_frame",
    "emotion_promotion",
    "generation_prompts",
    "generation_sweep",
    "holm_adjust",
    "min_norm_readout_vector",
    "promotion_figure",
    "promotion_vector",
    "random_direction",
    "readout_sweep",
    "required_combos",
    "run_steering",
    "sankey_figure",
    "split_rows",
    "stacked_bars_figure",
    "summarize_checks",
    "unique_effect_vector",
    "validate_theory_cell",
]
