"""Source/target pairs for activation patching (Tak et al., step 2).

A pair is two prompts built from two dataset rows with **different human labels**. Patching
copies the source's activations into the target's run; the outcome is read against the two
*clean predictions*.

**Which pairs are kept.** When the clean predictions of source and target coincide, "the
patched run predicts the source's label" and "... the target's label" are the same event and
transfer rates are inflated (on SmolLM2, whose raw readout calls 40% of texts "shame", only a
third of random pairs have different clean predictions). So a pair is kept only if its clean
predictions differ:

* ``agreeing_only=True`` (default, the paper's setting): pairs are drawn among rows whose clean
  prediction equals the human label, so different human labels imply different predictions and
  every drawn pair is kept;
* ``agreeing_only=False``: pairs are drawn among all rows with different human labels, and
  candidates whose clean predictions agree are skipped. ``n_candidates`` (examined) and
  ``n_kept`` say how many were dropped.

**Calibration.** ``calibrate="auto"`` (default) means ``"mean"`` for emotion templates (subtract
each label's mean log-prob over the scored rows, see :func:`lens_emotion.inference.recalibrate`)
and no calibration for the control template. On SmolLM2 the mean-calibrated readout is the
most accurate and the least dominated by one label, which makes the agreeing subset larger
and covers more emotions. The same per-label offset is applied when the patched runs are read
out, so "prediction" means the same thing before and after patching.

**Metric labels.** ``source_label_idx``/``target_label_idx`` are the indices (into
``label_tokens.labels``) of the source's and target's *clean predictions*; the logit
difference used by :mod:`lens_emotion.patching` and :mod:`lens_emotion.attribution` is
``logit[source_label_idx] - logit[target_label_idx]`` at the target's last token. On agreeing
pairs these are also the human labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from jaxtyping import Float, Int

from lens_emotion.errors import LensEmotionError
from lens_emotion.prompts import LabelTokens, PromptTemplate, build_prompts, get_template

if TYPE_CHECKING:
    from lens_emotion.data import EmotionDataset
    from lens_emotion.inference import InferenceResult
    from lens_emotion.models import EmotionModel

__all__ = ["PatchPairs", "PatchingError", "draw_pairs"]

_ENUMERATE_LIMIT = 1500
"""Up to this many eligible rows, all ordered pairs are listed and shuffled."""


class PatchingError(LensEmotionError, ValueError):
    """A patching request cannot be carried out (bad sites, spans, pairs, or too few rows)."""


@dataclass(frozen=True)
class PatchPairs:
    """Reproducible source/target pairs with their clean predictions.

    Attributes:
        source_ids: Dataset id of each pair's source row.
        target_ids: Dataset id of each pair's target row.
        source_tokens: Token ids of the source prompts (unpadded).
        target_tokens: Token ids of the target prompts (unpadded).
        source_prompts: Rendered source prompts.
        target_prompts: Rendered target prompts.
        source_human: Human label of each source.
        target_human: Human label of each target.
        source_prediction: Clean (calibrated) prediction of each source.
        target_prediction: Clean (calibrated) prediction of each target.
        source_label_idx: Index into ``label_tokens.labels`` of the source's clean prediction.
        target_label_idx: Index into ``label_tokens.labels`` of the target's clean prediction.
        label_tokens: Scored label tokens (the readout).
        template: The prompt template.
        calibration: ``None`` or ``"mean"``/``"content-free"``.
        calibration_offset: Per-label offset subtracted from label log-probs before argmax.
        agreeing_only: Whether pairs were drawn from the agreeing subset only.
        seed: Seed of the draw.
        n_rows: Dataset rows scored.
        n_eligible_rows: Rows pairs were drawn from (agreeing rows, or all rows).
        n_candidates: Candidate pairs (different human labels) examined in draw order.
        n_kept: Pairs kept (clean predictions differ); equals ``len(self)``.
        dataset_name: Name of the dataset.
        dataset_sha256: Fingerprint of the dataset the rows came from.
        row_accuracy: Accuracy of the calibrated readout on the scored rows.
    """

    source_ids: tuple[str, ...]
    target_ids: tuple[str, ...]
    source_tokens: tuple[tuple[int, ...], ...] = field(repr=False)
    target_tokens: tuple[tuple[int, ...], ...] = field(repr=False)
    source_prompts: tuple[str, ...] = field(repr=False)
    target_prompts: tuple[str, ...] = field(repr=False)
    source_human: tuple[str, ...] = field(repr=False)
    target_human: tuple[str, ...] = field(repr=False)
    source_prediction: tuple[str, ...] = field(repr=False)
    target_prediction: tuple[str, ...] = field(repr=False)
    source_label_idx: Int[np.ndarray, " n_pairs"] = field(repr=False)
    target_label_idx: Int[np.ndarray, " n_pairs"] = field(repr=False)
    label_tokens: LabelTokens = field(repr=False)
    template: PromptTemplate = field(repr=False)
    calibration: str | None
    calibration_offset: Float[np.ndarray, " n_labels"] = field(repr=False)
    agreeing_only: bool
    seed: int
    n_rows: int
    n_eligible_rows: int
    n_candidates: int
    n_kept: int
    dataset_name: str = ""
    dataset_sha256: str = ""
    row_accuracy: float = float("nan")

    def __len__(self) -> int:
        return len(self.source_ids)

    @property
    def labels(self) -> tuple[str, ...]:
        """Label names, in readout order."""
        return self.label_tokens.labels

    @property
    def label_token_ids(self) -> tuple[int, ...]:
        """Scored token id of each label."""
        return self.label_tokens.token_ids

    @property
    def kept_fraction(self) -> float:
        """Share of examined candidate pairs that were kept."""
        return self.n_kept / self.n_candidates if self.n_candidates else float("nan")

    def subset(self, indices: Sequence[int] | np.ndarray) -> PatchPairs:
        """Return the pairs at ``indices`` (counts describe the original draw)."""
        idx = [int(i) for i in np.asarray(indices).reshape(-1)]

        def take(values: Sequence[Any]) -> tuple[Any, ...]:
            return tuple(values[i] for i in idx)

        return replace(
            self,
            source_ids=take(self.source_ids),
            target_ids=take(self.target_ids),
            source_tokens=take(self.source_tokens),
            target_tokens=take(self.target_tokens),
            source_prompts=take(self.source_prompts),
            target_prompts=take(self.target_prompts),
            source_human=take(self.source_human),
            target_human=take(self.target_human),
            source_prediction=take(self.source_prediction),
            target_prediction=take(self.target_prediction),
            source_label_idx=self.source_label_idx[idx],
            target_label_idx=self.target_label_idx[idx],
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per pair: ids, human labels, clean predictions and prompt lengths."""
        return pd.DataFrame(
            {
                "pair": np.arange(len(self)),
                "source_id": self.source_ids,
                "target_id": self.target_ids,
                "source_human": self.source_human,
                "target_human": self.target_human,
                "source_prediction": self.source_prediction,
                "target_prediction": self.target_prediction,
                "source_tokens": [len(t) for t in self.source_tokens],
                "target_tokens": [len(t) for t in self.target_tokens],
            }
        )

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary for manifests and reports."""
        return {
            "n_pairs": len(self),
            "template": self.template.name,
            "calibration": self.calibration,
            "agreeing_only": self.agreeing_only,
            "seed": self.seed,
            "n_rows": self.n_rows,
            "n_eligible_rows": self.n_eligible_rows,
            "n_candidates": self.n_candidates,
            "n_kept": self.n_kept,
            "kept_fraction": round(self.kept_fraction, 4),
            "row_accuracy": round(float(self.row_accuracy), 4),
            "n_labels": len(self.labels),
            "metric_labels": "clean (calibrated) predictions of source and target",
            "source_predictions": _counts(self.source_prediction),
            "target_predictions": _counts(self.target_prediction),
            "n_unique_rows": len(set(self.source_ids) | set(self.target_ids)),
            "dataset": self.dataset_name,
            "dataset_sha256": self.dataset_sha256,
        }


def _counts(values: Sequence[str]) -> dict[str, int]:
    return {str(k): int(v) for k, v in pd.Series(values).value_counts().items()}


def _resolve_calibration(calibrate: bool | str | None, template: PromptTemplate) -> Any:
    """One meaning of ``"auto"`` everywhere: :func:`lens_emotion.inference.resolve_calibration`."""
    from lens_emotion.inference import resolve_calibration

    if calibrate == "auto" and template.task == "control":
        return False  # the control task is never calibrated, whatever its template is called
    if calibrate == "auto":
        mode = resolve_calibration(template.name, "auto")
        return False if mode == "none" else mode
    return calibrate


def _draw_order(
    rows: np.ndarray, gold: np.ndarray, pred: np.ndarray, n_pairs: int, rng: np.random.Generator
) -> tuple[list[tuple[int, int]], int]:
    """Draw ordered pairs of ``rows`` with different gold labels, in a seeded order.

    Candidates whose predictions agree are skipped until ``n_pairs`` are kept.

    Returns:
        The kept ``(source_row, target_row)`` pairs and how many candidates were examined.
    """
    n = len(rows)
    if n < 2:
        return [], 0
    if n <= _ENUMERATE_LIMIT:
        src, tgt = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        src, tgt = src.reshape(-1), tgt.reshape(-1)
        ok = gold[src] != gold[tgt]
        src, tgt = src[ok], tgt[ok]
        order = rng.permutation(len(src))
        src, tgt = src[order], tgt[order]
        keep = pred[src] != pred[tgt]
        kept_at = np.flatnonzero(keep)[:n_pairs]
        examined = int(kept_at[-1] + 1) if len(kept_at) == n_pairs else len(src)
        return [(int(rows[src[k]]), int(rows[tgt[k]])) for k in kept_at], examined
    seen: set[tuple[int, int]] = set()
    kept: list[tuple[int, int]] = []
    examined = 0
    attempts = 0
    while len(kept) < n_pairs and attempts < 200 * n_pairs:
        a, b = (int(x) for x in rng.integers(0, n, size=2))
        attempts += 1
        if a == b or gold[a] == gold[b] or (a, b) in seen:
            continue
        seen.add((a, b))
        examined += 1
        if pred[a] != pred[b]:
            kept.append((int(rows[a]), int(rows[b])))
    return kept, examined


def draw_pairs(
    model: EmotionModel,
    dataset: EmotionDataset,
    n_pairs: int = 200,
    seed: int = 0,
    template: str | PromptTemplate = "emotion-list",
    agreeing_only: bool = True,
    calibrate: bool | str | None = "auto",
    inference: InferenceResult | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> PatchPairs:
    """Score a dataset, then draw seeded source/target pairs with different human labels.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        dataset: An :class:`~lens_emotion.data.EmotionDataset` (all rows are scored once).
        n_pairs: Pairs wanted. Fewer are returned if the rows do not allow more (the count is
            in ``n_kept``); zero pairs raise.
        seed: Seed of the draw; the same seed, data and model give the same pairs.
        template: Prompt template; ``control-first-word`` gives the control task (its labels
            are the texts' first words; texts it cannot score are dropped, see
            :func:`lens_emotion.inference.control_rows`).
        agreeing_only: Draw among rows whose clean prediction equals the human label (the
            paper); ``False`` draws among all rows and skips pairs whose clean predictions agree.
        calibrate: ``"auto"`` (``"mean"`` for emotion templates, none for the control task),
            ``False``/``None``, ``"mean"`` or ``"content-free"``.
        inference: An :class:`~lens_emotion.inference.InferenceResult` already computed on
            ``dataset`` with ``template`` (it is re-calibrated as asked); skips scoring.
        batch_size: Prompts per forward pass when scoring.
        progress: Show a progress bar.

    Returns:
        The :class:`PatchPairs`.

    Raises:
        PatchingError: ``n_pairs < 1``, an inference result for other rows or another
            template, or no pair can be formed.
    """
    from lens_emotion.inference import control_rows, infer_emotions, recalibrate

    if n_pairs < 1:
        raise PatchingError(f"n_pairs must be at least 1, got {n_pairs}.")
    tmpl = get_template(template)
    dataset = control_rows(model, dataset, tmpl)
    mode = _resolve_calibration(calibrate, tmpl)
    if inference is None:
        inference = infer_emotions(
            model, dataset, tmpl, batch_size=batch_size, calibrate=mode, progress=progress
        )
    else:
        if tuple(inference.ids) != tuple(dataset.ids) or inference.template != tmpl.name:
            raise PatchingError(
                "The inference result was computed on other rows or another template; pass the "
                f"result of infer_emotions(model, dataset, '{tmpl.name}') or leave inference=None."
            )
        inference = recalibrate(inference, mode, model=model, template=tmpl, batch_size=batch_size)
    prompt_set = build_prompts(model, dataset.texts, dataset.labels, inference.label_names, tmpl)
    names = prompt_set.label_tokens.labels
    index = {lab: i for i, lab in enumerate(names)}
    gold = np.array([index[lab] for lab in inference.labels])
    pred = np.array([index[lab] for lab in inference.predictions])
    eligible = np.flatnonzero(gold == pred) if agreeing_only else np.arange(len(dataset))
    rng = np.random.default_rng(seed)
    kept, examined = _draw_order(eligible, gold[eligible], pred[eligible], n_pairs, rng)
    if not kept:
        where = "agreeing rows" if agreeing_only else "rows"
        fix = ", or pass agreeing_only=False (--all-rows)" if agreeing_only else ""
        raise PatchingError(
            f"No source/target pair could be formed from {len(eligible)} {where} of "
            f"{len(dataset)}: two rows with different human labels and different clean "
            f"predictions are needed. Score more rows (a larger dataset or --limit){fix}."
        )
    src = [a for a, _ in kept]
    tgt = [b for _, b in kept]

    def pick(values: Sequence[Any], rows: list[int]) -> tuple[Any, ...]:
        return tuple(values[i] for i in rows)

    return PatchPairs(
        source_ids=pick(dataset.ids, src),
        target_ids=pick(dataset.ids, tgt),
        source_tokens=pick(prompt_set.token_ids, src),
        target_tokens=pick(prompt_set.token_ids, tgt),
        source_prompts=pick(prompt_set.prompts, src),
        target_prompts=pick(prompt_set.prompts, tgt),
        source_human=pick(inference.labels, src),
        target_human=pick(inference.labels, tgt),
        source_prediction=pick(inference.predictions, src),
        target_prediction=pick(inference.predictions, tgt),
        source_label_idx=pred[src].astype(np.int64),
        target_label_idx=pred[tgt].astype(np.int64),
        label_tokens=prompt_set.label_tokens,
        template=tmpl,
        calibration=inference.calibration,
        calibration_offset=np.asarray(inference.calibration_offset, dtype=np.float32),
        agreeing_only=agreeing_only,
        seed=seed,
        n_rows=len(dataset),
        n_eligible_rows=len(eligible),
        n_candidates=examined,
        n_kept=len(kept),
        dataset_name=dataset.name,
        dataset_sha256=dataset.fingerprint(),
        row_accuracy=inference.accuracy,
    )
