"""A small built-in sample in the crowd-enVENT format, written for this project.

``sample_events.csv`` holds 10 short first-person event descriptions per crowd-enVENT label
(130 rows), written from scratch (no corpus rows), each with 21 appraisal ratings (1-5) judged
for that text, plus intensity and confidence. It uses the crowd-enVENT column names
(``round_number`` is ``"sample"``; neutral rows use the corpus label ``no-emotion``), is UTF-8
encoded, and is parsed by the same code as the corpus. It lets tests, demos and smoke runs work
without the licensed data.
"""

from __future__ import annotations

from importlib import resources

from lens_emotion.data.crowd_envent import parse_envent_frame, read_envent_bytes
from lens_emotion.data.dataset import EmotionDataset

__all__ = ["SAMPLE_FILE", "load_sample"]

#: File name of the sample inside the ``lens_emotion.data`` package.
SAMPLE_FILE = "sample_events.csv"


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
