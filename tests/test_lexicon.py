"""Emotion-name word forms: matching, masking, and the table itself."""

from __future__ import annotations

import re

import pytest

from lens_emotion.data import CROWD_ENVENT_EMOTIONS, SEV_EMOTIONS
from lens_emotion.errors import LensEmotionError
from lens_emotion.lexicon import (
    DEFAULT_MASK,
    EMOTION_WORD_FORMS,
    LexiconError,
    emotion_pattern,
    lexicon_fingerprint,
    mask_emotion_words,
    names_any_emotion,
    names_emotion,
)

ALL_FORMS = sorted({(e, f) for e, forms in EMOTION_WORD_FORMS.items() for f in forms})


def test_table_covers_both_label_sets_and_is_lower_case():
    assert set(EMOTION_WORD_FORMS) == set(CROWD_ENVENT_EMOTIONS) | set(SEV_EMOTIONS)
    for emotion, forms in EMOTION_WORD_FORMS.items():
        assert forms, emotion
        assert len(set(forms)) == len(forms), f"{emotion} lists a form twice"
        assert all(f == f.lower() and f.strip() == f for f in forms)
    # The forms the issue names explicitly.
    issue = {
        "anger": ["anger", "angry", "angrily", "angered"],
        "sadness": ["sad", "sadly", "sadness"],
        "happiness": ["happy", "happily", "happiness"],
        "fear": ["fear", "feared", "fearful", "fearless", "afraid"],
        "surprise": ["surprise", "surprised", "surprising"],
        "disgust": ["disgust", "disgusted", "disgusting"],
        "joy": ["joy", "joyful"],
    }
    for emotion, forms in issue.items():
        assert set(forms) <= set(EMOTION_WORD_FORMS[emotion]), emotion
    # joy and happiness share their forms, as the SEV mapping joy -> happiness does.
    assert set(EMOTION_WORD_FORMS["joy"]) == set(EMOTION_WORD_FORMS["happiness"])


# ------------------------------------------------------------------ property tests over the table


@pytest.mark.parametrize(("emotion", "form"), ALL_FORMS)
def test_every_form_is_found_and_masked_in_any_case_and_context(emotion, form):
    for variant in (form, form.upper(), form.capitalize()):
        for text in (
            variant,
            f"{variant}!",
            f"I felt {variant}, honestly.",
            f'"{variant}" she said',
            f"({variant})",
            f"{variant}'s",
        ):
            assert names_emotion(text, emotion), text
            assert names_any_emotion(text), text
            masked = mask_emotion_words(text)
            assert DEFAULT_MASK in masked, text
            assert not names_any_emotion(masked), masked
            # Nothing but the form itself changed.
            assert masked == text.replace(variant, DEFAULT_MASK)


def test_masking_removes_every_form_at_once():
    text = " ".join(f for _, f in ALL_FORMS)
    masked = mask_emotion_words(text, mask="X")
    assert not names_any_emotion(masked)
    assert set(masked.split()) == {"X"}


def test_forms_inside_longer_words_do_not_match():
    for text in (
        "a sharp angle",
        "the angler waited",
        "sadistic",
        "a scarf and a trustee",
        "Joyce sailed",
        "the shameika lake",
        "surprisal",
        "guiltwork",
        "reliefer",
    ):
        assert not names_any_emotion(text), text
        assert mask_emotion_words(text) == text


# ------------------------------------------------------------------ real generated snippets


@pytest.mark.parametrize(
    ("text", "emotion", "masked"),
    [
        ("Surprise! I'm glad", "surprise", "[MASK]! I'm glad"),
        ("Fearless.", "fear", "[MASK]."),
        ("HAPPY FRIEND!", "happiness", "[MASK] FRIEND!"),
        ("HAPPY FRIEND!", "joy", "[MASK] FRIEND!"),
        (
            " Anger is a powerful emotion that can be both a blessing and a curse.",
            "anger",
            " [MASK] is a powerful emotion that can be both a blessing and a curse.",
        ),
        ("It's sadder than I thought.", "sadness", "It's [MASK] than I thought."),
        ("Fearing the worst, I called.", "fear", "[MASK] the worst, I called."),
        ("a fear-inducing noise", "fear", "a [MASK]-inducing noise"),
        ("I felt no  emotion at all.", "neutral", "I felt [MASK] at all."),
        ("I'm so proud of you", "pride", "I'm so [MASK] of you"),
        ("Unsurprisingly, nobody came.", "surprise", "[MASK], nobody came."),
    ],
)
def test_real_snippets(text, emotion, masked):
    assert names_emotion(text, emotion)
    assert mask_emotion_words(text) == masked


def test_target_only_matching_and_masking_all():
    text = "Surprise! I'm so happy."
    assert names_emotion(text, "surprise") and names_emotion(text, "happiness")
    assert not names_emotion(text, "anger") and not names_emotion(text, "fear")
    # Masking hides every emotion's words, not only a target's.
    assert mask_emotion_words(text) == "[MASK]! I'm so [MASK]."
    # Non-emotion words that sound emotional are kept (the rule lists names, not synonyms).
    kept = "I'm glad, delighted and furious; hugs. Fearnir."
    assert mask_emotion_words(kept) == kept


def test_no_emotion_alias_and_pattern_sets():
    assert names_emotion("It felt neutral.", "no-emotion")
    assert names_emotion("It felt neutral.", " Neutral ")
    pattern = emotion_pattern(["anger", "fear"])
    assert isinstance(pattern, re.Pattern)
    assert pattern.search("so ANGRY") and pattern.search("afraid")
    assert not pattern.search("so sad")
    assert emotion_pattern("anger") is emotion_pattern(["anger"])  # cached
    assert emotion_pattern(None).flags & re.IGNORECASE


def test_fingerprint_tracks_the_table(monkeypatch):
    before = lexicon_fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", before)
    monkeypatch.setitem(EMOTION_WORD_FORMS, "anger", ("anger",))
    assert lexicon_fingerprint() != before


# ------------------------------------------------------------------ bad input


def test_bad_input_raises_clear_errors():
    with pytest.raises(LexiconError, match="unknown emotion 'ekman'") as info:
        names_emotion("text", "ekman")
    assert isinstance(info.value, LensEmotionError)
    with pytest.raises(LexiconError, match="unknown emotion"):
        emotion_pattern(["anger", "love"])
    with pytest.raises(LexiconError, match="empty"):
        emotion_pattern([])
    with pytest.raises(LexiconError, match="text must be a string"):
        mask_emotion_words(None)  # type: ignore[arg-type]
    with pytest.raises(LexiconError, match="text must be a string"):
        names_any_emotion(3)  # type: ignore[arg-type]
    with pytest.raises(LexiconError, match="itself contains an emotion word"):
        mask_emotion_words("so sad", mask="<fear>")
    with pytest.raises(LexiconError, match="emotions must be a name"):
        names_emotion("text", 3)  # type: ignore[arg-type]
    with pytest.raises(LexiconError, match="emotion must be a string"):
        emotion_pattern(["anger", 3])  # type: ignore[list-item]
