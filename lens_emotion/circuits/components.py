"""Local emotion components: attention heads and MLP neurons, scored by exact decomposition.

**Heads.** A block's attention output at a position is the sum over query heads of
``z_h @ W_O[h]`` (plus ``b_O`` where the model has one), where ``z_h`` is the head's
attention-weighted value vector (``attn.hook_z``; under grouped-query attention every query
head has its own ``z`` even though key/value heads are shared). Projecting each term on the
emotion direction of the stream it writes into (``resid_mid`` of the same layer) gives the
head's *direct contribution* ``c_h = (z_h @ W_O[h]) . v_e``. It comes from one cached pass.

Zero-ablating head ``h`` (``z_h := 0`` at every position, one forward pass per head: the
paper's method) changes that layer's attention output at the last token by exactly
``-z_h @ W_O[h]``, so ``(attn_out_clean - attn_out_ablated) . v_e`` equals ``c_h`` up to
float rounding: :func:`head_ablation_effects` computes it for the check. (Its effect on the
*final-layer* score also includes everything downstream, so it is not expected to match.)

**Neurons.** An MLP's output is ``H @ W_out (+ b_out)`` with ``H = act(gate) * up`` for gated
MLPs (``mlp.hook_post``). Neuron ``i``'s contribution to emotion ``e`` is
``c_i = H_i * (W_out^T v_e)_i`` with ``v_e`` the ``resid_post`` direction of the same layer.

**Ranking score.** A component matters for emotion ``e`` when it writes more along ``v_e``
when the model is asked for ``e`` than on average over the six instructions in the same
contexts. Contributions are linear in the activations, so the score is
``(mean_{prompts asking e} a - mean_{all prompts} a) . w_e`` (``a`` = ``z_h`` or ``H_i``,
``w_e`` = ``W_O[h] v_e`` or ``(W_out v_e)_i``), computed exactly from per-emotion means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from lens_emotion.batching import length_batches
from lens_emotion.circuits.capture import LastTokenActivations
from lens_emotion.circuits.directions import EmotionDirections, complete_groups
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.early_stop import stop_forward, stoppable

__all__ = [
    "COMPONENT_KINDS",
    "ComponentScores",
    "decomposition_reason",
    "head_ablation_effects",
    "head_contributions",
    "head_output_weights",
    "mlp_output_weights",
    "neuron_contributions",
    "score_components",
    "topk_overlap",
]

#: Component kinds: attention heads (per query head) and MLP neurons.
COMPONENT_KINDS: tuple[str, ...] = ("head", "neuron")


def head_output_weights(model: object) -> Float[Tensor, "layer head d_head d_model"]:
    """Stack every block's per-head output projection ``W_O``."""
    blocks = model.bridge.blocks  # type: ignore[attr-defined]
    return torch.stack([block.attn.W_O.detach().float().cpu() for block in blocks])


def mlp_output_weights(model: object) -> Float[Tensor, "layer d_mlp d_model"]:
    """Stack every block's MLP output matrix ``W_out`` (rows: neurons)."""
    blocks = model.bridge.blocks  # type: ignore[attr-defined]
    return torch.stack([block.mlp.W_out.detach().float().cpu() for block in blocks])


def head_contributions(
    z: Float[Tensor, "n layer head d_head"],
    W_O: Float[Tensor, "layer head d_head d_model"],  # noqa: N803 - the usual name
    directions: Float[Tensor, "layer emotion d_model"],
) -> Float[Tensor, "n layer head emotion"]:
    """Per-prompt direct contribution of every head to every emotion direction of its layer.

    Args:
        z: Per-query-head attention values at one position (from :mod:`.capture`).
        W_O: Per-head output projections (:func:`head_output_weights`).
        directions: Unit directions of the stream the heads write into (``resid_mid``).

    Returns:
        ``(z_h @ W_O[h]) . v_e`` for every prompt, layer, head and emotion.
    """
    readout = torch.einsum("lhkd,led->lhke", W_O.double(), directions.double())
    return torch.einsum("nlhk,lhke->nlhe", z.double(), readout).float()


