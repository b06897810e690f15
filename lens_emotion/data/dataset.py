"""The in-memory dataset type shared by every loader.

:class:`EmotionDataset` is an immutable bundle of texts, labels, optional appraisal ratings and
per-row metadata. All sampling and splitting helpers are deterministic given a seed, so an
experiment can be re-run bit-for-bit and identified by :meth:`EmotionDataset.fingerprint`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import no_type_check

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold, StratifiedKFold

from lens_emotion.errors import DataError

__all__ = ["DroppedRowsWarning", "EmotionDataset", "stratified_indices"]

#: Column names reserved by :meth:`EmotionDataset.to_frame`; metadata may not use them.
RESERVED_COLUMNS = ("id", "text", "label")


class DroppedRowsWarning(UserWarning):
    """A loader skipped rows (e.g. empty texts); the message says how many and why."""


def _preview(items: Sequence[object], limit: int = 5) -> str:
    """Format up to ``limit`` items for an error message, noting how many were left out."""
    shown = ", ".join(repr(x) for x in list(items)[:limit])
    extra = len(items) - limit
    return f"{shown} (+{extra} more)" if extra > 0 else shown


def stratified_indices(labels: Sequence[str], n: int, seed: int) -> np.ndarray:
    """Choose ``n`` row indices so each label keeps (roughly) its share of the rows.

    Allocation: if ``n`` is at least the number of distinct labels, every label first gets one
    row; the remaining rows are shared in proportion to each label's remaining count, using the
    largest-remainder method (ties broken by first appearance of the label). With fewer rows
    than labels, the most frequent labels are kept. Rows within a label are drawn uniformly
    without replacement by ``numpy.random.default_rng(seed)``.

    Args:
        labels: One label per row.
        n: Number of rows to draw, ``0 < n <= len(labels)``.
        seed: Seed of the random generator.

    Returns:
        Sorted int64 array of ``n`` distinct indices into ``labels``.

    Raises:
        ValueError: If ``n`` is out of range.
    """
    total = len(labels)
    if not 0 < n <= total:
        raise ValueError(f"cannot draw n={n} rows from {total}; pass 0 < n <= {total}")
    counts = Counter(labels)
    order = list(counts)  # first-appearance order: deterministic for a given dataset
    alloc = dict.fromkeys(order, 0)
    budget = n
    if n >= len(order):
        for lab in order:
            alloc[lab] = 1
        budget -= len(order)
    pool = {lab: counts[lab] - alloc[lab] for lab in order}
    pool_total = sum(pool.values())
    if budget and pool_total:
        quotas = {lab: budget * pool[lab] / pool_total for lab in order}
        floors = {lab: math.floor(q) for lab, q in quotas.items()}
        rest = budget - sum(floors.values())
        by_remainder = sorted(order, key=lambda lab: (-(quotas[lab] - floors[lab]), -pool[lab]))
        for i, lab in enumerate(by_remainder):
            alloc[lab] += floors[lab] + (1 if i < rest else 0)
    rng = np.random.default_rng(seed)
    label_arr = np.asarray(labels, dtype=object)
    chosen: list[np.ndarray] = []
    for lab in order:
        if alloc[lab]:
            rows = np.flatnonzero(label_arr == lab)
            chosen.append(rng.choice(rows, size=alloc[lab], replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


@no_type_check  # validates (and converts) its input itself, with clear errors
@dataclass(frozen=True, eq=False)
class EmotionDataset:
    """An immutable, validated set of labelled texts.

    Instances compare by identity; use :meth:`fingerprint` to compare contents.

    Attributes:
        name: Short dataset name, e.g. ``"crowd-envent"``.
        ids: One unique, stable string id per row.
        texts: The texts shown to the model.
        labels: One label per row; each must be in ``label_names``.
        label_names: Canonical label order; :attr:`label_ids` index into it. It may contain
            labels absent from this particular subset.
        appraisals: ``float32`` array of shape ``(n, len(appraisal_names))``, or ``None``.
            Stored read-only.
        appraisal_names: Column names of ``appraisals`` (empty when there are none).
        metadata: Extra per-row columns, index ``0..n-1``. Must not use the column names
            ``id``, ``text``, ``label`` or any appraisal name.
        source: Where the data came from: a file path, ``"builtin"``, or ``None``.
        text_column: The source column the texts were read from, if any.
        dropped_rows: Number of source rows the loader skipped (e.g. empty texts). Subsets
            keep the value of the dataset they came from.
    """

    name: str
    ids: tuple[str, ...]
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    label_names: tuple[str, ...]
    appraisals: np.ndarray | None = None
    appraisal_names: tuple[str, ...] = ()
    metadata: pd.DataFrame = field(default_factory=pd.DataFrame)
    source: str | None = None
    text_column: str | None = None
    dropped_rows: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for attr in ("ids", "texts", "labels", "label_names", "appraisal_names"):
            set_(self, attr, tuple(getattr(self, attr)))
        n = len(self.ids)
        if not isinstance(self.name, str) or not self.name:
            raise DataError("EmotionDataset.name must be a non-empty string; pass e.g. 'sample'")
        if len(self.texts) != n or len(self.labels) != n:
            raise DataError(
                f"EmotionDataset '{self.name}': ids, texts and labels must have the same length, "
                f"got {n}, {len(self.texts)} and {len(self.labels)}; pass one entry per row"
            )
        for attr in ("ids", "texts", "labels", "label_names", "appraisal_names"):
            bad = [x for x in getattr(self, attr) if not isinstance(x, str)]
            if bad:
                raise DataError(
                    f"EmotionDataset '{self.name}': {attr} must all be str, got "
                    f"{_preview(bad)}; convert them with str() first"
                )
        dup_ids = [k for k, c in Counter(self.ids).items() if c > 1]
        if dup_ids:
            raise DataError(
                f"EmotionDataset '{self.name}': {len(dup_ids)} duplicate id(s): "
                f"{_preview(dup_ids)}; ids must be unique per row"
            )
        if not self.label_names:
            raise DataError(f"EmotionDataset '{self.name}': label_names is empty; list the labels")
        dup_names = [k for k, c in Counter(self.label_names).items() if c > 1]
        if dup_names:
            raise DataError(
                f"EmotionDataset '{self.name}': duplicate label_names {_preview(dup_names)}; "
                "list each label once"
            )
        known = set(self.label_names)
        unknown = sorted({lab for lab in self.labels if lab not in known})
        if unknown:
            raise DataError(
                f"EmotionDataset '{self.name}': labels {_preview(unknown)} are not in "
                f"label_names {self.label_names}; add them to label_names or fix the labels"
            )
        self._init_appraisals(n)
        self._init_metadata(n)
        if not isinstance(self.dropped_rows, int) or self.dropped_rows < 0:
            raise DataError(
                f"EmotionDataset '{self.name}': dropped_rows must be an int >= 0, "
                f"got {self.dropped_rows!r}"
            )

    def _init_appraisals(self, n: int) -> None:
        if self.appraisals is None:
            if self.appraisal_names:
                raise DataError(
                    f"EmotionDataset '{self.name}': appraisal_names given but appraisals is "
                    "None; pass the ratings array or drop the names"
                )
            return
        arr = np.array(self.appraisals, dtype=np.float32, copy=True)
        expected = (n, len(self.appraisal_names))
        if arr.shape != expected:
            raise DataError(
                f"EmotionDataset '{self.name}': appraisals has shape {arr.shape}, expected "
                f"{expected} (rows x appraisal_names); pass one rating per row and name"
            )
        if not np.isfinite(arr).all():
            raise DataError(
                f"EmotionDataset '{self.name}': appraisals contain NaN or inf; "
                "fill or drop those rows first"
            )
        dup = [k for k, c in Counter(self.appraisal_names).items() if c > 1]
        if dup:
            raise DataError(
                f"EmotionDataset '{self.name}': duplicate appraisal_names {_preview(dup)}; "
                "name each appraisal once"
            )
        arr.flags.writeable = False
        object.__setattr__(self, "appraisals", arr)

    def _init_metadata(self, n: int) -> None:
        meta = self.metadata
        if not isinstance(meta, pd.DataFrame):
            raise DataError(
                f"EmotionDataset '{self.name}': metadata must be a pandas DataFrame, "
                f"got {type(meta).__name__}"
            )
        if meta.shape[1] == 0 and len(meta) != n:
            meta = pd.DataFrame(index=pd.RangeIndex(n))
        if len(meta) != n:
            raise DataError(
                f"EmotionDataset '{self.name}': metadata has {len(meta)} rows but the dataset "
                f"has {n}; pass one metadata row per text"
            )
        clash = [c for c in meta.columns if c in RESERVED_COLUMNS or c in self.appraisal_names]
        if clash:
            raise DataError(
                f"EmotionDataset '{self.name}': metadata columns {_preview(clash)} clash with "
                f"the reserved columns {RESERVED_COLUMNS} or appraisal names; rename them"
            )
        object.__setattr__(self, "metadata", meta.reset_index(drop=True))

    # ------------------------------------------------------------------ basic accessors

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        n_app = len(self.appraisal_names)
        return (
            f"EmotionDataset(name={self.name!r}, n={len(self)}, labels={len(self.label_names)}, "
            f"appraisals={n_app}, source={self.source!r})"
        )

    @property
    def label_ids(self) -> np.ndarray:
        """Int64 array of each row's label position in :attr:`label_names`."""
        index = {lab: i for i, lab in enumerate(self.label_names)}
        return np.fromiter((index[lab] for lab in self.labels), dtype=np.int64, count=len(self))

    def label_counts(self) -> dict[str, int]:
        """Rows per label, in :attr:`label_names` order, including labels with zero rows."""
        counts = Counter(self.labels)
        return {lab: counts.get(lab, 0) for lab in self.label_names}

    # ------------------------------------------------------------------ subsets

    def subset(self, indices: Sequence[int] | np.ndarray) -> EmotionDataset:
        """Return the rows at ``indices`` (in that order), keeping :attr:`label_names`.

        Args:
            indices: Distinct integer row positions (negative positions count from the end).

        Returns:
            A new dataset.

        Raises:
            TypeError: If ``indices`` is a boolean mask (use :meth:`filter`).
            IndexError: If a position is out of range.
            DataError: If a position is repeated.
        """
        idx = np.asarray(indices)
        if idx.dtype == bool:
            raise TypeError("subset() takes integer positions; use filter() for a boolean mask")
        if idx.size == 0:
            idx = idx.astype(np.int64)
        if not np.issubdtype(idx.dtype, np.integer) or idx.ndim != 1:
            raise TypeError(f"subset() needs a 1-D sequence of ints, got dtype {idx.dtype}")
        n = len(self)
        if idx.size and (idx.max() >= n or idx.min() < -n):
            raise IndexError(f"subset() index out of range for a dataset of {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        if len(np.unique(idx)) != len(idx):
            raise DataError("subset() indices contain duplicates; pass each row position once")
        pos = idx.tolist()
        return dataclasses.replace(
            self,
            ids=tuple(self.ids[i] for i in pos),
            texts=tuple(self.texts[i] for i in pos),
            labels=tuple(self.labels[i] for i in pos),
            appraisals=None if self.appraisals is None else self.appraisals[idx],
            metadata=self.metadata.iloc[idx].reset_index(drop=True),
        )

    def filter(self, mask: Sequence[bool] | np.ndarray | pd.Series) -> EmotionDataset:
        """Return the rows where ``mask`` is true, in their original order.

        Args:
            mask: One boolean per row.

        Returns:
            A new dataset.

        Raises:
            DataError: If ``mask`` does not have one boolean per row.
        """
        arr = np.asarray(mask)
        if arr.dtype != bool or arr.shape != (len(self),):
            raise DataError(
                f"filter() needs one boolean per row ({len(self)}), got dtype {arr.dtype} and "
                f"shape {arr.shape}; build the mask from this dataset's rows"
            )
        return self.subset(np.flatnonzero(arr))

    def copy(self) -> EmotionDataset:
        """Return a copy (metadata frame copied; immutable fields shared)."""
        return dataclasses.replace(self, metadata=self.metadata.copy())

    def sample(self, n: int, seed: int = 0, stratify: bool = True) -> EmotionDataset:
        """Draw a deterministic random subset of ``n`` rows.

        Args:
            n: Number of rows. If ``n >= len(self)`` a copy of the whole dataset is returned.
            seed: Random seed; the same seed always gives the same rows.
            stratify: Keep label proportions (see :func:`stratified_indices`); every label
                present is kept when ``n`` is at least the number of labels present.

        Returns:
            A new dataset with rows in their original order.

        Raises:
            DataError: If ``n < 1``.
        """
        if n < 1:
            raise DataError(f"sample() needs n >= 1, got {n}")
        if n >= len(self):
            return self.copy()
        if stratify:
            idx = stratified_indices(self.labels, n, seed)
        else:
            idx = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return self.subset(idx)

    def _group_values(self, groups: str) -> np.ndarray:
        if groups not in self.metadata.columns:
            raise DataError(
                f"groups={groups!r} is not a metadata column of '{self.name}'; "
                f"choose one of {list(self.metadata.columns)}"
            )
        return self.metadata[groups].astype(str).to_numpy()

    def split(
        self,
        test_size: float | int = 0.2,
        seed: int = 0,
        stratify: bool = True,
        groups: str | None = None,
    ) -> tuple[EmotionDataset, EmotionDataset]:
        """Split into deterministic train and test parts.

        Args:
            test_size: Fraction in ``(0, 1)`` (the test part gets ``ceil(test_size * n)``
                rows, like scikit-learn) or an absolute row count.
            seed: Random seed.
            stratify: Keep label proportions in the test part (ignored with ``groups``).
            groups: A metadata column; rows sharing a value all go to the same part
                (``sklearn.model_selection.GroupShuffleSplit``, where ``test_size`` is the
                fraction or number of *groups*).

        Returns:
            ``(train, test)``, each with rows in their original order.

        Raises:
            DataError: If ``test_size`` leaves a part empty, or ``groups`` is not a column.
        """
        n = len(self)
        if groups is not None:
            group_values = self._group_values(groups)
            n_groups = len(set(group_values))
            if n_groups < 2:
                raise DataError(
                    f"split(groups={groups!r}) needs at least 2 distinct groups, got {n_groups}"
                )
            splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
            try:
                train_idx, test_idx = next(splitter.split(np.zeros(n), groups=group_values))
            except ValueError as exc:
                raise DataError(
                    f"split(test_size={test_size!r}, groups={groups!r}) failed: {exc}; pass a "
                    f"fraction in (0, 1) or a group count below {n_groups}"
                ) from exc
            return self.subset(np.sort(train_idx)), self.subset(np.sort(test_idx))
        if isinstance(test_size, Integral):
            n_test = int(test_size)
        else:
            if not 0.0 < float(test_size) < 1.0:
                raise DataError(f"split() test_size={test_size} must be in (0, 1) as a fraction")
            n_test = math.ceil(float(test_size) * n)
        if not 0 < n_test < n:
            raise DataError(
                f"split() would put {n_test} of {n} rows in the test part; choose test_size "
                "so both parts are non-empty"
            )
        if stratify:
            test_idx = stratified_indices(self.labels, n_test, seed)
        else:
            rng = np.random.default_rng(seed)
            test_idx = np.sort(rng.choice(n, size=n_test, replace=False))
        train_mask = np.ones(n, dtype=bool)
        train_mask[test_idx] = False
        return self.subset(np.flatnonzero(train_mask)), self.subset(test_idx)

    def kfold(
        self, k: int = 5, seed: int = 0, groups: str | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Stratified k-fold row indices.

        Args:
            k: Number of folds, ``2 <= k <= len(self)``.
            seed: Shuffling seed.
            groups: Optional metadata column; uses ``StratifiedGroupKFold`` so no group is
                in both the train and test indices of a fold.

        Returns:
            ``k`` pairs ``(train_indices, test_indices)`` of int64 arrays.

        Raises:
            DataError: If ``k`` is out of range or scikit-learn rejects the folds.
        """
        if not 2 <= k <= len(self):
            raise DataError(f"kfold() needs 2 <= k <= {len(self)} (the row count), got k={k}")
        y = self.label_ids
        x = np.zeros(len(self))
        try:
            if groups is None:
                folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, y)
            else:
                splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
                folds = splitter.split(x, y, groups=self._group_values(groups))
            return [(tr.astype(np.int64), te.astype(np.int64)) for tr, te in folds]
        except ValueError as exc:
            raise DataError(
                f"kfold(k={k}) failed on '{self.name}': {exc}; use a smaller k"
            ) from exc

    # ------------------------------------------------------------------ derived views

    def with_labels(
        self, labels: Sequence[str], label_names: Sequence[str] | None = None
    ) -> EmotionDataset:
        """Return a copy with other labels (e.g. a control task), keeping texts and ids.

        Args:
            labels: One new label per row.
            label_names: Canonical order of the new labels; defaults to the sorted unique
                labels.

        Returns:
            A new dataset.
        """
        labels = tuple(str(x) for x in labels)
        names = tuple(label_names) if label_names is not None else tuple(sorted(set(labels)))
        return dataclasses.replace(
            self, labels=labels, label_names=names, metadata=self.metadata.copy()
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per item: ``id``, ``text``, ``label``, the appraisals, then the metadata."""
        frame = pd.DataFrame({"id": self.ids, "text": self.texts, "label": self.labels})
        if self.appraisals is not None:
            for j, col in enumerate(self.appraisal_names):
                frame[col] = self.appraisals[:, j]
        return pd.concat([frame, self.metadata.reset_index(drop=True)], axis=1)

    def fingerprint(self) -> str:
        """SHA-256 hex digest of ids, texts, labels, label names and appraisals.

        The digest is stable across runs, processes and platforms (length-prefixed UTF-8
        strings, little-endian float32 ratings). ``name``, ``source`` and ``metadata`` are
        not included.
        """
        h = hashlib.sha256()

        def put_strings(tag: str, values: Sequence[str]) -> None:
            h.update(f"{tag}:{len(values)}\n".encode())
            for v in values:
                b = v.encode("utf-8")
                h.update(len(b).to_bytes(8, "little"))
                h.update(b)

        put_strings("ids", self.ids)
        put_strings("texts", self.texts)
        put_strings("labels", self.labels)
        put_strings("label_names", self.label_names)
        put_strings("appraisal_names", self.appraisal_names)
        if self.appraisals is None:
            h.update(b"appraisals:none")
        else:
            h.update(f"appraisals:{self.appraisals.shape}".encode())
            h.update(np.ascontiguousarray(self.appraisals, dtype="<f4").tobytes())
        return h.hexdigest()
