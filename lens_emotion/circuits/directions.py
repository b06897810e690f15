"""Context-agnostic emotion directions (Wang et al. 2025) and how consistent they are.

For every layer and site (``resid_mid``, ``resid_post``) at the last prompt token:

1. within each scenario x valence group, subtract the mean over the 6 instructed emotions
   (this cancels what the scenario and event contribute, leaving the emotion-specific part);
2. average per emotion over the groups;
3. subtract the mean over the emotions;
4. normalise each emotion's vector to unit length.

Only complete groups (all emotions present) are used, so step 1 never mixes contexts. The
directions live in the raw activation space of the model (compatibility mode, folded norms).

**Consistency** is measured two ways (:func:`direction_consistency`): the cosine between the
same emotion's directions computed on disjoint subsets of the contexts (per theme, per
valence), and the held-out accuracy of naming the instructed emotion of an unseen prompt as
``argmax_e (x - mean) . v_e``, on prompts that *name* the emotion (as discovery did) and on
prompts that only *describe* it (no emotion word anywhere: a direction that encodes just the
instruction's word fails there). Centring each held-out scenario x valence group on its own
mean is not reported: within a group the prompts differ only by the emotion word, so that
accuracy is near 1 at every layer (layer 0 included) whatever the directions mean.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from safetensors.torch import load_file, save
from torch import Tensor

from lens_emotion.circuits.capture import LastTokenActivations
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.data import SEV_EMOTIONS
from lens_emotion.io import write_bytes_atomic

__all__ = [
    "DIRECTION_SITES",
    "EmotionDirections",
    "complete_groups",
    "compute_directions",
    "context_agnostic_directions",
    "direction_consistency",
    "projection_accuracy",
]

#: The sites directions are computed at: after attention and after the MLP of each block.
DIRECTION_SITES: tuple[str, ...] = ("resid_mid", "resid_post")


def complete_groups(
    emotions: Sequence[str | None], groups: Sequence[str], emotion_order: Sequence[str]
) -> Int[np.ndarray, "group emotion"]:
    """Index matrix of the groups that hold every emotion exactly once.

    Args:
        emotions: The instructed emotion of each row.
        groups: The scenario x valence group of each row.
        emotion_order: The emotions, in column order.

    Returns:
        ``[n_groups, n_emotions]`` row indices, groups in order of first appearance.

    Raises:
        CircuitError: If no group is complete.
    """
    column = {e: j for j, e in enumerate(emotion_order)}
    table: dict[str, list[int]] = {}
    for row, (emotion, group) in enumerate(zip(emotions, groups, strict=True)):
        if emotion not in column:
            continue
        slots = table.setdefault(group, [-1] * len(column))
        slots[column[emotion]] = row if slots[column[emotion]] == -1 else -2
    full = [slots for slots in table.values() if min(slots) >= 0]
    if not full:
        raise CircuitError(
            "no scenario x valence group holds every emotion exactly once; build the prompts "
            f"with build_sev_prompts(model, items, emotions={tuple(emotion_order)})."
        )
    return np.asarray(full, dtype=np.int64)


def context_agnostic_directions(
    acts: Float[Tensor, "n *shape d"],
    emotions: Sequence[str | None],
    groups: Sequence[str],
    emotion_order: Sequence[str] = SEV_EMOTIONS,
) -> Float[Tensor, "emotion *shape d"]:
    """Group-centre, average per emotion, centre again and normalise (see module docstring).

    Args:
        acts: Activations, one row per prompt; any middle dimensions (e.g. layers) are kept.
        emotions: Instructed emotion of each row (rows of other emotions are ignored).
        groups: Scenario x valence group of each row.
        emotion_order: Emotions, in output order.

    Returns:
        Unit vectors ``[emotion, *shape, d]``.
    """
    if acts.shape[0] != len(emotions) or len(emotions) != len(groups):
        raise CircuitError(
            f"acts has {acts.shape[0]} rows but {len(emotions)} emotions and {len(groups)} "
            "groups were given; pass one of each per row."
        )
    index = torch.from_numpy(complete_groups(emotions, groups, emotion_order))
    x = acts[index].double()  # [group, emotion, *shape, d]
    x = x - x.mean(dim=1, keepdim=True)
    centroids = x.mean(dim=0)
    centroids = centroids - centroids.mean(dim=0, keepdim=True)
    norms = centroids.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return (centroids / norms).float()


@dataclass(frozen=True)
class EmotionDirections:
    """Unit emotion directions per site and layer.

    Attributes:
        emotions: Emotion names, in the order of the emotion axis.
        vectors: ``{site: [layer, emotion, d_model]}``.
        n_groups: Number of complete scenario x valence groups they were computed from.
    """

    emotions: tuple[str, ...]
    vectors: Mapping[str, Float[Tensor, "layer emotion d_model"]]
    n_groups: int = 0

    @property
    def sites(self) -> tuple[str, ...]:
        """The sites held."""
        return tuple(self.vectors)

    @property
    def n_layers(self) -> int:
        """Number of layers."""
        return int(next(iter(self.vectors.values())).shape[0])

    def emotion_index(self, emotion: str) -> int:
        """Position of an emotion on the emotion axis.

        Raises:
            CircuitError: Unknown emotion.
        """
        if emotion not in self.emotions:
            raise CircuitError(f"unknown emotion {emotion!r}; choose from {self.emotions}.")
        return self.emotions.index(emotion)

    def get(self, site: str, layer: int | None = None) -> Tensor:
        """``[layer, emotion, d]`` for a site, or ``[emotion, d]`` at one layer.

        Raises:
            CircuitError: Unknown site or layer.
        """
        if site not in self.vectors:
            raise CircuitError(f"no directions at site {site!r}; available: {self.sites}.")
        value = self.vectors[site]
        if layer is None:
            return value
        if not -value.shape[0] <= layer < value.shape[0]:
            raise CircuitError(f"layer {layer} out of range (0..{value.shape[0] - 1}).")
        return value[layer]

    def vector(self, emotion: str, site: str, layer: int) -> Float[Tensor, " d_model"]:
        """The unit direction of one emotion at one site and layer."""
        return self.get(site, layer)[self.emotion_index(emotion)]

    def final(self) -> Float[Tensor, "emotion d_model"]:
        """The directions at the last layer's ``resid_post`` (the emotion-score readout)."""
        return self.get("resid_post", -1)

    def save(self, path: str | Path) -> Path:
        """Write ``{site}`` tensors ``[layer, emotion, d]`` to a safetensors file, atomically."""
        tensors = {site: v.contiguous().float() for site, v in self.vectors.items()}
        meta = {"emotions": json.dumps(list(self.emotions)), "n_groups": str(self.n_groups)}
        return write_bytes_atomic(path, save(tensors, metadata=meta))

    @classmethod
    def load(cls, path: str | Path) -> EmotionDirections:
        """Read a file written by :meth:`save`.

        Raises:
            CircuitError: The file is missing or lacks the emotion names.
        """
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise CircuitError(f"directions file not found: {path}; write it with .save().")
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        if "emotions" not in meta:
            raise CircuitError(
                f"{path} has no 'emotions' metadata; it was not written by EmotionDirections."
            )
        return cls(
            emotions=tuple(json.loads(meta["emotions"])),
            vectors=load_file(str(path)),
            n_groups=int(meta.get("n_groups", 0)),
        )


