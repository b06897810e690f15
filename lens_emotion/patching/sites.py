"""Windowed activation patching over sites and center layers (Tak et al., ACL 2025, step 2).

For each site (``attn_out`` = MHSA output, ``mlp_out`` = FFN output, ``resid_post`` = hidden
state) and each center layer ``c``, the target's activation at the **last token** is
overwritten with the source's in layers ``c-w .. c+w`` (``span = 2w+1``; windows are clipped
at the first and last layer). The patched label scores give one outcome per pair:

* **transfer** - the patched prediction is the source's clean prediction;
* **remained** - it is still the target's clean prediction;
* **neither** - anything else.

Predictions use the pairs' calibration (the same per-label offset as the clean predictions,
see :mod:`lens_emotion.patching.pairs`). The **logit difference** is ``logit[source label] -
logit[target label]`` at the target's last token, with the labels being the two clean
predictions; ``logit_diff_change`` is patched minus clean (calibration offsets cancel). Every
rate has a seeded percentile-bootstrap 95% CI over pairs
(:func:`lens_emotion.stats.bootstrap_mean_ci`).

Sources are run once (their activations are cached); targets are run once per batch and only
the last position is recomputed per patch (see :mod:`lens_emotion.patching.fast`); models
without a fast path use batched full-sequence patching on the bridge
(:mod:`lens_emotion.patching.engines`), with the same results.

This module also holds what head patching (:mod:`.heads`) and ablations (:mod:`.ablation`)
share: the layer windows, the outcome codes and the source cache.

Example:
    >>> pairs = draw_pairs(model, dataset, n_pairs=200, seed=0)  # doctest: +SKIP
    >>> res = patch_sites(model, pairs, span=3)  # doctest: +SKIP
    >>> res.table.head()  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from lens_emotion.io import write_csv_atomic
from lens_emotion.patching.engines import clean_activations, resolve_method, run_variants
from lens_emotion.patching.fast import Variant
from lens_emotion.patching.pairs import PatchingError, PatchPairs
from lens_emotion.stats import bootstrap_mean_ci

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from lens_emotion.models import EmotionModel

__all__ = [
    "OUTCOMES",
    "PatchingResult",
    "SITES",
    "TABLE_COLUMNS",
    "bootstrap_ci",
    "check_sites",
    "outcomes",
    "pair_provider",
    "patch_pair_variants",
    "patch_sites",
    "predictions",
    "source_cache",
    "unique_rows",
    "windows",
]

SITES: tuple[str, ...] = ("attn_out", "mlp_out", "resid_post")
"""MHSA output, FFN output and hidden state, as in the paper."""

TABLE_COLUMNS: tuple[str, ...] = (
    "site",
    "center_layer",
    "span",
    "transfer",
    "remained",
    "neither",
    "transfer_ci_low",
    "transfer_ci_high",
    "mean_logit_diff_change",
)
"""Columns of :attr:`PatchingResult.table` (and of ``patching.csv``)."""

OUTCOMES: tuple[str, ...] = ("transfer", "remained", "neither")
"""Outcome names, indexed by the codes :func:`outcomes` returns (0, 1, 2)."""


# --------------------------------------------------------------------------- shared helpers


def windows(
    n_layers: int, span: int, center_layers: Sequence[int] | None = None
) -> list[tuple[int, tuple[int, ...]]]:
    """``(center, layers)`` windows of ``span`` layers, clipped to ``0 .. n_layers-1``.

    Raises:
        PatchingError: ``span`` is not a positive odd number, or a center is out of range.
    """
    if span < 1 or span % 2 == 0:
        raise PatchingError(f"span must be a positive odd number (1, 3, 5 ...), got {span}.")
    centers = list(range(n_layers)) if center_layers is None else [int(c) for c in center_layers]
    bad = [c for c in centers if not 0 <= c < n_layers]
    if bad or not centers:
        raise PatchingError(
            f"center layers {bad or centers} are out of range for a {n_layers}-layer model; "
            f"pass layers in 0..{n_layers - 1}."
        )
    half = span // 2
    return [
        (c, tuple(range(max(0, c - half), min(n_layers, c + half + 1)))) for c in sorted(centers)
    ]


def bootstrap_ci(
    values: Float[np.ndarray, "n k"] | Float[np.ndarray, " n"],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[Float[np.ndarray, " k"], Float[np.ndarray, " k"]]:
    """Percentile bootstrap CI of the column means of ``values`` (rows resampled together).

    The interval of :func:`lens_emotion.stats.bootstrap_mean_ci` (the same draws); a 1-D
    ``values`` is one column.

    Returns:
        ``(low, high)`` arrays with one entry per column.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    _, low, high = bootstrap_mean_ci(values, n_boot=n_boot, seed=seed, level=level)
    return low, high


