"""Occlusion saliency: which event-text tokens carry the model's emotion prediction.

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
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from lens_emotion.attention.kv_cache import cache_kv, make_cache, prefix_kv
from lens_emotion.attention.tokens import (
    AttentionError,
    TokenGroups,
    shared_prefix_length,
    token_groups,
)
from lens_emotion.data import EmotionDataset
from lens_emotion.io import write_json_atomic, write_text_atomic
from lens_emotion.models import EmotionModel
from lens_emotion.prompts import PromptSet, PromptTemplate, build_prompts

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["Saliency", "occlusion_saliency", "prompts_with_saliency"]


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

    @cached_property
    def _frame(self) -> pd.DataFrame:
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

    @property
    def table(self) -> pd.DataFrame:
        """One row per context token.

        Columns: id, prediction, position, token, saliency, rank, emotion_bearing.
        """
        return self._frame

    def to_frame(self) -> pd.DataFrame:
        """:attr:`table` as a new DataFrame."""
        return self._frame.copy()

    def summary(self) -> dict[str, Any]:
        """The definition, the prompts and the mean number of emotion-bearing tokens."""
        return {
            **self.describe(),
            "n_prompts": len(self),
            "n_emotion_mean": float(np.mean([self.n_emotion(i) for i in range(len(self))])),
            "predictions": dict(Counter(self.predictions)),
        }

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

    def save(self, out: str | Path) -> list[Path]:
        """Write ``saliency.csv`` and ``saliency.json`` (definition, labels, predictions)."""
        folder = Path(out)
        meta = {
            **self.describe(),
            "label_names": list(self.label_names),
            "ids": list(self.ids),
            "predictions": list(self.predictions),
        }
        return [
            write_text_atomic(folder / "saliency.csv", self.table.to_csv(index=False)),
            write_json_atomic(folder / "saliency.json", meta),
        ]

    def figure(self, index: int = 0) -> go.Figure:
        """One prompt's context-token saliencies (:func:`~.figures.saliency_figure`)."""
        from lens_emotion.attention.figures import saliency_figure

        return saliency_figure(self, index)

    def view(self, index: int = 0) -> Any:
        """The context tokens coloured by saliency, as an offline CircuitsVis view."""
        from lens_emotion.viz.circuitsvis import colored_tokens_view

        return colored_tokens_view(
            self.tokens[index],
            self.values[index],
            title=f"Occlusion saliency for '{self.predictions[index]}' ({self.ids[index]})",
        )


def _logprob_rows(model: EmotionModel, **kwargs: Any) -> tuple[Float[Tensor, "batch d_vocab"], Any]:
    """Log-softmax at the last position from the plain model, and its raw output."""
    out = model.plain_model(logits_to_keep=1, **kwargs)
    return torch.log_softmax(out.logits[:, -1, :].float(), dim=-1), out


def occlusion_saliency(
    model: EmotionModel,
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
    """Occlusion saliency of every event-text token (see :mod:`lens_emotion.attention.saliency`).

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
    shared_kv = prefix_kv(model, token_lists[0][:prefix], "plain") if prefix else None
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
                    kwargs["past_key_values"] = make_cache(shared_kv, 1, prefix)
                logprobs, out = _logprob_rows(
                    model,
                    input_ids=full_ids[:, prefix:],
                    attention_mask=torch.ones((1, n), dtype=torch.long, device=device),
                    position_ids=torch.arange(prefix, n, device=device)[None],
                    **kwargs,
                )
                base_kv = cache_kv(out.past_key_values)
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
                extra = {"past_key_values": make_cache(base_kv, k, start)} if start else {}
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


def prompts_with_saliency(
    model: EmotionModel,
    dataset: EmotionDataset,
    template: str | PromptTemplate,
    *,
    top_frac: float = 0.2,
    min_tokens: int = 1,
    use_cache: bool = True,
    progress: bool = False,
) -> tuple[PromptSet, tuple[TokenGroups, ...], Saliency]:
    """Build a dataset's prompts, their token groups and the occlusion saliency in one go.

    Shared by :func:`~lens_emotion.attention.mass.attention_mass` and the inspector.
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
