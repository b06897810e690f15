"""Causal influence of each sublayer on the final emotion representation.

For a sublayer (attention or MLP of layer ``l``) and an emotion ``e``, the vector
``alpha * sigma * v`` is added to the sublayer's output at the last prompt token, where ``v``
is the emotion direction of the stream that output is added to (``resid_mid`` of layer ``l``
for attention, ``resid_post`` for the MLP) and ``sigma`` is the RMS of that stream at the last
token (mean over the discovery prompts). The influence is

    I = delta_s / (alpha * sigma)

with ``delta_s`` the change of the final emotion score (last layer ``resid_post`` projected
on its ``v_e``), averaged over prompts that ask for ``e``. For the last layer's MLP, ``v`` is
the readout direction itself, so ``I = 1``: everything is measured in the units of a direct
write along the readout.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from lens_emotion.circuits.capture import LastTokenActivations
from lens_emotion.circuits.directions import EmotionDirections
from lens_emotion.circuits.edits import ComponentEdit
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.circuits.scoring import LastTokenScorer

__all__ = ["SUBLAYER_STREAM", "influence_matrix", "residual_rms", "sublayer_influence"]

#: The residual site each sublayer writes into (where its direction and RMS are read).
SUBLAYER_STREAM: dict[str, str] = {"attn_out": "resid_mid", "mlp_out": "resid_post"}


def residual_rms(acts: LastTokenActivations) -> dict[str, Float[Tensor, " layer"]]:
    """Mean over prompts of the RMS of the residual stream per layer, for both streams."""
    return {
        site: acts.site(site).double().pow(2).mean(-1).sqrt().mean(0).float()
        for site in ("resid_mid", "resid_post")
    }


def sublayer_influence(
    scorers: Mapping[str, LastTokenScorer],
    directions: EmotionDirections,
    sigma: Mapping[str, Float[Tensor, " layer"]],
    alpha: float = 1.0,
) -> pd.DataFrame:
    """Influence of every sublayer's output on the final emotion score.

    Args:
        scorers: ``{emotion: scorer}`` over prompts that ask for that emotion.
        directions: Emotion directions (both residual sites).
        sigma: ``{"resid_mid": [layer], "resid_post": [layer]}`` RMS values
            (:func:`residual_rms`).
        alpha: Injection size in RMS units.

    Returns:
        One row per (emotion, layer, sublayer): ``influence`` (mean over prompts),
        ``influence_sd`` (spread over prompts), ``sigma``, ``alpha``, ``n_prompts``.
    """
    if alpha == 0:
        raise CircuitError("alpha must be non-zero (the influence divides by it).")
    readout = directions.final()
    n_layers = directions.n_layers
    rows = []
    for e_index, emotion in enumerate(directions.emotions):
        if emotion not in scorers:
            continue
        edits = [ComponentEdit(label="none")]
        keys = []
        for layer in range(n_layers):
            for sublayer, stream in SUBLAYER_STREAM.items():
                size = float(alpha) * float(sigma[stream][layer])
                vec = directions.vector(emotion, stream, layer) * size
                edits.append(ComponentEdit.injection(sublayer, layer, vec))
                keys.append((layer, sublayer, size))
        projected = scorers[emotion].scores(edits, readout[e_index : e_index + 1])[..., 0]
        delta = (projected[:, 1:] - projected[:, :1]).double()  # [n, sublayer]
        for j, (layer, sublayer, size) in enumerate(keys):
            values = delta[:, j] / size
            rows.append(
                {
                    "emotion": emotion,
                    "layer": layer,
                    "sublayer": "attn" if sublayer == "attn_out" else "mlp",
                    "influence": float(values.mean()),
                    "influence_sd": float(values.std()) if len(values) > 1 else 0.0,
                    "sigma": size / float(alpha),
                    "alpha": float(alpha),
                    "n_prompts": int(values.numel()),
                }
            )
    if not rows:
        raise CircuitError("no scorer matched the directions' emotions; pass {emotion: scorer}.")
    return pd.DataFrame(rows)


def influence_matrix(table: pd.DataFrame, emotion: str) -> Float[Tensor, "layer 2"]:
    """``[layer, (attn, mlp)]`` influence of one emotion from a :func:`sublayer_influence` table."""
    sub = table[table.emotion == emotion]
    if sub.empty:
        raise CircuitError(f"no influence rows for emotion {emotion!r}.")
    pivot = sub.pivot(index="layer", columns="sublayer", values="influence")
    return torch.tensor(pivot[["attn", "mlp"]].to_numpy(dtype="float32"))
