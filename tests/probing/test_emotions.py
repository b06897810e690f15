"""Emotion / appraisal probes on a synthetic in-memory activation store (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge, RidgeCV
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lens_emotion.errors import LensEmotionError
from lens_emotion.probe_models import (
    balanced_weights,
    fit_logistic_batched,
    fit_logistic_regression,
    fit_standardizer,
    ridge_fit,
    torch_threads,
)
from lens_emotion.probing import (
    ALIGNMENT_COLUMNS,
    APPRAISAL_PROBE_COLUMNS,
    EMOTION_PROBE_COLUMNS,
    AlignmentResult,
    AppraisalProbeResult,
    EmotionProbeResult,
    ProbeConvergenceWarning,
    ProbeError,
    SupportsActivations,
    _cv_plan,
    _CVPlan,
    _logreg_scores,
    appraisal_alignment,
    load_directions,
    probe_appraisals,
    probe_emotions,
    probe_positions,
)

SITES = ("attn_out", "mlp_out", "resid_post")
LABELS = ("anger", "fear", "joy", "sadness")
COUNTS = (50, 45, 40, 35)  # imbalanced: majority baseline 50/170
SEP = {0: 0.0, 1: 0.5, 2: 1.2, 3: 3.0}  # class separation grows with layer
SITE_GAIN = {"attn_out": 0.6, "mlp_out": 0.8, "resid_post": 1.0}
POSITION_GAIN = {-2: 0.4, -1: 1.0}


class FakeStore:
    """Gaussian class clusters whose separation grows with layer (and is largest at -1)."""

    def __init__(self, d: int = 24, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.labels = np.repeat(np.arange(len(LABELS)), COUNTS)
        rng.shuffle(self.labels)
        n = len(self.labels)
        self.ids = tuple(f"row{i:04d}" for i in range(n))
        self.sites = SITES
        self.layers = tuple(SEP)
        self.positions = tuple(POSITION_GAIN)
        self.manifest = {"kind": "fake", "seed": seed, "d_model": d}
        centers = rng.normal(size=(len(LABELS), d))
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
        scales = np.exp(rng.normal(size=d))  # anisotropic features
        offset = np.zeros(d)
        offset[0] = 300.0  # a massive residual dimension
        self._data = {}
        for s_i, site in enumerate(self.sites):
            for layer in self.layers:
                for pos in self.positions:
                    sub = np.random.default_rng([seed, s_i, layer, pos + 10])
                    gain = SEP[layer] * SITE_GAIN[site] * POSITION_GAIN[pos]
                    x = sub.normal(size=(n, d)) + gain * 2.5 * centers[self.labels]
                    self._data[(site, layer, pos)] = (x * scales + offset).astype(np.float32)

    @property
    def label_names(self) -> list[str]:
        return [LABELS[i] for i in self.labels]

    def get(self, site: str, layer: int, position: int = -1) -> np.ndarray:
        return self._data[(site, layer, position)].copy()


@pytest.fixture(scope="module")
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture(scope="module")
def result(store) -> EmotionProbeResult:
    return probe_emotions(store, store.label_names, n_folds=4, seed=0, progress=False)


def _toy(n=400, d=12, k=4, seed=0, weights=None):
    rng = np.random.default_rng(seed)
    y = rng.choice(k, size=n, p=weights)
    centers = rng.normal(size=(k, d)) * 0.9
    x = centers[y] + rng.normal(size=(n, d)) * np.exp(rng.normal(size=d))
    x[:, 1] += 50.0
    return x, y


# ------------------------------------------------------------------ torch logreg vs sklearn


def test_store_fake_satisfies_protocol(store):
    assert isinstance(store, SupportsActivations)


def test_torch_logreg_matches_sklearn():
    """Tolerance: weights within 1e-3 relative (float32 L-BFGS vs sklearn at tol=1e-8), intercepts
    within 1e-2 absolute, predictions identical on >= 98% of held-out rows."""
    x, y = _toy(n=500, seed=1, weights=[0.4, 0.3, 0.2, 0.1])
    train, test = np.arange(350), np.arange(350, 500)
    for C in (0.05, 1.0):
        ours = fit_logistic_regression(x[train], y[train], C=C)
        ref = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=C, class_weight="balanced", max_iter=5000, tol=1e-8),
        ).fit(x[train], y[train])
        sk = ref[-1]
        rel = np.linalg.norm(ours.coef_std - sk.coef_) / np.linalg.norm(sk.coef_)
        assert rel < 1e-3, (C, rel)
        np.testing.assert_allclose(ours.intercept_std, sk.intercept_, atol=1e-2)
        agree = np.mean(ours.predict(x[test]) == ref.predict(x[test]))
        assert agree >= 0.98
        # raw-space weights give the same scores as the standardised pipeline
        np.testing.assert_allclose(
            ours.decision_function(x[test]), ref.decision_function(x[test]), atol=5e-3
        )
        assert ours.converged


def test_torch_logreg_matches_sklearn_default_tol():
    """Against the plain reference of the brief (sklearn's default tol=1e-4)."""
    x, y = _toy(n=300, seed=2)
    xs = StandardScaler().fit_transform(x)
    sk = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000).fit(xs, y)
    ours = fit_logistic_regression(x, y, C=1.0)
    assert np.mean(ours.predict(x) == sk.predict(xs)) >= 0.98
    rel = np.linalg.norm(ours.coef_std - sk.coef_) / np.linalg.norm(sk.coef_)
    assert rel < 1e-2


