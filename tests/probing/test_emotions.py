"""lens_emotion.probing.emotions: emotion probes, controls, directions, positions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lens_emotion.probing.emotions import (
    DEFAULT_MAX_ITER,
    EMOTION_PROBE_COLUMNS,
    _cv_plan,
    _CVPlan,
    _label_setup,
    _logreg_scores,
    probe_emotions,
    probe_positions,
)
from lens_emotion.probing.solvers import (
    torch_threads,
)
from lens_emotion.probing.store import (
    ProbeConvergenceWarning,
    load_directions,
)
from tests.probing.conftest import (
    COUNTS,
    LABELS,
    SITES,
)


def test_unconverged_fits_are_in_the_table_and_one_warning_says_what_they_cost(store):
    with pytest.warns(ProbeConvergenceWarning) as caught:
        res = probe_emotions(
            store, store.label_names, sites="resid_post", layers=[2, 3], n_folds=3, C=1e4,
            max_iter=2, progress=False,
        )  # fmt: skip
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "2 of 2 probe fits" in message and "at 6 iterations" in message
    assert "changes its CV accuracy by" in message
    table = res.table
    assert not table["converged"].any() and (table["n_iter"] <= 2).all()
    assert (table["grad_max"] > 1e-5).all()
    check = res.params["convergence_check"]
    assert check["n_unconverged"] == 2 and check["refit_max_iter"] == 6
    worst = table.loc[table["grad_max"].idxmax()]
    assert check["worst"] == f"resid_post.{worst['layer']}"
    assert check["accuracy_mean"] == worst["accuracy_mean"]
    assert check["accuracy_change"] == pytest.approx(
        check["refit_accuracy_mean"] - check["accuracy_mean"]
    )
    assert res.params["unconverged"] == ["resid_post.2", "resid_post.3"]


def test_default_fits_converge_without_a_warning(store, recwarn):
    res = probe_emotions(store, store.label_names, n_folds=3, progress=False)
    assert res.table["converged"].all()
    assert (res.table["grad_max"] <= 1e-5).all()
    assert res.params["convergence_check"] is None
    assert not [w for w in recwarn if issubclass(w.category, ProbeConvergenceWarning)]


def test_emotion_table_shape_and_columns(result, store):
    table = result.table
    assert tuple(table.columns) == EMOTION_PROBE_COLUMNS
    assert len(table) == len(SITES) * len(store.layers)
    assert set(table["n"]) == {sum(COUNTS)}
    assert result.label_names == LABELS
    assert set(result.directions) == {(s, layer) for s in SITES for layer in store.layers}
    assert result.directions[("resid_post", 3)].shape == (len(LABELS), 24)
    assert result.intercepts[("resid_post", 3)].shape == (len(LABELS),)
    assert len(result.folds) == 4 * len(table)
    assert result.manifest == store.manifest
    pd.testing.assert_frame_equal(result.to_frame(), table)


def test_emotion_accuracy_follows_construction(result):
    table = result.table
    for site in SITES:
        acc = table[table["site"] == site].sort_values("layer")["accuracy_mean"].to_numpy()
        assert np.all(np.diff(acc[1:]) > 0), (site, acc)  # layers 1 < 2 < 3
        assert acc[0] < 0.45 and acc[-1] > 0.9
    top = table[table["layer"] == 3]
    assert (top["accuracy_mean"] > top["majority_baseline"] + 0.3).all()
    assert (top["selectivity"] > 0.4).all()
    np.testing.assert_allclose(table["majority_baseline"], 50 / 170, atol=0.02)
    # the shuffled-label control stays near chance everywhere
    assert table["shuffled_control"].max() < 0.45
    assert abs(table["shuffled_control"].mean() - 0.25) < 0.08
    np.testing.assert_allclose(
        table["selectivity"], table["accuracy_mean"] - table["shuffled_control"]
    )
    assert (table["accuracy_sd"] >= 0).all() and table["macro_f1"].between(0, 1).all()


def test_emotion_directions_classify_in_raw_space(result, store):
    """The all-rows probe's raw-space weights score raw activations directly."""
    x = store.get("resid_post", 3)
    scores = x.astype(np.float64) @ result.directions[("resid_post", 3)].T
    scores += result.intercepts[("resid_post", 3)]
    assert np.mean(scores.argmax(1) == store.labels) > 0.95
    ref = make_pipeline(
        StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000)
    ).fit(x, store.labels)
    assert np.mean(scores.argmax(1) == ref.predict(x)) >= 0.98


def test_stable_layer_is_where_accuracy_reaches_the_plateau(result):
    rows = result.table[result.table["site"] == "resid_post"].set_index("layer")["accuracy_mean"]
    stable = result.stable_layer("resid_post")
    assert rows[stable] >= 0.95 * rows.max()
    assert all(rows[layer] < 0.95 * rows.max() for layer in rows.index if layer < stable)
    assert result.stable_layer("resid_post", fraction=1.0) == int(rows.idxmax())
    # the planted signal grows with depth, so a low bar is met at the first layer
    assert result.stable_layer("resid_post", fraction=1e-6) == int(rows.index.min())
    with pytest.raises(ValueError, match="not probed"):
        result.stable_layer("nope")
    with pytest.raises(ValueError, match="fraction"):
        result.stable_layer("resid_post", fraction=0)


