"""lens_emotion.probing.solvers: torch L-BFGS, ridge and standardisation vs scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge, RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lens_emotion.probing.emotions import (
    probe_emotions,
)
from lens_emotion.probing.solvers import (
    balanced_weights,
    fit_logistic_batched,
    fit_logistic_regression,
    fit_standardizer,
    ridge_fit,
    torch_threads,
)
from tests.probing.conftest import (
    toy,
)


def test_torch_logreg_matches_sklearn():
    """Tolerance: weights within 1e-3 relative (float32 L-BFGS vs sklearn at tol=1e-8), intercepts
    within 1e-2 absolute, predictions identical on >= 98% of held-out rows."""
    x, y = toy(n=500, seed=1, weights=[0.4, 0.3, 0.2, 0.1])
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
    x, y = toy(n=300, seed=2)
    xs = StandardScaler().fit_transform(x)
    sk = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000).fit(xs, y)
    ours = fit_logistic_regression(x, y, C=1.0)
    assert np.mean(ours.predict(x) == sk.predict(xs)) >= 0.98
    rel = np.linalg.norm(ours.coef_std - sk.coef_) / np.linalg.norm(sk.coef_)
    assert rel < 1e-2


def test_unbalanced_and_unstandardized_variants_match_sklearn():
    x, y = toy(n=300, seed=3, weights=[0.7, 0.1, 0.1, 0.1])
    sk = LogisticRegression(C=0.3, solver="newton-cg", max_iter=5000, tol=1e-10).fit(x, y)
    ours = fit_logistic_regression(x, y, C=0.3, class_weight=None, standardize=False)
    rel = np.linalg.norm(ours.coef - sk.coef_) / np.linalg.norm(sk.coef_)
    assert rel < 2e-3
    assert np.mean(ours.predict(x) == sk.predict(x)) >= 0.98


def test_balanced_weighting_matters():
    x, y = toy(n=600, seed=4, weights=[0.85, 0.05, 0.05, 0.05])
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
    x, y = toy(n=300, seed=5)
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
    x, y = toy(n=400, d=30, seed=8)
    short = fit_logistic_regression(x, y, C=100.0, max_iter=3, tol=1e-6)
    assert not short.converged and short.n_iter <= 3
    assert _objective_grad_max(x, y, 4, 100.0, short.coef_std, short.intercept_std) > 1e-6
    full = fit_logistic_regression(x, y, C=100.0, tol=1e-6)
    assert full.converged and full.n_iter > 3
    assert _objective_grad_max(x, y, 4, 100.0, full.coef_std, full.intercept_std) <= 2e-6


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


def test_sklearn_fit_reports_its_own_gradient_and_splits_a_binary_logit():
    """fit_logistic_sklearn's grad_max is the objective's gradient (independent numpy check);
    a two-class fit's single logit becomes two rows ranking the classes the same way."""
    from lens_emotion.probing.solvers import fit_logistic_sklearn, objective_grad_max

    x, y = toy(n=300, d=10, seed=9)
    xs = (x - x.mean(0)) / x.std(0)
    coef, intercept, n_iter, grad = fit_logistic_sklearn(xs, y, 4, 1.0, 1000, 1e-8)
    assert coef.shape == (4, 10) and n_iter > 0
    assert grad == pytest.approx(_objective_grad_max(x, y, 4, 1.0, coef, intercept), rel=1e-6)
    assert grad <= 1e-6
    short = fit_logistic_sklearn(xs, y, 4, 1.0, 2, 1e-8)
    assert short[3] > 1e-4  # stopped at the iteration limit: a large gradient, reported
    w = balanced_weights(y, 4)
    assert objective_grad_max(xs, y, w, short[0], short[1], 1.0) == pytest.approx(short[3])
    yb = (y > 1).astype(np.int64)
    coef_b, icpt_b, _, _ = fit_logistic_sklearn(xs, yb, 2, 1.0, 1000, 1e-8)
    np.testing.assert_allclose(coef_b[0], -coef_b[1])
    ref = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000, tol=1e-8).fit(xs, yb)
    np.testing.assert_array_equal((xs @ coef_b.T + icpt_b).argmax(1), ref.predict(xs))
