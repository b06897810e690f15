"""Attribution patching (AtP): a linear estimate of every patch effect from one backward pass.

Activation patching (:mod:`lens_emotion.patching`) overwrites the *target* prompt's activation
at the last token with the *source* prompt's and reads how the logit difference between the
source and target labels moves. That costs one forward pass per pair, site and layer. AtP
(Nanda 2023; Kramár et al. 2024) replaces each of those passes by a first-order Taylor term::

    effect(component) ≈ (a_source - a_target) · ∂metric/∂a |_target run

with ``metric = logit[source label] - logit[target label]`` at the last token. Every component
is scored from one source forward pass (activations only) and one target forward + backward
pass (activations and gradients), whatever the number of components.

**Components.** Per layer, the last-token activation of each site in :data:`ATP_SITES`
(``resid_pre``, ``attn_out``, ``mlp_out``, ``resid_mid``, ``resid_post``) and of every query
head's ``attn.hook_z`` (the head's value mix before ``W_O``). Under grouped-query attention
(SmolLM2: 9 query heads share 3 key/value heads) ``hook_z`` is still one vector per *query*
head, so head effects have shape ``(n_layers, n_heads)``; because ``attn_out`` is the sum of
the heads' ``z @ W_O`` slices, the head estimates of a layer add up exactly to its
``attn_out`` estimate (tested).

**resid_mid is the residual stream.** The bridge's ``blocks.{l}.hook_resid_mid`` is an alias of
``ln2.hook_in``, so a gradient (or an edit) taken there reaches only the MLP branch, not the
skip connection. AtP reads the ``resid_mid`` *value* there (that is correct) but takes its
gradient at ``attn_out`` of the same layer: ``resid_mid = resid_pre + attn_out`` and
``attn_out`` feeds nothing else, so that is the residual stream's gradient. Interpolation
patches at ``resid_mid`` likewise edit ``attn_out`` by the same amount
(:func:`lens_emotion.interventions.residual_hooks`), so the finite-difference check covers
the skip path too (tested against the bridge's MLP-only alias).

**How it runs.** Pairs go through in length-bucketed, left-padded batches (the last real token
is the last column for every row). The source pass keeps only last-position activations. The
target pass attaches forward hooks that keep last-position activations and TransformerLens
backward hooks (``dir="bwd"``) that keep last-position gradients; the backward is driven with
:func:`torch.autograd.grad` towards a leaf put in place of the token embedding, so no parameter
gradient is ever computed or stored. Gradients of the summed per-row metrics equal each row's
own gradients, because rows never interact.

**TransformerLens's own tool.** ``transformer_lens.tools.analysis.attribution_patch`` scores
nodes (``hook_embed``, every head's ``hook_z``, every ``hook_mlp_out``) at every position for
prompt pairs of *equal length*, one pair at a time, with no attention mask; its edge-level mode
refuses grouped-query models (``n_key_value_heads != n_heads``), so it cannot do edge
attribution on SmolLM2. Its node mode uses the same convention as here (gradient on the
corrupt = target run, delta towards the clean = source activation); the tests check that both
give the same last-position node scores on equal-length real pairs. This module adds what the
emotion pairs need: prompts of different lengths (left padding and masks), batching, only the
last position, and the ``attn_out``/``resid_*`` sites.

**Checking the estimate.** :func:`~lens_emotion.attribution.compare.compare_with_patching`
correlates AtP with real single-layer patching effects (span 1) per site and per head, lists the
components where the two disagree most, and draws the scatter. :func:`interpolation_patch`
patches one component a fraction ``alpha`` of the way from target to source; as ``alpha → 0``
its slope equals the AtP estimate (finite-difference check in the tests), and ``alpha = 1`` is
the real patch.

Example::

    pairs = draw_pairs(model, dataset, n_pairs=100, seed=0)
    atp = attribute(model, pairs)
    atp.table                                      # site, layer, head, atp_effect, ...
    cmp = compare_with_patching(atp, patch_sites(model, pairs, span=1), patch_heads(model, pairs))
    cmp.correlations, cmp.disagreements(10), cmp.figure()

This is the package's lowest module: :class:`AttributionError`, :data:`ATP_SITES` and
:data:`HEAD_SITE` live here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from lens_emotion.batching import length_batches
from lens_emotion.errors import LensEmotionError
from lens_emotion.interventions import check_resid_mid, residual_hooks
from lens_emotion.io import write_text_atomic

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from lens_emotion.models import EmotionModel
    from lens_emotion.patching import PatchPairs

__all__ = [
    "ATP_SITES",
    "HEAD_SITE",
    "AttributionError",
    "AttributionResult",
    "attribute",
    "attribution_patch",
    "interpolation_patch",
    "patching_cost",
]

ATP_SITES: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out", "resid_mid", "resid_post")
"""Per-layer sites AtP scores (all of them cost the same single backward pass)."""

HEAD_SITE = "z"
"""Site name used for per-head rows (``blocks.{l}.attn.hook_z``, one vector per query head)."""


class AttributionError(LensEmotionError, ValueError):
    """Bad input to attribution patching (mismatched pairs, unknown sites, ...)."""


# --------------------------------------------------------------------------- input checks


def _check_pairs(
    source_tokens: Sequence[Sequence[int]],
    target_tokens: Sequence[Sequence[int]],
    source_label_ids: Sequence[int],
    target_label_ids: Sequence[int],
    vocab_size: int,
) -> int:
    n = len(target_tokens)
    if n == 0:
        raise AttributionError(
            "No pairs given: pass at least one source/target pair (e.g. from "
            "lens_emotion.patching.draw_pairs)."
        )
    lengths = {
        "source_tokens": len(source_tokens),
        "source_label_ids": len(source_label_ids),
        "target_label_ids": len(target_label_ids),
    }
    bad = {name: k for name, k in lengths.items() if k != n}
    if bad:
        raise AttributionError(
            f"target_tokens has {n} prompts but {bad}; pass one source prompt, one source label "
            "and one target label per target prompt, in the same order."
        )
    for name, seqs in (("source_tokens", source_tokens), ("target_tokens", target_tokens)):
        for i, ids in enumerate(seqs):
            if len(ids) == 0:
                raise AttributionError(
                    f"{name}[{i}] is empty; every prompt needs at least one token."
                )
    for name, ids in (
        ("source_label_ids", source_label_ids),
        ("target_label_ids", target_label_ids),
    ):
        for i, tid in enumerate(ids):
            if not 0 <= int(tid) < vocab_size:
                raise AttributionError(
                    f"{name}[{i}] = {tid} is not a token id of this model (vocabulary size "
                    f"{vocab_size}); pass the labels' scored token ids (LabelTokens.token_ids)."
                )
    same = [i for i in range(n) if int(source_label_ids[i]) == int(target_label_ids[i])]
    if same:
        raise AttributionError(
            f"Pairs {same[:5]} have the same source and target label token, so the metric "
            "logit[source] - logit[target] is identically 0; draw pairs whose labels differ."
        )
    return n


def _check_sites(sites: Sequence[str]) -> tuple[str, ...]:
    sites = tuple(sites)
    unknown = [s for s in sites if s not in ATP_SITES]
    if unknown:
        raise AttributionError(
            f"Unknown AtP site(s) {unknown}; choose from {list(ATP_SITES)} (heads are scored with "
            "heads=True)."
        )
    if len(set(sites)) != len(sites):
        raise AttributionError(f"Sites repeat in {list(sites)}; list each site once.")
    return sites


def _check_layers(layers: Sequence[int] | None, n_layers: int) -> tuple[int, ...]:
    if layers is None:
        return tuple(range(n_layers))
    layers = tuple(int(x) for x in layers)
    if not layers:
        raise AttributionError("layers is empty; pass None for all layers or a list of layers.")
    bad = [x for x in layers if not 0 <= x < n_layers]
    if bad:
        raise AttributionError(
            f"Layers {bad} are out of range for a {n_layers}-layer model; use 0..{n_layers - 1}."
        )
    if len(set(layers)) != len(layers):
        raise AttributionError(f"Layers repeat in {list(layers)}; list each layer once.")
    return layers


# --------------------------------------------------------------------------- forward helpers


def _forward_last_logits(
    bridge: Any, input_ids: Tensor, mask: Tensor
) -> Float[Tensor, "batch d_vocab"]:
    """Last-position logits of a left-padded batch (only that position is unembedded)."""
    try:
        logits = bridge(input_ids, attention_mask=mask, logits_to_keep=1)
    except TypeError:  # architectures whose HF forward lacks logits_to_keep
        logits = bridge(input_ids, attention_mask=mask)
    return logits[:, -1, :]


def _logit_diff(
    logits: Float[Tensor, "batch d_vocab"], plus: Tensor, minus: Tensor
) -> Float[Tensor, " batch"]:
    """``logits[b, plus[b]] - logits[b, minus[b]]`` per row."""
    return logits.gather(1, plus[:, None])[:, 0] - logits.gather(1, minus[:, None])[:, 0]


def _keep_last(store: dict[Any, Tensor], key: Any) -> Callable[..., None]:
    def hook(tensor: Tensor, hook: Any) -> None:
        store[key] = tensor[:, -1].detach().clone()

    return hook


def _embed_leaf(holder: list[Tensor]) -> Callable[..., Tensor]:
    """Replace the token embedding by a detached leaf that requires grad (drives the backward)."""

    def hook(tensor: Tensor, hook: Any) -> Tensor:
        leaf = tensor.detach().requires_grad_(True)
        holder.append(leaf)
        return leaf

    return hook


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class AttributionResult:
    """AtP estimates for every pair and component.

    Attributes:
        sites: Per-layer sites scored (subset of :data:`ATP_SITES`).
        layers: Layers scored.
        site_effects: ``(n_pairs, n_sites, n_layers)`` estimated change of the logit
            difference (source minus target label) when the site's last-token activation is
            patched from source into target.
        head_effects: ``(n_pairs, n_layers, n_heads)`` the same for each query head's
            ``hook_z``; ``None`` when heads were not scored.
        target_metric: Clean logit difference on each target prompt.
        source_metric: Clean logit difference on each source prompt (same two labels).
        n_forward: Forward passes run, counted per prompt (source + target).
        n_backward: Backward passes run, counted per prompt.
        seconds: Wall time.
        meta: Free-form description (pair source, template, ...), copied into outputs.
    """

    sites: tuple[str, ...]
    layers: tuple[int, ...]
    site_effects: Float[np.ndarray, "n_pairs n_sites n_layers"] = field(repr=False)
    head_effects: Float[np.ndarray, "n_pairs n_layers n_heads"] | None = field(repr=False)
    target_metric: Float[np.ndarray, " n_pairs"] = field(repr=False)
    source_metric: Float[np.ndarray, " n_pairs"] = field(repr=False)
    n_forward: int = 0
    n_backward: int = 0
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def n_pairs(self) -> int:
        """Number of pairs scored."""
        return int(self.site_effects.shape[0])

    @property
    def n_heads(self) -> int:
        """Query heads per layer (0 when heads were not scored)."""
        return 0 if self.head_effects is None else int(self.head_effects.shape[2])

    def site(self, site: str) -> Float[np.ndarray, "n_pairs n_layers"]:
        """Per-pair estimates of one site, ``(n_pairs, n_layers)``.

        Raises:
            AttributionError: The site was not scored.
        """
        if site not in self.sites:
            raise AttributionError(
                f"Site {site!r} was not scored; scored sites: {list(self.sites)}."
            )
        return self.site_effects[:, self.sites.index(site)]

    def per_pair(self) -> pd.DataFrame:
        """One row per pair and component.

        Columns: pair, site, layer, head (``<NA>`` for per-layer sites), atp_effect.
        """
        frames = []
        n, n_sites, n_layers = self.site_effects.shape
        pair, s, layer = np.meshgrid(
            np.arange(n), np.arange(n_sites), np.arange(n_layers), indexing="ij"
        )
        frames.append(
            pd.DataFrame(
                {
                    "pair": pair.ravel(),
                    "site": np.asarray(self.sites, dtype=object)[s.ravel()],
                    "layer": np.asarray(self.layers)[layer.ravel()],
                    "head": pd.array([pd.NA] * pair.size, dtype="Int64"),
                    "atp_effect": self.site_effects.ravel(),
                }
            )
        )
        if self.head_effects is not None:
            pair, layer, head = np.meshgrid(
                np.arange(n), np.arange(n_layers), np.arange(self.n_heads), indexing="ij"
            )
            frames.append(
                pd.DataFrame(
                    {
                        "pair": pair.ravel(),
                        "site": HEAD_SITE,
                        "layer": np.asarray(self.layers)[layer.ravel()],
                        "head": pd.array(head.ravel(), dtype="Int64"),
                        "atp_effect": self.head_effects.ravel(),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    @property
    def table(self) -> pd.DataFrame:
        """Mean over pairs per component (a new frame on every access).

        Columns: site, layer, head (``<NA>`` for per-layer sites), atp_effect (mean estimated
        change of the logit difference), atp_std, atp_abs_mean, n_pairs.
        """
        frame = self.per_pair()
        frame["abs"] = frame["atp_effect"].abs()
        grouped = frame.groupby(["site", "layer", "head"], dropna=False, sort=False)
        table = grouped.agg(
            atp_effect=("atp_effect", "mean"),
            atp_std=("atp_effect", "std"),
            atp_abs_mean=("abs", "mean"),
        ).reset_index()
        table["n_pairs"] = self.n_pairs
        return table

    def to_frame(self) -> pd.DataFrame:
        """The :attr:`table` as a new DataFrame."""
        return self.table

    def figure(self, title: str | None = None) -> go.Figure:
        """Mean AtP estimate against layer, one line per site (band: ±1 standard error).

        See :func:`lens_emotion.attribution.figures.estimates_figure`.
        """
        from lens_emotion.attribution.figures import estimates_figure

        return estimates_figure(self, title=title)

    def cost(self) -> dict[str, Any]:
        """Cost of this run in forward-pass equivalents (a backward pass counts as 2 forwards)."""
        return patching_cost(
            self.n_pairs, len(self.layers), len(self.sites), self.n_heads, atp=self
        )

    def summary(self) -> dict[str, Any]:
        """Headline numbers: pairs, components, cost and the strongest layer of each site.

        ``strongest`` maps each site (and ``"z"`` for heads) to the component with the largest
        mean ``|atp_effect|`` over pairs (its layer, head and mean estimate).
        """
        table = self.table
        strongest: dict[str, dict[str, Any]] = {}
        for site, rows in table.groupby("site", sort=False):
            row = rows.loc[rows["atp_effect"].abs().idxmax()]
            strongest[str(site)] = {
                "layer": int(row["layer"]),
                "head": None if pd.isna(row["head"]) else int(row["head"]),
                "atp_effect": float(row["atp_effect"]),
            }
        cost = self.cost()
        return {
            "n_pairs": self.n_pairs,
            "sites": list(self.sites),
            "n_layers": len(self.layers),
            "n_heads": self.n_heads,
            "components_per_pair": cost["components_per_pair"],
            "atp_fpe": cost["atp_fpe"],
            "patching_fpe": cost["patching_fpe"],
            "seconds": round(float(self.seconds), 3),
            "strongest": strongest,
        }

    def save(self, out: str | Path) -> list[Path]:
        """Write ``attribution.csv`` (the :attr:`table`) and ``attribution_per_pair.csv``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        return [
            write_text_atomic(out / "attribution.csv", self.table.to_csv(index=False)),
            write_text_atomic(
                out / "attribution_per_pair.csv", self.per_pair().to_csv(index=False)
            ),
        ]


