"""Steering sweeps: steered conditions, readout and generation sweeps, and their outcomes.

**Sweeps.** :func:`readout_sweep` (outcome 1: label distribution at the inference prompt's
readout) and :func:`generation_sweep` (outcome 2: free generation, judged by an independent
classifier) evaluate every :class:`SteeringCondition` and return a :class:`SweepOutcome`,
whose :attr:`SweepOutcome.table` gives per-emotion proportions with bootstrap CIs next to the
random-direction control.

**Judging generations.** Every reply is scored by :func:`lens_emotion.judge.score_replies`:
the judge reads it with every emotion word form masked (``judged_masked``, the primary
metric: the generation ``proportion`` of an emotion is the share of replies the judge labels
with it after masking) and unmasked (``judged_raw``); ``names_emotion`` is the share of
replies that contain the emotion's own word forms, ``fluency`` the share that are not
degenerate, and with a second judge (``readout=``, e.g.
:class:`lens_emotion.judge.ReadoutJudge`: the unsteered model's own label readout of the
masked reply) ``readout`` is that judge's share, ``kappa`` Cohen's kappa between the two
judges' labels and ``judges_note`` says where they disagree
(:func:`lens_emotion.judge.summarise_replies`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from lens_emotion.interventions import (
    HookFn,
    generate_with_hooks,
    readout_many,
    steering_hooks,
)
from lens_emotion.io import write_text_atomic
from lens_emotion.models import EmotionModel
from lens_emotion.prompts import PromptSet
from lens_emotion.stats import bootstrap_mean_ci
from lens_emotion.steering.vectors import SteeringError, layer_window, random_direction

__all__ = [
    "CLEAN",
    "GENERATION_COLUMNS",
    "GENERATION_INSTRUCTION",
    "GENERATION_PREFIX",
    "STEERING_COLUMNS",
    "SteeringCondition",
    "SweepOutcome",
    "build_conditions",
    "conditions_frame",
    "generation_prompts",
    "generation_sweep",
    "readout_sweep",
    "renormalised_probs",
]

#: Columns of :attr:`SweepOutcome.table` (and ``steering.csv``), in order.
STEERING_COLUMNS: tuple[str, ...] = (
    "appraisal_combo",
    "layer",
    "beta",
    "emotion",
    "proportion",
    "ci_low",
    "ci_high",
    "control",
)

#: Columns of :attr:`SweepOutcome.table` for a generation sweep (``steering.csv``):
#: :data:`STEERING_COLUMNS` (``proportion`` is the masked judge's share, the primary metric)
#: followed by the other judge readings of :func:`lens_emotion.judge.summarise_replies`.
GENERATION_COLUMNS: tuple[str, ...] = STEERING_COLUMNS + (
    "n",
    "judged_raw",
    "names_emotion",
    "fluency",
    "readout",
    "kappa",
    "mcnemar_p",
    "judges_disagree",
    "judges_note",
)

CLEAN = "clean"
"""Combo name of the unsteered condition (beta = 0)."""


# --------------------------------------------------------------------------- conditions


@dataclass(frozen=True, eq=False)
class SteeringCondition:
    """One steered (or clean) run.

    Attributes:
        combo: Combo name (``"clean"`` for the unsteered run).
        method: ``"unique"``, ``"raw"``, ``"random"`` or ``"clean"``.
        layer: Centre layer (``-1`` for clean).
        beta: Step size.
        control: True for random-direction controls.
        seed: Seed of a random direction (``-1`` otherwise).
        vectors: Direction per hooked layer (a window of ``span`` layers around ``layer``).
    """

    combo: str
    method: str
    layer: int
    beta: float
    control: bool = False
    seed: int = -1
    vectors: Mapping[int, np.ndarray] = field(default_factory=dict, repr=False)

    def hooks(
        self,
        model: EmotionModel,
        site: str = "resid_post",
        scale: Literal["none", "rms"] = "none",
        positions: Literal["last", "all"] = "last",
    ) -> list[tuple[str, HookFn]]:
        """The hooks of this condition (empty for clean or beta 0)."""
        if self.beta == 0.0 or not self.vectors:
            return []
        out: list[tuple[str, HookFn]] = []
        for layer, vec in sorted(self.vectors.items()):
            out += steering_hooks(model, vec, self.beta, layer, site, scale, positions)
        return out

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary (no vectors)."""
        return {
            "combo": self.combo,
            "method": self.method,
            "layer": self.layer,
            "beta": self.beta,
            "control": self.control,
            "seed": self.seed,
            "hooked_layers": sorted(int(k) for k in self.vectors),
            "norms": {int(k): float(np.linalg.norm(v)) for k, v in self.vectors.items()},
        }


