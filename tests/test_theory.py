import numpy as np
import pytest

from lens_emotion.steering import SteeringError, SweepOutcome, build_conditions
from lens_emotion.theory import (
    THEORY_CHECK_COLUMNS,
    THEORY_PREDICTIONS,
    THEORY_SUMMARY_COLUMNS,
    check_predictions,
    required_combos,
    summarize_checks,
)

LABELS = ("anger", "guilt", "joy", "pride", "sadness", "shame")


def _sweep(effects: dict, control_effect: float = 0.0, n: int = 40, seed: int = 0):
    """Readout-like sweep: base distribution plus planted per-(combo, beta sign) shifts.

    ``effects[(combo, sign)] = {emotion: shift}`` adds ``shift`` (with noise) to that emotion's
    value for every text; random controls get ``control_effect`` on every emotion.
    """
    combos = required_combos()
    vecs = {c: {5: np.ones(3)} for c in combos}
    conds = build_conditions(vecs, [5], [-2, 0, 2], n_controls=2)
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.1, 0.2, size=(n, len(LABELS)))
    values = np.zeros((len(conds), n, len(LABELS)))
    for k, c in enumerate(conds):
        v = base + rng.normal(0, 0.005, size=base.shape)
        if c.control:
            v = v + control_effect
        elif c.combo != "clean":
            for emotion, shift in effects.get((c.combo, int(np.sign(c.beta))), {}).items():
                v[:, LABELS.index(emotion)] += shift
        values[k] = v
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


def test_planted_effects_pass_and_absent_or_reversed_ones_fail():
    planted = {
        ("+pleasantness", 1): {"joy": 0.1, "pride": 0.1},  # holds
        ("+pleasantness", -1): {"sadness": 0.1, "guilt": 0.1},  # anger missing -> fails
        ("+other_responsblt", 1): {"anger": -0.1},  # reversed -> fails
        ("+pleasantness,+other_responsblt", 1): {"pride": 0.1, "joy": -0.1},  # holds
    }
    checks = check_predictions(_sweep(planted), n_boot=300)
    assert tuple(checks.columns) == THEORY_CHECK_COLUMNS
    passed = checks.groupby("prediction")["passed"].all()
    assert passed["pleasantness+"] and passed["pleasantness+other_responsblt+"]
    assert not passed["pleasantness-"] and not passed["other_responsblt+"]
    assert not passed["other_responsblt-"]  # nothing planted
    part = checks.set_index(["prediction", "emotion"])
    assert part.loc[("pleasantness-", "sadness"), "passed"]
    assert not part.loc[("pleasantness-", "anger"), "passed"]
    assert part.loc[("pleasantness+", "joy"), "delta"] == pytest.approx(0.1, abs=0.01)
    assert (checks["beta"] * np.where(checks["prediction"].str.endswith("-"), -1, 1) > 0).all()
    summary = summarize_checks(checks)
    assert tuple(summary.columns) == THEORY_SUMMARY_COLUMNS
    verdict = summary.set_index("prediction")["verdict"]
    assert verdict["pleasantness+"] == "pass" and verdict["other_responsblt+"] == "fail"
    assert (summary["cells"] == 1).all()


def test_an_effect_that_random_directions_also_produce_does_not_pass():
    planted = {("+pleasantness", 1): {"joy": 0.1, "pride": 0.1}}
    checks = check_predictions(_sweep(planted, control_effect=0.1), n_boot=300)
    rows = checks[checks["prediction"] == "pleasantness+"]
    assert (rows["delta"] > 0.05).all()  # it did rise against the clean run ...
    assert not rows["passed"].any()  # ... but no more than under random directions
    assert (rows["control_delta"] > 0.05).all()


def test_checks_need_controls_and_skip_missing_combos():
    sweep = _sweep({})
    no_controls = SweepOutcome(
        "readout",
        tuple(c for c in sweep.conditions if not c.control),
        sweep.values[[k for k, c in enumerate(sweep.conditions) if not c.control]],
        LABELS,
    )
    with pytest.raises(SteeringError, match="random directions"):
        check_predictions(no_controls)
    prefixed = check_predictions(sweep, method="raw", combo_prefix="raw:")
    assert prefixed.empty and summarize_checks(prefixed).empty