def patching_cost(
    n_pairs: int,
    n_layers: int,
    n_sites: int,
    n_heads: int,
    span: int = 1,
    atp: AttributionResult | None = None,
    backward_fpe: float = 2.0,
) -> dict[str, Any]:
    """Forward-pass equivalents (FPE) of AtP and of real patching for the same components.

    AtP: each pair runs one source forward, one target forward and one backward
    (``backward_fpe`` forwards, 2 by the usual rule of thumb), i.e. ``2 + backward_fpe`` FPE per
    pair, whatever the number of components. Real patching with one full forward pass per
    patched component: ``n_pairs x (2 clean + n_sites x n_layers + n_layers x n_heads)``.

    Args:
        n_pairs: Pairs.
        n_layers: Layers (centre layers for windowed patching).
        n_sites: Per-layer sites.
        n_heads: Query heads per layer (0 to leave heads out).
        span: Window width of the real patching (does not change the count of patched runs).
        atp: If given, the forward/backward counts actually run are reported too.
        backward_fpe: Cost of one backward pass in forward passes.

    Returns:
        A JSON-friendly dict.
    """
    components = n_sites * n_layers + n_layers * n_heads
    atp_fpe = n_pairs * (2 + backward_fpe)
    patch_fpe = n_pairs * (2 + components)
    out: dict[str, Any] = {
        "n_pairs": n_pairs,
        "components_per_pair": components,
        "span": span,
        "backward_fpe": backward_fpe,
        "atp_fpe": atp_fpe,
        "patching_fpe": patch_fpe,
        "ratio": patch_fpe / atp_fpe if atp_fpe else math.nan,
    }
    if atp is not None:
        out["atp_forward_passes"] = atp.n_forward
        out["atp_backward_passes"] = atp.n_backward
        out["atp_seconds"] = round(atp.seconds, 3)
    return out