def build_conditions(
    vectors: Mapping[str, Mapping[int, np.ndarray]],
    layers: Sequence[int],
    betas: Sequence[float],
    n_controls: int = 3,
    seed: int = 0,
    span: int = 1,
    methods: Mapping[str, str] | None = None,
) -> list[SteeringCondition]:
    """Every (combo, layer, nonzero beta) condition, the random controls, and one clean run.

    Args:
        vectors: ``{combo_name: {layer: vector}}`` with a vector for every layer of every
            window (``span`` layers centred on each of ``layers``).
        layers: Centre layers.
        betas: Step sizes; 0 maps to the shared clean run.
        n_controls: Random directions per (layer, beta), seeds ``seed .. seed + n - 1``;
            each has the norm of the first combo's vector at that layer.
        seed: First control seed.
        span: Window width (odd).
        methods: ``{combo_name: method}`` for the records (default ``"unique"``).

    Returns:
        The clean condition first, then the steered ones, then the controls.

    Raises:
        SteeringError: A window reaches a layer without a vector.
    """
    if not vectors:
        raise SteeringError("no directions to steer with; pass at least one combo.")
    conditions = [SteeringCondition(CLEAN, "clean", -1, 0.0)]
    nonzero = [float(b) for b in betas if float(b) != 0.0]
    first = next(iter(vectors.values()))
    for name, per_layer in vectors.items():
        method = (methods or {}).get(name, "unique")
        for layer in layers:
            window = layer_window(int(layer), span)
            missing = [x for x in window if x not in per_layer]
            if missing:
                raise SteeringError(
                    f"{name}: no direction at layer(s) {missing} of the window around {layer}; "
                    "probe those layers too or use span=1."
                )
            for beta in nonzero:
                vecs = {x: per_layer[x] for x in window}
                conditions.append(SteeringCondition(name, method, int(layer), beta, vectors=vecs))
    d = len(next(iter(first.values())))
    for layer in layers:
        window = layer_window(int(layer), span)
        for k in range(n_controls):
            vecs = {
                x: random_direction(d, seed + k, x, float(np.linalg.norm(first[x]))) for x in window
            }
            for beta in nonzero:
                conditions.append(
                    SteeringCondition(
                        "random", "random", int(layer), beta, True, seed + k, vectors=vecs
                    )
                )
    return conditions


