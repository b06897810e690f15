"""Figures of attribution patching: pure functions of a result (nothing written, no model)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from lens_emotion.attribution import (
    HEAD_SITE,
    SITE_COLORS,
    AttributionError,
    AttributionResult,
    PatchingComparison,
    comparison_figure,
    estimates_figure,
)
from lens_emotion.viz.style import rgba


def _result(n_pairs=4, sites=("attn_out", "mlp_out"), n_layers=3, seed=0):
    rng = np.random.default_rng(seed)
    return AttributionResult(
        sites=sites,
        layers=tuple(range(n_layers)),
        site_effects=rng.normal(size=(n_pairs, len(sites), n_layers)).astype(np.float32),
        head_effects=rng.normal(size=(n_pairs, n_layers, 2)).astype(np.float32),
        target_metric=np.zeros(n_pairs, dtype=np.float32),
        source_metric=np.ones(n_pairs, dtype=np.float32),
    )


def test_estimates_figure_draws_mean_and_standard_error_band_per_site():
    result = _result()
    fig = estimates_figure(result, title="t")
    assert isinstance(fig, go.Figure) and fig.layout.title.text == "t"
    assert len(fig.data) == 2 * len(result.sites)
    for k, site in enumerate(result.sites):
        band, line = fig.data[2 * k], fig.data[2 * k + 1]
        values = result.site_effects[:, k]
        mean = values.mean(axis=0)
        sem = values.std(axis=0) / np.sqrt(result.n_pairs)
        np.testing.assert_allclose(line.y, mean, rtol=1e-6)
        np.testing.assert_allclose(band.y, [*(mean + sem), *(mean - sem)[::-1]], rtol=1e-5)
        assert line.name == site and line.line.color == SITE_COLORS[site]
        assert band.fillcolor == rgba(SITE_COLORS[site], 0.15) and band.showlegend is False
        assert band.legendgroup == line.legendgroup == site
    # Result.figure() delegates here
    assert result.figure().to_dict() == estimates_figure(result).to_dict()


def _comparison(with_pairs=True):
    import pandas as pd

    points = pd.DataFrame(
        {
            "site": ["attn_out", "attn_out", "attn_out", HEAD_SITE, HEAD_SITE, HEAD_SITE],
            "layer": [0, 1, 2, 0, 0, 1],
            "head": pd.array([pd.NA, pd.NA, pd.NA, 0, 1, 0], dtype="Int64"),
            "atp_effect": [0.1, 0.2, 0.4, 0.0, 0.3, -0.1],
            "patch_effect": [0.1, 0.3, 0.5, 0.1, 0.2, -0.2],
        }
    )
    points["error"] = points.atp_effect - points.patch_effect
    points["abs_error"] = points.error.abs()
    pair_points = points.assign(pair=0)[["pair", *points.columns[:5]]] if with_pairs else None
    corr = {"pearson": 0.9, "spearman": 0.8, "n": 3, "per_pair": {"pearson": 0.7}}
    return PatchingComparison(
        points=points,
        pair_points=pair_points,
        correlations={"attn_out": corr, "sites": corr, HEAD_SITE: corr},
        cost={"n_pairs": 1},
    )


def test_comparison_figure_has_a_sites_and_a_heads_panel():
    cmp = _comparison()
    fig = comparison_figure(cmp)
    markers = [t for t in fig.data if t.mode == "markers"]
    assert [t.name for t in markers] == ["attn_out (r=0.90, ρ=0.80)", "head (hook_z)"]
    assert [len(t.x) for t in markers] == [3, 3]
    assert markers[1].text == ("z L0 H0", "z L0 H1", "z L1 H0")
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["sites: r=0.90, ρ=0.80", "heads (hook_z): r=0.90, ρ=0.80"]
    assert sum(t.mode == "lines" for t in fig.data) == 2  # y = x per panel
    pair_fig = comparison_figure(cmp, level="pair")
    assert pair_fig.layout.annotations[0].text.startswith("sites: r=0.70, ρ=nan")
    assert cmp.figure().to_dict() == fig.to_dict()


def test_comparison_figure_refuses_bad_levels():
    with pytest.raises(AttributionError, match="level must be"):
        comparison_figure(_comparison(), level="median")
    with pytest.raises(AttributionError, match="No per-pair real effects"):
        comparison_figure(_comparison(with_pairs=False), level="pair")
