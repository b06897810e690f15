"""Three ways to run the same last-position interventions, with identical results.

Every engine takes target prompts, a list of :class:`~lens_emotion.patching.fast.Variant`
interventions and a value provider, and returns the label logits of every (prompt, variant)
plus the clean label logits:

* ``"fast"`` - :class:`~lens_emotion.cached_forward.CachedLastToken`: one clean run per batch
  of targets with transformers' KV cache, then only the last position is recomputed through
  the model's own decoder layers, from each variant's first patched layer on, for all variants
  of all prompts of the batch at once. Every family of :mod:`lens_emotion.architecture`
  (Llama, Mistral, Qwen2/3, Gemma 2/3, Phi-3, OLMo 2, GPT-2, GPT-NeoX); verified against
  ``"bridge"`` before first use.
* ``"bridge"`` - the plain full-sequence patch on the hooked TransformerBridge
  (``run_with_hooks`` with hooks that overwrite the last position), many (prompt, variant)
  rows per forward pass. Works for every architecture the bridge loads (e.g. GPT-2).
* ``"reference"`` - the slow per-pair reference: batch size 1, one forward pass per prompt per
  variant, written as plainly as possible. Used by the tests and the benchmark.

``clean_activations`` gives each engine's clean last-position activations (the source cache:
one clean run per source prompt, never re-run per patch).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from lens_emotion.batching import length_batches
from lens_emotion.cached_forward import CachedLastToken, cached_path_reason
from lens_emotion.patching.fast import PATCH_SITES, Provider, Variant
from lens_emotion.patching.pairs import PatchingError

if TYPE_CHECKING:
    from lens_emotion.models import EmotionModel

__all__ = [
    "ACT_SITES",
    "METHODS",
    "clean_activations",
    "fast_path_matches",
    "resolve_method",
    "run_variants",
]

METHODS: tuple[str, ...] = ("auto", "fast", "bridge", "reference")
"""Accepted ``method=`` values."""

ACT_SITES: tuple[str, ...] = ("attn_out", "mlp_out", "resid_post", "z")
"""Last-position activations cached by :func:`clean_activations`."""


def _fast_engine(model: EmotionModel) -> CachedLastToken:
    engine = getattr(model, "_last_token_engine", None)
    if engine is None:
        engine = CachedLastToken(model)
        model._last_token_engine = engine
    return engine


def _bridge_forward(model: EmotionModel, input_ids: Tensor, mask: Tensor, hooks: list) -> Tensor:
    """Last-position logits of a (hooked) bridge forward pass."""
    try:
        logits = model.bridge.run_with_hooks(
            input_ids, attention_mask=mask, fwd_hooks=hooks, logits_to_keep=1
        )
    except TypeError:  # architectures whose HF forward lacks logits_to_keep
        logits = model.bridge.run_with_hooks(input_ids, attention_mask=mask, fwd_hooks=hooks)
    return logits[:, -1].float()


# --------------------------------------------------------------------------- clean caches


@torch.inference_mode()
def clean_activations(
    model: EmotionModel,
    token_lists: Sequence[Sequence[int]],
    label_ids: Sequence[int],
    method: str,
    batch_size: int = 16,
    progress: bool = False,
) -> tuple[dict[str, Tensor], Float[Tensor, "n n_labels"]]:
    """Clean last-position activations of prompts, one clean run each.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        token_lists: Unpadded prompts.
        label_ids: Label token ids (for the clean label logits).
        method: ``"fast"`` (own forward), ``"bridge"`` (hooked bridge, batched) or
            ``"reference"`` (hooked bridge, batch size 1).
        batch_size: Prompts per forward pass (length-bucketed); 1 for ``"reference"``.
        progress: Show a progress bar.

    Returns:
        ``(acts, logits)``: ``acts[site]`` is ``[n_layers, n, d_model]`` (``z``: ``[n_layers,
        n, n_heads, d_head]``), on the model's device; ``logits`` are the label logits.
    """
    labels = torch.tensor(list(label_ids), device=model.device)
    size = 1 if method == "reference" else batch_size
    n = len(token_lists)
    acts: dict[str, Tensor] = {}
    logits = torch.empty(n, len(labels), device=model.device)
    bar = tqdm(total=n, desc="clean runs", disable=not progress, unit="prompt")
    for batch in length_batches([len(t) for t in token_lists], size):
        input_ids, mask = model.pad([token_lists[i] for i in batch])
        index = torch.as_tensor(batch, device=model.device)
        if method == "fast":
            run = _fast_engine(model).clean(input_ids, mask, labels, keep_cache=False)
            got, batch_logits = {s: run.acts[s] for s in ACT_SITES}, run.logits
        else:
            got, batch_logits = _bridge_clean(model, input_ids, mask, labels)
        for site, value in got.items():
            if site not in acts:
                acts[site] = value.new_empty(value.shape[0], n, *value.shape[2:])
            acts[site][:, index] = value
        logits[index] = batch_logits
        bar.update(len(batch))
    bar.close()
    return acts, logits


def _bridge_clean(
    model: EmotionModel, input_ids: Tensor, mask: Tensor, labels: Tensor
) -> tuple[dict[str, Tensor], Tensor]:
    captured: dict[tuple[str, int], Tensor] = {}
    hooks = []
    for site in ACT_SITES:
        for layer in range(model.n_layers):

            def keep(act: Tensor, hook: Any, key: tuple[str, int] = (site, layer)) -> Tensor:
                captured[key] = act[:, -1].clone()
                return act

            hooks.append((model.hook_name(site, layer), keep))
    logits = _bridge_forward(model, input_ids, mask, hooks)[:, labels]
    acts = {
        site: torch.stack([captured[(site, layer)] for layer in range(model.n_layers)])
        for site in ACT_SITES
    }
    return acts, logits


# --------------------------------------------------------------------------- choosing


def fast_path_matches(model: EmotionModel, atol: float = 1e-3) -> bool:
    """Check once per model that the fast path reproduces the bridge's full-sequence patch.

    Two short prompts, each patched with the other's activations at every site (a window for
    ``attn_out``/``mlp_out``/``resid_post`` and one head of ``z``); label logits are compared
    after removing each row's mean (compatibility mode shifts raw logits by a constant). The
    verdict is cached on the model (``_fast_patch_verified``).
    """
    verdict = getattr(model, "_fast_patch_verified", None)
    if verdict is not None:
        return verdict
    if cached_path_reason(model) is not None:
        model._fast_patch_verified = False
        return False
    tokens = model.encode(["I felt calm when the rain finally stopped.", "My dog ran away."])
    label_ids = sorted({t for ids in tokens for t in ids})[:16]
    mid = model.n_layers // 2
    window = tuple(range(max(0, mid - 1), min(model.n_layers, mid + 2)))
    variants = [
        Variant("attn_out", window),
        Variant("mlp_out", window),
        Variant("resid_post", window),
        Variant("z", (mid,), head=model.n_heads - 1),
    ]
    results = []
    for method in ("fast", "bridge"):
        acts, _ = clean_activations(model, tokens, label_ids, method)

        def provider(variant: Variant, layer: int, rows: Any, acts: dict = acts) -> Tensor:
            value = acts[variant.site][layer][1 - rows]
            return value if variant.head is None else value[:, variant.head]

        patched, clean = run_variants(model, tokens, variants, provider, label_ids, method)
        results.append(np.concatenate([patched.reshape(-1, len(label_ids)), clean]))
    fast, bridge = (r - r.mean(axis=1, keepdims=True) for r in results)
    verdict = bool(np.allclose(fast, bridge, atol=atol, rtol=1e-3))
    model._fast_patch_verified = verdict
    return verdict


def resolve_method(model: EmotionModel, method: str) -> str:
    """Pick the engine: ``"auto"`` prefers a verified fast path, else the batched bridge.

    Raises:
        PatchingError: Unknown method, or ``"fast"`` on an unsupported architecture.
    """
    if method not in METHODS:
        raise PatchingError(f"method must be one of {list(METHODS)}, not {method!r}.")
    reason = cached_path_reason(model) if method == "fast" else None
    if reason is not None:
        raise PatchingError(
            f"The fast path cannot run this model ({reason}); use method='bridge' "
            "(full-sequence patching), or 'auto'."
        )
    if method == "auto":
        if fast_path_matches(model):
            return "fast"
        why = cached_path_reason(model) or "its values disagree with the bridge's hook values"
        warnings.warn(f"patching falls back to the bridge engine: {why}", stacklevel=2)
        return "bridge"
    return method


# --------------------------------------------------------------------------- patched runs


def run_variants(
    model: EmotionModel,
    target_tokens: Sequence[Sequence[int]],
    variants: Sequence[Variant],
    provider: Provider,
    label_ids: Sequence[int],
    method: str,
    max_rows: int = 2048,
    bridge_rows: int = 32,
    progress: bool = False,
) -> tuple[Float[np.ndarray, "n m n_labels"], Float[np.ndarray, "n n_labels"]]:
    """Label logits of every target prompt under every variant, and clean.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        target_tokens: Unpadded target prompts (row ``i`` is passed to ``provider`` as ``i``).
        variants: The interventions.
        provider: Values to write (see :data:`~lens_emotion.patching.fast.Provider`).
        label_ids: Label token ids.
        method: ``"fast"``, ``"bridge"`` or ``"reference"`` (resolve ``"auto"`` first).
        max_rows: Fast path: at most this many (prompt, variant) rows per batch.
        bridge_rows: Bridge path: (prompt, variant) rows per full-sequence forward pass.
        progress: Show a progress bar.

    Returns:
        ``(patched, clean)``: ``[n, len(variants), n_labels]`` and ``[n, n_labels]`` float32.
    """
    bad = sorted({v.site for v in variants} - set(PATCH_SITES))
    if bad:
        raise PatchingError(f"Unknown sites {bad}; choose from {list(PATCH_SITES)}.")
    if not variants:
        raise PatchingError("No variants to run: pass at least one site and layer.")
    n, m = len(target_tokens), len(variants)
    labels = torch.tensor(list(label_ids), device=model.device)
    patched = np.empty((n, m, len(labels)), dtype=np.float32)
    clean = np.empty((n, len(labels)), dtype=np.float32)
    bar = tqdm(total=n * m, desc=f"patching ({method})", disable=not progress, unit="run")
    if method == "fast":
        _run_fast(model, target_tokens, variants, provider, labels, max_rows, patched, clean, bar)
    elif method == "bridge":
        _run_bridge(
            model, target_tokens, variants, provider, labels, bridge_rows, patched, clean, bar
        )
    elif method == "reference":
        _run_reference(model, target_tokens, variants, provider, labels, patched, clean, bar)
    else:
        raise PatchingError(f"method must be 'fast', 'bridge' or 'reference', not {method!r}.")
    bar.close()
    return patched, clean


def _target_batches(
    target_tokens: Sequence[Sequence[int]], rows_per_batch: int
) -> list[tuple[list[Sequence[int]], np.ndarray, np.ndarray]]:
    """Batches of distinct target prompts (length-sorted), with the rows that use them.

    Returns:
        Per batch: the distinct prompts, the row indices, and for each row the position of its
        prompt in the batch. A batch holds at most ``rows_per_batch`` rows (at least one
        prompt).
    """
    index: dict[tuple[int, ...], int] = {}
    where = np.array([index.setdefault(tuple(t), len(index)) for t in target_tokens])
    unique = list(index)
    uses = np.bincount(where, minlength=len(unique))
    batches = []
    current: list[int] = []
    count = 0
    for u in np.argsort([len(t) for t in unique], kind="stable"):
        if current and count + uses[u] > rows_per_batch:
            batches.append(current)
            current, count = [], 0
        current.append(int(u))
        count += int(uses[u])
    if current:
        batches.append(current)
    out = []
    for batch in batches:
        local = {u: i for i, u in enumerate(batch)}
        rows = np.flatnonzero(np.isin(where, batch))
        out.append(([unique[u] for u in batch], rows, np.array([local[where[r]] for r in rows])))
    return out


@torch.inference_mode()
def _run_fast(
    model: EmotionModel,
    target_tokens: Sequence[Sequence[int]],
    variants: Sequence[Variant],
    provider: Provider,
    labels: Tensor,
    max_rows: int,
    patched: np.ndarray,
    clean: np.ndarray,
    bar: Any,
) -> None:
    """Fast path: one cached clean run per distinct target, last position only per variant."""
    engine = _fast_engine(model)
    m = len(variants)
    for prompts, rows, local in _target_batches(target_tokens, max(1, max_rows // m)):
        input_ids, mask = model.pad(prompts)
        run = engine.clean(input_ids, mask, labels).select(
            torch.as_tensor(local, device=model.device)
        )
        row_t = torch.as_tensor(rows, device=model.device)
        patched[rows] = engine.patched(run, variants, provider, row_t, labels).cpu().numpy()
        clean[rows] = run.logits.cpu().numpy()
        bar.update(len(rows) * m)


def _hook_plan(
    model: EmotionModel,
    variants: Sequence[Variant],
    provider: Provider,
    targets: np.ndarray,
    var_idx: np.ndarray,
) -> list[tuple[str, Any]]:
    """Hooks that overwrite the last position of each batch row as its variant asks.

    Row ``r`` of the batch is target ``targets[r]`` under variant ``variants[var_idx[r]]``.
    """
    plan: dict[tuple[str, int], list[tuple[Tensor, Tensor | None, Tensor]]] = {}
    for j in np.unique(var_idx):
        variant = variants[int(j)]
        batch_rows = np.flatnonzero(var_idx == j)
        row_t = torch.as_tensor(batch_rows, device=model.device)
        head = None
        if variant.head is not None:
            head = torch.full((len(batch_rows),), variant.head, device=model.device)
        rows = torch.as_tensor(targets[batch_rows], device=model.device)
        for layer in variant.layers:
            plan.setdefault((variant.site, layer), []).append(
                (row_t, head, provider(variant, layer, rows))
            )
    hooks = []
    for (site, layer), writes in plan.items():

        def overwrite(act: Tensor, hook: Any, writes: list = writes) -> Tensor:
            act = act.clone()
            for row_t, head, values in writes:
                if head is None:
                    act[row_t, -1] = values.to(act.dtype)
                else:
                    act[row_t, -1, head] = values.to(act.dtype)
            return act

        hooks.append((model.hook_name(site, layer), overwrite))
    return hooks


@torch.inference_mode()
def _run_bridge(
    model: EmotionModel,
    target_tokens: Sequence[Sequence[int]],
    variants: Sequence[Variant],
    provider: Provider,
    labels: Tensor,
    bridge_rows: int,
    patched: np.ndarray,
    clean: np.ndarray,
    bar: Any,
) -> None:
    m = len(variants)
    for batch in length_batches([len(t) for t in target_tokens], bridge_rows):
        input_ids, mask = model.pad([target_tokens[i] for i in batch])
        clean[batch] = _bridge_forward(model, input_ids, mask, [])[:, labels].cpu().numpy()
        targets = np.repeat(batch, m)
        var_idx = np.tile(np.arange(m), len(batch))
        local = np.repeat(np.arange(len(batch)), m)
        for start in range(0, len(targets), bridge_rows):
            sl = slice(start, start + bridge_rows)
            hooks = _hook_plan(model, variants, provider, targets[sl], var_idx[sl])
            pick = torch.as_tensor(local[sl], device=model.device)
            logits = _bridge_forward(model, input_ids[pick], mask[pick], hooks)[:, labels]
            patched[targets[sl], var_idx[sl]] = logits.cpu().numpy()
            bar.update(len(targets[sl]))


@torch.inference_mode()
def _run_reference(
    model: EmotionModel,
    target_tokens: Sequence[Sequence[int]],
    variants: Sequence[Variant],
    provider: Provider,
    labels: Tensor,
    patched: np.ndarray,
    clean: np.ndarray,
    bar: Any,
) -> None:
    """Batch size 1, one forward pass per target per variant, hooks written out plainly."""
    for i, tokens in enumerate(target_tokens):
        input_ids = torch.tensor([list(tokens)], device=model.device)
        mask = torch.ones_like(input_ids)
        clean[i] = _bridge_forward(model, input_ids, mask, [])[0, labels].cpu().numpy()
        row = torch.tensor([i], device=model.device)
        for j, variant in enumerate(variants):
            hooks = []
            for layer in variant.layers:
                value = provider(variant, layer, row)[0]

                def overwrite(act: Tensor, hook: Any, value: Tensor = value, v=variant) -> Tensor:
                    act = act.clone()
                    if v.head is None:
                        act[0, -1] = value
                    else:
                        act[0, -1, v.head] = value
                    return act

                hooks.append((model.hook_name(variant.site, layer), overwrite))
            patched[i, j] = _bridge_forward(model, input_ids, mask, hooks)[0, labels].cpu().numpy()
            bar.update(1)
