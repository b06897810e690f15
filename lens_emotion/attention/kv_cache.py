"""Key/value caches of a shared token prefix (Hugging Face ``DynamicCache``).

The prompts of one template share their first tokens (instruction, examples, label list up to
the event text). :func:`prefix_kv` runs that prefix once; :func:`make_cache` hands its keys and
values to each batch, so a forward only runs each prompt's own tail. Used by the pattern
capture and by the occlusion variants.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lens_emotion.models import EmotionModel

__all__ = ["cache_kv", "make_cache", "prefix_kv"]


def cache_kv(cache: Any) -> list[tuple[Tensor, Tensor]]:
    """Per-layer ``(keys, values)`` of a Hugging Face cache, each ``[batch, kv_heads, pos, d]``."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache, strict=True))
    return [(k, v) for k, v in cache]


def make_cache(kv: Sequence[tuple[Tensor, Tensor]], batch: int, upto: int) -> Any:
    """A fresh DynamicCache with the first ``upto`` positions of ``kv``, ``batch`` times.

    The source tensors are never modified (the cache concatenates into new tensors).
    """
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer, (keys, values) in enumerate(kv):
        shape = (batch, -1, -1, -1)
        cache.update(keys[..., :upto, :].expand(shape), values[..., :upto, :].expand(shape), layer)
    return cache


def prefix_kv(
    model: EmotionModel, prefix: Sequence[int], engine: str
) -> list[tuple[Tensor, Tensor]]:
    """Per-layer keys/values of ``prefix`` run once (``engine``: ``"bridge"`` or ``"plain"``)."""
    ids = torch.tensor([list(prefix)], dtype=torch.long, device=model.device)
    with torch.inference_mode():
        if engine == "bridge":
            _, cache = model.bridge(ids, return_type="logits_and_cache")
        else:
            cache = model.plain_model(input_ids=ids, use_cache=True, logits_to_keep=1)
            cache = cache.past_key_values
    return cache_kv(cache)
