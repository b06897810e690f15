"""Windowed activation patching, head patching and ablations (Tak et al., ACL 2025, step 2).

For each site (``attn_out`` = MHSA output, ``mlp_out`` = FFN output, ``resid_post`` = hidden
state) and each center layer ``c``, the target's activation at the **last token** is
overwritten with the source's in layers ``c-w .. c+w`` (``span = 2w+1``; windows are clipped
at the first and last layer). The patched label scores give one outcome per pair:

* **transfer** - the patched prediction is the source's clean prediction;
* **remained** - it is still the target's clean prediction;
* **neither** - anything else.

Predictions use the pairs' calibration (the same per-label offset as the clean predictions,
see :mod:`lens_emotion.pairs`). The **logit difference** is ``logit[source label] -
logit[target label]`` at the target's last token, with the labels being the two clean
predictions; ``logit_diff_change`` is patched minus clean (calibration offsets cancel). Every
rate has a seeded percentile-bootstrap 95% CI over pairs.

Sources are run once (their activations are cached); targets are run once per batch and only
the last position is recomputed per patch (see :mod:`lens_emotion.patching_fast`); models
without a fast path use batched full-sequence patching on the bridge
(:mod:`lens_emotion.patching_engines`), with the same results.

Example:
    >>> pairs = draw_pairs(model, dataset, n_pairs=200, seed=0)  # doctest: +SKIP
    >>> res = patch_sites(model, pairs, span=3)  # doctest: +SKIP
    >>> res.table.head()  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from lens_emotion.pairs import PatchingError, PatchPairs, draw_pairs
from lens_emotion.patching_engines import clean_activations, resolve_method, run_variants
from lens_emotion.patching_fast import Variant

__all__ = [
    "ABLATION_MODES",
    "AblationResult",
    "HeadPatchingResult",
    "PatchPairs",
    "PatchingError",
    "PatchingResult",
    "SITES",
    "TABLE_COLUMNS",
    "ablate_sites",
    "bootstrap_ci",
    "compare_control",
    "compare_heads",
    "draw_pairs",
    "patch_heads",
    "patch_sites",
    "windows",
]

SITES: tuple[str, ...] = ("attn_out", "mlp_out", "resid_post")
"""MHSA output, FFN output and hidden state, as in the paper."""

ABLATION_MODES: tuple[str, ...] = ("zero", "mean", "random")
"""Zero ablation, mean ablation and a random vector of the same norm."""

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


# --------------------------------------------------------------------------- helpers


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
    values: Float[np.ndarray, "n k"], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[Float[np.ndarray, " k"], Float[np.ndarray, " k"]]:
    """Percentile bootstrap CI of the column means of ``values`` (rows resampled together).

    Returns:
        ``(low, high)`` arrays with one entry per column.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    means = np.empty((n_boot, values.shape[1]))
    for b in range(n_boot):
        means[b] = values[rng.integers(0, n, size=n)].mean(axis=0)
    alpha = (1 - level) / 2
    return np.quantile(means, alpha, axis=0), np.quantile(means, 1 - alpha, axis=0)


def _check_sites(sites: Sequence[str]) -> tuple[str, ...]:
    sites = tuple(sites)
    bad = [s for s in sites if s not in SITES]
    if bad or not sites:
        raise PatchingError(f"Unknown sites {bad or list(sites)}; choose from {list(SITES)}.")
    return sites


def _unique_rows(tokens: Sequence[tuple[int, ...]]) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """Unique prompts and, for each input, its index among them."""
    index: dict[tuple[int, ...], int] = {}
    where = np.array([index.setdefault(tuple(t), len(index)) for t in tokens], dtype=np.int64)
    return list(index), where


def _predictions(logits: Float[np.ndarray, "... n_labels"], offset: np.ndarray) -> np.ndarray:
    return np.argmax(logits - offset, axis=-1)


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

    def figure(self, title: str | None = None) -> Any:
        """Transfer rate against center layer, one line per site (with 95% CI bands)."""
        from lens_emotion.patching_plots import transfer_figure

        return transfer_figure(self.table, title=title or self._title())

    def _title(self) -> str:
        return (
            f"Activation patching ({self.pairs.template.name}, span {self.span}): "
            f"transfer rate, {len(self.pairs)} pairs"
        )

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary."""
        return {
            "span": self.span,
            "method": self.method,
            "seconds": round(self.seconds, 2),
            "n_pairs": len(self.pairs),
            "n_patched_runs": self.n_patched_runs,
            "n_clean_mismatch": self.n_clean_mismatch,
            "peaks": self.peaks().to_dict(orient="records"),
        }


def _outcomes(
    patched: Float[np.ndarray, "n m n_labels"],
    clean: Float[np.ndarray, "n n_labels"],
    pairs: PatchPairs,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-pair outcomes of patched runs.

    Returns:
        Outcome codes (0 transfer, 1 remained, 2 neither) and patched predictions, both
        ``[n, m]``, logit-diff changes ``[n, m]`` and clean logit diffs ``[n]``.
    """
    src = pairs.source_label_idx
    tgt = pairs.target_label_idx
    rows = np.arange(len(pairs))
    pred = _predictions(patched, pairs.calibration_offset)
    code = np.full(pred.shape, 2, dtype=np.int64)
    code[pred == tgt[:, None]] = 1
    code[pred == src[:, None]] = 0
    clean_diff = clean[rows, src] - clean[rows, tgt]
    patched_diff = patched[rows, :, src] - patched[rows, :, tgt]
    return code, pred, patched_diff - clean_diff[:, None], clean_diff


