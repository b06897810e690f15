"""Appraisal-theory predictions for steering, checked with numbers, CIs and random controls.

Appraisal theory (and Tak et al.) predict these shifts when appraisal directions are steered:

1. facilitating pleasantness -> joy and pride rise;
2. suppressing pleasantness -> sadness, guilt and anger rise;
3. facilitating other-responsibility (other-agency) -> anger rises;
4. suppressing other-responsibility -> guilt rises;
5. +pleasantness together with +other-responsibility -> pride rises and joy falls.

"Facilitating" a combo means steering with ``beta > 0``, "suppressing" with ``beta < 0``.

**The test at one (layer, beta) cell**, for each named emotion ``e`` and each text ``i``:
``d_i = v_steered,i(e) - v_clean,i(e)`` (paired change against the unsteered run) and
``x_i = v_steered,i(e) - mean_seeds v_random,i(e)`` (excess over random directions of the same
step size at the same layer), where ``v`` is the readout probability (outcome 1) or the judged
label indicator (outcome 2). An emotion part *passes* when the 95% bootstrap CIs (texts
resampled) of both ``mean(d)`` and ``mean(x)`` lie strictly on the predicted side of 0; a
prediction passes at a cell when all its parts pass. Nothing is tuned: every swept layer and
beta is reported, and the summary counts the cells where each prediction passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lens_emotion.steering import SteeringError, SweepOutcome, bootstrap_mean_ci

__all__ = [
    "THEORY_CHECK_COLUMNS",
    "THEORY_PREDICTIONS",
    "THEORY_SUMMARY_COLUMNS",
    "TheoryPrediction",
    "check_predictions",
    "required_combos",
    "summarize_checks",
]


@dataclass(frozen=True)
class TheoryPrediction:
    """One predicted shift.

    Attributes:
        key: Short identifier (``"pleasantness+"`` ...).
        description: The prediction in words.
        combo: Combo name steered (as :attr:`lens_emotion.steering.AppraisalCombo.name`).
        beta_sign: ``+1`` (facilitate) or ``-1`` (suppress).
        rises: Emotions predicted to rise.
        falls: Emotions predicted to fall.
    """

    key: str
    description: str
    combo: str
    beta_sign: int
    rises: tuple[str, ...] = ()
    falls: tuple[str, ...] = ()

    def parts(self) -> list[tuple[str, int]]:
        """``[(emotion, +1 rise / -1 fall), ...]``."""
        return [(e, 1) for e in self.rises] + [(e, -1) for e in self.falls]


THEORY_PREDICTIONS: tuple[TheoryPrediction, ...] = (
    TheoryPrediction(
        "pleasantness+",
        "facilitating pleasantness: joy and pride rise",
        "+pleasantness",
        1,
        rises=("joy", "pride"),
    ),
    TheoryPrediction(
        "pleasantness-",
        "suppressing pleasantness: sadness, guilt and anger rise",
        "+pleasantness",
        -1,
        rises=("sadness", "guilt", "anger"),
    ),
    TheoryPrediction(
        "other_responsblt+",
        "facilitating other-responsibility: anger rises",
        "+other_responsblt",
        1,
        rises=("anger",),
    ),
    TheoryPrediction(
        "other_responsblt-",
        "suppressing other-responsibility: guilt rises",
        "+other_responsblt",
        -1,
        rises=("guilt",),
    ),
    TheoryPrediction(
        "pleasantness+other_responsblt+",
        "+pleasantness with +other-responsibility: pride rises and joy falls",
        "+pleasantness,+other_responsblt",
        1,
        rises=("pride",),
        falls=("joy",),
    ),
)
"""The five predictions of the issue, in order."""

#: Columns of :func:`check_predictions`.
THEORY_CHECK_COLUMNS: tuple[str, ...] = (
    "outcome",
    "method",
    "prediction",
    "description",
    "combo",
    "layer",
    "beta",
    "emotion",
    "expected",
    "clean",
    "steered",
    "delta",
    "delta_ci_low",
    "delta_ci_high",
    "control_delta",
    "excess",
    "excess_ci_low",
    "excess_ci_high",
    "n",
    "passed",
)

#: Columns of :func:`summarize_checks`.
THEORY_SUMMARY_COLUMNS: tuple[str, ...] = (
    "outcome",
    "method",
    "prediction",
    "description",
    "cells",
    "cells_passed",
    "pass_rate",
    "best_layer",
    "best_beta",
    "verdict",
)


def required_combos(predictions: Sequence[TheoryPrediction] = THEORY_PREDICTIONS) -> list[str]:
    """Combo names the predictions need, in first-use order."""
    return list(dict.fromkeys(p.combo for p in predictions))


def _side(low: float, high: float, expected: int) -> bool:
    return low > 0 if expected > 0 else high < 0


def check_predictions(
    sweep: SweepOutcome,
    predictions: Sequence[TheoryPrediction] = THEORY_PREDICTIONS,
    method: str = "unique",
    combo_prefix: str = "",
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Test each prediction at every swept layer and beta of the right sign.

    Args:
        sweep: A readout or generation :class:`~lens_emotion.steering.SweepOutcome` with
            random-direction controls.
        predictions: Predictions to test; those whose combo or emotions the sweep lacks are
            skipped.
        method: Recorded in the ``method`` column (which direction construction was steered).
        combo_prefix: Prefix of the combo names in the sweep for this method (e.g. ``"raw:"``
            when raw-direction combos were swept under prefixed names).
        n_boot: Bootstrap resamples.
        seed: Bootstrap seed.

    Returns:
        One row per (prediction, layer, beta, emotion); columns :data:`THEORY_CHECK_COLUMNS`.

    Raises:
        SteeringError: The sweep has no random-direction controls.
    """
    if not sweep.has_controls():
        raise SteeringError(
            "theory checks compare against random directions; build the sweep with n_controls >= 1."
        )
    labels = list(sweep.label_names)
    clean = sweep.select("", 0, 0.0)[0]
    combos = set(sweep.combos())
    records = []
    for pred in predictions:
        name = combo_prefix + pred.combo
        if name not in combos or any(e not in labels for e, _ in pred.parts()):
            continue
        for layer in sweep.layers():
            for beta in sweep.betas():
                if beta == 0.0 or np.sign(beta) != pred.beta_sign:
                    continue
                steered = sweep.select(name, layer, beta).mean(axis=0)
                control = sweep.select(name, layer, beta, control=True).mean(axis=0)
                for emotion, expected in pred.parts():
                    j = labels.index(emotion)
                    diff = steered[:, j] - clean[:, j]
                    excess = steered[:, j] - control[:, j]
                    d_mean, d_low, d_high = bootstrap_mean_ci(diff, n_boot, seed)
                    x_mean, x_low, x_high = bootstrap_mean_ci(excess, n_boot, seed)
                    records.append(
                        {
                            "outcome": sweep.outcome,
                            "method": method,
                            "prediction": pred.key,
                            "description": pred.description,
                            "combo": pred.combo,
                            "layer": int(layer),
                            "beta": float(beta),
                            "emotion": emotion,
                            "expected": "rise" if expected > 0 else "fall",
                            "clean": float(clean[:, j].mean()),
                            "steered": float(steered[:, j].mean()),
                            "delta": float(d_mean),
                            "delta_ci_low": float(d_low),
                            "delta_ci_high": float(d_high),
                            "control_delta": float((control[:, j] - clean[:, j]).mean()),
                            "excess": float(x_mean),
                            "excess_ci_low": float(x_low),
                            "excess_ci_high": float(x_high),
                            "n": int(len(diff)),
                            "passed": bool(
                                _side(float(d_low), float(d_high), expected)
                                and _side(float(x_low), float(x_high), expected)
                            ),
                        }
                    )
    return pd.DataFrame(records, columns=list(THEORY_CHECK_COLUMNS))