def compute_directions(
    acts: LastTokenActivations,
    emotions: Sequence[str | None],
    groups: Sequence[str],
    emotion_order: Sequence[str] = SEV_EMOTIONS,
    sites: Sequence[str] = DIRECTION_SITES,
) -> EmotionDirections:
    """Context-agnostic directions at every layer of each site.

    Args:
        acts: Last-token activations of emotion-conditioned prompts.
        emotions: Instructed emotion of each row.
        groups: Scenario x valence group of each row.
        emotion_order: Emotion order of the result.
        sites: Residual sites to use.

    Returns:
        The directions.
    """
    vectors = {}
    for site in sites:
        per_emotion = context_agnostic_directions(acts.site(site), emotions, groups, emotion_order)
        vectors[site] = per_emotion.transpose(0, 1).contiguous()  # [layer, emotion, d]
    n_groups = len(complete_groups(emotions, groups, emotion_order))
    return EmotionDirections(tuple(emotion_order), vectors, n_groups)


def projection_accuracy(
    acts: Float[Tensor, "n layer d"],
    emotions: Sequence[str],
    directions: Float[Tensor, "layer emotion d"],
    emotion_order: Sequence[str],
    center: Float[Tensor, "layer d"] | None = None,
) -> Float[np.ndarray, " layer"]:
    """Per-layer accuracy of ``argmax_e (x - c) . v_e`` against the instructed emotion.

    Args:
        acts: Held-out activations.
        emotions: Their instructed emotions.
        directions: Unit directions per layer.
        emotion_order: Emotion order of ``directions``.
        center: Subtracted from every row first (e.g. the discovery mean), or ``None``.

    Returns:
        Accuracy per layer.
    """
    x = acts.double()
    if center is not None:
        x = x - center.double()
    scores = torch.einsum("nld,led->nle", x, directions.double())
    predicted = scores.argmax(dim=-1).numpy()
    truth = np.asarray([list(emotion_order).index(e) for e in emotions])
    return (predicted == truth[:, None]).mean(axis=0)


