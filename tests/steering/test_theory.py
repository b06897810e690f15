import numpy as np
import pandas as pd
import pytest

from lens_emotion.steering.sweeps import SteeringCondition, SweepOutcome
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
from lens_emotion.steering.vectors import SteeringError

LABELS = ("anger", "guilt", "joy", "pride", "sadness", "shame")


def _conditions(combos, layers, betas, n_controls):
    conds = [SteeringCondition("clean", "clean", -1, 0.0)]
    for combo in combos:
        conds += [SteeringCondition(combo, "unique", la, b) for la in layers for b in betas]
    for la in layers:
        for k in range(n_controls):
            conds += [SteeringCondition("random", "random", la, b, True, k) for b in betas]
    return conds


def _sweep(effects: dict, control_effect: float = 0.0, n: int = 40, seed: int = 0, k: int = 10):
    """Readout-like sweep: base distribution plus planted per-(combo, beta sign) shifts.

    ``effects[(combo, sign)] = {emotion: shift}`` adds ``shift`` (with noise) to that emotion's
    value for every text; random controls get ``control_effect`` on every emotion.
    """
    conds = _conditions(required_combos(), [5], [-2.0, 2.0], k)
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.1, 0.2, size=(n, len(LABELS)))
    values = np.zeros((len(conds), n, len(LABELS)))
    for i, c in enumerate(conds):
        v = base + rng.normal(0, 0.005, size=base.shape)
        if c.control:
            v = v + control_effect
        elif c.combo != "clean":
            for emotion, shift in effects.get((c.combo, int(np.sign(c.beta))), {}).items():
                v[:, LABELS.index(emotion)] += shift
        values[i] = v
    return SweepOutcome("readout", tuple(conds), values, LABELS)


def test_predictions_match_the_issue():
    keys = [p.key for p in THEORY_PREDICTIONS]
    assert len(keys) == 5 == len(set(keys))
    by = {p.key: p for p in THEORY_PREDICTIONS}
    assert by["pleasantness+"].rises == ("joy", "pride") and by["pleasantness+"].beta_sign == 1
    assert set(by["pleasantness-"].rises) == {"sadness", "guilt", "anger"}
    assert by["pleasantness-"].beta_sign == -1
    assert by["other_responsblt+"].rises == ("anger",)
    assert by["other_responsblt-"].rises == ("guilt",) and by["other_responsblt-"].beta_sign == -1
    joint = by["pleasantness+other_responsblt+"]
    assert joint.combo == "+pleasantness,+other_responsblt"
    assert joint.rises == ("pride",) and joint.falls == ("joy",)
    assert required_combos() == [
        "+pleasantness",
        "+other_responsblt",
        "+pleasantness,+other_responsblt",
    ]


def test_holm_against_a_hand_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    adjusted = holm_adjust([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm_adjust([0.5, 0.9]), [1.0, 1.0])  # capped at 1
    out = holm_adjust([0.01, np.nan, 0.02])  # NaN is not part of the family
    assert np.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.02)
    assert holm_adjust([]).shape == (0,)


