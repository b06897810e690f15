"""Where does the answer position look? Attention patterns, token groups and emotion tokens.

Tak et al. (ACL 2025) report that early layers attend to syntax, middle layers move attention
onto the emotion-related words of the event description, and the last layers mostly carry the
final token's own representation forward. This module makes that measurable.

**Patterns.** :func:`capture_patterns` reads ``blocks.{l}.attn.hook_pattern`` of the
TransformerLens bridge with hooks that keep only what is asked for (the final query row, or
all rows, of chosen layers and heads). Under grouped-query attention there is still one pattern
per *query* head (9 on SmolLM2, which has 3 key/value heads). Prompts run in left-padded
batches; every position reported is relative to the prompt's real tokens (padding stripped).
With ``share_prefix=True`` (the default for final-row captures) the token prefix that all
prompts share (the template up to the event text) is run once and its keys/values are reused,
so each prompt only runs its own tail; the patterns are the same to float precision (tested).

**Token groups.** Every real token of a prompt is one of: ``sink`` (position 0, where unused
attention is parked), ``final`` (the last token, whose query reads the answer), ``context``
(tokens overlapping the character span of the event text inside the rendered prompt, found
through the tokenizer's offset mapping) and ``template`` (everything else: instruction,
few-shot examples, label list, answer cue).

**Emotion-bearing tokens** (the definition used throughout): occlusion saliency. For each
context token ``j``, the prompt is re-run with ``j`` hidden from attention (its key is masked in
every layer and the other tokens keep their positions, which equals deleting the token without
shifting positions) and ``saliency_j = log p(y | prompt) - log p(y | prompt without j)`` where
``y`` is the label the model predicts for the full prompt and ``p`` the full-vocabulary
probability of its first token at the answer position. Positive values mean the token supports
the prediction. The emotion-bearing tokens of a prompt are its top ``max(min_tokens,
ceil(top_frac * n_context))`` context tokens by saliency (default ``top_frac=0.2``, ties broken
by position). The variants are batched and run from the shared-prefix key/value cache, starting
at the first occluded token (positions before it are unchanged), on the plain transformers copy
of the weights.

**Attention mass.** :func:`attention_mass` sums the final token's attention over each group, per
layer and head, and over the two halves of the event text (``emotion`` = emotion-bearing,
``context_rest`` = the other context tokens). Results come both in total (the group's share of
the attention, groups sum to 1) and per token (total divided by the group's token count), with
seeded percentile-bootstrap 95% confidence intervals over prompts.

Example::

    result = attention_mass(model, data, template="emotion-list")
    result.band_frame()            # early / middle / late thirds, with intervals
    result.figure("per_token")     # mass by group vs layer, CI bands
    result.heatmap("emotion")      # layer x head map of attention to emotion-bearing tokens
    result.save("out/attention")   # CSV + JSON, atomic
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from lens_emotion.batching import iter_batches
from lens_emotion.errors import LensEmotionError
from lens_emotion.io import write_json_atomic, write_text_atomic
from lens_emotion.prompts import PromptSet, PromptTemplate, build_prompts

__all__ = [
    "GROUP_COLORS",
    "GROUP_NAMES",
    "MASS_GROUPS",
    "AttentionError",
    "AttentionMassResult",
    "AttentionPatterns",
    "Saliency",
    "TokenGroups",
    "attention_mass",
    "bootstrap_ci",
    "capture_patterns",
    "group_counts",
    "group_masses",
    "context_char_span",
    "layer_bands",
    "occlusion_saliency",
    "shared_prefix_length",
    "token_groups",
]


class AttentionError(LensEmotionError, ValueError):
    """Attention analysis input is inconsistent (layers, heads, tokens, spans, sample sizes)."""


GROUP_NAMES: tuple[str, ...] = ("sink", "template", "context", "final")
"""The four token groups that partition a prompt's real tokens (codes 0-3 in this order)."""

MASS_GROUPS: tuple[str, ...] = (*GROUP_NAMES, "emotion", "context_rest")
"""Groups attention mass is reported for: the partition plus the split of ``context`` into
emotion-bearing tokens and the rest of the event text."""

SINK, TEMPLATE, CONTEXT, FINAL = range(4)

GROUP_COLORS: dict[str, str] = {
    "sink": "#7F7F7F",
    "template": "#56B4E9",
    "context": "#009E73",
    "final": "#0072B2",
    "emotion": "#D55E00",
    "context_rest": "#E69F00",
}
"""Okabe-Ito colours per group, shared by the figures and the inspector."""

GROUP_LABELS: dict[str, str] = {
    "sink": "first token (sink)",
    "template": "template / instruction",
    "context": "event text (all)",
    "final": "final token (itself)",
    "emotion": "emotion-bearing tokens",
    "context_rest": "rest of event text",
}

_SENTINEL = "\x00LENS_EMOTION_TEXT\x00"


# ----------------------------------------------------------------------------------------------
# Token groups
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenGroups:
    """The token -> group map of one prompt.

    Attributes:
        prompt: The rendered prompt.
        token_ids: Its real tokens.
        tokens: Each token decoded on its own (for display).
        groups: Group code per token (index into :data:`GROUP_NAMES`).
        context_chars: ``(start, end)`` character span of the event text in ``prompt``.
    """

    prompt: str
    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    groups: Int[np.ndarray, " pos"] = field(repr=False)
    context_chars: tuple[int, int]

    def __len__(self) -> int:
        return len(self.token_ids)

    def positions(self, group: str) -> Int[np.ndarray, " k"]:
        """Positions (relative to the real tokens) of one group of :data:`GROUP_NAMES`."""
        if group not in GROUP_NAMES:
            raise AttentionError(f"Unknown group {group!r}; use one of {', '.join(GROUP_NAMES)}.")
        return np.flatnonzero(self.groups == GROUP_NAMES.index(group))

    @property
    def context_positions(self) -> Int[np.ndarray, " k"]:
        """Positions of the event-text tokens."""
        return self.positions("context")

    @property
    def context_start(self) -> int:
        """Position of the first event-text token."""
        return int(self.context_positions[0])


def context_char_span(
    template: PromptTemplate,
    prompt: str,
    text: str,
    label_names: Sequence[str],
    tokenizer: Any = None,
) -> tuple[int, int]:
    """Character span of the event text inside a rendered prompt.

    The template is rendered once more with a sentinel in place of the text; the sentinel's
    offset is where the text starts (everything before ``{text}`` does not depend on it). If
    that does not line up (a chat template that rewrites content), the last occurrence of the
    text in the prompt is used.

    Args:
        template: The template that rendered ``prompt``.
        prompt: The rendered prompt.
        text: The event text (it is stripped, as the template does).
        label_names: The labels the prompt was rendered with.
        tokenizer: Needed for chat templates.

    Returns:
        ``(start, end)`` with ``prompt[start:end] == text.strip()``.

    Raises:
        AttentionError: If the text does not occur in the prompt.
    """
    body = text.strip()
    probe = template.render(_SENTINEL, label_names, tokenizer)
    start = probe.find(_SENTINEL)
    if start < 0 or prompt[start : start + len(body)] != body:
        start = prompt.rfind(body)
    if start < 0 or not body:
        raise AttentionError(
            f"The event text {body[:60]!r} does not occur in the prompt rendered by template "
            f"'{template.name}'; attention groups need the text verbatim in the prompt. Use a "
            "template whose {text} slot is not rewritten (e.g. 'emotion-list' or 'paper')."
        )
    return start, start + len(body)