def check_sites(sites: Sequence[str]) -> tuple[str, ...]:
    """``sites`` as a tuple, each one of :data:`SITES`.

    Raises:
        PatchingError: An unknown site, or none.
    """
    sites = tuple(sites)
    bad = [s for s in sites if s not in SITES]
    if bad or not sites:
        raise PatchingError(f"Unknown sites {bad or list(sites)}; choose from {list(SITES)}.")
    return sites


def unique_rows(
    tokens: Sequence[Sequence[int]],
) -> tuple[list[tuple[int, ...]], Int[np.ndarray, " n"]]:
    """Unique prompts and, for each input, its index among them."""
    index: dict[tuple[int, ...], int] = {}
    where = np.array([index.setdefault(tuple(t), len(index)) for t in tokens], dtype=np.int64)
    return list(index), where


def predictions(
    logits: Float[np.ndarray, "*batch n_labels"], offset: Float[np.ndarray, " n_labels"]
) -> Int[np.ndarray, "*batch"]:
    """Calibrated predictions: the argmax of ``logits - offset`` over labels."""
    return np.argmax(logits - offset, axis=-1)


def outcomes(
    patched: Float[np.ndarray, "n m n_labels"],
    clean: Float[np.ndarray, "n n_labels"],
    pairs: PatchPairs,
) -> tuple[
    Int[np.ndarray, "n m"],
    Int[np.ndarray, "n m"],
    Float[np.ndarray, "n m"],
    Float[np.ndarray, " n"],
]:
    """Per-pair outcomes of patched runs.

    Returns:
        Outcome codes (0 transfer, 1 remained, 2 neither) and patched predictions, both
        ``[n, m]``, logit-diff changes ``[n, m]`` and clean logit diffs ``[n]``.
    """
    src = pairs.source_label_idx
    tgt = pairs.target_label_idx
    rows = np.arange(len(pairs))
    pred = predictions(patched, pairs.calibration_offset)
    code = np.full(pred.shape, 2, dtype=np.int64)
    code[pred == tgt[:, None]] = 1
    code[pred == src[:, None]] = 0
    clean_diff = clean[rows, src] - clean[rows, tgt]
    patched_diff = patched[rows, :, src] - patched[rows, :, tgt]
    return code, pred, patched_diff - clean_diff[:, None], clean_diff


def pair_provider(
    acts: dict[str, Tensor], source_index: Tensor
) -> Callable[[Variant, int, Tensor], Tensor]:
    """The value provider that writes each pair's source activation into its target run."""

    def provider(variant: Variant, layer: int, rows: Tensor) -> Tensor:
        value = acts[variant.site][layer][source_index[rows]]
        return value if variant.head is None else value[:, variant.head]

    return provider


def source_cache(
    model: EmotionModel, pairs: PatchPairs, method: str, batch_size: int, progress: bool
) -> tuple[dict[str, Tensor], Tensor]:
    """Clean last-position activations of the distinct sources, and each pair's index into them."""
    unique, where = unique_rows(pairs.source_tokens)
    acts, _ = clean_activations(
        model, unique, pairs.label_token_ids, method, batch_size=batch_size, progress=progress
    )
    return acts, torch.as_tensor(where, device=model.device)


