"""Linear probing of emotions and appraisals in stored activations (Tak et al., step 1).

Given an activation store (see :class:`SupportsActivations`; :mod:`lens_emotion.activations`
writes one) and one label per row:

* :func:`probe_emotions`: for each (site, layer), an L2 multinomial logistic-regression probe
  on standardised activations, class-balanced, scored by stratified k-fold cross-validation
  (accuracy mean ± sd, macro-F1), next to two controls: the majority-class baseline and the
  same probe trained on labels shuffled within each training fold. ``selectivity`` is
  accuracy minus the shuffled control. After CV one probe per (site, layer) is fitted on all
  rows; its weights, mapped back to the raw activation space, are the emotion *directions*.
* :func:`evaluate_emotion_probes`: the all-rows probes scored on another dataset's activations
  (train on one dataset, test on another).
* :func:`probe_positions`: the same probe at each stored token position (last-k-token analysis).
* :func:`probe_appraisals`: multi-target ridge regression of the appraisal ratings,
  cross-validated R² per appraisal, and raw-space appraisal directions.
* :func:`appraisal_alignment`: cosine similarity of emotion and appraisal directions per layer.

**Solver.** Every linear probe is scikit-learn's ``LogisticRegression(C=C,
class_weight="balanced", solver="lbfgs")`` on features standardised with its training rows'
mean and scale. It minimises ``(sum_i s_i CE_i + ||W||^2 / (2C)) / sum_i s_i`` (balanced class
weights ``s_i``, intercept unpenalised). A fit is reported ``converged`` only when the largest
gradient entry of that objective at the returned weights is at most ``tol`` (checked here, since
lbfgs may also stop on a small relative change of the objective); non-converged fits are
flagged in the table and one :class:`ProbeConvergenceWarning` says what refitting the worst of
them with 3x the iterations changes. The hand-written batched torch solver
(:func:`lens_emotion.probe_models.fit_logistic_batched`) that this module used before was
slower than scikit-learn at SmolLM2's size (one layer x 5 folds, d = 576, n = 1,000, one
thread: ``benchmarks/results/probes.json``), so it is no longer used here.

**Hygiene.** Each fold's scaler is fitted on that fold's training rows only; folds, label
permutations and MLP initialisations are fixed by ``seed``, and the same folds are used for
every site and layer, so numbers are comparable across the table and across runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from jaxtyping import Bool, Float, Int
from sklearn.metrics import f1_score
from sklearn.model_selection import KFold, StratifiedKFold
from tqdm.auto import tqdm

from lens_emotion.errors import LensEmotionError
from lens_emotion.io import write_bytes_atomic, write_json_atomic, write_text_atomic
from lens_emotion.probing.solvers import (
    balanced_weights,
    fit_mlp,
    fit_standardizer,
    ridge_fit,
    to_raw_space,
    torch_threads,
)

__all__ = [
    "EMOTION_EVAL_COLUMNS",
    "EMOTION_PROBE_COLUMNS",
    "APPRAISAL_PROBE_COLUMNS",
    "ALIGNMENT_COLUMNS",
    "SITE_LABELS",
    "AlignmentResult",
    "AppraisalProbeResult",
    "EmotionProbeResult",
    "PositionProbeResult",
    "ProbeConvergenceWarning",
    "ProbeError",
    "SupportsActivations",
    "appraisal_alignment",
    "evaluate_emotion_probes",
    "load_directions",
    "probe_appraisals",
    "probe_emotions",
    "probe_positions",
    "site_label",
]


#: Default lbfgs iteration limit of the emotion probes. On SmolLM2 (d = 576, 13 classes,
#: n = 1,000-2,000) the fits need about 200 iterations to reach ``tol = 1e-5``
#: (``benchmarks/results/probes.json``, ``probing_table.json``).
DEFAULT_MAX_ITER = 1000


class ProbeError(LensEmotionError, ValueError):
    """Probe inputs are inconsistent: wrong lengths, unknown sites/layers, too few rows."""


class ProbeConvergenceWarning(UserWarning):
    """Some probe fits stopped before meeting their gradient tolerance.

    The message says what that cost: the accuracy change when the worst fit is refitted with
    three times the iterations.
    """


@runtime_checkable
class SupportsActivations(Protocol):
    """What the probes need from an activation store (duck-typed).

    :class:`lens_emotion.activations.ActivationStore` implements it; tests use in-memory fakes.
    """

    @property
    def ids(self) -> tuple[str, ...]:
        """Row ids, in dataset order."""
        ...

    @property
    def sites(self) -> tuple[str, ...]:
        """Stored sites, e.g. ``("attn_out", "mlp_out", "resid_post")``."""
        ...

    @property
    def layers(self) -> tuple[int, ...]:
        """Stored layers."""
        ...

    @property
    def positions(self) -> tuple[int, ...]:
        """Stored positions, negative offsets from the last prompt token (-1 = last)."""
        ...

    @property
    def manifest(self) -> dict[str, Any]:
        """JSON-able description of how the activations were made."""
        ...

    def get(self, site: str, layer: int, position: int = -1) -> np.ndarray:
        """Float32 activations ``(n, d_model)`` of every row at one site, layer and position."""
        ...


#: Columns of :attr:`EmotionProbeResult.table` (and ``probe_emotions.csv``), in order.
EMOTION_PROBE_COLUMNS: tuple[str, ...] = (
    "site",
    "layer",
    "accuracy_mean",
    "accuracy_sd",
    "macro_f1",
    "majority_baseline",
    "shuffled_control",
    "selectivity",
    "n",
    "converged",
    "n_iter",
    "grad_max",
)
#: Columns of :attr:`AppraisalProbeResult.table` (and ``probe_appraisals.csv``), in order.
APPRAISAL_PROBE_COLUMNS: tuple[str, ...] = ("site", "layer", "appraisal", "r2_mean", "r2_sd")
#: Columns of :attr:`AlignmentResult.table` (and ``alignment.csv``), in order.
ALIGNMENT_COLUMNS: tuple[str, ...] = ("site", "layer", "emotion", "appraisal", "cosine")

#: Readable names of TransformerLens sites, as used in figures.
SITE_LABELS: dict[str, str] = {
    "attn_out": "MHSA (attn_out)",
    "mlp_out": "FFN (mlp_out)",
    "resid_mid": "mid-block residual (resid_mid)",
    "resid_post": "hidden (resid_post)",
    "z": "attention heads (z)",
}
_SITE_ORDER = ("attn_out", "mlp_out", "resid_mid", "resid_post", "z")
_SITE_COLORS = {
    "attn_out": "#0072B2",
    "mlp_out": "#E69F00",
    "resid_mid": "#CC79A7",
    "resid_post": "#009E73",
    "z": "#56B4E9",
}
_EXTRA_COLORS = ("#D55E00", "#882255", "#44AA99", "#999933", "#332288")


def site_label(site: str) -> str:
    """Readable figure name of a site, e.g. ``"MHSA (attn_out)"``; unknown sites unchanged."""
    return SITE_LABELS.get(site, site)


def _site_color(site: str, index: int) -> str:
    return _SITE_COLORS.get(site, _EXTRA_COLORS[index % len(_EXTRA_COLORS)])


def _ordered_sites(sites: Sequence[str]) -> list[str]:
    known = [s for s in _SITE_ORDER if s in sites]
    return known + [s for s in dict.fromkeys(sites) if s not in known]


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _preview(items: Sequence[Any], limit: int = 6) -> str:
    shown = ", ".join(repr(x) for x in list(items)[:limit])
    extra = len(items) - limit
    return f"{shown} (+{extra} more)" if extra > 0 else shown


def _choose(kind: str, requested: Any, available: Sequence[Any]) -> list[Any]:
    """Validate requested sites/layers/positions against the store's; ``None`` means all."""
    if requested is None:
        return list(available)
    if isinstance(requested, str | int):
        requested = [requested]
    chosen = list(dict.fromkeys(requested))
    if not chosen:
        raise ProbeError(f"no {kind}s requested; pass at least one of {list(available)}.")
    missing = [v for v in chosen if v not in available]
    if missing:
        raise ProbeError(
            f"{kind}(s) {_preview(missing)} not in the activation store, which holds "
            f"{kind}s {list(available)}; pick from those, or extract the missing ones with "
            "lens_emotion.activations.extract_activations(...)."
        )
    return chosen


def _check_position(position: int, store: SupportsActivations) -> int:
    return _choose("position", [position], tuple(store.positions))[0]


