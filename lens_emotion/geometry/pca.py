"""Principal components of the emotion vectors and how they line up with human affect.

Per site and layer:

* PCA over the emotion vectors (centred over the emotions): the share of their variance on
  PC1 and PC2 (``pc1_var``, ``pc2_var``), and each emotion's PC1/PC2 score;
* PCA over the per-text activations projected into the span of the vectors
  (``text_pc1_var``, ``text_pc2_var``: shares of the in-span text variance);
* Pearson correlations over the emotions of the PC1 and PC2 scores with human valence (mean
  ``pleasantness - unpleasantness``) and the arousal proxy (mean ``intensity``):
  ``pc1_valence_r``, ``pc2_valence_r``, ``pc1_arousal_r``, ``pc2_arousal_r``;
* ``text_pc1_pleasantness_rho``: Spearman, over all texts, of each text's projection on PC1
  with that text's own pleasantness rating (far more power than 13 points).

**Orientation.** A PC's sign is arbitrary. PC1 is oriented so that its correlation with
valence is >= 0 on the full sample, and PC2 so that its correlation with arousal is >= 0
(so ``pc1_valence_r`` and ``pc2_arousal_r`` are absolute values, the other two are signed
relative to that orientation). Bootstrap replicates are oriented to agree with the
full-sample axis (positive dot product), not re-oriented by the ratings, so the intervals
are not pushed away from zero.

**Intervals** (``"mean"`` vectors only): bias-corrected percentile bootstrap over texts
(:func:`~.vectors.bc_interval`), resampled within each emotion
(:func:`~.vectors.bootstrap_counts`); every replicate recomputes the class means, the PCA,
the per-emotion human means and the per-text correlation. A replicate's PCs are matched to
the full-sample PC1 and PC2 (among its top 3, by largest absolute cosine, then signed to
agree), so two PCs of similar variance swapping places does not count as noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from jaxtyping import Float, Int
from scipy.stats import rankdata

from lens_emotion.geometry.errors import GeometryError
from lens_emotion.geometry.ratings import HumanRatings
from lens_emotion.geometry.vectors import (
    EmotionVectorsResult,
    bc_interval,
    bootstrap_class_means,
    bootstrap_counts,
)
from lens_emotion.io import write_text_atomic

__all__ = [
    "GEOMETRY_COLUMNS",
    "PCAResult",
    "emotion_pca",
    "pearson_rows",
    "spearman_rows",
    "valence_geometry",
]

#: Columns of every long geometry table (and of ``geometry.csv``).
GEOMETRY_COLUMNS: tuple[str, ...] = ("site", "layer", "measure", "value", "ci_low", "ci_high")


def emotion_pca(
    vectors: Float[np.ndarray, "emotion d"], k: int = 2
) -> tuple[Float[np.ndarray, "k d"], Float[np.ndarray, " k"], Float[np.ndarray, "emotion k"]]:
    """PCA of a few vectors (centred over the rows).

    Returns:
        ``(components, explained_ratio, scores)``: unit PC directions, the share of the
        variance each explains, and each row's score on them.
    """
    v = np.asarray(vectors, dtype=np.float64)
    v = v - v.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(v, full_matrices=False)
    total = float((s**2).sum())
    ratio = (s**2) / total if total > 0 else np.zeros_like(s)
    comps = vt[:k]
    return comps, ratio[:k], v @ comps.T


def pearson_rows(a: Float[np.ndarray, "b n"], b: Float[np.ndarray, "b n"]) -> np.ndarray:
    """Pearson r of each row pair (NaN entries dropped per row; NaN if constant)."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    ok = np.isfinite(a) & np.isfinite(b)
    n = ok.sum(axis=1)
    a0 = np.where(ok, a, 0.0)
    b0 = np.where(ok, b, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma = a0.sum(1, keepdims=True) / n[:, None]
        mb = b0.sum(1, keepdims=True) / n[:, None]
        da = np.where(ok, a - ma, 0.0)
        db = np.where(ok, b - mb, 0.0)
        r = (da * db).sum(1) / np.sqrt((da**2).sum(1) * (db**2).sum(1))
    r[n < 3] = np.nan
    return r


def spearman_rows(a: Float[np.ndarray, "b n"], b: Float[np.ndarray, "b n"]) -> np.ndarray:
    """Spearman rho of each row pair (average ranks for ties)."""
    return pearson_rows(rankdata(a, axis=-1), rankdata(b, axis=-1))


@dataclass(frozen=True, eq=False)
class PCAResult:
    """PCA of the emotion vectors and its correlations with human ratings, per site/layer.

    Attributes:
        table: Long table, columns :data:`GEOMETRY_COLUMNS` (measures in the module
            docstring, plus ``n_texts``).
        emotions: Emotion names.
        layers: Layers.
        scores: ``{site: [layer, emotion, 2]}`` oriented PC1/PC2 scores of the emotions.
        components: ``{site: [layer, 2, d_model]}`` oriented unit PC1/PC2 directions.
        valence: Human valence per emotion (full sample).
        arousal: Arousal proxy per emotion (full sample).
        kind: Vector kind (``"mean"`` or ``"probe"``).
        subset: Which rows (``"all"``, ``"keyword-free"`` ...).
        n_model_layers: Layers of the model (for relative depth).
        params: Bootstrap size, seed.
    """

    table: pd.DataFrame
    emotions: tuple[str, ...]
    layers: tuple[int, ...]
    scores: Mapping[str, np.ndarray] = field(repr=False)
    components: Mapping[str, np.ndarray] = field(repr=False)
    valence: np.ndarray = field(repr=False)
    arousal: np.ndarray = field(repr=False)
    kind: str = "mean"
    subset: str = "all"
    n_model_layers: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    def measure(self, name: str, site: str | None = None) -> pd.DataFrame:
        """Rows of one measure (optionally one site), by layer."""
        t = self.table[self.table.measure == name]
        if site is not None:
            t = t[t.site == site]
        return t.sort_values(["site", "layer"]).reset_index(drop=True)

    def peak(self, name: str = "pc1_valence_r", site: str | None = None) -> dict[str, Any]:
        """The layer where a measure is largest: value, CI, layer, relative depth, site."""
        t = self.measure(name, site).dropna(subset=["value"])
        if t.empty:
            return {"value": float("nan"), "layer": -1, "relative_depth": float("nan")}
        best = t.loc[t.value.idxmax()]
        depth = int(best.layer) / max(1, self.n_model_layers - 1)
        return {
            "site": best.site,
            "layer": int(best.layer),
            "relative_depth": round(depth, 4),
            "value": float(best.value),
            "ci_low": float(best.ci_low),
            "ci_high": float(best.ci_high),
        }

    def scores_frame(self, site: str, layer: int) -> pd.DataFrame:
        """Emotion, PC1, PC2, human valence and arousal at one site and layer."""
        if site not in self.scores or layer not in self.layers:
            raise GeometryError(
                f"no PCA at {site!r} layer {layer}; sites {list(self.scores)}, layers "
                f"{list(self.layers)}."
            )
        s = self.scores[site][self.layers.index(layer)]
        return pd.DataFrame(
            {
                "emotion": self.emotions,
                "pc1": s[:, 0],
                "pc2": s[:, 1],
                "valence": self.valence,
                "arousal": self.arousal,
            }
        )

    def to_frame(self) -> pd.DataFrame:
        """A copy of :attr:`table`."""
        return self.table.copy()

    def save(self, out: str | Path) -> list[Path]:
        """Write ``pca_{kind}_{subset}.csv`` (the table) and ``..._scores.csv`` (scores)."""
        out = Path(out)
        stem = f"pca_{self.kind}_{self.subset.replace('-', '_')}"
        frames = [
            self.scores_frame(site, layer).assign(site=site, layer=layer)
            for site in self.scores
            for layer in self.layers
        ]
        return [
            write_text_atomic(out / f"{stem}.csv", self.table.to_csv(index=False)),
            write_text_atomic(out / f"{stem}_scores.csv", pd.concat(frames).to_csv(index=False)),
        ]

    def figure(self) -> go.Figure:
        """Valence and arousal correlation against layer (:func:`.figures.correlation_figure`)."""
        from lens_emotion.geometry.figures import correlation_figure

        return correlation_figure(self)

    def scatter(self, site: str, layer: int) -> go.Figure:
        """The emotions on PC1 x PC2 at one layer (:func:`.figures.pc_scatter_figure`)."""
        from lens_emotion.geometry.figures import pc_scatter_figure

        return pc_scatter_figure(self, site, layer)

    def summary(self) -> dict[str, Any]:
        """Peak PC1~valence r, PC2~arousal r and per-text rho, with layer and relative depth."""
        return {
            "kind": self.kind,
            "subset": self.subset,
            "peak_pc1_valence_r": self.peak("pc1_valence_r"),
            "peak_pc2_arousal_r": self.peak("pc2_arousal_r"),
            "peak_text_pc1_pleasantness_rho": self.peak("text_pc1_pleasantness_rho"),
        }


def _batched_pcs(
    means: Float[np.ndarray, "boot emotion d"], reference: Float[np.ndarray, "2 d"]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two PCs of every replicate that match ``reference`` (see the module docstring).

    Returns:
        ``(scores [B, E, 2], ratio [B, 2], directions [B, 2, d])``.
    """
    v = means - means.mean(axis=1, keepdims=True)
    gram = np.einsum("bed,bfd->bef", v, v)
    lam, u = np.linalg.eigh(gram)  # ascending
    lam = np.clip(lam[:, ::-1], 0.0, None)
    top = min(3, lam.shape[1])
    u = u[:, :, ::-1][:, :, :top]  # [B, E, top]
    s = np.sqrt(lam[:, :top])
    total = lam.sum(1, keepdims=True)
    ratio_all = lam[:, :top] / np.where(total > 0, total, 1)
    dirs = np.einsum("bed,bek->bkd", v, u) / np.where(s > 0, s, 1)[:, :, None]
    dots = np.einsum("bkd,jd->bkj", dirs, reference)  # [B, top, 2]
    B = means.shape[0]  # noqa: N806
    pick = np.zeros((B, 2), dtype=np.int64)
    pick[:, 0] = np.abs(dots[:, :, 0]).argmax(axis=1)
    masked = np.abs(dots[:, :, 1])
    masked[np.arange(B), pick[:, 0]] = -1.0
    pick[:, 1] = masked.argmax(axis=1)
    b = np.arange(B)[:, None]
    sign = np.sign(dots[b, pick, np.arange(2)[None]])
    sign[sign == 0] = 1
    directions = dirs[b, pick] * sign[:, :, None]
    scores = np.take_along_axis(u, pick[:, None, :], axis=2) * (s[b, pick] * sign)[:, None, :]
    return scores, ratio_all[b, pick], directions


def valence_geometry(
    vectors: EmotionVectorsResult,
    ratings: HumanRatings,
    acts: Mapping[str, Float[np.ndarray, "layer n_all d"]] | None = None,
    rows: Int[np.ndarray, " n"] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    subset: str = "all",
    n_model_layers: int | None = None,
) -> PCAResult:
    """PCA of the emotion vectors and its agreement with human valence and arousal.

    Args:
        vectors: Emotion vectors (:func:`~.vectors.emotion_vectors` or
            :func:`~.vectors.probe_vectors`) computed on the rows ``rows`` of ``acts``.
        ratings: Human ratings of those rows (in the same order).
        acts: ``{site: [layer, n_all, d]}`` activations; needed for the per-text measures
            and the bootstrap (``None``: per-emotion measures only, no intervals).
        rows: Rows of ``acts`` the vectors were computed from (``None``: all).
        n_boot: Bootstrap replicates (``"mean"`` vectors with ``acts`` only; 0: none).
        seed: Seed of the bootstrap.
        subset: Name of the row subset, for the table and file names.
        n_model_layers: Layers of the model (default: the last layer + 1).

    Returns:
        The :class:`PCAResult`.

    Raises:
        GeometryError: Ratings and rows of different lengths.
    """
    emotions = vectors.emotions
    if tuple(ratings.emotions) != tuple(emotions):
        raise GeometryError(
            f"ratings are for emotions {ratings.emotions}, vectors for {emotions}; use the "
            "same emotion order."
        )
    if acts is not None:
        n_all = next(iter(acts.values())).shape[1]
        rows = np.arange(n_all) if rows is None else np.asarray(rows)
        if len(rows) != len(ratings):
            raise GeometryError(
                f"{len(rows)} rows but {len(ratings)} ratings; pass the ratings of the rows used."
            )
    k = len(emotions)
    index = ratings.label_index
    valence = ratings.emotion_valence()
    arousal = ratings.emotion_arousal()
    bootstrap = acts is not None and n_boot > 0 and vectors.kind == "mean"
    counts = bootstrap_counts(index, n_boot, seed) if bootstrap else None
    if counts is not None:
        draws = np.stack([np.repeat(np.arange(len(index)), c) for c in counts])
        w = counts.astype(np.float64)
        boot_val = np.stack(
            [(w[:, index == e] @ ratings.valence[index == e]) / (index == e).sum()
             for e in range(k)], axis=1,
        )  # fmt: skip
        ar = np.nan_to_num(ratings.arousal)
        boot_aro = np.stack(
            [(w[:, index == e] @ ar[index == e]) / (index == e).sum() for e in range(k)], axis=1
        )
        if np.isnan(ratings.arousal).all():
            boot_aro[:] = np.nan
        pleas_boot = ratings.pleasantness[draws]
    records: list[dict[str, Any]] = []
    scores_out: dict[str, np.ndarray] = {}
    comps_out: dict[str, np.ndarray] = {}

    def add(site: str, layer: int, measure: str, value: Real, ci=(np.nan, np.nan)) -> None:
        records.append(
            {"site": site, "layer": int(layer), "measure": measure, "value": float(value),
             "ci_low": float(ci[0]), "ci_high": float(ci[1])}
        )  # fmt: skip

    for site in vectors.sites:
        site_scores, site_comps = [], []
        for li, layer in enumerate(vectors.layers):
            v = vectors.vectors[site][li]
            comps, ratio, scores = emotion_pca(v, 2)
            if comps.shape[0] < 2:
                raise GeometryError("PCA needs at least 3 emotions with distinct vectors.")
            r1v = pearson_rows(scores[None, :, 0], valence[None])[0]
            r2a = pearson_rows(scores[None, :, 1], arousal[None])[0]
            sign = np.array([-1.0 if r1v < 0 else 1.0, -1.0 if r2a < 0 else 1.0])
            comps = comps * sign[:, None]
            scores = scores * sign[None, :]
            site_scores.append(scores)
            site_comps.append(comps)
            point = {
                "pc1_var": ratio[0],
                "pc2_var": ratio[1],
                "pc1_valence_r": pearson_rows(scores[None, :, 0], valence[None])[0],
                "pc2_valence_r": pearson_rows(scores[None, :, 1], valence[None])[0],
                "pc1_arousal_r": pearson_rows(scores[None, :, 0], arousal[None])[0],
                "pc2_arousal_r": pearson_rows(scores[None, :, 1], arousal[None])[0],
            }
            cis: dict[str, tuple[float, float]] = {}
            if acts is not None:
                x = np.asarray(acts[site][li][rows], dtype=np.float64)
                proj = x @ comps[0]
                point["text_pc1_pleasantness_rho"] = spearman_rows(
                    proj[None], ratings.pleasantness[None]
                )[0]
                # PCA of the texts inside the span of the vectors
                vc = v - v.mean(axis=0, keepdims=True)
                _, s, vt = np.linalg.svd(vc, full_matrices=False)
                basis = vt[s > s.max() * 1e-9]
                z = (x - x.mean(axis=0)) @ basis.T
                lam = np.linalg.svd(z, compute_uv=False) ** 2
                point["text_pc1_var"] = lam[0] / lam.sum()
                point["text_pc2_var"] = lam[1] / lam.sum() if len(lam) > 1 else np.nan
            if counts is not None:
                means = bootstrap_class_means(x, index, k, counts)
                b_scores, b_ratio, b_dirs = _batched_pcs(means, comps)
                reps = {"pc1_var": b_ratio[:, 0], "pc2_var": b_ratio[:, 1]}
                for j, pc in enumerate(("pc1", "pc2")):
                    reps[f"{pc}_valence_r"] = pearson_rows(b_scores[:, :, j], boot_val)
                    reps[f"{pc}_arousal_r"] = pearson_rows(b_scores[:, :, j], boot_aro)
                proj_b = b_dirs[:, 0] @ x.T  # [B, n]
                proj_b = np.take_along_axis(proj_b, draws, axis=1)
                reps["text_pc1_pleasantness_rho"] = spearman_rows(proj_b, pleas_boot)
                cis = {name: bc_interval(r, point[name]) for name, r in reps.items()}
            for name, value in point.items():
                add(site, layer, name, value, cis.get(name, (np.nan, np.nan)))
            add(site, layer, "n_texts", len(ratings))
        scores_out[site] = np.stack(site_scores)
        comps_out[site] = np.stack(site_comps)
    return PCAResult(
        table=pd.DataFrame(records, columns=list(GEOMETRY_COLUMNS)),
        emotions=emotions,
        layers=vectors.layers,
        scores=scores_out,
        components=comps_out,
        valence=valence,
        arousal=arousal,
        kind=vectors.kind,
        subset=subset,
        n_model_layers=n_model_layers or (max(vectors.layers) + 1),
        params={"n_boot": n_boot if bootstrap else 0, "seed": seed},
    )