def _decode_tokens(tokenizer: Any, ids: Sequence[int]) -> tuple[str, ...]:
    return tuple(tokenizer.decode([int(t)]) for t in ids)


def token_groups(
    model: Any, prompt_set: PromptSet, texts: Sequence[str]
) -> tuple[TokenGroups, ...]:
    """Map every real token of every prompt to a group (sink, template, context, final).

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel` (its tokenizer must be a fast
            tokenizer, for offset mappings).
        prompt_set: The prompts, from :func:`~lens_emotion.prompts.build_prompts`.
        texts: The event texts the prompts were rendered from, in the same order.

    Returns:
        One :class:`TokenGroups` per prompt.

    Raises:
        AttentionError: Slow tokenizer, texts not matching the prompts, or re-tokenizing with
            offsets giving different tokens than the prompt set.
    """
    tokenizer = model.tokenizer
    if len(texts) != len(prompt_set):
        raise AttentionError(
            f"{len(texts)} texts for {len(prompt_set)} prompts; pass the texts the prompt set "
            "was built from."
        )
    if not getattr(tokenizer, "is_fast", False):
        raise AttentionError(
            "Token groups need a fast (Rust) tokenizer with offset mappings; load the model "
            "with a tokenizer.json (AutoTokenizer.from_pretrained(..., use_fast=True))."
        )
    template = prompt_set.template
    labels = prompt_set.label_tokens.labels
    encoded = tokenizer(
        list(prompt_set.prompts),
        add_special_tokens=template.add_special_tokens,
        return_offsets_mapping=True,
    )
    out = []
    for i, (prompt, text) in enumerate(zip(prompt_set.prompts, texts, strict=True)):
        ids = tuple(int(t) for t in encoded["input_ids"][i])
        if ids != tuple(prompt_set.token_ids[i]):
            raise AttentionError(
                f"Prompt {i}: tokenizing with offsets gives different tokens than the prompt "
                "set; build the prompt set with the same model's tokenizer."
            )
        start, end = context_char_span(template, prompt, text, labels, tokenizer)
        groups = np.full(len(ids), TEMPLATE, dtype=np.int8)
        for pos, (a, b) in enumerate(encoded["offset_mapping"][i]):
            if b > a and a < end and b > start:
                groups[pos] = CONTEXT
        groups[0] = SINK
        groups[-1] = FINAL
        if not (groups == CONTEXT).any():
            raise AttentionError(
                f"Prompt {i}: no token overlaps the event text; the text must be inside the "
                "prompt and neither its first nor its last token."
            )
        out.append(
            TokenGroups(
                prompt=prompt,
                token_ids=ids,
                tokens=_decode_tokens(tokenizer, ids),
                groups=groups,
                context_chars=(start, end),
            )
        )
    return tuple(out)


def shared_prefix_length(
    token_lists: Sequence[Sequence[int]], limits: Sequence[int] | None = None
) -> int:
    """Length of the longest token prefix all lists share.

    Args:
        token_lists: Token ids per prompt.
        limits: Optional per-prompt caps (e.g. the first event-text position); the result is
            at most each cap, and always leaves at least one token of every prompt unshared.

    Returns:
        The shared prefix length (0 if none).
    """
    if not token_lists:
        return 0
    cap = min(len(ids) for ids in token_lists) - 1
    if limits is not None:
        cap = min([cap, *limits])
    first = token_lists[0]
    length = 0
    while length < cap and all(ids[length] == first[length] for ids in token_lists):
        length += 1
    return max(length, 0)


# ----------------------------------------------------------------------------------------------
# KV-cache helpers (HF DynamicCache)
# ----------------------------------------------------------------------------------------------


