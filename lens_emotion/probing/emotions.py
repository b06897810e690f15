"""Emotion probes per layer and site, across datasets and token positions (Tak et al., step 1).

Given an activation store (:class:`~lens_emotion.probing.store.SupportsActivations`;
:mod:`lens_emotion.activations` writes one) and one emotion label per row:

* :func:`probe_emotions`: for each (site, layer), an L2 multinomial logistic-regression probe
  on standardised activations, class-balanced, scored by stratified k-fold cross-validation
  (accuracy mean ± sd, macro-F1), next to two controls: the majority-class baseline and the
  same probe trained on labels shuffled within each training fold. ``selectivity`` is
  accuracy minus the shuffled control. After CV one probe per (site, layer) is fitted on all
  rows; its weights, mapped back to the raw activation space, are the emotion *directions*.
* :func:`evaluate_emotion_probes`: the all-rows probes scored on another dataset's activations
  (train on one dataset, test on another).
* :func:`probe_positions`: the same probe at each stored token position (last-k-token analysis).

**Solver.** Every linear probe is scikit-learn's ``LogisticRegression(C=C,
class_weight="balanced", solver="lbfgs")`` on features standardised with its training rows'
mean and scale (:func:`lens_emotion.probing.solvers.fit_logistic_sklearn`). It minimises
``(sum_i s_i CE_i + ||W||^2 / (2C)) / sum_i s_i`` (balanced class weights ``s_i``, intercept
unpenalised). A fit is reported ``converged`` only when the largest gradient entry of that
objective at the returned weights is at most ``tol`` (checked here, since lbfgs may also stop
on a small relative change of the objective); non-converged fits are flagged in the table and
one :class:`~lens_emotion.probing.store.ProbeConvergenceWarning` says what refitting the worst
of them with 3x the iterations changes. The hand-written batched torch solver
(:func:`lens_emotion.probing.solvers.fit_logistic_batched`) that this module used before was
slower than scikit-learn at SmolLM2's size (one layer x 5 folds, d = 576, n = 1,000, one
thread: ``benchmarks/results/probes.json``), so it is no longer used here.

**Hygiene.** Each fold's scaler is fitted on that fold's training rows only; folds, label
permutations and MLP initialisations are fixed by ``seed``, and the same folds are used for
every site and layer, so numbers are comparable across the table and across runs.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from jaxtyping import Bool, Int
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from tqdm.auto import tqdm

from lens_emotion.io import write_bytes_atomic, write_json_atomic, write_text_atomic
from lens_emotion.probing.figures import (
    emotion_accuracy_figure,
    position_accuracy_figure,
    site_layer_heatmap,
)
from lens_emotion.probing.solvers import (
    fit_logistic_sklearn,
    fit_mlp,
    fit_standardizer,
    fit_threads,
    to_raw_space,
)
from lens_emotion.probing.store import (
    ProbeConvergenceWarning,
    ProbeError,
    SupportsActivations,
    check_folds,
    check_position,
    choose,
    directions_bytes,
    preview,
    read_activations,
    row_mask,
)

__all__ = [
    "DEFAULT_MAX_ITER",
    "EMOTION_EVAL_COLUMNS",
    "EMOTION_PROBE_COLUMNS",
    "EmotionProbeResult",
    "PositionProbeResult",
    "evaluate_emotion_probes",
    "probe_emotions",
    "probe_positions",
]

#: Default lbfgs iteration limit of the emotion probes. On SmolLM2 (d = 576, 13 classes,
#: n = 1,000-2,000) the fits need about 200 iterations to reach ``tol = 1e-5``
#: (``benchmarks/results/probes.json``, ``probing_table.json``).
DEFAULT_MAX_ITER = 1000


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
    keep = row_mask(mask, n)
    names = sorted(set(labels)) if label_names is None else [str(x) for x in label_names]
    if len(set(names)) != len(names):
        raise ProbeError(f"label_names repeat a label: {names}; list each label once.")
    known = set(names)
    unknown = sorted({lab for lab, k in zip(labels, keep, strict=True) if k and lab not in known})
    if unknown:
        raise ProbeError(
            f"labels {preview(unknown)} are not in label_names {names}; add them to "
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
        coef, intercept, iters, grad = fit_logistic_sklearn(
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
        f"tol={tol:g} within max_iter={max_iter} ({preview(check['unconverged'])}; see the "
        f"table's 'converged' column). Cost: refitting the worst, {check['worst']} (largest "
        f"gradient {worst['grad_max']:.1e}), at {3 * max_iter} iterations changes its CV "
        f"accuracy by {after - before:+.4f} ({before:.4f} -> {after:.4f}; "
        f"{'converged' if again.converged else 'still not converged'}). Raise max_iter if "
        "that matters.",
        ProbeConvergenceWarning,
        stacklevel=3,
    )
    return check


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

    def stable_layer(self, site: str = "resid_post", fraction: float | int = 0.95) -> int:
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

    def save(self, out: str | Path) -> list[Path]:
        """Write the results to ``out``.

        Files: ``probe_emotions.csv`` (:attr:`table`), ``probe_emotions_folds.csv``,
        ``probe_emotions.json`` (label names, params, manifest) and, when there are
        directions, ``probe_emotion_directions.safetensors`` and
        ``probe_emotion_intercepts.safetensors`` (keys ``"site.layer"``, float32, raw
        activation space; read them with :func:`load_directions`).

        Returns:
            The written paths.
        """
        out = Path(out)
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
                    directions_bytes(self.directions, {**meta, "space": space}),
                )
            )
            paths.append(
                write_bytes_atomic(
                    out / "probe_emotion_intercepts.safetensors",
                    directions_bytes(self.intercepts, {**meta, "space": space}),
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
        dark tick on its bar, and the majority-class baseline a dashed line
        (:func:`lens_emotion.probing.figures.emotion_accuracy_figure`).
        """
        return emotion_accuracy_figure(
            self.table, self.params.get("n_folds", "?"), self.position, title=title
        )

    def heatmap(self, metric: str = "accuracy_mean", title: str | None = None) -> go.Figure:
        """Sites x layers heatmap of one table column (default: accuracy)."""
        from lens_emotion.viz import PlotInputError

        if metric not in self.table.columns or metric in ("site", "layer"):
            raise PlotInputError(
                f"metric {metric!r} is not a numeric column of the probe table; use one of "
                f"{list(EMOTION_PROBE_COLUMNS[2:])}."
            )
        return site_layer_heatmap(self.table, metric, title)

    def summary(self) -> dict[str, Any]:
        """Headline numbers: rows, folds, and per site the best layer and its scores.

        Returns:
            ``{"n_rows", "n_folds", "position", "n_unconverged", "best": {site: {"layer",
            "accuracy_mean", "accuracy_sd", "majority_baseline", "shuffled_control",
            "selectivity"}}}``.
        """
        best: dict[str, dict[str, Any]] = {}
        for site in dict.fromkeys(self.table["site"]):
            rows = self.table[self.table["site"] == site]
            row = rows.loc[rows["accuracy_mean"].idxmax()]
            best[str(site)] = {"layer": int(row["layer"])} | {
                key: float(row[key])
                for key in (
                    "accuracy_mean",
                    "accuracy_sd",
                    "majority_baseline",
                    "shuffled_control",
                    "selectivity",
                )
            }
        return {
            "n_rows": int(self.table["n"].max()) if len(self.table) else 0,
            "n_folds": self.params.get("n_folds"),
            "position": self.position,
            "n_unconverged": int((~self.table["converged"].astype(bool)).sum()),
            "best": best,
        }


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
    model: str = "logreg",
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
        mlp_options: Extra keyword arguments of :func:`lens_emotion.probing.solvers.fit_mlp`.

    Returns:
        The :class:`EmotionProbeResult`.

    Raises:
        ProbeError: Wrong number of labels, unknown labels, sites, layers or positions, a
            class with fewer rows than ``n_folds``, bad ``mask`` or options.
    """
    n_folds = check_folds(n_folds)
    _check_model_args(model, C)
    position = check_position(position, store)
    site_list = choose("site", sites, tuple(store.sites))
    layer_list = choose("layer", layers, tuple(store.layers))
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
    x = read_activations(store, site, layer, position, setup.rows)
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
            f"evaluation labels {preview(unknown)} are not among the probes' classes "
            f"{list(result.label_names)}; drop those rows from the evaluation data."
        )
    y = np.array([index[lab] for lab in labels], dtype=np.int64)
    probed_sites = sorted({site for site, _ in result.directions})
    probed_layers = sorted({layer for _, layer in result.directions})
    site_list = choose("site", sites, tuple(s for s in probed_sites if s in store.sites))
    layer_list = choose("layer", layers, tuple(x for x in probed_layers if x in store.layers))
    counts = result.params.get("class_counts") or {}
    top = max(result.label_names, key=lambda name: counts.get(name, 0)) if counts else None
    majority = float(np.mean(y == index[top])) if top is not None else float("nan")
    rows = []
    everything = np.arange(len(labels))
    for site in site_list:
        for layer in layer_list:
            coef = result.directions[(site, int(layer))]
            bias = result.intercepts[(site, int(layer))]
            x = read_activations(store, site, layer, result.position, everything)
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

    def save(self, out: str | Path) -> list[Path]:
        """Write ``probe_positions.csv`` and ``probe_positions.json`` (params, manifest)."""
        out = Path(out)
        info = {"label_names": list(self.label_names), "params": self.params}
        info["manifest"] = self.manifest
        return [
            write_text_atomic(out / "probe_positions.csv", self.table.to_csv(index=False)),
            write_json_atomic(out / "probe_positions.json", info),
        ]

    def figure(self, title: str | None = None) -> go.Figure:
        """Accuracy vs layer, one line per token position (error bars: sd over folds)."""
        return position_accuracy_figure(self.table, self.params.get("site", ""), title=title)

    def summary(self) -> dict[str, Any]:
        """Headline numbers: the site, and per position the best layer and its accuracy.

        Returns:
            ``{"site", "n_rows", "best": {position: {"layer", "accuracy_mean"}}}`` with the
            positions as strings (JSON keys), e.g. ``"-1"``.
        """
        best: dict[str, dict[str, Any]] = {}
        for pos in sorted(self.table["position"].unique()):
            rows = self.table[self.table["position"] == pos]
            row = rows.loc[rows["accuracy_mean"].idxmax()]
            best[str(int(pos))] = {
                "layer": int(row["layer"]),
                "accuracy_mean": float(row["accuracy_mean"]),
            }
        return {"site": self.params.get("site"), "n_rows": self.params.get("n_rows"), "best": best}


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
    n_folds = check_folds(n_folds)
    _check_model_args("logreg", C)
    (site,) = choose("site", [site], tuple(store.sites))
    layer_list = choose("layer", layers, tuple(store.layers))
    position_list = choose("position", positions, tuple(store.positions))
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
