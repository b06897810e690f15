"""Total effect of single components on the final emotion score, against their direct score.

The component ranking of :mod:`.components` is a *direct* quantity: what a head or neuron
writes along its own layer's ``v_e``. The decomposition-vs-zero-ablation check of
:func:`~.components.head_ablation_effects` confirms only an algebraic identity (zeroing ``z_h``
removes exactly ``z_h W_O[h]`` from that layer's attention output), so it says nothing about
what the component *causes* downstream.

:func:`total_effects` measures that: each candidate component is mean-ablated on its own at the
last prompt token (``a := mean`` with last-token means, on the distribution), the pass runs
through every later layer, and the change of the final-layer emotion score (``resid_post`` of
the last layer projected on its ``v_e``) is recorded:

    total effect = score(unedited) - score(component ablated)

(positive: the component supports the emotion's final representation). All edits of one
emotion are scored in one :class:`~.scoring.LastTokenScorer` call (cached prefixes, one-token
passes). :func:`total_effect_summary` then compares the two rankings per emotion and kind: the
Spearman correlation between direct score and total effect over the measured components, and
how many of the direct top-``n`` are also in the total-effect top-``n``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from jaxtyping import Float
from torch import Tensor

from lens_emotion.circuits.ablation import ComponentMeans
from lens_emotion.circuits.components import ComponentScores
from lens_emotion.circuits.directions import EmotionDirections
from lens_emotion.circuits.edits import ComponentEdit, ablation_edit
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.circuits.scoring import LastTokenScorer

__all__ = ["total_effect_summary", "total_effects"]


def _candidates(scores: ComponentScores, emotion: str, k: int | None) -> list[tuple[int, int]]:
    """The direct top-``k`` of an emotion (``None``: every component, best first)."""
    ranked = scores.ranking(emotion)
    return ranked if k is None else ranked[: int(k)]


def total_effects(
    scorers: Mapping[str, LastTokenScorer],
    scores: Mapping[str, ComponentScores],
    directions: EmotionDirections,
    means: ComponentMeans,
    k: Mapping[str, int | None],
    center: Float[Tensor, " d_model"] | None = None,
) -> pd.DataFrame:
    """Mean-ablate each candidate component alone and read the final-layer emotion score.

    Args:
        scorers: ``{emotion: scorer}`` over prompts that ask for that emotion.
        scores: ``{"head": ..., "neuron": ...}`` direct rankings.
        directions: Emotion directions (the readout is the last layer's ``resid_post``).
        means: Last-token means (:meth:`~.ablation.ComponentMeans.from_activations`).
        k: ``{kind: k}`` candidates per emotion, the direct top-``k`` (``None``: every
            component of that kind, e.g. all heads).
        center: Subtracted from the final residual before projecting (only shifts the
            baseline; effects are differences).

    Returns:
        One row per (emotion, component_type, component): ``layer``, ``unit``,
        ``direct_rank`` (1 = largest direct score among all components of the kind),
        ``direct_score``, ``total_effect`` (mean over prompts of unedited minus ablated
        score), ``total_effect_sd`` (spread over prompts), ``total_rank`` (1 = largest total
        effect among the measured ones), ``baseline``, ``n_prompts``, ``n_components`` (of
        the kind in the model), ``n_measured``,
        ``intervention`` (``"mean"``) and ``positions`` (``"last"``).

    Raises:
        CircuitError: Means not taken at the last token, an unknown kind or no scorer for
            any emotion.
    """
    if means.positions != "last":
        raise CircuitError(
            "total effects edit the last prompt token; pass last-token means "
            "(ComponentMeans.from_activations), not all-position means."
        )
    unknown = [kind for kind in k if kind not in scores]
    if unknown:
        raise CircuitError(f"no scores for kind(s) {unknown}; have {sorted(scores)}.")
    readout = directions.final()
    frames = []
    for e_index, emotion in enumerate(directions.emotions):
        if emotion not in scorers:
            continue
        edits = [ComponentEdit(label="none")]
        keys: list[tuple[str, int, int, int]] = []
        for kind, size in k.items():
            comps = _candidates(scores[kind], emotion, size)
            for rank, (layer, unit) in enumerate(comps, start=1):
                edits.append(ablation_edit(kind, [(layer, unit)], "mean", means.of(kind)))
                keys.append((kind, layer, unit, rank))
        projected = scorers[emotion].scores(edits, readout[e_index : e_index + 1], center)
        values = projected[..., 0].double().numpy()  # [prompt, edit]
        effect = values[:, :1] - values[:, 1:]  # unedited - ablated
        frame = pd.DataFrame(keys, columns=["component_type", "layer", "unit", "direct_rank"])
        frame.insert(0, "emotion", emotion)
        frame["direct_score"] = [
            float(scores[kind].score[e_index, layer, unit]) for kind, layer, unit, _ in keys
        ]
        frame["total_effect"] = effect.mean(0)
        frame["total_effect_sd"] = effect.std(0, ddof=1) if len(effect) > 1 else 0.0
        frame["baseline"] = float(values[:, 0].mean())
        frame["n_prompts"] = scorers[emotion].n
        frame["n_components"] = [scores[kind].n_layers * scores[kind].n_units for kind, *_ in keys]
        frames.append(frame)
    if not frames:
        raise CircuitError("no scorer matched the directions' emotions; pass {emotion: scorer}.")
    out = pd.concat(frames, ignore_index=True)
    group = out.groupby(["emotion", "component_type"], sort=False)
    out["total_rank"] = group["total_effect"].rank(ascending=False, method="first").astype(np.int64)
    out["n_measured"] = group["total_effect"].transform("size").astype(np.int64)
    out["intervention"] = "mean"
    out["positions"] = "last"
    return out


def total_effect_summary(table: pd.DataFrame, top: int = 16) -> pd.DataFrame:
    """Compare direct and total-effect rankings per emotion and kind.

    Args:
        table: A :func:`total_effects` table.
        top: Size of the top sets compared.

    Returns:
        One row per (emotion, component_type): ``n_measured``, ``ranked_among``
        (``"all"`` when every component of the kind was measured, else ``"direct top-k"``),
        ``spearman`` (direct score vs total effect over the measured components),
        ``top`` and ``top_overlap`` (how many of the direct top-``top`` are in the
        total-effect top-``top``), ``share_positive`` (measured components whose ablation
        lowers the score) and ``max_total_effect``.
    """
    rows = []
    for (emotion, kind), part in table.groupby(["emotion", "component_type"], sort=False):
        n = len(part)
        direct_top = set(
            part.nsmallest(min(top, n), "direct_rank")[["layer", "unit"]].itertuples(
                index=False, name=None
            )
        )
        total_top = set(
            part.nsmallest(min(top, n), "total_rank")[["layer", "unit"]].itertuples(
                index=False, name=None
            )
        )
        complete = n == int(part.n_components.iloc[0])
        rows.append(
            {
                "emotion": emotion,
                "component_type": kind,
                "n_measured": n,
                "ranked_among": "all" if complete else f"direct top-{n}",
                "spearman": float(part["direct_score"].corr(part["total_effect"], "spearman"))
                if n > 2
                else float("nan"),
                "top": min(top, n),
                "top_overlap": len(direct_top & total_top),
                "share_positive": float((part.total_effect > 0).mean()),
                "max_total_effect": float(part.total_effect.max()),
            }
        )
    return pd.DataFrame(rows)
