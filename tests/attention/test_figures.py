"""Pure figures and the result protocol of the attention results."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lens_emotion.attention import (
    AttentionError,
    attention_mass,
    capture_patterns,
    mass_figure,
    mass_heatmap,
    patterns_figure,
    saliency_figure,
)
from lens_emotion.results import AnalysisResult


@pytest.fixture(scope="module")
def tiny_result(tiny_llama, small_data):
    return attention_mass(tiny_llama, small_data, n_boot=50, progress=False, keep_patterns=True)


def test_methods_delegate_to_the_pure_figures(tiny_result):
    assert tiny_result.figure("per_token") == mass_figure(tiny_result, "per_token")
    assert tiny_result.heatmap("sink") == mass_heatmap(tiny_result, "sink")
    assert tiny_result.saliency.figure(1) == saliency_figure(tiny_result.saliency, 1)
    assert tiny_result.patterns.figure(0, 1) == patterns_figure(tiny_result.patterns, 0, 1)
    with pytest.raises(AttentionError, match="Unknown group"):
        mass_heatmap(tiny_result, "nowhere")
    with pytest.raises(AttentionError, match="normalise"):
        mass_figure(tiny_result, "relative")


def test_band_trace_bounds_the_mean(tiny_result):
    fig = mass_figure(tiny_result, groups=["context"])
    band, line = fig.data
    assert band.fill == "toself" and band.legendgroup == line.legendgroup == "context"
    n = len(tiny_result.layers)
    high, low = band.y[:n], band.y[n:][::-1]
    assert all(
        lo <= m + 1e-12 and m <= hi + 1e-12 for lo, m, hi in zip(low, line.y, high, strict=True)
    )


def test_results_follow_the_protocol(tiny_llama, tiny_result, tmp_path):
    patterns = capture_patterns(tiny_llama, ["Context: I felt fine.\nAnswer:"], layers=[0])
    for result in (tiny_result, tiny_result.saliency, patterns):
        assert isinstance(result, AnalysisResult)
        table = result.table
        assert isinstance(table, pd.DataFrame) and len(table)
        copy = result.to_frame()
        pd.testing.assert_frame_equal(copy, table)
        copy.iloc[0, 0] = None
        assert not table.equals(copy)  # to_frame() is the caller's own copy
        json.dumps(result.summary())
        assert result.figure().data
        paths = result.save(tmp_path / type(result).__name__)
        assert paths and all(p.is_file() for p in paths)
