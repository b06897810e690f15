"""Causal validation of the ranked components: ablation and enhancement sweeps with controls.

For each emotion ``e`` and component kind, the top-``k`` heads or neurons for ``e`` (for ``k``
in a sweep such as 1, 2, 4, ...) are zero-ablated, mean-ablated (replaced by their mean over
the discovery prompts of all six instructions, which removes only their emotion-specific part)
or scaled about that mean by a factor (``> 1``: enhancement), at the last prompt token of
prompts that ask for ``e``. The outcome is the **emotion score**, the projection of the last
layer's residual stream on ``v_e``, measured from the mean of the discovery prompts (raw
projections carry a large emotion-independent offset). The control is the same intervention
on ``k`` components drawn uniformly at random (several draws, averaged). Scores use
:class:`~.scoring.LastTokenScorer`, so the whole sweep costs one prefix pass per prompt plus
one-token passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from lens_emotion.circuits.capture import LastTokenActivations
from lens_emotion.circuits.components import ComponentScores
from lens_emotion.circuits.directions import EmotionDirections, complete_groups
from lens_emotion.circuits.edits import INTERVENTIONS, ComponentEdit, ablation_edit
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.circuits.scoring import LastTokenScorer

__all__ = ["ComponentMeans", "ablation_sweep", "default_ks", "random_components"]


def default_ks(n_components: int, largest: int) -> list[int]:
    """Powers of two ``1, 2, 4, ...`` up to ``min(largest, n_components)``."""
    top = min(int(largest), int(n_components))
    if top < 1:
        raise CircuitError(f"the largest k must be at least 1, got {largest}.")
    ks = [1 << i for i in range(top.bit_length()) if (1 << i) <= top]
    return ks if ks[-1] == top else [*ks, top]


@dataclass(frozen=True)
class ComponentMeans:
    """Mean activations of every head and neuron, at the positions they were taken over.

    A mean ablation must write a mean taken over the same positions it edits: last-token
    means for last-position edits (the scorer's sweeps), all-position means for edits at
    every position (generation through :func:`~.generation.plain_weight_edit`). Writing
    last-token means into every position pushes prompt and reply tokens off their
    distribution.

    Attributes:
        head: ``[layer, head, d_head]`` mean ``z``.
        neuron: ``[layer, d_mlp]`` mean ``H``.
        positions: ``"last"`` (means at the last prompt token) or ``"all"`` (means over every
            real position of the prompts).
    """

    head: Float[Tensor, "layer head d_head"]
    neuron: Float[Tensor, "layer d_mlp"]
    positions: str = "last"

    @classmethod
    def from_position_means(cls, acts: LastTokenActivations) -> ComponentMeans:
        """All-position means (``capture_last_token(..., position_means=("z", "mlp_post"))``).

        Raises:
            CircuitError: The activations hold no all-position means of ``z`` and ``mlp_post``.
        """
        means = acts.position_means or {}
        if "z" not in means or "mlp_post" not in means:
            raise CircuitError(
                "these activations have no all-position means of z and mlp_post; capture them "
                "with capture_last_token(..., position_means=('z', 'mlp_post'))."
            )
        return cls(means["z"].float(), means["mlp_post"].float(), positions="all")

    @classmethod
    def from_activations(
        cls,
        acts: LastTokenActivations,
        emotions: Sequence[str | None] | None = None,
        groups: Sequence[str] | None = None,
        emotion_order: Sequence[str] | None = None,
    ) -> ComponentMeans:
        """Last-token means over prompts (balanced over complete groups if groups are given)."""
        z, post = acts.site("z"), acts.site("mlp_post")
        if emotions is None or groups is None or emotion_order is None:
            return cls(z.double().mean(0).float(), post.double().mean(0).float(), "last")
        index = torch.from_numpy(complete_groups(emotions, groups, emotion_order)).reshape(-1)
        return cls(z[index].double().mean(0).float(), post[index].double().mean(0).float(), "last")

    def of(self, kind: str) -> Tensor:
        """The means of one kind."""
        return self.head if kind == "head" else self.neuron


def random_components(
    n_layers: int, n_units: int, k: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """``k`` distinct ``(layer, unit)`` pairs drawn uniformly from all components."""
    flat = rng.choice(n_layers * n_units, size=k, replace=False)
    return [divmod(int(i), n_units) for i in flat]


def ablation_sweep(
    scorers: Mapping[str, LastTokenScorer],
    scores: Mapping[str, ComponentScores],
    directions: EmotionDirections,
    means: ComponentMeans,
    ks: Mapping[str, Sequence[int]],
    interventions: Sequence[str] = INTERVENTIONS,
    scale_factor: float = 2.0,
    n_random: int = 3,
    seed: int = 0,
    center: Float[Tensor, " d_model"] | None = None,
) -> pd.DataFrame:
    """Intervene on top-k and random-k components and read the final emotion score.

    Args:
        scorers: ``{emotion: scorer}`` over prompts that ask for that emotion.
        scores: ``{"head": ..., "neuron": ...}`` component rankings.
        directions: Emotion directions (the readout is the last layer's ``resid_post``).
        means: Mean activations for mean ablation.
        ks: ``{kind: [k, ...]}``.
        interventions: Any of ``"zero"``, ``"mean"``, ``"scale"``.
        scale_factor: Multiplier of ``"scale"``.
        n_random: Random draws per (emotion, kind, k) for the control.
        seed: Seed of the random draws.
        center: Subtracted from the final residual before projecting (the discovery mean,
            so that the score is relative to the average prompt; ``None``: raw projection).

    Returns:
        One row per (emotion, component_type, k, intervention) with ``score`` (mean emotion
        score under the top-k intervention), ``control_score`` (mean over random draws),
        ``control_sd`` (spread of the draws), ``baseline`` (unedited score), ``factor``,
        ``n_prompts``, ``n_random``, ``edit_positions`` (``"last"``) and ``ablation_means``
        (``"last token"``: position-matched to the edit).
    """
    bad = [i for i in interventions if i not in INTERVENTIONS]
    if bad:
        raise CircuitError(f"unknown intervention(s) {bad}; choose from {INTERVENTIONS}.")
    if n_random < 1:
        raise CircuitError(f"n_random must be at least 1, got {n_random}.")
    if means.positions != "last" and set(interventions) - {"zero"}:
        raise CircuitError(
            "the sweep edits the last prompt token, so it needs last-token means "
            "(ComponentMeans.from_activations), not all-position means."
        )
    readout = directions.final()
    rows = []
    for e_index, emotion in enumerate(directions.emotions):
        if emotion not in scorers:
            continue
        rng = np.random.default_rng([seed, e_index])
        edits: list[ComponentEdit] = [ComponentEdit(label="none")]
        keys: list[tuple[str, int, str, str]] = [("none", 0, "none", "top")]
        for kind, kind_scores in scores.items():
            for k in ks.get(kind, ()):
                top = kind_scores.top(emotion, k)
                draws = [
                    random_components(kind_scores.n_layers, kind_scores.n_units, k, rng)
                    for _ in range(n_random)
                ]
                for intervention in interventions:
                    pick = [("top", top)] + [(f"random{r}", d) for r, d in enumerate(draws)]
                    for which, comps in pick:
                        edits.append(
                            ablation_edit(
                                kind, comps, intervention, means.of(kind), factor=scale_factor
                            )
                        )
                        keys.append((kind, k, intervention, which))
        projected = scorers[emotion].scores(edits, readout[e_index : e_index + 1], center)[..., 0]
        per_edit = projected.double().mean(0).numpy()  # mean over prompts
        baseline = float(per_edit[0])
        table = pd.DataFrame(keys, columns=["component_type", "k", "intervention", "which"])
        table["value"] = per_edit
        table = table.iloc[1:]
        for (kind, k, intervention), group in table.groupby(
            ["component_type", "k", "intervention"], sort=False
        ):
            top_value = group.loc[group.which == "top", "value"].iloc[0]
            control = group.loc[group.which != "top", "value"].to_numpy()
            rows.append(
                {
                    "emotion": emotion,
                    "component_type": kind,
                    "k": int(k),
                    "intervention": intervention,
                    "factor": scale_factor if intervention == "scale" else 0.0,
                    "score": float(top_value),
                    "control_score": float(control.mean()),
                    "control_sd": float(control.std(ddof=1)) if len(control) > 1 else 0.0,
                    "baseline": baseline,
                    "n_prompts": scorers[emotion].n,
                    "n_random": len(control),
                    "edit_positions": "last",
                    "ablation_means": "last token" if intervention != "zero" else "none (zero)",
                }
            )
    if not rows:
        raise CircuitError("no scorer matched the directions' emotions; pass {emotion: scorer}.")
    return pd.DataFrame(rows)
