"""Appraisal-theory predictions for steering, tested against random directions and corrected.

Appraisal theory (and Tak et al.) predict these shifts when appraisal directions are steered:

1. facilitating pleasantness -> joy and pride rise;
2. suppressing pleasantness -> sadness, guilt and anger rise;
3. facilitating other-responsibility (other-agency) -> anger rises;
4. suppressing other-responsibility -> guilt rises;
5. +pleasantness together with +other-responsibility -> pride rises and joy falls.

"Facilitating" a combo means steering with ``beta > 0``, "suppressing" with ``beta < 0``.

**One part at one (layer, beta) cell** (:func:`check_predictions`). For a named emotion ``e``
let ``v`` be the readout probability of ``e`` (outcome 1) or the judged-label indicator
(outcome 2), ``a_i = v_steered,i - v_clean,i`` the paired change of text ``i`` and
``r_k,i = v_random k,i - v_clean,i`` the change under random direction ``k = 1..K`` (same
step size, same layer). Two one-sided tests, both of which must reject:

* *change against the clean run*: ``mean(a)``, paired t-test over texts (``delta_p``), with a
  bootstrap CI (texts resampled);
* *excess over random directions*: ``x = mean(a) - mean_k mean_i r_k,i``. Its CI is a
  two-level bootstrap: every replicate resamples the texts **and** the ``K`` random directions
  (``excess_ci_*``), so the random-direction mean is not treated as fixed. The test
  (``excess_p``) asks whether the steered direction is more effective than *a* random
  direction of the same norm: one direction is a single draw, so its own spread around the
  random-direction mean counts too. ``t = x / sqrt(V_boot + s^2)`` with ``V_boot`` the
  two-level bootstrap variance of ``x`` and ``s^2`` the variance over the ``K`` random
  directions of their mean change, referred to a t distribution with ``K - 1`` degrees of
  freedom (a prediction interval for a new direction). This needs ``K >= 2``; the default
  sweep uses 10.

The part's p-value is the larger of the two (``p``; an intersection-union test), and a cell's
p-value the largest over the prediction's parts (every part must hold). Tests are one-sided at
``alpha = 0.025`` (:data:`THEORY_ALPHA`, the level at which a 95% two-sided interval excludes 0).

**A prediction's verdict** (:func:`annotate_checks`, :func:`summarize_checks`) is one of:

* the default: Holm's step-down correction over every (layer, beta) cell the prediction was
  tested at; ``"pass"`` if the smallest Holm-adjusted cell p-value is below ``alpha`` (the
  family-wise error over the cells stays below ``alpha``);
* with ``theory_cell=(layer, step)`` fixed before the run: only the cell at that layer and
  ``beta = sign * step`` (the prediction's sign) decides, uncorrected; every other cell is
  reported but does not count.

Cells that pass uncorrected are counted (``cells_passed``) but never decide a verdict: with 18
cells, one passing somewhere is expected by chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from jaxtyping import Float
from scipy import stats

from lens_emotion.steering.sweeps import SweepOutcome
from lens_emotion.steering.vectors import SteeringError

__all__ = [
    "THEORY_ALPHA",
    "THEORY_CHECK_COLUMNS",
    "THEORY_CHECK_FILE_COLUMNS",
    "THEORY_PREDICTIONS",
    "THEORY_SUMMARY_COLUMNS",
    "TheoryPrediction",
    "annotate_checks",
    "check_predictions",
    "holm_adjust",
    "required_combos",
    "summarize_checks",
    "validate_theory_cell",
]

THEORY_ALPHA = 0.025
"""One-sided level of every theory test (a 95% two-sided interval excludes 0 at this level)."""


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


#: Columns of :func:`check_predictions` (one row per prediction part and cell).
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
    "delta_p",
    "control_delta",
    "control_sd",
    "n_controls",
    "random_at_least",
    "excess",
    "excess_ci_low",
    "excess_ci_high",
    "excess_p",
    "p",
    "passed_ci",
    "passed",
    "n",
)

#: Columns of :func:`annotate_checks` (``theory_checks.csv``): the part rows plus the cell's
#: p-value, its Holm-adjusted p-value within the prediction, and the prediction's verdict.
THEORY_CHECK_FILE_COLUMNS: tuple[str, ...] = THEORY_CHECK_COLUMNS + (
    "cell_p",
    "cell_passed",
    "cell_p_holm",
    "cell_passed_holm",
    "fixed_cell",
    "cells_tested",
    "cells_passed_uncorrected",
    "min_p_holm",
    "rule",
    "verdict",
)

#: Columns of :func:`summarize_checks` (``theory_summary.csv``).
THEORY_SUMMARY_COLUMNS: tuple[str, ...] = (
    "outcome",
    "method",
    "prediction",
    "description",
    "rule",
    "cells",
    "cells_passed",
    "cells_passed_holm",
    "min_p",
    "min_p_holm",
    "fixed_cell_p",
    "best_layer",
    "best_beta",
    "verdict",
)


def required_combos(predictions: Sequence[TheoryPrediction] = THEORY_PREDICTIONS) -> list[str]:
    """Combo names the predictions need, in first-use order."""
    return list(dict.fromkeys(p.combo for p in predictions))


def holm_adjust(
    p_values: Sequence[float] | Float[np.ndarray, " m"],
) -> Float[np.ndarray, " m"]:
    """Holm's step-down adjusted p-values (NaNs are left out of the family and stay NaN).

    With the ``m`` p-values sorted ascending, ``p_(j)`` is adjusted to
    ``max_{i <= j} min(1, (m - i + 1) p_(i))``; rejecting where the adjusted value is below
    ``alpha`` controls the family-wise error rate at ``alpha`` under any dependence.

    Args:
        p_values: Raw p-values.

    Returns:
        Adjusted p-values, in the input order.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    vals = p[ok]
    order = np.argsort(vals, kind="stable")
    ranked = np.minimum(1.0, vals[order] * (m - np.arange(m)))
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(ranked)
    out[ok] = adjusted
    return out