def conditions_frame(conditions: Sequence[SteeringCondition]) -> pd.DataFrame:
    """One row per condition: combo, method, layer, beta, control, seed."""
    return pd.DataFrame(
        [
            {
                "combo": c.combo,
                "method": c.method,
                "layer": c.layer,
                "beta": c.beta,
                "control": c.control,
                "seed": c.seed,
            }
            for c in conditions
        ]
    )


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True, eq=False)
class SweepOutcome:
    """Per-condition, per-text emotion outcomes of a steering sweep.

    Attributes:
        outcome: ``"readout"`` (values are label probabilities renormalised over the labels)
            or ``"generation"`` (values are one-hot judged labels).
        conditions: The conditions, in ``values`` order.
        values: ``(n_conditions, n_texts, n_labels)``.
        label_names: Emotion labels (columns of ``values``).
        texts: For generation, the generated continuations ``(n_conditions, n_texts)``.
        ids: Dataset ids of the texts.
        replies: For generation, the :func:`lens_emotion.judge.score_replies` frame of every
            reply (``condition``, ``text_index`` first), masked and raw judge labels and, with
            a second judge, its labels.
        n_boot: Bootstrap resamples of :attr:`table`.
        boot_seed: Seed of :attr:`table`'s bootstrap.
    """

    outcome: str
    conditions: tuple[SteeringCondition, ...]
    values: np.ndarray = field(repr=False)
    label_names: tuple[str, ...]
    texts: tuple[tuple[str, ...], ...] | None = field(default=None, repr=False)
    ids: tuple[str, ...] = ()
    replies: pd.DataFrame | None = field(default=None, repr=False)
    n_boot: int = 1000
    boot_seed: int = 0
    _table: pd.DataFrame | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def frame(self) -> pd.DataFrame:
        """The conditions as a DataFrame (row ``k`` = ``values[k]``)."""
        return conditions_frame(self.conditions)

    @property
    def predictions(self) -> Int[np.ndarray, "n_conditions n_texts"]:
        """Argmax label index per condition and text."""
        return self.values.argmax(axis=-1)

    def clean_index(self) -> int:
        """Index of the clean condition."""
        for k, c in enumerate(self.conditions):
            if c.combo == CLEAN:
                return k
        raise SteeringError("this sweep has no clean (beta = 0) condition.")

    def select(
        self, combo: str, layer: int, beta: float, control: bool = False
    ) -> Float[np.ndarray, "n_seeds n_texts n_labels"]:
        """Values of the matching conditions (all seeds for controls; clean for beta 0)."""
        if float(beta) == 0.0:
            return self.values[[self.clean_index()]]
        hits = [
            k
            for k, c in enumerate(self.conditions)
            if c.layer == int(layer)
            and c.beta == float(beta)
            and c.control == control
            and (control or c.combo == combo)
        ]
        if not hits:
            kind = "control" if control else combo
            raise SteeringError(f"no {kind} condition at layer {layer}, beta {beta} in this sweep.")
        return self.values[hits]

    def combos(self) -> list[str]:
        """Steered combo names, in order."""
        return list(
            dict.fromkeys(c.combo for c in self.conditions if c.method not in ("clean", "random"))
        )

    def layers(self) -> list[int]:
        """Centre layers, in order."""
        return list(dict.fromkeys(c.layer for c in self.conditions if c.layer >= 0))

    def betas(self) -> list[float]:
        """Betas including 0, sorted."""
        return sorted({0.0} | {c.beta for c in self.conditions})

    def has_controls(self) -> bool:
        """Whether random-direction controls were run."""
        return any(c.control for c in self.conditions)

    def reply_summary(self) -> pd.DataFrame | None:
        """Judge readings per (group, emotion) of a generation sweep (``None`` without replies).

        Groups are ``("clean", -1, 0.0)``, each steered ``(combo, layer, beta)`` and
        ``("random", layer, beta)`` pooling the random directions of a cell. For emotion ``e``
        the rows of :func:`lens_emotion.judge.summarise_replies` are read with ``e`` as the
        target: ``judged_masked`` is the share of replies the masked judge labels ``e``,
        ``judged_raw`` the unmasked share, ``names_emotion`` the share naming ``e``,
        ``readout`` the second judge's share; ``kappa`` (all labels) is the same for every
        ``e`` of a group.
        """
        if self.replies is None:
            return None
        from lens_emotion.judge import summarise_replies
        from lens_emotion.lexicon import emotion_pattern

        base = self.replies.copy()
        groups = []
        for k in base["condition"]:
            c = self.conditions[int(k)]
            groups.append((c.combo if not c.control else "random", c.layer, c.beta))
        base["group_combo"] = [g[0] for g in groups]
        base["group_layer"] = [g[1] for g in groups]
        base["group_beta"] = [g[2] for g in groups]
        has_readout = "readout_label" in base.columns
        parts = []
        for emotion in self.label_names:
            pattern = emotion_pattern(emotion)
            part = base.assign(
                emotion=emotion,
                target=emotion,
                correct_masked=base["judged_masked"] == emotion,
                correct_raw=base["judged_raw"] == emotion,
                names_emotion=[pattern.search(r) is not None for r in base["reply"]],
            )
            if has_readout:
                part["correct_readout"] = base["readout_label"] == emotion
            parts.append(part)
        frame = pd.concat(parts, ignore_index=True)
        return summarise_replies(frame, ["group_combo", "group_layer", "group_beta", "emotion"])

    @property
    def table(self) -> pd.DataFrame:
        """:meth:`proportions` with this sweep's ``n_boot`` and ``boot_seed`` (computed once)."""
        if self._table is None:
            object.__setattr__(self, "_table", self.proportions(self.n_boot, self.boot_seed))
        return self._table

    def to_frame(self) -> pd.DataFrame:
        """:attr:`table` as a new DataFrame."""
        return self.table.copy()

    def save(self, out: str | Path) -> list[Path]:
        """Write :attr:`table` to ``out/<outcome>.csv`` (``readout.csv``, ``generation.csv``)."""
        path = Path(out) / f"{self.outcome}.csv"
        write_text_atomic(path, self.table.to_csv(index=False))
        return [path]

    def figure(self) -> go.Figure:
        """Stacked emotion bars against beta for the first combo and layer."""
        from lens_emotion.steering.figures import stacked_bars_figure

        combos, layers = self.combos(), self.layers()
        if not combos or not layers:
            raise SteeringError("this sweep has no steered combo to draw.")
        return stacked_bars_figure(self.table, combos[0], layers[0], self.outcome)

    def summary(self) -> dict[str, Any]:
        """Sizes, and per combo and layer the emotion moving most at each extreme beta."""
        table = self.table
        steered = table[~table["control"]]
        clean = steered[steered["beta"] == 0.0].groupby("emotion")["proportion"].first()
        shifts: dict[str, str] = {}
        nonzero = [b for b in self.betas() if b != 0.0]
        extremes = sorted({min(nonzero), max(nonzero)}) if nonzero else []
        for combo in self.combos():
            for layer in self.layers():
                for beta in extremes:
                    cell = steered[
                        (steered["appraisal_combo"] == combo)
                        & (steered["layer"] == layer)
                        & (steered["beta"] == beta)
                    ].set_index("emotion")["proportion"]
                    change = cell - clean.reindex(cell.index)
                    top = change.abs().idxmax()
                    shifts[f"{combo} L{layer} beta {beta:g}"] = f"{top} {change[top]:+.3f}"
        return {
            "outcome": self.outcome,
            "n_texts": int(self.values.shape[1]),
            "n_conditions": len(self.conditions),
            "combos": self.combos(),
            "layers": [int(x) for x in self.layers()],
            "betas": [float(b) for b in self.betas()],
            "controls": sum(c.control for c in self.conditions),
            "largest_shift": shifts,
        }

    def proportions(self, n_boot: int | None = None, seed: int | None = None) -> pd.DataFrame:
        """Proportion of each emotion per combo, layer and beta, with bootstrap CIs.

        For generation the proportion is the share of texts the judge labels as that emotion
        after masking every emotion word (``judged_masked``); for the readout it is the mean
        probability the readout gives it. Control rows (``control=True``) pool the random
        directions of the same layer and beta; their CI resamples texts (all seeds of a text
        together). Beta 0 rows are the clean run.

        Returns:
            Columns :data:`STEERING_COLUMNS`; for a generation sweep with replies,
            :data:`GENERATION_COLUMNS` (see :meth:`reply_summary`).

        Args:
            n_boot: Bootstrap resamples (default: the sweep's ``n_boot``).
            seed: Bootstrap seed (default: the sweep's ``boot_seed``).
        """
        n_boot = self.n_boot if n_boot is None else n_boot
        seed = self.boot_seed if seed is None else seed
        records = []
        controls = [False, True] if self.has_controls() else [False]
        for combo in self.combos():
            for layer in self.layers():
                for beta in self.betas():
                    for control in controls:
                        vals = self.select(combo, layer, beta, control).mean(axis=0)
                        mean, low, high = bootstrap_mean_ci(vals, n_boot, seed)
                        for j, emotion in enumerate(self.label_names):
                            records.append(
                                {
                                    "appraisal_combo": combo,
                                    "layer": int(layer),
                                    "beta": float(beta),
                                    "emotion": emotion,
                                    "proportion": float(mean[j]),
                                    "ci_low": float(low[j]),
                                    "ci_high": float(high[j]),
                                    "control": bool(control),
                                }
                            )
        table = pd.DataFrame(records, columns=list(STEERING_COLUMNS))
        summary = self.reply_summary()
        if summary is None:
            return table
        keys = pd.DataFrame(
            {
                "group_combo": np.where(
                    table["beta"] == 0.0,
                    CLEAN,
                    np.where(table["control"], "random", table["appraisal_combo"]),
                ),
                "group_layer": np.where(table["beta"] == 0.0, -1, table["layer"]),
                "group_beta": table["beta"],
                "emotion": table["emotion"],
            }
        )
        extra = [c for c in GENERATION_COLUMNS if c not in STEERING_COLUMNS]
        summary = summary.reindex(columns=[*keys.columns, *extra])
        merged = keys.merge(summary, on=list(keys.columns), how="left")
        for col in extra:
            table[col] = merged[col].to_numpy()
        return table[list(GENERATION_COLUMNS)]

    def transitions(self, combo: str, layer: int, beta: float) -> pd.DataFrame:
        """Clean vs steered argmax label per text (for Sankey diagrams)."""
        clean = self.values[self.clean_index()].argmax(-1)
        steered = self.select(combo, layer, beta)[0].argmax(-1)
        names = np.asarray(self.label_names)
        return pd.DataFrame(
            {
                "id": list(self.ids) or range(len(clean)),
                "clean": names[clean],
                "steered": names[steered],
            }
        )


