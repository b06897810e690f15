"""The fits behind the probes: scikit-learn logistic regression, ridge, MLP, standardisation.

* :func:`fit_logistic_sklearn`: one class-balanced L2 logistic regression (scikit-learn's
  lbfgs) on standardised rows, with :func:`objective_grad_max`, the largest gradient entry of
  its objective at the returned weights (what ``converged`` means in the probe tables). The
  emotion probes (:mod:`lens_emotion.probing.emotions`) use it for every fit.
* :func:`fit_threads`: the torch and BLAS thread pools of the fits (one BLAS thread by default).
* :func:`fit_standardizer`, :func:`balanced_weights`, :func:`to_raw_space`: train-rows-only
  standardisation, scikit-learn's balanced class weights, standardised-to-raw weight mapping.
* :func:`fit_mlp`: a small one-hidden-layer MLP probe (Adam, weight decay, early stopping).
* :func:`ridge_fit`: closed-form multi-target ridge regression for many penalties at once
  (eigendecomposition of the Gram matrix), with leave-one-out errors for choosing the penalty.
* :func:`fit_logistic_batched` / :func:`fit_logistic_regression`: many independent L2
  multinomial logistic regressions solved at once with torch's L-BFGS (strong-Wolfe line
  search, preconditioned), each minimising scikit-learn's objective
  ``sum_i w_i CE(W x_i + b, y_i) + ||W||^2 / (2C)`` on features standardised with that
  problem's own mean and scale (intercept not penalised); standardisation is folded into the
  weights, so all problems share one ``(n, d) @ (d, B*K)`` matrix product per evaluation.
  The emotion probes no longer use it (only 1.1x faster than scikit-learn on one SmolLM2
  layer x 5 folds, ``benchmarks/results/probes.json``); :mod:`lens_emotion.geometry` fits its
  emotion vectors with :func:`fit_logistic_regression`, and ``benchmarks/bench_probes.py``
  times it, so it stays here, tested against scikit-learn.

Every function is deterministic: L-BFGS and the closed forms involve no randomness, and the
MLP draws from a :class:`torch.Generator` seeded by its ``seed`` argument.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int

__all__ = [
    "LinearProbe",
    "LogisticFit",
    "RidgeSolution",
    "balanced_weights",
    "fit_logistic_batched",
    "fit_logistic_regression",
    "fit_logistic_sklearn",
    "fit_mlp",
    "fit_standardizer",
    "fit_threads",
    "logits_batched",
    "objective_grad_max",
    "ridge_fit",
    "to_raw_space",
    "torch_threads",
]


def fit_standardizer(
    x: Float[np.ndarray, "n d"], rows: Int[np.ndarray, " m"] | Bool[np.ndarray, " n"] | None = None
) -> tuple[Float[np.ndarray, " d"], Float[np.ndarray, " d"]]:
    """Mean and scale of the given rows, as :class:`sklearn.preprocessing.StandardScaler` does.

    Only ``x[rows]`` is looked at, so passing a CV training fold's rows keeps the test fold
    out of the scaler. The scale is the population standard deviation (``ddof=0``); features
    that are constant on those rows get scale 1.

    Args:
        x: Feature matrix.
        rows: Row indices or a boolean row mask; ``None`` uses every row.

    Returns:
        ``(mean, scale)``, float64 arrays of length ``d``.
    """
    sub = np.asarray(x, dtype=np.float64)
    if rows is not None:
        sub = sub[rows]
    mean = sub.mean(axis=0)
    scale = sub.std(axis=0)
    scale[~(scale > 1e-12 * np.maximum(np.abs(mean), 1.0))] = 1.0
    return mean, scale


def balanced_weights(
    y: Int[np.ndarray, " n"], n_classes: int, rows: Bool[np.ndarray, " n"] | None = None
) -> Float[np.ndarray, " n"]:
    """Per-row class-balanced weights ``n_rows / (n_present_classes * count[y])``.

    Same as scikit-learn's ``class_weight="balanced"`` computed on ``y[rows]``; rows outside
    ``rows`` get weight 0, so the weights of a training fold sum to its size.

    Args:
        y: Integer class of each row, in ``[0, n_classes)``.
        n_classes: Number of classes.
        rows: Rows that count (a training fold); ``None`` means all.

    Returns:
        float64 weights, one per row.
    """
    y = np.asarray(y)
    use = np.ones(len(y), dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    counts = np.bincount(y[use], minlength=n_classes).astype(np.float64)
    present = int((counts > 0).sum())
    per_class = np.divide(
        use.sum() / max(present, 1), counts, out=np.zeros_like(counts), where=counts > 0
    )
    return np.where(use, per_class[y], 0.0)


#: Below this many multiply-adds per objective evaluation a fit runs on one thread: tiny
#: matrix products gain nothing from more threads, and on a busy machine the thread pool's
#: synchronisation can make them 30x slower.
SMALL_PROBLEM_FLOPS = 2_000_000


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the old count; ``None``: as is.

    On a machine that other processes keep busy, torch's thread pool can slow small and
    medium matrix products down by 10x or more; ``n=1`` avoids that.
    """
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _threads_for(flops: int) -> Iterator[None]:
    """Run small problems single-threaded; restore torch's thread count afterwards."""
    before = torch.get_num_threads()
    if flops >= SMALL_PROBLEM_FLOPS or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def objective_grad_max(
    xs: Float[np.ndarray, "n d"],
    y: Int[np.ndarray, " n"],
    weights: Float[np.ndarray, " n"],
    coef: Float[np.ndarray, "K d"],
    intercept: Float[np.ndarray, " K"],
    C: float,
) -> float:
    """Largest gradient entry of scikit-learn's normalised L2 logistic objective at a solution.

    Objective (``sklearn.linear_model.LogisticRegression``, lbfgs):
    ``(sum_i s_i loss_i + ||W||^2 / (2C)) / sum_i s_i`` with ``s_i`` the class-balanced
    weights; multinomial cross-entropy for ``K > 2`` classes (``coef`` is ``(K, d)``),
    the binomial loss for two (``coef`` is ``(1, d)``). The intercept is not penalised.

    Args:
        xs: Standardised training rows.
        y: Class index of each row.
        weights: Per-row class-balanced weights (:func:`balanced_weights`).
        coef: Weights in the standardised space (scikit-learn's ``coef_``).
        intercept: Intercepts (scikit-learn's ``intercept_``).
        C: Inverse L2 strength.

    Returns:
        The largest absolute entry of the gradient (weights and intercepts).
    """
    total = float(weights.sum())
    logits = xs @ coef.T + intercept
    if coef.shape[0] == 1:  # binary: one logit for class 1
        resid = 1.0 / (1.0 + np.exp(-logits[:, 0])) - (y == 1)
        resid = (resid * weights)[:, None]
    else:
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(y)), y] -= 1.0
        resid = p * weights[:, None]
    g_w = (resid.T @ xs + coef / C) / total
    g_b = resid.sum(axis=0) / total
    return float(max(np.abs(g_w).max(), np.abs(g_b).max()))


