"""Emotion inference from label-token log-probabilities, with optional calibration.

The compute module of :mod:`lens_emotion.inference` (its lowest module: the package's error,
:class:`CalibrationError`, lives here); :mod:`.figures` draws its results and :mod:`.workflow`
writes them.

The model reads a prompt (see :mod:`lens_emotion.prompts`) and each candidate label is scored
by the full-vocabulary log-probability of its first token at the answer position. Batches are
length-bucketed and left-padded with an attention mask, and only the last position is
unembedded.

**Calibration** (``calibrate=``):

* ``"none"`` (or ``False``/``None``): raw label log-probabilities.
* ``"content-free"`` (what ``calibrate=True`` means): contextual calibration of Zhao et al.
  (2021). The template is filled with content-free texts (``"N/A"``, ``"[MASK]"``, ``"..."``);
  their mean label distribution ``p_cf`` (renormalised over the labels) is divided out, i.e.
  ``log p(label) - log p_cf(label)`` is maximised. It never looks at the evaluation texts.
* ``"mean"``: subtract each label's mean log-probability over the evaluated texts themselves.
  **The offset is fitted on the rows it scores** (transductive; it undoes a constant per-label
  bias such as "everything is sadness", but every scored row helped choose it).
* ``"mean-heldout"``: the same offset fitted on a seeded random split of the rows (the
  *calibration rows*, ``heldout_fraction`` of them, half by default; :func:`heldout_split`)
  and applied to the other rows, which are the only ones scored: accuracy, macro-F1, the
  confusion matrix and :func:`agreeing` use ``InferenceResult.scored`` rows only, and
  ``predictions.csv`` marks them in its ``scored`` column.
* ``"auto"``: the method :data:`AUTO_CALIBRATION` names for the template (see
  :func:`resolve_calibration`).

Whatever is chosen, :meth:`InferenceResult.metrics` reports the accuracy under every
calibration (``accuracy_by_calibration``), all computed from the same forward pass.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from sklearn.metrics import confusion_matrix, f1_score
from tqdm.auto import tqdm

from lens_emotion.batching import iter_batches
from lens_emotion.errors import LensEmotionError
from lens_emotion.io import write_json_atomic, write_text_atomic
from lens_emotion.prompts import (
    LabelTokens,
    PromptSet,
    PromptTemplate,
    build_prompts,
    first_word_scorable,
    get_template,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from lens_emotion.data import EmotionDataset
    from lens_emotion.models import EmotionModel

__all__ = [
    "AUTO_CALIBRATION",
    "AUTO_CALIBRATION_BY_TASK",
    "CALIBRATION_MODES",
    "CONTENT_FREE_TEXTS",
    "CalibrationError",
    "InferenceError",
    "InferenceResult",
    "agreeing",
    "control_rows",
    "heldout_split",
    "infer_emotions",
    "label_logprobs",
    "recalibrate",
    "resolve_calibration",
]

CONTENT_FREE_TEXTS = ("N/A", "[MASK]", "...")
"""Content-free inputs used by contextual calibration."""

CALIBRATION_MODES: tuple[str, ...] = ("none", "content-free", "mean", "mean-heldout")
"""Calibrations :func:`infer_emotions` and :func:`recalibrate` accept (plus ``"auto"``)."""

#: What ``calibrate="auto"`` picks per template, from BENCHMARKS.md ("Accuracy on
#: crowd-enVENT", SmolLM2-135M-Instruct, 320 texts, one pass per template):
#: ``paper``: none 0.122, content-free 0.250, **mean 0.313** (all 6,600 texts: 0.130, 0.240,
#: 0.303); ``emotion-list``: none 0.169, content-free 0.169, **mean 0.263**. The control task
#: is near ceiling raw (0.91) and is never calibrated. Templates not listed use
#: :data:`AUTO_CALIBRATION_BY_TASK`.
AUTO_CALIBRATION: dict[str, str] = {
    "paper": "mean",
    "emotion-list": "mean",
    "control-first-word": "none",
}

#: Fallback of ``"auto"`` for templates without a measured entry, by template task.
AUTO_CALIBRATION_BY_TASK: dict[str, str] = {"emotion": "mean", "control": "none"}


class InferenceError(LensEmotionError, ValueError):
    """Bad input to emotion inference (the package's base error)."""


class CalibrationError(InferenceError):
    """An unknown calibration, or one that cannot be applied to these rows."""


def resolve_calibration(template_name: str, calibrate: bool | str | None) -> str:
    """The calibration a ``calibrate`` argument means for a template, as a name.

    ``"auto"`` picks :data:`AUTO_CALIBRATION` ``[template_name]`` (the best method measured in
    BENCHMARKS.md for that template: ``"mean"`` for ``paper`` and ``emotion-list``, ``"none"``
    for the control task), else :data:`AUTO_CALIBRATION_BY_TASK` by the template's task.
    Every other value is normalised: ``False``/``None``/``"none"`` -> ``"none"``, ``True`` ->
    ``"content-free"``.

    Args:
        template_name: A template name (see :data:`lens_emotion.prompts.TEMPLATES`).
        calibrate: ``"auto"``, one of :data:`CALIBRATION_MODES`, or a bool/``None``.

    Returns:
        One of :data:`CALIBRATION_MODES`.

    Raises:
        CalibrationError: An unknown calibration.
    """
    if calibrate == "auto":
        if template_name in AUTO_CALIBRATION:
            return AUTO_CALIBRATION[template_name]
        return AUTO_CALIBRATION_BY_TASK.get(get_template(template_name).task, "none")
    mode = _calibration_mode(calibrate)
    return "none" if mode is None else mode


def heldout_split(n: int, fraction: float = 0.5, seed: int = 0) -> Bool[np.ndarray, " n"]:
    """Boolean mask of the calibration rows of ``mean-heldout`` (the rest are scored).

    ``round(fraction * n)`` rows (at least 1, at most ``n - 1``) drawn by a seeded permutation
    (``numpy.random.default_rng(seed)``), so the split is reproducible from ``(n, seed)``.

    Raises:
        CalibrationError: Fewer than 2 rows, or ``fraction`` outside (0, 1).
    """
    if n < 2:
        raise CalibrationError(
            f"mean-heldout calibration needs at least 2 rows, got {n}; use calibrate='mean'."
        )
    if not 0.0 < fraction < 1.0:
        raise CalibrationError(f"heldout_fraction must lie in (0, 1), got {fraction}.")
    k = min(n - 1, max(1, int(round(fraction * n))))
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[:k]] = True
    return mask


