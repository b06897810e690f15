"""Appraisal probes per layer and site, and their alignment with the emotion directions.

* :func:`probe_appraisals`: multi-target ridge regression of the appraisal ratings,
  cross-validated R² per appraisal, and raw-space appraisal directions.
* :func:`appraisal_alignment`: cosine similarity of emotion and appraisal directions per layer.

Hygiene as in :mod:`lens_emotion.probing.emotions`: each fold's scaler sees only its training
rows, and the folds are fixed by ``seed`` and shared by every site and layer.
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
from jaxtyping import Bool, Float
from sklearn.model_selection import KFold
from tqdm.auto import tqdm

from lens_emotion.io import write_bytes_atomic, write_json_atomic, write_text_atomic
from lens_emotion.probing.emotions import EmotionProbeResult
from lens_emotion.probing.figures import alignment_figure, appraisal_r2_figure
from lens_emotion.probing.solvers import fit_standardizer, fit_threads, ridge_fit, to_raw_space
from lens_emotion.probing.store import (
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
    "ALIGNMENT_COLUMNS",
    "APPRAISAL_PROBE_COLUMNS",
    "AlignmentResult",
    "AppraisalProbeResult",
    "appraisal_alignment",
    "probe_appraisals",
]

#: Columns of :attr:`AppraisalProbeResult.table` (and ``probe_appraisals.csv``), in order.
APPRAISAL_PROBE_COLUMNS: tuple[str, ...] = ("site", "layer", "appraisal", "r2_mean", "r2_sd")
#: Columns of :attr:`AlignmentResult.table` (and ``alignment.csv``), in order.
ALIGNMENT_COLUMNS: tuple[str, ...] = ("site", "layer", "emotion", "appraisal", "cosine")


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
                f"{preview(sorted(self.directions))}."
            )
        return np.asarray(x, dtype=np.float64) @ self.directions[key].T + self.intercepts[key]

    def save(self, out: str | Path) -> list[Path]:
        """Write ``probe_appraisals.csv``, ``probe_appraisals.json`` and the directions.

        Directions and intercepts go to ``probe_appraisal_directions.safetensors`` and
        ``probe_appraisal_intercepts.safetensors`` (keys ``"site.layer"``, float32, raw space).

        Returns:
            The written paths.
        """
        out = Path(out)
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
                    directions_bytes(self.directions, meta),
                )
            )
            paths.append(
                write_bytes_atomic(
                    out / "probe_appraisal_intercepts.safetensors",
                    directions_bytes(self.intercepts, meta),
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
        qualitative palette (:func:`lens_emotion.probing.figures.appraisal_r2_figure`).
        """
        return appraisal_r2_figure(self.table, self.appraisal_names, site, highlight, title)

    def summary(self) -> dict[str, Any]:
        """Headline numbers: per site the layer with the best mean R², and each appraisal's best.

        Returns:
            ``{"n_rows", "position", "best": {site: {"layer", "mean_r2"}}, "best_appraisal":
            {appraisal: {"site", "layer", "r2_mean"}}}``.
        """
        table = self.table
        best: dict[str, dict[str, Any]] = {}
        for site in dict.fromkeys(table["site"]):
            means = table[table["site"] == site].groupby("layer")["r2_mean"].mean()
            best[str(site)] = {"layer": int(means.idxmax()), "mean_r2": float(means.max())}
        per_appraisal: dict[str, dict[str, Any]] = {}
        for name in self.appraisal_names:
            rows = table[table["appraisal"] == name]
            if rows["r2_mean"].notna().any():
                row = rows.loc[rows["r2_mean"].idxmax()]
                per_appraisal[name] = {
                    "site": str(row["site"]),
                    "layer": int(row["layer"]),
                    "r2_mean": float(row["r2_mean"]),
                }
        return {
            "n_rows": self.params.get("n_rows"),
            "position": self.position,
            "best": best,
            "best_appraisal": per_appraisal,
        }


def _alpha_list(alpha: float | Sequence[float | int]) -> list[float]:
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
    alpha: float | Sequence[float | int] = 1.0,
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
    (:func:`lens_emotion.probing.solvers.ridge_fit`) fits every appraisal at once; R² is taken
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
    n_folds = check_folds(n_folds)
    alphas = _alpha_list(alpha)
    position = check_position(position, store)
    site_list = choose("site", sites, tuple(store.sites))
    layer_list = choose("layer", layers, tuple(store.layers))
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
    keep = row_mask(mask, n)
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
            x = read_activations(store, site, layer, position, rows).astype(np.float64)
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

    def save(self, out: str | Path) -> list[Path]:
        """Write ``alignment.csv``."""
        path = Path(out) / "alignment.csv"
        return [write_text_atomic(path, self.table.to_csv(index=False))]

    def figure(
        self, layer: int | None = None, zmax: float | None = None, title: str | None = None
    ) -> go.Figure:
        """Emotions x appraisals cosine heatmap with a slider over layers.

        One heatmap per layer; the slider shows one at a time
        (:func:`lens_emotion.probing.figures.alignment_figure`).

        Args:
            layer: Layer shown first; default the last compared layer.
            zmax: Colour-scale limit; default the largest ``|cosine|``.
            title: Figure title prefix.
        """
        return alignment_figure(self, layer=layer, zmax=zmax, title=title)

    def summary(self) -> dict[str, Any]:
        """Headline numbers: the site, layers, and the strongest emotion-appraisal cosine.

        Returns:
            ``{"site", "layers", "max_abs_cosine", "strongest": {"layer", "emotion",
            "appraisal", "cosine"}}`` (``strongest`` is ``None`` for an empty table).
        """
        cos = self.table["cosine"]
        strongest = None
        if cos.notna().any():
            row = self.table.loc[cos.abs().idxmax()]
            strongest = {
                "layer": int(row["layer"]),
                "emotion": str(row["emotion"]),
                "appraisal": str(row["appraisal"]),
                "cosine": float(row["cosine"]),
            }
        return {
            "site": self.site,
            "layers": list(self.layers),
            "max_abs_cosine": float(cos.abs().max()) if cos.notna().any() else None,
            "strongest": strongest,
        }


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
