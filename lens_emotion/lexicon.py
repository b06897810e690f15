r"""Emotion-name word forms: find and mask the words that *name* an emotion.

A reply that says "Anger is a powerful emotion" names anger; it need not express it. A judge
that reads the word scores the copy of an instruction's emotion word, not emotional
expression. This module lists the word forms that name each emotion, so that generated text
can be masked before judging (:func:`mask_emotion_words`) and the share of replies naming
their target reported beside the judged accuracy (:func:`names_emotion`).

**What is listed** (:data:`EMOTION_WORD_FORMS`): for each of the 13 crowd-enVENT labels and
the 6 SEV labels (14 distinct names; ``joy`` and ``happiness`` share their forms, as the SEV
mapping joy -> happiness does),

* the emotion's name and its morphological family: inflections (``fear``, ``fears``,
  ``feared``, ``fearing``), comparatives and superlatives (``angrier``, ``saddest``), the
  adjective and adverb (``angry``, ``angrily``, ``joyful``, ``joyfully``), derived nouns
  (``happiness``, ``boredom``), and negated derivations, which still name the emotion
  (``fearless``, ``unhappy``, ``unsurprisingly``, ``shameless``, ``distrust``);
* the few everyday adjectives that are the usual *name* of the state: ``afraid`` and the
  ``scare`` family for fear, ``ashamed`` for shame, ``proud`` for pride, ``happy`` for
  joy/happiness, ``relieved`` for relief;
* for ``neutral`` (crowd-enVENT's ``no-emotion``): ``neutral``, ``neutrally``,
  ``neutrality``, ``unemotional(ly)``, ``emotionless`` and the phrase ``no emotion(s)``.

**What is not listed**: synonyms that describe rather than name the label (``furious``,
``terrified``, ``glad``, ``delighted``, ``cheerful``), words that merely share letters
(``angle``, ``sadistic``, ``scarf``, ``trustee``, ``joyce``), ``bore``/``bores`` (also the past
tense of "bear"), and the generic word ``emotion``. Matching is lexical, not
sense-disambiguated: ``trust fund`` and ``pride of lions`` are masked too. The list errs
towards masking, because masking a non-emotional sense costs a judge little, while a missed
emotion name lets it read the instruction's word.

**Matching rule**: case-insensitive, on word boundaries (regex ``\b``, Unicode-aware), longest form
first, so ``"Surprise!"``, ``"HAPPY"`` and ``"fear-inducing"`` match and ``"angle"`` does
not. A possessive or contraction keeps its suffix (``"joy's"`` -> ``"[MASK]'s"``). The phrase
``no emotion`` matches with any run of spaces or a hyphen between the words.

Example:
    >>> mask_emotion_words("Surprise! I'm glad, not angry.")
    "[MASK]! I'm glad, not [MASK]."
    >>> names_emotion("Fearless.", "fear"), names_emotion("a sharp angle", "anger")
    (True, False)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import no_type_check

from lens_emotion.errors import LensEmotionError

__all__ = [
    "DEFAULT_MASK",
    "EMOTION_WORD_FORMS",
    "LexiconError",
    "emotion_pattern",
    "lexicon_fingerprint",
    "mask_emotion_words",
    "names_any_emotion",
    "names_emotion",
]

#: What :func:`mask_emotion_words` puts in place of each emotion word by default.
DEFAULT_MASK = "[MASK]"

_HAPPY = (
    "happy",
    "happier",
    "happiest",
    "happily",
    "happiness",
    "unhappy",
    "unhappier",
    "unhappiest",
    "unhappily",
    "unhappiness",
)
_JOY = (
    "joy",
    "joys",
    "joyful",
    "joyfully",
    "joyfulness",
    "joyous",
    "joyously",
    "joyless",
    "joylessly",
)

#: Emotion label -> the word forms that name it (lower case). Keys: the 13 crowd-enVENT
#: labels and the 6 SEV labels. See the module docstring for the rule.
EMOTION_WORD_FORMS: dict[str, tuple[str, ...]] = {
    "anger": (
        "anger",
        "angers",
        "angered",
        "angering",
        "angry",
        "angrier",
        "angriest",
        "angrily",
    ),
    "boredom": ("boredom", "bored", "boring", "boringly", "unboring"),
    "disgust": (
        "disgust",
        "disgusts",
        "disgusted",
        "disgusting",
        "disgustingly",
        "disgustedly",
        "disgustful",
    ),
    "fear": (
        "fear",
        "fears",
        "feared",
        "fearing",
        "fearful",
        "fearfully",
        "fearfulness",
        "fearless",
        "fearlessly",
        "fearlessness",
        "fearsome",
        "afraid",
        "unafraid",
        "scare",
        "scares",
        "scared",
        "scaring",
        "scary",
        "scarier",
        "scariest",
    ),
    "guilt": (
        "guilt",
        "guilts",
        "guilty",
        "guiltier",
        "guiltiest",
        "guiltily",
        "guiltless",
    ),
    "joy": _JOY + _HAPPY,
    "neutral": (
        "neutral",
        "neutrally",
        "neutrality",
        "unemotional",
        "unemotionally",
        "emotionless",
        "no emotion",
        "no emotions",
        "no-emotion",
    ),
    "pride": (
        "pride",
        "prides",
        "prided",
        "priding",
        "prideful",
        "proud",
        "prouder",
        "proudest",
        "proudly",
    ),
    "relief": (
        "relief",
        "reliefs",
        "relieve",
        "relieves",
        "relieved",
        "relieving",
    ),
    "sadness": (
        "sad",
        "sadly",
        "sadness",
        "sadder",
        "saddest",
        "sadden",
        "saddens",
        "saddened",
        "saddening",
    ),
    "shame": (
        "shame",
        "shames",
        "shamed",
        "shaming",
        "shameful",
        "shamefully",
        "shameless",
        "shamelessly",
        "ashamed",
        "unashamed",
        "unashamedly",
    ),
    "surprise": (
        "surprise",
        "surprises",
        "surprised",
        "surprising",
        "surprisingly",
        "unsurprised",
        "unsurprising",
        "unsurprisingly",
    ),
    "trust": (
        "trust",
        "trusts",
        "trusted",
        "trusting",
        "trustingly",
        "trustful",
        "trustfully",
        "trustworthy",
        "trustworthiness",
        "untrustworthy",
        "distrust",
        "distrusts",
        "distrusted",
        "distrustful",
        "mistrust",
        "mistrusted",
        "mistrustful",
    ),
    "happiness": _HAPPY + _JOY,
}


class LexiconError(LensEmotionError, ValueError):
    """An emotion name that the lexicon does not list."""


def _check_emotion(emotion: object) -> str:
    if not isinstance(emotion, str):
        raise LexiconError(
            f"emotion must be a string such as 'anger', got {type(emotion).__name__}"
        )
    key = emotion.strip().lower()
    if key == "no-emotion":
        key = "neutral"
    if key not in EMOTION_WORD_FORMS:
        raise LexiconError(
            f"unknown emotion {emotion!r}; the lexicon lists {', '.join(EMOTION_WORD_FORMS)} "
            "(add forms to lens_emotion.lexicon.EMOTION_WORD_FORMS for another label)"
        )
    return key


def _form_regex(form: str) -> str:
    """A form as a regex: spaces and hyphens between words match any run of either."""
    return r"[\s\-]+".join(re.escape(part) for part in re.split(r"[\s\-]+", form))


@lru_cache(maxsize=64)
def _compiled(keys: tuple[str, ...]) -> re.Pattern[str]:
    forms = sorted({f for k in keys for f in EMOTION_WORD_FORMS[k]}, key=lambda f: (-len(f), f))
    return re.compile(r"\b(?:" + "|".join(_form_regex(f) for f in forms) + r")\b", re.IGNORECASE)


@no_type_check  # validates its input itself, with a clear error
def emotion_pattern(emotions: str | Iterable[str] | None = None) -> re.Pattern[str]:
    """A compiled, case-insensitive, word-boundary regex of emotions' word forms.

    Args:
        emotions: One emotion, several, or ``None`` for every emotion of
            :data:`EMOTION_WORD_FORMS`. ``"no-emotion"`` means ``"neutral"``.

    Returns:
        The pattern (cached per emotion set); ``pattern.search(text)`` finds a form.

    Raises:
        LexiconError: An emotion the lexicon does not list, or an empty list.
    """
    if emotions is None:
        keys = tuple(EMOTION_WORD_FORMS)
    else:
        items = [emotions] if isinstance(emotions, str) else emotions
        if not isinstance(items, Iterable):
            raise LexiconError(
                f"emotions must be a name, a list of names or None, got {type(items).__name__}"
            )
        items = list(items)
        if not items:
            raise LexiconError("emotions is empty; pass some emotion names or None for all")
        keys = tuple(sorted({_check_emotion(e) for e in items}))
    return _compiled(keys)


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise LexiconError(
            f"text must be a string, got {type(text).__name__}; convert it with str() first"
        )
    return text


@no_type_check  # validates its input itself, with a clear error
def names_emotion(text: str, emotion: str) -> bool:
    """Whether ``text`` contains one of ``emotion``'s word forms.

    Raises:
        LexiconError: Unknown emotion, or ``text`` is not a string.
    """
    return emotion_pattern(emotion).search(_check_text(text)) is not None


@no_type_check  # validates its input itself, with a clear error
def names_any_emotion(text: str) -> bool:
    """Whether ``text`` contains a word form of any listed emotion.

    Raises:
        LexiconError: ``text`` is not a string.
    """
    return emotion_pattern(None).search(_check_text(text)) is not None


@no_type_check  # validates its input itself, with a clear error
def mask_emotion_words(text: str, mask: str = DEFAULT_MASK) -> str:
    """Replace every emotion word form (of *all* listed emotions) by ``mask``.

    All emotions' forms are masked, not only a target's, so a judge reading the result cannot
    read any emotion name.

    Args:
        text: The text.
        mask: The replacement (one per matched form); must not itself contain a form.

    Returns:
        The masked text; text without emotion words is returned unchanged.

    Raises:
        LexiconError: ``text`` or ``mask`` is not a string, or ``mask`` names an emotion.
    """
    _check_text(text)
    if not isinstance(mask, str):
        raise LexiconError(f"mask must be a string such as '[MASK]', got {type(mask).__name__}")
    pattern = emotion_pattern(None)
    if pattern.search(mask):
        raise LexiconError(f"mask {mask!r} itself contains an emotion word; use e.g. '[MASK]'")
    return pattern.sub(lambda _m: mask, text)


def lexicon_fingerprint() -> str:
    """SHA-256 of :data:`EMOTION_WORD_FORMS` (for cache keys and manifests)."""
    blob = json.dumps(
        {k: list(v) for k, v in EMOTION_WORD_FORMS.items()}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(blob.encode()).hexdigest()
