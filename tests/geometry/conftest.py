"""Planted synthetic emotion data for the geometry tests."""

from __future__ import annotations

import numpy as np
import pytest

from lens_emotion.geometry import HumanRatings

EMOTIONS = (
    "anger", "boredom", "disgust", "fear", "guilt", "joy", "neutral", "pride", "relief",
    "sadness", "shame", "surprise", "trust",
)  # fmt: skip


def planted(
    seed: int = 0,
    n_per: int = 20,
    d: int = 48,
    n_layers: int = 3,
    strength: tuple[float, ...] = (0.0, 1.0, 2.0),
    arousal_strength: float = 0.0,
):
    """Texts whose activations carry ``valence * u`` (+ ``arousal * w``) at each layer.

    Returns ``(acts, labels, ratings, u, w, valence_by_emotion)``.
    """
    rng = np.random.default_rng(seed)
    k = len(EMOTIONS)
    valence = np.linspace(-3, 3, k)
    rng.shuffle(valence)
    arousal = rng.uniform(1, 5, k)
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    w = rng.standard_normal(d)
    w -= (w @ u) * u
    w /= np.linalg.norm(w)
    index = np.repeat(np.arange(k), n_per)
    text_val = valence[index] + rng.normal(0, 0.7, len(index))
    text_aro = arousal[index] + rng.normal(0, 0.5, len(index))
    acts = np.stack(
        [
            s * text_val[:, None] * u
            + arousal_strength * (text_aro - 3)[:, None] * w
            + rng.normal(0, 1, (len(index), d))
            for s in strength[:n_layers]
        ]
    ).astype(np.float32)
    pleas = np.clip(np.round(3 + text_val / 2), 1, 5)
    ratings = HumanRatings(
        emotions=EMOTIONS,
        label_index=index,
        valence=text_val,
        pleasantness=pleas,
        arousal=text_aro,
        appraisals=rng.uniform(1, 5, (len(index), 21)),
        appraisal_names=tuple(f"a{i}" for i in range(21)),
    )
    labels = [EMOTIONS[i] for i in index]
    return {"resid_post": acts}, labels, ratings, u, w, valence


@pytest.fixture
def planted_data():
    return planted()
