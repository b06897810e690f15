"""Emotion promotion: steering with emotion-probe weights, scored on the readout.

**Emotion promotion** (Tak et al.'s other intervention): ``h <- h + beta * w_e`` with ``w_e``
the raw-space weight of emotion ``e`` in the logistic emotion probe (unnormalised, as in the
paper). :func:`emotion_promotion` reports, per emotion, layer and beta,

* ``success_rate``: the share of texts not already predicted as ``e`` whose readout becomes
  ``e``;
* ``delta_p``: the normalised change of ``e``'s readout probability (renormalised over the
  labels), ``(p' - p) / (1 - p)`` where it rises (the share of the possible gain achieved) and
  ``(p' - p) / p`` where it falls, averaged over texts; it lies in ``[-1, 1]``.

This is our definition, written out because the exact normalisation of the paper's promotion
score could not be checked against its text offline.

**Controls.** Random Gaussian directions with the norm of ``w_e``, seeded per (seed, layer)
(:func:`lens_emotion.steering.vectors.random_direction`), steered with the same ``beta``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from jaxtyping import Float

from lens_emotion.interventions import HookFn, readout_many, steering_hooks
from lens_emotion.io import write_text_atomic
from lens_emotion.models import EmotionModel
from lens_emotion.prompts import PromptSet
from lens_emotion.stats import bootstrap_mean_ci
from lens_emotion.steering.sweeps import renormalised_probs
from lens_emotion.steering.vectors import SteeringError, layer_window, random_direction

if TYPE_CHECKING:
    from lens_emotion.probing import EmotionProbeResult

__all__ = ["PROMOTION_COLUMNS", "PromotionResult", "emotion_promotion", "promotion_vector"]


def promotion_vector(
    emotion_result: EmotionProbeResult, site: str, layer: int, emotion: str
) -> Float[np.ndarray, " d"]:
    """Raw-space weight ``w_e`` of one emotion in the logistic emotion probe.

    Raises:
        SteeringError: No directions at that site/layer, or an unknown emotion.
    """
    key = (site, int(layer))
    if key not in emotion_result.directions:
        raise SteeringError(
            f"no emotion-probe directions at {site} layer {layer}; run probe_emotions(...) "
            "with model='logreg' on that layer."
        )
    labels = list(emotion_result.label_names)
    if emotion not in labels:
        raise SteeringError(f"emotion {emotion!r} is not a probe class; classes: {labels}.")
    return np.asarray(emotion_result.directions[key][labels.index(emotion)], dtype=np.float64)


#: Columns of :attr:`PromotionResult.table`.
PROMOTION_COLUMNS: tuple[str, ...] = (
    "emotion",
    "layer",
    "beta",
    "control",
    "success_rate",
    "delta_p",
    "delta_p_ci_low",
    "delta_p_ci_high",
    "p_clean",
    "p_steered",
    "n_eligible",
    "n",
)


@dataclass(frozen=True, eq=False)
class PromotionResult:
    """Emotion promotion scores (see the module docstring for the definitions).

    Attributes:
        table: Columns :data:`PROMOTION_COLUMNS`; ``control=True`` rows use random
            directions with the norm of ``w_e`` (mean over control seeds).
        params: Site, span, scale, positions, seeds.
    """

    table: pd.DataFrame
    params: dict[str, Any]

    def to_frame(self) -> pd.DataFrame:
        """:attr:`table` as a new DataFrame."""
        return self.table.copy()

    def save(self, out: str | Path) -> list[Path]:
        """Write :attr:`table` to ``out/promotion.csv``."""
        path = Path(out) / "promotion.csv"
        write_text_atomic(path, self.table.to_csv(index=False))
        return [path]

    def figure(self) -> go.Figure:
        """``delta_p`` against beta per emotion and layer, beside the random control."""
        from lens_emotion.steering.figures import promotion_figure

        return promotion_figure(self.table)

    def summary(self) -> dict[str, Any]:
        """Per emotion, the (layer, beta) cell with the largest ``delta_p`` and its control."""
        best: dict[str, dict[str, Any]] = {}
        steered = self.table[~self.table["control"]]
        control = self.table[self.table["control"]].set_index(["emotion", "layer", "beta"])
        for emotion, rows in steered.groupby("emotion", sort=False):
            if rows["delta_p"].isna().all():
                continue
            row = rows.loc[rows["delta_p"].idxmax()]
            key = (emotion, row["layer"], row["beta"])
            best[str(emotion)] = {
                "layer": int(row["layer"]),
                "beta": float(row["beta"]),
                "delta_p": float(row["delta_p"]),
                "success_rate": float(row["success_rate"]),
                "control_delta_p": float(control.loc[key, "delta_p"])
                if key in control.index
                else None,
            }
        return {"n": int(self.table["n"].max()) if len(self.table) else 0, "best": best}


def _normalised_gain(
    p_clean: Float[np.ndarray, " n"], p_new: Float[np.ndarray, " n"]
) -> Float[np.ndarray, " n"]:
    up = (p_new - p_clean) / np.clip(1.0 - p_clean, 1e-12, None)
    down = (p_new - p_clean) / np.clip(p_clean, 1e-12, None)
    return np.where(p_new >= p_clean, up, down)


def emotion_promotion(
    model: EmotionModel,
    prompt_set: PromptSet,
    emotion_result: EmotionProbeResult,
    emotions: Sequence[str],
    layers: Sequence[int],
    betas: Sequence[float] = (1.0,),
    site: str = "resid_post",
    span: int = 1,
    n_controls: int = 3,
    seed: int = 0,
    positions: Literal["last", "all"] = "last",
    batch_size: int = 16,
    n_boot: int = 1000,
    progress: bool = True,
) -> PromotionResult:
    """Tak et al.'s emotion promotion ``h <- h + beta * w_e``, scored on the readout.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        prompt_set: Inference prompts.
        emotion_result: :func:`lens_emotion.probing.probe_emotions` result with directions at
            ``site`` for every layer of every window.
        emotions: Emotions to promote (probe classes that are also prompt labels).
        layers: Centre layers.
        betas: Multiples of ``w_e`` (1.0 adds the probe weight itself, as the paper does).
        site: Hooked site (where the probes were fitted).
        span: Window width (odd; the paper used 3).
        n_controls: Random same-norm directions per (emotion, layer).
        seed: First control seed.
        positions: ``"last"`` (the paper) or ``"all"``.
        batch_size: Prompts per forward pass.
        n_boot: Bootstrap resamples for the ``delta_p`` CI.
        progress: Show a progress bar.

    Returns:
        The :class:`PromotionResult`.
    """
    labels = list(prompt_set.label_tokens.labels)
    for e in emotions:
        if e not in labels:
            raise SteeringError(f"emotion {e!r} is not a prompt label; labels: {labels}.")
    plan: list[tuple[str, int, float, bool, list[tuple[str, HookFn]]]] = []
    for emotion in emotions:
        for layer in layers:
            window = layer_window(int(layer), span)
            vecs = {x: promotion_vector(emotion_result, site, x, emotion) for x in window}
            for beta in betas:
                hooks: list[tuple[str, HookFn]] = []
                for x, v in vecs.items():
                    hooks += steering_hooks(
                        model, v, beta * np.linalg.norm(v), x, site, "none", positions
                    )
                plan.append((emotion, int(layer), float(beta), False, hooks))
                for k in range(n_controls):
                    hooks = []
                    for x, v in vecs.items():
                        r = random_direction(len(v), seed + k, x)
                        hooks += steering_hooks(
                            model, r, beta * np.linalg.norm(v), x, site, "none", positions
                        )
                    plan.append((emotion, int(layer), float(beta), True, hooks))
    sets = [[]] + [p[4] for p in plan]
    probs = renormalised_probs(
        readout_many(model, prompt_set, sets, batch_size, progress=progress).astype(np.float64)
    )
    clean = probs[0]
    grouped: dict[tuple[str, int, float, bool], list[np.ndarray]] = {}
    for (emotion, layer, beta, control, _), p in zip(plan, probs[1:], strict=True):
        grouped.setdefault((emotion, layer, beta, control), []).append(p)
    records = []
    for (emotion, layer, beta, control), runs in grouped.items():
        j = labels.index(emotion)
        eligible = clean.argmax(-1) != j
        gains = np.stack([_normalised_gain(clean[:, j], p[:, j]) for p in runs]).mean(axis=0)
        success = np.mean(
            [np.mean(p[eligible].argmax(-1) == j) if eligible.any() else np.nan for p in runs]
        )
        mean, low, high = bootstrap_mean_ci(gains, n_boot, seed)
        records.append(
            {
                "emotion": emotion,
                "layer": layer,
                "beta": beta,
                "control": control,
                "success_rate": float(success),
                "delta_p": float(mean),
                "delta_p_ci_low": float(low),
                "delta_p_ci_high": float(high),
                "p_clean": float(clean[:, j].mean()),
                "p_steered": float(np.mean([p[:, j].mean() for p in runs])),
                "n_eligible": int(eligible.sum()),
                "n": int(len(clean)),
            }
        )
    params = {
        "site": site,
        "span": span,
        "positions": positions,
        "n_controls": n_controls,
        "seed": seed,
        "vector": "raw-space logistic probe weight w_e, h <- h + beta * w_e",
        "delta_p": "(p' - p) / (1 - p) if p' >= p else (p' - p) / p, mean over texts",
        "success_rate": "share of texts not predicted as e before whose readout becomes e",
    }
    return PromotionResult(pd.DataFrame(records, columns=list(PROMOTION_COLUMNS)), params)
