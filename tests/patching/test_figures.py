"""Patching figures: one line per site with CI bands, head heatmap, ablation panels."""

import numpy as np
import pytest

from lens_emotion.patching import ablate_sites, draw_pairs, patch_heads, patch_sites
from lens_emotion.patching.figures import ablation_figure, head_heatmap, transfer_figure


@pytest.fixture(scope="module")
def results(tiny_llama, sample_dataset):
    pairs = draw_pairs(
        tiny_llama, sample_dataset, n_pairs=5, seed=0, agreeing_only=False, progress=False
    )
    kwargs = {"n_boot": 100, "progress": False}
    return (
        patch_sites(tiny_llama, pairs, span=1, **kwargs),
        patch_heads(tiny_llama, pairs, **kwargs),
        ablate_sites(tiny_llama, pairs, span=1, **kwargs),
    )


def test_transfer_figure_has_a_line_and_band_per_site(results):
    sites, _, _ = results
    fig = sites.figure()
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == [
        "MHSA (attn_out)",
        "FFN (mlp_out)",
        "hidden state (resid_post)",
    ]
    assert len(fig.data) == 6  # each line has its CI band
    np.testing.assert_allclose(lines[0].y, sites.curve("attn_out").transfer)
    with_control = transfer_figure(sites.table, control=sites.table)
    assert len(with_control.data) == 12
    assert {t.line.dash for t in with_control.data if t.mode == "lines+markers"} == {
        "solid",
        "dash",
    }


def test_head_heatmap_is_layers_by_heads(results, tiny_llama):
    _, heads, _ = results
    fig = heads.figure()
    z = np.asarray(fig.data[0].z)
    assert z.shape == (tiny_llama.n_layers, tiny_llama.n_heads)
    np.testing.assert_allclose(z, heads.effects)
    assert fig.data[0].zmin == -fig.data[0].zmax  # diverging scale centred at zero
    assert head_heatmap(heads.effects, heads.layers).layout.title.text


def test_ablation_figure_has_a_panel_per_mode(results):
    _, _, ablation = results
    fig = ablation.figure()
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["zero ablation", "mean ablation", "random ablation"]
    assert sum(t.showlegend is not False and t.mode == "lines" for t in fig.data) == 3
    assert ablation_figure(ablation.table).layout.yaxis.title.text == "prediction kept"