def test_planted_effects_pass_and_absent_or_reversed_ones_fail():
    planted = {
        ("+pleasantness", 1): {"joy": 0.1, "pride": 0.1},  # holds
        ("+pleasantness", -1): {"sadness": 0.1, "guilt": 0.1},  # anger missing -> fails
        ("+other_responsblt", 1): {"anger": -0.1},  # reversed -> fails
        ("+pleasantness,+other_responsblt", 1): {"pride": 0.1, "joy": -0.1},  # holds
    }
    checks = check_predictions(_sweep(planted), n_boot=300)
    assert tuple(checks.columns) == THEORY_CHECK_COLUMNS
    assert (checks["n_controls"] == 10).all()
    passed = checks.groupby("prediction")["passed"].all()
    assert passed["pleasantness+"] and passed["pleasantness+other_responsblt+"]
    assert not passed["pleasantness-"] and not passed["other_responsblt+"]
    assert not passed["other_responsblt-"]  # nothing planted
    part = checks.set_index(["prediction", "emotion"])
    assert part.loc[("pleasantness-", "sadness"), "passed"]
    assert not part.loc[("pleasantness-", "anger"), "passed"]
    assert part.loc[("pleasantness+", "joy"), "delta"] == pytest.approx(0.1, abs=0.01)
    assert part.loc[("pleasantness+", "joy"), "random_at_least"] == 0.0
    assert (checks["beta"] * np.where(checks["prediction"].str.endswith("-"), -1, 1) > 0).all()
    summary = summarize_checks(checks)
    assert tuple(summary.columns) == THEORY_SUMMARY_COLUMNS
    verdict = summary.set_index("prediction")["verdict"]
    assert verdict["pleasantness+"] == "pass" and verdict["other_responsblt+"] == "fail"
    assert (summary["cells"] == 1).all() and summary["rule"].str.startswith("Holm").all()
    annotated = annotate_checks(checks)
    assert tuple(annotated.columns) == THEORY_CHECK_FILE_COLUMNS and len(annotated) == len(checks)


def test_an_effect_that_random_directions_also_produce_does_not_pass():
    planted = {("+pleasantness", 1): {"joy": 0.1, "pride": 0.1}}
    checks = check_predictions(_sweep(planted, control_effect=0.1), n_boot=300)
    rows = checks[checks["prediction"] == "pleasantness+"]
    assert (rows["delta"] > 0.05).all()  # it did rise against the clean run ...
    assert not rows["passed"].any()  # ... but no more than under random directions
    assert (rows["control_delta"] > 0.05).all()


def test_checks_need_two_controls_and_skip_missing_combos():
    sweep = _sweep({})
    keep = [k for k, c in enumerate(sweep.conditions) if not c.control]
    no_controls = SweepOutcome(
        "readout", tuple(sweep.conditions[k] for k in keep), sweep.values[keep], LABELS
    )
    with pytest.raises(SteeringError, match="random directions"):
        check_predictions(no_controls)
    with pytest.raises(SteeringError, match="n_controls >= 2"):
        check_predictions(_sweep({}, k=1))
    prefixed = check_predictions(sweep, method="raw", combo_prefix="raw:")
    assert prefixed.empty and summarize_checks(prefixed).empty
    assert annotate_checks(prefixed).empty


# ---------------------------------------------------------------- simulated sweeps (numpy only)

_PRED = TheoryPrediction("x+", "steering x raises joy", "+x", 1, rises=("joy",))


def _simulated(rng, n_cells=12, k=10, n=40, planted=None, generic=0.05, tau=0.03, sigma=0.02):
    """One sweep of ``n_cells`` (layer, beta) cells for one 'rises joy' prediction.

    Every direction (the steered one and the ``k`` random ones) moves joy by a generic
    ``generic`` plus its own direction-specific effect ~ N(0, tau^2), plus text noise. Under the
    planted null the steered direction is just another random direction; ``planted`` maps a
    cell index to an extra shift of the steered direction there.
    """
    layers = list(range(n_cells))
    conds = _conditions(["+x"], layers, [1.0], k)
    base = rng.uniform(0.1, 0.3, size=n)
    values = np.zeros((len(conds), n, 2))
    for i, c in enumerate(conds):
        v = base + rng.normal(0, sigma, n)
        if c.combo != "clean":
            v = v + generic + rng.normal(0, tau)
            if not c.control and planted:
                v = v + planted.get(c.layer, 0.0)
        values[i, :, 0] = v
        values[i, :, 1] = 1.0 - v
    return SweepOutcome("readout", tuple(conds), values, ("joy", "other"))


