"""Prompt templates, label tokens and tokenized prompt sets.

Templates live in a registry (:data:`TEMPLATES`) that users extend with
:func:`register_template`. Built in:

* ``paper`` - Tak et al.'s 2-shot format ("What are the inferred emotions in the following
  contexts? Context: ... Answer: joy Context: ... Answer: sadness Context: {text} Answer:").
* ``emotion-list`` - the same 2-shot format, prefixed with the list of allowed labels.
* ``zero-shot`` - the label list and the context, no examples.
* ``chat`` - the question as a user turn in the model's own chat template (instruct models).
* ``control-first-word`` - the non-emotional control task: name the context's first word.

The few-shot examples are our own sentences, not corpus rows.

**Which token is scored.** Each label is scored by the log-probability of its *first* token
as the continuation of the prompt: ``" joy"`` (leading space) after ``Answer:``, or ``"joy"``
at the start of a chat assistant turn. Labels that take several tokens are reported in
:attr:`LabelTokens.multi_token_labels`; two labels whose first tokens coincide cannot be told
apart and raise :class:`~lens_emotion.errors.LabelTokenError`.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lens_emotion.errors import LabelTokenError, TemplateError

_ANSWER_CONTEXT = "Context: I felt fine.\nAnswer:"

PLAIN_ROLES: dict[str, str] = {"system": "Instructions", "user": "User", "assistant": "Reply"}
"""Role names of the plain-text prompt format used where a tokenizer has no chat template."""


class PlainPromptWarning(UserWarning):
    """A chat-style prompt was rendered in the plain-text format (no chat template)."""


def has_chat_template(tokenizer: Any) -> bool:
    """Whether a tokenizer carries a chat template (instruct models do; base models often not)."""
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> str:
    """Render chat messages as a prompt that ends where the reply starts.

    With a chat template this is ``apply_chat_template(..., add_generation_prompt=True)``.
    Without one (base models such as Gemma 3 270M) the **plain-text format** is used: the BOS
    token (if the tokenizer has one), then one ``"{Role}: {content}"`` paragraph per message
    with the roles of :data:`PLAIN_ROLES`, then ``"Reply:"``; a :class:`PlainPromptWarning`
    says so once per tokenizer. Either way the special tokens are already in the string:
    tokenize it without adding more.

    Args:
        tokenizer: A Hugging Face tokenizer.
        messages: ``{"role": "system" | "user" | "assistant", "content": ...}`` dicts.

    Returns:
        The prompt string.
    """
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
        )
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    warnings.warn(
        f"tokenizer {name} has no chat template (a base model): using the plain-text prompt "
        "format ('Instructions: ...', 'User: ...', 'Reply:') instead.",
        PlainPromptWarning,
        stacklevel=2,
    )
    paragraphs = [
        f"{PLAIN_ROLES.get(m['role'], m['role'].capitalize())}: {m['content'].strip()}"
        for m in messages
    ]
    bos = getattr(tokenizer, "bos_token", None)
    bos = bos if isinstance(bos, str) else ""
    return bos + "\n\n".join([*paragraphs, f"{PLAIN_ROLES['assistant']}:"])


@dataclass(frozen=True)
class PromptTemplate:
    """A way of asking a model which label fits a text.

    Attributes:
        name: Registry key.
        description: One line shown by ``lens-emotion`` and in manifests.
        text: Format string with ``{text}`` and optionally ``{labels}`` (comma-separated label
            list). For chat templates this is the user message.
        label_prefix: String put before a label to form the scored continuation.
        chat: Render ``text`` as a user turn with the tokenizer's chat template.
        system: Optional system message (chat templates only).
        task: ``"emotion"`` or ``"control"`` (labels are the texts' first words).
    """

    name: str
    description: str
    text: str
    label_prefix: str = " "
    chat: bool = False
    system: str | None = None
    task: str = "emotion"

    def render(self, text: str, labels: Sequence[str], tokenizer: Any | None = None) -> str:
        """Return the full prompt for one text.

        Args:
            text: The event description.
            labels: Candidate labels, for ``{labels}``.
            tokenizer: Needed for chat templates.

        Raises:
            TemplateError: Chat template requested but the tokenizer has none.
        """
        body = self.text.format(text=text.strip(), labels=", ".join(labels))
        if not self.chat:
            return body
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise TemplateError(
                f"Template '{self.name}' needs a tokenizer with a chat template; this model has "
                "none. Use a plain template such as 'emotion-list' or 'paper'."
            )
        messages = [{"role": "user", "content": body}]
        if self.system:
            messages.insert(0, {"role": "system", "content": self.system})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    @property
    def add_special_tokens(self) -> bool:
        """Whether tokenizing the rendered prompt should add special tokens (not for chat)."""
        return not self.chat

    def fingerprint(self) -> str:
        """sha256 of the template's defining fields, for manifests."""
        payload = json.dumps(
            [self.text, self.label_prefix, self.chat, self.system, self.task], sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """Return the template part of a run manifest."""
        return {
            "name": self.name,
            "text": self.text,
            "label_prefix": self.label_prefix,
            "chat": self.chat,
            "system": self.system,
            "task": self.task,
            "sha256": self.fingerprint(),
        }


_SHOTS = (
    "Context: I felt ... when my oldest friend turned up at my door with a cake on my "
    "birthday.\nAnswer: joy\n"
    "Context: I felt ... when the vet told us our old dog would not recover.\nAnswer: sadness\n"
)

TEMPLATES: dict[str, PromptTemplate] = {}
"""Registry of prompt templates, keyed by name."""


def register_template(template: PromptTemplate, overwrite: bool = False) -> PromptTemplate:
    """Add a template to :data:`TEMPLATES`.

    Raises:
        TemplateError: The name exists and ``overwrite`` is False, or ``{text}`` is missing.
    """
    if template.name in TEMPLATES and not overwrite:
        raise TemplateError(
            f"Template '{template.name}' already exists; pass overwrite=True to replace it."
        )
    if "{text}" not in template.text:
        raise TemplateError(f"Template '{template.name}' has no {{text}} placeholder.")
    if template.task not in {"emotion", "control"}:
        raise TemplateError(f"Template task must be 'emotion' or 'control', not {template.task!r}.")
    TEMPLATES[template.name] = template
    return template


def get_template(template: str | PromptTemplate) -> PromptTemplate:
    """Look a template up by name (templates pass through).

    Raises:
        TemplateError: Unknown name; the message lists the known ones.
    """
    if isinstance(template, PromptTemplate):
        return template
    if template not in TEMPLATES:
        raise TemplateError(
            f"Unknown template '{template}'. Known templates: {', '.join(TEMPLATES)}; add your "
            "own with lens_emotion.prompts.register_template()."
        )
    return TEMPLATES[template]


for _template in (
    PromptTemplate(
        name="paper",
        description="Tak et al. 2-shot format (joy and sadness examples), no label list",
        text="What are the inferred emotions in the following contexts?\n"
        + _SHOTS
        + "Context: {text}\nAnswer:",
    ),
    PromptTemplate(
        name="emotion-list",
        description="2-shot format preceded by the list of allowed emotion labels",
        text="What are the inferred emotions in the following contexts? "
        "Choose one of: {labels}.\n" + _SHOTS + "Context: {text}\nAnswer:",
    ),
    PromptTemplate(
        name="zero-shot",
        description="Label list and the context, no examples",
        text="Which emotion did the writer feel in the following context? "
        "Choose one of: {labels}.\nContext: {text}\nAnswer:",
    ),
    PromptTemplate(
        name="chat",
        description="The question as a user turn in the model's chat template",
        text="Which emotion did the writer feel in this situation? Choose one of: {labels}. "
        "Answer with the emotion word only.\n\nSituation: {text}",
        label_prefix="",
        chat=True,
        system="You are an expert in the psychology of emotions.",
    ),
    PromptTemplate(
        name="control-first-word",
        description="Non-emotional control task: the first word of the context",
        text="What is the first word of the following contexts?\n"
        "Context: Yesterday the bus was late again.\nAnswer: Yesterday\n"
        "Context: Our neighbours painted their fence green.\nAnswer: Our\n"
        "Context: {text}\nAnswer:",
        task="control",
    ),
):
    register_template(_template)


@dataclass(frozen=True)
class LabelTokens:
    """How each label maps to the token whose log-probability scores it.

    Attributes:
        labels: Label names, in order.
        token_ids: Scored (first) token id of each label.
        token_strings: Those tokens as text.
        n_tokens: Number of tokens each label takes after the prefix.
        prefix: The string put before each label (``" "`` or ``""``).
    """

    labels: tuple[str, ...]
    token_ids: tuple[int, ...]
    token_strings: tuple[str, ...]
    n_tokens: tuple[int, ...]
    prefix: str

    @property
    def multi_token_labels(self) -> dict[str, int]:
        """Labels that take more than one token, with their token counts."""
        return {lab: n for lab, n in zip(self.labels, self.n_tokens, strict=True) if n > 1}

    def describe(self) -> dict[str, Any]:
        """Return a JSON-friendly summary for manifests and reports."""
        return {
            "prefix": self.prefix,
            "scored_token": "first token of prefix + label",
            "tokens": {
                lab: {"id": tid, "token": tok, "n_tokens": n}
                for lab, tid, tok, n in zip(
                    self.labels, self.token_ids, self.token_strings, self.n_tokens, strict=True
                )
            },
            "multi_token_labels": self.multi_token_labels,
        }


def _continuation_ids(tokenizer: Any, continuation: str) -> list[int]:
    """Token ids that ``continuation`` adds after an ``Answer:``-style context.

    Tokenizing in context (and taking the difference) gets leading-space handling right for
    tokenizers that treat a string's start specially.
    """
    base = tokenizer(_ANSWER_CONTEXT, add_special_tokens=False)["input_ids"]
    full = tokenizer(_ANSWER_CONTEXT + continuation, add_special_tokens=False)["input_ids"]
    if full[: len(base)] == base and len(full) > len(base):
        return list(full[len(base) :])
    return list(tokenizer(continuation, add_special_tokens=False)["input_ids"])


def resolve_label_tokens(tokenizer: Any, labels: Sequence[str], prefix: str = " ") -> LabelTokens:
    """Map labels to their scored tokens.

    Args:
        tokenizer: A Hugging Face tokenizer.
        labels: Label names.
        prefix: String before each label in the prompt's answer slot.

    Returns:
        The :class:`LabelTokens`.

    Raises:
        LabelTokenError: Empty/duplicate labels, or two labels sharing their scored token.
    """
    if not labels:
        raise LabelTokenError("No labels given: pass at least two label names.")
    if len(set(labels)) != len(labels):
        raise LabelTokenError(f"Duplicate labels in {list(labels)}.")
    ids, strings, counts = [], [], []
    for label in labels:
        if not label or not label.strip():
            raise LabelTokenError("A label is empty; every label needs at least one character.")
        cont = _continuation_ids(tokenizer, prefix + label)
        ids.append(int(cont[0]))
        strings.append(tokenizer.decode([cont[0]]))
        counts.append(len(cont))
    seen: dict[int, str] = {}
    for label, tid in zip(labels, ids, strict=True):
        if tid in seen:
            raise LabelTokenError(
                f"Labels '{seen[tid]}' and '{label}' share their first token "
                f"{tokenizer.decode([tid])!r} (id {tid}), so they cannot be told apart by "
                "first-token scoring. Rename one of them (e.g. a synonym that starts with a "
                "different token) or use a template with another label prefix."
            )
        seen[tid] = label
    return LabelTokens(tuple(labels), tuple(ids), tuple(strings), tuple(counts), prefix)


def _first_word_token(text: str, tokenizer: Any, prefix: str) -> str | None:
    """The decoded, stripped first token of ``text``'s first word (``None`` if no word)."""
    words = text.strip().split()
    if not words:
        return None
    first = _continuation_ids(tokenizer, prefix + words[0])[0]
    return tokenizer.decode([first]).strip()


def first_word_scorable(texts: Sequence[str], tokenizer: Any, prefix: str = " ") -> list[bool]:
    """Whether the control task can score each text's first word with one token.

    Tokenizers that split digits (Llama 3, SmolLM2, ...) turn ``" 16th"`` into ``" "``,
    ``"1"``, ... so the first token is only whitespace and every such word would share it.
    Those texts are ``False``; empty texts are ``True`` (the label builder rejects them with
    its own message).

    Args:
        texts: The texts.
        tokenizer: The model's tokenizer.
        prefix: The control template's label prefix.

    Returns:
        One boolean per text.
    """
    return [_first_word_token(text, tokenizer, prefix) != "" for text in texts]


def first_word_labels(texts: Sequence[str], tokenizer: Any, prefix: str = " ") -> list[str]:
    """Control-task labels: the first token of each text's first word, as text.

    Using the decoded first token (e.g. ``"I"``) rather than the whole word guarantees that
    distinct labels have distinct scored tokens.

    Raises:
        LabelTokenError: An empty text, or a first word whose first token is only whitespace
            (drop those texts with :func:`lens_emotion.inference.control_rows`).
    """
    labels = []
    for text in texts:
        label = _first_word_token(text, tokenizer, prefix)
        if label is None:
            raise LabelTokenError("An empty text has no first word; drop empty texts first.")
        if not label:
            word = prefix + text.strip().split()[0]
            raise LabelTokenError(
                f"The tokenizer splits {word!r} so that its first token is only whitespace; "
                "first-token scoring cannot tell such first words apart. Drop these texts "
                "with lens_emotion.inference.control_rows(model, dataset) (infer_emotions and "
                "draw_pairs do so for the control template), or use a template whose "
                "label_prefix matches how this tokenizer merges spaces."
            )
        labels.append(label)
    return labels


@dataclass(frozen=True)
class PromptSet:
    """Prompts for a dataset under one template, tokenized and ready to batch.

    Attributes:
        template: The template used.
        prompts: One rendered prompt per dataset row.
        token_ids: Unpadded token ids per prompt.
        label_tokens: Scored tokens of the candidate labels.
        targets: Index into ``label_tokens.labels`` of each row's gold label.
    """

    template: PromptTemplate
    prompts: tuple[str, ...]
    token_ids: tuple[tuple[int, ...], ...] = field(repr=False)
    label_tokens: LabelTokens
    targets: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def lengths(self) -> list[int]:
        """Token count of each prompt."""
        return [len(ids) for ids in self.token_ids]


def build_prompts(
    model: Any,
    texts: Sequence[str],
    labels: Sequence[str],
    label_names: Sequence[str],
    template: str | PromptTemplate = "emotion-list",
) -> PromptSet:
    """Render, tokenize and label-map prompts.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel` (or anything with ``tokenizer``
            and ``encode``).
        texts: Event descriptions.
        labels: Gold label of each text (for the control task: ignored, first words are used).
        label_names: Candidate labels, in score order.
        template: Template name or object.

    Returns:
        The :class:`PromptSet`.

    Raises:
        LabelTokenError: Unknown gold labels or colliding label tokens.
        TemplateError: Unknown template, or a chat template on a model without one.
    """
    tmpl = get_template(template)
    tokenizer = model.tokenizer
    if tmpl.task == "control":
        labels = first_word_labels(texts, tokenizer, tmpl.label_prefix)
        label_names = sorted(set(labels))
    unknown = sorted(set(labels) - set(label_names))
    if unknown:
        raise LabelTokenError(
            f"Gold labels {unknown} are not among the candidate labels {list(label_names)}."
        )
    label_tokens = resolve_label_tokens(tokenizer, label_names, tmpl.label_prefix)
    prompts = [tmpl.render(text, label_names, tokenizer) for text in texts]
    token_ids = model.encode(prompts, add_special_tokens=tmpl.add_special_tokens)
    index = {lab: i for i, lab in enumerate(label_names)}
    return PromptSet(
        template=tmpl,
        prompts=tuple(prompts),
        token_ids=tuple(tuple(ids) for ids in token_ids),
        label_tokens=label_tokens,
        targets=tuple(index[lab] for lab in labels),
    )