@contextlib.contextmanager
def fit_threads(num_threads: int | None) -> Iterator[None]:
    """Threads of the probe fits: torch's (as :func:`torch_threads`) and the BLAS pool.

    scikit-learn's lbfgs fits here are many small matrix products (rows x d_model), for which a
    multi-threaded BLAS pool mostly waits on itself: on this 2-core CPU one (site, layer) of
    130 rows took 70.6 s with the default pool against 4.3 s single-threaded while another job
    ran. So the BLAS pool gets ``num_threads`` threads, and 1 when ``None``.
    """
    from threadpoolctl import threadpool_limits

    with torch_threads(num_threads), threadpool_limits(limits=num_threads or 1, user_api="blas"):
        yield


def fit_logistic_sklearn(
    xs: Float[np.ndarray, "n d"],
    y: Int[np.ndarray, " n"],
    k: int,
    C: float,
    max_iter: int,
    tol: float,
) -> tuple[Float[np.ndarray, "K d"], Float[np.ndarray, " K"], int, float]:
    """One class-balanced L2 logistic regression (scikit-learn, lbfgs) on standardised rows.

    ``LogisticRegression(C=C, class_weight="balanced", max_iter=max_iter, tol=tol)``; its
    ``ConvergenceWarning`` is silenced because convergence is judged on the returned weights
    with :func:`objective_grad_max` instead.

    Args:
        xs: Standardised training rows.
        y: Class index of each row, in ``[0, k)``.
        k: Number of classes of the whole problem (some may be absent from ``y``).
        C: Inverse L2 strength.
        max_iter: lbfgs iteration limit.
        tol: scikit-learn's ``tol``.

    Returns:
        ``(coef (K, d), intercept (K,), n_iter, grad_max)``; a binary fit's single logit
        ``w`` becomes the two rows ``(-w/2, w/2)``, which rank the classes identically.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=max_iter, tol=tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # judged below, on the gradient
        clf.fit(xs, y)
    weights = balanced_weights(y, k)
    grad = objective_grad_max(xs, y, weights, clf.coef_, clf.intercept_, C)
    coef = np.zeros((k, xs.shape[1]))
    intercept = np.zeros(k)
    classes = clf.classes_.astype(int)
    if clf.coef_.shape[0] == 1:
        coef[classes[0]], coef[classes[1]] = -clf.coef_[0] / 2, clf.coef_[0] / 2
        intercept[classes[0]], intercept[classes[1]] = -clf.intercept_[0] / 2, clf.intercept_[0] / 2
    else:
        coef[classes], intercept[classes] = clf.coef_, clf.intercept_
        intercept[np.setdiff1d(np.arange(k), classes)] = -np.inf  # never predicted
    return coef, intercept, int(np.max(clf.n_iter_)), grad


class LogisticFit(NamedTuple):
    """What :func:`fit_logistic_batched` returns.

    Attributes:
        coef: ``(B, K, d)`` weights in each problem's standardised space.
        intercept: ``(B, K)`` intercepts.
        n_iter: L-BFGS iterations run.
        converged: Whether *every* problem met the gradient criterion ``grad_max <= tol``.
        grad_max: ``(B,)`` largest absolute entry of each problem's gradient (weights and
            intercepts) of its per-row normalised objective at the returned solution.
    """

    coef: torch.Tensor
    intercept: torch.Tensor
    n_iter: int
    converged: bool
    grad_max: torch.Tensor


#: L-BFGS iterations between two checks of the gradient criterion.
CHECK_EVERY = 10


def fit_logistic_batched(
    x: Float[torch.Tensor, "n d"],
    y: Int[torch.Tensor, "B n"],
    weight: Float[torch.Tensor, "B n"],
    mean: Float[torch.Tensor, "B d"],
    scale: Float[torch.Tensor, "B d"],
    n_classes: int,
    C: float = 1.0,
    max_iter: int = 1000,
    tol: float = 1e-5,
    precondition: bool = True,
) -> LogisticFit:
    """Fit ``B`` independent L2 multinomial logistic regressions on one feature matrix.

    Problem ``b`` uses labels ``y[b]``, sample weights ``weight[b]`` (0 drops a row, e.g. a
    test-fold row) and features standardised as ``(x - mean[b]) / scale[b]``. It minimises
    ``(sum_i w_i CE_i + ||W_b||^2 / (2C)) / n_b`` with ``n_b`` the number of rows of non-zero
    weight; dividing by ``n_b`` does not move the optimum, which is scikit-learn's
    (``LogisticRegression(C=C)`` with those sample weights; full K-class softmax, intercept not
    penalised). The ``B`` objectives are summed and solved jointly by L-BFGS; as they share no
    parameters the joint optimum is each problem's optimum.

    **Convergence** means the gradient criterion: the largest absolute entry of each problem's
    gradient (with respect to its standardised-space weights and intercepts) is at most
    ``tol``. It is checked every :data:`CHECK_EVERY` iterations on the actual parameters (the
    preconditioned gradient L-BFGS watches is a different quantity); the fit stops when it
    holds, when ``max_iter`` is reached, or when L-BFGS makes no more progress. Only the first
    counts as converged.

    Args:
        x: Features, ideally already centred and scaled globally (for float32 accuracy).
        y: Class of each row for each problem, in ``[0, n_classes)``.
        weight: Non-negative sample weights; rows with weight 0 are ignored by that problem.
        mean: Per-problem feature mean used for standardisation.
        scale: Per-problem feature scale (positive).
        n_classes: Number of classes ``K``.
        C: Inverse regularisation strength, as in scikit-learn.
        max_iter: Maximum L-BFGS iterations.
        tol: Gradient tolerance (largest entry) of the per-row normalised objective.
        precondition: Optimise ``W = W' P`` with ``P`` the inverse square root of each
            problem's approximate Hessian (see :func:`_preconditioners`); same optimum, about
            10x fewer L-BFGS iterations on correlated features.

    Returns:
        The :class:`LogisticFit`.
    """
    n_rows = (weight > 0).sum(dim=1).to(x.dtype).clamp_min(1.0)  # (B,)
    w_norm = weight.double() / n_rows.double()[:, None]  # (B, n)
    penalty = 1.0 / (2.0 * C * n_rows.double())  # (B,)
    inv_scale = 1.0 / scale  # (B, d)
    shift = mean * inv_scale  # (B, d)
    with _threads_for(x.shape[0] * x.shape[1] * y.shape[0] * n_classes):
        return _lbfgs(
            x, y, w_norm, penalty, inv_scale, shift, mean, scale, weight > 0, n_classes,
            C * n_rows, max_iter, tol, precondition,
        )  # fmt: skip


def _lbfgs(
    x: torch.Tensor,
    y: torch.Tensor,
    w_norm: torch.Tensor,
    penalty: torch.Tensor,
    inv_scale: torch.Tensor,
    shift: torch.Tensor,
    mean: torch.Tensor,
    scale: torch.Tensor,
    rows: torch.Tensor,
    n_classes: int,
    c_n: torch.Tensor,
    max_iter: int,
    tol: float,
    precondition: bool,
) -> LogisticFit:
    """The L-BFGS solve behind :func:`fit_logistic_batched` (arguments prepared there).

    It runs in ``x``'s dtype. If a float32 run stalls before the gradient criterion (its line
    search can no longer resolve the loss decrease, typically within a factor of a few of
    ``tol = 1e-5``), the remaining iterations continue in float64 from where it stopped.
    """
    n_problems, d, dtype = y.shape[0], x.shape[1], x.dtype
    precond = _preconditioners(x, rows, mean, scale, n_classes, c_n) if precondition else None
    coef = torch.zeros(n_problems, n_classes, d, dtype=dtype)
    intercept = torch.zeros(n_problems, n_classes, dtype=dtype)
    targets = y.reshape(-1)
    flat_w = w_norm.reshape(-1)
    n_iter, gmax, stalled = 0, None, False
    for stage_dtype in (dtype, torch.float64):
        if stage_dtype != dtype and not (stalled and dtype == torch.float32):
            break
        cast = {"dtype": stage_dtype}
        coef, intercept, n_iter, gmax, stalled = _lbfgs_stage(
            x.to(**cast), targets, flat_w, penalty, inv_scale.to(**cast), shift.to(**cast),
            None if precond is None else precond.to(**cast), coef.to(**cast),
            intercept.to(**cast), n_classes, n_iter, max_iter, tol,
        )  # fmt: skip
    real = coef if precond is None else torch.bmm(coef, precond.to(coef.dtype))
    converged = bool((gmax <= tol).all())
    return LogisticFit(
        real.to(dtype), intercept.to(dtype), n_iter, converged, gmax.detach().double()
    )


def _lbfgs_stage(
    x: torch.Tensor,
    targets: torch.Tensor,
    flat_w: torch.Tensor,
    penalty: torch.Tensor,
    inv_scale: torch.Tensor,
    shift: torch.Tensor,
    precond: torch.Tensor | None,
    coef0: torch.Tensor,
    intercept0: torch.Tensor,
    n_classes: int,
    n_iter: int,
    max_iter: int,
    tol: float,
) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor, bool]:
    """L-BFGS from ``(coef0, intercept0)`` until the gradient criterion, the budget or a stall.

    Returns:
        ``(coef, intercept, n_iter, grad_max, stalled)`` with ``coef`` in the preconditioned
        parametrisation and ``n_iter`` counted on from the given one.
    """
    coef = coef0.clone().requires_grad_(True)
    intercept = intercept0.clone().requires_grad_(True)

    def objective(real: torch.Tensor, icpt: torch.Tensor) -> torch.Tensor:
        logits = logits_batched(x, real, icpt, inv_scale, shift)  # (B, n, K)
        ce = F.cross_entropy(logits.reshape(-1, n_classes), targets, reduction="none")
        # Sums in float64: L-BFGS's line search compares losses, and a float32 sum over
        # thousands of rows cannot resolve the last digits the optimum needs.
        return (ce.double() * flat_w).sum() + (penalty * real.double().pow(2).sum(dim=(1, 2))).sum()

    def real_weights() -> torch.Tensor:
        return coef if precond is None else torch.bmm(coef, precond)

    def check() -> tuple[float, torch.Tensor]:
        """Objective and per-problem largest gradient entry at the current parameters."""
        real = real_weights().detach().requires_grad_(True)
        icpt = intercept.detach().requires_grad_(True)
        loss = objective(real, icpt)
        g_w, g_b = torch.autograd.grad(loss, [real, icpt])
        return float(loss.detach()), torch.maximum(
            g_w.abs().amax(dim=(1, 2)), g_b.abs().amax(dim=1)
        ).double()

    optimizer = torch.optim.LBFGS(
        [coef, intercept],
        lr=1.0,
        max_iter=CHECK_EVERY,
        max_eval=CHECK_EVERY * 3,
        # L-BFGS's own test is on the preconditioned gradient, which can be smaller than the
        # real one; keep it from stopping first (the real criterion is checked below).
        tolerance_grad=tol * 1e-3,
        tolerance_change=1e-12 if x.dtype == torch.float32 else 1e-15,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    group = optimizer.param_groups[0]

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = objective(real_weights(), intercept)
        loss.backward()
        return loss

    start = n_iter
    loss, gmax = check()
    stalled = False
    while n_iter < max_iter and bool((gmax > tol).any()):
        group["max_iter"] = min(CHECK_EVERY, max_iter - n_iter)
        group["max_eval"] = group["max_iter"] * 3
        optimizer.step(closure)
        n_iter = start + int(optimizer.state[optimizer._params[0]].get("n_iter", 0))
        before = loss
        loss, gmax = check()
        if not loss < before - 1e-15 * abs(before):  # no progress: L-BFGS has stalled
            stalled = True
            break
    return coef.detach(), intercept.detach(), n_iter, gmax, stalled


def _preconditioners(
    x: Float[torch.Tensor, "n d"],
    rows: Bool[torch.Tensor, "B n"],
    mean: Float[torch.Tensor, "B d"],
    scale: Float[torch.Tensor, "B d"],
    n_classes: int,
    c_n: Float[torch.Tensor, " B"],
) -> Float[torch.Tensor, "B d d"]:
    """Symmetric ``(G / K + I / (C n))^(-1/2)`` per problem, ``G`` its standardised Gram / n.

    Optimising ``W = W' P`` instead of ``W`` leaves the optimum unchanged but makes the
    Hessian of the objective close to the identity (the softmax cross-entropy Hessian is
    roughly ``G / K`` in feature space, the penalty adds ``1 / (C n)``), so L-BFGS needs far
    fewer iterations on correlated features such as residual-stream activations.
    """
    out = []
    cache: dict[tuple[bytes, float], torch.Tensor] = {}  # a CV probe and its control share rows
    for b in range(rows.shape[0]):
        key = (rows[b].numpy().tobytes(), float(c_n[b]))
        if key not in cache:
            xb = (x[rows[b]] - mean[b]) / scale[b]
            gram = (xb.T @ xb).double() / max(xb.shape[0], 1)
            evals, evecs = torch.linalg.eigh(gram / n_classes)
            inv_root = (evals.clamp_min(0.0) + 1.0 / float(c_n[b])).rsqrt()
            cache[key] = (evecs * inv_root) @ evecs.T
        out.append(cache[key])
    return torch.stack(out).to(x.dtype)


def logits_batched(
    x: Float[torch.Tensor, "n d"],
    coef: Float[torch.Tensor, "B K d"],
    intercept: Float[torch.Tensor, "B K"],
    inv_scale: Float[torch.Tensor, "B d"],
    shift: Float[torch.Tensor, "B d"],
) -> Float[torch.Tensor, "B n K"]:
    """Logits of ``B`` standardised-space linear models on raw features ``x``.

    Computes ``((x - mean_b) / scale_b) @ coef_b.T + intercept_b`` for every problem ``b`` as
    one matrix product, with ``inv_scale = 1 / scale`` and ``shift = mean / scale``.
    """
    n_problems, n_classes, d = coef.shape
    folded = coef * inv_scale[:, None, :]  # (B, K, d)
    offset = intercept - torch.einsum("bd,bkd->bk", shift, coef)  # (B, K)
    logits = x @ folded.reshape(n_problems * n_classes, d).T  # (n, B*K)
    return logits.reshape(-1, n_problems, n_classes).permute(1, 0, 2) + offset[:, None, :]


def to_raw_space(
    coef: Float[np.ndarray, "... K d"],
    intercept: Float[np.ndarray, "... K"],
    mean: Float[np.ndarray, "... d"],
    scale: Float[np.ndarray, "... d"],
) -> tuple[Float[np.ndarray, "... K d"], Float[np.ndarray, "... K"]]:
    """Map standardised-space linear weights back to raw feature space.

    ``W_std ((x - mu) / sigma) + b_std = (W_std / sigma) x + (b_std - W_std (mu / sigma))``.

    Returns:
        ``(coef_raw, intercept_raw)``.
    """
    coef = np.asarray(coef, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    coef_raw = coef / scale[..., None, :]
    intercept_raw = np.asarray(intercept, dtype=np.float64) - np.einsum(
        "...kd,...d->...k", coef, mean / scale
    )
    return coef_raw, intercept_raw


@dataclass(frozen=True)
class LinearProbe:
    """A fitted linear classifier or regressor, usable on raw features.

    Attributes:
        coef: Raw-space weights ``(K, d)``: ``scores = x @ coef.T + intercept``.
        intercept: Raw-space intercepts ``(K,)``.
        coef_std: Weights in the standardised space the model was fitted in.
        intercept_std: Intercepts in the standardised space.
        mean: Feature means the standardisation used.
        scale: Feature scales the standardisation used.
        n_iter: Optimiser iterations (0 for closed forms).
        converged: Whether the optimiser met its tolerance.
    """

    coef: np.ndarray
    intercept: np.ndarray
    coef_std: np.ndarray
    intercept_std: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    n_iter: int = 0
    converged: bool = True

    def decision_function(self, x: Float[np.ndarray, "n d"]) -> Float[np.ndarray, "n K"]:
        """Scores (logits) of raw features."""
        return np.asarray(x, dtype=np.float64) @ self.coef.T + self.intercept

    def predict(self, x: Float[np.ndarray, "n d"]) -> Int[np.ndarray, " n"]:
        """Index of the highest-scoring class of each row."""
        return self.decision_function(x).argmax(axis=1)


def fit_logistic_regression(
    x: Float[np.ndarray, "n d"],
    y: Int[np.ndarray, " n"],
    n_classes: int | None = None,
    *,
    C: float = 1.0,
    class_weight: str | None = "balanced",
    standardize: bool = True,
    max_iter: int = 1000,
    tol: float = 1e-6,
    dtype: torch.dtype = torch.float32,
) -> LinearProbe:
    """Fit one L2 multinomial logistic regression (scikit-learn's objective) with torch L-BFGS.

    Equivalent to ``make_pipeline(StandardScaler(), LogisticRegression(C=C,
    class_weight=class_weight))`` (or plain ``LogisticRegression`` with
    ``standardize=False``), but much faster for a few thousand rows and hundreds of features.
    The features are centred and scaled before optimisation in every case (for conditioning);
    with ``standardize=False`` the penalty is still applied to the raw-space weights.

    Args:
        x: Raw features.
        y: Integer classes in ``[0, n_classes)``.
        n_classes: Number of classes; defaults to ``y.max() + 1``.
        C: Inverse regularisation strength.
        class_weight: ``"balanced"`` or ``None`` (all rows weight 1).
        standardize: Fit on standardised features (weights are mapped back to raw space).
        max_iter: Maximum L-BFGS iterations.
        tol: Gradient tolerance of the per-row normalised objective.
        dtype: Torch dtype of the optimisation (float32 is about twice as fast as float64).

    Returns:
        The fitted :class:`LinearProbe`.
    """
    if class_weight not in ("balanced", None):
        raise ValueError(f"class_weight must be 'balanced' or None, not {class_weight!r}")
    x = np.asarray(x)
    y = np.asarray(y, dtype=np.int64)
    k = int(y.max()) + 1 if n_classes is None else int(n_classes)
    mean, scale = fit_standardizer(x)
    weights = balanced_weights(y, k) if class_weight == "balanced" else np.ones(len(y))
    xs = torch.as_tensor((x - mean) / scale, dtype=dtype)
    if standardize:
        fit_mean, fit_scale = np.zeros_like(mean), np.ones_like(scale)
    else:  # raw-space penalty: the model sees centred raw features (xs * scale = x - mean)
        fit_mean, fit_scale = np.zeros_like(mean), 1.0 / scale
    coef, intercept, n_iter, converged, _ = fit_logistic_batched(
        xs,
        torch.as_tensor(y)[None],
        torch.as_tensor(weights, dtype=dtype)[None],
        torch.as_tensor(fit_mean, dtype=dtype)[None],
        torch.as_tensor(fit_scale, dtype=dtype)[None],
        n_classes=k,
        C=C,
        max_iter=max_iter,
        tol=tol,
    )
    coef_std = coef[0].double().numpy()
    intercept_std = intercept[0].double().numpy()
    # Model space: ((xs - fit_mean) / fit_scale) with xs = (x - mean) / scale.
    total_mean = mean + scale * fit_mean
    total_scale = scale * fit_scale
    coef_raw, intercept_raw = to_raw_space(coef_std, intercept_std, total_mean, total_scale)
    return LinearProbe(
        coef=coef_raw,
        intercept=intercept_raw,
        coef_std=coef_std,
        intercept_std=intercept_std,
        mean=total_mean,
        scale=total_scale,
        n_iter=n_iter,
        converged=converged,
    )


# --------------------------------------------------------------------------------------------
# MLP probe
# --------------------------------------------------------------------------------------------


def fit_mlp(
    x_train: Float[np.ndarray, "n d"],
    y_train: Int[np.ndarray, " n"],
    n_classes: int,
    *,
    hidden: int = 256,
    weight_decay: float = 1e-4,
    lr: float = 1e-3,
    batch_size: int = 128,
    max_epochs: int = 200,
    patience: int = 10,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> torch.nn.Module:
    """Train a one-hidden-layer ReLU MLP probe with early stopping; deterministic per seed.

    Features are standardised with the training rows' mean and scale (folded into the returned
    module, which takes raw features). A stratified ``val_fraction`` of the training rows is
    held out for early stopping on the class-balanced validation loss; the best epoch's weights
    are kept. Optimiser: Adam with decoupled weight decay (AdamW); class-balanced loss.

    Args:
        x_train: Raw training features.
        y_train: Training classes in ``[0, n_classes)``.
        n_classes: Number of classes.
        hidden: Hidden units.
        weight_decay: AdamW weight decay.
        lr: Learning rate.
        batch_size: Mini-batch size.
        max_epochs: Maximum epochs.
        patience: Epochs without validation improvement before stopping.
        val_fraction: Share of each class held out for early stopping.
        seed: Seed of initialisation, validation split and batch order.

    Returns:
        A module in eval mode mapping raw features ``(n, d)`` to logits ``(n, n_classes)``.
    """
    x_train = np.asarray(x_train)
    y_train = np.asarray(y_train, dtype=np.int64)
    rng = np.random.default_rng(seed)
    val = np.zeros(len(y_train), dtype=bool)
    for k in range(n_classes):
        rows = np.flatnonzero(y_train == k)
        n_val = int(math.floor(len(rows) * val_fraction))
        if n_val and len(rows) - n_val > 0:
            val[rng.choice(rows, size=n_val, replace=False)] = True
    if not val.any():  # too few rows for a split: early-stop on the training loss
        val = np.ones(len(y_train), dtype=bool)
        fit_rows = np.ones(len(y_train), dtype=bool)
    else:
        fit_rows = ~val
    mean, scale = fit_standardizer(x_train, fit_rows)
    xs = torch.as_tensor((x_train - mean) / scale, dtype=torch.float32)
    yt = torch.as_tensor(y_train)
    counts = np.bincount(y_train[fit_rows], minlength=n_classes).astype(np.float64)
    present = max(int((counts > 0).sum()), 1)
    per_class = np.divide(
        fit_rows.sum() / present, counts, out=np.zeros_like(counts), where=counts > 0
    )
    loss_w = torch.as_tensor(per_class, dtype=torch.float32)  # sklearn's "balanced"

    with _threads_for(len(xs) * xs.shape[1] * hidden):
        net = _train_mlp(
            xs,
            yt,
            fit_rows,
            val,
            loss_w,
            n_classes,
            hidden,
            weight_decay,
            lr,
            batch_size,
            max_epochs,
            patience,
            seed,
        )
    return _Standardized(net, mean, scale).eval()


def _train_mlp(
    xs: torch.Tensor,
    yt: torch.Tensor,
    fit_rows: np.ndarray,
    val: np.ndarray,
    loss_w: torch.Tensor,
    n_classes: int,
    hidden: int,
    weight_decay: float,
    lr: float,
    batch_size: int,
    max_epochs: int,
    patience: int,
    seed: int,
) -> torch.nn.Module:
    """The training loop behind :func:`fit_mlp` (standardised inputs)."""
    gen = torch.Generator().manual_seed(int(seed))
    d = xs.shape[1]
    net = torch.nn.Sequential(
        torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_classes)
    )
    with torch.no_grad():
        for layer in (net[0], net[2]):
            bound = 1.0 / math.sqrt(layer.in_features)
            layer.weight.copy_(torch.rand(layer.weight.shape, generator=gen) * 2 * bound - bound)
            layer.bias.copy_(torch.rand(layer.bias.shape, generator=gen) * 2 * bound - bound)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    fit_idx = torch.as_tensor(np.flatnonzero(fit_rows))
    val_idx = torch.as_tensor(np.flatnonzero(val))
    best_loss, best_state, stale = math.inf, None, 0
    for _ in range(max_epochs):
        net.train()
        order = fit_idx[torch.randperm(len(fit_idx), generator=gen)]
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(net(xs[batch]), yt[batch], weight=loss_w)
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            val_loss = float(F.cross_entropy(net(xs[val_idx]), yt[val_idx], weight=loss_w))
        if val_loss < best_loss - 1e-6:
            best_loss, stale = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            stale += 1
            if stale >= patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    return net


class _Standardized(torch.nn.Module):
    """Wraps a module so that it takes raw features and standardises them first."""

    def __init__(self, inner: torch.nn.Module, mean: np.ndarray, scale: np.ndarray) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of raw features."""
        return self.inner((x - self.mean) / self.scale)


