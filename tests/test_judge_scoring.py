"""Scoring generated replies: score_replies / summarise_replies / ReadoutJudge (unit level).

The judges here are stand-ins with the judge interface, so every number can be checked by
hand; the real judges are exercised in tests/test_judge.py (integration).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lens_emotion.data import SEV_EMOTIONS
from lens_emotion.judge import (
    NO_REPLY,
    JudgeInputError,
    ReadoutJudge,
    score_replies,
    summarise_replies,
    wilson_interval,
)
from lens_emotion.lexicon import mask_emotion_words, names_any_emotion


class WordJudge:
    """A judge that *cheats*: it reads the emotion word if one is there, else says sadness."""

    labels = ("anger", "sadness", "happiness")
    label_set = "test"
    mask_token = "[MASK]"

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def predict(self, texts, batch_size=16, progress=False, *, mask=True):
        out = []
        for text in texts:
            read = mask_emotion_words(text) if mask else text
            self.seen.append((read, mask))
            low = read.lower()
            out.append("anger" if "angry" in low else "happiness" if "happy" in low else "sadness")
        return out


class ListJudge:
    """A second judge returning fixed labels (and recording what it was shown)."""

    def __init__(self, labels):
        self.labels_out = list(labels)
        self.seen: list[str] = []

    def predict(self, texts):
        self.seen.extend(texts)
        return self.labels_out[: len(texts)]


REPLIES = [
    "I am so angry about the late train today.",  # names anger
    "The train was late again and nobody said why.",
    "Happy happy happy happy happy",  # names happiness, degenerate (repeats)
    "",  # empty
    "What a wonderful surprise party you threw for me.",
]
TARGETS = ["anger", "anger", "happiness", "sadness", "happiness"]


def test_score_replies_columns_masking_and_names():
    judge = WordJudge()
    frame = score_replies(judge, REPLIES, TARGETS, extra={"method": list("aabbb")})
    assert list(frame.columns[:3]) == ["method", "reply", "target"]
    # The primary judge read the masked replies: the cheat finds no word, says sadness.
    assert frame["judged_masked"].tolist() == ["sadness", "sadness", "sadness", NO_REPLY, "sadness"]
    # On raw text the cheat reads the words.
    assert frame["judged_raw"].tolist() == ["anger", "sadness", "happiness", NO_REPLY, "sadness"]
    assert frame["correct_masked"].tolist() == [False] * 5
    assert frame["correct_raw"].tolist() == [True, False, True, False, False]
    assert frame["names_emotion"].tolist() == [True, False, True, False, False]
    # "surprise" is another emotion's word: masked, but it does not name the target.
    assert frame["names_any_emotion"].tolist() == [True, False, True, False, True]
    assert frame.loc[4, "masked_reply"] == "What a wonderful [MASK] party you threw for me."
    assert frame["degenerate"].tolist() == [False, False, True, True, False]
    assert (frame["fluent"] == ~frame["degenerate"]).all()
    # The empty reply was never shown to the judge; no masked text it saw names an emotion.
    masked_reads = [text for text, mask in judge.seen if mask]
    assert len(masked_reads) == 4 and not any(names_any_emotion(t) for t in masked_reads)


def test_score_replies_second_judge_sees_masked_text():
    second = ListJudge(["anger", "anger", "happiness", "happiness"])
    frame = score_replies(WordJudge(), REPLIES, TARGETS, readout=second)
    assert second.seen == [mask_emotion_words(r) for r in REPLIES if r]
    assert frame["readout_label"].tolist() == ["anger", "anger", "happiness", NO_REPLY, "happiness"]
    assert frame["correct_readout"].tolist() == [True, True, True, False, True]
    # Precomputed labels give the same frame.
    again = score_replies(
        WordJudge(), REPLIES, TARGETS, readout_labels=frame["readout_label"].tolist()
    )
    pd.testing.assert_frame_equal(again, frame)
    with pytest.raises(JudgeInputError, match="not both"):
        score_replies(WordJudge(), REPLIES, TARGETS, readout=second, readout_labels=["anger"] * 5)
    with pytest.raises(JudgeInputError, match="one label per reply"):
        score_replies(WordJudge(), REPLIES, TARGETS, readout_labels=["anger"])


def test_summarise_matches_hand_computation():
    frame = score_replies(WordJudge(), REPLIES, TARGETS, extra={"method": list("aabbb")})
    frame.loc[1, "correct_masked"] = True  # make group a's accuracy 1/2
    summary = summarise_replies(frame, by="method").set_index("method")
    a, b = summary.loc["a"], summary.loc["b"]
    assert a["n"] == 2 and b["n"] == 3
    assert a["judged_masked"] == 0.5 and b["judged_masked"] == 0.0
    assert a["judged_raw"] == 0.5 and b["judged_raw"] == pytest.approx(1 / 3)
    assert a["names_emotion"] == 0.5 and b["names_emotion"] == pytest.approx(1 / 3)
    assert a["judged_masked_named"] == 0.0 and a["judged_masked_unnamed"] == 1.0
    assert b["fluency"] == pytest.approx(1 / 3) and a["fluency"] == 1.0
    assert a["fluent_judged_masked"] == 0.5
    # Wilson 95% interval for 1/2 by hand: centre 0.5, half-width z*sqrt(.25/2 + z^2/16)/(1+z^2/2)
    z = 1.959963984540054
    half = z * math.sqrt(0.25 / 2 + z * z / 16) / (1 + z * z / 2)
    assert a["judged_masked_lo"] == pytest.approx(0.5 - half)
    assert a["judged_masked_hi"] == pytest.approx(0.5 + half)
    assert not a["judges_disagree"] and a["judges_note"] == "no second judge"
    assert math.isnan(a["kappa"])
    whole = summarise_replies(frame, by=[])
    assert len(whole) == 1 and whole.loc[0, "n"] == 5
    assert whole.loc[0, "judged_masked"] == pytest.approx(1 / 5)


def _two_judge_frame(first, second, targets):
    n = len(first)
    return pd.DataFrame(
        {
            "g": ["x"] * n,
            "judged_masked": first,
            "readout_label": second,
            "correct_masked": [f == t for f, t in zip(first, targets, strict=True)],
            "correct_readout": [s == t for s, t in zip(second, targets, strict=True)],
            "correct_raw": [False] * n,
            "names_emotion": [False] * n,
            "degenerate": [False] * n,
        }
    )


def test_kappa_against_hand_example():
    # 6 items; agreement on 4 -> p_o = 2/3. Marginals: judge 1 says x 3 times, judge 2 3 times
    # -> p_e = (3/6)(3/6) + (3/6)(3/6) = 1/2, so kappa = (2/3 - 1/2) / (1 - 1/2) = 1/3.
    first = ["x", "x", "y", "y", "x", "y"]
    second = ["x", "y", "y", "y", "x", "x"]
    row = summarise_replies(_two_judge_frame(first, second, ["x"] * 6), by="g").iloc[0]
    assert row["kappa"] == pytest.approx(1 / 3)
    assert not row["judges_disagree"]  # kappa above 0.2, McNemar p = 1 (1 vs 1 discordant)
    assert row["mcnemar_p"] == pytest.approx(1.0)
    assert row["readout"] == 0.5 and row["judged_masked"] == 0.5


def test_disagreement_rule():
    # Judge 1 right on all 6, the readout on none, always the same wrong label: McNemar with
    # 6 discordant pairs, all one way: p = 2 * 0.5**6 = 0.03125 < 0.05.
    first = ["x"] * 6
    second = ["y"] * 6
    row = summarise_replies(_two_judge_frame(first, second, ["x"] * 6), by="g").iloc[0]
    assert row["mcnemar_p"] == pytest.approx(2 * 0.5**6)
    assert row["judges_disagree"]
    # No label in common: p_o = 0 and p_e = 1 * 0 + 0 * 1 = 0, so kappa = 0.
    assert row["kappa"] == 0.0
    assert "McNemar" in row["judges_note"] and "kappa 0.00 < 0.2" in row["judges_note"]
    # Both judges give one and the same label: p_e = 1, kappa undefined, not a disagreement.
    row = summarise_replies(_two_judge_frame(first, first, ["x"] * 6), by="g").iloc[0]
    assert math.isnan(row["kappa"]) and not row["judges_disagree"]
    assert "undefined" in row["judges_note"]
    # Five one-way discordant pairs: p = 0.0625, not significant; labels agree -> no flag.
    first = ["x"] * 5 + ["x", "y", "x", "y"]
    second = ["y"] * 5 + ["x", "y", "x", "y"]
    targets = ["x"] * 5 + ["x", "y", "x", "y"]
    row = summarise_replies(_two_judge_frame(first, second, targets), by="g").iloc[0]
    assert row["mcnemar_p"] == pytest.approx(0.0625)
    # Kappa by hand: p_o = 4/9; judge 1: x 7, y 2; judge 2: y 7, x 2 -> p_e = 28/81.
    expected = (4 / 9 - 28 / 81) / (1 - 28 / 81)
    assert row["kappa"] == pytest.approx(expected)
    assert row["kappa"] < 0.2 and row["judges_disagree"]
    assert row["judges_note"].startswith("kappa 0.15 < 0.2")


def test_wilson_interval_edges():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.35
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and 0.65 < lo < 0.75
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_bad_input():
    judge = WordJudge()
    with pytest.raises(JudgeInputError, match="one target per reply"):
        score_replies(judge, ["a reply"], ["anger", "anger"])
    with pytest.raises(JudgeInputError, match="not labels"):
        score_replies(judge, ["a reply"], ["fear"])
    with pytest.raises(JudgeInputError, match="keep_default_na"):
        score_replies(judge, [float("nan")], ["anger"])
    with pytest.raises(JudgeInputError, match="not a string"):
        score_replies(judge, "a reply", ["anger"])
    with pytest.raises(JudgeInputError, match="one row per reply"):
        score_replies(judge, ["a reply"], ["anger"], extra={"method": ["a", "b"]})
    with pytest.raises(JudgeInputError, match="clash"):
        score_replies(judge, ["a reply"], ["anger"], extra={"target": ["anger"]})
    with pytest.raises(JudgeInputError, match="lacks columns"):
        summarise_replies(pd.DataFrame({"method": ["a"]}))


# ------------------------------------------------------------------ ReadoutJudge on a tiny model


def test_readout_judge_plumbing(tiny_llama):
    from lens_emotion.inference import infer_emotions

    readout = ReadoutJudge(tiny_llama, labels="sev", calibrate=None)
    texts = ["I was so angry when the bus left early.", "Surprise! A cake for me."]
    labels = readout.predict(texts)
    assert len(labels) == 2 and set(labels) <= set(SEV_EMOTIONS)
    # It reads the masked text: the same as reading the pre-masked text unmasked.
    assert readout.predict(texts) == readout.predict([mask_emotion_words(t) for t in texts])
    result = readout.infer(texts)
    direct = readout.infer([mask_emotion_words(t) for t in texts], mask=False)
    np.testing.assert_array_equal(result.logprobs, direct.logprobs)
    # ... and it is infer_emotions under the emotion-list template, nothing re-implemented.
    from lens_emotion.data import EmotionDataset

    dataset = EmotionDataset(
        name="t",
        ids=("0", "1"),
        texts=tuple(mask_emotion_words(t) for t in texts),
        labels=("anger", "anger"),
        label_names=SEV_EMOTIONS,
    )
    reference = infer_emotions(tiny_llama, dataset, "emotion-list", progress=False)
    assert labels == list(reference.predictions)
    mean = ReadoutJudge(tiny_llama, labels=SEV_EMOTIONS, calibrate="mean")
    assert mean.infer(texts).calibration == "mean"
    assert ReadoutJudge(tiny_llama).infer(texts).calibration == "content-free"
    assert ReadoutJudge(tiny_llama).describe()["calibrate"] == "content-free"


def test_readout_judge_bad_arguments(tiny_llama):
    with pytest.raises(JudgeInputError, match="calibrate"):
        ReadoutJudge(tiny_llama, calibrate="isotonic")
    with pytest.raises(JudgeInputError, match="unknown label set"):
        ReadoutJudge(tiny_llama, labels="ekman")
    with pytest.raises(JudgeInputError, match="control task"):
        ReadoutJudge(tiny_llama, template="control-first-word")
    with pytest.raises(JudgeInputError, match="empty or whitespace"):
        ReadoutJudge(tiny_llama).predict(["  "])
