"""Small built-in samples in the crowd-enVENT and SEV formats, written for this project.

``sample_events.csv`` holds 10 short first-person event descriptions per crowd-enVENT label
(130 rows), written from scratch (no corpus rows), each with 21 appraisal ratings (1-5) judged
for that text, plus intensity and confidence. It uses the crowd-enVENT column names
(``round_number`` is ``"sample"``; neutral rows use the corpus label ``no-emotion``), is UTF-8
encoded, and is parsed by the same code as the corpus. It lets tests, demos and smoke runs work
without the licensed data.

``sample_sev.jsonl`` holds 36 first-person everyday scenarios in the SEV format (Wang et al.,
2025), written from scratch (no SEV text): 4-5 per SEV theme, each with a positive, a neutral
and a negative event, skeleton ids ``sample_<theme key>_<nn>``. It is read by
:func:`~lens_emotion.data.sev.load_sev` itself, so the SEV workflows (e.g. the emotion-circuits
analysis) run on it without the real ``sev.jsonl``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from importlib import resources

from lens_emotion.data.crowd_envent import parse_envent_frame, read_envent_bytes
from lens_emotion.data.dataset import EmotionDataset
from lens_emotion.data.sev import load_sev

__all__ = ["SAMPLE_FILE", "SEV_SAMPLE_FILE", "load_sample", "load_sev_sample"]

#: File name of the sample inside the ``lens_emotion.data`` package.
SAMPLE_FILE = "sample_events.csv"

#: File name of the SEV-format sample inside the ``lens_emotion.data`` package.
SEV_SAMPLE_FILE = "sample_sev.jsonl"


def load_sample(text_column: str = "hidden_emo_text") -> EmotionDataset:
    """Load the built-in sample set.

    Args:
        text_column: ``"hidden_emo_text"`` (emotion word masked as "...") or
            ``"generated_text"``.

    Returns:
        Dataset named ``"sample"`` with ``source="builtin"``, labels in
        :data:`~lens_emotion.data.crowd_envent.CROWD_ENVENT_EMOTIONS` and 21 appraisals.

    Raises:
        DataError: If ``text_column`` is invalid.
    """
    raw = resources.files("lens_emotion.data").joinpath(SAMPLE_FILE).read_bytes()
    display = f"builtin {SAMPLE_FILE}"
    frame = read_envent_bytes(raw, suffix=".csv", display=display, encoding="utf-8")
    return parse_envent_frame(
        frame, name="sample", source="builtin", display=display, text_column=text_column
    )


def load_sev_sample(
    emotions: Sequence[str] | None = None, cross_emotions: bool = False
) -> EmotionDataset:
    """Load the built-in SEV-format sample (36 scenarios x 3 valences).

    The packaged ``sample_sev.jsonl`` is parsed by :func:`~lens_emotion.data.sev.load_sev`,
    so ids, texts, labels, label names and metadata are exactly what ``load_sev`` returns
    for that file; only ``name`` and ``source`` differ.

    Args:
        emotions: With ``cross_emotions``, the emotions to cross with (default
            :data:`~lens_emotion.data.sev.SEV_EMOTIONS`, in that order).
        cross_emotions: Cross every item with every emotion (labels are then the emotions);
            otherwise labels are the valences.

    Returns:
        Dataset named ``"sev-sample"`` with ``source="builtin"``: 108 items, or
        ``108 * len(emotions)`` when crossed.

    Raises:
        DataError: If an emotion is unknown or ``emotions`` is given without
            ``cross_emotions``.
    """
    resource = resources.files("lens_emotion.data").joinpath(SEV_SAMPLE_FILE)
    with resources.as_file(resource) as path:
        dataset = load_sev(path, emotions=emotions, cross_emotions=cross_emotions)
    return dataclasses.replace(dataset, name="sev-sample", source="builtin")
