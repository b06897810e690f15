"""Circuit modulation on neutral prompts, compared with prompting and direction steering.

**Circuit modulation.** For a target emotion ``e``, each head and neuron of ``e``'s circuit
is shifted towards its state under the instruction ``e``:
``a := a + gamma * (mean_e(a) - mean_neutral(a))``, with both means taken at the last token of
the discovery prompts. ``gamma = 1`` moves the circuit, on average, exactly to its
emotion-conditioned state; ``gamma = g > 1`` pushes it ``g`` times as far along the same
difference, i.e. beyond any state the instruction produces. A shift of ``z_h`` or ``H_i`` is a
fixed vector after the output projection, so the whole modulation is a sum of fixed vectors
added to a few sublayer outputs (:func:`modulation_vectors`); nothing outside the circuit is
touched.

**Baselines** on the same neutral prompts and the same judges:

* *prompting*: the emotion-conditioned system instruction, no intervention (no knob, so no
  tuning);
* *direction steering*: ``beta * RMS(h) * v_e`` added to ``resid_post`` at a window of layers
  (``v_e`` of each layer), via :func:`lens_emotion.interventions.steering_hooks`;
* *neutral*: no instruction, no intervention (how often the judge names ``e`` anyway).

**Judging.** Every reply goes through :func:`lens_emotion.judge.score_replies`: the primary
metric ``judged_masked`` is the share of replies the offline judge labels as the target after
every emotion word form is masked (:mod:`lens_emotion.lexicon`), so copying the instruction's
word earns nothing; ``judged_raw`` (unmasked), ``names_emotion`` (share of replies naming their
target), ``fluency`` (share not degenerate: too short or looping, :func:`is_degenerate`) and a
second judge of another kind (the unsteered model's own label readout on the masked reply,
:class:`~lens_emotion.judge.ReadoutJudge`) with Cohen's kappa and a disagreement note are
reported beside it (:func:`summarise_generations`). Intervals are percentile bootstraps that
resample scenarios.

**Tuning.** Strengths (``gamma``; ``beta`` x layer window) are chosen on discovery scenarios
only (:func:`tune_strength`), every method with a grid of the same number of settings, by a
rule fixed before the run (:func:`select_setting`, e.g. the largest ``judged_masked`` among
settings whose degenerate share is at most 0.2); the comparison then runs on held-out
scenarios.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from lens_emotion.circuits.ablation import ComponentMeans
from lens_emotion.circuits.circuit import EmotionCircuit
from lens_emotion.circuits.directions import EmotionDirections
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.circuits.generation import vector_hooks
from lens_emotion.circuits.sev_prompts import SevPrompts
from lens_emotion.io import write_csv_atomic
from lens_emotion.stats import cluster_bootstrap

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "CONTROL_METHODS",
    "SELECTION_METRICS",
    "ControlResult",
    "TuningResult",
    "cluster_bootstrap",
    "control_comparison",
    "distinct_bigram_ratio",
    "emotion_means",
    "is_degenerate",
    "modulation_hooks",
    "modulation_vectors",
    "score_generations",
    "select_setting",
    "selection_rule_text",
    "steering_baseline_hooks",
    "summarise_generations",
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

    ``gamma = 1`` is the emotion-conditioned state (on average); larger values overshoot it.

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


def score_generations(
    judge: Any,
    replies: Sequence[str],
    targets: Sequence[str],
    extra: Mapping[str, Sequence[Any]] | pd.DataFrame,
    readout: Any | None = None,
    min_words: int = 5,
    min_distinct: float = 0.5,
) -> pd.DataFrame:
    """One row per reply, scored by :func:`lens_emotion.judge.score_replies`.

    The primary column is ``correct_masked`` (the judge reads the reply with every emotion
    word form masked); ``correct_raw``, ``names_emotion``, ``degenerate``/``fluent`` and,
    with a second judge (``readout``, e.g. :class:`~lens_emotion.judge.ReadoutJudge`),
    ``readout_label``/``correct_readout`` come with it. ``extra`` columns (method, emotion,
    skeleton_id, ...) go first.
    """
    from lens_emotion.judge import score_replies

    return score_replies(
        judge,
        list(replies),
        list(targets),
        readout=readout,
        extra=extra,
        min_words=min_words,
        min_distinct=min_distinct,
    )


def summarise_generations(
    generations: pd.DataFrame,
    by: Sequence[str],
    n_boot: int = 2000,
    seed: int = 0,
    cluster: str | None = "skeleton_id",
) -> pd.DataFrame:
    """Per-group generation metrics, ``judged_masked`` first, with scenario-bootstrap intervals.

    Args:
        generations: A :func:`score_generations` frame.
        by: Grouping columns.
        n_boot: Bootstrap resamples.
        seed: Seed of the bootstrap.
        cluster: Column whose values are resampled whole (``None`` or missing: replies).

    Returns:
        :func:`lens_emotion.judge.summarise_replies`' columns (``n``, ``judged_masked`` with
        its Wilson interval, ``judged_raw``, ``names_emotion``, ``judged_masked_named`` /
        ``_unnamed``, ``fluency``, ``fluent_judged_masked``, ``readout``, ``kappa``,
        ``mcnemar_p``, ``judges_disagree``, ``judges_note``) plus ``ci_low``/``ci_high``
        (judged_masked) and ``raw_ci_low``/``raw_ci_high`` (judged_raw) from a bootstrap over
        ``cluster``, and ``degenerate_rate``.
    """
    from lens_emotion.judge import summarise_replies

    table = summarise_replies(generations, list(by))
    keys = list(by)
    groups = generations.groupby(keys, sort=False, dropna=False) if keys else [((), generations)]
    extra = []
    for _, part in groups:
        clusters = (
            part[cluster].astype(str).tolist()
            if cluster and cluster in part
            else [str(i) for i in range(len(part))]
        )
        _, low, high = cluster_bootstrap(
            part["correct_masked"].astype(float), clusters, n_boot, seed
        )
        _, r_low, r_high = cluster_bootstrap(
            part["correct_raw"].astype(float), clusters, n_boot, seed
        )
        extra.append(
            {
                "ci_low": low,
                "ci_high": high,
                "raw_ci_low": r_low,
                "raw_ci_high": r_high,
                "degenerate_rate": float(part["degenerate"].mean()),
            }
        )
    table = pd.concat([table.reset_index(drop=True), pd.DataFrame(extra)], axis=1)
    first = [*keys, "n", "judged_masked", "ci_low", "ci_high", "judged_raw", "raw_ci_low"]
    first += ["raw_ci_high", "names_emotion", "fluency", "degenerate_rate", "readout", "kappa"]
    first += ["judges_disagree", "judges_note"]
    return table[first + [c for c in table.columns if c not in first]]


#: Selection metrics a tuning rule may maximise (columns of :func:`summarise_generations`).
SELECTION_METRICS: tuple[str, ...] = ("judged_masked", "fluent_judged_masked", "judged_raw")


def selection_rule_text(metric: str, max_degenerate: float) -> str:
    """The selection rule in words (for manifests and outputs)."""
    return (
        f"max {metric} accuracy on the discovery tuning prompts among settings whose "
        f"degenerate share <= {max_degenerate:g} (ties: the earlier setting of the grid, i.e. "
        "the smaller strength); if no setting qualifies, the one with the smallest "
        "degenerate share"
    )


def select_setting(
    table: pd.DataFrame, metric: str = "judged_masked", max_degenerate: float = 0.2
) -> tuple[pd.Series, str]:
    """Apply a tuning rule fixed before the run to one method's tuning rows.

    Args:
        table: Rows of :func:`tune_strength` for one method, in grid order.
        metric: Column to maximise (:data:`SELECTION_METRICS`).
        max_degenerate: Largest admissible ``degenerate_rate``.

    Returns:
        ``(row, note)``: the chosen row and how it was chosen.

    Raises:
        CircuitError: Unknown metric or an empty table.
    """
    if metric not in SELECTION_METRICS:
        raise CircuitError(f"unknown selection metric {metric!r}; choose from {SELECTION_METRICS}.")
    if table.empty:
        raise CircuitError("select_setting() needs at least one tuning row.")
    table = table.reset_index(drop=True)
    admissible = table[table.degenerate_rate <= max_degenerate]
    if admissible.empty:
        row = table.loc[table.degenerate_rate.idxmin()]
        return row, (
            f"no setting had a degenerate share <= {max_degenerate:g}; took the least "
            f"degenerate ({row.degenerate_rate:.2f})"
        )
    row = admissible.loc[admissible[metric].idxmax()]
    return row, f"rule met ({len(admissible)} of {len(table)} settings admissible)"


@dataclass(frozen=True)
class TuningResult:
    """Outcome of :func:`tune_strength`.

    Attributes:
        table: One row per strength: ``strength`` then :func:`summarise_generations` columns.
        generations: Every reply (strength, emotion, skeleton_id, valence + score columns).
    """

    table: pd.DataFrame
    generations: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """The per-strength table (a copy)."""
        return self.table.copy()

    def save(self, out: str | Path, prefix: str = "tuning") -> list[Path]:
        """Write ``<prefix>.csv`` (per strength) and ``<prefix>_generations.csv`` into ``out``."""
        out = Path(out)
        return [
            write_csv_atomic(out / f"{prefix}.csv", self.table),
            write_csv_atomic(out / f"{prefix}_generations.csv", self.generations),
        ]

    def figure(self) -> go.Figure:
        """Judged accuracy against strength (:func:`.figures.tuning_figure`)."""
        from lens_emotion.circuits.figures import tuning_figure

        return tuning_figure(self.table)

    def summary(self) -> dict[str, Any]:
        """The best strength by ``judged_masked`` and its score, and the number of replies."""
        best = self.table.loc[self.table["judged_masked"].idxmax()]
        return {
            "n_strengths": int(len(self.table)),
            "n_replies": int(len(self.generations)),
            "best_strength": float(best["strength"]),
            "best_judged_masked": float(best["judged_masked"]),
        }


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
    readout: Any | None = None,
    n_boot: int = 2000,
) -> TuningResult:
    """Judged accuracy of a steering method on (discovery) neutral prompts, per strength.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        judge: The offline judge (reads masked replies).
        prompts: Neutral prompts (discovery scenarios only: they choose the strength).
        emotions: Target emotions.
        hooks_for: ``(emotion, strength) -> hooks``.
        grid: Strengths to try.
        max_new_tokens: Tokens per reply.
        batch_size: Prompts per batch.
        seed: Seed.
        min_words: Degenerate-reply threshold (:func:`is_degenerate`).
        min_distinct: Degenerate-reply threshold (:func:`is_degenerate`).
        readout: Optional second judge (e.g. :class:`~lens_emotion.judge.ReadoutJudge`).
        n_boot: Bootstrap resamples of the intervals (scenarios resampled).

    Returns:
        The :class:`TuningResult`.
    """
    if not grid:
        raise CircuitError("tune_strength() needs at least one strength in the grid.")
    if any(e is not None for e in prompts.emotion):
        raise CircuitError(
            "tune_strength() needs neutral prompts (build them with emotions=[None])."
        )
    replies: list[str] = []
    extra: dict[str, list[Any]] = {"strength": [], "emotion": [], "skeleton_id": [], "valence": []}
    for strength in grid:
        for emotion in emotions:
            out = _generate(
                model,
                prompts.prompts,
                hooks_for(emotion, float(strength)),
                max_new_tokens,
                batch_size,
                seed,
            )
            replies += out
            extra["strength"] += [float(strength)] * len(out)
            extra["emotion"] += [emotion] * len(out)
            extra["skeleton_id"] += list(prompts.skeleton_id)
            extra["valence"] += list(prompts.valence)
    generations = score_generations(
        judge, replies, extra["emotion"], extra, readout, min_words, min_distinct
    )
    table = summarise_generations(generations, ["strength"], n_boot, seed)
    return TuningResult(table, generations)


@dataclass(frozen=True)
class ControlResult:
    """Outcome of :func:`control_comparison`.

    Attributes:
        table: One row per (method, emotion) with :func:`summarise_generations` columns
            (``judged_masked`` first, the primary metric, with a scenario-bootstrap interval;
            ``judged_raw``; ``names_emotion``; ``fluency``; ``readout``; ``kappa``;
            ``judges_note``). ``emotion == "all"`` pools the emotions.
        generations: Every reply: method, emotion (target), skeleton_id, valence, then the
            :func:`lens_emotion.judge.score_replies` columns.
        differences: Paired differences of the pooled accuracies between methods (scenario
            bootstrap): ``metric`` (``judged_masked``, ``judged_raw``,
            ``fluent_judged_masked``), ``a, b, difference, ci_low, ci_high``.
    """

    table: pd.DataFrame
    generations: pd.DataFrame
    differences: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """The per-(method, emotion) table (a copy)."""
        return self.table.copy()

    def save(self, out: str | Path, prefix: str = "control") -> list[Path]:
        """Write ``<prefix>.csv``, ``<prefix>_generations.csv`` and ``<prefix>_differences.csv``."""
        out = Path(out)
        return [
            write_csv_atomic(out / f"{prefix}.csv", self.table),
            write_csv_atomic(out / f"{prefix}_generations.csv", self.generations),
            write_csv_atomic(out / f"{prefix}_differences.csv", self.differences),
        ]

    def figure(self) -> go.Figure:
        """Per-method bars (:func:`~lens_emotion.circuits.figures.control_figure`)."""
        from lens_emotion.circuits.figures import control_figure

        return control_figure(self.table)

    def summary(self) -> dict[str, Any]:
        """Pooled ``judged_masked`` (with its CI) per method."""
        pooled = self.table[self.table["emotion"] == "all"]
        return {
            str(row.method): {
                "judged_masked": float(row.judged_masked),
                "ci_low": float(row.ci_low),
                "ci_high": float(row.ci_high),
            }
            for row in pooled.itertuples()
        }


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
    readout: Any | None = None,
) -> ControlResult:
    """Generate and judge replies for every method and target emotion.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        judge: The offline judge (SEV labels; reads masked replies).
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
        readout: Optional second judge (e.g. :class:`~lens_emotion.judge.ReadoutJudge`).

    Returns:
        The :class:`ControlResult`.
    """
    if any(e is not None for e in neutral.emotion):
        raise CircuitError("`neutral` must hold neutral prompts (build them with emotions=[None]).")
    replies: list[str] = []
    extra: dict[str, list[Any]] = {"method": [], "emotion": [], "skeleton_id": [], "valence": []}

    def add(method: str, emotion: str, items: SevPrompts, out: list[str]) -> None:
        replies.extend(out)
        extra["method"] += [method] * len(out)
        extra["emotion"] += [emotion] * len(out)
        extra["skeleton_id"] += list(items.skeleton_id)
        extra["valence"] += list(items.valence)

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
            out = _generate(
                model, neutral.prompts, per_emotion[emotion], max_new_tokens, batch_size, seed
            )
            add(method, emotion, neutral, out)
    generations = score_generations(
        judge, replies, extra["emotion"], extra, readout, min_words, min_distinct
    )
    per_emotion_table = summarise_generations(generations, ["method", "emotion"], n_boot, seed)
    pooled = summarise_generations(generations, ["method"], n_boot, seed)
    pooled.insert(1, "emotion", "all")
    table = pd.concat([per_emotion_table, pooled], ignore_index=True)
    order = {m: i for i, m in enumerate(dict.fromkeys(generations["method"]))}
    table = table.sort_values(
        ["method", "emotion"],
        key=lambda col: col.map(order) if col.name == "method" else col.eq("all"),
        kind="stable",
    ).reset_index(drop=True)
    differences = pd.concat(
        [
            _paired_differences(generations, column, n_boot, seed).assign(metric=metric)
            for metric, column in (
                ("judged_masked", "correct_masked"),
                ("judged_raw", "correct_raw"),
                ("fluent_judged_masked", "fluent_correct_masked"),
            )
        ],
        ignore_index=True,
    )
    differences = differences[["metric", "a", "b", "difference", "ci_low", "ci_high"]]
    return ControlResult(table, generations, differences)


def _paired_differences(
    generations: pd.DataFrame, column: str, n_boot: int, seed: int
) -> pd.DataFrame:
    """Pooled accuracy differences between methods, resampling scenarios (paired)."""
    per = (
        generations.assign(_v=generations[column].astype(float))
        .groupby(["method", "skeleton_id"])["_v"]
        .agg(["sum", "size"])
        .unstack(0)
    )
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