def patch_pair_variants(
    model: EmotionModel,
    pairs: PatchPairs,
    variants: Sequence[Variant],
    method: str,
    *,
    batch_size: int,
    max_rows: int,
    progress: bool,
) -> tuple[Float[np.ndarray, "n m n_labels"], Float[np.ndarray, "n n_labels"]]:
    """Patch each pair's source activation into its target run, for every variant.

    The shared core of :func:`patch_sites` and :func:`~.heads.patch_heads`: the clean source
    activations (:func:`source_cache`), then :func:`~.engines.run_variants` with
    :func:`pair_provider`.

    Returns:
        The patched label logits per (pair, variant) and the clean ones per pair.
    """
    acts, source_index = source_cache(model, pairs, method, batch_size, progress)
    return run_variants(
        model,
        pairs.target_tokens,
        variants,
        pair_provider(acts, source_index),
        pairs.label_token_ids,
        method,
        max_rows=max_rows,
        progress=progress,
    )


# --------------------------------------------------------------------------- site patching


@dataclass(frozen=True)
class PatchingResult:
    """Outcome of windowed patching over sites and center layers.

    Attributes:
        table: One row per (site, center layer): :data:`TABLE_COLUMNS`.
        per_pair: One row per (site, center layer, pair): ``site, center_layer, span, pair,
            outcome, logit_diff_change`` plus ``patched_prediction`` and ``logit_diff``.
        pairs: The pairs.
        span: Window size.
        method: Engine used (``"fast"``, ``"bridge"`` or ``"reference"``).
        seconds: Wall time (clean runs and patched runs).
        clean_logit_diff: Clean logit difference of each pair (target run).
        n_clean_mismatch: Pairs whose target's clean prediction under this engine differs from
            the one recorded in ``pairs`` (near-ties; 0 expected).
        n_patched_runs: Patched (pair, window) runs computed.
    """

    table: pd.DataFrame
    per_pair: pd.DataFrame = field(repr=False)
    pairs: PatchPairs = field(repr=False)
    span: int
    method: str
    seconds: float
    clean_logit_diff: np.ndarray = field(repr=False)
    n_clean_mismatch: int = 0
    n_patched_runs: int = 0

    def curve(self, site: str) -> pd.DataFrame:
        """Rows of :attr:`table` for one site, by center layer."""
        return self.table[self.table.site == site].sort_values("center_layer")

    def peaks(self) -> pd.DataFrame:
        """Per site: the center layer with the highest transfer rate and its relative depth."""
        n_layers = int(self.table.center_layer.max()) + 1
        rows = []
        for site, group in self.table.groupby("site", sort=False):
            best = group.loc[group.transfer.idxmax()]
            rows.append(
                {
                    "site": site,
                    "peak_layer": int(best.center_layer),
                    "peak_transfer": float(best.transfer),
                    "peak_ci_low": float(best.transfer_ci_low),
                    "peak_ci_high": float(best.transfer_ci_high),
                    "relative_depth": round(float(best.center_layer) / max(1, n_layers - 1), 3),
                }
            )
        return pd.DataFrame(rows)

    def to_frame(self) -> pd.DataFrame:
        """:attr:`table` as a new DataFrame (a copy the caller may edit)."""
        return self.table.copy()

    def save(self, out: str | Path) -> list[Path]:
        """Write ``patching.csv`` (the table), ``patching_per_pair.csv`` and ``pairs.csv``.

        Returns:
            The paths written.
        """
        frames = {
            "patching.csv": self.table,
            "patching_per_pair.csv": self.per_pair,
            "pairs.csv": self.pairs.to_frame(),
        }
        return [write_csv_atomic(Path(out) / name, frame) for name, frame in frames.items()]

    def figure(self, title: str | None = None) -> go.Figure:
        """Transfer rate against center layer, one line per site (with 95% CI bands)."""
        from lens_emotion.patching.figures import transfer_figure

        return transfer_figure(self.table, title=title or self._title())

    def _title(self) -> str:
        return (
            f"Activation patching ({self.pairs.template.name}, span {self.span}): "
            f"transfer rate, {len(self.pairs)} pairs"
        )

    def summary(self) -> dict[str, Any]:
        """Headline numbers, JSON-ready: engine, counts and the peak transfer per site."""
        return {
            "span": self.span,
            "method": self.method,
            "seconds": round(self.seconds, 2),
            "n_pairs": len(self.pairs),
            "n_patched_runs": self.n_patched_runs,
            "n_clean_mismatch": self.n_clean_mismatch,
            "peaks": self.peaks().to_dict(orient="records"),
        }

    def describe(self) -> dict[str, Any]:
        """The same as :meth:`summary` (the manifest's ``patching`` entry)."""
        return self.summary()