# --------------------------------------------------------------------------------------------
# Ridge regression
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RidgeSolution:
    """Multi-target ridge fit on standardised features.

    Attributes:
        coef: Standardised-space weights ``(T, d)`` at each target's chosen penalty.
        intercept: Intercepts ``(T,)`` (the training targets' means).
        alpha: Chosen penalty of each target ``(T,)``.
        loo_mse: Leave-one-out mean squared error ``(n_alphas, T)`` (``None`` with one alpha).
    """

    coef: np.ndarray
    intercept: np.ndarray
    alpha: np.ndarray
    loo_mse: np.ndarray | None = None


def ridge_fit(
    x_std: Float[np.ndarray, "n d"],
    y: Float[np.ndarray, "n T"],
    alphas: Sequence[float],
) -> RidgeSolution:
    """Ridge regression of every target at once: ``min ||y - X w - b||^2 + alpha ||w||^2``.

    Same objective as :class:`sklearn.linear_model.Ridge` with ``fit_intercept=True``. ``x_std``
    must already be centred on these rows (standardised features are). One eigendecomposition
    of ``X^T X`` serves all targets and all penalties. With several ``alphas`` each target gets
    the one with the smallest leave-one-out squared error (the efficient LOO of
    :class:`~sklearn.linear_model.RidgeCV`, computed exactly from the hat-matrix diagonal,
    intercept included).

    Args:
        x_std: Centred (standardised) features.
        y: Targets.
        alphas: One or more positive penalties.

    Returns:
        The :class:`RidgeSolution`.
    """
    x = torch.as_tensor(np.asarray(x_std), dtype=torch.float64)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    with _threads_for(x.shape[0] * x.shape[1] ** 2):
        return _ridge(x, yt, alphas)


