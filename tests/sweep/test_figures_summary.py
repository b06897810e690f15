"""Cross-model figures and the summary, on a long table with planted localisations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lens_emotion.sweep import (
    TABLE_COLUMNS,
    geometry_depth_figure,
    localisation,
    model_summary,
    patching_depth_figure,
    peak_vs_stabilisation_figure,
    probe_depth_figure,
    sweep_figures,
    template_robustness_figure,
    write_summary,
)


def _table(models, templates, curves_of, half_width: float) -> pd.DataFrame:
    """A long table of ``curves_of(depth) -> {(analysis, site, metric): values}`` per model."""
    rows = []
    for model, n in models:
        depth = np.arange(n) / (n - 1)
        for template in templates:
            for (analysis, site, metric), values in curves_of(depth).items():
                for layer, value in enumerate(values):
                    rows.append(
                        {"model": model, "family": "llama", "n_layers": n, "template": template,
                         "analysis": analysis, "seed": 0, "site": site, "layer": layer,
                         "relative_depth": depth[layer], "metric": metric, "value": value,
                         "ci_low": value - half_width, "ci_high": value + half_width,
                         "status": "done", "error": None}
                    )  # fmt: skip
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table["layer"] = table["layer"].astype("Int64")
    return table


def _planted(models=(("m5", 5), ("m9", 9)), templates=("t1", "t2")) -> pd.DataFrame:
    """Probe accuracy plateaus at depth 0.5; MHSA transfer peaks at 0.25, FFN at 0.75."""
    return _table(
        models,
        templates,
        lambda depth: {
            ("probe", "resid_post", "accuracy"): np.where(depth >= 0.5, 0.8, 0.2 + depth),
            ("probe", "attn_out", "accuracy"): 0.1 + 0.2 * depth,
            ("patch", "attn_out", "transfer"): 1 - 3 * np.abs(depth - 0.25),
            ("patch", "mlp_out", "transfer"): 1 - 3 * np.abs(depth - 0.75),
        },
        0.01,
    )


def test_localisation_recovers_the_planted_depths():
    loc = localisation(_planted())
    assert len(loc) == 4
    assert loc["probe_plateau_depth"].tolist() == pytest.approx([0.5] * 4)
    assert loc["attn_peak_depth"].tolist() == pytest.approx([0.25] * 4)
    assert loc["mlp_peak_depth"].tolist() == pytest.approx([0.75] * 4)
    assert loc["ffn_later"].tolist() == [True] * 4
    m9 = loc[loc.model == "m9"].iloc[0]
    assert (m9.probe_plateau_layer, m9.attn_peak_layer, m9.mlp_peak_layer) == (4, 2, 6)
    assert m9.attn_peak_ci_low == pytest.approx(0.99) and m9.probe_best_accuracy == 0.8


def test_model_summary_and_files(tmp_path):
    table = _planted()
    failed = table.iloc[:1].assign(
        analysis="infer", status="failed", error="boom", metric="status", value=np.nan
    )
    table = pd.concat([table, failed], ignore_index=True)
    per_model = model_summary(table).set_index("model")
    assert per_model.loc["m5", "ffn_later"] == "2/2" and per_model.loc["m5", "n_failed"] == 1
    assert per_model.loc["m9", "attn_peak_depth"] == pytest.approx(0.25)
    paths = write_summary(table, tmp_path, "planted", {"probe": "figures/probe.html"})
    md = paths[0].read_text()
    assert "| m9 | llama | 9 | 0.50 [" in md and "2/2" in md and "boom" in md
    assert "<table>" in paths[1].read_text() and "figures/probe.html" in md


def test_depth_figures_have_a_line_per_model_and_a_panel_per_site():
    table = _planted()
    fig = probe_depth_figure(table)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(lines) == 2 * 2  # two models x two sites
    assert {t.name for t in lines} == {"m5", "m9"}
    assert len(fig.layout.annotations) == 2 + 1  # a subplot title per site, the depth note
    assert all(0 <= x <= 1 for t in lines for x in t.x)
    patch = patching_depth_figure(table, template="t1")
    bands = [t for t in patch.data if t.fill == "toself"]
    assert len(bands) == 4  # one template, one seed: CI bands are drawn
    m9_attn = next(t for t in patch.data if t.name == "m9" and t.mode == "lines+markers")
    assert float(m9_attn.x[int(np.argmax(m9_attn.y))]) == pytest.approx(0.25)


def test_peak_vs_plateau_and_template_robustness_figures():
    fig = peak_vs_stabilisation_figure(_planted())
    markers = [t for t in fig.data if t.mode == "markers+text"]
    assert {t.name for t in markers} == {"m5", "m9"}
    assert all(list(t.x) == pytest.approx([0.5, 0.5]) for t in markers)
    assert all(list(t.y) == pytest.approx([0.25, 0.25]) for t in markers)
    robust = template_robustness_figure(_planted())
    assert [a.text for a in robust.layout.annotations] == ["m5", "m9"]
    assert len(robust.data) == 2 * 3  # per model: plateau, MHSA peak, FFN peak
    assert set(sweep_figures(_planted())) == {
        "probe_accuracy_by_depth",
        "patching_transfer_by_depth",
        "mhsa_peak_vs_probe_plateau",
        "template_robustness",
    }


def _planted_geometry(models=(("m5", 5), ("m9", 9))) -> pd.DataFrame:
    """PC1-valence r peaks at relative depth 0.5 in every model; RSA rises with depth."""
    return _table(
        models,
        ("t1",),
        lambda depth: {
            ("geometry", "resid_post", "pc1_valence_r"): 0.9 - np.abs(depth - 0.5),
            ("geometry", "resid_post", "pc2_arousal_r"): 0.3 + 0 * depth,
            ("geometry", "resid_post", "rsa_rho"): depth / 2,
        },
        0.1,
    )


def test_geometry_depth_figure_shows_where_the_valence_axis_peaks_in_each_model():
    table = _planted_geometry()
    fig = geometry_depth_figure(table)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(lines) == 2 * 3  # two models x three measures
    assert [a.text for a in fig.layout.annotations][:1] == ["PC1 ~ human valence (r)"]
    valence = [t for t in lines if t.xaxis in ("x", "x1")]
    assert {t.name for t in valence} == {"m5", "m9"}
    for trace in valence:
        assert float(trace.x[int(np.argmax(trace.y))]) == pytest.approx(0.5)
    assert len([t for t in fig.data if t.fill == "toself"]) == 6  # one template, one seed
    assert set(sweep_figures(table)) == {"geometry_by_depth"}
    one_template = _planted(templates=("t1",))
    assert "template_robustness" not in sweep_figures(one_template)  # nothing to compare
    empty = geometry_depth_figure(_planted().iloc[:0])
    assert "no geometry rows" in [a.text for a in empty.layout.annotations]


def test_summary_of_a_geometry_and_circuits_sweep_has_their_sections_only(tmp_path):
    table = _planted_geometry()
    extra = []
    for model, layer in (("m5", 2), ("m9", 4)):
        for analysis, metric, value, at in (
            ("geometry", "peak_valence_r", 0.9, layer),
            ("geometry", "peak_rsa_rho", 0.6, layer),
            ("geometry", "crosspaper_peak_diag_cos", 0.35, layer),
            ("geometry", "crosspaper_layers_beating_permutation", 3, None),
            ("geometry", "crosspaper_n_layers", 5, None),
            ("circuits", "directions.heldout_accuracy", 0.75, layer),
            ("circuits", "directions.chance", 1 / 6, layer),
            ("circuits", "ablation.head.k4.rel_drop", 0.4, None),
            ("circuits", "ablation.head.k8.rel_drop", 0.6, None),
            ("circuits", "ablation.head.k8.random_rel_drop", 0.1, None),
            ("circuits", "ablation.head.k16.rel_drop", 0.9, None),
            ("circuits", "ablation.neuron.k512.rel_drop", 0.5, None),
            ("circuits", "ablation.neuron.k512.random_rel_drop", 0.01, None),
            ("circuits", "head_check.max_abs_difference", 2.6e-6, None),
            ("circuits", "head_check.max_abs_contribution", 10.2, None),
        ):
            extra.append(
                {**table.iloc[0].to_dict(), "model": model, "analysis": analysis,
                 "metric": metric, "value": value, "layer": at, "ci_low": 0.8 if at else None,
                 "n_layers": 2 * layer + 1, "relative_depth": 0.5 if at else None,
                 "ci_high": 0.95 if at else None,
                 "template": "t1" if analysis == "geometry" else "sev"}
            )  # fmt: skip
    table = pd.concat([table, pd.DataFrame(extra)], ignore_index=True)
    md = write_summary(table, tmp_path, "geo")[0].read_text()
    assert "## Per model" not in md  # no probe or patch jobs: no localisation tables
    assert "| m9 | t1 | 0.900 [0.800, 0.950] (L4) | 0.50 |" in md
    assert "0.350 (L4); 3 of 5 layers beat the permutation baseline" in md
    assert "## Emotion circuits (SEV)" in md and "0.750 (L4) (chance 0.167)" in md
    assert "head k=8: 0.60 vs 0.10; neuron k=512: 0.50 vs 0.01 | – | 2.6e-06 of 10 |" in md