def renormalised_probs(
    logprobs: Float[np.ndarray, "*batch labels"],
) -> Float[np.ndarray, "*batch labels"]:
    """Label log-probabilities as probabilities renormalised over the labels (a softmax)."""
    shifted = logprobs - logprobs.max(axis=-1, keepdims=True)
    p = np.exp(shifted)
    return p / p.sum(axis=-1, keepdims=True)


def readout_sweep(
    model: EmotionModel,
    prompt_set: PromptSet,
    conditions: Sequence[SteeringCondition],
    site: str = "resid_post",
    scale: Literal["none", "rms"] = "none",
    positions: Literal["last", "all"] = "last",
    batch_size: int = 16,
    ids: Sequence[str] = (),
    progress: bool = True,
    n_boot: int = 1000,
    boot_seed: int = 0,
) -> SweepOutcome:
    """Outcome 1: the label distribution at the inference prompt's readout, per condition.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        prompt_set: Inference prompts (:func:`lens_emotion.prompts.build_prompts`).
        conditions: From :func:`build_conditions`.
        site: Hooked site.
        scale: ``"none"`` or ``"rms"``.
        positions: ``"last"`` (the paper: last prompt token) or ``"all"``.
        batch_size: Prompts per forward pass.
        ids: Dataset ids of the prompts (for records).
        progress: Show a progress bar.
        n_boot: Bootstrap resamples of the outcome's :attr:`SweepOutcome.table`.
        boot_seed: Seed of that bootstrap.

    Returns:
        A :class:`SweepOutcome` with ``outcome="readout"``.
    """
    hook_sets = [c.hooks(model, site, scale, positions) for c in conditions]
    logprobs = readout_many(model, prompt_set, hook_sets, batch_size, progress=progress)
    return SweepOutcome(
        outcome="readout",
        conditions=tuple(conditions),
        values=renormalised_probs(logprobs.astype(np.float64)),
        label_names=tuple(prompt_set.label_tokens.labels),
        ids=tuple(ids),
        n_boot=n_boot,
        boot_seed=boot_seed,
    )