def neuron_contributions(
    post: Float[Tensor, "n layer d_mlp"],
    W_out: Float[Tensor, "layer d_mlp d_model"],  # noqa: N803 - the usual name
    direction: Float[Tensor, "layer d_model"],
) -> Float[Tensor, "n layer d_mlp"]:
    """Per-prompt contribution ``c_i = H_i (W_out^T v)_i`` of every neuron to one direction.

    Args:
        post: MLP hidden activations ``H`` (``mlp.hook_post``).
        W_out: MLP output matrices (:func:`mlp_output_weights`).
        direction: One unit direction per layer (``resid_post`` of one emotion).

    Returns:
        Contributions; summed over neurons they give the MLP output's projection (minus any
        bias term).
    """
    readout = torch.einsum("lmd,ld->lm", W_out.double(), direction.double())
    return (post.double() * readout).float()


@dataclass(frozen=True)
class ComponentScores:
    """Emotion scores of every head or neuron.

    Attributes:
        kind: ``"head"`` or ``"neuron"``.
        emotions: Emotion order of the first axis.
        score: ``[emotion, layer, unit]`` ranking score (emotion-specific contribution).
        mean_contribution: ``[emotion, layer, unit]`` mean contribution to ``v_e`` over the
            prompts asking for ``e`` (not centred).
        n_prompts: Prompts per emotion used.
    """

    kind: str
    emotions: tuple[str, ...]
    score: Float[Tensor, "emotion layer unit"]
    mean_contribution: Float[Tensor, "emotion layer unit"]
    n_prompts: int

    @property
    def n_layers(self) -> int:
        """Number of layers."""
        return int(self.score.shape[1])

    @property
    def n_units(self) -> int:
        """Heads or neurons per layer."""
        return int(self.score.shape[2])

    def ranking(self, emotion: str) -> list[tuple[int, int]]:
        """All components as ``(layer, unit)``, best first (highest score)."""
        if emotion not in self.emotions:
            raise CircuitError(f"unknown emotion {emotion!r}; choose from {self.emotions}.")
        flat = self.score[self.emotions.index(emotion)].reshape(-1)
        order = torch.argsort(flat, descending=True, stable=True).tolist()
        return [divmod(int(i), self.n_units) for i in order]

    def top(self, emotion: str, k: int) -> list[tuple[int, int]]:
        """The ``k`` best ``(layer, unit)`` for an emotion."""
        if k < 0:
            raise CircuitError(f"k must be non-negative, got {k}.")
        return self.ranking(emotion)[:k]

    def table(self, top: int | None = None) -> pd.DataFrame:
        """Long table: emotion, rank, layer, head/neuron, score, mean_contribution.

        Args:
            top: Keep only the best ``top`` per emotion (``None``: all).
        """
        unit = "head" if self.kind == "head" else "neuron"
        frames = []
        for e, emotion in enumerate(self.emotions):
            ranked = self.ranking(emotion)
            if top is not None:
                ranked = ranked[:top]
            layers = np.asarray([r[0] for r in ranked], dtype=np.int64)
            units = np.asarray([r[1] for r in ranked], dtype=np.int64)
            frames.append(
                pd.DataFrame(
                    {
                        "emotion": emotion,
                        "rank": np.arange(1, len(ranked) + 1),
                        "layer": layers,
                        unit: units,
                        "score": self.score[e][layers, units].numpy(),
                        "mean_contribution": self.mean_contribution[e][layers, units].numpy(),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)


def _emotion_means(
    acts: Tensor, emotions: Sequence[str | None], groups: Sequence[str], order: Sequence[str]
) -> tuple[Tensor, Tensor, int]:
    """Per-emotion means ``[E, ...]`` and the balanced overall mean over complete groups."""
    index = torch.from_numpy(complete_groups(emotions, groups, order))
    x = acts[index].double()  # [group, emotion, ...]
    per_emotion = x.mean(0)
    return per_emotion, per_emotion.mean(0), int(index.shape[0])


def score_components(
    acts: LastTokenActivations,
    emotions: Sequence[str | None],
    groups: Sequence[str],
    directions: EmotionDirections,
    W_O: Float[Tensor, "layer head d_head d_model"] | None = None,  # noqa: N803
    W_out: Float[Tensor, "layer d_mlp d_model"] | None = None,  # noqa: N803
) -> dict[str, ComponentScores]:
    """Score every head and neuron for every emotion (see the module docstring).

    Args:
        acts: Last-token activations of emotion-conditioned prompts, with ``z`` and/or
            ``mlp_post``.
        emotions: Instructed emotion of each row.
        groups: Scenario x valence group of each row.
        directions: Emotion directions (``resid_mid`` for heads, ``resid_post`` for neurons).
        W_O: Per-head output projections (needed when ``acts.z`` is present).
        W_out: MLP output matrices (needed when ``acts.mlp_post`` is present).

    Returns:
        ``{"head": ..., "neuron": ...}`` for the captured sites.
    """
    order = directions.emotions
    out: dict[str, ComponentScores] = {}
    if acts.z is not None:
        if W_O is None:
            raise CircuitError("scoring heads needs W_O (head_output_weights(model)).")
        per_e, overall, n = _emotion_means(acts.z, emotions, groups, order)  # [E, L, H, k]
        readout = torch.einsum("lhkd,led->elhk", W_O.double(), directions.get("resid_mid").double())
        out["head"] = ComponentScores(
            kind="head",
            emotions=order,
            score=((per_e - overall) * readout).sum(-1).float(),
            mean_contribution=(per_e * readout).sum(-1).float(),
            n_prompts=n,
        )
    if acts.mlp_post is not None:
        if W_out is None:
            raise CircuitError("scoring neurons needs W_out (mlp_output_weights(model)).")
        per_e, overall, n = _emotion_means(acts.mlp_post, emotions, groups, order)  # [E, L, M]
        readout = torch.einsum(
            "lmd,led->elm", W_out.double(), directions.get("resid_post").double()
        )
        out["neuron"] = ComponentScores(
            kind="neuron",
            emotions=order,
            score=((per_e - overall) * readout).float(),
            mean_contribution=(per_e * readout).float(),
            n_prompts=n,
        )
    if not out:
        raise CircuitError("acts holds neither z nor mlp_post; capture them first.")
    return out


def topk_overlap(scores: ComponentScores, k: int) -> pd.DataFrame:
    """Jaccard overlap of the top-``k`` sets of every pair of emotions.

    Returns:
        A square frame indexed and columned by emotion (diagonal 1).
    """
    sets = {e: set(scores.top(e, k)) for e in scores.emotions}
    data = [
        [len(sets[a] & sets[b]) / max(len(sets[a] | sets[b]), 1) for b in scores.emotions]
        for a in scores.emotions
    ]
    return pd.DataFrame(data, index=list(scores.emotions), columns=list(scores.emotions))


def _grab(
    act: Tensor, hook: object, store: dict[str, Tensor], key: str, stop: bool = False
) -> None:
    """Keep the last-token activation; optionally end the forward pass."""
    store[key] = act[:, -1].detach().double().cpu()
    if stop:
        stop_forward()


def _zero_head(act: Tensor, hook: object, head: int) -> Tensor:
    out = act.clone()
    out[:, :, head] = 0.0
    return out


@torch.no_grad()
def decomposition_reason(model: object) -> str | None:
    """Why the per-head decomposition ``z_h W_O[h]`` is not exact on this model, or ``None``.

    The decomposition splits the attention output into per-head terms, which is exact when
    the attention output reaches the residual stream linearly. Gemma 2/3 and OLMo 2 normalise
    it first (a post-attention norm), so the terms no longer sum to what is added; there the
    head scores are a first-order approximation, and explicit ablation is the reference.
    """
    from lens_emotion.architecture import config_architectures, family_of

    try:
        family = family_of(config_architectures(model.path))  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return None
    if family is not None and family.post_attn_norm is not None:
        return (
            f"{family.name} normalises the attention output ({family.post_attn_norm}) before "
            "the residual add, so per-head terms z_h W_O do not sum to it"
        )
    return None


def head_ablation_effects(
    model: object,
    token_ids: Sequence[Sequence[int]],
    directions: EmotionDirections,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    final: bool = False,
    batch_size: int = 16,
    progress: bool = False,
) -> dict[str, Float[Tensor, "n layer head emotion"]]:
    """Explicit per-head zero-ablation: one forward pass per head (the paper's method).

    For each head, ``z_h`` is set to zero at every position and the pass is re-run.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        token_ids: Tokenized prompts.
        directions: Emotion directions.
        layers: Layers to ablate (``None``: all).
        heads: Query heads to ablate (``None``: all).
        final: Also run every ablated pass to the end and report the change of the
            final-layer emotion scores (otherwise each pass stops after the ablated layer's
            attention output).
        batch_size: Prompts per forward pass.
        progress: Show a progress bar.

    Returns:
        ``"local"``: ``[n, len(layers), len(heads), emotion]`` of ``(attn_out_clean -
        attn_out_ablated) . v_e`` at the last token, with ``v_e`` the ``resid_mid``
        direction of the ablated layer (this equals the decomposition's contribution);
        ``"final"`` (with ``final=True``): the same for the last layer's ``resid_post``
        projection on its directions.
    """
    n_layers, n_heads = model.n_layers, model.n_heads  # type: ignore[attr-defined]
    layers = list(range(n_layers)) if layers is None else [int(x) for x in layers]
    heads = list(range(n_heads)) if heads is None else [int(x) for x in heads]
    if any(not 0 <= x < n_layers for x in layers) or any(not 0 <= h < n_heads for h in heads):
        raise CircuitError(
            f"layers must lie in 0..{n_layers - 1} and heads in 0..{n_heads - 1}; "
            f"got layers {layers}, heads {heads}."
        )
    mid = directions.get("resid_mid")
    last_layer = n_layers - 1
    readout_final = directions.final()
    n = len(token_ids)
    n_e = len(directions.emotions)
    local = torch.zeros((n, len(layers), len(heads), n_e))
    final_out = torch.zeros_like(local)
    bar = tqdm(total=n * len(layers) * len(heads), desc="head ablation", disable=not progress)
    bridge = model.bridge  # type: ignore[attr-defined]
    for batch in length_batches([len(ids) for ids in token_ids], batch_size):
        input_ids, mask = model.pad([token_ids[i] for i in batch])  # type: ignore[attr-defined]
        rows = torch.as_tensor(batch, dtype=torch.long)
        clean: dict[str, Tensor] = {}
        clean_hooks = [
            (model.hook_name("attn_out", layer), partial(_grab, store=clean, key=f"attn{layer}"))  # type: ignore[attr-defined]
            for layer in layers
        ]
        clean_hooks.append(
            (model.hook_name("resid_post", last_layer), partial(_grab, store=clean, key="final"))  # type: ignore[attr-defined]
        )
        bridge.run_with_hooks(
            input_ids, attention_mask=mask, fwd_hooks=clean_hooks, return_type=None
        )
        for li, layer in enumerate(layers):
            for hi, head in enumerate(heads):
                seen: dict[str, Tensor] = {}
                hooks = [
                    (model.hook_name("z", layer), partial(_zero_head, head=head)),  # type: ignore[attr-defined]
                    (
                        model.hook_name("attn_out", layer),  # type: ignore[attr-defined]
                        partial(_grab, store=seen, key="attn", stop=not final),
                    ),
                ]
                if final:
                    hooks.append(
                        (
                            model.hook_name("resid_post", last_layer),  # type: ignore[attr-defined]
                            partial(_grab, store=seen, key="final"),
                        )
                    )
                with stoppable():
                    bridge.run_with_hooks(
                        input_ids, attention_mask=mask, fwd_hooks=hooks, return_type=None
                    )
                delta = clean[f"attn{layer}"] - seen["attn"]
                local[rows, li, hi] = (delta @ mid[layer].double().T).float()
                if final:
                    delta_f = clean["final"] - seen["final"]
                    final_out[rows, li, hi] = (delta_f @ readout_final.double().T).float()
                bar.update(len(batch))
    bar.close()
    result = {"local": local}
    if final:
        result["final"] = final_out
    return result
