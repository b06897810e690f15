"""Fast final-layer emotion scores under many last-token edits.

The emotion score of a prompt is the projection of the last layer's residual stream
(``resid_post``) at the last prompt token on an emotion direction. Edits that act only at the
last position leave every earlier position unchanged, so :class:`LastTokenScorer` runs each
prompt's prefix (all tokens but the last) once, keeps its key/value cache, and then scores any
number of edits with one-token forward passes on that cache: many edits x prompts go through
in batches, each row carrying its own edit (:mod:`.edits`). On SmolLM2 a scored row costs
roughly 1/30 of a full pass. The unedited result equals a plain full forward pass up to float
rounding (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from lens_emotion.architecture import sliding_window
from lens_emotion.batching import length_batches
from lens_emotion.circuits.edits import ComponentEdit, EditShape, edit_hooks, stack_edits
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.early_stop import stop_forward, stoppable

__all__ = ["LastTokenScorer"]


@dataclass
class _PrefixBatch:
    rows: Int[Tensor, " batch"]
    kv: list[tuple[Tensor, Tensor]]
    mask: Int[Tensor, "batch pos"]
    last_token: Int[Tensor, " batch"]
    position: Int[Tensor, " batch"]


def _cache_kv(cache: Any) -> list[tuple[Tensor, Tensor]]:
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache, strict=True))
    return [(k, v) for k, v in cache]


def _repeat_cache(kv: Sequence[tuple[Tensor, Tensor]], times: int) -> Any:
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer, (keys, values) in enumerate(kv):
        cache.update(keys.repeat_interleave(times, 0), values.repeat_interleave(times, 0), layer)
    return cache


class LastTokenScorer:
    """Score last-token edits on a fixed set of prompts from cached prefixes.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        token_ids: Tokenized prompts (at least 2 tokens each).
        batch_size: Prompts per prefix pass.
        max_rows: Rows (prompt x edit) per one-token pass.
        readout_layer: Layer whose ``resid_post`` is read (default: the last).
        progress: Show progress bars.
    """

    @torch.no_grad()
    def __init__(
        self,
        model: Any,
        token_ids: Sequence[Sequence[int]],
        batch_size: int = 16,
        max_rows: int = 96,
        readout_layer: int = -1,
        progress: bool = False,
    ) -> None:
        if not token_ids or min(len(ids) for ids in token_ids) < 2:
            raise CircuitError("LastTokenScorer needs prompts of at least 2 tokens.")
        window = sliding_window(model)
        longest = max(len(ids) for ids in token_ids)
        if window is not None and longest > window:
            raise CircuitError(
                f"the cached-prefix scorer cannot score prompts longer than the model's "
                f"sliding attention window ({longest} > {window} tokens): the bridge's cached "
                "one-token pass does not apply the window; use shorter prompts."
            )
        self.model = model
        self.shape = EditShape.of(model)
        self.n = len(token_ids)
        self.max_rows = max(int(max_rows), 1)
        self.readout_layer = readout_layer % self.shape.n_layers
        self.progress = progress
        self._batches: list[_PrefixBatch] = []
        bridge = model.bridge
        prefixes = [list(ids[:-1]) for ids in token_ids]
        for batch in length_batches([len(p) for p in prefixes], batch_size):
            input_ids, mask = model.pad([prefixes[i] for i in batch])
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            kwargs: dict[str, Any] = {"attention_mask": mask, "position_ids": positions}
            try:
                _, cache = bridge(
                    input_ids,
                    use_cache=True,
                    return_type="logits_and_cache",
                    logits_to_keep=1,
                    **kwargs,
                )
            except TypeError:
                _, cache = bridge(
                    input_ids, use_cache=True, return_type="logits_and_cache", **kwargs
                )
            self._batches.append(
                _PrefixBatch(
                    rows=torch.as_tensor(batch, dtype=torch.long),
                    kv=[(k.detach(), v.detach()) for k, v in _cache_kv(cache)],
                    mask=mask,
                    last_token=torch.as_tensor([token_ids[i][-1] for i in batch]),
                    position=torch.as_tensor([len(token_ids[i]) - 1 for i in batch]),
                )
            )

    @torch.no_grad()
    def residuals(self, edits: Sequence[ComponentEdit]) -> Float[Tensor, "n edit d_model"]:
        """The readout layer's ``resid_post`` at the last token, per prompt and edit."""
        if not edits:
            raise CircuitError("pass at least one edit (ComponentEdit() is the unedited model).")
        out = torch.empty((self.n, len(edits), self.shape.d_model))
        model, bridge = self.model, self.model.bridge
        readout_hook = model.hook_name("resid_post", self.readout_layer)
        total = sum(len(b.rows) for b in self._batches) * len(edits)
        # Called many times per search step: the bar clears itself when done.
        bar = tqdm(
            total=total, desc="scoring edits", disable=not self.progress, unit="row", leave=False
        )
        for batch in self._batches:
            size = len(batch.rows)
            chunk = max(1, self.max_rows // size)
            for start in range(0, len(edits), chunk):
                part = list(edits[start : start + chunk])
                c = len(part)
                stacked = stack_edits(part, self.shape).repeat(size)
                hooks = edit_hooks(model, stacked, positions="last")
                seen: dict[str, Tensor] = {}

                def read(act: Tensor, hook: Any, seen: dict[str, Tensor] = seen) -> None:
                    seen["x"] = act[:, -1].detach().float().cpu()
                    stop_forward()

                hooks.append((readout_hook, read))
                ones = torch.ones((size, 1), dtype=batch.mask.dtype, device=batch.mask.device)
                mask = torch.cat([batch.mask, ones], dim=1).repeat_interleave(c, 0)
                ids = batch.last_token.repeat_interleave(c, 0)[:, None].to(batch.mask.device)
                pos = batch.position.repeat_interleave(c, 0)[:, None].to(batch.mask.device)
                with stoppable():
                    bridge.run_with_hooks(
                        ids,
                        attention_mask=mask,
                        position_ids=pos,
                        past_key_values=_repeat_cache(batch.kv, c),
                        fwd_hooks=hooks,
                        return_type=None,
                    )
                out[batch.rows, start : start + c] = seen["x"].view(size, c, -1)
                bar.update(size * c)
        bar.close()
        return out

    def scores(
        self,
        edits: Sequence[ComponentEdit],
        readout: Float[Tensor, "k d_model"],
        center: Float[Tensor, " d_model"] | None = None,
    ) -> Float[Tensor, "n edit k"]:
        """Projections ``(x - center) . r`` of the readout residual on the rows of ``readout``.

        Args:
            edits: The edits (``ComponentEdit()`` is the unedited model).
            readout: Directions to project on (e.g. the final-layer emotion directions).
            center: Subtracted from the residual first (e.g. the mean over the discovery
                prompts, so that scores are relative to the average prompt).
        """
        x = self.residuals(edits).double()
        if center is not None:
            x = x - center.double()
        return torch.einsum("ned,kd->nek", x, readout.double()).float()
