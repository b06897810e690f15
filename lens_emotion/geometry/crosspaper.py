"""Do Tak et al. (crowd-enVENT) and Wang et al. (SEV) find the same emotion directions?

Per site and layer, for the 6 emotions both papers use (crowd-enVENT ``joy`` <->
SEV ``happiness``):

* the crowd-enVENT vectors of those 6 emotions are centred over the 6 (as the SEV
  context-agnostic directions are, :mod:`lens_emotion.circuits.directions`) and normalised;
* ``diag_cos``: mean cosine of matched pairs (crowd-enVENT *e* vs SEV *e*), with a
  bias-corrected bootstrap CI over crowd-enVENT texts (the SEV directions are held fixed);
  ``cos.<emotion>`` per pair;
* **permutation baseline** (mismatched emotions): the mean matched cosine after relabelling
  the SEV directions by each of the 265 derangements (no emotion kept): ``perm_mean`` and
  ``perm_q95``; ``perm_p`` is the exact permutation p-value over all 720 relabellings;
* **random-direction baseline**: the same mean with ``n_random`` sets of 6 random Gaussian
  directions in place of the SEV ones: ``random_mean``, ``random_q95`` and ``random_p``;
* **transfer**: ``transfer_sev_by_crowd`` is the accuracy of naming the instructed emotion of
  SEV prompts as ``argmax_e (x - mean) . v_e`` over the 6 crowd-enVENT vectors, and
  ``transfer_crowd_by_sev`` the accuracy of naming the human label of crowd-enVENT texts (of
  those 6 emotions) by projection on the SEV directions, each with a Wilson 95% interval
  (chance 1/6). The mean subtracted is that of the prompts being classified (no labels).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from jaxtyping import Float, Int

from lens_emotion.geometry.errors import GeometryError
from lens_emotion.geometry.pca import GEOMETRY_COLUMNS
from lens_emotion.geometry.vectors import (
    EmotionVectorsResult,
    bc_interval,
    bootstrap_class_means,
    bootstrap_counts,
)
from lens_emotion.io import write_text_atomic
from lens_emotion.judge import wilson_interval

__all__ = ["SHARED_EMOTIONS", "CrossPaperResult", "cross_paper"]

#: crowd-enVENT emotion -> SEV emotion, for the emotions both datasets have.
SHARED_EMOTIONS: dict[str, str] = {
    "anger": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "joy": "happiness",
    "sadness": "sadness",
    "surprise": "surprise",
}


def _unit(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norms > 0, norms, 1.0)


def _centred_unit(v: np.ndarray) -> np.ndarray:
    return _unit(v - v.mean(axis=-2, keepdims=True))


@dataclass(frozen=True, eq=False)
class CrossPaperResult:
    """Cosines between crowd-enVENT emotion vectors and SEV directions, per site and layer.

    Attributes:
        table: Long table (:data:`~.pca.GEOMETRY_COLUMNS`), measures in the module docstring.
        crowd_emotions: crowd-enVENT emotions (rows of the matrices).
        sev_emotions: SEV emotions (columns), matched by position.
        layers: Layers.
        cosines: ``{site: [layer, 6, 6]}`` cosine matrices.
        diag_ci: ``{site: [layer, 6, 2]}`` bootstrap CI of each matched cosine (NaN without
            a bootstrap).
        kind: crowd-enVENT vector kind.
        n_model_layers: Layers of the model.
        params: Sizes and seed.
    """

    table: pd.DataFrame
    crowd_emotions: tuple[str, ...]
    sev_emotions: tuple[str, ...]
    layers: tuple[int, ...]
    cosines: Mapping[str, np.ndarray] = field(repr=False)
    diag_ci: Mapping[str, np.ndarray] = field(repr=False)
    kind: str = "mean"
    n_model_layers: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def sites(self) -> tuple[str, ...]:
        """Sites compared."""
        return tuple(self.cosines)

    def measure(self, name: str, site: str | None = None) -> pd.DataFrame:
        """Rows of one measure, by layer."""
        t = self.table[self.table.measure == name]
        if site is not None:
            t = t[t.site == site]
        return t.sort_values(["site", "layer"]).reset_index(drop=True)

    def to_frame(self) -> pd.DataFrame:
        """A copy of :attr:`table`."""
        return self.table.copy()

    def save(self, out: str | Path) -> list[Path]:
        """Write ``crosspaper_{kind}.csv`` and ``crosspaper_{kind}_cosines.csv`` (matrices)."""
        out = Path(out)
        rows = []
        for site, mats in self.cosines.items():
            for li, layer in enumerate(self.layers):
                for i, a in enumerate(self.crowd_emotions):
                    for j, b in enumerate(self.sev_emotions):
                        rows.append(
                            {"site": site, "layer": layer, "crowd_emotion": a,
                             "sev_emotion": b, "cosine": float(mats[li, i, j])}
                        )  # fmt: skip
        stem = f"crosspaper_{self.kind}"
        return [
            write_text_atomic(out / f"{stem}.csv", self.table.to_csv(index=False)),
            write_text_atomic(out / f"{stem}_cosines.csv", pd.DataFrame(rows).to_csv(index=False)),
        ]

    def figure(self, site: str | None = None, layer: int | None = None) -> go.Figure:
        """The cosine heatmap at one layer (:func:`.figures.crosspaper_figure`)."""
        from lens_emotion.geometry.figures import crosspaper_figure

        return crosspaper_figure(self, site, layer)

    def peak_layer(self, site: str | None = None) -> int:
        """The layer of the largest matched cosine."""
        t = self.measure("diag_cos", site or self.sites[0]).dropna(subset=["value"])
        return int(t.loc[t.value.idxmax()].layer) if len(t) else self.layers[-1]

    def summary(self) -> dict[str, Any]:
        """Peak matched cosine (layer, CI, baselines) and how many layers beat the baselines."""
        site = "resid_post" if "resid_post" in self.sites else self.sites[0]
        t = self.table[self.table.site == site]
        wide = t.pivot_table(index="layer", columns="measure", values="value")
        low = t[t.measure == "diag_cos"].set_index("layer").ci_low
        layer = self.peak_layer(site)
        row = wide.loc[layer]
        out = {
            "kind": self.kind,
            "site": site,
            "peak_diag_cos": float(row["diag_cos"]),
            "peak_diag_cos_ci": [
                float(low.get(layer, np.nan)),
                float(t[(t.measure == "diag_cos") & (t.layer == layer)].ci_high.iloc[0]),
            ],  # fmt: skip
            "peak_layer": layer,
            "peak_relative_depth": round(layer / max(1, self.n_model_layers - 1), 4),
            "perm_mean_at_peak": float(row["perm_mean"]),
            "perm_p_at_peak": float(row["perm_p"]),
            "random_q95_at_peak": float(row["random_q95"]),
            "layers_beating_permutation": int((wide["perm_p"] < 0.05).sum()),
            "layers_beating_random": int((wide["diag_cos"] > wide["random_q95"]).sum()),
            "n_layers": len(wide),
        }
        for name in ("transfer_sev_by_crowd", "transfer_crowd_by_sev"):
            if name in wide and wide[name].notna().any():
                best = wide[name].idxmax()
                out[f"peak_{name}"] = float(wide.loc[best, name])
                out[f"peak_{name}_layer"] = int(best)
        return out


def _projection_accuracy(
    x: Float[np.ndarray, "n d"], truth: Int[np.ndarray, " n"], directions: np.ndarray
) -> tuple[float, int, int]:
    x = np.asarray(x, dtype=np.float64)
    scores = (x - x.mean(axis=0)) @ directions.T
    hits = int((scores.argmax(axis=1) == truth).sum())
    return hits / max(1, len(truth)), hits, len(truth)


def cross_paper(
    crowd: EmotionVectorsResult,
    sev: Any,
    *,
    crowd_acts: Mapping[str, Float[np.ndarray, "layer n_all d"]] | None = None,
    rows: Int[np.ndarray, " n"] | None = None,
    crowd_labels: Sequence[str] | None = None,
    sev_acts: Any | None = None,
    sev_emotions: Sequence[str | None] | None = None,
    mapping: Mapping[str, str] = SHARED_EMOTIONS,
    n_boot: int = 1000,
    n_random: int = 1000,
    seed: int = 0,
    n_model_layers: int | None = None,
) -> CrossPaperResult:
    """Compare crowd-enVENT emotion vectors with SEV context-agnostic directions.

    Args:
        crowd: crowd-enVENT emotion vectors.
        sev: :class:`~lens_emotion.circuits.directions.EmotionDirections` (from
            :func:`lens_emotion.circuits.compute_directions`).
        crowd_acts: ``{site: [layer, n_all, d]}`` crowd-enVENT activations, for the bootstrap
            and the reverse transfer (``None``: neither).
        rows: Rows of ``crowd_acts`` the vectors came from (``None``: all).
        crowd_labels: Human labels of those rows.
        sev_acts: :class:`~lens_emotion.circuits.LastTokenActivations` of the SEV prompts,
            for the forward transfer (``None``: skipped).
        sev_emotions: Instructed emotion of each SEV prompt.
        mapping: crowd-enVENT emotion -> SEV emotion.
        n_boot: Bootstrap replicates over crowd-enVENT texts (``"mean"`` vectors only).
        n_random: Random direction sets.
        seed: Seed of the bootstrap and the random directions.
        n_model_layers: Layers of the model (default: the last layer + 1).

    Returns:
        The :class:`CrossPaperResult`.

    Raises:
        GeometryError: No shared site, or an emotion of ``mapping`` missing on either side.
    """
    crowd_em = tuple(mapping)
    sev_em = tuple(mapping[e] for e in crowd_em)
    missing = [e for e in crowd_em if e not in crowd.emotions] + [
        e for e in sev_em if e not in sev.emotions
    ]
    if missing:
        raise GeometryError(f"emotions {missing} are missing from the vectors or directions.")
    sites = [s for s in crowd.sites if s in sev.sites]
    if not sites:
        raise GeometryError(
            f"no site in common: crowd-enVENT vectors at {crowd.sites}, SEV directions at "
            f"{sev.sites}; extract resid_post (or resid_mid) for crowd-enVENT."
        )
    if max(crowd.layers) >= sev.n_layers:
        raise GeometryError(
            f"crowd-enVENT layer {max(crowd.layers)} but SEV directions have {sev.n_layers} "
            "layers; use directions of the same model."
        )
    ci = [crowd.emotions.index(e) for e in crowd_em]
    si = [sev.emotions.index(e) for e in sev_em]
    k = len(crowd_em)
    perms = np.array(list(itertools.permutations(range(k))))
    derangements = perms[(perms != np.arange(k)).all(axis=1)]
    rng = np.random.default_rng([seed, 17])
    d = crowd.vectors[sites[0]].shape[-1]
    random_dirs = _unit(rng.standard_normal((n_random, k, d)))

    index = counts = None
    keep = None
    if crowd_acts is not None:
        if crowd_labels is None:
            raise GeometryError("crowd_labels are needed with crowd_acts.")
        n_all = next(iter(crowd_acts.values())).shape[1]
        rows = np.arange(n_all) if rows is None else np.asarray(rows)
        col = {e: j for j, e in enumerate(crowd_em)}
        labels = list(crowd_labels)
        keep = np.asarray([lab in col for lab in labels])
        index = np.asarray([col[lab] for lab in labels if lab in col], dtype=np.int64)
        if crowd.kind == "mean" and n_boot > 0:
            counts = bootstrap_counts(index, n_boot, seed)
    sev_truth = sev_keep = None
    if sev_acts is not None and sev_emotions is not None:
        scol = {e: j for j, e in enumerate(sev_em)}
        sev_keep = np.asarray([e in scol for e in sev_emotions])
        sev_truth = np.asarray([scol[e] for e in sev_emotions if e in scol], dtype=np.int64)

    records: list[dict[str, Any]] = []
    cosines: dict[str, np.ndarray] = {}
    diag_cis: dict[str, np.ndarray] = {}

    def add(site: str, layer: int, name: str, value: float, low=np.nan, high=np.nan) -> None:
        records.append(
            {"site": site, "layer": int(layer), "measure": name, "value": float(value),
             "ci_low": float(low), "ci_high": float(high)}
        )  # fmt: skip

    for site in sites:
        mats, cis = [], []
        sev_site = np.asarray(sev.get(site).double())  # [layer, emotion, d]
        for li, layer in enumerate(crowd.layers):
            c = _centred_unit(crowd.vectors[site][li][ci])
            s = _unit(sev_site[layer][si])
            m = c @ s.T
            mats.append(m)
            diag = np.diag(m)
            diag_ci = np.full((k, 2), np.nan)
            mean_ci = (np.nan, np.nan)
            if counts is not None:
                x = np.asarray(crowd_acts[site][li][rows][keep], dtype=np.float64)
                boot = _centred_unit(bootstrap_class_means(x, index, k, counts))
                bdiag = np.einsum("bed,ed->be", boot, s)
                diag_ci = np.array([bc_interval(bdiag[:, j], diag[j]) for j in range(k)])
                mean_ci = bc_interval(bdiag.mean(axis=1), float(diag.mean()))
            cis.append(diag_ci)
            observed = float(diag.mean())
            perm_means = m[np.arange(k), perms].mean(axis=1)
            der_means = m[np.arange(k), derangements].mean(axis=1)
            rand = np.einsum("ed,red->re", c, random_dirs).mean(axis=1)
            add(site, layer, "diag_cos", observed, *mean_ci)
            add(site, layer, "offdiag_cos", float(m[~np.eye(k, dtype=bool)].mean()))
            add(site, layer, "perm_mean", float(der_means.mean()))
            add(site, layer, "perm_q95", float(np.quantile(der_means, 0.95)))
            add(site, layer, "perm_p", float(np.mean(perm_means >= observed - 1e-12)))
            add(site, layer, "random_mean", float(rand.mean()))
            add(site, layer, "random_q95", float(np.quantile(rand, 0.95)))
            add(site, layer, "random_p", (1 + int(np.sum(rand >= observed))) / (1 + n_random))
            for j, emotion in enumerate(crowd_em):
                add(site, layer, f"cos.{emotion}", float(diag[j]), *diag_ci[j])
            if sev_truth is not None:
                xs = sev_acts.site(site)[:, layer].double().numpy()[sev_keep]
                acc, hits, n = _projection_accuracy(xs, sev_truth, c)
                add(site, layer, "transfer_sev_by_crowd", acc, *wilson_interval(hits, n))
            if keep is not None:
                xc = np.asarray(crowd_acts[site][li][rows][keep], dtype=np.float64)
                acc, hits, n = _projection_accuracy(xc, index, s)
                add(site, layer, "transfer_crowd_by_sev", acc, *wilson_interval(hits, n))
        cosines[site] = np.stack(mats)
        diag_cis[site] = np.stack(cis)
    return CrossPaperResult(
        table=pd.DataFrame(records, columns=list(GEOMETRY_COLUMNS)),
        crowd_emotions=crowd_em,
        sev_emotions=sev_em,
        layers=crowd.layers,
        cosines=cosines,
        diag_ci=diag_cis,
        kind=crowd.kind,
        n_model_layers=n_model_layers or (max(crowd.layers) + 1),
        params={
            "n_boot": 0 if counts is None else n_boot,
            "n_random": n_random,
            "seed": seed,
            "chance": 1.0 / k,
            "n_sev_prompts": 0 if sev_truth is None else len(sev_truth),
            "n_crowd_texts": 0 if index is None else len(index),
        },
    )