GENERATION_INSTRUCTION = "Describe how you felt when this happened: {text}"
"""Default user turn of the generation prompt (``{text}`` = the event description)."""

GENERATION_PREFIX = "I felt"
"""Default start of the assistant's answer; the judge reads it together with the continuation."""


def generation_prompts(
    model: EmotionModel,
    texts: Sequence[str],
    instruction: str = GENERATION_INSTRUCTION,
    prefix: str = GENERATION_PREFIX,
) -> tuple[list[str], bool]:
    """Prompts asking the model to describe how the writer felt, one per event text.

    With a chat template the instruction is a user turn and ``prefix`` starts the assistant
    turn; without one, the instruction and ``prefix`` on two lines.

    Returns:
        ``(prompts, add_special_tokens)`` for
        :func:`~lens_emotion.interventions.generate_with_hooks`.
    """
    if "{text}" not in instruction:
        raise SteeringError("the generation instruction needs a {text} placeholder.")
    tok = model.tokenizer
    bodies = [instruction.format(text=t.strip()) for t in texts]
    if getattr(tok, "chat_template", None):
        prompts = [
            tok.apply_chat_template(
                [{"role": "user", "content": body}], tokenize=False, add_generation_prompt=True
            )
            + prefix
            for body in bodies
        ]
        return prompts, False
    return [f"{body}\n{prefix}" for body in bodies], True