def test_emotion_probe_is_deterministic(store, result):
    again = probe_emotions(store, store.label_names, n_folds=4, seed=0, progress=False)
    pd.testing.assert_frame_equal(again.table, result.table)
    pd.testing.assert_frame_equal(again.folds, result.folds)
    np.testing.assert_array_equal(
        again.directions[("mlp_out", 2)], result.directions[("mlp_out", 2)]
    )
    other = probe_emotions(
        store, store.label_names, sites="resid_post", layers=[1], n_folds=4, seed=1,
        progress=False, fit_directions=False,
    )  # fmt: skip
    mine = result.folds[(result.folds["site"] == "resid_post") & (result.folds["layer"] == 1)]
    assert not np.allclose(other.folds["accuracy"].to_numpy(), mine["accuracy"].to_numpy())
    y = store.labels
    plan0, plan1 = _cv_plan(y, 4, 0), _cv_plan(y, 4, 1)
    assert not np.array_equal(plan0.folds[0][1], plan1.folds[0][1])
    for (tr, te), perm in zip(plan0.folds, plan0.permuted, strict=True):
        assert set(tr).isdisjoint(te)
        np.testing.assert_array_equal(perm[te], y[te])  # only training labels are shuffled
        np.testing.assert_array_equal(np.sort(perm[tr]), np.sort(y[tr]))
        assert np.bincount(y[te]).min() >= 1  # stratified


def test_mask_label_names_and_options(store):
    mask = np.asarray(store.labels) != 3  # drop "sadness"
    res = probe_emotions(
        store, store.label_names, label_names=[*LABELS, "trust"], sites=["resid_post"],
        layers=[3], mask=mask, n_folds=3, control=False, progress=False,
    )  # fmt: skip
    assert res.label_names == LABELS[:3]
    assert res.params["absent_labels"] == ["sadness", "trust"]
    assert int(res.table["n"].iloc[0]) == int(mask.sum())
    assert res.table["shuffled_control"].isna().all()
    assert res.directions[("resid_post", 3)].shape == (3, 24)


def test_cv_standardisation_matches_train_only_pipeline_not_leaky_one():
    """A test fold with shifted, rescaled features: leakage into the scaler would show."""
    rng = np.random.default_rng(7)
    n, d, k = 300, 10, 3
    y = np.arange(n) % k
    centers = rng.normal(size=(k, d)) * 1.5
    x = centers[y] + rng.normal(size=(n, d))
    train, test = np.arange(200), np.arange(200, n)
    x[test, :5] = x[test, :5] * 6.0 + 8.0  # domain shift in half the features
    plan = _CVPlan(folds=[(train, test)], permuted=[y], majority=np.array([1 / 3]))
    scores = _logreg_scores(
        x, y, k, plan, C=0.05, control=False, fit_direction=False, max_iter=300, tol=1e-6
    )

    def pipeline_predictions(scaler_rows):
        scaler = StandardScaler().fit(x[scaler_rows])
        clf = LogisticRegression(C=0.05, class_weight="balanced", max_iter=5000, tol=1e-8)
        clf.fit(scaler.transform(x[train]), y[train])
        return clf.predict(scaler.transform(x[test]))

    correct = pipeline_predictions(train)
    leaky = pipeline_predictions(np.arange(n))
    assert np.mean(scores.oof[test] == correct) >= 0.98
    assert np.mean(leaky != correct) > 0.1  # the construction does expose leakage
    assert scores.accuracy[0] == pytest.approx(np.mean(correct == y[test]), abs=0.02)


def test_mlp_probe_runs_and_is_deterministic(store):
    kwargs = dict(
        sites="resid_post", layers=[0, 3], n_folds=3, model="mlp", progress=False,
        control=False, mlp_options={"hidden": 32, "max_epochs": 40, "patience": 5},
    )  # fmt: skip
    a = probe_emotions(store, store.label_names, **kwargs)
    b = probe_emotions(store, store.label_names, **kwargs)
    pd.testing.assert_frame_equal(a.table, b.table)
    acc = a.table.set_index("layer")["accuracy_mean"]
    assert acc[3] > 0.85 and acc[0] < 0.45
    assert a.directions == {}


def test_probe_positions(store, tmp_path: Path):
    res = probe_positions(
        store, store.label_names, site="resid_post", layers=[1, 2], n_folds=3, progress=False
    )
    assert list(res.table.columns) == ["site", "position", *EMOTION_PROBE_COLUMNS[1:]]
    assert len(res.table) == 4
    acc = res.table.set_index(["position", "layer"])["accuracy_mean"]
    assert acc[(-1, 2)] > acc[(-2, 2)]
    fig = res.figure()
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data] == ["position -2", "last token (-1)", "majority baseline"]
    paths = res.save(tmp_path)
    assert [p.name for p in paths] == ["probe_positions.csv", "probe_positions.json"]
    assert list(pd.read_csv(paths[0]).columns) == list(res.table.columns)


