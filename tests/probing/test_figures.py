"""lens_emotion.probing.figures: the result figures (pure functions of the tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest


def test_emotion_figures(result):
    fig = result.figure()
    assert isinstance(fig, go.Figure)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == ["MHSA (attn_out)", "FFN (mlp_out)", "hidden (resid_post)"]
    assert all(t.error_y.array is not None for t in bars)
    controls = [t for t in fig.data if t.type == "scatter" and t.mode == "markers"]
    assert len(controls) == 3
    baseline = fig.data[-1]
    assert baseline.name == "majority baseline" and baseline.line.dash == "dash"
    heat = result.heatmap()
    assert len(heat.data) == 1 and heat.data[0].type == "heatmap"
    assert np.asarray(heat.data[0].z).shape == (3, 4)
    assert list(heat.data[0].y) == ["MHSA (attn_out)", "FFN (mlp_out)", "hidden (resid_post)"]


def test_figures_are_pure_functions_of_the_tables(result, tmp_path):
    """Result.figure() is the figures module's function of the table: same figure, no files."""
    from lens_emotion.probing.figures import (
        emotion_accuracy_figure,
        ordered_sites,
        site_label,
        site_layer_heatmap,
    )

    table = result.table.copy()
    fig = emotion_accuracy_figure(table, n_folds=4, position=-1)
    assert fig.to_json() == result.figure().to_json()
    assert "4-fold CV, n=170, position -1" in fig.layout.title.text
    assert site_layer_heatmap(table, "macro_f1").to_json() == result.heatmap("macro_f1").to_json()
    pd.testing.assert_frame_equal(table, result.table)  # the input is left as it was
    assert list(tmp_path.iterdir()) == []
    assert ordered_sites(["resid_post", "x", "attn_out"]) == ["attn_out", "resid_post", "x"]
    assert site_label("mlp_out") == "FFN (mlp_out)" and site_label("other") == "other"


def test_heatmap_refuses_a_non_numeric_column(result):
    from lens_emotion.viz import PlotInputError

    with pytest.raises(PlotInputError, match="not a numeric column"):
        result.heatmap("site")
