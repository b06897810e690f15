import numpy as np
import pytest

from lens_emotion.viz import emotion_color
from lens_emotion.steering import SteeringError, SweepOutcome, build_conditions
from lens_emotion.steering_plots import sankey_figure, stacked_bars_figure

LABELS = ("joy", "sadness", "anger")


@pytest.fixture
def sweep():
    conds = build_conditions({"+p": {2: np.ones(3)}}, [2], [-1, 0, 1], n_controls=1)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, 3, size=(len(conds), 12))
    values = np.eye(3)[picks]
    return SweepOutcome("generation", tuple(conds), values, LABELS)


def test_stacked_bars_show_direction_and_control_per_beta(sweep):
    table = sweep.table(n_boot=50)
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
