"""AtP against real single-layer patching: correlations, disagreements, cost, the result
protocol, and bad comparison input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lens_emotion.attribution import (
    HEAD_SITE,
    AttributionError,
    compare_with_patching,
    interpolation_patch,
)
from lens_emotion.results import AnalysisResult


def _fake_patch_tables(model, pairs, sites=("attn_out", "mlp_out", "resid_post")):
    """Real single-layer patch effects in the patching module's per_pair schema (tiny model)."""
    rows = []
    for site in sites:
        for layer in range(model.n_layers):
            effect = interpolation_patch(model, **pairs, site=site, layer=layer)[0]
            rows += [
                {"site": site, "center_layer": layer, "span": 1, "pair": i, "logit_diff_change": e}
                for i, e in enumerate(effect)
            ]
    heads = np.stack(
        [
            np.stack(
                [
                    interpolation_patch(model, **pairs, site=HEAD_SITE, layer=layer, head=h)[0]
                    for h in range(model.n_heads)
                ],
                axis=-1,
            )
            for layer in range(model.n_layers)
        ],
        axis=1,
    )
    return pd.DataFrame(rows), heads


def test_tiny_comparison_plumbing(tiny_llama, tiny_pairs, tiny_atp, tmp_path):
    per_pair, heads = _fake_patch_tables(tiny_llama, tiny_pairs)
    assert heads.shape == (3, tiny_llama.n_layers, tiny_llama.n_heads)
    cmp = compare_with_patching(tiny_atp, per_pair, heads, patching_seconds=1.5)
    assert set(cmp.correlations) == {"attn_out", "mlp_out", "resid_post", "sites", HEAD_SITE}
    for key in ("pearson", "spearman", "n", "per_pair"):
        assert key in cmp.correlations["sites"]
    assert cmp.correlations["sites"]["n"] == 3 * tiny_llama.n_layers
    assert cmp.correlations["sites"]["per_pair"]["n"] == 3 * 3 * tiny_llama.n_layers
    assert cmp.correlations[HEAD_SITE]["per_pair"]["n"] == 3 * tiny_llama.n_layers * 4
    # The mean real effect per component is the mean of the per-pair table.
    point = cmp.points[(cmp.points.site == "mlp_out") & (cmp.points.layer == 0)].iloc[0]
    expected = per_pair[(per_pair.site == "mlp_out") & (per_pair.center_layer == 0)]
    assert point.patch_effect == pytest.approx(expected.logit_diff_change.mean(), abs=1e-6)
    top = cmp.disagreements(4)
    assert len(top) == 4 and top.abs_error.is_monotonic_decreasing
    assert top.abs_error.iloc[0] == pytest.approx(cmp.points.abs_error.max())
    fig = cmp.figure()
    sites_in_fig = {trace.name.split(" ")[0] for trace in fig.data if trace.name}
    assert {"attn_out", "mlp_out", "resid_post", "head"} <= sites_in_fig
    assert sum(len(t.x) for t in fig.data if t.mode == "markers") == len(cmp.points)
    per_pair_fig = cmp.figure(level="pair")
    n_markers = sum(len(t.x) for t in per_pair_fig.data if t.mode == "markers")
    assert n_markers == len(cmp.pair_points) == 3 * (3 * tiny_llama.n_layers + 2 * 4)
    with pytest.raises(AttributionError, match="level"):
        cmp.figure(level="median")
    assert cmp.cost["patching_seconds"] == 1.5
    paths = cmp.save(tmp_path, manifest={"seed": 0})
    payload = json.loads(paths[0].read_text())
    assert payload["manifest"] == {"seed": 0}
    assert payload["correlations"]["sites"]["n"] == 3 * tiny_llama.n_layers
    assert len(payload["disagreements"]) == min(15, len(cmp.points))
    assert pd.read_csv(paths[1]).shape[0] == len(cmp.points)


def test_comparison_protocol_and_summary(tiny_llama, tiny_pairs, tiny_atp, tmp_path):
    """PatchingComparison follows the result protocol; summary() keeps the headline numbers."""
    per_pair, heads = _fake_patch_tables(tiny_llama, tiny_pairs)
    cmp = compare_with_patching(tiny_atp, per_pair, heads, patching_seconds=1.5)
    assert isinstance(cmp, AnalysisResult)
    assert cmp.table is cmp.points
    frame = cmp.to_frame()
    pd.testing.assert_frame_equal(frame, cmp.points)
    assert frame is not cmp.points
    summary = cmp.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["n_pairs"] == 3
    assert set(summary["correlations"]) == set(cmp.correlations)
    for key, corr in cmp.correlations.items():
        got = summary["correlations"][key]
        for name in ("pearson", "spearman", "n"):
            assert got[name] == pytest.approx(corr[name], nan_ok=True) or (
                got[name] is None and np.isnan(corr[name])
            )
        assert got["per_pair"]["n"] == corr["per_pair"]["n"]
    assert summary["fpe_ratio"] == pytest.approx(cmp.cost["ratio"])
    assert summary["seconds_ratio"] == pytest.approx(1.5 / tiny_atp.seconds)
    assert [p.name for p in cmp.save(tmp_path)] == [
        "attribution_vs_patching.json",
        "attribution_vs_patching.csv",
    ]


def test_bad_comparison_inputs_are_refused(tiny_llama, tiny_atp):
    table = pd.DataFrame(
        {"site": "attn_out", "center_layer": 0, "span": 3, "pair": 0, "logit_diff_change": 0.1},
        index=[0],
    )
    with pytest.raises(AttributionError, match="span=1"):
        compare_with_patching(tiny_atp, table)
    with pytest.raises(AttributionError, match="lacks columns"):
        compare_with_patching(tiny_atp, table.drop(columns="logit_diff_change"))
    with pytest.raises(AttributionError, match="did not score"):
        compare_with_patching(tiny_atp, table.assign(span=1, pair=99))
    with pytest.raises(AttributionError, match="query heads"):
        compare_with_patching(tiny_atp, table.assign(span=1), np.zeros((tiny_llama.n_layers, 3)))
