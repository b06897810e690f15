"""lens_emotion.probing.figures: the result figures (pure functions of the tables)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go


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