def test_emotion_save_writes_expected_files(result, tmp_path: Path):
    paths = result.save(tmp_path)
    names = {p.name for p in paths}
    assert names == {
        "probe_emotions.csv",
        "probe_emotions_folds.csv",
        "probe_emotion_directions.safetensors",
        "probe_emotion_intercepts.safetensors",
        "probe_emotions.json",
    }
    table = pd.read_csv(tmp_path / "probe_emotions.csv")
    assert list(table.columns) == [
        "site", "layer", "accuracy_mean", "accuracy_sd", "macro_f1", "majority_baseline",
        "shuffled_control", "selectivity", "n", "converged", "n_iter", "grad_max",
    ]  # fmt: skip
    directions, meta = load_directions(tmp_path / "probe_emotion_directions.safetensors")
    assert set(directions) == set(result.directions)
    np.testing.assert_allclose(
        directions[("attn_out", 1)], result.directions[("attn_out", 1)], rtol=1e-6
    )
    assert meta["names"] == list(LABELS)
    info = json.loads((tmp_path / "probe_emotions.json").read_text())
    assert info["manifest"] == {"kind": "fake", "seed": 0, "d_model": 24}
    assert info["params"]["n_folds"] == 4


@pytest.mark.integration
def test_smollm2_probe_matches_sklearn_at_real_size(smollm2, crowd_envent):
    """Our batched L-BFGS at its defaults against scikit-learn on SmolLM2 resid_post, layer 15
    (d = 576), 1,000 real crowd-enVENT rows, 13 classes, 5 folds, C = 1.

    Same objective in both, term for term: sklearn minimises ``(sum_i s_i CE_i + ||W||^2 /
    (2C)) / sum_i s_i`` over standardised features with ``s_i`` the balanced class weights
    (``n / (K count_y)``, summing to n) and the intercept unpenalised; we minimise
    ``(sum_i w_i CE_i + ||W||^2 / (2C)) / n`` with the same ``w_i``. Hence the same ``tol``
    (largest gradient entry of that objective) means the same thing in both.
    """
    from lens_emotion.activations import extract_activations
    from lens_emotion.prompts import build_prompts

    rows = crowd_envent.sample(1000, seed=0)
    prompts = build_prompts(smollm2, rows.texts, rows.labels, rows.label_names, "zero-shot")
    # one site, one layer (the forward pass stops after it), cached by request: a rerun reuses it
    store = extract_activations(
        smollm2, prompts, sites=["resid_post"], layers=[15], dataset=rows, progress=False
    )
    setup = _label_setup(store, rows.labels, rows.label_names, None, 5)
    plan = _cv_plan(setup.y, 5, 0)
    x, y, k = store.get("resid_post", 15)[setup.rows], setup.y, len(setup.label_names)
    assert x.shape == (1000, 576) and k == 13
    with torch_threads(1):
        ours = _logreg_scores(
            x, y, k, plan, C=1.0, control=False, fit_direction=False,
            max_iter=DEFAULT_MAX_ITER, tol=1e-5, fold_coefs=True,
        )  # fmt: skip
    assert ours.converged and ours.grad_max <= 1e-5
    for f, (tr, te) in enumerate(plan.folds):
        ref = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=1.0, class_weight="balanced", tol=1e-5, max_iter=5000),
        ).fit(x[tr], y[tr])
        np.testing.assert_allclose(ours.fold_scale[f], ref[0].scale_, rtol=1e-5)
        sk_acc = float(np.mean(ref.predict(x[te]) == y[te]))
        assert abs(ours.accuracy[f] - sk_acc) <= 0.01, (f, ours.accuracy[f], sk_acc)
        a = (ours.fold_coef[f] * ours.fold_scale[f]).ravel()  # standardised space
        b = ref[-1].coef_.ravel()
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cosine >= 0.99, (f, cosine)


def test_results_follow_the_result_protocol(result, store, tmp_path: Path):
    from lens_emotion.results import AnalysisResult

    positions = probe_positions(
        store, store.label_names, site="resid_post", layers=[2, 3], n_folds=3, progress=False
    )
    for res in (result, positions):
        assert isinstance(res, AnalysisResult)
        assert not callable(res.table) and isinstance(res.to_frame(), pd.DataFrame)
        assert isinstance(res.figure(), go.Figure)
        json.dumps(res.summary())  # JSON-ready
    summary = result.summary()
    table = result.table
    for site in SITES:
        rows = table[table["site"] == site]
        assert summary["best"][site]["layer"] == int(rows.loc[rows.accuracy_mean.idxmax(), "layer"])
        assert summary["best"][site]["accuracy_mean"] == rows.accuracy_mean.max()
    assert summary["best"]["resid_post"]["layer"] == 3  # the planted signal peaks last
    assert summary["n_rows"] == sum(COUNTS) and summary["n_folds"] == 4
    assert summary["n_unconverged"] == 0
    by_position = positions.summary()["best"]
    assert set(by_position) == {"-2", "-1"} and by_position["-1"]["layer"] == 3
    assert by_position["-1"]["accuracy_mean"] > by_position["-2"]["accuracy_mean"]
