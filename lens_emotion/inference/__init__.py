"""Emotion inference from label-token log-probabilities (Tak et al.'s readout).

- :mod:`.scoring`: :func:`infer_emotions`, :func:`label_logprobs`, calibration
  (:func:`recalibrate`, :func:`resolve_calibration`), :class:`InferenceResult`,
  :func:`agreeing`, :func:`control_rows`.
- :mod:`.figures`: the confusion-matrix figure.
- :mod:`.workflow`: :func:`run_inference` with :class:`InferenceSettings` (``lens-emotion
  infer``).
"""

from lens_emotion.inference.figures import confusion_matrix_figure
from lens_emotion.inference.scoring import (
    AUTO_CALIBRATION,
    AUTO_CALIBRATION_BY_TASK,
    CALIBRATION_MODES,
    CONTENT_FREE_TEXTS,
    CalibrationError,
    InferenceError,
    InferenceResult,
    agreeing,
    control_rows,
    heldout_split,
    infer_emotions,
    label_logprobs,
    recalibrate,
    resolve_calibration,
)
from lens_emotion.inference.workflow import (
    ENGINES,
    InferenceOutputs,
    InferenceSettings,
    run_inference,
)

__all__ = [
    "AUTO_CALIBRATION",
    "AUTO_CALIBRATION_BY_TASK",
    "CALIBRATION_MODES",
    "CONTENT_FREE_TEXTS",
    "ENGINES",
    "CalibrationError",
    "InferenceError",
    "InferenceOutputs",
    "InferenceResult",
    "InferenceSettings",
    "agreeing",
    "confusion_matrix_figure",
    "control_rows",
    "heldout_split",
    "infer_emotions",
    "label_logprobs",
    "recalibrate",
    "resolve_calibration",
    "run_inference",
]
