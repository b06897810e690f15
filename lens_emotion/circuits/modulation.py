"""Circuit modulation on neutral prompts, compared with prompting and direction steering.

**Circuit modulation.** For a target emotion ``e``, each head and neuron of ``e``'s circuit
is shifted towards its state under the instruction ``e``:
``a := a + gamma * (mean_e(a) - mean_neutral(a))``, with both means taken at the last token of
the discovery prompts (``gamma = 1`` moves the circuit, on average, exactly to its
emotion-conditioned state). A shift of ``z_h`` or ``H_i`` is a fixed vector after the output
projection, so the whole modulation is a sum of fixed vectors added to a few sublayer outputs
(:func:`modulation_vectors`); nothing outside the circuit is touched.

**Baselines** on the same neutral prompts and the same judge:

* *prompting*: the emotion-conditioned system instruction, no intervention;
* *direction steering*: ``beta * RMS(h) * v_e`` added to ``resid_post`` at a window of layers
  (``v_e`` of each layer), via :func:`lens_emotion.interventions.steering_hooks`;
* *neutral*: no instruction, no intervention (how often the judge names ``e`` anyway).

Strengths (``gamma``, ``beta``) are chosen on discovery scenarios only, by the same judge,
from equally long grids (:func:`tune_strength`); the comparison then runs on held-out
scenarios. Accuracy is the share of replies the judge labels as the target emotion, with
percentile-bootstrap intervals that resample scenarios. Because a judge also labels a bare
emotion word (``"anger"``) or a loop (``"sad sad sad"``) as that emotion, replies that are too
short or repetitive are flagged as degenerate (:func:`is_degenerate`), and a *fluent accuracy*
counts only non-degenerate replies as successes; strengths are chosen by fluent accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from lens_emotion.circuits.ablation import ComponentMeans
from lens_emotion.circuits.circuit import EmotionCircuit
from lens_emotion.circuits.directions import EmotionDirections
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.circuits.generation import judge_replies, vector_hooks
from lens_emotion.circuits.sev_prompts import SevPrompts

__all__ = [
    "CONTROL_METHODS",
    "ControlResult",
    "cluster_bootstrap",
    "control_comparison",
    "distinct_bigram_ratio",
    "emotion_means",
    "is_degenerate",
    "modulation_hooks",
    "modulation_vectors",
    "steering_baseline_hooks",
    "tune_strength",
]

#: Methods of the comparison table, in display order.
CONTROL_METHODS: tuple[str, ...] = ("neutral", "prompting", "steering", "circuit")

Hooks = list[tuple[str, Any]]


def modulation_vectors(
    circuit: EmotionCircuit,
    target: ComponentMeans,
    reference: ComponentMeans,
    W_O: Float[Tensor, "layer head d_head d_model"],  # noqa: N803
    W_out: Float[Tensor, "layer d_mlp d_model"],  # noqa: N803
    gamma: float = 1.0,
) -> dict[tuple[str, int], Float[Tensor, " d_model"]]:
    """Sublayer-output vectors equivalent to shifting the circuit's components.

    Args:
        circuit: The emotion's circuit.
        target: Mean last-token activations under the emotion's instruction.
        reference: Mean last-token activations of neutral prompts.
        W_O: Per-head output projections.
        W_out: MLP output matrices.
        gamma: Shift strength.

    Returns:
        ``{("attn_out" | "mlp_out", layer): vector}``.
    """
    out: dict[tuple[str, int], Tensor] = {}
    for layer, head in circuit.components("head"):
        delta = (target.head[layer, head] - reference.head[layer, head]).double()
        vec = gamma * (delta @ W_O[layer, head].double())
        key = ("attn_out", layer)
        out[key] = out[key] + vec if key in out else vec
    for layer, neuron in circuit.components("neuron"):
        delta = float(target.neuron[layer, neuron] - reference.neuron[layer, neuron])
        vec = gamma * delta * W_out[layer, neuron].double()
        key = ("mlp_out", layer)
        out[key] = out[key] + vec if key in out else vec
    return {k: v.float() for k, v in out.items()}


def modulation_hooks(
    model: Any,
    circuit: EmotionCircuit,
    target: ComponentMeans,
    reference: ComponentMeans,
    W_O: Tensor,  # noqa: N803
    W_out: Tensor,  # noqa: N803
    gamma: float,
    positions: str = "all",
) -> Hooks:
    """Hooks that modulate a circuit (see :func:`modulation_vectors`)."""
    vectors = modulation_vectors(circuit, target, reference, W_O, W_out, gamma)
    return vector_hooks(model, vectors, positions=positions)


def steering_baseline_hooks(
    model: Any,
    directions: EmotionDirections,
    emotion: str,
    beta: float,
    layers: Sequence[int],
    positions: str = "all",
) -> Hooks:
    """``beta * RMS(h) * v_e`` at ``resid_post`` of each layer of a window (its own ``v_e``)."""
    from lens_emotion.interventions import steering_hooks

    hooks: Hooks = []
    for layer in layers:
        hooks += steering_hooks(
            model,
            directions.vector(emotion, "resid_post", layer),
            beta,
            [layer],
            site="resid_post",
            scale="rms",
            positions=positions,
        )
    return hooks


def distinct_bigram_ratio(text: str) -> float:
    """Distinct word bigrams / all bigrams (1.0 for fewer than 2 words): low = repetitive."""
    words = text.lower().split()
    pairs = list(zip(words, words[1:], strict=False))
    return 1.0 if not pairs else len(set(pairs)) / len(pairs)


def is_degenerate(text: str, min_words: int = 5, min_distinct: float = 0.5) -> bool:
    """A reply that is too short (e.g. just an emotion word) or loops on itself.

    Args:
        text: The reply.
        min_words: Replies with fewer words are degenerate (a bare ``"anger"`` is not a reply
            expressing anger, even though a judge will label it so).
        min_distinct: Replies whose distinct-bigram ratio is lower are degenerate.
    """
    return len(text.split()) < min_words or distinct_bigram_ratio(text) < min_distinct


def _reply_stats(
    replies: Sequence[str], labels: Sequence[str], emotion: str, min_words: int, min_distinct: float
) -> list[dict[str, Any]]:
    out = []
    for reply, label in zip(replies, labels, strict=True):
        degenerate = is_degenerate(reply, min_words, min_distinct)
        out.append(
            {
                "reply": reply,
                "judged": label,
                "correct": label == emotion,
                "fluent_correct": label == emotion and not degenerate,
                "degenerate": degenerate,
                "n_words": len(reply.split()),
                "distinct_2": distinct_bigram_ratio(reply),
            }
        )
    return out


def cluster_bootstrap(
    values: Sequence[float] | np.ndarray,
    clusters: Sequence[str],
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> tuple[float, float, float]:
    """Mean with a percentile-bootstrap interval that resamples whole clusters.

    Args:
        values: One value per item (e.g. 1.0 for a correct reply).
        clusters: The cluster of each item (e.g. its scenario).
        n_boot: Resamples.
        seed: Seed.
        ci: Coverage.

    Returns:
        ``(mean, low, high)``.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise CircuitError("cannot bootstrap an empty set of values.")
    keys = pd.Series(list(clusters)).astype(str)
    codes, uniques = pd.factorize(keys)
    sums = np.bincount(codes, weights=x, minlength=len(uniques))
    counts = np.bincount(codes, minlength=len(uniques)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(uniques), size=(n_boot, len(uniques)))
    boot = sums[draw].sum(1) / counts[draw].sum(1)
    alpha = (1 - ci) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    return float(x.mean()), float(low), float(high)