def label_logprobs(
    model: EmotionModel,
    prompt_set: PromptSet,
    batch_size: int = 16,
    progress: bool = True,
    desc: str = "inference",
    engine: str = "plain",
) -> Float[np.ndarray, "n n_labels"]:
    """Full-vocabulary log-probabilities of each label's scored token at the answer position.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        prompt_set: Tokenized prompts.
        batch_size: Prompts per forward pass (length-bucketed).
        progress: Show a progress bar.
        desc: Progress-bar label.
        engine: ``"plain"`` (default; no hooks are needed to read label logits, so the plain
            transformers copy of the weights is used, ~25% faster on CPU) or ``"bridge"``
            (the hooked TransformerBridge). They agree to ~1e-5.

    Returns:
        Array of shape ``(len(prompt_set), n_labels)``, rows in the prompt set's order.
    """
    label_ids = torch.tensor(prompt_set.label_tokens.token_ids, device=model.device)
    out = np.zeros((len(prompt_set), len(label_ids)), dtype=np.float32)
    bar = tqdm(total=len(prompt_set), desc=desc, disable=not progress, unit="prompt")
    for indices, tokens in iter_batches(prompt_set.token_ids, batch_size):
        input_ids, mask = model.pad(tokens)
        logits = model.last_logits(input_ids, mask, engine=engine)
        logprobs = torch.log_softmax(logits, dim=-1)[:, label_ids]
        out[indices] = logprobs.cpu().numpy()
        bar.update(len(indices))
    bar.close()
    return out


