"""Head patching: one query head's ``hook_z`` at the last token, one (layer, head) at a time.

The source's attention output of a single query head at a single layer is written into the
target's run (see :mod:`lens_emotion.patching.sites` for pairs, outcomes and the logit
difference); the result is a layer x head map of mean logit-difference changes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from jaxtyping import Float

from lens_emotion.io import write_csv_atomic
from lens_emotion.patching.engines import resolve_method
from lens_emotion.patching.fast import Variant
from lens_emotion.patching.pairs import PatchingError, PatchPairs
from lens_emotion.patching.sites import (
    bootstrap_ci,
    outcomes,
    patch_pair_variants,
    windows,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from lens_emotion.models import EmotionModel

__all__ = ["HEAD_COLUMNS", "HeadPatchingResult", "patch_heads"]

HEAD_COLUMNS: tuple[str, ...] = (
    "layer",
    "head",
    "mean_logit_diff_change",
    "ci_low",
    "ci_high",
    "transfer",
)
"""Columns of :attr:`HeadPatchingResult.table` (and of ``heads.csv``)."""


@dataclass(frozen=True)
class HeadPatchingResult:
    """Per-head patching of ``hook_z`` (one query head at one layer at a time).

    Under grouped-query attention ``hook_z`` is the attention output *per query head* (after
    the key/value heads are shared out), so every one of the ``n_heads`` query heads is patched
    on its own, even though groups of them read the same key/value head.

    Attributes:
        effects: Mean change in logit difference (source label - target label) per
            ``[layer, head]``.
        per_pair: ``[n_pairs, n_layers, n_heads]`` changes in logit difference.
        transfer: Transfer rate per ``[layer, head]``.
        layers: The layers patched (rows of ``effects``).
        pairs: The pairs.
        method: Engine used.
        seconds: Wall time.
        n_boot: Bootstrap resamples for the CIs in :attr:`table`.
        seed: Bootstrap seed.
    """

    effects: Float[np.ndarray, "n_layers n_heads"]
    per_pair: Float[np.ndarray, "n_pairs n_layers n_heads"] = field(repr=False)
    transfer: Float[np.ndarray, "n_layers n_heads"] = field(repr=False)
    layers: tuple[int, ...]
    pairs: PatchPairs = field(repr=False)
    method: str
    seconds: float
    n_boot: int = 1000
    seed: int = 0

    @property
    def per_pair_effects(self) -> Float[np.ndarray, "n_pairs n_layers n_heads"]:
        """Alias of :attr:`per_pair`."""
        return self.per_pair

    @property
    def table(self) -> pd.DataFrame:
        """One row per (layer, head): :data:`HEAD_COLUMNS`, computed once.

        The mean logit-difference change with its bootstrap CI over pairs, and the transfer
        rate.
        """
        cached = self.__dict__.get("_table")
        if cached is None:
            cached = self._head_table()
            self.__dict__["_table"] = cached  # a cache, not state: the fields stay frozen
        return cached

    def _head_table(self) -> pd.DataFrame:
        n_layers, n_heads = self.effects.shape
        flat = self.per_pair.reshape(self.per_pair.shape[0], -1)
        low, high = bootstrap_ci(flat, n_boot=self.n_boot, seed=self.seed)
        return pd.DataFrame(
            {
                "layer": np.repeat(self.layers, n_heads),
                "head": np.tile(np.arange(n_heads), n_layers),
                "mean_logit_diff_change": self.effects.reshape(-1),
                "ci_low": low,
                "ci_high": high,
                "transfer": self.transfer.reshape(-1),
            }
        )

    def to_frame(self) -> pd.DataFrame:
        """:attr:`table` as a new DataFrame (a copy the caller may edit)."""
        return self.table.copy()

    def top(self, k: int = 10) -> pd.DataFrame:
        """The ``k`` heads with the largest mean change in logit difference."""
        return self.to_frame().nlargest(k, "mean_logit_diff_change")

    def save(self, out: str | Path) -> list[Path]:
        """Write ``heads.csv`` (the table) into ``out``; returns its path in a list."""
        return [write_csv_atomic(Path(out) / "heads.csv", self.table)]

    def figure(self, title: str | None = None) -> go.Figure:
        """Layer x head heatmap of the mean change in logit difference."""
        from lens_emotion.patching.figures import head_heatmap

        return head_heatmap(
            self.effects,
            self.layers,
            title=title
            or f"Head patching (hook_z, last token): mean change in logit difference, "
            f"{len(self.pairs)} pairs",
        )

    def summary(self) -> dict[str, Any]:
        """Headline numbers, JSON-ready: engine, counts and the strongest head."""
        best = self.table.loc[self.table.mean_logit_diff_change.idxmax()]
        return {
            "method": self.method,
            "seconds": round(self.seconds, 2),
            "n_pairs": len(self.pairs),
            "n_layers": len(self.layers),
            "n_heads": int(self.effects.shape[1]),
            "top_head": f"{int(best.layer)}.{int(best['head'])}",
            "top_mean_logit_diff_change": float(best.mean_logit_diff_change),
            "max_transfer": float(self.transfer.max()),
        }


def patch_heads(
    model: EmotionModel,
    pairs: PatchPairs,
    layers: Sequence[int] | None = None,
    method: str = "auto",
    n_boot: int = 1000,
    seed: int | None = None,
    max_rows: int = 2048,
    batch_size: int = 16,
    progress: bool = True,
) -> HeadPatchingResult:
    """Patch each query head's ``hook_z`` at the last token, one (layer, head) at a time.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        pairs: Pairs from :func:`~lens_emotion.patching.pairs.draw_pairs`.
        layers: Layers (default: all).
        method: See :func:`~lens_emotion.patching.sites.patch_sites`.
        n_boot: Bootstrap resamples (for the CIs of :attr:`HeadPatchingResult.table`).
        seed: Bootstrap seed (default: the pairs' seed).
        max_rows: Fast path: (pair, head) rows per batch.
        batch_size: Prompts per clean forward pass.
        progress: Show progress bars.

    Returns:
        The :class:`HeadPatchingResult`.
    """
    if len(pairs) == 0:
        raise PatchingError("No pairs to patch; draw some with draw_pairs().")
    chosen = resolve_method(model, method)
    layer_list = [c for c, _ in windows(model.n_layers, 1, layers)]
    n_heads = model.n_heads
    variants = [Variant("z", (layer,), head=h) for layer in layer_list for h in range(n_heads)]
    started = time.perf_counter()
    patched, clean = patch_pair_variants(
        model, pairs, variants, chosen, batch_size=batch_size, max_rows=max_rows, progress=progress
    )
    code, _, change, _ = outcomes(patched, clean, pairs)
    shape = (len(pairs), len(layer_list), n_heads)
    return HeadPatchingResult(
        effects=change.mean(axis=0).reshape(shape[1:]),
        per_pair=change.reshape(shape),
        transfer=(code == 0).mean(axis=0).reshape(shape[1:]),
        layers=tuple(layer_list),
        pairs=pairs,
        method=chosen,
        seconds=time.perf_counter() - started,
        n_boot=n_boot,
        seed=pairs.seed if seed is None else seed,
    )
