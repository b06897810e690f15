"""lens_emotion.probing.appraisals: ridge appraisal probes and the emotion-appraisal alignment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lens_emotion.probing.appraisals import (
    ALIGNMENT_COLUMNS,
    APPRAISAL_PROBE_COLUMNS,
    AlignmentResult,
    appraisal_alignment,
    probe_appraisals,
)
from lens_emotion.probing.store import (
    load_directions,
)
from tests.probing.conftest import (
    fake_results,
)


def test_ridge_recovers_planted_map(planted):
    store, y, names = planted
    res = probe_appraisals(
        store, y, names, sites="resid_post", layers=[2, 3], n_folds=4, progress=False
    )
    assert tuple(res.table.columns) == APPRAISAL_PROBE_COLUMNS
    r2 = res.table[res.table["layer"] == 2].set_index("appraisal")["r2_mean"]
    assert (r2[names[:3]] > 0.9).all()
    assert (r2[names[3:]] < 0.05).all()  # noise: nothing to predict (alpha=1 overfits a bit)
    # same numbers as sklearn's pipeline on the same folds
    x = store.get("resid_post", 2)
    folds = KFold(4, shuffle=True, random_state=0).split(x)
    ref = []
    for tr, te in folds:
        pipe = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(x[tr], y[tr])
        pred = pipe.predict(x[te])
        ref.append(1 - ((y[te] - pred) ** 2).sum(0) / ((y[te] - y[te].mean(0)) ** 2).sum(0))
    ref = np.mean(ref, axis=0)
    np.testing.assert_allclose(r2[names].to_numpy(), ref, atol=1e-6)


def test_ridge_raw_weights_reproduce_standardised_pipeline(planted):
    store, y, names = planted
    res = probe_appraisals(
        store, y, names, sites="resid_post", layers=[2], alpha=3.0, n_folds=3, progress=False
    )
    x = store.get("resid_post", 2)
    pipe = make_pipeline(StandardScaler(), Ridge(alpha=3.0)).fit(x, y)
    ours = res.predict("resid_post", 2, x)
    np.testing.assert_allclose(ours, pipe.predict(x), atol=1e-4)
    assert res.directions[("resid_post", 2)].shape == (5, 16)
    np.testing.assert_allclose(res.alphas[("resid_post", 2)], 3.0)


def test_appraisal_alpha_list_and_save(planted, tmp_path: Path):
    store, y, names = planted
    res = probe_appraisals(
        store, y, names, sites=["attn_out"], layers=[3], alpha=[0.1, 10, 1000], n_folds=3,
        progress=False,
    )  # fmt: skip
    assert set(res.alphas[("attn_out", 3)]) <= {0.1, 10.0, 1000.0}
    assert res.alphas[("attn_out", 3)][3] == 1000.0  # a noise target
    r2 = res.table.set_index("appraisal")["r2_mean"]
    assert (r2[names[3:]].abs() < 0.1).all()  # with a chosen penalty, noise R² is ~0
    paths = {p.name for p in res.save(tmp_path)}
    assert {"probe_appraisals.csv", "probe_appraisal_directions.safetensors"} <= paths
    table = pd.read_csv(tmp_path / "probe_appraisals.csv")
    assert list(table.columns) == ["site", "layer", "appraisal", "r2_mean", "r2_sd"]
    directions, meta = load_directions(tmp_path / "probe_appraisal_directions.safetensors")
    assert directions[("attn_out", 3)].shape == (5, 16) and meta["names"] == names
    fig = res.figure(site="attn_out")
    assert isinstance(fig, go.Figure) and len(fig.data) == 5
    widths = {t.name: t.line.width for t in fig.data}
    assert widths["pleasantness"] > widths["noise_a"]


def test_alignment_of_planted_directions(tmp_path: Path):
    emotion, appraisal = fake_results()
    align = appraisal_alignment(emotion, appraisal)
    assert isinstance(align, AlignmentResult)
    assert tuple(align.table.columns) == ALIGNMENT_COLUMNS
    assert len(align.table) == 3 * 3 * 3
    m = align.matrix(1)
    assert m.loc["joy", "pleasantness"] == pytest.approx(1.0)
    assert m.loc["fear", "control"] == pytest.approx(-1.0)
    assert np.allclose(m["suddenness"], 0.0)
    assert m.loc["anger", "pleasantness"] == pytest.approx(0.0)
    (path,) = align.save(tmp_path)
    assert path.name == "alignment.csv"
    assert list(pd.read_csv(path).columns) == list(ALIGNMENT_COLUMNS)
    fig = align.figure()
    assert len(fig.data) == 3 and all(t.type == "heatmap" for t in fig.data)
    assert [t.visible for t in fig.data] == [False, False, True]
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["0", "1", "2"]
    assert fig.data[0].zmid == 0 and fig.data[0].zmin == -fig.data[0].zmax
    assert appraisal_alignment(emotion, appraisal, layers=[2]).layers == (2,)


def test_alignment_end_to_end(result, store):
    rng = np.random.default_rng(0)
    ratings = np.stack([store.labels == 2, rng.normal(size=len(store.labels))], axis=1)
    app = probe_appraisals(
        store, ratings.astype(float), ["pleasantness", "noise"], sites="resid_post",
        layers=[2, 3], n_folds=4, progress=False,
    )  # fmt: skip
    align = appraisal_alignment(result, app)
    assert align.layers == (2, 3)
    m = align.matrix(3)
    assert m.loc["joy", "pleasantness"] == m["pleasantness"].max()
    assert m.loc["joy", "pleasantness"] > 0.5


def test_appraisal_and_alignment_results_follow_the_result_protocol(planted, tmp_path: Path):
    from lens_emotion.results import AnalysisResult

    store, y, names = planted
    res = probe_appraisals(
        store, y, names, sites="resid_post", layers=[2, 3], n_folds=3, progress=False
    )
    emotion, appraisal = fake_results()
    align = appraisal_alignment(emotion, appraisal)
    for result in (res, align):
        assert isinstance(result, AnalysisResult)
        assert not callable(result.table) and isinstance(result.to_frame(), pd.DataFrame)
        assert isinstance(result.figure(), go.Figure)
        json.dumps(result.summary())
    summary = res.summary()
    assert summary["best_appraisal"]["pleasantness"]["r2_mean"] > 0.9
    assert summary["best_appraisal"]["noise_a"]["r2_mean"] < 0.05
    means = res.table.groupby("layer")["r2_mean"].mean()
    assert summary["best"]["resid_post"] == {
        "layer": int(means.idxmax()),
        "mean_r2": float(means.max()),
    }
    strongest = align.summary()["strongest"]
    assert abs(strongest["cosine"]) == pytest.approx(1.0)
    assert align.summary()["max_abs_cosine"] == pytest.approx(1.0)
