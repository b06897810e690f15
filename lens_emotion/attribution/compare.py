"""AtP against real single-layer activation patching: correlations, disagreements, cost.

:func:`compare_with_patching` puts the AtP estimate of every component next to the effect of
really patching it (``patch_sites(..., span=1)`` per site and layer, ``patch_heads`` per query
head, on the same pairs), correlates the two per site and for heads (Pearson and Spearman,
over the per-component means and over every pair), lists where they disagree most, and
reports both methods' cost in forward-pass equivalents. The result is a
:class:`PatchingComparison`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from lens_emotion.attribution.atp import (
    HEAD_SITE,
    AttributionError,
    AttributionResult,
    patching_cost,
)
from lens_emotion.io import write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from lens_emotion.patching import HeadPatchingResult, PatchingResult

__all__ = ["PatchingComparison", "compare_with_patching"]


def _correlate(x: np.ndarray | pd.Series, y: np.ndarray | pd.Series) -> dict[str, float | int]:
    """Pearson and Spearman correlation (with p-values) of two equally long vectors."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out: dict[str, float | int] = {"n": int(len(x))}
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        out.update(pearson=math.nan, pearson_p=math.nan, spearman=math.nan, spearman_p=math.nan)
        return out
    pearson = stats.pearsonr(x, y)
    spearman = stats.spearmanr(x, y)
    out.update(
        pearson=float(pearson.statistic),
        pearson_p=float(pearson.pvalue),
        spearman=float(spearman.statistic),
        spearman_p=float(spearman.pvalue),
        sign_agreement=float(np.mean(np.sign(x) == np.sign(y))),
    )
    return out


def _finite_or_none(obj: Any) -> Any:
    """Replace NaN/inf floats by ``None`` in nested dicts/lists (strict JSON)."""
    if isinstance(obj, dict):
        return {key: _finite_or_none(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_none(value) for value in obj]
    if isinstance(obj, float | np.floating) and not math.isfinite(float(obj)):
        return None
    return obj


def _site_patch_frame(site_patching: Any) -> pd.DataFrame:
    """Per-pair span-1 patching effects as (site, layer, pair, patch_effect)."""
    frame = getattr(site_patching, "per_pair", site_patching)
    if callable(frame):
        frame = frame()
    if not isinstance(frame, pd.DataFrame):
        raise AttributionError(
            f"site_patching must be a patch_sites() result or its per_pair DataFrame, got "
            f"{type(site_patching).__name__}."
        )
    layer_col = "center_layer" if "center_layer" in frame.columns else "layer"
    needed = {"site", layer_col, "pair", "logit_diff_change"}
    if not needed <= set(frame.columns):
        raise AttributionError(
            f"The patching table lacks columns {sorted(needed - set(frame.columns))}; pass the "
            "per_pair frame of lens_emotion.patching.patch_sites(...)."
        )
    if "span" in frame.columns:
        spans = sorted(set(frame["span"]))
        frame = frame[frame["span"] == 1]
        if frame.empty:
            raise AttributionError(
                f"The patching table has spans {spans} but AtP estimates single-layer patches: "
                "run patch_sites(model, pairs, span=1) for the comparison."
            )
    return frame.rename(columns={layer_col: "layer", "logit_diff_change": "patch_effect"})[
        ["site", "layer", "pair", "patch_effect"]
    ]


def _head_patch_array(head_patching: Any, n_pairs: int) -> np.ndarray:
    """Real head effects as ``(n_layers, n_heads)`` means or ``(n_pairs, n_layers, n_heads)``."""
    array = None
    for name in ("per_pair_effects", "per_pair"):
        value = getattr(head_patching, name, None)
        if isinstance(value, np.ndarray | torch.Tensor) and value.ndim == 3:
            array = np.asarray(value, dtype=float)
            break
    if array is None:
        array = np.asarray(getattr(head_patching, "effects", head_patching), dtype=float)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[0] != n_pairs):
        raise AttributionError(
            f"head_patching must give (n_layers, n_heads) mean effects or (n_pairs={n_pairs}, "
            f"n_layers, n_heads) per-pair effects, got shape {array.shape}; pass the result of "
            "lens_emotion.patching.patch_heads(model, pairs) on the same pairs."
        )
    return array