def _row_mask(mask: Any, n: int) -> Bool[np.ndarray, " n"]:
    if mask is None:
        return np.ones(n, dtype=bool)
    arr = np.asarray(mask)
    if arr.dtype != np.bool_ or arr.shape != (n,):
        raise ProbeError(
            f"mask must be a boolean array with one entry per store row ({n}), got dtype "
            f"{arr.dtype} and shape {arr.shape}; e.g. pass np.isin(store.ids, keep_ids)."
        )
    if not arr.any():
        raise ProbeError("mask selects no rows; pass a mask with at least one True per class.")
    return arr


def _check_folds(n_folds: int) -> int:
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or n_folds < 2:
        raise ProbeError(f"n_folds must be an int >= 2, got {n_folds!r}; 5 is the usual choice.")
    return int(n_folds)


@dataclass(frozen=True)
class _LabelSetup:
    rows: Int[np.ndarray, " m"]  # store rows used
    y: Int[np.ndarray, " m"]  # class index of each used row
    label_names: tuple[str, ...]  # classes present, in label_names order
    absent: tuple[str, ...]  # label_names without rows


def _label_setup(
    store: SupportsActivations,
    labels: Sequence[str],
    label_names: Sequence[str] | None,
    mask: Any,
    n_folds: int,
) -> _LabelSetup:
    n = len(store.ids)
    labels = [str(lab) for lab in labels]
    if len(labels) != n:
        raise ProbeError(
            f"got {len(labels)} labels for {n} stored rows; pass one label per store row, in "
            "store.ids order (e.g. dataset.labels of the dataset the store was extracted from)."
        )
    keep = _row_mask(mask, n)
    names = sorted(set(labels)) if label_names is None else [str(x) for x in label_names]
    if len(set(names)) != len(names):
        raise ProbeError(f"label_names repeat a label: {names}; list each label once.")
    known = set(names)
    unknown = sorted({lab for lab, k in zip(labels, keep, strict=True) if k and lab not in known})
    if unknown:
        raise ProbeError(
            f"labels {_preview(unknown)} are not in label_names {names}; add them to "
            "label_names or drop those rows with mask=."
        )
    rows = np.flatnonzero(keep)
    used = [labels[i] for i in rows]
    counts = {name: used.count(name) for name in names}
    present = tuple(name for name in names if counts[name] > 0)
    if len(present) < 2:
        raise ProbeError(
            f"probing needs at least 2 classes among the selected rows, got {list(present)}; "
            "check labels and mask."
        )
    small = {name: counts[name] for name in present if counts[name] < n_folds}
    if small:
        detail = ", ".join(f"{name!r} has {c}" for name, c in small.items())
        raise ProbeError(
            f"stratified {n_folds}-fold CV needs at least {n_folds} rows per class, but "
            f"{detail}; use fewer folds (n_folds=), add rows, or drop the class with mask=."
        )
    index = {name: i for i, name in enumerate(present)}
    y = np.array([index[lab] for lab in used], dtype=np.int64)
    absent = tuple(name for name in names if counts[name] == 0)
    return _LabelSetup(rows=rows, y=y, label_names=present, absent=absent)


def _activations(
    store: SupportsActivations, site: str, layer: int, position: int, rows: np.ndarray
) -> Float[np.ndarray, "m d"]:
    x = np.asarray(store.get(site, layer, position))
    n = len(store.ids)
    if x.ndim < 2 or x.shape[0] != n:
        raise ProbeError(
            f"store.get({site!r}, {layer}, {position}) returned shape {x.shape}, expected "
            f"({n}, d_model): one row per store id; the store is inconsistent, re-extract it."
        )
    x = x.reshape(n, -1)[rows]
    if not np.isfinite(x).all():
        raise ProbeError(
            f"activations at {site} layer {layer} position {position} contain NaN or inf; "
            "re-extract them in float32 (a float16 overflow is the usual cause)."
        )
    return x


# --------------------------------------------------------------------------------------------
# Emotion probes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CVPlan:
    folds: list[tuple[np.ndarray, np.ndarray]]
    permuted: list[np.ndarray]  # labels with training-fold rows shuffled, per fold
    majority: np.ndarray  # majority-baseline accuracy per fold


def _cv_plan(y: np.ndarray, n_folds: int, seed: int) -> _CVPlan:
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = [(tr, te) for tr, te in splitter.split(np.zeros(len(y)), y)]
    rng = np.random.default_rng(seed)
    permuted, majority = [], []
    for tr, te in folds:
        perm = y.copy()
        perm[tr] = rng.permutation(y[tr])
        permuted.append(perm)
        top = int(np.bincount(y[tr]).argmax())  # ties: the lowest class index
        majority.append(float(np.mean(y[te] == top)))
    return _CVPlan(folds=folds, permuted=permuted, majority=np.array(majority))


@dataclass(frozen=True)
class _Scores:
    accuracy: np.ndarray
    macro_f1: np.ndarray
    control: np.ndarray
    oof: np.ndarray | None = None  # out-of-fold prediction of every row (class index)
    coef: np.ndarray | None = None  # raw space (K, d)
    intercept: np.ndarray | None = None
    n_iter: int = 0
    converged: bool = True
    grad_max: float = float("nan")  # largest gradient entry over this fit's problems
    fold_coef: list[np.ndarray] | None = None  # raw-space (K, d) weights of each fold's probe
    fold_scale: list[np.ndarray] | None = None  # each fold's standardisation scale (d,)


