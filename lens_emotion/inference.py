"""Emotion inference from label-token log-probabilities, with optional calibration.

The model reads a prompt (see :mod:`lens_emotion.prompts`) and each candidate label is scored
by the full-vocabulary log-probability of its first token at the answer position. Batches are
length-bucketed and left-padded with an attention mask, and only the last position is
unembedded.

**Calibration** (``calibrate=``):

* ``"content-free"`` (what ``calibrate=True`` means): contextual calibration of Zhao et al.
  (2021). The template is filled with content-free texts (``"N/A"``, ``"[MASK]"``, ``"..."``);
  their mean label distribution ``p_cf`` (renormalised over the labels) is divided out, i.e.
  ``log p(label) - log p_cf(label)`` is maximised. It never looks at the evaluation texts.
* ``"mean"``: subtract each label's mean log-probability over the evaluated texts themselves
  (transductive; undoes a constant per-label bias such as "everything is sadness").
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from sklearn.metrics import confusion_matrix, f1_score
from tqdm.auto import tqdm

from lens_emotion.batching import iter_batches
from lens_emotion.io import write_json_atomic, write_text_atomic
from lens_emotion.prompts import (
    LabelTokens,
    PromptSet,
    PromptTemplate,
    build_prompts,
    first_word_scorable,
    get_template,
)

CONTENT_FREE_TEXTS = ("N/A", "[MASK]", "...")
"""Content-free inputs used by contextual calibration."""


def label_logprobs(
    model: Any,
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


def _normalised(logprobs: np.ndarray) -> np.ndarray:
    """Log-probabilities renormalised over the label set (rows sum to 1 in prob space)."""
    shifted = logprobs - logprobs.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class InferenceResult:
    """Per-sample label scores and predictions, plus metrics.

    Attributes:
        ids: Sample ids, in dataset order.
        labels: Human (gold) label of each sample.
        label_names: Candidate labels, in column order.
        logprobs: Full-vocabulary log-probs of each label's scored token, ``(n, n_labels)``.
        scores: Scores used for the prediction (``logprobs`` minus ``calibration_offset``).
        predictions: Predicted label of each sample.
        template: Template name.
        calibration: ``None``, ``"content-free"`` or ``"mean"``.
        calibration_offset: Per-label offset subtracted from ``logprobs`` (zeros if none).
        label_tokens: Scored tokens of the labels.
        seconds: Wall time of the forward passes.
    """

    ids: tuple[str, ...]
    labels: tuple[str, ...]
    label_names: tuple[str, ...]
    logprobs: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)
    predictions: tuple[str, ...]
    template: str
    calibration: str | None
    calibration_offset: np.ndarray = field(repr=False)
    label_tokens: LabelTokens = field(repr=False)
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def correct(self) -> np.ndarray:
        """Boolean mask: prediction equals the human label."""
        return np.asarray(self.predictions) == np.asarray(self.labels)

    @property
    def accuracy(self) -> float:
        """Fraction of correct predictions."""
        return float(self.correct.mean()) if len(self) else float("nan")

    @property
    def macro_f1(self) -> float:
        """Macro-averaged F1 over the labels that occur as gold labels."""
        present = [lab for lab in self.label_names if lab in set(self.labels)]
        return float(
            f1_score(
                self.labels, self.predictions, labels=present, average="macro", zero_division=0
            )
        )

    @property
    def confusion(self) -> np.ndarray:
        """Confusion matrix, rows = human label, columns = prediction, in ``label_names`` order."""
        return confusion_matrix(self.labels, self.predictions, labels=list(self.label_names))

    @property
    def probabilities(self) -> np.ndarray:
        """Label probabilities renormalised over the label set (uncalibrated)."""
        return np.exp(_normalised(self.logprobs))

    def counts(self) -> dict[str, dict[str, int]]:
        """Per-label counts of human labels, predictions and correct predictions."""
        gold = pd.Series(self.labels).value_counts()
        pred = pd.Series(self.predictions).value_counts()
        hits = pd.Series(np.asarray(self.labels)[self.correct]).value_counts()
        return {
            lab: {
                "human": int(gold.get(lab, 0)),
                "predicted": int(pred.get(lab, 0)),
                "correct": int(hits.get(lab, 0)),
            }
            for lab in self.label_names
        }

    def metrics(self) -> dict[str, Any]:
        """Summary metrics as a JSON-friendly dict."""
        return {
            "n": len(self),
            "template": self.template,
            "calibration": self.calibration,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "label_names": list(self.label_names),
            "per_label": self.counts(),
            "confusion": self.confusion.tolist(),
            "label_tokens": self.label_tokens.describe(),
            "seconds": round(self.seconds, 3),
            "prompts_per_second": round(len(self) / self.seconds, 3) if self.seconds else None,
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per sample: id, label, prediction, correct, and a log-prob column per label."""
        frame = pd.DataFrame(
            {
                "id": self.ids,
                "label": self.labels,
                "prediction": self.predictions,
                "correct": self.correct,
            }
        )
        for j, lab in enumerate(self.label_names):
            frame[f"logprob_{lab}"] = self.logprobs[:, j]
        return frame

    def figure(self, normalize: bool = True) -> Any:
        """Plotly confusion-matrix heatmap (rows = human label, columns = prediction)."""
        from lens_emotion.plots import confusion_figure

        title = (
            f"{self.template} prompt, {self.calibration or 'uncalibrated'}: "
            f"accuracy {self.accuracy:.2f}, macro-F1 {self.macro_f1:.2f} (n={len(self)})"
        )
        return confusion_figure(self.confusion, self.label_names, normalize=normalize, title=title)

    def save(self, out_dir: str | Path, manifest: dict[str, Any] | None = None) -> list[Path]:
        """Write ``predictions.csv`` and ``metrics.json`` (with the manifest) to ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        csv_path = write_text_atomic(out / "predictions.csv", self.to_frame().to_csv(index=False))
        metrics = self.metrics()
        if manifest is not None:
            metrics["manifest"] = manifest
        return [csv_path, write_json_atomic(out / "metrics.json", metrics)]


def _content_free_offset(
    model: Any, template: PromptTemplate, label_names: Sequence[str], batch_size: int
) -> np.ndarray:
    texts = list(CONTENT_FREE_TEXTS)
    prompt_set = build_prompts(model, texts, [label_names[0]] * len(texts), label_names, template)
    logprobs = label_logprobs(model, prompt_set, batch_size, progress=False)
    probs = np.exp(_normalised(logprobs)).mean(axis=0)
    return np.log(probs)


def _calibration_mode(calibrate: bool | str | None) -> str | None:
    """Normalise the ``calibrate`` argument to ``None``, ``"content-free"`` or ``"mean"``."""
    mode = {False: None, None: None, True: "content-free"}.get(calibrate, calibrate)
    if mode not in {None, "content-free", "mean"}:
        raise ValueError(
            f"calibrate must be False, True, 'content-free' or 'mean', not {calibrate!r}."
        )
    return mode


def control_rows(model: Any, dataset: Any, template: str | PromptTemplate) -> Any:
    """The rows a first-word control task can score (all rows for other templates).

    Drops texts whose first word starts with a whitespace-only token on this tokenizer (e.g.
    ``"16th"`` on tokenizers that split digits), with a :class:`DroppedRowsWarning` that says
    how many; :func:`infer_emotions` and :func:`lens_emotion.pairs.draw_pairs` call this for
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
    model: Any,
    dataset: Any,
    template: str | PromptTemplate = "emotion-list",
    batch_size: int = 16,
    calibrate: bool | str = False,
    label_names: Sequence[str] | None = None,
    progress: bool = True,
    engine: str = "plain",
) -> InferenceResult:
    """Ask the model which emotion each text shows.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        dataset: An :class:`~lens_emotion.data.EmotionDataset`.
        template: Template name or object (see :data:`lens_emotion.prompts.TEMPLATES`).
            With ``control-first-word`` the labels are the texts' first words.
        batch_size: Prompts per forward pass.
        calibrate: ``False``; ``True`` or ``"content-free"`` for contextual calibration with
            content-free inputs; ``"mean"`` to subtract each label's mean log-prob over the
            dataset.
        label_names: Candidate labels (default: the dataset's ``label_names``).
        progress: Show a progress bar.
        engine: ``"plain"`` or ``"bridge"``; see :func:`label_logprobs`.

    Returns:
        The :class:`InferenceResult` (predictions, accuracy, macro-F1, confusion matrix).

    Raises:
        ValueError: Empty dataset or unknown calibration mode.
    """
    if len(dataset) == 0:
        raise ValueError("The dataset is empty: nothing to infer.")
    mode = _calibration_mode(calibrate)
    dataset = control_rows(model, dataset, template)
    names = tuple(label_names or dataset.label_names)
    prompt_set = build_prompts(model, dataset.texts, dataset.labels, names, template)
    names = prompt_set.label_tokens.labels
    started = time.perf_counter()
    logprobs = label_logprobs(model, prompt_set, batch_size, progress, engine=engine)
    seconds = time.perf_counter() - started
    gold = tuple(names[t] for t in prompt_set.targets)
    zeros = np.zeros(len(names), dtype=np.float32)
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
    )
    if mode is None:
        return result
    return recalibrate(
        result, mode, model=model, template=prompt_set.template, batch_size=batch_size
    )