def _generate(
    model: Any,
    prompts: Sequence[str],
    hooks: Hooks,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
) -> list[str]:
    from lens_emotion.interventions import generate_with_hooks

    return generate_with_hooks(
        model,
        list(prompts),
        hooks,
        max_new_tokens=max_new_tokens,
        seed=seed,
        batch_size=batch_size,
        progress=False,
        add_special_tokens=False,
    )


def tune_strength(
    model: Any,
    judge: Any,
    prompts: SevPrompts,
    emotions: Sequence[str],
    hooks_for: Callable[[str, float], Hooks],
    grid: Sequence[float],
    max_new_tokens: int = 30,
    batch_size: int = 16,
    seed: int = 0,
    min_words: int = 5,
    min_distinct: float = 0.5,
) -> pd.DataFrame:
    """Judged accuracy of a steering method on (discovery) neutral prompts, per strength.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        judge: The offline judge.
        prompts: Neutral prompts (discovery scenarios).
        emotions: Target emotions.
        hooks_for: ``(emotion, strength) -> hooks``.
        grid: Strengths to try.
        max_new_tokens: Tokens per reply.
        batch_size: Prompts per batch.
        seed: Seed.
        min_words: Degenerate-reply threshold (:func:`is_degenerate`).
        min_distinct: Degenerate-reply threshold (:func:`is_degenerate`).

    Returns:
        One row per strength: ``strength``, ``accuracy`` (judged as the target, over emotions
        and prompts), ``fluent_accuracy`` (judged as the target and not degenerate),
        ``degenerate_rate``, ``mean_words``, ``distinct_2``, ``n``.
    """
    if not grid:
        raise CircuitError("tune_strength() needs at least one strength in the grid.")
    rows = []
    for strength in grid:
        stats: list[dict[str, Any]] = []
        for emotion in emotions:
            replies = _generate(
                model,
                prompts.prompts,
                hooks_for(emotion, float(strength)),
                max_new_tokens,
                batch_size,
                seed,
            )
            labels = judge_replies(judge, replies)
            stats += _reply_stats(replies, labels, emotion, min_words, min_distinct)
        frame = pd.DataFrame(stats)
        rows.append(
            {
                "strength": float(strength),
                "accuracy": float(frame.correct.mean()),
                "fluent_accuracy": float(frame.fluent_correct.mean()),
                "degenerate_rate": float(frame.degenerate.mean()),
                "mean_words": float(frame.n_words.mean()),
                "distinct_2": float(frame.distinct_2.mean()),
                "n": len(frame),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ControlResult:
    """Outcome of :func:`control_comparison`.

    Attributes:
        table: ``method, emotion, accuracy, ci_low, ci_high`` (share judged as the target),
            ``fluent_accuracy, fluent_ci_low, fluent_ci_high`` (judged as the target and not
            degenerate), ``degenerate_rate, mean_words, distinct_2, n``. ``emotion == "all"``
            pools the emotions; intervals resample scenarios.
        generations: Every reply: method, emotion (target), skeleton_id, valence, reply,
            judged, correct, fluent_correct, degenerate, n_words, distinct_2.
        differences: Paired differences of the pooled accuracies between methods (scenario
            bootstrap): ``metric, a, b, difference, ci_low, ci_high``.
    """

    table: pd.DataFrame
    generations: pd.DataFrame
    differences: pd.DataFrame


def control_comparison(
    model: Any,
    judge: Any,
    neutral: SevPrompts,
    conditioned: SevPrompts,
    method_hooks: Mapping[str, Mapping[str, Hooks]],
    emotions: Sequence[str],
    max_new_tokens: int = 30,
    batch_size: int = 16,
    seed: int = 0,
    n_boot: int = 2000,
    min_words: int = 5,
    min_distinct: float = 0.5,
) -> ControlResult:
    """Generate and judge replies for every method and target emotion.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        judge: The offline judge (SEV labels).
        neutral: Neutral prompts of the held-out items.
        conditioned: The same items with every emotion instruction (for *prompting*).
        method_hooks: ``{method: {emotion: hooks}}`` applied to the neutral prompts (e.g.
            ``"steering"``, ``"circuit"``).
        emotions: Target emotions.
        max_new_tokens: Tokens per reply.
        batch_size: Prompts per batch.
        seed: Seed of the bootstrap.
        n_boot: Bootstrap resamples.
        min_words: Degenerate-reply threshold (:func:`is_degenerate`).
        min_distinct: Degenerate-reply threshold (:func:`is_degenerate`).

    Returns:
        The :class:`ControlResult`.
    """
    if any(e is not None for e in neutral.emotion):
        raise CircuitError("`neutral` must hold neutral prompts (build them with emotions=[None]).")
    records: list[dict[str, Any]] = []

    def add(method: str, emotion: str, items: SevPrompts, replies: list[str]) -> None:
        labels = judge_replies(judge, replies)
        stats = _reply_stats(replies, labels, emotion, min_words, min_distinct)
        for i, row in enumerate(stats):
            records.append(
                {
                    "method": method,
                    "emotion": emotion,
                    "skeleton_id": items.skeleton_id[i],
                    "valence": items.valence[i],
                    **row,
                }
            )

    plain = _generate(model, neutral.prompts, [], max_new_tokens, batch_size, seed)
    for emotion in emotions:
        add("neutral", emotion, neutral, plain)
    for emotion in emotions:
        asked = conditioned.where(emotion)
        add(
            "prompting",
            emotion,
            asked,
            _generate(model, asked.prompts, [], max_new_tokens, batch_size, seed),
        )
    for method, per_emotion in method_hooks.items():
        for emotion in emotions:
            if emotion not in per_emotion:
                raise CircuitError(f"method {method!r} has no hooks for {emotion!r}.")
            replies = _generate(
                model, neutral.prompts, per_emotion[emotion], max_new_tokens, batch_size, seed
            )
            add(method, emotion, neutral, replies)
    generations = pd.DataFrame(records)
    rows = []
    for method, block in generations.groupby("method", sort=False):
        for emotion, part in [*block.groupby("emotion", sort=False), ("all", block)]:
            mean, low, high = cluster_bootstrap(
                part["correct"].astype(float), part["skeleton_id"], n_boot, seed
            )
            f_mean, f_low, f_high = cluster_bootstrap(
                part["fluent_correct"].astype(float), part["skeleton_id"], n_boot, seed
            )
            rows.append(
                {
                    "method": method,
                    "emotion": emotion,
                    "accuracy": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "fluent_accuracy": f_mean,
                    "fluent_ci_low": f_low,
                    "fluent_ci_high": f_high,
                    "degenerate_rate": float(part["degenerate"].mean()),
                    "mean_words": float(part["n_words"].mean()),
                    "distinct_2": float(part["distinct_2"].mean()),
                    "n": len(part),
                }
            )
    table = pd.DataFrame(rows)
    differences = pd.concat(
        [
            _paired_differences(generations, column, n_boot, seed).assign(metric=metric)
            for metric, column in (("accuracy", "correct"), ("fluent_accuracy", "fluent_correct"))
        ],
        ignore_index=True,
    )
    differences = differences[["metric", "a", "b", "difference", "ci_low", "ci_high"]]
    return ControlResult(table, generations, differences)


def _paired_differences(
    generations: pd.DataFrame, column: str, n_boot: int, seed: int
) -> pd.DataFrame:
    """Pooled accuracy differences between methods, resampling scenarios (paired)."""
    per = generations.groupby(["method", "skeleton_id"])[column].agg(["sum", "size"]).unstack(0)
    methods = list(dict.fromkeys(generations["method"]))
    scenarios = per.index.to_numpy()
    rng = np.random.default_rng([seed, 99])
    draw = rng.integers(0, len(scenarios), size=(n_boot, len(scenarios)))
    rows = []
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            sa, na = per["sum"][a].to_numpy(float), per["size"][a].to_numpy(float)
            sb, nb = per["sum"][b].to_numpy(float), per["size"][b].to_numpy(float)
            point = sa.sum() / na.sum() - sb.sum() / nb.sum()
            boot = sa[draw].sum(1) / na[draw].sum(1) - sb[draw].sum(1) / nb[draw].sum(1)
            low, high = np.quantile(boot, [0.025, 0.975])
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "difference": float(point),
                    "ci_low": float(low),
                    "ci_high": float(high),
                }
            )
    return pd.DataFrame(rows)


def emotion_means(
    acts: Any, emotions: Sequence[str | None], order: Sequence[str]
) -> dict[str, ComponentMeans]:
    """Mean last-token ``z`` and ``H`` per instructed emotion."""
    out = {}
    for emotion in order:
        rows = torch.as_tensor(
            [i for i, e in enumerate(emotions) if e == emotion], dtype=torch.long
        )
        if len(rows) == 0:
            raise CircuitError(f"no prompts ask for {emotion!r}; cannot take its mean.")
        out[emotion] = ComponentMeans.from_activations(acts.subset(rows))
    return out