def _fold_metrics(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> tuple[float, float]:
    acc = float(np.mean(y_true == y_pred))
    f1 = float(f1_score(y_true, y_pred, labels=list(range(k)), average="macro", zero_division=0))
    return acc, f1


def _objective_grad_max(
    xs: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    coef: np.ndarray,
    intercept: np.ndarray,
    C: float,
) -> float:
    """Largest gradient entry of scikit-learn's normalised L2 logistic objective at a solution.

    Objective (``sklearn.linear_model.LogisticRegression``, lbfgs):
    ``(sum_i s_i loss_i + ||W||^2 / (2C)) / sum_i s_i`` with ``s_i`` the class-balanced
    weights; multinomial cross-entropy for ``K > 2`` classes (``coef`` is ``(K, d)``),
    the binomial loss for two (``coef`` is ``(1, d)``). The intercept is not penalised.
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


def _fit_one(
    xs: np.ndarray, y: np.ndarray, k: int, C: float, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray, int, float]:
    """One class-balanced L2 logistic regression (scikit-learn, lbfgs) on standardised rows.

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
    grad = _objective_grad_max(xs, y, weights, clf.coef_, clf.intercept_, C)
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


def _logreg_scores(
    x: np.ndarray,
    y: np.ndarray,
    k: int,
    plan: _CVPlan,
    *,
    C: float,
    control: bool,
    fit_direction: bool,
    max_iter: int,
    tol: float,
    fold_coefs: bool = False,
) -> _Scores:
    """All folds (+ controls, + final all-rows fit) of one (site, layer) with scikit-learn.

    Each fit standardises with its training rows' mean and scale (``StandardScaler``) and runs
    ``LogisticRegression(C=C, class_weight="balanced", tol=tol, max_iter=max_iter)`` (lbfgs).
    A fit counts as converged when the largest gradient entry of its objective is at most
    ``tol`` at the returned weights (computed here: lbfgs may also stop on a relative
    function change, or at ``max_iter``). With ``fold_coefs`` the raw-space weights of each
    fold's probe and that fold's feature scale (``coef * scale`` is the standardised-space
    weight) are kept.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(y)
    acc, f1, ctrl, kept_coef, kept_scale = [], [], [], [], []
    oof = np.full(n, -1, dtype=np.int64)
    n_iter, grads = 0, []

    def fit(rows: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
        nonlocal n_iter
        mean, scale = fit_standardizer(x, rows)
        coef, intercept, iters, grad = _fit_one(
            (x[rows] - mean) / scale, labels[rows], k, C, max_iter, tol
        )
        n_iter = max(n_iter, iters)
        grads.append(grad)
        return coef, intercept, mean, scale

    for f, (tr, te) in enumerate(plan.folds):
        coef, intercept, mean, scale = fit(tr, y)
        pred = (((x[te] - mean) / scale) @ coef.T + intercept).argmax(axis=1)
        oof[te] = pred
        a, m = _fold_metrics(y[te], pred, k)
        acc.append(a)
        f1.append(m)
        if fold_coefs:
            kept_coef.append(to_raw_space(coef, intercept, mean, scale)[0])
            kept_scale.append(scale)
        if control:
            c_coef, c_icpt, mean, scale = fit(tr, plan.permuted[f])
            c_pred = (((x[te] - mean) / scale) @ c_coef.T + c_icpt).argmax(axis=1)
            ctrl.append(float(np.mean(y[te] == c_pred)))
    coef_raw = intercept_raw = None
    if fit_direction:
        coef, intercept, mean, scale = fit(np.arange(n), y)
        coef_raw, intercept_raw = to_raw_space(coef, intercept, mean, scale)
    grad_max = float(max(grads))
    return _Scores(
        accuracy=np.array(acc),
        macro_f1=np.array(f1),
        control=np.array(ctrl) if control else np.full(len(plan.folds), np.nan),
        oof=oof,
        coef=coef_raw,
        intercept=intercept_raw,
        n_iter=n_iter,
        converged=grad_max <= tol,
        grad_max=grad_max,
        fold_coef=kept_coef if fold_coefs else None,
        fold_scale=kept_scale if fold_coefs else None,
    )


def _mlp_scores(
    x: np.ndarray,
    y: np.ndarray,
    k: int,
    plan: _CVPlan,
    *,
    control: bool,
    seed: int,
    mlp_options: dict[str, Any],
) -> _Scores:
    acc, f1, ctrl = [], [], []
    xt = torch.as_tensor(x, dtype=torch.float32)
    for f, (tr, te) in enumerate(plan.folds):
        for r, train_labels in enumerate([y, plan.permuted[f]] if control else [y]):
            net = fit_mlp(x[tr], train_labels[tr], k, seed=seed * 1000 + 2 * f + r, **mlp_options)
            with torch.no_grad():
                pred = net(xt[te]).argmax(dim=1).numpy()
            a, m = _fold_metrics(y[te], pred, k)
            if r == 0:
                acc.append(a)
                f1.append(m)
            else:
                ctrl.append(a)
    return _Scores(
        accuracy=np.array(acc),
        macro_f1=np.array(f1),
        control=np.array(ctrl) if control else np.full(len(plan.folds), np.nan),
    )


def _summary_row(scores: _Scores, plan: _CVPlan, n: int) -> dict[str, Any]:
    acc = scores.accuracy
    sd = float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0
    shuffled = float(np.mean(scores.control))
    return {
        "accuracy_mean": float(np.mean(acc)),
        "accuracy_sd": sd,
        "macro_f1": float(np.mean(scores.macro_f1)),
        "majority_baseline": float(np.mean(plan.majority)),
        "shuffled_control": shuffled,
        "selectivity": float(np.mean(acc)) - shuffled,
        "n": n,
        "converged": bool(scores.converged),
        "n_iter": int(scores.n_iter),
        "grad_max": float(scores.grad_max),
    }


def _fold_rows(scores: _Scores, plan: _CVPlan) -> list[dict[str, Any]]:
    return [
        {
            "fold": f,
            "n_train": len(tr),
            "n_test": len(te),
            "accuracy": float(scores.accuracy[f]),
            "macro_f1": float(scores.macro_f1[f]),
            "majority_baseline": float(plan.majority[f]),
            "shuffled_control": float(scores.control[f]),
        }
        for f, (tr, te) in enumerate(plan.folds)
    ]


def _check_model_args(model: str, C: float) -> None:
    if model not in ("logreg", "mlp"):
        raise ProbeError(f"model must be 'logreg' or 'mlp', not {model!r}.")
    if not (isinstance(C, int | float) and math.isfinite(C) and C > 0):
        raise ProbeError(f"C must be a positive number (inverse L2 strength), got {C!r}.")


def _convergence_cost(
    rows: list[dict[str, Any]],
    refit: Any,
    label: Any,
    max_iter: int,
    tol: float,
) -> dict[str, Any] | None:
    """Refit the worst non-converged fit at 3x the iterations; warn once with what it cost.

    Args:
        rows: Summary rows (``converged``, ``grad_max``, ``accuracy_mean`` ...), one per fit.
        refit: ``refit(row, max_iter) -> _Scores`` for one row.
        label: ``label(row) -> str`` naming a row (``"resid_post.12"``).
        max_iter: The iteration limit used.
        tol: The gradient tolerance used.

    Returns:
        ``None`` if every fit converged, else what the check found (also in the warning).
    """
    bad = [r for r in rows if not r["converged"]]
    if not bad:
        return None
    worst = max(bad, key=lambda r: r["grad_max"])
    again = refit(worst, 3 * max_iter)
    before, after = worst["accuracy_mean"], float(np.mean(again.accuracy))
    check = {
        "n_unconverged": len(bad),
        "n_fits": len(rows),
        "unconverged": [label(r) for r in bad],
        "worst": label(worst),
        "worst_grad_max": worst["grad_max"],
        "refit_max_iter": 3 * max_iter,
        "refit_converged": bool(again.converged),
        "refit_grad_max": float(again.grad_max),
        "accuracy_mean": before,
        "refit_accuracy_mean": after,
        "accuracy_change": after - before,
    }
    warnings.warn(
        f"{len(bad)} of {len(rows)} probe fits stopped before the gradient tolerance "
        f"tol={tol:g} within max_iter={max_iter} ({_preview(check['unconverged'])}; see the "
        f"table's 'converged' column). Cost: refitting the worst, {check['worst']} (largest "
        f"gradient {worst['grad_max']:.1e}), at {3 * max_iter} iterations changes its CV "
        f"accuracy by {after - before:+.4f} ({before:.4f} -> {after:.4f}; "
        f"{'converged' if again.converged else 'still not converged'}). Raise max_iter if "
        "that matters.",
        ProbeConvergenceWarning,
        stacklevel=3,
    )
    return check


def _directions_bytes(arrays: dict[tuple[str, int], np.ndarray], metadata: dict[str, Any]) -> bytes:
    from safetensors.numpy import save

    tensors = {
        f"{site}.{layer}": np.ascontiguousarray(value, dtype=np.float32)
        for (site, layer), value in arrays.items()
    }
    return save(tensors, metadata={k: json.dumps(v) for k, v in metadata.items()})


def load_directions(
    path: str | Path,
) -> tuple[dict[tuple[str, int], np.ndarray], dict[str, Any]]:
    """Read directions written by a result's ``save()``.

    Args:
        path: A ``probe_emotion_directions.safetensors`` (or ``..._intercepts``,
            ``probe_appraisal_...``) file.

    Returns:
        ``({(site, layer): array}, metadata)``, the metadata holding e.g. ``"names"`` (the row
        names of each array) and ``"space"``.

    Raises:
        ProbeError: If the file is missing or not a directions file.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"no directions file at {path}; write one with result.save(out_dir).")
    out: dict[tuple[str, int], np.ndarray] = {}
    with safe_open(str(path), framework="numpy") as handle:
        raw_meta = handle.metadata() or {}
        for key in handle.keys():
            site, _, layer = key.rpartition(".")
            if not site or not layer.lstrip("-").isdigit():
                raise ProbeError(
                    f"{path} holds key {key!r}, not 'site.layer'; it is not a directions file."
                )
            out[(site, int(layer))] = handle.get_tensor(key)
    meta = {}
    for k, v in raw_meta.items():
        try:
            meta[k] = json.loads(v)
        except ValueError:
            meta[k] = v
    return out, meta