# --------------------------------------------------------------------------- AtP core


def attribution_patch(
    model: EmotionModel,
    source_tokens: Sequence[Sequence[int]],
    target_tokens: Sequence[Sequence[int]],
    source_label_ids: Sequence[int],
    target_label_ids: Sequence[int],
    *,
    sites: Sequence[str] = ATP_SITES,
    layers: Sequence[int] | None = None,
    heads: bool = True,
    batch_size: int = 8,
    progress: bool = True,
    meta: Mapping[str, Any] | None = None,
) -> AttributionResult:
    """Estimate last-token patch effects of every site, layer and head with AtP.

    For pair ``i`` the estimate for component ``a`` is ``(a_source - a_target) · g`` with
    ``g = ∂(logit[source_label_ids[i]] - logit[target_label_ids[i]]) / ∂a`` on the target run,
    all at the last token (sites: contracted over ``d_model``; heads: over ``d_head``).

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        source_tokens: Unpadded token ids of the source prompts.
        target_tokens: Unpadded token ids of the target prompts (same order).
        source_label_ids: Vocabulary id of each pair's source-label token.
        target_label_ids: Vocabulary id of each pair's target-label token.
        sites: Per-layer sites, from :data:`ATP_SITES`.
        layers: Layers to score (default all).
        heads: Also score every query head's ``attn.hook_z``.
        batch_size: Pairs per forward/backward pass (memory grows with it: the backward keeps
            the whole target batch's activations).
        progress: Show a progress bar.
        meta: Description copied into the result.

    Returns:
        The :class:`AttributionResult`.

    Raises:
        AttributionError: Mismatched or empty inputs, token ids outside the vocabulary, equal
            source and target labels, unknown sites or layers out of range, ``batch_size < 1``.
    """
    bridge = model.bridge
    n = _check_pairs(
        source_tokens, target_tokens, source_label_ids, target_label_ids, int(model.cfg.d_vocab)
    )
    sites = _check_sites(sites)
    layers = _check_layers(layers, model.n_layers)
    if not sites and not heads:
        raise AttributionError("Nothing to score: pass at least one site or heads=True.")
    if batch_size < 1:
        raise AttributionError(f"batch_size must be at least 1, got {batch_size}.")
    keys: list[tuple[str, int]] = [(s, layer) for s in sites for layer in layers]
    if heads:
        keys += [(HEAD_SITE, layer) for layer in layers]
    names = {key: model.hook_name(*key) for key in keys}
    # The bridge's hook_resid_mid is the MLP's input only (ln2.hook_in): its gradient misses
    # the skip path. resid_mid = resid_pre + attn_out, and attn_out feeds nothing else, so the
    # residual stream's gradient there is attn_out's gradient.
    grad_names = dict(names)
    if "resid_mid" in sites:
        check_resid_mid(model)
        for layer in layers:
            grad_names[("resid_mid", layer)] = model.hook_name("attn_out", layer)
    n_heads = model.n_heads

    site_effects = np.zeros((n, len(sites), len(layers)), dtype=np.float32)
    head_effects = np.zeros((n, len(layers), n_heads), dtype=np.float32) if heads else None
    target_metric = np.zeros(n, dtype=np.float32)
    source_metric = np.zeros(n, dtype=np.float32)
    src_lab = torch.as_tensor([int(t) for t in source_label_ids], dtype=torch.long)
    tgt_lab = torch.as_tensor([int(t) for t in target_label_ids], dtype=torch.long)
    device = model.device
    started = time.perf_counter()
    n_forward = n_backward = 0
    batches = length_batches([len(t) for t in target_tokens], batch_size)
    bar = tqdm(total=n, desc="attribution patching", disable=not progress, unit="pair")
    for idx in batches:
        plus, minus = src_lab[idx].to(device), tgt_lab[idx].to(device)
        src_acts: dict[tuple[str, int], Tensor] = {}
        ids, mask = model.pad([source_tokens[i] for i in idx])
        hooks = [(names[key], _keep_last(src_acts, key)) for key in keys]
        with torch.no_grad(), bridge.hooks(fwd_hooks=hooks):
            logits = _forward_last_logits(bridge, ids, mask)
        source_metric[idx] = _logit_diff(logits.float(), plus, minus).cpu().numpy()

        tgt_acts: dict[tuple[str, int], Tensor] = {}
        grads: dict[tuple[str, int], Tensor] = {}
        leaf: list[Tensor] = []
        ids, mask = model.pad([target_tokens[i] for i in idx])
        fwd = [("hook_embed", _embed_leaf(leaf))]
        fwd += [(names[key], _keep_last(tgt_acts, key)) for key in keys]
        bwd = [(grad_names[key], _keep_last(grads, key)) for key in keys]
        with torch.enable_grad(), bridge.hooks(fwd_hooks=fwd, bwd_hooks=bwd):
            logits = _forward_last_logits(bridge, ids, mask)
            metric = _logit_diff(logits.float(), plus, minus)
            torch.autograd.grad(metric.sum(), inputs=leaf)
        target_metric[idx] = metric.detach().cpu().numpy()
        missing = [names[key] for key in keys if key not in grads]
        if missing:
            raise AttributionError(
                f"No gradient reached {missing[:3]}: these hook points are not on the path "
                "from the embedding to the logits in this model, so AtP cannot score them."
            )
        for key in keys:
            effect = ((src_acts[key] - tgt_acts[key]) * grads[key]).sum(-1).float().cpu().numpy()
            site, layer = key
            j = layers.index(layer)
            if site == HEAD_SITE:
                head_effects[idx, j] = effect  # type: ignore[index]
            else:
                site_effects[idx, sites.index(site), j] = effect
        n_forward += 2 * len(idx)
        n_backward += len(idx)
        bar.update(len(idx))
    bar.close()
    return AttributionResult(
        sites=sites,
        layers=layers,
        site_effects=site_effects,
        head_effects=head_effects,
        target_metric=target_metric,
        source_metric=source_metric,
        n_forward=n_forward,
        n_backward=n_backward,
        seconds=time.perf_counter() - started,
        meta=dict(meta or {}),
    )