def test_unbalanced_and_unstandardized_variants_match_sklearn():
    x, y = _toy(n=300, seed=3, weights=[0.7, 0.1, 0.1, 0.1])
    sk = LogisticRegression(C=0.3, solver="newton-cg", max_iter=5000, tol=1e-10).fit(x, y)
    ours = fit_logistic_regression(x, y, C=0.3, class_weight=None, standardize=False)
    rel = np.linalg.norm(ours.coef - sk.coef_) / np.linalg.norm(sk.coef_)
    assert rel < 2e-3
    assert np.mean(ours.predict(x) == sk.predict(x)) >= 0.98


def test_balanced_weighting_matters():
    x, y = _toy(n=600, seed=4, weights=[0.85, 0.05, 0.05, 0.05])
    x = x + np.random.default_rng(0).normal(size=x.shape) * 3.0  # overlap the classes
    balanced = fit_logistic_regression(x, y, C=1.0).predict(x)
    plain = fit_logistic_regression(x, y, C=1.0, class_weight=None).predict(x)
    minority = y != 0
    recall_bal = np.mean(balanced[minority] == y[minority])
    recall_plain = np.mean(plain[minority] == y[minority])
    assert recall_bal > recall_plain + 0.1
    assert np.mean(balanced == 0) < np.mean(plain == 0)
    w = balanced_weights(y, 4)
    np.testing.assert_allclose(np.bincount(y, weights=w), len(y) / 4)


def test_batched_fit_equals_independent_fits():
    x, y = _toy(n=300, seed=5)
    xs = (x - x.mean(0)) / x.std(0)
    rng = np.random.default_rng(0)
    masks = [rng.random(300) < 0.7 for _ in range(3)]
    labels = [y, rng.permutation(y), y]
    stats = [fit_standardizer(xs, m) for m in masks]

    def run(idx):
        t = lambda v, dt=torch.float32: torch.as_tensor(np.stack(v), dtype=dt)  # noqa: E731
        return fit_logistic_batched(
            torch.as_tensor(xs, dtype=torch.float32),
            t([labels[i] for i in idx], torch.int64),
            t([balanced_weights(labels[i], 4, masks[i]) for i in idx]),
            t([stats[i][0] for i in idx]),
            t([stats[i][1] for i in idx]),
            n_classes=4,
            C=0.5,
        )

    coef_all, icpt_all, _, ok, grad_max = run([0, 1, 2])
    assert ok and grad_max.shape == (3,) and float(grad_max.max()) <= 1e-5
    for i in range(3):
        coef_i, icpt_i, _, _, _ = run([i])
        rel = float((coef_all[i] - coef_i[0]).norm() / coef_i[0].norm())
        assert rel < 1e-3


# ------------------------------------------------------------------ convergence