@dataclass(frozen=True, eq=False)
class EmotionProbeResult:
    """Cross-validated emotion-probe scores per (site, layer), plus the probe directions.

    Attributes:
        table: One row per (site, layer), columns :data:`EMOTION_PROBE_COLUMNS`: accuracy
            mean and sample sd over folds, macro-F1 (mean over folds), the majority-class
            baseline and the shuffled-label control (mean over folds), their difference
            ``selectivity = accuracy_mean - shuffled_control``, and ``n`` rows.
        folds: One row per (site, layer, fold): the per-fold numbers behind ``table``.
        label_names: Classes, in the row order of each direction matrix.
        directions: ``{(site, layer): (n_labels, d_model)}`` weights of the probe fitted on all
            rows, in the raw (unstandardised) activation space: ``logits = x @ W.T + b``.
            Empty for ``model="mlp"`` or ``fit_directions=False``.
        intercepts: ``{(site, layer): (n_labels,)}`` raw-space intercepts ``b``.
        position: Token position probed.
        params: Settings (model, C, n_folds, seed, ...) and timings.
        manifest: The activation store's manifest.
    """

    table: pd.DataFrame
    folds: pd.DataFrame
    label_names: tuple[str, ...]
    directions: dict[tuple[str, int], np.ndarray] = field(repr=False)
    intercepts: dict[tuple[str, int], np.ndarray] = field(repr=False)
    position: int = -1
    params: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)

    def stable_layer(self, site: str = "resid_post", fraction: float = 0.95) -> int:
        """The first layer whose mean accuracy reaches ``fraction`` of the site's best.

        Tak et al. describe the emotion signal as stabilising in the middle layers; this is
        that layer, used e.g. as the first layer the alignment figure shows.

        Args:
            site: Probed site.
            fraction: Share of the best mean accuracy to reach, in ``(0, 1]``.

        Returns:
            The layer index.

        Raises:
            ValueError: ``site`` was not probed or ``fraction`` is out of range.
        """
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
        rows = self.table[self.table["site"] == site].sort_values("layer")
        if rows.empty:
            raise ValueError(
                f"site {site!r} was not probed; probed sites: {sorted(set(self.table['site']))}."
            )
        best = float(rows["accuracy_mean"].max())
        reached = rows[rows["accuracy_mean"] >= fraction * best]
        return int(reached["layer"].iloc[0])

    def to_frame(self) -> pd.DataFrame:
        """A copy of :attr:`table`."""
        return self.table.copy()

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write the results to ``out_dir``.

        Files: ``probe_emotions.csv`` (:attr:`table`), ``probe_emotions_folds.csv``,
        ``probe_emotions.json`` (label names, params, manifest) and, when there are
        directions, ``probe_emotion_directions.safetensors`` and
        ``probe_emotion_intercepts.safetensors`` (keys ``"site.layer"``, float32, raw
        activation space; read them with :func:`load_directions`).

        Returns:
            The written paths.
        """
        out = Path(out_dir)
        paths = [
            write_text_atomic(out / "probe_emotions.csv", self.table.to_csv(index=False)),
            write_text_atomic(out / "probe_emotions_folds.csv", self.folds.to_csv(index=False)),
        ]
        meta = {"names": list(self.label_names), "position": self.position}
        if self.directions:
            space = "raw activations: logits = x @ W.T + b"
            paths.append(
                write_bytes_atomic(
                    out / "probe_emotion_directions.safetensors",
                    _directions_bytes(self.directions, {**meta, "space": space}),
                )
            )
            paths.append(
                write_bytes_atomic(
                    out / "probe_emotion_intercepts.safetensors",
                    _directions_bytes(self.intercepts, {**meta, "space": space}),
                )
            )
        info = {
            "label_names": list(self.label_names),
            "position": self.position,
            "params": self.params,
            "manifest": self.manifest,
        }
        paths.append(write_json_atomic(out / "probe_emotions.json", info))
        return paths

    def figure(self, title: str | None = None) -> go.Figure:
        """Grouped bars of CV accuracy per layer, one bar per site (MHSA, FFN, hidden).

        Error bars are the sd over folds; the shuffled-label control of each site is a short
        dark tick on its bar, and the majority-class baseline a dashed line.
        """
        from lens_emotion.viz import apply_style

        table = self.table
        layers = sorted(table["layer"].unique())
        fig = go.Figure()
        for i, site in enumerate(_ordered_sites(list(table["site"].unique()))):
            rows = table[table["site"] == site].set_index("layer").reindex(layers)
            name = site_label(site)
            fig.add_trace(
                go.Bar(
                    x=layers,
                    y=rows["accuracy_mean"],
                    error_y={"type": "data", "array": rows["accuracy_sd"], "thickness": 1},
                    name=name,
                    marker_color=_site_color(site, i),
                    offsetgroup=site,
                    legendgroup=site,
                    customdata=np.stack(
                        [rows["accuracy_sd"], rows["macro_f1"], rows["selectivity"]], axis=1
                    ),
                    hovertemplate=(
                        f"{name}<br>layer %{{x}}<br>accuracy %{{y:.3f}} ± %{{customdata[0]:.3f}}"
                        "<br>macro-F1 %{customdata[1]:.3f}<br>selectivity %{customdata[2]:.3f}"
                        "<extra></extra>"
                    ),
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=layers,
                    y=rows["shuffled_control"],
                    mode="markers",
                    name=f"shuffled control, {name}",
                    marker={
                        "symbol": "line-ew-open",
                        "size": 10,
                        "line": {"width": 2.5, "color": "#222222"},
                        "color": "#222222",
                    },
                    offsetgroup=site,
                    legendgroup=site,
                    showlegend=i == 0,
                    hovertemplate=(
                        f"{name}<br>layer %{{x}}<br>shuffled-label control %{{y:.3f}}"
                        "<extra></extra>"
                    ),
                )
            )
        if len(fig.data) > 1:
            fig.data[1].name = "shuffled-label control"
        majority = table.groupby("layer")["majority_baseline"].mean().reindex(layers)
        fig.add_trace(
            go.Scatter(
                x=layers,
                y=majority,
                mode="lines",
                name="majority baseline",
                line={"color": "#555555", "dash": "dash", "width": 1.5},
                hovertemplate="majority baseline %{y:.3f}<extra></extra>",
            )
        )
        n = int(table["n"].max()) if len(table) else 0
        default_title = (
            f"Emotion probe accuracy by layer ({self.params.get('n_folds', '?')}-fold CV, "
            f"n={n}, position {self.position})"
        )
        apply_style(fig, title=title or default_title)
        fig.update_layout(
            barmode="group",
            scattermode="group",
            bargap=0.15,
            height=520,
            margin={"t": 130},
            legend={"x": 0.0, "xanchor": "left", "y": 1.02, "yanchor": "bottom"},
        )
        fig.update_xaxes(title_text="layer", tickmode="array", tickvals=layers)
        fig.update_yaxes(title_text="accuracy", range=[0, 1.02])
        return fig

    def heatmap(self, metric: str = "accuracy_mean", title: str | None = None) -> go.Figure:
        """Sites x layers heatmap of one table column (default: accuracy)."""
        from lens_emotion.viz import PlotInputError, apply_style

        if metric not in self.table.columns or metric in ("site", "layer"):
            raise PlotInputError(
                f"metric {metric!r} is not a numeric column of the probe table; use one of "
                f"{list(EMOTION_PROBE_COLUMNS[2:])}."
            )
        return _site_layer_heatmap(self.table, metric, title, apply_style)


def _site_layer_heatmap(table: pd.DataFrame, metric: str, title: str | None, style: Any) -> Any:
    sites = _ordered_sites(list(table["site"].unique()))
    grid = table.pivot(index="site", columns="layer", values=metric).reindex(sites)
    bounded = metric in ("accuracy_mean", "macro_f1", "majority_baseline", "shuffled_control")
    fig = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=[str(c) for c in grid.columns],
            y=[site_label(s) for s in sites],
            colorscale="Viridis",
            zmin=0.0 if bounded else None,
            zmax=1.0 if bounded else None,
            text=np.vectorize(lambda v: f"{v:.2f}")(grid.to_numpy()),
            texttemplate="%{text}",
            textfont={"size": 9},
            colorbar={"title": {"text": metric}},
            hovertemplate="%{y}<br>layer %{x}<br>" + metric + " %{z:.3f}<extra></extra>",
        )
    )
    style(fig, title=title or f"{metric} by site and layer")
    fig.update_layout(height=160 + 60 * len(sites))
    fig.update_xaxes(title_text="layer", type="category", showgrid=False)
    fig.update_yaxes(type="category", autorange="reversed", showgrid=False)
    return fig


def probe_emotions(
    store: SupportsActivations,
    labels: Sequence[str],
    label_names: Sequence[str] | None = None,
    sites: Sequence[str] | str | None = None,
    layers: Sequence[int] | int | None = None,
    position: int = -1,
    n_folds: int = 5,
    seed: int = 0,
    C: float = 1.0,
    mask: Bool[np.ndarray, " n"] | None = None,
    model: Literal["logreg", "mlp"] = "logreg",
    progress: bool = True,
    *,
    control: bool = True,
    fit_directions: bool = True,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = 1e-5,
    num_threads: int | None = None,
    mlp_options: dict[str, Any] | None = None,
) -> EmotionProbeResult:
    """Cross-validated emotion probes for every (site, layer), with baselines and directions.

    Per (site, layer): stratified ``n_folds``-fold CV (folds fixed by ``seed``, shared by all
    sites and layers). In each fold the features are standardised with the training rows'
    mean and sd only, and an L2 multinomial logistic regression with class-balanced weights
    (scikit-learn's objective with ``C``) is trained and scored on the test fold. Controls:
    the majority class of the training fold, and the same probe trained on the training
    labels permuted (seeded) and scored against the true test labels. Then one probe on all
    selected rows gives the raw-space directions. Every fit is scikit-learn's lbfgs
    ``LogisticRegression`` (see the module docstring for the objective and what
    ``converged`` means).

    Args:
        store: Activation store (:class:`SupportsActivations`).
        labels: One emotion label per store row, in ``store.ids`` order.
        label_names: Label order of the result; defaults to the sorted labels. Labels without
            selected rows are left out of the result (``params["absent_labels"]``).
        sites: Sites to probe; default all stored sites.
        layers: Layers to probe; default all stored layers.
        position: Token position (negative offset from the last prompt token).
        n_folds: CV folds; every class needs at least this many rows.
        seed: Seed of folds, label permutations and MLP initialisation.
        C: Inverse L2 strength (scikit-learn's ``C``).
        mask: Boolean per store row: rows to use (e.g. the paper's agreeing subset).
        model: ``"logreg"`` (linear probe, gives directions) or ``"mlp"`` (one hidden layer
            of 256 ReLU units, AdamW, early stopping; no directions; much slower).
        progress: Show a progress bar over (site, layer).
        control: Also train the shuffled-label control (``shuffled_control`` is NaN without).
        fit_directions: Fit the all-rows probe for :attr:`EmotionProbeResult.directions`.
        max_iter: L-BFGS iteration limit per (site, layer).
        tol: Gradient tolerance: a fit has *converged* when the largest gradient entry of its
            objective divided by the number of training rows is at most ``tol`` (scikit-learn's
            ``tol`` of ``LogisticRegression(solver="lbfgs")`` is the same quantity, default
            1e-4). Fits that stop earlier (iteration limit, or L-BFGS stalls) are marked
            ``converged=False`` in the table, and one :class:`ProbeConvergenceWarning` reports
            what refitting the worst of them at 3x ``max_iter`` changes
            (``params["convergence_check"]``).
        num_threads: Torch threads during the fits (``None``: leave torch's setting). Use 1
            when other processes keep the CPU busy.
        mlp_options: Extra keyword arguments of :func:`lens_emotion.probe_models.fit_mlp`.

    Returns:
        The :class:`EmotionProbeResult`.

    Raises:
        ProbeError: Wrong number of labels, unknown labels, sites, layers or positions, a
            class with fewer rows than ``n_folds``, bad ``mask`` or options.
    """
    n_folds = _check_folds(n_folds)
    _check_model_args(model, C)
    position = _check_position(position, store)
    site_list = _choose("site", sites, tuple(store.sites))
    layer_list = _choose("layer", layers, tuple(store.layers))
    setup = _label_setup(store, labels, label_names, mask, n_folds)
    plan = _cv_plan(setup.y, n_folds, seed)
    rows, fold_rows = [], []
    directions: dict[tuple[str, int], np.ndarray] = {}
    intercepts: dict[tuple[str, int], np.ndarray] = {}
    started = time.perf_counter()
    pairs = [(s, layer) for s in site_list for layer in layer_list]
    with fit_threads(num_threads):
        for site, layer in tqdm(pairs, desc="probe emotions", disable=not progress, unit="layer"):
            scores = _probe_one(
                store, site, layer, position, setup, plan, model, C, control, fit_directions,
                max_iter, tol, seed, mlp_options or {},
            )  # fmt: skip
            rows.append(
                {"site": site, "layer": int(layer), **_summary_row(scores, plan, len(setup.y))}
            )
            fold_rows += [
                {"site": site, "layer": int(layer), **r} for r in _fold_rows(scores, plan)
            ]
            if scores.coef is not None:
                directions[(site, int(layer))] = scores.coef
                intercepts[(site, int(layer))] = scores.intercept
        check = _convergence_cost(
            rows,
            lambda r, n_iter: _probe_one(
                store,
                r["site"],
                r["layer"],
                position,
                setup,
                plan,
                model,
                C,
                control,
                False,
                n_iter,
                tol,
                seed,
                mlp_options or {},
            ),  # fmt: skip
            lambda r: f"{r['site']}.{r['layer']}",
            max_iter,
            tol,
        )
    params = {
        "model": model,
        "C": C,
        "n_folds": n_folds,
        "seed": seed,
        "position": position,
        "sites": site_list,
        "layers": [int(v) for v in layer_list],
        "n_rows": int(len(setup.y)),
        "masked": mask is not None,
        "control": control,
        "class_counts": dict(zip(setup.label_names, np.bincount(setup.y).tolist(), strict=True)),
        "absent_labels": list(setup.absent),
        "max_iter": max_iter,
        "tol": tol,
        "unconverged": [f"{r['site']}.{r['layer']}" for r in rows if not r["converged"]],
        "convergence_check": check,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return EmotionProbeResult(
        table=pd.DataFrame(rows, columns=list(EMOTION_PROBE_COLUMNS)),
        folds=pd.DataFrame(fold_rows),
        label_names=setup.label_names,
        directions=directions,
        intercepts=intercepts,
        position=position,
        params=params,
        manifest=dict(store.manifest),
    )


def _probe_one(
    store: SupportsActivations,
    site: str,
    layer: int,
    position: int,
    setup: _LabelSetup,
    plan: _CVPlan,
    model: str,
    C: float,
    control: bool,
    fit_directions: bool,
    max_iter: int,
    tol: float,
    seed: int,
    mlp_options: dict[str, Any],
) -> _Scores:
    x = _activations(store, site, layer, position, setup.rows)
    k = len(setup.label_names)
    if model == "mlp":
        return _mlp_scores(x, setup.y, k, plan, control=control, seed=seed, mlp_options=mlp_options)
    return _logreg_scores(
        x,
        setup.y,
        k,
        plan,
        C=C,
        control=control,
        fit_direction=fit_directions,
        max_iter=max_iter,
        tol=tol,
    )


#: Columns of :func:`evaluate_emotion_probes`' table (and ``probe_emotions_eval.csv``).
EMOTION_EVAL_COLUMNS: tuple[str, ...] = (
    "site",
    "layer",
    "eval_accuracy",
    "eval_macro_f1",
    "eval_majority_baseline",
    "n_eval",
)


def evaluate_emotion_probes(
    result: EmotionProbeResult,
    store: SupportsActivations,
    labels: Sequence[str],
    sites: Sequence[str] | str | None = None,
    layers: Sequence[int] | int | None = None,
) -> pd.DataFrame:
    """Score the all-rows probes of ``result`` on another dataset's activations.

    The probes fitted on *every* training row (:attr:`EmotionProbeResult.directions`, raw
    activation space) predict each evaluation row; nothing is refitted or rescaled on the
    evaluation rows. ``eval_majority_baseline`` is the accuracy of always predicting the
    training rows' most frequent class.

    Args:
        result: A logistic-regression :class:`EmotionProbeResult` with directions.
        store: Activations of the evaluation rows, at ``result.position``, extracted with the
            same model, prompt template and sites.
        labels: One label per evaluation store row; every label must be one of
            ``result.label_names``.
        sites: Sites to score (default: every probed site).
        layers: Layers to score (default: every probed layer).

    Returns:
        One row per (site, layer), columns :data:`EMOTION_EVAL_COLUMNS`.

    Raises:
        ProbeError: No directions in ``result``, a label count that does not match the store,
            labels the probes were not trained on, or sites/layers not in both.
    """
    if not result.directions:
        raise ProbeError(
            "these probes have no directions to evaluate; fit them with model='logreg' and "
            "fit_directions=True."
        )
    labels = [str(lab) for lab in labels]
    if len(labels) != len(store.ids):
        raise ProbeError(
            f"got {len(labels)} evaluation labels for {len(store.ids)} stored rows; pass one "
            "label per evaluation store row, in store.ids order."
        )
    index = {name: i for i, name in enumerate(result.label_names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ProbeError(
            f"evaluation labels {_preview(unknown)} are not among the probes' classes "
            f"{list(result.label_names)}; drop those rows from the evaluation data."
        )
    y = np.array([index[lab] for lab in labels], dtype=np.int64)
    probed_sites = sorted({site for site, _ in result.directions})
    probed_layers = sorted({layer for _, layer in result.directions})
    site_list = _choose("site", sites, tuple(s for s in probed_sites if s in store.sites))
    layer_list = _choose("layer", layers, tuple(x for x in probed_layers if x in store.layers))
    counts = result.params.get("class_counts") or {}
    top = max(result.label_names, key=lambda name: counts.get(name, 0)) if counts else None
    majority = float(np.mean(y == index[top])) if top is not None else float("nan")
    rows = []
    everything = np.arange(len(labels))
    for site in site_list:
        for layer in layer_list:
            coef = result.directions[(site, int(layer))]
            bias = result.intercepts[(site, int(layer))]
            x = _activations(store, site, layer, result.position, everything)
            pred = (x.astype(np.float64) @ coef.T.astype(np.float64) + bias).argmax(axis=1)
            acc, f1 = _fold_metrics(y, pred, len(result.label_names))
            rows.append(
                {
                    "site": site,
                    "layer": int(layer),
                    "eval_accuracy": acc,
                    "eval_macro_f1": f1,
                    "eval_majority_baseline": majority,
                    "n_eval": len(y),
                }
            )
    return pd.DataFrame(rows, columns=list(EMOTION_EVAL_COLUMNS))


# --------------------------------------------------------------------------------------------
# Last-k-token positions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PositionProbeResult:
    """Emotion-probe accuracy per token position and layer, at one site.

    Attributes:
        table: One row per (position, layer): ``site``, ``position`` and the
            :data:`EMOTION_PROBE_COLUMNS` numbers.
        label_names: Classes probed.
        params: Settings and timings.
        manifest: The activation store's manifest.
    """

    table: pd.DataFrame
    label_names: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_frame(self) -> pd.DataFrame:
        """A copy of :attr:`table`."""
        return self.table.copy()

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``probe_positions.csv`` and ``probe_positions.json`` (params, manifest)."""
        out = Path(out_dir)
        info = {"label_names": list(self.label_names), "params": self.params}
        info["manifest"] = self.manifest
        return [
            write_text_atomic(out / "probe_positions.csv", self.table.to_csv(index=False)),
            write_json_atomic(out / "probe_positions.json", info),
        ]

    def figure(self, title: str | None = None) -> go.Figure:
        """Accuracy vs layer, one line per token position (error bars: sd over folds)."""
        from plotly.colors import sample_colorscale

        from lens_emotion.viz import apply_style

        table = self.table
        positions = sorted(table["position"].unique())
        colors = sample_colorscale("Viridis", np.linspace(0.0, 0.85, max(len(positions), 2)))
        fig = go.Figure()
        for i, pos in enumerate(positions):
            rows = table[table["position"] == pos].sort_values("layer")
            name = "last token (-1)" if pos == -1 else f"position {pos}"
            fig.add_trace(
                go.Scatter(
                    x=rows["layer"],
                    y=rows["accuracy_mean"],
                    error_y={"type": "data", "array": rows["accuracy_sd"], "thickness": 1},
                    mode="lines+markers",
                    name=name,
                    line={"color": colors[i], "width": 3 if pos == -1 else 1.8},
                    hovertemplate=f"{name}<br>layer %{{x}}<br>accuracy %{{y:.3f}}<extra></extra>",
                )
            )
        majority = table.groupby("layer")["majority_baseline"].mean().sort_index()
        fig.add_trace(
            go.Scatter(
                x=majority.index,
                y=majority.to_numpy(),
                mode="lines",
                name="majority baseline",
                line={"color": "#555555", "dash": "dash", "width": 1.5},
            )
        )
        site = self.params.get("site", "")
        apply_style(
            fig, title=title or f"Emotion probe accuracy by token position, {site_label(site)}"
        )
        fig.update_layout(height=460)
        fig.update_xaxes(title_text="layer", tickmode="array", tickvals=sorted(majority.index))
        fig.update_yaxes(title_text="accuracy", range=[0, 1.02])
        return fig


def probe_positions(
    store: SupportsActivations,
    labels: Sequence[str],
    site: str = "resid_post",
    layers: Sequence[int] | int | None = None,
    positions: Sequence[int] | int | None = None,
    label_names: Sequence[str] | None = None,
    n_folds: int = 5,
    seed: int = 0,
    C: float = 1.0,
    mask: Bool[np.ndarray, " n"] | None = None,
    progress: bool = True,
    *,
    control: bool = True,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = 1e-5,
    num_threads: int | None = None,
) -> PositionProbeResult:
    """Last-k-token analysis: linear emotion-probe accuracy at each stored position and layer.

    Same CV, controls and settings as :func:`probe_emotions` (same folds at every position),
    without the all-rows direction fits.

    Args:
        store: Activation store.
        labels: One label per store row.
        site: Site to probe.
        layers: Layers; default all stored.
        positions: Positions (e.g. ``range(-5, 0)``); default all stored.
        label_names: Label order; default sorted labels.
        n_folds: CV folds.
        seed: Seed of folds and permutations.
        C: Inverse L2 strength.
        mask: Rows to use.
        progress: Show a progress bar.
        control: Train the shuffled-label control too.
        max_iter: L-BFGS iteration limit.
        tol: L-BFGS gradient tolerance (see :func:`probe_emotions`).
        num_threads: Torch threads during the fits (``None``: leave torch's setting).

    Returns:
        The :class:`PositionProbeResult`.

    Raises:
        ProbeError: As :func:`probe_emotions`.
    """
    n_folds = _check_folds(n_folds)
    _check_model_args("logreg", C)
    (site,) = _choose("site", [site], tuple(store.sites))
    layer_list = _choose("layer", layers, tuple(store.layers))
    position_list = _choose("position", positions, tuple(store.positions))
    setup = _label_setup(store, labels, label_names, mask, n_folds)
    plan = _cv_plan(setup.y, n_folds, seed)
    rows = []
    started = time.perf_counter()
    pairs = [(p, layer) for p in position_list for layer in layer_list]
    with fit_threads(num_threads):
        for pos, layer in tqdm(pairs, desc="probe positions", disable=not progress, unit="layer"):
            scores = _probe_one(
                store, site, layer, pos, setup, plan, "logreg", C, control, False, max_iter, tol,
                seed, {},
            )  # fmt: skip
            summary = _summary_row(scores, plan, len(setup.y))
            rows.append({"site": site, "position": int(pos), "layer": int(layer), **summary})
        check = _convergence_cost(
            rows,
            lambda r, n_iter: _probe_one(
                store,
                site,
                r["layer"],
                r["position"],
                setup,
                plan,
                "logreg",
                C,
                control,
                False,
                n_iter,
                tol,
                seed,
                {},
            ),  # fmt: skip
            lambda r: f"{site}.{r['layer']}@{r['position']}",
            max_iter,
            tol,
        )
    params = {
        "site": site,
        "positions": [int(p) for p in position_list],
        "layers": [int(v) for v in layer_list],
        "C": C,
        "n_folds": n_folds,
        "seed": seed,
        "n_rows": int(len(setup.y)),
        "control": control,
        "max_iter": max_iter,
        "tol": tol,
        "unconverged": [f"{site}.{r['layer']}@{r['position']}" for r in rows if not r["converged"]],
        "convergence_check": check,
        "seconds": round(time.perf_counter() - started, 3),
    }
    columns = ["site", "position", *EMOTION_PROBE_COLUMNS[1:]]
    return PositionProbeResult(
        table=pd.DataFrame(rows, columns=columns),
        label_names=setup.label_names,
        params=params,
        manifest=dict(store.manifest),
    )


# --------------------------------------------------------------------------------------------
# Appraisal probes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AppraisalProbeResult:
    """Cross-validated ridge probes of appraisal ratings per (site, layer).

    Attributes:
        table: One row per (site, layer, appraisal), columns :data:`APPRAISAL_PROBE_COLUMNS`:
            R² on the test folds (mean and sample sd over folds).
        appraisal_names: Targets, in the row order of each direction matrix.
        directions: ``{(site, layer): (n_appraisals, d_model)}`` ridge weights fitted on all
            rows, in raw activation space: ``prediction = x @ W.T + b``.
        intercepts: ``{(site, layer): (n_appraisals,)}`` raw-space intercepts ``b``.
        alphas: ``{(site, layer): (n_appraisals,)}`` penalty used by the all-rows fit.
        position: Token position probed.
        params: Settings and timings.
        manifest: The activation store's manifest.
    """

    table: pd.DataFrame
    appraisal_names: tuple[str, ...]
    directions: dict[tuple[str, int], np.ndarray] = field(repr=False)
    intercepts: dict[tuple[str, int], np.ndarray] = field(repr=False)
    alphas: dict[tuple[str, int], np.ndarray] = field(repr=False)
    position: int = -1
    params: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_frame(self) -> pd.DataFrame:
        """A copy of :attr:`table`."""
        return self.table.copy()

    def predict(self, site: str, layer: int, x: Float[np.ndarray, "n d"]) -> np.ndarray:
        """Appraisal predictions ``(n, n_appraisals)`` of raw activations at a (site, layer)."""
        key = (site, int(layer))
        if key not in self.directions:
            raise ProbeError(
                f"no appraisal probe for {site} layer {layer}; fitted: "
                f"{_preview(sorted(self.directions))}."
            )
        return np.asarray(x, dtype=np.float64) @ self.directions[key].T + self.intercepts[key]

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``probe_appraisals.csv``, ``probe_appraisals.json`` and the directions.

        Directions and intercepts go to ``probe_appraisal_directions.safetensors`` and
        ``probe_appraisal_intercepts.safetensors`` (keys ``"site.layer"``, float32, raw space).

        Returns:
            The written paths.
        """
        out = Path(out_dir)
        meta = {
            "names": list(self.appraisal_names),
            "position": self.position,
            "space": "raw activations: prediction = x @ W.T + b",
        }
        paths = [write_text_atomic(out / "probe_appraisals.csv", self.table.to_csv(index=False))]
        if self.directions:
            paths.append(
                write_bytes_atomic(
                    out / "probe_appraisal_directions.safetensors",
                    _directions_bytes(self.directions, meta),
                )
            )
            paths.append(
                write_bytes_atomic(
                    out / "probe_appraisal_intercepts.safetensors",
                    _directions_bytes(self.intercepts, meta),
                )
            )
        info = {
            "appraisal_names": list(self.appraisal_names),
            "position": self.position,
            "alphas": {f"{s}.{layer}": a.tolist() for (s, layer), a in self.alphas.items()},
            "params": self.params,
            "manifest": self.manifest,
        }
        paths.append(write_json_atomic(out / "probe_appraisals.json", info))
        return paths

    def figure(
        self,
        site: str = "resid_post",
        highlight: Sequence[str] = ("pleasantness",),
        title: str | None = None,
    ) -> go.Figure:
        """Cross-validated R² vs layer at one site, one line per appraisal.

        Appraisals in ``highlight`` are drawn thick and dark; the others thin, in a
        qualitative palette. Hover shows R² ± sd.
        """
        from plotly.colors import qualitative

        from lens_emotion.viz import PlotInputError, apply_style

        table = self.table[self.table["site"] == site]
        if table.empty:
            raise PlotInputError(
                f"no appraisal probes at site {site!r}; probed sites: "
                f"{sorted(self.table['site'].unique())}."
            )
        palette = qualitative.Dark24
        fig = go.Figure()
        for i, name in enumerate(self.appraisal_names):
            rows = table[table["appraisal"] == name].sort_values("layer")
            strong = name in highlight
            fig.add_trace(
                go.Scatter(
                    x=rows["layer"],
                    y=rows["r2_mean"],
                    mode="lines+markers" if strong else "lines",
                    name=name,
                    line={
                        "color": "#111111" if strong else palette[i % len(palette)],
                        "width": 4 if strong else 1.4,
                    },
                    opacity=1.0 if strong else 0.75,
                    customdata=rows["r2_sd"],
                    hovertemplate=(
                        f"{name}<br>layer %{{x}}<br>R² %{{y:.3f}} ± %{{customdata:.3f}}"
                        "<extra></extra>"
                    ),
                )
            )
        apply_style(fig, title=title or f"Appraisal probes: cross-validated R², {site_label(site)}")
        fig.update_layout(
            height=520,
            legend={"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1.0, "yanchor": "top"},
        )
        fig.update_xaxes(
            title_text="layer", tickmode="array", tickvals=sorted(table["layer"].unique())
        )
        fig.update_yaxes(title_text="R² (test folds)", zeroline=True, zerolinecolor="#999999")
        return fig


def _alpha_list(alpha: float | Sequence[float]) -> list[float]:
    values = [alpha] if isinstance(alpha, int | float) else list(alpha)
    if not values or not all(
        isinstance(a, int | float) and math.isfinite(a) and a > 0 for a in values
    ):
        raise ProbeError(
            f"alpha must be a positive number or a non-empty list of them, got {alpha!r}; "
            "e.g. alpha=1.0 or alpha=[0.1, 1, 10, 100, 1000]."
        )
    return [float(a) for a in values]


def _r2(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-column R² (1 - SSE / SST); NaN where the test targets are constant."""
    sse = ((y_true - y_pred) ** 2).sum(axis=0)
    sst = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.nan)


def _ridge_standardized(
    x: np.ndarray, y: np.ndarray, rows: np.ndarray | None, alphas: list[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardise on ``rows``, fit ridge; return coef_std, intercept_std, alpha, mean, scale."""
    mean, scale = fit_standardizer(x, rows)
    sub = x if rows is None else x[rows]
    ys = y if rows is None else y[rows]
    sol = ridge_fit((sub - mean) / scale, ys, alphas)
    return sol.coef, sol.intercept, sol.alpha, mean, scale


def probe_appraisals(
    store: SupportsActivations,
    appraisals: Float[np.ndarray, "n n_appraisals"],
    appraisal_names: Sequence[str],
    sites: Sequence[str] | str | None = None,
    layers: Sequence[int] | int | None = None,
    position: int = -1,
    alpha: float | Sequence[float] = 1.0,
    n_folds: int = 5,
    seed: int = 0,
    mask: Bool[np.ndarray, " n"] | None = None,
    progress: bool = True,
    *,
    num_threads: int | None = None,
) -> AppraisalProbeResult:
    """Cross-validated ridge probes of all appraisal ratings per (site, layer).

    Per (site, layer) and fold (``KFold`` shuffled with ``seed``, the same folds everywhere),
    features are standardised on the training rows and one closed-form ridge solve
    (:func:`lens_emotion.probe_models.ridge_fit`) fits every appraisal at once; R² is taken
    on the test fold. A list of ``alpha`` values picks, per appraisal and training fold, the
    penalty with the least leave-one-out error (RidgeCV-style, computed exactly from one
    eigendecomposition). A final fit on all rows gives raw-space directions.

    Args:
        store: Activation store.
        appraisals: Ratings ``(n_store_rows, n_appraisals)`` in ``store.ids`` order.
        appraisal_names: One name per column.
        sites: Sites; default all stored.
        layers: Layers; default all stored.
        position: Token position.
        alpha: Ridge penalty on standardised features, or a list to choose from per target.
        n_folds: CV folds.
        seed: Seed of the folds.
        mask: Rows to use.
        progress: Show a progress bar.
        num_threads: Torch threads during the fits (``None``: leave torch's setting).

    Returns:
        The :class:`AppraisalProbeResult`.

    Raises:
        ProbeError: Shape mismatch, NaN/inf ratings in selected rows, bad alpha, too few rows,
            unknown sites/layers/positions.
    """
    n_folds = _check_folds(n_folds)
    alphas = _alpha_list(alpha)
    position = _check_position(position, store)
    site_list = _choose("site", sites, tuple(store.sites))
    layer_list = _choose("layer", layers, tuple(store.layers))
    n = len(store.ids)
    names = tuple(str(a) for a in appraisal_names)
    ratings = np.asarray(appraisals, dtype=np.float64)
    if ratings.ndim == 1:
        ratings = ratings[:, None]
    if ratings.ndim != 2 or ratings.shape != (n, len(names)):
        raise ProbeError(
            f"appraisals has shape {np.shape(appraisals)}, expected ({n}, {len(names)}) "
            "(store rows x appraisal_names); pass dataset.appraisals with "
            "dataset.appraisal_names, in store.ids order."
        )
    if len(set(names)) != len(names):
        raise ProbeError(f"appraisal_names repeat a name: {list(names)}; name each column once.")
    keep = _row_mask(mask, n)
    bad_rows = keep & ~np.isfinite(ratings).all(axis=1)
    if bad_rows.any():
        raise ProbeError(
            f"appraisals hold NaN or inf in {int(bad_rows.sum())} selected rows; drop them "
            "with mask=np.isfinite(appraisals).all(axis=1) (combined with your own mask)."
        )
    rows = np.flatnonzero(keep)
    if len(rows) < 2 * n_folds:
        raise ProbeError(
            f"only {len(rows)} rows selected for {n_folds}-fold CV; need at least "
            f"{2 * n_folds}: use fewer folds or more rows."
        )
    y = ratings[rows]
    folds = list(KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(rows))
    records: list[dict[str, Any]] = []
    directions: dict[tuple[str, int], np.ndarray] = {}
    intercepts: dict[tuple[str, int], np.ndarray] = {}
    chosen: dict[tuple[str, int], np.ndarray] = {}
    started = time.perf_counter()
    pairs = [(s, layer) for s in site_list for layer in layer_list]
    with fit_threads(num_threads):
        for site, layer in tqdm(pairs, desc="probe appraisals", disable=not progress, unit="layer"):
            x = _activations(store, site, layer, position, rows).astype(np.float64)
            scores = []
            for tr, te in folds:
                coef, icpt, _, mean, scale = _ridge_standardized(x, y, tr, alphas)
                pred = ((x[te] - mean) / scale) @ coef.T + icpt
                scores.append(_r2(y[te], pred))
            r2 = np.stack(scores)  # (folds, A)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                r2_mean = np.nanmean(r2, axis=0)
                r2_sd = np.nanstd(r2, axis=0, ddof=1)
            for j, name in enumerate(names):
                records.append(
                    {
                        "site": site,
                        "layer": int(layer),
                        "appraisal": name,
                        "r2_mean": float(r2_mean[j]),
                        "r2_sd": float(r2_sd[j]),
                    }
                )
            coef, icpt, used_alpha, mean, scale = _ridge_standardized(x, y, None, alphas)
            raw_coef, raw_icpt = to_raw_space(coef, icpt, mean, scale)
            key = (site, int(layer))
            directions[key], intercepts[key], chosen[key] = raw_coef, raw_icpt, used_alpha
    params = {
        "alpha": alphas if len(alphas) > 1 else alphas[0],
        "n_folds": n_folds,
        "seed": seed,
        "position": position,
        "sites": site_list,
        "layers": [int(v) for v in layer_list],
        "n_rows": int(len(rows)),
        "masked": mask is not None,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return AppraisalProbeResult(
        table=pd.DataFrame(records, columns=list(APPRAISAL_PROBE_COLUMNS)),
        appraisal_names=names,
        directions=directions,
        intercepts=intercepts,
        alphas=chosen,
        position=position,
        params=params,
        manifest=dict(store.manifest),
    )


# --------------------------------------------------------------------------------------------
# Alignment of emotion and appraisal directions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AlignmentResult:
    """Cosine similarity of emotion and appraisal probe directions, per layer.

    Attributes:
        table: Long format, columns :data:`ALIGNMENT_COLUMNS`.
        emotion_names: Emotions (heatmap rows).
        appraisal_names: Appraisals (heatmap columns).
        site: The site compared.
        layers: Layers compared.
    """

    table: pd.DataFrame
    emotion_names: tuple[str, ...]
    appraisal_names: tuple[str, ...]
    site: str
    layers: tuple[int, ...]

    def to_frame(self) -> pd.DataFrame:
        """A copy of :attr:`table`."""
        return self.table.copy()

    def matrix(self, layer: int) -> pd.DataFrame:
        """Emotions x appraisals cosine matrix at one layer."""
        if int(layer) not in self.layers:
            raise ProbeError(
                f"layer {layer} was not compared; compared layers: {list(self.layers)}."
            )
        sub = self.table[self.table["layer"] == int(layer)]
        grid = sub.pivot(index="emotion", columns="appraisal", values="cosine")
        return grid.reindex(index=list(self.emotion_names), columns=list(self.appraisal_names))

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``alignment.csv``."""
        path = Path(out_dir) / "alignment.csv"
        return [write_text_atomic(path, self.table.to_csv(index=False))]

    def figure(
        self, layer: int | None = None, zmax: float | None = None, title: str | None = None
    ) -> go.Figure:
        """Emotions x appraisals cosine heatmap with a slider over layers.

        One heatmap per layer; the slider shows one at a time. The diverging colour scale is
        centred at 0 and symmetric, ``[-zmax, zmax]`` with ``zmax`` the largest absolute
        cosine over all layers unless given.

        Args:
            layer: Layer shown first; default the last compared layer.
            zmax: Colour-scale limit; default the largest ``|cosine|``.
            title: Figure title prefix.
        """
        from lens_emotion.viz import apply_style

        shown = self.layers[-1] if layer is None else int(layer)
        if shown not in self.layers:
            raise ProbeError(
                f"layer {layer} was not compared; compared layers: {list(self.layers)}."
            )
        limit = zmax if zmax is not None else float(np.nanmax(np.abs(self.table["cosine"])))
        limit = max(limit, 1e-6)
        head = title or f"Emotion vs appraisal probe directions, {site_label(self.site)}"
        fig = go.Figure()
        for layer_ in self.layers:
            grid = self.matrix(layer_)
            fig.add_trace(
                go.Heatmap(
                    z=grid.to_numpy(),
                    x=list(self.appraisal_names),
                    y=list(self.emotion_names),
                    zmin=-limit,
                    zmax=limit,
                    zmid=0.0,
                    colorscale="RdBu_r",
                    visible=layer_ == shown,
                    name=f"layer {layer_}",
                    colorbar={"title": {"text": "cosine"}},
                    xgap=1,
                    ygap=1,
                    hovertemplate=(
                        f"layer {layer_}<br>emotion %{{y}}<br>appraisal %{{x}}"
                        "<br>cosine %{z:.3f}<extra></extra>"
                    ),
                )
            )
        steps = []
        for i, layer_ in enumerate(self.layers):
            visible = [j == i for j in range(len(self.layers))]
            steps.append(
                {
                    "method": "update",
                    "label": str(layer_),
                    "args": [{"visible": visible}, {"title.text": f"{head}, layer {layer_}"}],
                }
            )
        apply_style(fig, title=f"{head}, layer {shown}")
        fig.update_layout(
            sliders=[
                {
                    "active": self.layers.index(shown),
                    "currentvalue": {"prefix": "layer "},
                    "pad": {"t": 170},
                    "steps": steps,
                }
            ],
            height=560 + 24 * len(self.emotion_names),
            width=max(760, 300 + 34 * len(self.appraisal_names)),
            margin={"b": 60},
        )
        fig.update_xaxes(title_text="appraisal", type="category", tickangle=-45, showgrid=False)
        fig.update_yaxes(
            title_text="emotion", type="category", autorange="reversed", showgrid=False
        )
        return fig


def _unit_rows(a: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return np.divide(a, norms, out=np.zeros_like(a), where=norms > 0)


def appraisal_alignment(
    emotion: EmotionProbeResult,
    appraisal: AppraisalProbeResult,
    site: str = "resid_post",
    layers: Sequence[int] | int | None = None,
) -> AlignmentResult:
    """Cosine similarity between each emotion direction and each appraisal direction.

    Both are raw-activation-space probe weights fitted on all rows, so they live in the same
    space. A zero direction gives cosine 0.

    Args:
        emotion: Result of :func:`probe_emotions` with directions (``model="logreg"``).
        appraisal: Result of :func:`probe_appraisals`.
        site: Site to compare.
        layers: Layers; default every layer both results have at ``site``.

    Returns:
        The :class:`AlignmentResult`.

    Raises:
        ProbeError: No directions, or the site/layers are missing from either result, or the
            two were fitted at different positions or widths.
    """
    if not emotion.directions:
        raise ProbeError(
            "the emotion result has no directions; run probe_emotions(..., model='logreg', "
            "fit_directions=True)."
        )
    e_layers = {layer for s, layer in emotion.directions if s == site}
    a_layers = {layer for s, layer in appraisal.directions if s == site}
    common = sorted(e_layers & a_layers)
    if layers is None:
        chosen = common
        if not chosen:
            raise ProbeError(
                f"no layer at site {site!r} has both emotion and appraisal directions "
                f"(emotion: {sorted(e_layers)}, appraisal: {sorted(a_layers)}); probe the "
                "same site and layers with both."
            )
    else:
        chosen = [int(v) for v in ([layers] if isinstance(layers, int) else layers)]
        missing = [v for v in chosen if v not in common]
        if missing:
            raise ProbeError(
                f"layers {missing} at site {site!r} lack emotion or appraisal directions; "
                f"both exist for layers {common}."
            )
    if emotion.position != appraisal.position:
        raise ProbeError(
            f"the emotion probes are at position {emotion.position} but the appraisal probes "
            f"at {appraisal.position}; probe both at the same position."
        )
    records = []
    for layer in chosen:
        e = np.asarray(emotion.directions[(site, layer)], dtype=np.float64)
        a = np.asarray(appraisal.directions[(site, layer)], dtype=np.float64)
        if e.shape[1] != a.shape[1]:
            raise ProbeError(
                f"emotion directions at {site} layer {layer} have width {e.shape[1]} but "
                f"appraisal directions {a.shape[1]}; they come from different models or sites."
            )
        cos = _unit_rows(e) @ _unit_rows(a).T
        for i, em in enumerate(emotion.label_names):
            for j, ap in enumerate(appraisal.appraisal_names):
                records.append(
                    {
                        "site": site,
                        "layer": layer,
                        "emotion": em,
                        "appraisal": ap,
                        "cosine": float(cos[i, j]),
                    }
                )
    return AlignmentResult(
        table=pd.DataFrame(records, columns=list(ALIGNMENT_COLUMNS)),
        emotion_names=tuple(emotion.label_names),
        appraisal_names=tuple(appraisal.appraisal_names),
        site=site,
        layers=tuple(chosen),
    )