def _ridge(x: torch.Tensor, yt: torch.Tensor, alphas: Sequence[float]) -> RidgeSolution:
    """The closed-form solve behind :func:`ridge_fit`."""
    n = x.shape[0]
    y_mean = yt.mean(dim=0)
    yc = yt - y_mean
    evals, evecs = torch.linalg.eigh(x.T @ x)  # (d,), (d, d)
    evals = evals.clamp_min(0.0)
    proj = evecs.T @ (x.T @ yc)  # (d, T)
    alpha_arr = torch.as_tensor(list(alphas), dtype=torch.float64)
    if len(alpha_arr) == 1:
        coef = evecs @ (proj / (evals + alpha_arr[0])[:, None])  # (d, T)
        return RidgeSolution(
            coef=coef.T.numpy(),
            intercept=y_mean.numpy(),
            alpha=np.full(yt.shape[1], float(alpha_arr[0])),
        )
    xv = x @ evecs  # (n, d)
    xv2 = xv.pow(2)
    loo = []
    for alpha in alpha_arr:
        shrink = 1.0 / (evals + alpha)
        fitted = xv @ (proj * shrink[:, None])  # (n, T), centred predictions
        hat = xv2 @ shrink + 1.0 / n  # (n,), intercept adds 1/n
        resid = (yc - fitted) / (1.0 - hat).clamp_min(1e-12)[:, None]
        loo.append(resid.pow(2).mean(dim=0))
    loo_mse = torch.stack(loo)  # (A, T)
    best = loo_mse.argmin(dim=0)  # (T,)
    chosen = alpha_arr[best]  # (T,)
    coef = evecs @ (proj / (evals[:, None] + chosen[None, :]))  # (d, T)
    return RidgeSolution(
        coef=coef.T.numpy(),
        intercept=y_mean.numpy(),
        alpha=chosen.numpy(),
        loo_mse=loo_mse.numpy(),
    )