def test_planted_null_false_pass_rate_is_controlled_only_with_the_correction():
    rng = np.random.default_rng(7)
    sims = 200
    holm = any_cell = old_rule = 0
    for s in range(sims):
        checks = check_predictions(_simulated(rng), [_PRED], n_boot=200, seed=s)
        summary = summarize_checks(checks)
        holm += summary["verdict"].iloc[0] == "pass"
        any_cell += bool(checks["passed"].any())
        old_rule += bool(checks["passed_ci"].any())
    # Holm keeps the family-wise false-pass rate at alpha = 0.025 (Monte-Carlo slack) ...
    assert holm / sims <= 0.06
    # ... while "any one of 12 cells passes" does not, and the old CI rule (the random mean as
    # the reference, no spread of the steered direction itself) fails far more often.
    assert any_cell / sims >= 0.12
    assert old_rule / sims >= 0.5


def test_planted_real_effect_at_one_cell_passes_after_correction():
    rng = np.random.default_rng(3)
    wins = 0
    for s in range(20):
        checks = check_predictions(_simulated(rng, planted={4: 0.2}), [_PRED], n_boot=300, seed=s)
        summary = summarize_checks(checks)
        wins += summary["verdict"].iloc[0] == "pass"
        annotated = annotate_checks(checks).set_index("layer")
        assert annotated.loc[4, "cell_p"] == annotated["cell_p"].min()
    assert wins >= 18


def test_excess_interval_resamples_random_directions():
    rng = np.random.default_rng(0)
    narrow = check_predictions(_simulated(rng, n_cells=1, tau=0.0), [_PRED], n_boot=500)
    rng = np.random.default_rng(0)
    wide = check_predictions(_simulated(rng, n_cells=1, tau=0.05), [_PRED], n_boot=500)
    width = lambda c: float(c["excess_ci_high"].iloc[0] - c["excess_ci_low"].iloc[0])  # noqa: E731
    # Direction-to-direction spread widens the interval (a fixed random mean would not).
    assert width(wide) > 2 * width(narrow)
    assert wide["control_sd"].iloc[0] > 5 * narrow["control_sd"].iloc[0]


def test_fixed_cell_decides_alone_and_must_be_in_the_grid():
    rng = np.random.default_rng(1)
    sweep = _simulated(rng, n_cells=3, planted={2: 0.3})
    checks = check_predictions(sweep, [_PRED], n_boot=300)
    at_effect = summarize_checks(checks, theory_cell=(2, 1.0)).iloc[0]
    assert at_effect["verdict"] == "pass" and at_effect["rule"].startswith("fixed cell")
    assert at_effect["fixed_cell_p"] < THEORY_ALPHA
    elsewhere = summarize_checks(checks, theory_cell=(0, 1.0)).iloc[0]
    assert elsewhere["verdict"] == "fail"  # the effect at layer 2 does not count
    assert elsewhere["fixed_cell_p"] > THEORY_ALPHA
    annotated = annotate_checks(checks, theory_cell=(0, 1.0))
    assert annotated["fixed_cell"].sum() == 1
    with pytest.raises(SteeringError, match="was not tested"):
        annotate_checks(checks, theory_cell=(9, 1.0))
    assert validate_theory_cell(None, [1], [1.0]) is None
    assert validate_theory_cell((2, 4), [2, 3], [-4, 0, 4]) == (2, 4.0)
    with pytest.raises(SteeringError, match="not in the swept grid"):
        validate_theory_cell((2, 8), [2, 3], [-4, 0, 4])
    with pytest.raises(SteeringError, match="step must be > 0"):
        validate_theory_cell((2, -4), [2], [-4, 4])


def test_summary_counts_uncorrected_and_corrected_cells():
    rng = np.random.default_rng(5)
    checks = check_predictions(_simulated(rng, n_cells=6, planted={1: 0.3, 3: 0.3}), [_PRED])
    summary = summarize_checks(checks).iloc[0]
    annotated = annotate_checks(checks)
    assert summary["cells"] == 6 == annotated["cells_tested"].iloc[0]
    assert summary["cells_passed"] == int(annotated["cell_passed"].sum())
    assert summary["cells_passed_holm"] <= summary["cells_passed"]
    assert summary["min_p_holm"] == pytest.approx(6 * summary["min_p"]) or summary[
        "min_p_holm"
    ] == pytest.approx(1.0)
    assert isinstance(annotated, pd.DataFrame) and np.isnan(summary["fixed_cell_p"])
