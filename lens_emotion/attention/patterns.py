"""Attention patterns of chosen layers and heads, read from the TransformerLens bridge.

:func:`capture_patterns` reads ``blocks.{l}.attn.hook_pattern`` of the bridge with hooks that
keep only what is asked for (the final query row, or all rows, of chosen layers and heads).
Under grouped-query attention there is still one pattern per *query* head (9 on SmolLM2, which
has 3 key/value heads). Prompts run in left-padded batches; every position reported is relative
to the prompt's real tokens (padding stripped). With ``share_prefix=True`` (the default for
final-row captures) the token prefix that all prompts share (the template up to the event
text) is run once and its keys/values are reused, so each prompt only runs its own tail; the
patterns are the same to float precision (tested). The forward ends once the last needed layer
is read (:mod:`lens_emotion.early_stop`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from lens_emotion.attention.kv_cache import make_cache, prefix_kv
from lens_emotion.attention.tokens import AttentionError, decode_tokens, shared_prefix_length
from lens_emotion.batching import iter_batches
from lens_emotion.early_stop import stop_forward, stoppable
from lens_emotion.io import write_json_atomic, write_text_atomic
from lens_emotion.models import EmotionModel
from lens_emotion.prompts import PromptSet

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["AttentionPatterns", "capture_patterns"]


def _distinct_below(values: Sequence[int] | None, n: int) -> tuple[int, ...] | None:
    """``values`` as ints (``range(n)`` for ``None``).

    Returns ``None`` when they are empty, repeated or not all in ``0..n-1``.
    """
    if values is None:
        return tuple(range(n))
    out = tuple(int(v) for v in values)
    if not out or len(set(out)) != len(out) or any(not 0 <= v < n for v in out):
        return None
    return out


def check_layers(model: EmotionModel, layers: Sequence[int] | None) -> tuple[int, ...]:
    """``layers`` as a tuple (default all), checked against the model.

    Raises:
        AttentionError: Empty, out of range or repeated layers.
    """
    out = _distinct_below(layers, model.n_layers)
    if out is None:
        raise AttentionError(
            f"layers {list(layers)} are invalid for a {model.n_layers}-layer model; pass "
            f"distinct layers in 0..{model.n_layers - 1} (or None for all)."
        )
    return out


def check_heads(model: EmotionModel, heads: Sequence[int] | None) -> tuple[int, ...]:
    """``heads`` (query heads) as a tuple (default all), checked against the model.

    Raises:
        AttentionError: Empty, out of range or repeated heads.
    """
    out = _distinct_below(heads, model.n_heads)
    if out is None:
        raise AttentionError(
            f"heads {list(heads)} are invalid: the model has {model.n_heads} query heads "
            f"({model.n_kv_heads} key/value heads); pass distinct heads in "
            f"0..{model.n_heads - 1} (or None for all)."
        )
    return out


def iter_patterns(
    model: EmotionModel,
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
    kv = prefix_kv(model, token_lists[0][:prefix_len], "bridge") if prefix_len else None
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
            kwargs = {"past_key_values": make_cache(kv, len(batch), prefix_len)}
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
                stop_forward()

        hooks = [(model.hook_name("pattern", layer), keep) for layer in wanted]
        with torch.inference_mode(), stoppable():
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


def as_token_lists(
    model: EmotionModel, prompts: PromptSet | Sequence[str] | Sequence[Sequence[int]]
) -> list[list[int]]:
    """Token-id lists of a prompt set, prompt strings (encoded) or token-id lists."""
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

    @cached_property
    def _frame(self) -> pd.DataFrame:
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

    @property
    def table(self) -> pd.DataFrame:
        """Long format: id, layer, head, (query,) key, token, weight. Large for ``"all"``."""
        return self._frame

    def to_frame(self) -> pd.DataFrame:
        """:attr:`table` as a new DataFrame."""
        return self._frame.copy()

    def summary(self) -> dict[str, Any]:
        """Sizes of the capture: prompts, layers, heads, query rows and tokens per prompt."""
        return {
            "n_prompts": len(self),
            "layers": list(self.layers),
            "heads": list(self.heads),
            "query": self.query,
            "n_tokens": [len(t) for t in self.tokens],
        }

    def save(self, out: str | Path) -> list[Path]:
        """Write ``patterns.csv`` (long format) and ``patterns.json`` (tokens, layers, heads)."""
        folder = Path(out)
        meta = {
            "query": self.query,
            "layers": list(self.layers),
            "heads": list(self.heads),
            "ids": list(self.ids),
            "tokens": [list(t) for t in self.tokens],
            "positions": "relative to each prompt's real tokens (padding stripped)",
        }
        return [
            write_text_atomic(folder / "patterns.csv", self.table.to_csv(index=False)),
            write_json_atomic(folder / "patterns.json", meta),
        ]

    def figure(self, index: int = 0, layer: int | None = None) -> go.Figure:
        """Heatmap of one prompt at one layer (:func:`~.figures.patterns_figure`)."""
        from lens_emotion.attention.figures import patterns_figure

        return patterns_figure(self, index, layer)


def capture_patterns(
    model: EmotionModel,
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
    token_lists = as_token_lists(model, prompts)
    layer_t, head_t = check_layers(model, layers), check_heads(model, heads)
    names = tuple(str(i) for i in range(len(token_lists))) if ids is None else tuple(ids)
    if len(names) != len(token_lists):
        raise AttentionError(f"{len(names)} ids for {len(token_lists)} prompts.")
    prefix = shared_prefix_length(token_lists) if share_prefix and query == "final" else 0
    out: list[np.ndarray | None] = [None] * len(token_lists)
    full_layers = layer_t if query == "all" else ()
    for index, final, full in iter_patterns(
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
        tokens=tuple(decode_tokens(model.tokenizer, ids) for ids in token_lists),
        layers=layer_t,
        heads=head_t,
        query=query,
        patterns=tuple(out),  # type: ignore[arg-type]
    )