def _one_sided_p(mean: float, se: float, df: int, expected: int) -> float:
    """p-value of a one-sided t-test that ``mean`` lies on the ``expected`` side of 0."""
    signed = expected * mean
    if not np.isfinite(se) or se <= 0.0:
        return 0.0 if signed > 0 else 1.0
    return float(stats.t.sf(signed / se, df))


def _boot_weights(n: int, k: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Resampling weights: texts ``(n_boot, n)`` and random directions ``(n_boot, k)``."""
    rng = np.random.default_rng(seed)
    texts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot) / n
    dirs = rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot) / k
    return texts, dirs


def _part(
    a: np.ndarray,
    r: np.ndarray,
    expected: int,
    texts_w: np.ndarray,
    dirs_w: np.ndarray,
    level: float = 0.95,
) -> dict[str, float]:
    """Statistics of one prediction part at one cell (see the module docstring).

    ``a``: steered change per text ``(n,)``; ``r``: random changes ``(K, n)``.
    """
    n, k = len(a), len(r)
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    delta = float(a.mean())
    d_boot = texts_w @ a
    d_low, d_high = np.quantile(d_boot, q)
    d_se = float(a.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    effects = r.mean(axis=1)  # mean change per random direction
    control = float(effects.mean())
    spread = float(effects.var(ddof=1)) if k > 1 else float("nan")
    x = delta - control
    x_boot = d_boot - ((texts_w @ r.T) * dirs_w).sum(axis=1)
    x_low, x_high = np.quantile(x_boot, q)
    x_se = float(np.sqrt(x_boot.var(ddof=1) + spread))
    delta_p = _one_sided_p(delta, d_se, n - 1, expected)
    excess_p = _one_sided_p(x, x_se, k - 1, expected)
    on_side = (d_low > 0 and x_low > 0) if expected > 0 else (d_high < 0 and x_high < 0)
    return {
        "delta": delta,
        "delta_ci_low": float(d_low),
        "delta_ci_high": float(d_high),
        "delta_p": delta_p,
        "control_delta": control,
        "control_sd": float(np.sqrt(spread)) if k > 1 else float("nan"),
        "n_controls": k,
        "random_at_least": float(np.mean(expected * effects >= expected * delta)),
        "excess": x,
        "excess_ci_low": float(x_low),
        "excess_ci_high": float(x_high),
        "excess_p": excess_p,
        "p": max(delta_p, excess_p),
        "passed_ci": bool(on_side),
    }


def check_predictions(
    sweep: SweepOutcome,
    predictions: Sequence[TheoryPrediction] = THEORY_PREDICTIONS,
    method: str = "unique",
    combo_prefix: str = "",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = THEORY_ALPHA,
) -> pd.DataFrame:
    """Test each prediction part at every swept layer and beta of the right sign.

    Args:
        sweep: A readout or generation :class:`~lens_emotion.steering.SweepOutcome` with at
            least two random-direction controls per cell.
        predictions: Predictions to test; those whose combo or emotions the sweep lacks are
            skipped.
        method: Recorded in the ``method`` column (which direction construction was steered).
        combo_prefix: Prefix of the combo names in the sweep for this method (e.g. ``"raw:"``
            when raw-direction combos were swept under prefixed names).
        n_boot: Bootstrap resamples (CIs and the two-level variance of the excess).
        seed: Bootstrap seed.
        alpha: One-sided level of ``passed`` (uncorrected, per part and cell).

    Returns:
        One row per (prediction, layer, beta, emotion); columns :data:`THEORY_CHECK_COLUMNS`.
        ``passed`` is the uncorrected test (``p < alpha``); ``passed_ci`` the older rule (both
        95% intervals on the predicted side), kept for comparison. Neither is a verdict: see
        :func:`annotate_checks`.

    Raises:
        SteeringError: The sweep has fewer than two random-direction controls per cell.
    """
    if not sweep.has_controls():
        raise SteeringError(
            "theory checks compare against random directions; build the sweep with "
            "n_controls >= 2 (10 recommended)."
        )
    labels = list(sweep.label_names)
    clean = sweep.select("", 0, 0.0)[0]
    combos = set(sweep.combos())
    records = []
    weights: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for pred in predictions:
        name = combo_prefix + pred.combo
        if name not in combos or any(e not in labels for e, _ in pred.parts()):
            continue
        for layer in sweep.layers():
            for beta in sweep.betas():
                if beta == 0.0 or np.sign(beta) != pred.beta_sign:
                    continue
                steered = sweep.select(name, layer, beta).mean(axis=0)
                controls = sweep.select(name, layer, beta, control=True)
                k = len(controls)
                if k < 2:
                    raise SteeringError(
                        f"layer {layer}, beta {beta} has {k} random direction(s); the excess "
                        "test needs n_controls >= 2 (10 recommended)."
                    )
                if k not in weights:
                    weights[k] = _boot_weights(len(clean), k, n_boot, seed)
                texts_w, dirs_w = weights[k]
                for emotion, expected in pred.parts():
                    j = labels.index(emotion)
                    a = steered[:, j] - clean[:, j]
                    r = controls[:, :, j] - clean[None, :, j]
                    stats_ = _part(a, r, expected, texts_w, dirs_w)
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
                            **stats_,
                            "passed": bool(stats_["p"] < alpha),
                            "n": int(len(a)),
                        }
                    )
    return pd.DataFrame(records, columns=list(THEORY_CHECK_COLUMNS))


def validate_theory_cell(
    theory_cell: tuple[int, float | int] | None,
    layers: Sequence[int],
    betas: Sequence[float | int],
) -> tuple[int, float] | None:
    """Check that a pre-registered cell ``(layer, step)`` is in a sweep grid.

    Args:
        theory_cell: ``(layer, step)`` with ``step > 0`` (an int step is read as a float);
            every prediction is judged at ``beta = sign * step``. ``None`` (Holm over all
            cells) passes through.
        layers: Swept centre layers.
        betas: Swept betas.

    Returns:
        ``(int(layer), float(step))`` or ``None``.

    Raises:
        SteeringError: A non-positive step, or a layer or ``+-step`` that is not swept.
    """
    if theory_cell is None:
        return None
    layer, step = int(theory_cell[0]), float(theory_cell[1])
    if step <= 0:
        raise SteeringError(
            f"theory_cell step must be > 0 (each prediction uses its own sign), got {step}."
        )
    grid = {float(b) for b in betas}
    if layer not in {int(x) for x in layers} or step not in grid or -step not in grid:
        raise SteeringError(
            f"theory_cell (layer {layer}, beta +-{step:g}) is not in the swept grid (layers "
            f"{list(layers)}, betas {sorted(grid)}); add it or drop theory_cell."
        )
    return layer, step


_GROUP = ["outcome", "method", "prediction"]


def annotate_checks(
    checks: pd.DataFrame,
    alpha: float = THEORY_ALPHA,
    theory_cell: tuple[int, float] | None = None,
) -> pd.DataFrame:
    """Add cell p-values, Holm-adjusted p-values and each prediction's verdict to the checks.

    Args:
        checks: From :func:`check_predictions` (one or more outcomes and methods).
        alpha: One-sided level (family-wise under Holm).
        theory_cell: ``(layer, step)`` fixed before the run (see the module docstring), or
            ``None`` for Holm over every cell.

    Returns:
        ``checks`` with columns :data:`THEORY_CHECK_FILE_COLUMNS` (``theory_checks.csv``).

    Raises:
        SteeringError: ``theory_cell`` is not among a prediction's tested cells.
    """
    if checks.empty:
        return pd.DataFrame(columns=list(THEORY_CHECK_FILE_COLUMNS))
    parts = []
    for _, rows in checks.groupby(_GROUP, sort=False):
        rows = rows.copy()
        cell_keys = ["layer", "beta"]
        cells = rows.groupby(cell_keys, sort=False).agg(
            cell_p=("p", "max"), cell_passed=("passed", "all")
        )
        cells["cell_p_holm"] = holm_adjust(cells["cell_p"].to_numpy(dtype=np.float64))
        cells["cell_passed_holm"] = cells["cell_p_holm"] < alpha
        index = [(int(la), float(b)) for la, b in cells.index]
        if theory_cell is not None:
            sign = float(np.sign(rows["beta"].iloc[0]))
            want = (int(theory_cell[0]), sign * float(theory_cell[1]))
            if want not in index:
                raise SteeringError(
                    f"theory_cell (layer {want[0]}, beta {want[1]:g}) was not tested for "
                    f"{rows['prediction'].iloc[0]} ({rows['outcome'].iloc[0]}); tested cells: "
                    f"{index}."
                )
            cells["fixed_cell"] = [c == want for c in index]
            fixed_p = float(cells.loc[cells["fixed_cell"], "cell_p"].iloc[0])
            verdict = "pass" if fixed_p < alpha else "fail"
            rule = f"fixed cell (layer {want[0]}, beta {want[1]:+g}), uncorrected"
        else:
            cells["fixed_cell"] = False
            verdict = "pass" if cells["cell_p_holm"].min() < alpha else "fail"
            rule = f"Holm over {len(cells)} cells"
        cells["cells_tested"] = len(cells)
        cells["cells_passed_uncorrected"] = int(cells["cell_passed"].sum())
        cells["min_p_holm"] = float(cells["cell_p_holm"].min())
        cells["rule"] = rule
        cells["verdict"] = verdict
        parts.append(rows.merge(cells.reset_index(), on=cell_keys, how="left"))
    out = pd.concat(parts, ignore_index=True)
    return out[list(THEORY_CHECK_FILE_COLUMNS)]


def summarize_checks(
    checks: pd.DataFrame,
    alpha: float = THEORY_ALPHA,
    theory_cell: tuple[int, float] | None = None,
) -> pd.DataFrame:
    """Per prediction: cells tested and passing, the smallest adjusted p and the verdict.

    Args:
        checks: From :func:`check_predictions` or :func:`annotate_checks`.
        alpha: One-sided level.
        theory_cell: ``(layer, step)`` fixed before the run, or ``None`` (Holm).

    Returns:
        Columns :data:`THEORY_SUMMARY_COLUMNS`: ``cells`` (tested), ``cells_passed`` (every
        part at ``p < alpha``, *uncorrected*), ``cells_passed_holm``, ``min_p`` and
        ``min_p_holm`` (smallest raw and Holm-adjusted cell p-value), ``fixed_cell_p`` (NaN
        without ``theory_cell``), ``best_layer``/``best_beta`` (the cell with the largest
        excess over random directions in the predicted direction; reported, not used), and
        ``verdict`` decided by ``rule``.
    """
    if checks.empty:
        return pd.DataFrame(columns=list(THEORY_SUMMARY_COLUMNS))
    if "verdict" not in checks.columns:
        checks = annotate_checks(checks, alpha, theory_cell)
    records = []
    for (outcome, method, pred), rows in checks.groupby(_GROUP, sort=False):
        signed = np.where(rows["expected"] == "rise", 1.0, -1.0) * rows["excess"]
        cells = rows.assign(signed=signed).groupby(["layer", "beta"], sort=False)
        first = cells.first()
        best = cells["signed"].min().idxmax()
        fixed = first[first["fixed_cell"].astype(bool)]
        records.append(
            {
                "outcome": outcome,
                "method": method,
                "prediction": pred,
                "description": rows["description"].iloc[0],
                "rule": rows["rule"].iloc[0],
                "cells": int(len(first)),
                "cells_passed": int(first["cell_passed"].astype(bool).sum()),
                "cells_passed_holm": int(first["cell_passed_holm"].astype(bool).sum()),
                "min_p": float(first["cell_p"].min()),
                "min_p_holm": float(first["cell_p_holm"].min()),
                "fixed_cell_p": float(fixed["cell_p"].iloc[0]) if len(fixed) else float("nan"),
                "best_layer": int(best[0]),
                "best_beta": float(best[1]),
                "verdict": rows["verdict"].iloc[0],
            }
        )
    return pd.DataFrame(records, columns=list(THEORY_SUMMARY_COLUMNS))