def generation_sweep(
    model: EmotionModel,
    texts: Sequence[str],
    conditions: Sequence[SteeringCondition],
    judge: Any,
    site: str = "resid_post",
    scale: Literal["none", "rms"] = "none",
    positions: Literal["last", "all"] = "all",
    max_new_tokens: int = 24,
    batch_size: int = 16,
    seed: int = 0,
    instruction: str = GENERATION_INSTRUCTION,
    prefix: str = GENERATION_PREFIX,
    ids: Sequence[str] = (),
    progress: bool = True,
    readout: Any | None = None,
    n_boot: int = 1000,
    boot_seed: int = 0,
) -> SweepOutcome:
    """Outcome 2: steered free generation, each continuation classified by ``judge``.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        texts: Event descriptions.
        conditions: From :func:`build_conditions`.
        judge: An independent classifier usable by :func:`lens_emotion.judge.score_replies`
            (``.labels``, ``.predict(texts, batch_size=, progress=, mask=)``), e.g.
            :func:`lens_emotion.judge.load_judge`. It reads every reply masked (the primary
            label) and raw.
        site: Hooked site.
        scale: ``"none"`` or ``"rms"``.
        positions: ``"all"`` (every position, generated tokens included) or ``"last"``.
        max_new_tokens: Tokens generated per text (greedy).
        batch_size: Prompts per batch.
        seed: Generation seed (greedy decoding does not use it).
        instruction: User turn with ``{text}``.
        prefix: Start of the answer; the judge classifies ``prefix + continuation``.
        ids: Dataset ids of the texts.
        progress: Show a progress bar.
        readout: Optional second judge with ``.predict(texts)`` (e.g.
            :class:`lens_emotion.judge.ReadoutJudge` on the *unsteered* model); it reads the
            masked replies after all generation is done.
        n_boot: Bootstrap resamples of the outcome's :attr:`SweepOutcome.table`.
        boot_seed: Seed of that bootstrap.

    Returns:
        A :class:`SweepOutcome` with ``outcome="generation"``, one-hot masked-judge labels as
        values, the continuations in ``texts`` and every reply's scores in ``replies``.
    """
    from lens_emotion.judge import score_replies

    prompts, special = generation_prompts(model, texts, instruction, prefix)
    labels = tuple(judge.labels)
    values = np.zeros((len(conditions), len(texts), len(labels)))
    generated: list[tuple[str, ...]] = []
    replies: list[str] = []
    for cond in tqdm(conditions, desc="steered generation", disable=not progress):
        outs = generate_with_hooks(
            model,
            prompts,
            cond.hooks(model, site, scale, positions),
            max_new_tokens=max_new_tokens,
            seed=seed,
            batch_size=batch_size,
            progress=False,
            add_special_tokens=special,
        )
        replies += [f"{prefix}{o}".strip() or prefix for o in outs]
        generated.append(tuple(outs))
    n = len(texts)
    extra = {
        "condition": np.repeat(np.arange(len(conditions)), n).tolist(),
        "text_index": np.tile(np.arange(n), len(conditions)).tolist(),
    }
    frame = score_replies(
        judge, replies, [labels[0]] * len(replies), readout=readout, extra=extra, progress=progress
    )
    index = {lab: j for j, lab in enumerate(labels)}
    for row, label in enumerate(frame["judged_masked"]):
        if label in index:  # empty replies are labelled NO_REPLY and stay all-zero
            values[row // n, row % n, index[label]] = 1.0
    scores = frame.drop(
        columns=[
            c
            for c in (
                "target",
                "correct_masked",
                "correct_raw",
                "names_emotion",
                "fluent_correct_masked",
                "correct_readout",
            )
            if c in frame.columns
        ]
    )
    return SweepOutcome(
        outcome="generation",
        conditions=tuple(conditions),
        values=values,
        label_names=labels,
        texts=tuple(generated),
        ids=tuple(ids),
        replies=scores,
        n_boot=n_boot,
        boot_seed=boot_seed,
    )
