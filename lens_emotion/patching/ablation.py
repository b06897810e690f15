"""Ablations of last-token windows, and the control task's comparisons.

* :func:`ablate_sites` - zero, mean and random same-norm ablation of a window of last-token
  activations: how often does the clean prediction survive?
* :func:`compare_control` / :func:`compare_heads` - do the layers and heads that carry the
  emotion signal (:mod:`.sites`, :mod:`.heads`) matter for the non-emotional control task
  (``control-first-word``)?
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from lens_emotion.io import write_csv_atomic
from lens_emotion.patching.engines import clean_activations, resolve_method, run_variants
from lens_emotion.patching.fast import Variant
from lens_emotion.patching.heads import HeadPatchingResult
from lens_emotion.patching.pairs import PatchingError, PatchPairs
from lens_emotion.patching.sites import (
    SITES,
    PatchingResult,
    bootstrap_ci,
    check_sites,
    predictions,
    unique_rows,
    windows,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from lens_emotion.models import EmotionModel

__all__ = ["ABLATION_MODES", "AblationResult", "ablate_sites", "compare_control", "compare_heads"]

ABLATION_MODES: tuple[str, ...] = ("zero", "mean", "random")
"""Zero ablation, mean ablation and a random vector of the same norm."""


@dataclass(frozen=True)
class AblationResult:
    """How often the clean prediction survives ablating a window of last-token activations.

    Attributes:
        table: One row per (mode, site, center layer): ``mode, site, center_layer, span, kept,
            kept_ci_low, kept_ci_high, mean_logit_change`` (``kept`` = share of prompts whose
            prediction is unchanged; ``mean_logit_change`` = mean change of the clean label's
            logit minus the mean logit of the other labels).
        per_prompt: One row per (mode, site, center layer, prompt): ``kept``.
        n_prompts: Prompts ablated.
        span: Window size.
        method: Engine used.
        mean_over: Number of prompts the mean vectors were averaged over.
        seconds: Wall time.
    """

    table: pd.DataFrame
    per_prompt: pd.DataFrame = field(repr=False)
    n_prompts: int
    span: int
    method: str
    mean_over: int
    seconds: float

    def to_frame(self) -> pd.DataFrame:
        """:attr:`table` as a new DataFrame (a copy the caller may edit)."""
        return self.table.copy()

    def save(self, out: str | Path) -> list[Path]:
        """Write ``ablations.csv`` (the table) into ``out``; returns its path in a list."""
        return [write_csv_atomic(Path(out) / "ablations.csv", self.table)]

    def figure(self, title: str | None = None) -> go.Figure:
        """Kept rate against center layer: one line per site, one panel per mode."""
        from lens_emotion.patching.figures import ablation_figure

        return ablation_figure(
            self.table,
            title=title
            or f"Ablation (span {self.span}): share of {self.n_prompts} prompts whose "
            "prediction is kept",
        )

    def summary(self) -> dict[str, Any]:
        """Headline numbers, JSON-ready: counts, and per mode and site the lowest kept rate."""
        lowest = []
        for (mode, site), group in self.table.groupby(["mode", "site"], sort=False):
            worst = group.loc[group.kept.idxmin()]
            lowest.append(
                {
                    "mode": mode,
                    "site": site,
                    "center_layer": int(worst.center_layer),
                    "kept": float(worst.kept),
                }
            )
        return {
            "span": self.span,
            "method": self.method,
            "seconds": round(self.seconds, 2),
            "n_prompts": self.n_prompts,
            "mean_over": self.mean_over,
            "lowest_kept": lowest,
        }


def ablate_sites(
    model: EmotionModel,
    pairs: PatchPairs,
    modes: Sequence[str] = ABLATION_MODES,
    sites: Sequence[str] = SITES,
    layers: Sequence[int] | None = None,
    span: int = 3,
    mean_over: Sequence[Sequence[int]] | None = None,
    method: str = "auto",
    n_boot: int = 1000,
    seed: int | None = None,
    max_rows: int = 2048,
    batch_size: int = 16,
    progress: bool = True,
) -> AblationResult:
    """Zero, mean and random same-norm ablation of last-token windows.

    Every distinct prompt of ``pairs`` (sources and targets, with their clean calibrated
    predictions) is ablated: at each layer of the window, the last-token activation of the
    site is replaced by zeros, by its mean over ``mean_over`` prompts, or by a random direction
    scaled to the norm of the clean activation it replaces (seeded; one direction per prompt,
    site and layer).

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        pairs: Pairs from :func:`~lens_emotion.patching.pairs.draw_pairs`.
        modes: Any of :data:`ABLATION_MODES`.
        sites: Any of :data:`SITES`.
        layers: Center layers (default: all).
        span: Window size.
        mean_over: Prompts (token ids) the mean vectors average over (default: the ablated
            prompts themselves, i.e. the dataset rows in the pairs).
        method: See :func:`~lens_emotion.patching.sites.patch_sites`.
        n_boot: Bootstrap resamples.
        seed: Seed of the random directions and the bootstrap (default: the pairs' seed).
        max_rows: Fast path: (prompt, window) rows per batch.
        batch_size: Prompts per clean forward pass.
        progress: Show progress bars.

    Returns:
        The :class:`AblationResult`.
    """
    sites = check_sites(sites)
    bad = [m for m in modes if m not in ABLATION_MODES]
    if bad or not modes:
        raise PatchingError(f"Unknown ablation modes {bad}; choose from {list(ABLATION_MODES)}.")
    chosen = resolve_method(model, method)
    grid = windows(model.n_layers, span, layers)
    seed = pairs.seed if seed is None else seed
    started = time.perf_counter()
    tokens, where = unique_rows(list(pairs.source_tokens) + list(pairs.target_tokens))
    both = np.concatenate([pairs.source_label_idx, pairs.target_label_idx])
    clean_idx = np.empty(len(tokens), dtype=np.int64)
    clean_idx[where] = both
    label_ids = pairs.label_token_ids
    acts, _ = clean_activations(model, tokens, label_ids, chosen, batch_size, progress)
    if mean_over is None:
        means = {s: acts[s].mean(dim=1) for s in sites}
        n_mean = len(tokens)
    else:
        mean_acts, _ = clean_activations(model, list(mean_over), label_ids, chosen, batch_size)
        means = {s: mean_acts[s].mean(dim=1) for s in sites}
        n_mean = len(mean_over)
    generator = torch.Generator().manual_seed(seed)
    directions = {}
    for s in sites:
        d = torch.randn(model.n_layers, len(tokens), acts[s].shape[-1], generator=generator)
        d = d / d.norm(dim=-1, keepdim=True)
        directions[s] = (d.to(acts[s]) * acts[s].norm(dim=-1, keepdim=True)).to(acts[s].dtype)

    def provider(variant: Variant, layer: int, rows: Tensor) -> Tensor:
        if variant.kind == "zero":
            return acts[variant.site].new_zeros(len(rows), acts[variant.site].shape[-1])
        if variant.kind == "mean":
            return means[variant.site][layer].expand(len(rows), -1)
        return directions[variant.site][layer][rows]

    variants = [Variant(s, w, kind=mode) for mode in modes for s in sites for _, w in grid]
    patched, clean = run_variants(
        model, tokens, variants, provider, label_ids, chosen, max_rows=max_rows, progress=progress
    )
    offset = pairs.calibration_offset
    kept = predictions(patched, offset) == clean_idx[:, None]
    rows = np.arange(len(tokens))

    def margin(own: np.ndarray, total: np.ndarray, n_labels: int) -> np.ndarray:
        return own - (total - own) / (n_labels - 1)

    n_labels = clean.shape[-1]
    patched_margin = margin(patched[rows, :, clean_idx], patched.sum(-1), n_labels)
    clean_margin = margin(clean[rows, clean_idx], clean.sum(-1), n_labels)
    change = patched_margin - clean_margin[:, None]
    low, high = bootstrap_ci(kept.astype(np.float64), n_boot=n_boot, seed=seed)
    modes_col = [v.kind for v in variants]
    sites_col = [v.site for v in variants]
    centers = [c for _ in modes for _ in sites for c, _ in grid]
    table = pd.DataFrame(
        {
            "mode": modes_col,
            "site": sites_col,
            "center_layer": centers,
            "span": span,
            "kept": kept.mean(axis=0),
            "kept_ci_low": low,
            "kept_ci_high": high,
            "mean_logit_change": change.mean(axis=0),
        }
    )
    per_prompt = pd.DataFrame(
        {
            "mode": np.tile(modes_col, len(tokens)),
            "site": np.tile(sites_col, len(tokens)),
            "center_layer": np.tile(centers, len(tokens)),
            "prompt": np.repeat(rows, len(variants)),
            "kept": kept.reshape(-1),
        }
    )
    return AblationResult(
        table=table,
        per_prompt=per_prompt,
        n_prompts=len(tokens),
        span=span,
        method=chosen,
        mean_over=n_mean,
        seconds=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------- control task


def compare_control(
    emotion: PatchingResult, control: PatchingResult, threshold: float = 0.5
) -> pd.DataFrame:
    """Do the layers that carry the emotion signal matter for the control task?

    For each site, the *emotion layers* are the center layers where the emotion task's
    transfer rate reaches ``threshold`` x its peak. The table compares both tasks there and
    elsewhere.

    Returns:
        One row per site: ``site, emotion_peak_layer, emotion_peak_transfer,
        control_transfer_at_emotion_peak`` (with its CI), ``emotion_layers`` (as text),
        ``emotion_mean_in_layers, control_mean_in_layers, control_mean_elsewhere,
        control_peak_layer, control_peak_transfer``.
    """
    rows = []
    for site in emotion.table.site.unique():
        emo = emotion.curve(site).set_index("center_layer")
        ctl = control.curve(site).set_index("center_layer")
        common = emo.index.intersection(ctl.index)
        emo, ctl = emo.loc[common], ctl.loc[common]
        peak = int(emo.transfer.idxmax())
        strong = emo.index[emo.transfer >= threshold * emo.transfer.max()]
        if emo.transfer.max() <= 0:
            strong = emo.index[:0]
        other = emo.index.difference(strong)
        rows.append(
            {
                "site": site,
                "emotion_peak_layer": peak,
                "emotion_peak_transfer": float(emo.transfer[peak]),
                "control_transfer_at_emotion_peak": float(ctl.transfer[peak]),
                "control_ci_low_at_emotion_peak": float(ctl.transfer_ci_low[peak]),
                "control_ci_high_at_emotion_peak": float(ctl.transfer_ci_high[peak]),
                "emotion_layers": " ".join(str(int(c)) for c in strong),
                "emotion_mean_in_layers": float(emo.transfer[strong].mean())
                if len(strong)
                else float("nan"),
                "control_mean_in_layers": float(ctl.transfer[strong].mean())
                if len(strong)
                else float("nan"),
                "control_mean_elsewhere": float(ctl.transfer[other].mean())
                if len(other)
                else float("nan"),
                "control_peak_layer": int(ctl.transfer.idxmax()),
                "control_peak_transfer": float(ctl.transfer.max()),
            }
        )
    return pd.DataFrame(rows)


def compare_heads(
    emotion: HeadPatchingResult, control: HeadPatchingResult, k: int = 10
) -> dict[str, Any]:
    """Are the heads that move the emotion answer the ones that move the control answer?

    Logit differences of the two tasks are on different label sets, so only scale-free
    statistics are compared: Pearson and Spearman correlation of the two ``[layer, head]``
    effect maps, and the overlap of their ``k`` strongest heads (by mean effect).

    Returns:
        ``pearson``, ``spearman``, ``k``, ``emotion_top`` and ``control_top`` (as
        ``"layer.head"`` strings) and ``overlap`` (how many of the top ``k`` are shared).
    """
    from scipy.stats import pearsonr, spearmanr

    if emotion.effects.shape != control.effects.shape:
        raise PatchingError(
            f"Head maps differ in shape ({emotion.effects.shape} vs {control.effects.shape}); "
            "patch the same layers in both tasks."
        )
    a, b = emotion.effects.reshape(-1), control.effects.reshape(-1)

    def top(result: HeadPatchingResult) -> list[str]:
        frame = result.to_frame().nlargest(k, "mean_logit_diff_change")
        return [f"{int(r.layer)}.{int(r.head)}" for r in frame.itertuples()]

    emotion_top, control_top = top(emotion), top(control)
    return {
        "pearson": float(pearsonr(a, b)[0]),
        "spearman": float(spearmanr(a, b)[0]),
        "k": k,
        "emotion_top": emotion_top,
        "control_top": control_top,
        "overlap": len(set(emotion_top) & set(control_top)),
    }