@dataclass(frozen=True)
class PatchingComparison:
    """AtP estimates next to real single-layer patching effects.

    Attributes:
        points: Mean over pairs per component: site, layer, head, atp_effect, patch_effect,
            error (atp - patch), abs_error.
        pair_points: The same per pair (columns pair, site, layer, head, atp_effect,
            patch_effect) where per-pair real effects were given.
        correlations: Per site, ``"sites"`` (all per-layer sites pooled) and ``"z"`` (heads):
            Pearson and Spearman over the per-component means (``pearson``, ``spearman``,
            ``n`` ...) and, under ``"per_pair"``, over every (pair, component).
        cost: :func:`~lens_emotion.attribution.atp.patching_cost` of both methods (plus
            measured seconds when given).
    """

    points: pd.DataFrame
    pair_points: pd.DataFrame | None
    correlations: dict[str, Any]
    cost: dict[str, Any]

    @property
    def table(self) -> pd.DataFrame:
        """The main table: :attr:`points` (one row per component)."""
        return self.points

    def to_frame(self) -> pd.DataFrame:
        """The :attr:`table` as a new DataFrame."""
        return self.points.copy()

    def summary(self) -> dict[str, Any]:
        """Headline numbers: the correlations and the cost ratio.

        Pearson, Spearman and ``n`` per site, for the pooled sites and for heads (over the
        component means, and over every pair under ``per_pair``). NaN correlations (too few
        points, or a constant side) become ``None``.
        """
        keep = ("pearson", "spearman", "n")
        correlations = {}
        for key, corr in self.correlations.items():
            entry = {name: corr[name] for name in keep if name in corr}
            if "per_pair" in corr:
                entry["per_pair"] = {name: corr["per_pair"][name] for name in keep}
            correlations[key] = entry
        headline = {
            "n_pairs": self.cost.get("n_pairs"),
            "correlations": correlations,
            "atp_fpe": self.cost.get("atp_fpe"),
            "patching_fpe": self.cost.get("patching_fpe"),
            "fpe_ratio": self.cost.get("ratio"),
        }
        if "seconds_ratio" in self.cost:
            headline["seconds_ratio"] = self.cost["seconds_ratio"]
        return _finite_or_none(headline)

    def disagreements(self, k: int = 10) -> pd.DataFrame:
        """The ``k`` components whose AtP estimate and real effect differ most (abs_error)."""
        return self.points.sort_values("abs_error", ascending=False).head(k).reset_index(drop=True)

    def figure(self, title: str | None = None, level: str = "mean") -> go.Figure:
        """Scatter of AtP estimate against the real patch effect, coloured by site.

        Left panel: per-layer sites; right panel: heads. The dashed line is ``y = x``; legend
        entries and panel titles give Pearson ``r`` and Spearman ``ρ`` at the same level.

        Args:
            title: Figure title.
            level: ``"mean"`` (one point per component, mean over pairs) or ``"pair"`` (one
                point per pair and component).

        Raises:
            AttributionError: Unknown level, or ``"pair"`` without per-pair real effects.

        See :func:`lens_emotion.attribution.figures.comparison_figure`.
        """
        from lens_emotion.attribution.figures import comparison_figure

        return comparison_figure(self, title=title, level=level)

    def save(self, out: str | Path, manifest: Mapping[str, Any] | None = None) -> list[Path]:
        """Write the comparison's JSON and CSV.

        ``attribution_vs_patching.json`` holds correlations, cost, the top disagreements and
        the manifest; ``attribution_vs_patching.csv`` the per-component points.
        """
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        payload = self.to_json()
        if manifest is not None:
            payload["manifest"] = dict(manifest)
        return [
            write_json_atomic(out / "attribution_vs_patching.json", payload),
            write_text_atomic(out / "attribution_vs_patching.csv", self.points.to_csv(index=False)),
        ]

    def to_json(self) -> dict[str, Any]:
        """Correlations, cost and the top disagreements as a JSON-friendly dict."""
        top = self.disagreements(15).astype(object).where(lambda f: f.notna(), None)
        return _finite_or_none(
            {
                "correlations": self.correlations,
                "cost": self.cost,
                "disagreements": top.to_dict(orient="records"),
            }
        )