# --------------------------------------------------------------------------- reference patch


def _interpolate_last(source: Tensor, alpha: float, head: int | None) -> Callable[..., Tensor]:
    """Forward hook moving the last-token activation a fraction ``alpha`` towards ``source``."""

    def hook(tensor: Tensor, hook: Any) -> Tensor:
        out = tensor.clone()
        if head is None:
            out[:, -1] = out[:, -1] + alpha * (source.to(out.dtype) - out[:, -1])
        else:
            out[:, -1, head] = out[:, -1, head] + alpha * (
                source[:, head].to(out.dtype) - out[:, -1, head]
            )
        return out

    return hook


def interpolation_patch(
    model: EmotionModel,
    source_tokens: Sequence[Sequence[int]],
    target_tokens: Sequence[Sequence[int]],
    source_label_ids: Sequence[int],
    target_label_ids: Sequence[int],
    site: str,
    layer: int,
    head: int | None = None,
    alphas: Sequence[float] = (1.0,),
    batch_size: int = 8,
) -> Float[np.ndarray, "n_alphas n_pairs"]:
    """Patch one component at the last token part of the way from target to source.

    The target's last-token activation ``a_t`` at ``site``/``layer`` (or query head ``head`` of
    ``attn.hook_z``) is replaced by ``a_t + alpha (a_s - a_t)`` and the change of the logit
    difference ``logit[source label] - logit[target label]`` is returned. ``alpha = 1`` is the
    real single-layer patch; the slope at ``alpha → 0`` is what AtP estimates, so
    ``change(alpha) / alpha`` tends to the AtP estimate (a finite-difference check). One
    full-sequence forward pass per pair and alpha: a reference, not a fast path.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        source_tokens: Unpadded source prompts.
        target_tokens: Unpadded target prompts.
        source_label_ids: Vocabulary id of each source label token.
        target_label_ids: Vocabulary id of each target label token.
        site: One of :data:`ATP_SITES`, or ``"z"`` for a head.
        layer: Layer.
        head: Query head (required with ``site="z"``, refused otherwise).
        alphas: Interpolation fractions.
        batch_size: Pairs per forward pass.

    Returns:
        ``(len(alphas), n_pairs)`` changes of the logit difference.

    Raises:
        AttributionError: Bad pairs, site, layer or head.
    """
    bridge = model.bridge
    n = _check_pairs(
        source_tokens, target_tokens, source_label_ids, target_label_ids, int(model.cfg.d_vocab)
    )
    if site == HEAD_SITE:
        if head is None or not 0 <= head < model.n_heads:
            raise AttributionError(
                f"site 'z' needs a query head in 0..{model.n_heads - 1}, got {head!r}."
            )
    else:
        _check_sites([site])
        if head is not None:
            raise AttributionError(f"head= only applies to site 'z', not {site!r}.")
    _check_layers([layer], model.n_layers)
    name = model.hook_name(site, layer)
    if site == "resid_mid":
        check_resid_mid(model)
    out = np.zeros((len(alphas), n), dtype=np.float32)
    src_lab = torch.as_tensor([int(t) for t in source_label_ids], dtype=torch.long)
    tgt_lab = torch.as_tensor([int(t) for t in target_label_ids], dtype=torch.long)
    for idx in length_batches([len(t) for t in target_tokens], batch_size):
        plus, minus = src_lab[idx].to(model.device), tgt_lab[idx].to(model.device)
        store: dict[str, Tensor] = {}
        ids, mask = model.pad([source_tokens[i] for i in idx])
        with torch.no_grad(), bridge.hooks(fwd_hooks=[(name, _keep_last(store, "a"))]):
            _forward_last_logits(bridge, ids, mask)
        ids, mask = model.pad([target_tokens[i] for i in idx])
        with torch.no_grad():
            clean = _logit_diff(_forward_last_logits(bridge, ids, mask).float(), plus, minus)
            for k, alpha in enumerate(alphas):
                hook = _interpolate_last(store["a"], float(alpha), head)
                with bridge.hooks(fwd_hooks=residual_hooks(model, [(name, hook)])):
                    logits = _forward_last_logits(bridge, ids, mask).float()
                out[k, idx] = (_logit_diff(logits, plus, minus) - clean).cpu().numpy()
    return out


