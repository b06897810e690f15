"""Datasets: crowd-enVENT, SEV and built-in samples of both, as :class:`EmotionDataset` objects.

The data root is ``$LENS_EMOTION_DATA`` if set, else ``~/.cache/lens-emotion/data``; it holds
``crowd-envent/enVent_gen_Data.csv`` (or ``crowd-envent/crowd-enVent_generation.tsv``) and
``sev/sev.jsonl``. Neither dataset ships with lens-emotion: :mod:`lens_emotion.data.registry`
(``lens-emotion data list`` / ``lens-emotion data add``) says where each comes from and puts
a downloaded file where the loaders look.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lens_emotion.data.crowd_envent import (
    APPRAISALS,
    CROWD_ENVENT_EMOTIONS,
    TEXT_COLUMNS,
    load_crowd_envent,
)
from lens_emotion.data.dataset import DroppedRowsWarning, EmotionDataset, stratified_indices
from lens_emotion.data.registry import DATASETS, add_dataset, dataset_status, default_data_root
from lens_emotion.data.sample import load_sample, load_sev_sample
from lens_emotion.data.sev import SEV_EMOTIONS, VALENCES, load_sev
from lens_emotion.errors import DataError

__all__ = [
    "APPRAISALS",
    "CROWD_ENVENT_EMOTIONS",
    "DATASETS",
    "DATASET_NAMES",
    "DroppedRowsWarning",
    "EmotionDataset",
    "SEV_EMOTIONS",
    "TEXT_COLUMNS",
    "VALENCES",
    "add_dataset",
    "dataset_status",
    "default_crowd_envent_path",
    "default_data_root",
    "default_sev_path",
    "load_crowd_envent",
    "load_dataset",
    "load_sample",
    "load_sev",
    "load_sev_sample",
    "stratified_indices",
]

#: Names accepted by :func:`load_dataset`.
DATASET_NAMES: tuple[str, ...] = ("crowd-envent", "sev", "sample", "sev-sample")

_CROWD_FILES = ("enVent_gen_Data.csv", "crowd-enVent_generation.tsv")


def default_crowd_envent_path() -> Path:
    """The crowd-enVENT file under the data root.

    ``crowd-envent/enVent_gen_Data.csv`` if it exists, else
    ``crowd-envent/crowd-enVent_generation.tsv`` if that exists, else the CSV path (so the
    "not found" error names it).
    """
    folder = default_data_root() / "crowd-envent"
    for name in _CROWD_FILES:
        if (folder / name).is_file():
            return folder / name
    return folder / _CROWD_FILES[0]


def default_sev_path() -> Path:
    """``sev/sev.jsonl`` under the data root."""
    return default_data_root() / "sev" / "sev.jsonl"


def load_dataset(name: str, path: str | Path | None = None, **kwargs: Any) -> EmotionDataset:
    """Load a dataset by name.

    Args:
        name: ``"crowd-envent"``, ``"sev"``, ``"sample"`` or ``"sev-sample"``
            (case-insensitive; ``_`` is accepted for ``-``).
        path: File to read; ``None`` uses the default location. Not allowed for the
            built-in ``"sample"`` and ``"sev-sample"``.
        **kwargs: Passed to :func:`load_crowd_envent`, :func:`load_sev`,
            :func:`load_sample` or :func:`load_sev_sample`.

    Returns:
        The dataset.

    Raises:
        DataError: If the name is unknown, or ``path`` is given for a built-in sample.
    """
    key = name.strip().lower().replace("_", "-")
    if key == "crowd-envent":
        return load_crowd_envent(path, **kwargs)
    if key == "sev":
        return load_sev(path, **kwargs)
    if key == "sample":
        if path is not None:
            raise DataError("the 'sample' dataset is built in; drop path=... to load it")
        return load_sample(**kwargs)
    if key == "sev-sample":
        if path is not None:
            raise DataError("the 'sev-sample' dataset is built in; drop path=... to load it")
        return load_sev_sample(**kwargs)
    raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
