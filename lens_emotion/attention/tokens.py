"""Token groups: which part of the prompt each real token belongs to.

Every real token of a prompt is one of: ``sink`` (position 0, where unused attention is
parked), ``final`` (the last token, whose query reads the answer), ``context`` (tokens
overlapping the character span of the event text inside the rendered prompt, found through the
tokenizer's offset mapping) and ``template`` (everything else: instruction, few-shot examples,
label list, answer cue).

This is the package's lowest module: it also holds :class:`AttentionError` and the group names
and colours the other modules share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from jaxtyping import Int

from lens_emotion.errors import LensEmotionError
from lens_emotion.models import EmotionModel
from lens_emotion.prompts import PromptSet, PromptTemplate

__all__ = [
    "CONTEXT",
    "FINAL",
    "GROUP_COLORS",
    "GROUP_LABELS",
    "GROUP_NAMES",
    "MASS_GROUPS",
    "SINK",
    "TEMPLATE",
    "AttentionError",
    "TokenGroups",
    "context_char_span",
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


def decode_tokens(tokenizer: Any, ids: Sequence[int]) -> tuple[str, ...]:
    """Each token id decoded on its own (for display)."""
    return tuple(tokenizer.decode([int(t)]) for t in ids)


def token_groups(
    model: EmotionModel, prompt_set: PromptSet, texts: Sequence[str]
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
                tokens=decode_tokens(tokenizer, ids),
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