# --------------------------------------------------------------------------- PatchPairs entry


def attribute(
    model: EmotionModel,
    pairs: PatchPairs,
    *,
    sites: Sequence[str] = ATP_SITES,
    layers: Sequence[int] | None = None,
    heads: bool = True,
    batch_size: int = 8,
    progress: bool = True,
) -> AttributionResult:
    """AtP on a :class:`~lens_emotion.patching.PatchPairs` draw (see :func:`attribution_patch`).

    The metric is the one real patching reads: ``logit[source prediction] - logit[target
    prediction]`` at the target's last token, with the labels' scored tokens
    (``pairs.label_tokens.token_ids``).

    Args:
        model: The model the pairs were drawn with.
        pairs: Pairs from :func:`lens_emotion.patching.draw_pairs`.
        sites: Per-layer sites, from :data:`ATP_SITES`.
        layers: Layers to score (default all).
        heads: Also score every query head's ``attn.hook_z``.
        batch_size: Pairs per forward/backward pass.
        progress: Show a progress bar.

    Returns:
        The :class:`AttributionResult`; ``meta`` holds ``pairs.describe()``.

    Raises:
        AttributionError: ``pairs`` lacks the fields of a ``PatchPairs``, or any error of
            :func:`attribution_patch`.
    """
    needed = ("source_tokens", "target_tokens", "source_label_idx", "target_label_idx")
    missing = [name for name in needed if not hasattr(pairs, name)]
    if missing or not hasattr(pairs, "label_tokens"):
        raise AttributionError(
            f"{type(pairs).__name__} is not a PatchPairs (missing {missing or ['label_tokens']}); "
            "draw pairs with lens_emotion.patching.draw_pairs(model, dataset, ...) or call "
            "attribution_patch() with token lists and label token ids."
        )
    token_ids = pairs.label_tokens.token_ids
    meta = pairs.describe() if hasattr(pairs, "describe") else {}
    return attribution_patch(
        model,
        pairs.source_tokens,
        pairs.target_tokens,
        [token_ids[int(i)] for i in pairs.source_label_idx],
        [token_ids[int(i)] for i in pairs.target_label_idx],
        sites=sites,
        layers=layers,
        heads=heads,
        batch_size=batch_size,
        progress=progress,
        meta={"pairs": meta},
    )
