"""Loader for the SEV dataset (Wang et al., 2025).

``sev.jsonl`` holds one scenario skeleton per line: ``{"theme", "scenario", "event":
{"positive", "neutral", "negative"}, "skeleton_id"}``. Each line expands into one item per
valence (8 themes x 20 scenarios x 3 valences = 480 items); optionally every item is crossed
with the emotions the model is asked to express (x 6 = 2,880 prompts, as in the paper).

Text joining: ``text = scenario + ". " + event`` after stripping both parts. If the scenario
already ends in ".", "!" or "?", only a single space is inserted. The text is identical for
every crossed emotion; the emotion is the label (and ``metadata["emotion"]``), to be put into
the prompt by the prompting code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lens_emotion.data.dataset import EmotionDataset
from lens_emotion.errors import DataError

__all__ = ["SEV_EMOTIONS", "VALENCES", "join_scenario_event", "load_sev"]

#: The six emotions SEV prompts are crossed with, in the paper's order.
SEV_EMOTIONS: tuple[str, ...] = ("anger", "sadness", "happiness", "fear", "surprise", "disgust")

#: Event valences, in the order items are emitted.
VALENCES: tuple[str, ...] = ("positive", "neutral", "negative")

_KEYS = ("theme", "scenario", "event", "skeleton_id")


def join_scenario_event(scenario: str, event: str) -> str:
    """Join a scenario and an event into one text (see the module docstring)."""
    scenario, event = scenario.strip(), event.strip()
    sep = " " if scenario.endswith((".", "!", "?")) else ". "
    return f"{scenario}{sep}{event}"


def _check_emotions(emotions: Sequence[str] | None, cross_emotions: bool) -> tuple[str, ...]:
    if emotions is None:
        return SEV_EMOTIONS
    if isinstance(emotions, str):
        raise DataError(f"emotions must be a list of names, got the string {emotions!r}")
    if not cross_emotions:
        raise DataError(
            "emotions=... only applies when crossing items with emotions; pass "
            "cross_emotions=True (or drop emotions)"
        )
    chosen = tuple(str(e).strip().lower() for e in emotions)
    if not chosen:
        raise DataError(f"emotions is empty; pass some of {SEV_EMOTIONS} or None for all")
    unknown = [e for e in chosen if e not in SEV_EMOTIONS]
    if unknown:
        raise DataError(f"unknown SEV emotion(s) {unknown}; choose from {SEV_EMOTIONS}")
    if len(set(chosen)) != len(chosen):
        raise DataError(f"emotions {list(chosen)} contain duplicates; list each emotion once")
    return chosen


def _read_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """Parse and validate every non-blank line; returns ``(line_number, record)`` pairs."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not valid UTF-8 ({exc}); re-save it as UTF-8 JSON Lines"
        ) from exc
    records: list[tuple[int, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}, line {lineno}: invalid JSON ({exc.msg} at column {exc.colno}); "
                "each line must be one JSON object"
            ) from exc
        if not isinstance(rec, dict):
            raise DataError(
                f"{path}, line {lineno}: expected a JSON object, got {type(rec).__name__}"
            )
        missing = [k for k in _KEYS if k not in rec]
        event = rec.get("event")
        if isinstance(event, dict):
            missing += [f"event.{v}" for v in VALENCES if v not in event]
        elif "event" in rec:
            raise DataError(
                f"{path}, line {lineno}: 'event' must be an object with keys {VALENCES}"
            )
        if missing:
            raise DataError(
                f"{path}, line {lineno}: missing key(s) {', '.join(missing)}; each line needs "
                f"{', '.join(_KEYS)} with event.{{{', '.join(VALENCES)}}}"
            )
        strings = {k: rec[k] for k in ("theme", "scenario", "skeleton_id")}
        strings |= {f"event.{v}": event[v] for v in VALENCES}
        bad = [k for k, v in strings.items() if not isinstance(v, str) or not v.strip()]
        if bad:
            raise DataError(
                f"{path}, line {lineno}: key(s) {', '.join(bad)} must be non-empty strings"
            )
        sid = rec["skeleton_id"].strip()
        if sid in seen:
            raise DataError(
                f"{path}, line {lineno}: skeleton_id {sid!r} already used on line {seen[sid]}; "
                "skeleton ids must be unique"
            )
        seen[sid] = lineno
        records.append((lineno, rec))
    if not records:
        raise DataError(f"{path} holds no SEV records; expected one JSON object per line")
    return records


def load_sev(
    path: str | Path | None = None,
    emotions: Sequence[str] | None = None,
    cross_emotions: bool = False,
) -> EmotionDataset:
    """Load SEV and expand it into scenario x valence (x emotion) items.

    Args:
        path: The ``sev.jsonl`` file; defaults to :func:`lens_emotion.data.default_sev_path`.
        emotions: With ``cross_emotions``, the emotions to cross with (default
            :data:`SEV_EMOTIONS`, in that order).
        cross_emotions: Cross every item with every emotion. Labels are then the emotions
            (``label_names`` = the emotions); otherwise labels are the valences
            (``label_names`` = :data:`VALENCES`).

    Returns:
        Dataset named ``"sev"``, ordered by line, then valence, then emotion. Ids are
        ``"{skeleton_id}:{valence}"`` or ``"{skeleton_id}:{valence}:{emotion}"``. Metadata
        columns: ``theme``, ``scenario``, ``event``, ``valence``, ``skeleton_id``,
        ``scenario_index`` (0-based position of the line among the records) and ``emotion``
        (``None`` without crossing). ``appraisals`` is ``None``.

    Raises:
        DataError: If the file is missing or malformed (invalid JSON or missing keys, naming
            the line), or an emotion is unknown.
    """
    chosen = _check_emotions(emotions, cross_emotions)
    if path is None:
        from lens_emotion.data import default_sev_path

        path = default_sev_path()
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"SEV file not found: {path}. Expected sev.jsonl (JSON Lines, one object per line "
            "with theme, scenario, event.{positive,neutral,negative}, skeleton_id) from the SEV "
            "release of Wang et al. (2025). Place it with `lens-emotion data add sev FILE_OR_URL`, "
            "pass path=..., or set LENS_EMOTION_DATA to a folder containing sev/sev.jsonl."
        )
    rows: list[dict[str, Any]] = []
    for index, (_, rec) in enumerate(_read_lines(path)):
        sid = rec["skeleton_id"].strip()
        for valence in VALENCES:
            event = rec["event"][valence].strip()
            base = {
                "theme": rec["theme"].strip(),
                "scenario": rec["scenario"].strip(),
                "event": event,
                "valence": valence,
                "skeleton_id": sid,
                "scenario_index": index,
                "text": join_scenario_event(rec["scenario"], event),
            }
            if cross_emotions:
                rows += [{**base, "emotion": e, "id": f"{sid}:{valence}:{e}"} for e in chosen]
            else:
                rows.append({**base, "emotion": None, "id": f"{sid}:{valence}"})
    frame = pd.DataFrame(rows)
    labels = frame["emotion"] if cross_emotions else frame["valence"]
    meta_cols = [
        "theme",
        "scenario",
        "event",
        "valence",
        "skeleton_id",
        "scenario_index",
        "emotion",
    ]
    return EmotionDataset(
        name="sev",
        ids=tuple(frame["id"]),
        texts=tuple(frame["text"]),
        labels=tuple(labels),
        label_names=chosen if cross_emotions else VALENCES,
        metadata=frame[meta_cols].copy(),
        source=str(path),
        text_column=None,
    )