def _normalised(
    logprobs: Float[np.ndarray, "n n_labels"],
) -> Float[np.ndarray, "n n_labels"]:
    """Log-probabilities renormalised over the label set (rows sum to 1 in prob space)."""
    shifted = logprobs - logprobs.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class InferenceResult:
    """Per-sample label scores and predictions, plus metrics.

    Follows :class:`lens_emotion.results.AnalysisResult`: :attr:`table` (one row per sample,
    as in ``predictions.csv``), :meth:`to_frame`, :meth:`save`, :meth:`figure` (the confusion
    matrix) and :meth:`summary`; :meth:`metrics` is the full ``metrics.json`` content.

    Attributes:
        ids: Sample ids, in dataset order.
        labels: Human (gold) label of each sample.
        label_names: Candidate labels, in column order.
        logprobs: Full-vocabulary log-probs of each label's scored token, ``(n, n_labels)``.
        scores: Scores used for the prediction (``logprobs`` minus ``calibration_offset``).
        predictions: Predicted label of each sample.
        template: Template name.
        calibration: ``None``, ``"content-free"``, ``"mean"`` or ``"mean-heldout"``.
        calibration_offset: Per-label offset subtracted from ``logprobs`` (zeros if none).
        label_tokens: Scored tokens of the labels.
        seconds: Wall time of the forward passes.
        scored: Rows that are scored (``None``: all). Under ``"mean-heldout"`` the calibration
            rows are excluded: metrics, :attr:`correct` and :func:`agreeing` use scored rows.
        content_free_offset: The content-free offset, if it was computed (lets
            :meth:`metrics` report content-free accuracy without the model).
        calibration_seed: Seed of the ``mean-heldout`` split.
        heldout_fraction: Share of rows the ``mean-heldout`` offset is fitted on.
    """

    ids: tuple[str, ...]
    labels: tuple[str, ...]
    label_names: tuple[str, ...]
    logprobs: Float[np.ndarray, "n n_labels"] = field(repr=False)
    scores: Float[np.ndarray, "n n_labels"] = field(repr=False)
    predictions: tuple[str, ...]
    template: str
    calibration: str | None
    calibration_offset: Float[np.ndarray, " n_labels"] = field(repr=False)
    label_tokens: LabelTokens = field(repr=False)
    seconds: float = 0.0
    scored: Bool[np.ndarray, " n"] | None = field(default=None, repr=False)
    content_free_offset: Float[np.ndarray, " n_labels"] | None = field(default=None, repr=False)
    calibration_seed: int = 0
    heldout_fraction: float = 0.5

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def scored_mask(self) -> Bool[np.ndarray, " n"]:
        """Boolean mask of the scored rows (all rows unless ``mean-heldout``)."""
        if self.scored is None:
            return np.ones(len(self), dtype=bool)
        return np.asarray(self.scored, dtype=bool)

    @property
    def n_scored(self) -> int:
        """Number of scored rows."""
        return int(self.scored_mask.sum())

    @property
    def correct(self) -> Bool[np.ndarray, " n"]:
        """Boolean mask over all rows: scored, and the prediction equals the human label."""
        return (np.asarray(self.predictions) == np.asarray(self.labels)) & self.scored_mask

    @property
    def accuracy(self) -> float:
        """Fraction of correct predictions among the scored rows."""
        mask = self.scored_mask
        return float(self.correct[mask].mean()) if mask.any() else float("nan")

    def _scored_pairs(self) -> tuple[list[str], list[str]]:
        mask = self.scored_mask
        gold = [lab for lab, m in zip(self.labels, mask, strict=True) if m]
        pred = [lab for lab, m in zip(self.predictions, mask, strict=True) if m]
        return gold, pred

    @property
    def macro_f1(self) -> float:
        """Macro-averaged F1 (scored rows) over the labels that occur as gold labels."""
        gold, pred = self._scored_pairs()
        return _macro_f1(gold, pred, self.label_names)

    @property
    def confusion(self) -> Int[np.ndarray, "n_labels n_labels"]:
        """Confusion matrix of the scored rows, rows = human label, columns = prediction."""
        gold, pred = self._scored_pairs()
        return confusion_matrix(gold, pred, labels=list(self.label_names))

    @property
    def probabilities(self) -> Float[np.ndarray, "n n_labels"]:
        """Label probabilities renormalised over the label set (uncalibrated)."""
        return np.exp(_normalised(self.logprobs))

    def counts(self) -> dict[str, dict[str, int]]:
        """Per-label counts of human labels, predictions and correct predictions (scored)."""
        gold_rows, pred_rows = self._scored_pairs()
        gold = pd.Series(gold_rows, dtype=object).value_counts()
        pred = pd.Series(pred_rows, dtype=object).value_counts()
        hits = pd.Series(np.asarray(self.labels)[self.correct], dtype=object).value_counts()
        return {
            lab: {
                "human": int(gold.get(lab, 0)),
                "predicted": int(pred.get(lab, 0)),
                "correct": int(hits.get(lab, 0)),
            }
            for lab in self.label_names
        }

    def calibration_table(self) -> dict[str, dict[str, Any] | None]:
        """Accuracy and macro-F1 under every calibration, from this result's log-probs.

        ``"content-free"`` is ``None`` unless its offset was computed (``infer_emotions``
        computes it by default). ``"mean-heldout"`` scores the rows outside its calibration
        split (``calibration_seed``, ``heldout_fraction``) and also gives the raw and ``mean``
        accuracy on those same rows, for a like-for-like comparison.
        """
        gold = np.asarray(self.labels)
        names = np.asarray(self.label_names)
        n = len(self)

        def score(offset: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
            pred = names[(self.logprobs[rows] - offset).argmax(axis=1)]
            return {
                "accuracy": float(np.mean(pred == gold[rows])) if rows.any() else float("nan"),
                "macro_f1": _macro_f1(list(gold[rows]), list(pred), self.label_names),
                "n_scored": int(rows.sum()),
            }

        everything = np.ones(n, dtype=bool)
        zeros = np.zeros(len(names))
        table: dict[str, dict[str, Any]] = {
            "none": {**score(zeros, everything), "fitted_on": None},
            "content-free": None
            if self.content_free_offset is None
            else {
                **score(np.asarray(self.content_free_offset), everything),
                "fitted_on": f"content-free inputs {list(CONTENT_FREE_TEXTS)}",
            },
            "mean": {
                **score(self.logprobs.mean(axis=0), everything),
                "fitted_on": "the scored rows themselves (transductive)",
            },
        }
        if n >= 2:
            cal = heldout_split(n, self.heldout_fraction, self.calibration_seed)
            rest = ~cal
            table["mean-heldout"] = {
                **score(self.logprobs[cal].mean(axis=0), rest),
                "fitted_on": f"{int(cal.sum())} held-out calibration rows (seed "
                f"{self.calibration_seed}), disjoint from the scored rows",
                "accuracy_none_same_rows": score(zeros, rest)["accuracy"],
                "accuracy_mean_same_rows": score(self.logprobs.mean(axis=0), rest)["accuracy"],
            }
        else:
            table["mean-heldout"] = None
        return table

    def metrics(self) -> dict[str, Any]:
        """Summary metrics as a JSON-friendly dict.

        ``accuracy``/``macro_f1`` are those of the calibration used (``calibration``, on the
        ``n_scored`` scored rows); ``accuracy_by_calibration`` gives every calibration's
        accuracy from the same forward pass and ``calibrations`` the details, including
        which rows each offset was fitted on.
        """
        table = self.calibration_table()
        return {
            "n": len(self),
            "n_scored": self.n_scored,
            "template": self.template,
            "calibration": self.calibration,
            "calibration_rows": _calibration_rows_note(self),
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "accuracy_by_calibration": _accuracy_by_calibration(table),
            "calibrations": table,
            "label_names": list(self.label_names),
            "per_label": self.counts(),
            "confusion": self.confusion.tolist(),
            "label_tokens": self.label_tokens.describe(),
            "seconds": round(self.seconds, 3),
            "prompts_per_second": round(len(self) / self.seconds, 3) if self.seconds else None,
        }

    @property
    def table(self) -> pd.DataFrame:
        """One row per sample, as in ``predictions.csv`` (built afresh on each access).

        Columns: id, label, prediction, correct, scored, and ``logprob_<label>`` per label.
        """
        frame = pd.DataFrame(
            {
                "id": self.ids,
                "label": self.labels,
                "prediction": self.predictions,
                "correct": self.correct,
                "scored": self.scored_mask,
            }
        )
        for j, lab in enumerate(self.label_names):
            frame[f"logprob_{lab}"] = self.logprobs[:, j]
        return frame

    def to_frame(self) -> pd.DataFrame:
        """:attr:`table` as a new DataFrame the caller may edit."""
        return self.table

    def summary(self) -> dict[str, Any]:
        """Headline numbers, JSON-ready (the CLI prints them).

        Sizes, template, calibration, accuracy, macro-F1, every calibration's accuracy from the
        same pass (``None`` where one does not apply) and the throughput (``None`` if no time
        was measured).
        """
        by = self.calibration_table()
        return {
            "n": len(self),
            "n_scored": self.n_scored,
            "template": self.template,
            "calibration": self.calibration,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "accuracy_by_calibration": _accuracy_by_calibration(by),
            "prompts_per_second": len(self) / self.seconds if self.seconds else None,
        }

    def figure(self, normalize: bool = True) -> go.Figure:
        """Confusion-matrix heatmap (rows = human label, columns = prediction).

        See :func:`lens_emotion.inference.figures.confusion_matrix_figure`.
        """
        from lens_emotion.inference.figures import confusion_matrix_figure

        return confusion_matrix_figure(self, normalize=normalize)

    def save(self, out: str | Path, manifest: dict[str, Any] | None = None) -> list[Path]:
        """Write ``predictions.csv`` and ``metrics.json`` to the folder ``out``.

        Args:
            out: Output folder (created).
            manifest: Stored in ``metrics.json`` under ``"manifest"``, if given.

        Returns:
            The two paths.
        """
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        csv_path = write_text_atomic(folder / "predictions.csv", self.table.to_csv(index=False))
        metrics = self.metrics()
        if manifest is not None:
            metrics["manifest"] = manifest
        return [csv_path, write_json_atomic(folder / "metrics.json", metrics)]


def _accuracy_by_calibration(table: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """``{calibration: accuracy}`` of a :meth:`InferenceResult.calibration_table`."""
    return {k: (None if v is None else v["accuracy"]) for k, v in table.items()}


def _macro_f1(gold: Sequence[str], pred: Sequence[str], label_names: Sequence[str]) -> float:
    present = [lab for lab in label_names if lab in set(gold)]
    if not present:
        return float("nan")
    return float(f1_score(gold, pred, labels=present, average="macro", zero_division=0))


def _calibration_rows_note(result: InferenceResult) -> str:
    if result.calibration == "mean":
        return "mean offset fitted on the rows it scores (all rows; transductive)"
    if result.calibration == "mean-heldout":
        return (
            f"mean offset fitted on {len(result) - result.n_scored} held-out calibration rows "
            f"(seed {result.calibration_seed}); the other {result.n_scored} rows are scored"
        )
    if result.calibration == "content-free":
        return "offset from content-free inputs; every row scored"
    return "no calibration; every row scored"


def _content_free_offset(
    model: EmotionModel, template: PromptTemplate, label_names: Sequence[str], batch_size: int
) -> Float[np.ndarray, " n_labels"]:
    texts = list(CONTENT_FREE_TEXTS)
    prompt_set = build_prompts(model, texts, [label_names[0]] * len(texts), label_names, template)
    logprobs = label_logprobs(model, prompt_set, batch_size, progress=False)
    probs = np.exp(_normalised(logprobs)).mean(axis=0)
    return np.log(probs)


def _calibration_mode(calibrate: bool | str | None, template: Any = None) -> str | None:
    """Normalise ``calibrate`` to ``None``, ``"content-free"``, ``"mean"`` or ``"mean-heldout"``.

    ``"auto"`` needs ``template`` (a name or :class:`PromptTemplate`).
    """
    if calibrate == "auto":
        if template is None:
            raise CalibrationError("calibrate='auto' needs the template to choose a method.")
        name = template.name if isinstance(template, PromptTemplate) else str(template)
        calibrate = resolve_calibration(name, "auto")
    if isinstance(calibrate, bool) or calibrate is None:
        return "content-free" if calibrate else None
    if calibrate == "none":
        return None
    if calibrate not in CALIBRATION_MODES:
        raise CalibrationError(
            f"calibrate must be one of auto, {', '.join(CALIBRATION_MODES)} (or True/False), "
            f"not {calibrate!r}."
        )
    return calibrate


def control_rows(
    model: EmotionModel, dataset: EmotionDataset, template: str | PromptTemplate
) -> EmotionDataset:
    """The rows a first-word control task can score (all rows for other templates).

    Drops texts whose first word starts with a whitespace-only token on this tokenizer (e.g.
    ``"16th"`` on tokenizers that split digits), with a :class:`DroppedRowsWarning` that says
    how many; :func:`infer_emotions` and :func:`lens_emotion.patching.draw_pairs` call this for
    the control template, so both see the same rows.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        dataset: An :class:`~lens_emotion.data.EmotionDataset`.
        template: The template (only ``task == "control"`` templates filter).

    Returns:
        ``dataset`` itself, or the subset of scorable rows.

    Raises:
        LabelTokenError: No row can be scored.
    """
    from lens_emotion.data.dataset import DroppedRowsWarning
    from lens_emotion.errors import LabelTokenError

    tmpl = get_template(template)
    if tmpl.task != "control" or len(dataset) == 0:
        return dataset
    keep = np.array(first_word_scorable(dataset.texts, model.tokenizer, tmpl.label_prefix))
    if keep.all():
        return dataset
    dropped = [dataset.texts[i].split()[0] for i in np.flatnonzero(~keep)]
    if not keep.any():
        raise LabelTokenError(
            f"No text can be scored by the control task '{tmpl.name}': every first word starts "
            f"with a whitespace-only token on this tokenizer (e.g. {dropped[0]!r})."
        )
    warnings.warn(
        f"control task '{tmpl.name}': dropped {len(dropped)} of {len(dataset)} texts whose "
        f"first word starts with a whitespace-only token on this tokenizer (e.g. "
        f"{', '.join(repr(w) for w in dropped[:3])}); first-token scoring cannot tell them apart.",
        DroppedRowsWarning,
        stacklevel=2,
    )
    return dataset.filter(keep)


def infer_emotions(
    model: EmotionModel,
    dataset: EmotionDataset,
    template: str | PromptTemplate = "emotion-list",
    batch_size: int = 16,
    calibrate: bool | str = False,
    label_names: Sequence[str] | None = None,
    progress: bool = True,
    engine: str = "plain",
    seed: int = 0,
    heldout_fraction: float = 0.5,
    compare_calibrations: bool = True,
) -> InferenceResult:
    """Ask the model which emotion each text shows.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        dataset: An :class:`~lens_emotion.data.EmotionDataset`.
        template: Template name or object (see :data:`lens_emotion.prompts.TEMPLATES`).
            With ``control-first-word`` the labels are the texts' first words.
        batch_size: Prompts per forward pass.
        calibrate: ``False``/``"none"``; ``True`` or ``"content-free"`` for contextual
            calibration with content-free inputs; ``"mean"`` to subtract each label's mean
            log-prob over the dataset (fitted on the rows it scores); ``"mean-heldout"`` to fit
            that offset on a seeded held-out split and score the other rows; ``"auto"`` for
            :func:`resolve_calibration`'s choice. See the module docstring.
        label_names: Candidate labels (default: the dataset's ``label_names``).
        progress: Show a progress bar.
        engine: ``"plain"`` or ``"bridge"``; see :func:`label_logprobs`.
        seed: Seed of the ``mean-heldout`` split (recorded; used by the metrics too).
        heldout_fraction: Share of rows the ``mean-heldout`` offset is fitted on.
        compare_calibrations: Also compute the content-free offset (three short prompts) so
            that :meth:`InferenceResult.metrics` reports every calibration's accuracy (not
            for the control task, whose labels are the texts' own first words).

    Returns:
        The :class:`InferenceResult` (predictions, accuracy, macro-F1, confusion matrix).

    Raises:
        ValueError: Empty dataset; CalibrationError (a ValueError) for an unknown
            calibration mode.
    """
    if len(dataset) == 0:
        raise ValueError("The dataset is empty: nothing to infer.")
    mode = _calibration_mode(calibrate, template)
    dataset = control_rows(model, dataset, template)
    names = tuple(label_names or dataset.label_names)
    prompt_set = build_prompts(model, dataset.texts, dataset.labels, names, template)
    names = prompt_set.label_tokens.labels
    started = time.perf_counter()
    logprobs = label_logprobs(model, prompt_set, batch_size, progress, engine=engine)
    seconds = time.perf_counter() - started
    gold = tuple(names[t] for t in prompt_set.targets)
    zeros = np.zeros(len(names), dtype=np.float32)
    cf_offset = None
    if mode == "content-free" or (compare_calibrations and prompt_set.template.task != "control"):
        cf_offset = _content_free_offset(model, prompt_set.template, names, batch_size)
    result = InferenceResult(
        ids=tuple(dataset.ids),
        labels=gold,
        label_names=names,
        logprobs=logprobs,
        scores=logprobs,
        predictions=tuple(names[j] for j in logprobs.argmax(axis=1)),
        template=prompt_set.template.name,
        calibration=None,
        calibration_offset=zeros,
        label_tokens=prompt_set.label_tokens,
        seconds=seconds,
        content_free_offset=cf_offset,
        calibration_seed=int(seed),
        heldout_fraction=float(heldout_fraction),
    )
    if mode is None:
        return result
    return recalibrate(
        result,
        mode,
        model=model if cf_offset is None else None,
        template=prompt_set.template,
        batch_size=batch_size,
    )


def recalibrate(
    result: InferenceResult,
    calibrate: bool | str | None,
    model: EmotionModel | None = None,
    template: str | PromptTemplate | None = None,
    batch_size: int = 16,
    seed: int | None = None,
    heldout_fraction: float | None = None,
) -> InferenceResult:
    """Re-score an inference result under another calibration, without re-running the texts.

    Args:
        result: A result from :func:`infer_emotions`.
        calibrate: ``None``/``False``/``"none"`` (raw scores), ``True``/``"content-free"``,
            ``"mean"``, ``"mean-heldout"`` or ``"auto"``.
        model: Needed for ``"content-free"`` unless the result already holds the offset
            (three extra short prompts are run).
        template: The template used (default: looked up by ``result.template``).
        batch_size: Batch size for the content-free prompts.
        seed: Seed of the ``mean-heldout`` split (default: ``result.calibration_seed``).
        heldout_fraction: Share of calibration rows (default: ``result.heldout_fraction``).

    Returns:
        A new :class:`InferenceResult` with updated scores, predictions, offset and scored
        rows.

    Raises:
        CalibrationError: Unknown mode, ``"content-free"`` without a model or stored offset,
            or ``"mean-heldout"`` on fewer than 2 rows.
    """
    mode = _calibration_mode(calibrate, template if template is not None else result.template)
    seed = result.calibration_seed if seed is None else int(seed)
    fraction = result.heldout_fraction if heldout_fraction is None else float(heldout_fraction)
    scored = None
    cf_offset = result.content_free_offset
    if mode == "content-free":
        if model is not None:
            tmpl = get_template(template if template is not None else result.template)
            cf_offset = _content_free_offset(model, tmpl, result.label_names, batch_size)
        elif cf_offset is None:
            raise CalibrationError("Content-free calibration runs the model: pass model=.")
        offset = cf_offset
    elif mode == "mean":
        offset = result.logprobs.mean(axis=0)
    elif mode == "mean-heldout":
        cal = heldout_split(len(result), fraction, seed)
        offset = result.logprobs[cal].mean(axis=0)
        scored = ~cal
    else:
        offset = np.zeros(len(result.label_names), dtype=np.float32)
    scores = result.logprobs - offset
    return replace(
        result,
        scores=scores,
        predictions=tuple(result.label_names[j] for j in scores.argmax(axis=1)),
        calibration=mode,
        calibration_offset=np.asarray(offset, dtype=np.float32),
        scored=scored,
        content_free_offset=cf_offset,
        calibration_seed=seed,
        heldout_fraction=fraction,
    )


def agreeing(result: InferenceResult, dataset: EmotionDataset) -> EmotionDataset:
    """The paper's filter: the subset of ``dataset`` whose prediction matches the human label.

    Only scored rows count (under ``mean-heldout`` the calibration rows are never kept).

    Raises:
        ValueError: ``result`` was computed on a different dataset (ids differ).
    """
    if tuple(result.ids) != tuple(dataset.ids):
        raise ValueError(
            "The inference result and the dataset have different ids; run infer_emotions on "
            "this dataset first."
        )
    return dataset.filter(result.correct)
