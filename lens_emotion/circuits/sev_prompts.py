"""SEV prompts for eliciting emotions, and the discovery / evaluation split of the scenarios.

Every SEV item (scenario + event at one valence) becomes a chat prompt in the model's own chat
template: the scenario text is the user turn, and the system turn either asks for an emotion
(**emotion-conditioned**: ``"Always reply in {emotion}. Keep the reply to at most two
sentences."``) or only for brevity (**neutral**: ``"Keep the reply to at most two
sentences."``). The two system turns differ only by the emotion instruction, so activations of
the two kinds of prompt are directly comparable. A third kind, **described**
(``instruction="described"``), asks for the emotion by describing it (``"Always reply like
someone whose blood is boiling ..."``, :data:`DESCRIBED_EMOTIONS`) without any word form of any
emotion name (:mod:`lens_emotion.lexicon`; tested): a direction that only encodes the
instruction's emotion *word* cannot classify these prompts. The prompt ends with the assistant
header, so its last token is where the model starts to reply; all analyses read that position.

Scenarios are split by ``skeleton_id`` (one id per SEV line, i.e. per scenario with its three
valence events) with a seed, so a scenario never lands in both parts; or two SEV-format files
are used, one for discovery and one for evaluation (:func:`split_files`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lens_emotion.circuits.errors import CircuitError
from lens_emotion.data import SEV_EMOTIONS, EmotionDataset
from lens_emotion.prompts import render_chat

__all__ = [
    "DESCRIBED_EMOTIONS",
    "DESCRIBED_SYSTEM",
    "EMOTION_SYSTEM",
    "INSTRUCTION_STYLES",
    "NEUTRAL_SYSTEM",
    "SevPrompts",
    "build_sev_prompts",
    "one_valence_per_scenario",
    "render_sev_prompt",
    "split_files",
    "split_scenarios",
    "system_turn",
]

#: System turn of emotion-conditioned prompts (Wang et al. 2025's instruction).
EMOTION_SYSTEM = "Always reply in {emotion}. Keep the reply to at most two sentences."

#: System turn of neutral prompts: the same, without the emotion instruction.
NEUTRAL_SYSTEM = "Keep the reply to at most two sentences."

#: System turn of *described* prompts: the emotion is described, never named.
DESCRIBED_SYSTEM = (
    "Always reply like someone {description}. Keep the reply to at most two sentences."
)

#: Descriptions of the six SEV emotions that contain no word form of any emotion name of the
#: lexicon (crowd-enVENT or SEV; checked by a test), so only the meaning can carry the emotion.
DESCRIBED_EMOTIONS: dict[str, str] = {
    "anger": "whose blood is boiling after being treated unfairly, who wants to shout and lash out",
    "sadness": "with a heavy heart, close to tears, who feels something precious is lost for good",
    "happiness": "who is smiling from ear to ear because everything is going wonderfully well",
    "fear": "whose heart is pounding, who senses danger close by and wants to run and hide",
    "surprise": "caught completely off guard by something they never saw coming, eyes wide open",
    "disgust": "who feels sick to their stomach at something foul and wants to spit it out",
}

#: Ways of asking for an emotion: by its name (Wang et al.'s instruction) or by a description.
INSTRUCTION_STYLES: tuple[str, ...] = ("named", "described")


def system_turn(emotion: str | None, instruction: str = "named") -> str:
    """The system turn asking for ``emotion`` (``None``: the neutral system turn).

    Raises:
        CircuitError: Unknown instruction style, or no description for the emotion.
    """
    if instruction not in INSTRUCTION_STYLES:
        raise CircuitError(f"instruction must be one of {INSTRUCTION_STYLES}, not {instruction!r}.")
    if emotion is None:
        return NEUTRAL_SYSTEM
    if instruction == "named":
        return EMOTION_SYSTEM.format(emotion=emotion)
    if emotion not in DESCRIBED_EMOTIONS:
        raise CircuitError(
            f"no description of {emotion!r}; described instructions exist for "
            f"{tuple(DESCRIBED_EMOTIONS)}."
        )
    return DESCRIBED_SYSTEM.format(description=DESCRIBED_EMOTIONS[emotion])


def render_sev_prompt(
    tokenizer: Any, text: str, emotion: str | None, instruction: str = "named"
) -> str:
    """Render one SEV item as a chat prompt that ends with the assistant header.

    Args:
        tokenizer: The model's tokenizer.
        text: The scenario + event text.
        emotion: The emotion to ask for, or ``None`` for a neutral prompt.
        instruction: ``"named"`` (:data:`EMOTION_SYSTEM`) or ``"described"``
            (:data:`DESCRIBED_SYSTEM`).

    Returns:
        The prompt string (special tokens already in it; tokenize without adding more). A
        tokenizer without a chat template (a base model) gets the plain-text format of
        :func:`lens_emotion.prompts.render_chat`, with a one-line warning.
    """
    system = system_turn(emotion, instruction)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": text.strip()}]
    return render_chat(tokenizer, messages)  # plain-text format where there is no chat template


@dataclass(frozen=True)
class SevPrompts:
    """Tokenized SEV chat prompts with their scenario metadata.

    Attributes:
        prompts: The rendered prompt strings.
        token_ids: Their token ids (no special tokens added on top of the chat template).
        emotion: The instructed emotion of each prompt, or ``None`` for neutral prompts.
        skeleton_id: The SEV scenario id of each prompt.
        valence: ``positive``, ``neutral`` or ``negative`` (the event's valence).
        theme: The SEV theme of the scenario.
        text: The scenario + event text.
    """

    prompts: tuple[str, ...]
    token_ids: tuple[tuple[int, ...], ...]
    emotion: tuple[str | None, ...]
    skeleton_id: tuple[str, ...]
    valence: tuple[str, ...]
    theme: tuple[str, ...]
    text: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def group(self) -> tuple[str, ...]:
        """The scenario x valence group of each prompt (``"{skeleton_id}:{valence}"``)."""
        return tuple(f"{s}:{v}" for s, v in zip(self.skeleton_id, self.valence, strict=True))

    @property
    def lengths(self) -> list[int]:
        """Token count of each prompt."""
        return [len(ids) for ids in self.token_ids]

    def subset(self, indices: Sequence[int] | np.ndarray) -> SevPrompts:
        """Return the prompts at ``indices``, in that order."""
        pos = [int(i) for i in np.asarray(indices).reshape(-1)]
        return SevPrompts(*(tuple(getattr(self, f)[i] for i in pos) for f in _FIELDS))

    def where(self, emotion: str | None) -> SevPrompts:
        """The prompts that ask for ``emotion`` (``None``: the neutral prompts)."""
        return self.subset([i for i, e in enumerate(self.emotion) if e == emotion])

    def frame(self) -> pd.DataFrame:
        """One row per prompt: skeleton_id, theme, valence, emotion, text, n_tokens."""
        return pd.DataFrame(
            {
                "skeleton_id": self.skeleton_id,
                "theme": self.theme,
                "valence": self.valence,
                "emotion": self.emotion,
                "text": self.text,
                "n_tokens": self.lengths,
            }
        )


_FIELDS = ("prompts", "token_ids", "emotion", "skeleton_id", "valence", "theme", "text")


def _check_sev(dataset: EmotionDataset) -> None:
    needed = {"skeleton_id", "valence", "theme"}
    missing = needed - set(dataset.metadata.columns)
    if missing:
        raise CircuitError(
            f"dataset '{dataset.name}' lacks the SEV metadata column(s) {sorted(missing)}; load "
            "it with lens_emotion.data.load_sev(path) (without cross_emotions)."
        )
    if "emotion" in dataset.metadata.columns and dataset.metadata["emotion"].notna().any():
        raise CircuitError(
            "pass the SEV items without emotion crossing (load_sev(path), cross_emotions=False): "
            "build_sev_prompts() crosses them with the emotions itself."
        )


def build_sev_prompts(
    model: Any,
    dataset: EmotionDataset,
    emotions: Sequence[str | None] = SEV_EMOTIONS,
    instruction: str = "named",
) -> SevPrompts:
    """Cross SEV items with emotions and render them as tokenized chat prompts.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel` (its tokenizer is used).
        dataset: SEV items from :func:`lens_emotion.data.load_sev` (not crossed).
        emotions: Emotions to ask for; ``None`` in the list adds the neutral prompt. Pass
            ``[None]`` for neutral prompts only.
        instruction: ``"named"`` or ``"described"`` (see :func:`system_turn`).

    Returns:
        The prompts, ordered by item, then by ``emotions``.

    Raises:
        CircuitError: Missing SEV metadata, an empty dataset or emotion list.
    """
    _check_sev(dataset)
    emotions = list(emotions)
    if not emotions or len(dataset) == 0:
        raise CircuitError("build_sev_prompts() needs at least one SEV item and one emotion.")
    meta = dataset.metadata
    rows: dict[str, list[Any]] = {f: [] for f in _FIELDS if f != "token_ids"}
    for i, text in enumerate(dataset.texts):
        for emotion in emotions:
            rows["prompts"].append(render_sev_prompt(model.tokenizer, text, emotion, instruction))
            rows["emotion"].append(emotion)
            rows["skeleton_id"].append(str(meta["skeleton_id"].iloc[i]))
            rows["valence"].append(str(meta["valence"].iloc[i]))
            rows["theme"].append(str(meta["theme"].iloc[i]))
            rows["text"].append(text)
    token_ids = tuple(tuple(ids) for ids in model.encode(rows["prompts"], False))
    return SevPrompts(
        prompts=tuple(rows["prompts"]),
        token_ids=token_ids,
        emotion=tuple(rows["emotion"]),
        skeleton_id=tuple(rows["skeleton_id"]),
        valence=tuple(rows["valence"]),
        theme=tuple(rows["theme"]),
        text=tuple(rows["text"]),
    )


def _scenario_subset(dataset: EmotionDataset, n: int | None, seed: int) -> EmotionDataset:
    ids = sorted(set(dataset.metadata["skeleton_id"]))
    if n is None or n >= len(ids):
        return dataset
    if n < 1:
        raise CircuitError(f"the number of scenarios must be at least 1, got {n}.")
    chosen = set(np.random.default_rng(seed).choice(ids, size=n, replace=False).tolist())
    return dataset.filter(dataset.metadata["skeleton_id"].isin(chosen).to_numpy())


def split_scenarios(
    dataset: EmotionDataset,
    eval_fraction: float = 0.25,
    seed: int = 0,
    n_discovery: int | None = None,
    n_evaluation: int | None = None,
) -> tuple[EmotionDataset, EmotionDataset]:
    """Split SEV items into discovery and held-out evaluation scenarios, by ``skeleton_id``.

    The split itself depends only on ``eval_fraction`` and ``seed``, so the held-out
    scenarios stay the same whatever subset sizes are asked for; ``n_discovery`` and
    ``n_evaluation`` then draw (seeded) that many scenarios from each part.

    Args:
        dataset: SEV items (from :func:`lens_emotion.data.load_sev`).
        eval_fraction: Share of scenarios held out.
        seed: Seed of the split and of the subsets.
        n_discovery: Keep this many discovery scenarios (``None``: all).
        n_evaluation: Keep this many held-out scenarios (``None``: all).

    Returns:
        ``(discovery, evaluation)`` with every valence of each chosen scenario.

    Raises:
        CircuitError: Missing SEV metadata or a subset size below 1.
    """
    _check_sev(dataset)
    discovery, evaluation = dataset.split(test_size=eval_fraction, seed=seed, groups="skeleton_id")
    return (
        _scenario_subset(discovery, n_discovery, seed + 1),
        _scenario_subset(evaluation, n_evaluation, seed + 2),
    )


def split_files(
    discovery: EmotionDataset,
    evaluation: EmotionDataset,
    seed: int = 0,
    n_discovery: int | None = None,
    n_evaluation: int | None = None,
) -> tuple[EmotionDataset, EmotionDataset]:
    """Discover on one SEV-format file and evaluate on another (external validation).

    Every scenario of ``discovery`` may be used for discovery and every scenario of
    ``evaluation`` for evaluation; ``n_discovery``/``n_evaluation`` draw (seeded, as in
    :func:`split_scenarios`) that many scenarios from each.

    Args:
        discovery: SEV items to discover on.
        evaluation: SEV items to evaluate on.
        seed: Seed of the subsets.
        n_discovery: Keep this many discovery scenarios (``None``: all).
        n_evaluation: Keep this many evaluation scenarios (``None``: all).

    Returns:
        ``(discovery, evaluation)``.

    Raises:
        CircuitError: Missing SEV metadata, or a scenario text found in both files.
    """
    _check_sev(discovery)
    _check_sev(evaluation)
    shared = set(discovery.texts) & set(evaluation.texts)
    if shared:
        raise CircuitError(
            f"{len(shared)} scenario text(s) are in both the discovery and the evaluation file "
            f"(e.g. {sorted(shared)[0][:60]!r}); pass an evaluation file without them."
        )
    return (
        _scenario_subset(discovery, n_discovery, seed + 1),
        _scenario_subset(evaluation, n_evaluation, seed + 2),
    )


def one_valence_per_scenario(dataset: EmotionDataset, seed: int = 0) -> EmotionDataset:
    """Keep one valence event per scenario, cycling through the valences (balanced, seeded).

    Args:
        dataset: SEV items with every valence of each scenario.
        seed: Seed of the scenario order and the starting valence.

    Returns:
        One item per scenario; the valences are used equally often (up to one).
    """
    _check_sev(dataset)
    meta = dataset.metadata
    rng = np.random.default_rng(seed)
    ids = sorted(set(meta["skeleton_id"]))
    order = rng.permutation(len(ids))
    valences = sorted(set(meta["valence"]))
    start = int(rng.integers(len(valences)))
    wanted = {ids[j]: valences[(start + rank) % len(valences)] for rank, j in enumerate(order)}
    mask = [wanted[s] == v for s, v in zip(meta["skeleton_id"], meta["valence"], strict=True)]
    return dataset.filter(np.asarray(mask, dtype=bool))
