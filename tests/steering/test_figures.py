import numpy as np
import pandas as pd
import pytest

from lens_emotion.steering.figures import promotion_figure, sankey_figure, stacked_bars_figure
from lens_emotion.steering.promotion import PROMOTION_COLUMNS
from lens_emotion.steering.sweeps import SweepOutcome, build_conditions
from lens_emotion.steering.vectors import SteeringError
from lens_emotion.viz.style import emotion_color

LABELS = ("joy", "sadness", "anger")


@pytest.fixture
def sweep():
    conds = build_conditions({"+p": {2: np.ones(3)}}, [2], [-1.0, 0.0, 1.0], n_controls=1)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, 3, size=(len(conds), 12))
    values = np.eye(3)[picks]
    return SweepOutcome("generation", tuple(conds), values, LABELS)


def test_stacked_bars_show_direction_and_control_per_beta(sweep):
    table = sweep.proportions(n_boot=50)
    fig = stacked_bars_figure(table, "+p", 2)
    assert fig.layout.barmode == "stack"
    assert len(fig.data) == 2 * len(LABELS)  # one trace per emotion and panel
    assert [t.name for t in fig.data[:3]] == list(LABELS)
    assert fig.data[0].marker.color == emotion_color("joy")
    assert list(fig.data[0].x) == ["-1", "0", "1"]
    heights = np.array([list(t.y) for t in fig.data[:3]])
    np.testing.assert_allclose(heights.sum(axis=0), 1.0)
    with pytest.raises(SteeringError, match="no rows"):
        stacked_bars_figure(table, "+q", 2)


def test_sankey_links_carry_every_text_twice(sweep):
    fig = sankey_figure(sweep, "+p", 2)
    link = fig.data[0].link
    assert sum(link.value) == 2 * 12
    n = len(LABELS)
    left = [v for s, v in zip(link.source, link.value, strict=True) if s < n]
    assert sum(left) == 12  # beta -1 -> clean
    assert all(n <= t < 2 * n for s, t in zip(link.source, link.target, strict=True) if s < n)
    clean = sweep.values[0].argmax(-1)
    into_clean = np.zeros(n)
    for s, t, v in zip(link.source, link.target, link.value, strict=True):
        if s < n:
            into_clean[t - n] += v
    np.testing.assert_array_equal(into_clean, np.bincount(clean, minlength=n))
    assert len(fig.data[0].node.label) == 3 * n


def test_promotion_figure_draws_direction_band_and_dotted_control():
    rows = []
    for beta in (1.0, 4.0):
        for control in (False, True):
            d = 0.0 if control else 0.1 * beta
            rows.append(
                {
                    "emotion": "joy",
                    "layer": 3,
                    "beta": beta,
                    "control": control,
                    "success_rate": 0.5,
                    "delta_p": d,
                    "delta_p_ci_low": d - 0.05,
                    "delta_p_ci_high": d + 0.05,
                    "p_clean": 0.1,
                    "p_steered": 0.2,
                    "n_eligible": 5,
                    "n": 6,
                }
            )
    table = pd.DataFrame(rows, columns=list(PROMOTION_COLUMNS))
    fig = promotion_figure(table)
    band, line, control = fig.data
    assert band.fill == "toself" and band.showlegend is False
    np.testing.assert_allclose(line.y, [0.1, 0.4])
    assert line.line.color == emotion_color("joy") == control.line.color
    assert control.line.dash == "dot" and list(control.y) == [0.0, 0.0]
    with pytest.raises(SteeringError, match="empty"):
        promotion_figure(table.iloc[:0])


def test_sweep_outcome_follows_the_result_protocol(sweep, tmp_path):
    from lens_emotion.results import AnalysisResult

    assert isinstance(sweep, AnalysisResult)
    assert sweep.table is sweep.table  # computed once
    pd.testing.assert_frame_equal(sweep.table, sweep.proportions(1000, 0))
    frame = sweep.to_frame()
    frame.loc[:, "proportion"] = -1.0
    assert (sweep.table["proportion"] >= 0).all()  # to_frame is a copy
    (path,) = sweep.save(tmp_path)
    assert path.name == "generation.csv"
    pd.testing.assert_frame_equal(pd.read_csv(path), sweep.table, check_dtype=False)
    assert sweep.figure().layout.barmode == "stack"
    summary = sweep.summary()
    assert summary["n_texts"] == 12 and summary["combos"] == ["+p"]
    assert summary["controls"] == 2 and set(summary["largest_shift"]) == {
        "+p L2 beta -1",
        "+p L2 beta 1",
    }