def _objective_grad_max(x, y, k, C, coef_std, intercept_std):
    """Largest gradient entry of sklearn's normalised objective, computed independently (numpy).

    Objective: (sum_i w_i CE_i + ||W||^2 / (2C)) / n on standardised features, balanced w.
    """
    xs = (x - x.mean(0)) / x.std(0)
    w = balanced_weights(y, k)
    logits = xs @ coef_std.T + intercept_std
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    r = (p - np.eye(k)[y]) * w[:, None]
    g_w = (r.T @ xs + coef_std / C) / len(y)
    g_b = r.sum(0) / len(y)
    return max(np.abs(g_w).max(), np.abs(g_b).max())


def test_converged_means_the_gradient_criterion_was_met():
    """A fit stopped by its iteration limit is not 'converged', and a converged one really has
    a gradient below tol (checked with an independent numpy gradient)."""
    x, y = _toy(n=400, d=30, seed=8)
    short = fit_logistic_regression(x, y, C=100.0, max_iter=3, tol=1e-6)
    assert not short.converged and short.n_iter <= 3
    assert _objective_grad_max(x, y, 4, 100.0, short.coef_std, short.intercept_std) > 1e-6
    full = fit_logistic_regression(x, y, C=100.0, tol=1e-6)
    assert full.converged and full.n_iter > 3
    assert _objective_grad_max(x, y, 4, 100.0, full.coef_std, full.intercept_std) <= 2e-6


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


# ------------------------------------------------------------------ probe_emotions


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


def test_scaler_is_fit_on_training_fold_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    rows = np.arange(30)
    mean, scale = fit_standardizer(x, rows)
    x2 = x.copy()
    x2[30:] = 1e6  # test rows change: the training-fold scaler must not
    mean2, scale2 = fit_standardizer(x2, rows)
    np.testing.assert_array_equal(mean, mean2)
    np.testing.assert_array_equal(scale, scale2)
    sk = StandardScaler().fit(x[rows])
    np.testing.assert_allclose(mean, sk.mean_)
    np.testing.assert_allclose(scale, sk.scale_)


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


def test_num_threads_is_restored(store):
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    res = probe_emotions(
        store, store.label_names, sites="attn_out", layers=[2], n_folds=3, num_threads=1,
        progress=False,
    )  # fmt: skip
    assert torch.get_num_threads() == before
    assert res.table["accuracy_mean"].iloc[0] > 0.5


# ------------------------------------------------------------------ saving and figures


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


# ------------------------------------------------------------------ appraisal ridge


@pytest.fixture(scope="module")
def planted():
    """Appraisals 0-2 are linear in the activations; 3-4 are noise."""
    rng = np.random.default_rng(11)
    n, d = 240, 16
    store = FakeStore(d=d)
    x = store.get("resid_post", 2).astype(np.float64)
    xs = (x - x.mean(0)) / x.std(0)
    beta = rng.normal(size=(d, 3))
    y = np.empty((n - 70, 5))
    y[:, :3] = xs @ beta + rng.normal(size=(n - 70, 3)) * 0.3 + 3.0
    y[:, 3:] = rng.normal(size=(n - 70, 2))
    names = ["pleasantness", "goal_relevance", "control", "noise_a", "noise_b"]
    return store, y, names


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


def test_vectorised_ridge_equals_per_target_sklearn():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 30)) * np.exp(rng.normal(size=30))
    xs = StandardScaler().fit_transform(x)
    y = rng.normal(size=(80, 4)) + xs[:, :4] * 2
    sol = ridge_fit(xs, y, [2.5])
    for j in range(4):
        sk = Ridge(alpha=2.5).fit(xs, y[:, j])
        np.testing.assert_allclose(sol.coef[j], sk.coef_, atol=1e-8)
        assert sol.intercept[j] == pytest.approx(sk.intercept_)
    alphas = [0.1, 1.0, 10.0, 100.0, 1000.0]
    y[:, 3] = rng.normal(size=80)  # pure noise: wants a large penalty
    sol = ridge_fit(xs, y, alphas)
    sk = RidgeCV(alphas=alphas, alpha_per_target=True).fit(xs, y)
    np.testing.assert_allclose(sol.alpha, sk.alpha_)
    np.testing.assert_allclose(sol.coef, sk.coef_, atol=1e-8)


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


# ------------------------------------------------------------------ alignment