def _mean_pair_cosine(parts: list[Tensor]) -> Float[np.ndarray, " layer"]:
    """Mean over part pairs and emotions of cos(v_e^a, v_e^b); parts are ``[emotion, layer, d]``."""
    sims = [(a * b).sum(-1).mean(0) for a, b in combinations(parts, 2)]  # unit vectors
    return torch.stack(sims).mean(0).double().numpy()


def direction_consistency(
    discovery: LastTokenActivations,
    emotions: Sequence[str],
    groups: Sequence[str],
    themes: Sequence[str],
    valences: Sequence[str],
    directions: EmotionDirections,
    heldout: LastTokenActivations | None = None,
    heldout_emotions: Sequence[str] | None = None,
    described: LastTokenActivations | None = None,
    described_emotions: Sequence[str] | None = None,
    min_groups: int = 3,
) -> pd.DataFrame:
    """How stable the directions are across contexts, per site and layer.

    Args:
        discovery: Last-token activations of the discovery prompts.
        emotions: Their instructed emotions.
        groups: Their scenario x valence groups.
        themes: Their SEV themes.
        valences: Their event valences.
        directions: The directions computed on all of ``discovery``.
        heldout: Activations of held-out prompts that name the emotion (optional).
        heldout_emotions: Their instructed emotions.
        described: Activations of held-out prompts that describe the emotion without naming
            it (``build_sev_prompts(..., instruction="described")``; optional).
        described_emotions: Their described emotions.
        min_groups: A theme joins the cross-theme comparison only with at least this many
            complete groups.

    Returns:
        One row per (site, layer): ``cos_across_themes`` and ``cos_across_valences`` (mean
        cosine of an emotion's direction between directions computed on disjoint themes /
        valences, averaged over pairs and emotions), ``n_themes``, ``cos_between_emotions``
        (mean cosine between different emotions' directions: the floor for 6 centred
        vectors is -0.2), ``heldout_accuracy`` (``argmax_e (x - discovery mean) . v_e`` on
        held-out prompts naming the emotion), ``heldout_accuracy_described`` (the same on
        held-out prompts describing it), ``n_heldout``, ``n_described`` and ``chance``.
    """
    order = directions.emotions
    frames = []
    for site in directions.sites:
        x = discovery.site(site)
        by_theme = []
        for theme in sorted(set(themes)):
            rows = [i for i, t in enumerate(themes) if t == theme]
            sub_e = [emotions[i] for i in rows]
            sub_g = [groups[i] for i in rows]
            try:
                n_complete = len(complete_groups(sub_e, sub_g, order))
            except CircuitError:
                continue
            if n_complete >= min_groups:
                by_theme.append(context_agnostic_directions(x[rows], sub_e, sub_g, order))
        by_valence = []
        for valence in sorted(set(valences)):
            rows = [i for i, v in enumerate(valences) if v == valence]
            sub_e = [emotions[i] for i in rows]
            sub_g = [groups[i] for i in rows]
            by_valence.append(context_agnostic_directions(x[rows], sub_e, sub_g, order))
        v = directions.get(site)  # [layer, emotion, d]
        n_layers = v.shape[0]
        gram = torch.einsum("led,lfd->lef", v, v)
        off = ~torch.eye(len(order), dtype=torch.bool)
        nan = np.full(n_layers, np.nan)
        frame = pd.DataFrame(
            {
                "site": site,
                "layer": np.arange(n_layers),
                "cos_across_themes": _mean_pair_cosine(by_theme) if len(by_theme) > 1 else nan,
                "n_themes": len(by_theme),
                "cos_across_valences": _mean_pair_cosine(by_valence)
                if len(by_valence) > 1
                else nan,
                "cos_between_emotions": gram[:, off].mean(-1).double().numpy(),
            }
        )
        if heldout is not None and heldout_emotions is not None:
            center = x.double().mean(0)
            frame["heldout_accuracy"] = projection_accuracy(
                heldout.site(site), heldout_emotions, v, order, center=center
            )
            frame["n_heldout"] = len(heldout)
        if described is not None and described_emotions is not None:
            frame["heldout_accuracy_described"] = projection_accuracy(
                described.site(site), described_emotions, v, order, center=x.double().mean(0)
            )
            frame["n_described"] = len(described)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out["chance"] = 1.0 / len(order)
    out["n_groups"] = directions.n_groups
    return out