def recalibrate(
    result: InferenceResult,
    calibrate: bool | str | None,
    model: Any | None = None,
    template: str | PromptTemplate | None = None,
    batch_size: int = 16,
) -> InferenceResult:
    """Re-score an inference result under another calibration, without re-running the texts.

    Args:
        result: A result from :func:`infer_emotions`.
        calibrate: ``None``/``False`` (raw scores), ``True``/``"content-free"`` or ``"mean"``.
        model: Needed for ``"content-free"`` (three extra short prompts are run).
        template: The template used (default: looked up by ``result.template``).
        batch_size: Batch size for the content-free prompts.

    Returns:
        A new :class:`InferenceResult` with updated scores, predictions and offset.

    Raises:
        ValueError: Unknown mode, or ``"content-free"`` without a model.
    """
    mode = _calibration_mode(calibrate)
    if mode == "content-free":
        if model is None:
            raise ValueError("Content-free calibration runs the model: pass model=.")
        tmpl = get_template(template if template is not None else result.template)
        offset = _content_free_offset(model, tmpl, result.label_names, batch_size)
    elif mode == "mean":
        offset = result.logprobs.mean(axis=0)
    else:
        offset = np.zeros(len(result.label_names), dtype=np.float32)
    scores = result.logprobs - offset
    return replace(
        result,
        scores=scores,
        predictions=tuple(result.label_names[j] for j in scores.argmax(axis=1)),
        calibration=mode,
        calibration_offset=np.asarray(offset, dtype=np.float32),
    )


def agreeing(result: InferenceResult, dataset: Any) -> Any:
    """The paper's filter: the subset of ``dataset`` whose prediction matches the human label.

    Raises:
        ValueError: ``result`` was computed on a different dataset (ids differ).
    """
    if tuple(result.ids) != tuple(dataset.ids):
        raise ValueError(
            "The inference result and the dataset have different ids; run infer_emotions on "
            "this dataset first."
        )
    return dataset.filter(result.correct)