def _cache_kv(cache: Any) -> list[tuple[Tensor, Tensor]]:
    """Per-layer ``(keys, values)`` of a Hugging Face cache, each ``[batch, kv_heads, pos, d]``."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache, strict=True))
    return [(k, v) for k, v in cache]


def _make_cache(kv: Sequence[tuple[Tensor, Tensor]], batch: int, upto: int) -> Any:
    """A fresh DynamicCache with the first ``upto`` positions of ``kv``, ``batch`` times.

    The source tensors are never modified (the cache concatenates into new tensors).
    """
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer, (keys, values) in enumerate(kv):
        shape = (batch, -1, -1, -1)
        cache.update(keys[..., :upto, :].expand(shape), values[..., :upto, :].expand(shape), layer)
    return cache


# ----------------------------------------------------------------------------------------------
# Pattern capture
# ----------------------------------------------------------------------------------------------


class _StopForward(Exception):
    """Raised in a hook to end the forward pass once the last needed pattern is read."""


def _check_layers(model: Any, layers: Sequence[int] | None) -> tuple[int, ...]:
    if layers is None:
        return tuple(range(model.n_layers))
    out = tuple(int(layer) for layer in layers)
    bad = [layer for layer in out if not 0 <= layer < model.n_layers]
    if not out or bad or len(set(out)) != len(out):
        raise AttentionError(
            f"layers {list(layers)} are invalid for a {model.n_layers}-layer model; pass "
            f"distinct layers in 0..{model.n_layers - 1} (or None for all)."
        )
    return out


def _check_heads(model: Any, heads: Sequence[int] | None) -> tuple[int, ...]:
    if heads is None:
        return tuple(range(model.n_heads))
    out = tuple(int(h) for h in heads)
    bad = [h for h in out if not 0 <= h < model.n_heads]
    if not out or bad or len(set(out)) != len(out):
        raise AttentionError(
            f"heads {list(heads)} are invalid: the model has {model.n_heads} query heads "
            f"({model.n_kv_heads} key/value heads); pass distinct heads in "
            f"0..{model.n_heads - 1} (or None for all)."
        )
    return out


def _prefix_kv(model: Any, prefix: Sequence[int], engine: str) -> list[tuple[Tensor, Tensor]]:
    ids = torch.tensor([list(prefix)], dtype=torch.long, device=model.device)
    with torch.inference_mode():
        if engine == "bridge":
            _, cache = model.bridge(ids, return_type="logits_and_cache")
        else:
            cache = model.plain_model(input_ids=ids, use_cache=True, logits_to_keep=1)
            cache = cache.past_key_values
    return _cache_kv(cache)


def _iter_patterns(
    model: Any,
    token_lists: Sequence[Sequence[int]],
    layers: Sequence[int],
    heads: Sequence[int],
    full_layers: Sequence[int],
    query_from: Sequence[int],
    batch_size: int,
    prefix_len: int,
    progress: bool,
    desc: str,
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """Yield ``(index, final_rows, full_rows)`` per prompt, in batch order.

    ``final_rows`` is ``[len(layers), len(heads), n]`` (the final query's pattern over the real
    keys); ``full_rows`` is ``[len(full_layers), len(heads), n - query_from[i], n]`` (query rows
    from ``query_from[i]`` on) or ``None`` when ``full_layers`` is empty.
    """
    wanted = sorted(set(layers) | set(full_layers))
    full_set = set(full_layers)
    if full_layers and prefix_len > min(query_from):
        raise AttentionError("Full query rows must start at or after the shared prefix.")
    last = wanted[-1]
    head_idx = torch.tensor(list(heads), dtype=torch.long)
    kv = _prefix_kv(model, token_lists[0][:prefix_len], "bridge") if prefix_len else None
    bar = tqdm(total=len(token_lists), desc=desc, disable=not progress, unit="prompt")
    for indices, batch in iter_batches(token_lists, batch_size):
        tails = [list(ids[prefix_len:]) for ids in batch]
        input_ids, tail_mask = model.pad(tails)
        width = input_ids.shape[1]
        kwargs: dict[str, Any] = {}
        if prefix_len:
            ones = torch.ones((len(batch), prefix_len), dtype=tail_mask.dtype, device=model.device)
            mask = torch.cat([ones, tail_mask], dim=1)
            positions = (prefix_len + tail_mask.cumsum(-1) - 1).clamp(min=prefix_len)
            kwargs = {"past_key_values": _make_cache(kv, len(batch), prefix_len)}
            kwargs["position_ids"] = positions
        else:
            mask = tail_mask
        seen: dict[int, Tensor] = {}

        def keep(act: Tensor, hook: Any, seen: dict[int, Tensor] = seen) -> None:
            layer = int(hook.name.split(".")[1])
            # act: [batch, heads, query, key]; keys = shared prefix + this batch's padded tails.
            # Keep every query row only where full matrices are wanted, else the last row.
            rows = act.detach()[:, head_idx.to(act.device)]
            seen[layer] = (rows if layer in full_set else rows[:, :, -1:, :]).float().cpu()
            if layer == last:
                raise _StopForward

        hooks = [(model.hook_name("pattern", layer), keep) for layer in wanted]
        with torch.inference_mode(), contextlib.suppress(_StopForward):
            model.bridge.run_with_hooks(
                input_ids, attention_mask=mask, fwd_hooks=hooks, return_type=None, **kwargs
            )
        for row, index in enumerate(indices):
            n_tail = len(tails[row])
            keys = torch.cat(
                [
                    torch.arange(prefix_len),
                    torch.arange(prefix_len + width - n_tail, prefix_len + width),
                ]
            )
            final = np.stack([seen[layer][row, :, -1, keys].numpy() for layer in layers])
            full = None
            if full_layers:
                first = width - n_tail + (query_from[index] - prefix_len)
                full = np.stack(
                    [seen[layer][row, :, first:, :][:, :, keys].numpy() for layer in full_layers]
                )
            yield int(index), final, full
        bar.update(len(indices))
    bar.close()


def _as_token_lists(
    model: Any, prompts: PromptSet | Sequence[str] | Sequence[Sequence[int]]
) -> list[list[int]]:
    if isinstance(prompts, PromptSet):
        return [list(ids) for ids in prompts.token_ids]
    items = list(prompts)
    if not items:
        raise AttentionError("No prompts given; pass a PromptSet, prompt strings or token ids.")
    if all(isinstance(p, str) for p in items):
        return model.encode(items)
    return [[int(t) for t in ids] for ids in items]


@dataclass(frozen=True)
class AttentionPatterns:
    """Attention patterns of chosen layers and heads, over each prompt's real tokens.

    Attributes:
        ids: One id per prompt.
        tokens: Each prompt's real tokens as text.
        layers: Layers captured, in array order.
        heads: Query heads captured, in array order.
        query: ``"final"`` (patterns are ``[layer, head, key]``: the last token's query row)
            or ``"all"`` (``[layer, head, query, key]``).
        patterns: One float32 array per prompt (positions relative to its real tokens).
    """

    ids: tuple[str, ...]
    tokens: tuple[tuple[str, ...], ...]
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    query: str
    patterns: tuple[np.ndarray, ...] = field(repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def pattern(
        self, index: int
    ) -> Float[np.ndarray, "layer head key"] | Float[np.ndarray, "layer head query key"]:
        """The pattern array of one prompt."""
        return self.patterns[index]

    def layer(
        self, index: int, layer: int
    ) -> Float[np.ndarray, "head key"] | Float[np.ndarray, "head query key"]:
        """One prompt's patterns at one captured layer (model layer number)."""
        if layer not in self.layers:
            raise AttentionError(f"Layer {layer} was not captured; captured: {list(self.layers)}.")
        return self.patterns[index][self.layers.index(layer)]

    def to_frame(self) -> pd.DataFrame:
        """Long format: id, layer, head, (query,) key, token, weight. Large for ``"all"``."""
        frames = []
        for i, arr in enumerate(self.patterns):
            if self.query == "final":
                layer, head, key = np.meshgrid(
                    np.arange(arr.shape[0]),
                    np.arange(arr.shape[1]),
                    np.arange(arr.shape[2]),
                    indexing="ij",
                )
                frame = pd.DataFrame({"key": key.ravel()})
            else:
                layer, head, query, key = np.meshgrid(
                    *[np.arange(s) for s in arr.shape], indexing="ij"
                )
                frame = pd.DataFrame({"query": query.ravel(), "key": key.ravel()})
            frame.insert(0, "head", np.asarray(self.heads)[head.ravel()])
            frame.insert(0, "layer", np.asarray(self.layers)[layer.ravel()])
            frame.insert(0, "id", self.ids[i])
            frame["token"] = np.asarray(self.tokens[i], dtype=object)[frame["key"].to_numpy()]
            frame["weight"] = arr.ravel()
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``patterns.csv`` (long format) and ``patterns.json`` (tokens, layers, heads)."""
        out = Path(out_dir)
        meta = {
            "query": self.query,
            "layers": list(self.layers),
            "heads": list(self.heads),
            "ids": list(self.ids),
            "tokens": [list(t) for t in self.tokens],
            "positions": "relative to each prompt's real tokens (padding stripped)",
        }
        return [
            write_text_atomic(out / "patterns.csv", self.to_frame().to_csv(index=False)),
            write_json_atomic(out / "patterns.json", meta),
        ]

    def figure(self, index: int = 0, layer: int | None = None) -> Any:
        """Heatmap of one prompt at one layer.

        Heads x key tokens for ``"final"``; the head-averaged query x key matrix for ``"all"``.
        """
        import plotly.graph_objects as go

        from lens_emotion.viz import apply_style

        layer = self.layers[-1] if layer is None else layer
        arr = self.layer(index, layer)
        tokens = [f"{k}:{t}" for k, t in enumerate(self.tokens[index])]
        if self.query == "final":
            z, y = arr, [f"H{h}" for h in self.heads]
            title = f"Attention of the final token, layer {layer} ({self.ids[index]})"
        else:
            z, y = arr.mean(axis=0), tokens[len(tokens) - arr.shape[1] :]
            title = f"Attention (mean of heads), layer {layer} ({self.ids[index]})"
        fig = go.Figure(
            go.Heatmap(
                z=z,
                x=tokens,
                y=y,
                colorscale="Blues",
                zmin=0,
                colorbar={"title": {"text": "weight"}},
                hovertemplate="key %{x}<br>%{y}<br>weight %{z:.4f}<extra></extra>",
            )
        )
        apply_style(fig, title=title)
        fig.update_xaxes(title_text="key token", tickangle=-60, type="category")
        fig.update_yaxes(title_text="head" if self.query == "final" else "query token")
        return fig


def capture_patterns(
    model: Any,
    prompts: PromptSet | Sequence[str] | Sequence[Sequence[int]],
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    query: str = "final",
    *,
    ids: Sequence[str] | None = None,
    batch_size: int = 8,
    share_prefix: bool = True,
    progress: bool = False,
) -> AttentionPatterns:
    """Read attention patterns from ``blocks.{l}.attn.hook_pattern`` of the bridge.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        prompts: A :class:`~lens_emotion.prompts.PromptSet`, prompt strings (tokenized with
            special tokens) or token-id lists.
        layers: Layers to read (default all).
        heads: Query heads to read (default all; one pattern per query head under GQA).
        query: ``"final"`` for the last token's query row, ``"all"`` for every query.
        ids: Ids of the prompts (default ``"0"``, ``"1"``, ...).
        batch_size: Prompts per forward pass (length-bucketed, left-padded).
        share_prefix: For ``"final"``: run the token prefix shared by all prompts once and
            reuse its keys/values (same patterns, much less compute on long templates).
        progress: Show a progress bar.

    Returns:
        The :class:`AttentionPatterns` (prompt order kept).

    Raises:
        AttentionError: Bad layers, heads, ``query`` or ids.
    """
    if query not in {"final", "all"}:
        raise AttentionError(f"query must be 'final' or 'all', not {query!r}.")
    token_lists = _as_token_lists(model, prompts)
    layer_t, head_t = _check_layers(model, layers), _check_heads(model, heads)
    names = tuple(str(i) for i in range(len(token_lists))) if ids is None else tuple(ids)
    if len(names) != len(token_lists):
        raise AttentionError(f"{len(names)} ids for {len(token_lists)} prompts.")
    prefix = shared_prefix_length(token_lists) if share_prefix and query == "final" else 0
    out: list[np.ndarray | None] = [None] * len(token_lists)
    full_layers = layer_t if query == "all" else ()
    for index, final, full in _iter_patterns(
        model,
        token_lists,
        layer_t,
        head_t,
        full_layers,
        [0] * len(token_lists),
        batch_size,
        prefix,
        progress,
        "attention",
    ):
        out[index] = full if query == "all" else final
    return AttentionPatterns(
        ids=names,
        tokens=tuple(_decode_tokens(model.tokenizer, ids) for ids in token_lists),
        layers=layer_t,
        heads=head_t,
        query=query,
        patterns=tuple(out),  # type: ignore[arg-type]
    )


# ----------------------------------------------------------------------------------------------
# Occlusion saliency
# ----------------------------------------------------------------------------------------------


def _n_emotion(n_context: int, top_frac: float, min_tokens: int) -> int:
    return min(n_context, max(min_tokens, math.ceil(top_frac * n_context)))


@dataclass(frozen=True)
class Saliency:
    """Occlusion saliency of each event-text token for the model's predicted label.

    Attributes:
        ids: One id per prompt.
        label_names: Candidate labels.
        base_logprobs: Full-vocabulary log-prob of each label's scored token for the full
            prompt, ``(n, n_labels)``.
        targets: Index of the predicted label (argmax of ``base_logprobs``) per prompt.
        positions: Per prompt, the context token positions (relative to the real tokens).
        tokens: Per prompt, those tokens as text.
        values: Per prompt, ``log p(target) - log p(target | token masked)`` per context token.
        top_frac: Fraction of context tokens called emotion-bearing.
        min_tokens: At least this many emotion-bearing tokens per prompt.
        method: How tokens were occluded.
    """

    ids: tuple[str, ...]
    label_names: tuple[str, ...]
    base_logprobs: Float[np.ndarray, "n n_labels"] = field(repr=False)
    targets: tuple[int, ...]
    positions: tuple[np.ndarray, ...] = field(repr=False)
    tokens: tuple[tuple[str, ...], ...] = field(repr=False)
    values: tuple[np.ndarray, ...] = field(repr=False)
    top_frac: float = 0.2
    min_tokens: int = 1
    method: str = "attention-mask occlusion (key masked in every layer, positions kept)"

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def predictions(self) -> tuple[str, ...]:
        """The predicted label per prompt."""
        return tuple(self.label_names[t] for t in self.targets)

    @property
    def probabilities(self) -> Float[np.ndarray, "n n_labels"]:
        """Label probabilities renormalised over the labels."""
        shifted = self.base_logprobs - self.base_logprobs.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        return probs / probs.sum(axis=1, keepdims=True)

    def ranks(self, index: int) -> Int[np.ndarray, " k"]:
        """Rank (0 = most salient) of each context token of one prompt; ties by position."""
        order = np.lexsort((self.positions[index], -self.values[index]))
        ranks = np.empty(len(order), dtype=np.int64)
        ranks[order] = np.arange(len(order))
        return ranks

    def n_emotion(self, index: int) -> int:
        """Number of emotion-bearing tokens of one prompt."""
        return _n_emotion(len(self.values[index]), self.top_frac, self.min_tokens)

    def emotion_mask(self, index: int) -> np.ndarray:
        """Boolean mask over one prompt's context tokens: emotion-bearing or not."""
        return self.ranks(index) < self.n_emotion(index)

    def emotion_positions(self, index: int) -> Int[np.ndarray, " k"]:
        """Positions of one prompt's emotion-bearing tokens (ascending)."""
        return self.positions[index][self.emotion_mask(index)]

    def to_frame(self) -> pd.DataFrame:
        """One row per context token.

        Columns: id, prediction, position, token, saliency, rank, emotion_bearing.
        """
        rows = []
        for i in range(len(self)):
            ranks, mask = self.ranks(i), self.emotion_mask(i)
            for j, pos in enumerate(self.positions[i]):
                rows.append(
                    {
                        "id": self.ids[i],
                        "prediction": self.predictions[i],
                        "position": int(pos),
                        "token": self.tokens[i][j],
                        "saliency": float(self.values[i][j]),
                        "rank": int(ranks[j]),
                        "emotion_bearing": bool(mask[j]),
                    }
                )
        return pd.DataFrame(rows)

    def describe(self) -> dict[str, Any]:
        """The emotion-bearing-token definition, for manifests and JSON outputs."""
        return {
            "method": self.method,
            "score": "log p(predicted label) - log p(predicted label | token occluded)",
            "emotion_bearing": f"top max({self.min_tokens}, ceil({self.top_frac} * n_context)) "
            "context tokens by saliency (ties: earlier position first)",
            "top_frac": self.top_frac,
            "min_tokens": self.min_tokens,
        }

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``saliency.csv`` and ``saliency.json`` (definition, labels, predictions)."""
        out = Path(out_dir)
        meta = {
            **self.describe(),
            "label_names": list(self.label_names),
            "ids": list(self.ids),
            "predictions": list(self.predictions),
        }
        return [
            write_text_atomic(out / "saliency.csv", self.to_frame().to_csv(index=False)),
            write_json_atomic(out / "saliency.json", meta),
        ]

    def figure(self, index: int = 0) -> Any:
        """Bar chart of one prompt's context-token saliencies; emotion-bearing bars coloured."""
        import plotly.graph_objects as go

        from lens_emotion.viz import apply_style

        mask = self.emotion_mask(index)
        labels = [
            f"{p}:{t}" for p, t in zip(self.positions[index], self.tokens[index], strict=True)
        ]
        colors = [GROUP_COLORS["emotion"] if m else GROUP_COLORS["context_rest"] for m in mask]
        fig = go.Figure(
            go.Bar(
                x=labels,
                y=self.values[index],
                marker_color=colors,
                hovertemplate="%{x}<br>saliency %{y:.3f}<extra></extra>",
            )
        )
        apply_style(
            fig,
            title=f"Occlusion saliency for '{self.predictions[index]}' ({self.ids[index]}); "
            "orange-red = emotion-bearing",
        )
        fig.update_xaxes(title_text="event-text token", tickangle=-60, type="category")
        fig.update_yaxes(title_text="drop in log p(prediction)")
        return fig

    def view(self, index: int = 0) -> Any:
        """The context tokens coloured by saliency, as an offline CircuitsVis view."""
        from lens_emotion.viz.circuitsvis import colored_tokens_view

        return colored_tokens_view(
            self.tokens[index],
            self.values[index],
            title=f"Occlusion saliency for '{self.predictions[index]}' ({self.ids[index]})",
        )


def _logprob_rows(model: Any, **kwargs: Any) -> tuple[Float[Tensor, "batch d_vocab"], Any]:
    """Log-softmax at the last position from the plain model, and its raw output."""
    out = model.plain_model(logits_to_keep=1, **kwargs)
    return torch.log_softmax(out.logits[:, -1, :].float(), dim=-1), out


def occlusion_saliency(
    model: Any,
    prompt_set: PromptSet,
    groups: Sequence[TokenGroups],
    *,
    ids: Sequence[str] | None = None,
    top_frac: float = 0.2,
    min_tokens: int = 1,
    chunk: int = 8,
    use_cache: bool = True,
    progress: bool = False,
) -> Saliency:
    """Occlusion saliency of every event-text token (see the module docstring for the method).

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel` (its plain transformers copy runs
            the variants).
        prompt_set: The prompts.
        groups: Their token groups (:func:`token_groups`).
        ids: Prompt ids (default ``"0"``, ``"1"``, ...).
        top_frac: Fraction of context tokens called emotion-bearing (``0 < top_frac <= 1``).
        min_tokens: At least this many emotion-bearing tokens per prompt.
        chunk: Occluded variants per forward pass. Each pass starts at its first occluded
            token and reuses the full prompt's keys/values before it.
        use_cache: Reuse keys/values (shared template prefix, and the positions before the
            occluded token). ``False`` runs every variant in full (slow reference path).
        progress: Show a progress bar.

    Returns:
        The :class:`Saliency`.

    Raises:
        AttentionError: Bad ``top_frac``/``min_tokens``/``chunk``, or mismatched inputs.
    """
    if not 0 < top_frac <= 1:
        raise AttentionError(f"top_frac must be in (0, 1], got {top_frac}; e.g. 0.2.")
    if min_tokens < 1 or chunk < 1:
        raise AttentionError("min_tokens and chunk must be at least 1.")
    if len(groups) != len(prompt_set):
        raise AttentionError(f"{len(groups)} token groups for {len(prompt_set)} prompts.")
    names = tuple(str(i) for i in range(len(prompt_set))) if ids is None else tuple(ids)
    if len(names) != len(prompt_set):
        raise AttentionError(f"{len(names)} ids for {len(prompt_set)} prompts.")
    label_ids = torch.tensor(prompt_set.label_tokens.token_ids, device=model.device)
    token_lists = [list(ids_) for ids_ in prompt_set.token_ids]
    starts = [g.context_start for g in groups]
    prefix = shared_prefix_length(token_lists, starts) if use_cache else 0
    prefix_kv = _prefix_kv(model, token_lists[0][:prefix], "plain") if prefix else None
    device = model.device
    base_rows, positions, values, targets = [], [], [], []
    bar = tqdm(total=len(prompt_set), desc="occlusion", disable=not progress, unit="prompt")
    for ids_, grp in zip(token_lists, groups, strict=True):
        n = len(ids_)
        ctx = grp.context_positions
        full_ids = torch.tensor([ids_], dtype=torch.long, device=device)
        with torch.inference_mode():
            if use_cache:
                kwargs: dict[str, Any] = {"use_cache": True}
                if prefix:
                    kwargs["past_key_values"] = _make_cache(prefix_kv, 1, prefix)
                logprobs, out = _logprob_rows(
                    model,
                    input_ids=full_ids[:, prefix:],
                    attention_mask=torch.ones((1, n), dtype=torch.long, device=device),
                    position_ids=torch.arange(prefix, n, device=device)[None],
                    **kwargs,
                )
                base_kv = _cache_kv(out.past_key_values)
            else:
                logprobs, _ = _logprob_rows(model, input_ids=full_ids, use_cache=False)
            label_lp = logprobs[0, label_ids]
            target = int(label_lp.argmax())
            base = float(label_lp[target])
            drops = np.zeros(len(ctx), dtype=np.float32)
            for lo in range(0, len(ctx), chunk):
                occluded = ctx[lo : lo + chunk]
                k = len(occluded)
                start = int(occluded[0]) if use_cache else 0
                mask = torch.ones((k, n), dtype=torch.long, device=device)
                mask[torch.arange(k), torch.as_tensor(occluded, device=device)] = 0
                extra = {"past_key_values": _make_cache(base_kv, k, start)} if start else {}
                logprobs, _ = _logprob_rows(
                    model,
                    input_ids=full_ids[:, start:].expand(k, -1),
                    attention_mask=mask,
                    position_ids=torch.arange(start, n, device=device)[None].expand(k, -1),
                    use_cache=bool(start),
                    **extra,
                )
                drops[lo : lo + k] = base - logprobs[:, label_ids[target]].cpu().numpy()
        base_rows.append(label_lp.cpu().numpy())
        positions.append(ctx.copy())
        values.append(drops)
        targets.append(target)
        bar.update(1)
    bar.close()
    return Saliency(
        ids=names,
        label_names=tuple(prompt_set.label_tokens.labels),
        base_logprobs=np.stack(base_rows).astype(np.float32),
        targets=tuple(targets),
        positions=tuple(positions),
        tokens=tuple(
            tuple(g.tokens[p] for p in pos) for g, pos in zip(groups, positions, strict=True)
        ),
        values=tuple(values),
        top_frac=float(top_frac),
        min_tokens=int(min_tokens),
    )


# ----------------------------------------------------------------------------------------------
# Attention mass by token group
# ----------------------------------------------------------------------------------------------


def group_masses(
    final: Float[np.ndarray, "layer head key"],
    groups: Int[np.ndarray, " key"],
    emotion_positions: Int[np.ndarray, " k"],
) -> Float[np.ndarray, "layer head group"]:
    """Final-token attention mass on each of :data:`MASS_GROUPS` (total, not per token)."""
    out = np.zeros((*final.shape[:2], len(MASS_GROUPS)), dtype=np.float64)
    for code in range(len(GROUP_NAMES)):
        out[..., code] = final[..., groups == code].sum(axis=-1)
    emotion = np.zeros(len(groups), dtype=bool)
    emotion[emotion_positions] = True
    out[..., 4] = final[..., emotion].sum(axis=-1)
    out[..., 5] = final[..., (groups == CONTEXT) & ~emotion].sum(axis=-1)
    return out


def group_counts(groups: Int[np.ndarray, " key"], n_emotion: int) -> Int[np.ndarray, " group"]:
    """Token count of each of :data:`MASS_GROUPS`."""
    counts = [int((groups == code).sum()) for code in range(len(GROUP_NAMES))]
    return np.asarray([*counts, n_emotion, counts[CONTEXT] - n_emotion], dtype=np.int64)


def bootstrap_ci(
    values: Float[np.ndarray, "n ..."],
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over the first axis with a percentile-bootstrap confidence interval.

    NaNs (e.g. a per-token mass of an empty group) are left out of each mean.

    Args:
        values: Samples along axis 0 (e.g. prompts), any trailing shape.
        n_boot: Bootstrap resamples.
        seed: Seed of :func:`numpy.random.default_rng` (same seed, same interval).
        ci: Coverage of the interval.

    Returns:
        ``(mean, low, high)``, each of the trailing shape.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape[0] == 0:
        raise AttentionError("No samples to bootstrap; pass at least one prompt.")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.shape[0], size=(n_boot, arr.shape[0]))
    with np.errstate(all="ignore"), _quiet_nan():
        mean = np.nanmean(arr, axis=0)
        boot = np.nanmean(arr[idx], axis=1)
        alpha = (1 - ci) / 2
        low, high = np.nanquantile(boot, [alpha, 1 - alpha], axis=0)
    return mean, low, high


@contextlib.contextmanager
def _quiet_nan() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def layer_bands(n_layers: int) -> dict[str, tuple[int, ...]]:
    """Split ``0..n_layers-1`` into thirds: ``early``, ``middle``, ``late``."""
    parts = np.array_split(np.arange(n_layers), 3)
    return {
        name: tuple(int(x) for x in part)
        for name, part in zip(("early", "middle", "late"), parts, strict=True)
    }


_NORMALISATIONS = ("total", "per_token")


@dataclass(frozen=True)
class AttentionMassResult:
    """How much the final token attends to each token group, per prompt, layer and head.

    Attributes:
        model_id: The model.
        template: Template name.
        ids: Prompt ids.
        labels: Human label per prompt.
        predictions: Predicted label per prompt.
        n_layers: Layers of the model (for the early/middle/late bands).
        layers: Layers analysed.
        heads: Query heads analysed.
        mass: Total attention mass ``(n, layer, head, group)`` over :data:`MASS_GROUPS`.
        n_tokens: Tokens per group ``(n, group)``.
        n_boot: Bootstrap resamples for the intervals.
        seed: Bootstrap seed.
        ci: Interval coverage.
        saliency: The occlusion saliency that defines the emotion-bearing tokens.
        groups: Token groups per prompt.
        patterns: The final-token patterns, if kept (``keep_patterns=True``).
    """

    model_id: str
    template: str
    ids: tuple[str, ...]
    labels: tuple[str, ...]
    predictions: tuple[str, ...]
    n_layers: int
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    mass: Float[np.ndarray, "n layer head group"] = field(repr=False)
    n_tokens: Int[np.ndarray, "n group"] = field(repr=False)
    n_boot: int = 1000
    seed: int = 0
    ci: float = 0.95
    saliency: Saliency | None = field(default=None, repr=False)
    groups: tuple[TokenGroups, ...] = field(default=(), repr=False)
    patterns: AttentionPatterns | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def per_token(self) -> Float[np.ndarray, "n layer head group"]:
        """Mass divided by the group's token count (NaN for an empty group)."""
        counts = self.n_tokens[:, None, None, :].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(counts > 0, self.mass / np.maximum(counts, 1), np.nan)

    def values(self, normalise: str = "total") -> Float[np.ndarray, "n layer head group"]:
        """``mass`` (``"total"``) or :attr:`per_token` (``"per_token"``)."""
        if normalise not in _NORMALISATIONS:
            raise AttentionError(f"normalise must be 'total' or 'per_token', not {normalise!r}.")
        return self.mass if normalise == "total" else self.per_token

    @cached_property
    def _layer_stats(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return {
            norm: bootstrap_ci(self.values(norm).mean(axis=2), self.n_boot, self.seed, self.ci)
            for norm in _NORMALISATIONS
        }

    def to_frame(self) -> pd.DataFrame:
        """Per layer and group, both normalisations, with bootstrap intervals over prompts.

        Heads are averaged within each prompt first. Columns: layer, group, normalise
        (``total`` or ``per_token``), mean, ci_low, ci_high, n.
        """
        rows = []
        for norm in _NORMALISATIONS:
            mean, low, high = self._layer_stats[norm]
            for li, layer in enumerate(self.layers):
                for gi, group in enumerate(MASS_GROUPS):
                    rows.append(
                        {
                            "layer": layer,
                            "group": group,
                            "normalise": norm,
                            "mean": mean[li, gi],
                            "ci_low": low[li, gi],
                            "ci_high": high[li, gi],
                            "n": len(self),
                        }
                    )
        return pd.DataFrame(rows)

    def head_frame(self) -> pd.DataFrame:
        """Per layer, head and group, both normalisations: mean over prompts."""
        rows = []
        with _quiet_nan():
            for norm in _NORMALISATIONS:
                mean = np.nanmean(self.values(norm), axis=0)
                for li, layer in enumerate(self.layers):
                    for hi, head in enumerate(self.heads):
                        for gi, group in enumerate(MASS_GROUPS):
                            rows.append(
                                {
                                    "layer": layer,
                                    "head": head,
                                    "group": group,
                                    "normalise": norm,
                                    "mean": mean[li, hi, gi],
                                }
                            )
        return pd.DataFrame(rows)

    def band_frame(self) -> pd.DataFrame:
        """Early / middle / late thirds of the model, per group and normalisation.

        Each value is the mean over the band's analysed layers and all heads, with bootstrap
        intervals over prompts. Group ``emotion_enrichment`` is the per-token mass on
        emotion-bearing tokens divided by the per-token mass on the rest of the event text
        (ratio of means).
        """
        rows = []
        for band, members in layer_bands(self.n_layers).items():
            sel = [i for i, layer in enumerate(self.layers) if layer in members]
            if not sel:
                continue
            for norm in _NORMALISATIONS:
                vals = self.values(norm)[:, sel].mean(axis=(1, 2))
                mean, low, high = bootstrap_ci(vals, self.n_boot, self.seed, self.ci)
                for gi, group in enumerate(MASS_GROUPS):
                    rows.append(
                        {
                            "band": band,
                            "layers": f"{self.layers[sel[0]]}-{self.layers[sel[-1]]}",
                            "group": group,
                            "normalise": norm,
                            "mean": mean[gi],
                            "ci_low": low[gi],
                            "ci_high": high[gi],
                        }
                    )
            mean, low, high = self._enrichment(sel)
            rows.append(
                {
                    "band": band,
                    "layers": f"{self.layers[sel[0]]}-{self.layers[sel[-1]]}",
                    "group": "emotion_enrichment",
                    "normalise": "ratio",
                    "mean": mean,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
        return pd.DataFrame(rows)

    def _enrichment(self, layer_idx: Sequence[int]) -> tuple[float, float, float]:
        """Ratio of mean per-token mass (emotion / rest of event text) with a bootstrap CI."""
        vals = self.per_token[:, list(layer_idx)].mean(axis=(1, 2))[:, 4:6]
        ok = np.isfinite(vals).all(axis=1)
        vals = vals[ok]
        if len(vals) == 0:
            return float("nan"), float("nan"), float("nan")
        rng = np.random.default_rng(self.seed)
        idx = rng.integers(0, len(vals), size=(self.n_boot, len(vals)))
        boot = vals[idx].mean(axis=1)
        ratios = boot[:, 0] / boot[:, 1]
        alpha = (1 - self.ci) / 2
        low, high = np.quantile(ratios, [alpha, 1 - alpha])
        mean = vals.mean(axis=0)
        return float(mean[0] / mean[1]), float(low), float(high)

    def enrichment_frame(self) -> pd.DataFrame:
        """Per layer: per-token mass on emotion-bearing tokens / on the rest of the event text."""
        rows = []
        for li, layer in enumerate(self.layers):
            mean, low, high = self._enrichment([li])
            rows.append({"layer": layer, "mean": mean, "ci_low": low, "ci_high": high})
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, Any]:
        """Key numbers as a JSON-friendly dict: bands, peak layers, definition, sizes."""
        frame = self.to_frame()
        peaks = {}
        for group in MASS_GROUPS:
            for norm in _NORMALISATIONS:
                sub = frame[(frame.group == group) & (frame.normalise == norm)]
                best = sub.loc[sub["mean"].idxmax()]
                peaks[f"{group}/{norm}"] = {"layer": int(best.layer), "mean": float(best["mean"])}
        return {
            "model_id": self.model_id,
            "template": self.template,
            "n_prompts": len(self),
            "layers": list(self.layers),
            "heads": list(self.heads),
            "groups": list(MASS_GROUPS),
            "n_tokens_mean": dict(
                zip(MASS_GROUPS, np.round(self.n_tokens.mean(axis=0), 2).tolist(), strict=True)
            ),
            "accuracy": float(np.mean(np.asarray(self.labels) == np.asarray(self.predictions))),
            "bands": self.band_frame().to_dict(orient="records"),
            "peak_layers": peaks,
            "emotion_tokens": self.saliency.describe() if self.saliency else None,
            "bootstrap": {"n_boot": self.n_boot, "seed": self.seed, "ci": self.ci},
        }

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write the CSV and JSON outputs atomically and return their paths.

        Files: ``attention_mass_layers.csv`` (:meth:`to_frame`), ``attention_mass_heads.csv``,
        ``attention_mass_bands.csv``, ``attention_mass_enrichment.csv``,
        ``attention_mass_prompts.csv`` (per prompt and layer, heads averaged),
        ``attention_mass.json`` (:meth:`summary`) and the saliency files.
        """
        out = Path(out_dir)
        prompt_rows = []
        for norm in _NORMALISATIONS:
            vals = self.values(norm).mean(axis=2)
            for i, pid in enumerate(self.ids):
                for li, layer in enumerate(self.layers):
                    row = {"id": pid, "layer": layer, "normalise": norm}
                    row.update({g: vals[i, li, gi] for gi, g in enumerate(MASS_GROUPS)})
                    prompt_rows.append(row)
        paths = [
            write_text_atomic(
                out / "attention_mass_layers.csv", self.to_frame().to_csv(index=False)
            ),
            write_text_atomic(
                out / "attention_mass_heads.csv", self.head_frame().to_csv(index=False)
            ),
            write_text_atomic(
                out / "attention_mass_bands.csv", self.band_frame().to_csv(index=False)
            ),
            write_text_atomic(
                out / "attention_mass_enrichment.csv", self.enrichment_frame().to_csv(index=False)
            ),
            write_text_atomic(
                out / "attention_mass_prompts.csv", pd.DataFrame(prompt_rows).to_csv(index=False)
            ),
            write_json_atomic(
                out / "attention_mass.json", json.loads(json.dumps(self.summary(), default=_plain))
            ),
        ]
        if self.saliency is not None:
            paths += self.saliency.save(out)
        return paths

    def figure(self, normalise: str = "total", groups: Sequence[str] | None = None) -> Any:
        """Line figure: attention mass of the final token by group vs layer, with CI bands.

        Args:
            normalise: ``"total"`` (share of the attention; the four partition groups sum to
                1) or ``"per_token"`` (share divided by the group's token count).
            groups: Groups to draw (default all of :data:`MASS_GROUPS`).
        """
        import plotly.graph_objects as go

        from lens_emotion.viz import apply_style

        self.values(normalise)  # validates the option
        mean, low, high = self._layer_stats[normalise]
        chosen = list(groups or MASS_GROUPS)
        fig = go.Figure()
        x = list(self.layers)
        for group in chosen:
            gi = MASS_GROUPS.index(group)
            color = GROUP_COLORS[group]
            fig.add_trace(
                go.Scatter(
                    x=x + x[::-1],
                    y=list(high[:, gi]) + list(low[::-1, gi]),
                    fill="toself",
                    fillcolor=_rgba(color, 0.18),
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=group,
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=mean[:, gi],
                    mode="lines+markers",
                    name=GROUP_LABELS[group],
                    legendgroup=group,
                    line={"color": color, "width": 2.5, "dash": "dot" if gi >= 4 else "solid"},
                    marker={"size": 5},
                    customdata=np.stack([low[:, gi], high[:, gi]], axis=1),
                    hovertemplate=f"{GROUP_LABELS[group]}<br>layer %{{x}}: %{{y:.4f}}"
                    "<br>95% CI %{customdata[0]:.4f}-%{customdata[1]:.4f}<extra></extra>",
                )
            )
        what = "total mass (share of attention)" if normalise == "total" else "mass per token"
        apply_style(
            fig,
            title=f"Final-token attention by token group, {what}<br><sup>{self.model_id}, "
            f"'{self.template}' prompt, n={len(self)} prompts, heads averaged, "
            f"{int(self.ci * 100)}% bootstrap CI</sup>",
        )
        fig.update_layout(
            height=580,
            margin={"t": 90, "b": 150},
            legend={"orientation": "h", "x": 0, "xanchor": "left", "y": -0.2, "yanchor": "top"},
        )
        fig.update_xaxes(title_text="layer", dtick=max(1, len(x) // 15))
        fig.update_yaxes(title_text=what, rangemode="tozero")
        return fig

    def heatmap(self, group: str = "emotion", normalise: str = "total") -> Any:
        """Layer x head heatmap of the final token's attention to one group, over prompts.

        Args:
            group: One of :data:`MASS_GROUPS` (default: the emotion-bearing tokens).
            normalise: ``"total"`` or ``"per_token"``.
        """
        import plotly.graph_objects as go

        from lens_emotion.viz import apply_style

        if group not in MASS_GROUPS:
            raise AttentionError(f"Unknown group {group!r}; use one of {', '.join(MASS_GROUPS)}.")
        with _quiet_nan():
            z = np.nanmean(self.values(normalise)[..., MASS_GROUPS.index(group)], axis=0)
        what = "total mass" if normalise == "total" else "mass per token"
        fig = go.Figure(
            go.Heatmap(
                z=z,
                x=[f"H{h}" for h in self.heads],
                y=list(self.layers),
                colorscale="Viridis",
                zmin=0,
                colorbar={"title": {"text": what}},
                hovertemplate="layer %{y}, head %{x}<br>%{z:.4f}<extra></extra>",
            )
        )
        apply_style(
            fig,
            title=f"Final-token attention to {GROUP_LABELS[group]} ({what})<br><sup>"
            f"{self.model_id}, n={len(self)} prompts</sup>",
        )
        fig.update_layout(
            height=max(420, 18 * len(self.layers) + 160), width=520 + 20 * len(self.heads)
        )
        fig.update_xaxes(title_text="query head", type="category")
        fig.update_yaxes(
            title_text="layer", autorange="reversed", dtick=max(1, len(self.layers) // 15)
        )
        return fig


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def prompts_with_saliency(
    model: Any,
    dataset: Any,
    template: Any,
    *,
    top_frac: float = 0.2,
    min_tokens: int = 1,
    use_cache: bool = True,
    progress: bool = False,
) -> tuple[PromptSet, tuple[TokenGroups, ...], Saliency]:
    """Build a dataset's prompts, their token groups and the occlusion saliency in one go.

    Shared by :func:`attention_mass` and the inspector.
    """
    prompt_set = build_prompts(model, dataset.texts, dataset.labels, dataset.label_names, template)
    groups = token_groups(model, prompt_set, dataset.texts)
    saliency = occlusion_saliency(
        model,
        prompt_set,
        groups,
        ids=tuple(dataset.ids),
        top_frac=top_frac,
        min_tokens=min_tokens,
        use_cache=use_cache,
        progress=progress,
    )
    return prompt_set, groups, saliency


def attention_mass(
    model: Any,
    dataset: Any,
    template: str | PromptTemplate = "emotion-list",
    layers: Sequence[int] | None = None,
    *,
    top_frac: float = 0.2,
    min_tokens: int = 1,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    batch_size: int = 8,
    keep_patterns: bool = False,
    share_prefix: bool = True,
    progress: bool = True,
) -> AttentionMassResult:
    """Attention of the final token to each token group, per layer and head, over a dataset.

    Runs, in order: prompt building, token groups, occlusion saliency (which defines the
    emotion-bearing tokens and the prediction), and one hooked pass that reads the final
    query row of every requested layer's ``hook_pattern``.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        dataset: An :class:`~lens_emotion.data.EmotionDataset`.
        template: Prompt template.
        layers: Layers (default all).
        top_frac: Fraction of event-text tokens called emotion-bearing (by saliency).
        min_tokens: At least this many emotion-bearing tokens per prompt.
        n_boot: Bootstrap resamples for confidence intervals.
        seed: Bootstrap seed.
        ci: Interval coverage.
        batch_size: Prompts per hooked forward pass.
        keep_patterns: Keep the final-token patterns in the result (memory grows with
            prompts x layers x heads x tokens).
        share_prefix: Run the template prefix shared by all prompts only once, in the hooked
            pass and in the occlusion variants (``False``: every prompt and variant in full;
            same numbers, slower).
        progress: Show progress bars.

    Returns:
        The :class:`AttentionMassResult`.

    Raises:
        AttentionError: Empty dataset, bad layers or saliency options.
    """
    if len(dataset) == 0:
        raise AttentionError("The dataset is empty; pass at least one text.")
    layer_t = _check_layers(model, layers)
    prompt_set, groups, saliency = prompts_with_saliency(
        model,
        dataset,
        template,
        top_frac=top_frac,
        min_tokens=min_tokens,
        use_cache=share_prefix,
        progress=progress,
    )
    ids = tuple(dataset.ids)
    token_lists = [list(t) for t in prompt_set.token_ids]
    prefix = shared_prefix_length(token_lists) if share_prefix else 0
    heads = tuple(range(model.n_heads))
    mass = np.zeros((len(ids), len(layer_t), len(heads), len(MASS_GROUPS)), dtype=np.float64)
    counts = np.zeros((len(ids), len(MASS_GROUPS)), dtype=np.int64)
    kept: list[np.ndarray | None] = [None] * len(ids)
    for index, final, _ in _iter_patterns(
        model,
        token_lists,
        layer_t,
        heads,
        (),
        [0] * len(ids),
        batch_size,
        prefix,
        progress,
        "attention",
    ):
        emo = saliency.emotion_positions(index)
        mass[index] = group_masses(final, groups[index].groups, emo)
        counts[index] = group_counts(groups[index].groups, len(emo))
        if keep_patterns:
            kept[index] = final.astype(np.float32)
    labels = prompt_set.label_tokens.labels
    patterns = None
    if keep_patterns:
        patterns = AttentionPatterns(
            ids=ids,
            tokens=tuple(g.tokens for g in groups),
            layers=layer_t,
            heads=heads,
            query="final",
            patterns=tuple(kept),  # type: ignore[arg-type]
        )
    return AttentionMassResult(
        model_id=str(getattr(model, "model_id", "model")),
        template=prompt_set.template.name,
        ids=ids,
        labels=tuple(labels[t] for t in prompt_set.targets),
        predictions=saliency.predictions,
        n_layers=int(model.n_layers),
        layers=layer_t,
        heads=heads,
        mass=mass,
        n_tokens=counts,
        n_boot=n_boot,
        seed=seed,
        ci=ci,
        saliency=saliency,
        groups=groups,
        patterns=patterns,
    )