def summarize_checks(checks: pd.DataFrame) -> pd.DataFrame:
    """Per prediction: cells tested, cells where every part passed, and the strongest cell.

    ``best_layer``/``best_beta`` is the cell with the largest mean excess over the random
    control in the predicted direction (reported, not used to decide anything); ``verdict``
    is ``"pass"`` if the prediction passed at one cell or more, else ``"fail"``.
    """
    records = []
    if checks.empty:
        return pd.DataFrame(columns=list(THEORY_SUMMARY_COLUMNS))
    keys = ["outcome", "method", "prediction", "description"]
    for (outcome, method, pred, desc), rows in checks.groupby(keys, sort=False):
        signed = np.where(rows["expected"] == "rise", 1.0, -1.0) * rows["excess"]
        cells = rows.assign(signed=signed).groupby(["layer", "beta"], sort=False)
        passed = cells["passed"].all()
        strength = cells["signed"].min()
        best = strength.idxmax()
        records.append(
            {
                "outcome": outcome,
                "method": method,
                "prediction": pred,
                "description": desc,
                "cells": int(len(passed)),
                "cells_passed": int(passed.sum()),
                "pass_rate": float(passed.mean()),
                "best_layer": int(best[0]),
                "best_beta": float(best[1]),
                "verdict": "pass" if passed.any() else "fail",
            }
        )
    return pd.DataFrame(records, columns=list(THEORY_SUMMARY_COLUMNS))