def compare_with_patching(
    atp: AttributionResult,
    site_patching: PatchingResult | pd.DataFrame,
    head_patching: HeadPatchingResult | np.ndarray | None = None,
    *,
    patching_seconds: float | None = None,
) -> PatchingComparison:
    """Correlate AtP estimates with real single-layer patching effects.

    Args:
        atp: AtP on the same pairs (same order) as the patching runs.
        site_patching: ``patch_sites(model, pairs, span=1, ...)`` (or its ``per_pair`` frame
            with columns site, center_layer/layer, pair, logit_diff_change; span-1 rows are
            used).
        head_patching: ``patch_heads(model, pairs)`` (``(n_layers, n_heads)`` mean effects,
            or per-pair ``(n_pairs, n_layers, n_heads)``), optional.
        patching_seconds: Wall time of the real patching, reported next to AtP's.

    Returns:
        The :class:`PatchingComparison`.

    Raises:
        AttributionError: No site or layer in common, pair indices outside the AtP pairs,
            wrong head shapes.
    """
    real = _site_patch_frame(site_patching)
    bad_pairs = sorted(set(real["pair"]) - set(range(atp.n_pairs)))
    if bad_pairs:
        raise AttributionError(
            f"The patching table holds pairs {bad_pairs[:5]} that AtP did not score "
            f"({atp.n_pairs} pairs); run both on the same PatchPairs."
        )
    est = atp.per_pair()
    site_rows = est[est.site != HEAD_SITE].drop(columns="head")
    pair_points = site_rows.merge(real, on=["site", "layer", "pair"], how="inner")
    if pair_points.empty:
        raise AttributionError(
            f"No (site, layer) in common: AtP scored {list(atp.sites)} at layers "
            f"{list(atp.layers)[:3]}..., patching holds {sorted(set(real.site))} at layers "
            f"{sorted(set(real.layer))[:3]}...."
        )
    pair_points["head"] = pd.array([pd.NA] * len(pair_points), dtype="Int64")
    points = (
        pair_points.groupby(["site", "layer"], sort=False)[["atp_effect", "patch_effect"]]
        .mean()
        .reset_index()
    )
    points["head"] = pd.array([pd.NA] * len(points), dtype="Int64")
    correlations: dict[str, Any] = {}
    for site in dict.fromkeys(points.site):
        m, p = points[points.site == site], pair_points[pair_points.site == site]
        correlations[site] = {
            **_correlate(m.atp_effect, m.patch_effect),
            "per_pair": _correlate(p.atp_effect, p.patch_effect),
        }
    correlations["sites"] = {
        **_correlate(points.atp_effect, points.patch_effect),
        "per_pair": _correlate(pair_points.atp_effect, pair_points.patch_effect),
    }
    frames, pair_frames = [points], [pair_points]
    if head_patching is not None:
        if atp.head_effects is None:
            raise AttributionError("head_patching was given but AtP ran with heads=False.")
        real_heads = _head_patch_array(head_patching, atp.n_pairs)
        if real_heads.shape[-1] != atp.n_heads:
            raise AttributionError(
                f"Head effects have shape {real_heads.shape}; expected (..., n_layers, "
                f"{atp.n_heads}) for this model's {atp.n_heads} query heads."
            )
        head_layers = tuple(getattr(head_patching, "layers", range(real_heads.shape[-2])))
        if len(head_layers) != real_heads.shape[-2]:
            raise AttributionError(
                f"Head effects cover {real_heads.shape[-2]} layers but name {len(head_layers)}."
            )
        layer_idx = [layer for layer in head_layers if layer in atp.layers]
        if not layer_idx:
            raise AttributionError(
                f"No layer in common between head patching {list(head_layers)[:5]}... and AtP "
                f"{list(atp.layers)[:5]}...."
            )
        real_heads = real_heads[..., [head_layers.index(layer) for layer in layer_idx], :]
        atp_heads = atp.head_effects[:, [atp.layers.index(layer) for layer in layer_idx]]
        heads = np.arange(atp.n_heads)
        layer_grid, head_grid = np.meshgrid(np.asarray(layer_idx), heads, indexing="ij")
        mean_real = real_heads.mean(axis=0) if real_heads.ndim == 3 else real_heads
        head_points = pd.DataFrame(
            {
                "site": HEAD_SITE,
                "layer": layer_grid.ravel(),
                "head": pd.array(head_grid.ravel(), dtype="Int64"),
                "atp_effect": atp_heads.mean(axis=0).ravel(),
                "patch_effect": mean_real.ravel(),
            }
        )
        frames.append(head_points)
        correlations[HEAD_SITE] = _correlate(head_points.atp_effect, head_points.patch_effect)
        if real_heads.ndim == 3:
            n = atp.n_pairs
            pair_heads = pd.DataFrame(
                {
                    "pair": np.repeat(np.arange(n), layer_grid.size),
                    "site": HEAD_SITE,
                    "layer": np.tile(layer_grid.ravel(), n),
                    "head": pd.array(np.tile(head_grid.ravel(), n), dtype="Int64"),
                    "atp_effect": atp_heads.reshape(n, -1).ravel(),
                    "patch_effect": real_heads.reshape(n, -1).ravel(),
                }
            )
            pair_frames.append(pair_heads)
            correlations[HEAD_SITE]["per_pair"] = _correlate(
                pair_heads.atp_effect, pair_heads.patch_effect
            )
    all_points = pd.concat(frames, ignore_index=True)
    all_points["error"] = all_points.atp_effect - all_points.patch_effect
    all_points["abs_error"] = all_points.error.abs()
    cols = ["site", "layer", "head", "atp_effect", "patch_effect", "error", "abs_error"]
    n_sites = len(set(points.site))
    n_heads = atp.n_heads if head_patching is not None else 0
    cost = patching_cost(atp.n_pairs, len(atp.layers), n_sites, n_heads, atp=atp)
    if patching_seconds is not None:
        cost["patching_seconds"] = round(float(patching_seconds), 3)
        cost["seconds_ratio"] = patching_seconds / atp.seconds if atp.seconds else math.nan
    return PatchingComparison(
        points=all_points[cols],
        pair_points=pd.concat(pair_frames, ignore_index=True)[["pair", *cols[:5]]],
        correlations=correlations,
        cost=cost,
    )