def patch_sites(
    model: EmotionModel,
    pairs: PatchPairs,
    sites: Sequence[str] = SITES,
    layers: Sequence[int] | None = None,
    span: int = 3,
    method: str = "auto",
    n_boot: int = 1000,
    seed: int | None = None,
    max_rows: int = 2048,
    batch_size: int = 16,
    progress: bool = True,
) -> PatchingResult:
    """Windowed activation patching over sites and center layers.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        pairs: Pairs from :func:`~lens_emotion.patching.pairs.draw_pairs`.
        sites: Any of :data:`SITES`.
        layers: Center layers (default: all).
        span: Window size (odd: 1, 3, 5 ...).
        method: ``"auto"`` (fast last-position path where verified, else full-sequence),
            ``"fast"``, ``"bridge"`` or ``"reference"`` (batch 1, one forward per pair per
            window: slow, for checks).
        n_boot: Bootstrap resamples for the CIs.
        seed: Bootstrap seed (default: the pairs' seed).
        max_rows: Fast path: (pair, window) rows per batch (memory bound).
        batch_size: Prompts per clean forward pass.
        progress: Show progress bars.

    Returns:
        The :class:`PatchingResult`.

    Raises:
        PatchingError: Bad sites, span, layers or method, or no pairs.
    """
    sites = check_sites(sites)
    if len(pairs) == 0:
        raise PatchingError("No pairs to patch; draw some with draw_pairs().")
    chosen = resolve_method(model, method)
    grid = windows(model.n_layers, span, layers)
    variants = [Variant(site, window) for site in sites for _, window in grid]
    started = time.perf_counter()
    patched, clean = patch_pair_variants(
        model, pairs, variants, chosen, batch_size=batch_size, max_rows=max_rows, progress=progress
    )
    seconds = time.perf_counter() - started
    code, pred, change, clean_diff = outcomes(patched, clean, pairs)
    n = len(pairs)
    centers = [c for _ in sites for c, _ in grid]
    site_col = [s for s in sites for _ in grid]
    per_pair = pd.DataFrame(
        {
            "site": np.tile(site_col, n),
            "center_layer": np.tile(centers, n),
            "span": span,
            "pair": np.repeat(np.arange(n), len(variants)),
            "outcome": np.asarray(OUTCOMES)[code.reshape(-1)],
            "logit_diff_change": change.reshape(-1),
            "patched_prediction": np.asarray(pairs.labels)[pred.reshape(-1)],
            "logit_diff": (change + clean_diff[:, None]).reshape(-1),
        }
    )
    low, high = bootstrap_ci(
        (code == 0).astype(np.float64), n_boot=n_boot, seed=pairs.seed if seed is None else seed
    )
    table = pd.DataFrame(
        {
            "site": site_col,
            "center_layer": centers,
            "span": span,
            "transfer": (code == 0).mean(axis=0),
            "remained": (code == 1).mean(axis=0),
            "neither": (code == 2).mean(axis=0),
            "transfer_ci_low": low,
            "transfer_ci_high": high,
            "mean_logit_diff_change": change.mean(axis=0),
        }
    )
    clean_pred = predictions(clean, pairs.calibration_offset)
    return PatchingResult(
        table=table[list(TABLE_COLUMNS)],
        per_pair=per_pair,
        pairs=pairs,
        span=span,
        method=chosen,
        seconds=seconds,
        clean_logit_diff=clean_diff,
        n_clean_mismatch=int((clean_pred != pairs.target_label_idx).sum()),
        n_patched_runs=n * len(variants),
    )
