"""Loader for the crowd-enVENT generation corpus (Troiano et al., 2023).

Each row is a short first-person event description written by a crowd worker for a prompted
emotion, with the writer's own 1-5 ratings on 21 appraisal dimensions. The authors ship it as
tab-separated UTF-8 (``crowd-enVent_generation.tsv``); a comma-separated cp1252 variant
(``enVent_gen_Data.csv``) also circulates. Both are read by :func:`load_crowd_envent`, and the
built-in sample (:mod:`lens_emotion.data.sample`) goes through the same parser.

Text handling: leading/trailing whitespace is stripped; internal whitespace (including the
double spaces some writers typed) is kept exactly as written, so texts match the corpus.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import no_type_check

import numpy as np
import pandas as pd

from lens_emotion.data.dataset import DroppedRowsWarning, EmotionDataset
from lens_emotion.errors import DataError

__all__ = [
    "APPRAISALS",
    "CROWD_ENVENT_EMOTIONS",
    "TEXT_COLUMNS",
    "load_crowd_envent",
    "parse_envent_frame",
    "read_envent_bytes",
]

#: The 13 crowd-enVENT labels, alphabetical; the corpus' ``no-emotion`` is renamed ``neutral``.
CROWD_ENVENT_EMOTIONS: tuple[str, ...] = (
    "anger",
    "boredom",
    "disgust",
    "fear",
    "guilt",
    "joy",
    "neutral",
    "pride",
    "relief",
    "sadness",
    "shame",
    "surprise",
    "trust",
)

#: Raw corpus label -> canonical label (identity for all but ``no-emotion``).
RAW_LABELS: dict[str, str] = {lab: lab for lab in CROWD_ENVENT_EMOTIONS} | {"no-emotion": "neutral"}

#: The 21 appraisal columns, in corpus order (``chance_responsblt`` is kept).
APPRAISALS: tuple[str, ...] = (
    "suddenness",
    "familiarity",
    "predict_event",
    "pleasantness",
    "unpleasantness",
    "goal_relevance",
    "chance_responsblt",
    "self_responsblt",
    "other_responsblt",
    "predict_conseq",
    "goal_support",
    "urgency",
    "self_control",
    "other_control",
    "chance_control",
    "accept_conseq",
    "standards",
    "social_norms",
    "attention",
    "not_consider",
    "effort",
)

#: Text columns that can be used as the dataset text.
TEXT_COLUMNS: tuple[str, ...] = ("hidden_emo_text", "generated_text")

#: Columns every crowd-enVENT table must have.
REQUIRED_COLUMNS: tuple[str, ...] = ("round_number", "emotion", "text_id", *TEXT_COLUMNS) + (
    APPRAISALS
)

#: Optional columns copied into the metadata when present.
OPTIONAL_METADATA: tuple[str, ...] = ("intensity", "confidence")

_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
_AUTO_ENCODINGS = ("utf-8-sig", "cp1252")
_SOURCE_HINT = (
    "Expected the crowd-enVENT generation corpus: the authors' tab-separated "
    "crowd-enVent_generation.tsv (UTF-8) or the comma-separated enVent_gen_Data.csv variant "
    "(cp1252), from the crowd-enVENT distribution "
    "(https://www.ims.uni-stuttgart.de/data/appraisalemotion). Place it with `lens-emotion data "
    "add crowd-envent FILE_OR_URL`, pass path=..., or set LENS_EMOTION_DATA to a folder "
    "containing crowd-envent/<file>."
)


def _check_text_column(text_column: str) -> None:
    if text_column not in TEXT_COLUMNS:
        raise DataError(
            f"text_column={text_column!r} is not supported; use one of {TEXT_COLUMNS} "
            "('hidden_emo_text' masks the emotion word as '...')"
        )


def _decode(raw: bytes, display: str, encoding: str | None) -> str:
    """Decode file bytes: the given encoding, else UTF-8 then cp1252."""
    candidates = (encoding,) if encoding else _AUTO_ENCODINGS
    errors: list[str] = []
    for enc in candidates:
        try:
            return raw.decode(enc)
        except UnicodeDecodeError as exc:
            errors.append(f"{enc}: byte 0x{raw[exc.start]:02x} at offset {exc.start}")
    tried = " and ".join(c.replace("-sig", "") for c in candidates)
    raise DataError(
        f"{display} is not valid {tried} text ({'; '.join(errors)}). Re-save it as UTF-8 "
        "(or cp1252 for the .csv variant), or pass encoding=... naming its real encoding."
    )


def read_envent_bytes(
    raw: bytes, *, suffix: str, display: str, encoding: str | None = None
) -> pd.DataFrame:
    """Decode and parse a crowd-enVENT table into an all-string DataFrame.

    Args:
        raw: The file contents.
        suffix: ``".csv"`` (comma-separated) or ``".tsv"`` / ``".tab"`` (tab-separated).
        display: How to name the file in error messages.
        encoding: Force this encoding; ``None`` tries UTF-8, then cp1252.

    Returns:
        The table with every cell as ``str`` and empty cells as NaN. Strings such as "NA" or
        "None" are kept as text.

    Raises:
        DataError: If the suffix is unsupported, the bytes cannot be decoded, or the table
            cannot be parsed.
    """
    sep = _SEPARATORS.get(suffix.lower())
    if sep is None:
        raise DataError(
            f"{display}: unsupported file type {suffix!r}; use a .csv (comma-separated) or "
            ".tsv (tab-separated) crowd-enVENT file"
        )
    text = _decode(raw, display, encoding)
    try:
        return pd.read_csv(
            io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[""]
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(
            f"{display} could not be parsed as a {'tab' if sep == chr(9) else 'comma'}-separated "
            f"table ({exc}); check the file is an intact crowd-enVENT export"
        ) from exc


def _check_c1(frame: pd.DataFrame, display: str) -> None:
    """Reject texts holding C1 control characters (the mark of a latin-1 mis-decoding)."""
    for col in TEXT_COLUMNS:
        values = frame[col].dropna()
        bad = values[values.str.contains("[\u0080-\u009f]", regex=True)]
        if len(bad):
            sample = bad.iloc[0][:80]
            raise DataError(
                f"{display}: {len(bad)} {col} value(s) contain C1 control characters "
                f"(U+0080-U+009F), e.g. row {bad.index[0]}: {sample!r}. The file was probably "
                "decoded as latin-1 (or saved after such a decoding); read the original with "
                "encoding=None (UTF-8, then cp1252) or 'cp1252', or re-export it as UTF-8."
            )


def _make_ids(frame: pd.DataFrame) -> list[str]:
    """``"{round_number}_{text_id}"`` if that is complete and unique, else ``"row-{i}"``."""
    rounds = frame["round_number"].fillna("").str.strip()
    text_ids = frame["text_id"].fillna("").str.strip()
    ids = (rounds + "_" + text_ids).tolist()
    complete = (rounds != "").all() and (text_ids != "").all()
    if complete and len(set(ids)) == len(ids):
        return ids
    return [f"row-{i}" for i in range(len(frame))]


def _parse_appraisals(frame: pd.DataFrame, display: str) -> np.ndarray:
    out = np.empty((len(frame), len(APPRAISALS)), dtype=np.float32)
    problems: list[str] = []
    for j, col in enumerate(APPRAISALS):
        raw = frame[col]
        values = pd.to_numeric(raw.str.strip(), errors="coerce")
        bad = values.isna() | ~values.isin([1, 2, 3, 4, 5])
        if bad.any():
            examples = ", ".join(
                "<empty>" if pd.isna(v) else repr(v) for v in raw[bad].unique()[:3]
            )
            problems.append(f"{col} ({int(bad.sum())} bad, e.g. {examples})")
        else:
            out[:, j] = values.to_numpy(dtype=np.float32)
    if problems:
        raise DataError(
            f"{display}: appraisal ratings must be integers 1-5 but found invalid values in "
            f"{len(problems)} column(s): {'; '.join(problems)}. Fix or remove those rows."
        )
    return out


def parse_envent_frame(
    frame: pd.DataFrame,
    *,
    name: str,
    source: str,
    display: str,
    text_column: str = "hidden_emo_text",
) -> EmotionDataset:
    """Validate a raw crowd-enVENT-style table and build an :class:`EmotionDataset`.

    Rows whose chosen text is empty, whitespace-only or missing are dropped with a
    :class:`DroppedRowsWarning`; their number is stored in ``dropped_rows``.

    Args:
        frame: Table as returned by :func:`read_envent_bytes` (all cells ``str`` or NaN).
        name: Dataset name.
        source: Value for ``EmotionDataset.source``.
        display: How to name the file in messages.
        text_column: ``"hidden_emo_text"`` or ``"generated_text"``.

    Returns:
        The dataset, with labels in :data:`CROWD_ENVENT_EMOTIONS` and 21 appraisals.

    Raises:
        DataError: On missing columns, unknown labels, bad appraisal values or mis-decoded
            text.
    """
    _check_text_column(text_column)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"{display} is missing {len(missing)} required column(s): {', '.join(missing)}. "
            f"Found columns: {', '.join(map(str, frame.columns[:12]))}"
            f"{' ...' if len(frame.columns) > 12 else ''}. Use the crowd-enVENT generation file "
            "with its original header."
        )
    _check_c1(frame, display)
    frame = frame.assign(_id=_make_ids(frame), _row=np.arange(len(frame)))
    texts = frame[text_column].fillna("").str.strip()
    keep = texts != ""
    n_dropped = int((~keep).sum())
    if n_dropped:
        warnings.warn(
            DroppedRowsWarning(
                f"{display}: dropped {n_dropped} row(s) with an empty or missing "
                f"{text_column}; see EmotionDataset.dropped_rows"
            ),
            stacklevel=3,
        )
    frame = frame[keep].reset_index(drop=True)
    texts = texts[keep].reset_index(drop=True)

    raw_labels = frame["emotion"].fillna("").str.strip().str.lower()
    unknown = raw_labels[~raw_labels.isin(RAW_LABELS)].value_counts()
    if len(unknown):
        listed = ", ".join(f"{lab or '<empty>'!r} ({n} rows)" for lab, n in unknown.items())
        raise DataError(
            f"{display}: unknown emotion label(s): {listed}. Valid labels: "
            f"{', '.join(RAW_LABELS)}. Fix or remove those rows."
        )
    labels = raw_labels.map(RAW_LABELS)
    appraisals = _parse_appraisals(frame, display)

    other = next(c for c in TEXT_COLUMNS if c != text_column)
    meta = pd.DataFrame(
        {
            "row": frame["_row"].to_numpy(),
            "round_number": frame["round_number"].to_numpy(),
            "text_id": frame["text_id"].to_numpy(),
            other: frame[other].fillna("").str.strip().to_numpy(),
        }
    )
    for col in OPTIONAL_METADATA:
        if col in frame.columns:
            meta[col] = pd.to_numeric(frame[col], errors="coerce").to_numpy()
    return EmotionDataset(
        name=name,
        ids=tuple(frame["_id"]),
        texts=tuple(texts),
        labels=tuple(labels),
        label_names=CROWD_ENVENT_EMOTIONS,
        appraisals=appraisals,
        appraisal_names=APPRAISALS,
        metadata=meta,
        source=source,
        text_column=text_column,
        dropped_rows=n_dropped,
    )


def _check_limit(limit: object) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit={limit!r} must be a positive int (or None for all rows)")


@no_type_check  # validates its input itself, with a clear error
def load_crowd_envent(
    path: str | Path | None = None,
    text_column: str = "hidden_emo_text",
    limit: int | None = None,
    seed: int = 0,
    encoding: str | None = None,
) -> EmotionDataset:
    """Load the crowd-enVENT generation corpus.

    Args:
        path: A ``.csv`` or ``.tsv`` file; defaults to
            :func:`lens_emotion.data.default_crowd_envent_path`.
        text_column: ``"hidden_emo_text"`` (emotion word masked as "...") or
            ``"generated_text"``.
        limit: Keep a stratified, deterministic subset of this many rows.
        seed: Seed for ``limit``.
        encoding: Force a text encoding. ``None`` tries UTF-8 then cp1252, which reads both
            the official UTF-8 TSV and the cp1252 CSV correctly.

    Returns:
        Dataset named ``"crowd-envent"``; ids are ``"{round_number}_{text_id}"`` (or
        ``"row-{i}"`` if those are not unique); metadata holds ``row`` (0-based data row in
        the file), ``round_number``, ``text_id``, the other text column, ``intensity`` and
        ``confidence``.

    Raises:
        DataError: If the file is missing, undecodable or invalid (see
            :func:`parse_envent_frame`), or ``text_column`` / ``limit`` is invalid.
    """
    _check_text_column(text_column)
    _check_limit(limit)
    if path is None:
        from lens_emotion.data import default_crowd_envent_path

        path = default_crowd_envent_path()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"crowd-enVENT file not found: {path}. {_SOURCE_HINT}")
    frame = read_envent_bytes(
        path.read_bytes(), suffix=path.suffix, display=str(path), encoding=encoding
    )
    ds = parse_envent_frame(
        frame, name="crowd-envent", source=str(path), display=str(path), text_column=text_column
    )
    return ds if limit is None else ds.sample(limit, seed=seed, stratify=True)