def _fake_results(layers=(0, 1, 2), d=8):
    eye = np.eye(d)
    emo_dirs = {("resid_post", layer): eye[:3] * (layer + 1) for layer in layers}
    app_dirs = {
        ("resid_post", layer): np.stack([5 * eye[0], eye[6] + eye[7], -eye[1]]) for layer in layers
    }
    emotion = EmotionProbeResult(
        table=pd.DataFrame(columns=list(EMOTION_PROBE_COLUMNS)),
        folds=pd.DataFrame(),
        label_names=("joy", "fear", "anger"),
        directions=emo_dirs,
        intercepts={k: np.zeros(3) for k in emo_dirs},
    )
    appraisal = AppraisalProbeResult(
        table=pd.DataFrame(columns=list(APPRAISAL_PROBE_COLUMNS)),
        appraisal_names=("pleasantness", "suddenness", "control"),
        directions=app_dirs,
        intercepts={k: np.zeros(3) for k in app_dirs},
        alphas={k: np.ones(3) for k in app_dirs},
    )
    return emotion, appraisal


def test_alignment_of_planted_directions(tmp_path: Path):
    emotion, appraisal = _fake_results()
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


# ------------------------------------------------------------------ errors


def test_errors_are_informative(store):
    labels = store.label_names
    with pytest.raises(ProbeError, match="got 3 labels for 170 stored rows"):
        probe_emotions(store, labels[:3], progress=False)
    with pytest.raises(ProbeError, match=r"site\(s\) 'hook_z' not in the activation store"):
        probe_emotions(store, labels, sites=["hook_z"], progress=False)
    with pytest.raises(ProbeError, match=r"layer\(s\) 7 not in"):
        probe_emotions(store, labels, layers=[7], progress=False)
    with pytest.raises(ProbeError, match=r"position\(s\) -3 not in"):
        probe_emotions(store, labels, position=-3, progress=False)
    few = list(labels)
    for i in np.flatnonzero(np.asarray(store.labels) == 3)[3:]:
        few[i] = "anger"
    with pytest.raises(ProbeError, match=r"'sadness' has 3; use fewer folds"):
        probe_emotions(store, few, n_folds=5, progress=False)
    with pytest.raises(ProbeError, match="not in label_names"):
        probe_emotions(store, labels, label_names=["anger", "fear"], progress=False)
    with pytest.raises(ProbeError, match="mask must be a boolean array"):
        probe_emotions(store, labels, mask=np.ones(5, bool), progress=False)
    with pytest.raises(ProbeError, match="n_folds must be an int >= 2"):
        probe_emotions(store, labels, n_folds=1, progress=False)
    with pytest.raises(ProbeError, match="model must be"):
        probe_emotions(store, labels, model="svm", progress=False)
    with pytest.raises(ProbeError, match="at least 2 classes"):
        probe_emotions(store, ["joy"] * len(labels), progress=False)
    names = ["a", "b"]
    with pytest.raises(ProbeError, match=r"appraisals has shape \(170, 3\), expected \(170, 2\)"):
        probe_appraisals(store, np.zeros((170, 3)), names, progress=False)
    bad = np.zeros((170, 2))
    bad[4, 1] = np.nan
    with pytest.raises(ProbeError, match="NaN or inf in 1 selected rows"):
        probe_appraisals(store, bad, names, progress=False)
    with pytest.raises(ProbeError, match="alpha must be a positive number"):
        probe_appraisals(store, np.zeros((170, 2)), names, alpha=[1.0, -1.0], progress=False)
    emotion, appraisal = _fake_results()
    with pytest.raises(ProbeError, match="no layer at site 'mlp_out'"):
        appraisal_alignment(emotion, appraisal, site="mlp_out")
    no_dirs = EmotionProbeResult(
        table=emotion.table, folds=emotion.folds, label_names=emotion.label_names,
        directions={}, intercepts={},
    )  # fmt: skip
    with pytest.raises(ProbeError, match="no directions"):
        appraisal_alignment(no_dirs, appraisal)
    assert issubclass(ProbeError, LensEmotionError) and issubclass(ProbeError, ValueError)


# ------------------------------------------------------------------ real SmolLM2


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
    from lens_emotion.probing import DEFAULT_MAX_ITER, _label_setup
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
