"""The human side of the geometry: each text's own ratings and their per-emotion means.

crowd-enVENT writers rated their own event on 21 appraisals (1-5) and gave an ``intensity``
(1-5). Per text, **valence** is ``pleasantness - unpleasantness`` and the **arousal proxy**
is ``intensity``; per emotion, both are the means over that emotion's texts. The
**appraisal profile** of an emotion is the mean of the 21 appraisals over its texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Int

from lens_emotion.geometry.errors import GeometryError

__all__ = ["HumanRatings", "human_ratings"]


@dataclass(frozen=True, eq=False)
class HumanRatings:
    """Per-text human ratings, with the emotion of each text as an index.

    Attributes:
        emotions: Emotion names (the index order of ``label_index``).
        label_index: Emotion index of each text.
        valence: ``pleasantness - unpleasantness`` of each text.
        pleasantness: Each text's pleasantness rating.
        arousal: Each text's ``intensity`` (NaN where it was not given).
        appraisals: ``[n, 21]`` appraisal ratings.
        appraisal_names: Their names.
    """

    emotions: tuple[str, ...]
    label_index: Int[np.ndarray, " n"]
    valence: Float[np.ndarray, " n"]
    pleasantness: Float[np.ndarray, " n"]
    arousal: Float[np.ndarray, " n"]
    appraisals: Float[np.ndarray, "n appraisal"]
    appraisal_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.label_index)

    def subset(self, rows: Int[np.ndarray, " m"]) -> HumanRatings:
        """The ratings of the texts at ``rows``."""
        rows = np.asarray(rows)
        return HumanRatings(
            self.emotions,
            self.label_index[rows],
            self.valence[rows],
            self.pleasantness[rows],
            self.arousal[rows],
            self.appraisals[rows],
            self.appraisal_names,
        )

    def _means(self, values: np.ndarray) -> np.ndarray:
        k = len(self.emotions)
        out = np.full((k, *values.shape[1:]), np.nan)
        for e in range(k):
            rows = self.label_index == e
            if rows.any():
                out[e] = np.nanmean(values[rows], axis=0)
        return out

    def emotion_valence(self) -> Float[np.ndarray, " emotion"]:
        """Mean valence per emotion."""
        return self._means(self.valence)

    def emotion_arousal(self) -> Float[np.ndarray, " emotion"]:
        """Mean intensity per emotion."""
        return self._means(self.arousal)

    def appraisal_profiles(self) -> Float[np.ndarray, "emotion appraisal"]:
        """Mean of each appraisal per emotion."""
        return self._means(self.appraisals)


def human_ratings(dataset: object, emotions: Sequence[str] | None = None) -> HumanRatings:
    """Read the ratings of a crowd-enVENT-like dataset.

    Args:
        dataset: An :class:`~lens_emotion.data.EmotionDataset` with the 21 crowd-enVENT
            appraisals (``pleasantness`` and ``unpleasantness`` among them) and, for the
            arousal proxy, an ``intensity`` metadata column.
        emotions: Emotion order (default: the dataset's label names).

    Returns:
        The :class:`HumanRatings`.

    Raises:
        GeometryError: The dataset has no appraisal ratings or a label outside ``emotions``.
    """
    names = tuple(getattr(dataset, "appraisal_names", ()) or ())
    values = getattr(dataset, "appraisals", None)
    if values is None or "pleasantness" not in names or "unpleasantness" not in names:
        raise GeometryError(
            "the dataset has no pleasantness/unpleasantness ratings; load crowd-enVENT "
            "(lens_emotion.data.load_crowd_envent) or the built-in sample (load_sample)."
        )
    emotions = tuple(emotions if emotions is not None else dataset.label_names)  # type: ignore[attr-defined]
    column = {e: i for i, e in enumerate(emotions)}
    labels = list(dataset.labels)  # type: ignore[attr-defined]
    unknown = sorted({lab for lab in labels if lab not in column})
    if unknown:
        raise GeometryError(
            f"labels {unknown} are not among the emotions {emotions}; pass emotions= that "
            "include every label."
        )
    appraisals = np.asarray(values, dtype=np.float64)
    pleasant = appraisals[:, names.index("pleasantness")]
    unpleasant = appraisals[:, names.index("unpleasantness")]
    meta = getattr(dataset, "metadata", None)
    if meta is not None and "intensity" in meta:
        arousal = np.asarray(meta["intensity"], dtype=np.float64)
    else:
        arousal = np.full(len(labels), np.nan)
    return HumanRatings(
        emotions=emotions,
        label_index=np.asarray([column[lab] for lab in labels], dtype=np.int64),
        valence=pleasant - unpleasant,
        pleasantness=pleasant,
        arousal=arousal,
        appraisals=appraisals,
        appraisal_names=names,
    )