def _pair_provider(acts: dict[str, Tensor], source_index: Tensor) -> Any:
    def provider(variant: Variant, layer: int, rows: Tensor) -> Tensor:
        value = acts[variant.site][layer][source_index[rows]]
        return value if variant.head is None else value[:, variant.head]

    return provider


def _source_cache(
    model: Any, pairs: PatchPairs, method: str, batch_size: int, progress: bool
) -> tuple[dict[str, Tensor], Tensor]:
    unique, where = _unique_rows(pairs.source_tokens)
    acts, _ = clean_activations(
        model, unique, pairs.label_token_ids, method, batch_size=batch_size, progress=progress
    )
    return acts, torch.as_tensor(where, device=model.device)


def patch_sites(
    model: Any,
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
        pairs: Pairs from :func:`~lens_emotion.pairs.draw_pairs`.
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
    sites = _check_sites(sites)
    if len(pairs) == 0:
        raise PatchingError("No pairs to patch; draw some with draw_pairs().")
    chosen = resolve_method(model, method)
    grid = windows(model.n_layers, span, layers)
    variants = [Variant(site, window) for site in sites for _, window in grid]
    started = time.perf_counter()
    acts, source_index = _source_cache(model, pairs, chosen, batch_size, progress)
    patched, clean = run_variants(
        model,
        pairs.target_tokens,
        variants,
        _pair_provider(acts, source_index),
        pairs.label_token_ids,
        chosen,
        max_rows=max_rows,
        progress=progress,
    )
    seconds = time.perf_counter() - started
    code, pred, change, clean_diff = _outcomes(patched, clean, pairs)
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
    clean_pred = _predictions(clean, pairs.calibration_offset)
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


# --------------------------------------------------------------------------- head patching


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
        n_boot: Bootstrap resamples for the CIs in :meth:`to_frame`.
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

    def to_frame(self) -> pd.DataFrame:
        """One row per (layer, head): mean logit-diff change with bootstrap CI, transfer."""
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

    def top(self, k: int = 10) -> pd.DataFrame:
        """The ``k`` heads with the largest mean change in logit difference."""
        return self.to_frame().nlargest(k, "mean_logit_diff_change")

    def figure(self, title: str | None = None) -> Any:
        """Layer x head heatmap of the mean change in logit difference."""
        from lens_emotion.patching_plots import head_heatmap

        return head_heatmap(
            self.effects,
            self.layers,
            title=title
            or f"Head patching (hook_z, last token): mean change in logit difference, "
            f"{len(self.pairs)} pairs",
        )


def patch_heads(
    model: Any,
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
        pairs: Pairs from :func:`~lens_emotion.pairs.draw_pairs`.
        layers: Layers (default: all).
        method: See :func:`patch_sites`.
        n_boot: Bootstrap resamples (for :meth:`HeadPatchingResult.to_frame`).
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
    acts, source_index = _source_cache(model, pairs, chosen, batch_size, progress)
    patched, clean = run_variants(
        model,
        pairs.target_tokens,
        variants,
        _pair_provider(acts, source_index),
        pairs.label_token_ids,
        chosen,
        max_rows=max_rows,
        progress=progress,
    )
    code, _, change, _ = _outcomes(patched, clean, pairs)
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


# --------------------------------------------------------------------------- ablations


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

    def figure(self, title: str | None = None) -> Any:
        """Kept rate against center layer: one line per site, one panel per mode."""
        from lens_emotion.patching_plots import ablation_figure

        return ablation_figure(
            self.table,
            title=title
            or f"Ablation (span {self.span}): share of {self.n_prompts} prompts whose "
            "prediction is kept",
        )


def ablate_sites(
    model: Any,
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
        pairs: Pairs from :func:`~lens_emotion.pairs.draw_pairs`.
        modes: Any of :data:`ABLATION_MODES`.
        sites: Any of :data:`SITES`.
        layers: Center layers (default: all).
        span: Window size.
        mean_over: Prompts (token ids) the mean vectors average over (default: the ablated
            prompts themselves, i.e. the dataset rows in the pairs).
        method: See :func:`patch_sites`.
        n_boot: Bootstrap resamples.
        seed: Seed of the random directions and the bootstrap (default: the pairs' seed).
        max_rows: Fast path: (prompt, window) rows per batch.
        batch_size: Prompts per clean forward pass.
        progress: Show progress bars.

    Returns:
        The :class:`AblationResult`.
    """
    sites = _check_sites(sites)
    bad = [m for m in modes if m not in ABLATION_MODES]
    if bad or not modes:
        raise PatchingError(f"Unknown ablation modes {bad}; choose from {list(ABLATION_MODES)}.")
    chosen = resolve_method(model, method)
    grid = windows(model.n_layers, span, layers)
    seed = pairs.seed if seed is None else seed
    started = time.perf_counter()
    tokens, where = _unique_rows(list(pairs.source_tokens) + list(pairs.target_tokens))
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
    kept = _predictions(patched, offset) == clean_idx[:, None]
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
