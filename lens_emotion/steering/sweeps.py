"""Steering directions and sweeps: appraisal unique-effect vectors, emotion promotion, controls.

**Appraisal directions.** :func:`lens_emotion.probing.probe_appraisals` fits ridge probes on
standardised activations and maps them back to the raw activation space, so for a raw
activation ``x`` the probe reads ``pred = x @ W.T + b`` (:func:`appraisal_readout`). Rows of
``W`` are the appraisal directions ``w_a``.

**Unique-effect vectors.** For appraisal ``a``, ``z_a = (I - P_others) w_a`` where
``P_others`` projects onto the span of the other appraisals' directions
(:func:`unique_effect_vector`, a least-squares solve, never an explicit inverse). Because
``w_b . z_a = 0`` for every other ``b``, adding ``z_a`` moves the probe readout of ``a`` and
leaves the others unchanged. (The code released with Tak et al. computes this projection but
then steers with the unprojected ``w_a``; here the projection is applied. ``method="raw"``
keeps the unprojected sum as a comparison.)

**Joint combinations** (:func:`combo_vector`) such as ``+pleasantness +other_responsblt``:
the *minimum-norm* vector ``v`` with ``w_a . v = s_a`` for every appraisal ``a`` of the combo
(sign ``s_a``) and ``w_b . v = 0`` for every held-fixed appraisal ``b``, i.e. one rating
point of change per named appraisal and none elsewhere, in the readout of the probes. For a
single appraisal this is ``z_a / ||z_a||^2``, parallel to ``z_a``. Hooks normalise it, so
``beta`` (see :mod:`lens_emotion.interventions`) sets the step length in activation units.

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

**Controls.** Random Gaussian directions, seeded per (seed, layer), steered with the same
``beta`` (hence the same step norm) as the real directions.

**Sweeps.** :func:`readout_sweep` (outcome 1: label distribution at the inference prompt's
readout) and :func:`generation_sweep` (outcome 2: free generation, judged by an independent
classifier) evaluate every :class:`SteeringCondition` and return a :class:`SweepOutcome`,
whose :meth:`SweepOutcome.table` gives per-emotion proportions with bootstrap CIs next to the
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

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from lens_emotion.errors import LensEmotionError
from lens_emotion.interventions import (
    HookFn,
    generate_with_hooks,
    readout_many,
    steering_hooks,
)

__all__ = [
    "CLEAN",
    "GENERATION_INSTRUCTION",
    "GENERATION_PREFIX",
    "PROMOTION_COLUMNS",
    "GENERATION_COLUMNS",
    "STEERING_COLUMNS",
    "AppraisalCombo",
    "PromotionResult",
    "SteeringCondition",
    "SteeringError",
    "SweepOutcome",
    "appraisal_matrix",
    "appraisal_readout",
    "bootstrap_mean_ci",
    "build_conditions",
    "combo_vector",
    "conditions_frame",
    "emotion_promotion",
    "generation_prompts",
    "generation_sweep",
    "min_norm_readout_vector",
    "promotion_vector",
    "random_direction",
    "readout_sweep",
    "unique_effect_vector",
]

#: Columns of :meth:`SweepOutcome.table` (and ``steering.csv``), in order.
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

#: Columns of :meth:`SweepOutcome.table` for a generation sweep (``steering.csv``):
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


class SteeringError(LensEmotionError, ValueError):
    """A steering request is inconsistent: unknown appraisal, bad signs, missing probes."""


# --------------------------------------------------------------------------- combos


@dataclass(frozen=True)
class AppraisalCombo:
    """Signed appraisals steered together, e.g. ``+pleasantness,+other_responsblt``.

    Attributes:
        appraisals: Appraisal names.
        signs: ``+1`` or ``-1`` per appraisal.
    """

    appraisals: tuple[str, ...]
    signs: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.appraisals:
            raise SteeringError("a combo needs at least one appraisal, e.g. 'pleasantness'.")
        if len(self.signs) != len(self.appraisals):
            raise SteeringError(
                f"{len(self.appraisals)} appraisal(s) but {len(self.signs)} sign(s); give one "
                "sign per appraisal, e.g. --appraisal pleasantness,other_responsblt --signs +,+."
            )
        if any(s not in (1, -1) for s in self.signs):
            raise SteeringError(f"signs must be +1 or -1, got {list(self.signs)}.")
        if len(set(self.appraisals)) != len(self.appraisals):
            raise SteeringError(f"an appraisal is repeated in {list(self.appraisals)}.")

    @property
    def name(self) -> str:
        """``"+pleasantness,+other_responsblt"``."""
        return ",".join(
            f"{'+' if s > 0 else '-'}{a}" for a, s in zip(self.appraisals, self.signs, strict=True)
        )

    @classmethod
    def parse(cls, appraisals: str | Sequence[str], signs: str | Sequence[Any] | None = None):
        """Build a combo from CLI-style text.

        Args:
            appraisals: ``"pleasantness,other_responsblt"``, a list of names, or signed names
                such as ``"+pleasantness,-other_responsblt"``.
            signs: ``"+,-"`` (or ``["+", "-"]``, ``[1, -1]``); default from the names or ``+``.

        Raises:
            SteeringError: Mismatched counts or signs other than ``+``/``-``.
        """
        if isinstance(appraisals, str):
            items = appraisals.split(",")
        else:
            items = [str(a) for a in appraisals]
        names = [n.strip() for n in items if n.strip()]
        inline = [-1 if n.startswith("-") else 1 for n in names]
        names = [n.lstrip("+-") for n in names]
        if signs is None:
            values = inline
        else:
            raw = signs.split(",") if isinstance(signs, str) else list(signs)
            parsed = []
            for s in raw:
                text = str(s).strip()
                if text in ("+", "+1", "1"):
                    parsed.append(1)
                elif text in ("-", "-1"):
                    parsed.append(-1)
                else:
                    raise SteeringError(f"sign {s!r} is neither '+' nor '-'; use e.g. --signs +,-.")
            if len(parsed) != len(names):
                raise SteeringError(
                    f"{len(names)} appraisal(s) but {len(parsed)} sign(s); give one sign per "
                    "appraisal, e.g. --appraisal pleasantness,other_responsblt --signs +,+."
                )
            values = [p * i for p, i in zip(parsed, inline, strict=True)]
        return cls(tuple(names), tuple(values))


# --------------------------------------------------------------------------- appraisal directions


def appraisal_matrix(
    result: Any, site: str, layer: int
) -> tuple[Float[np.ndarray, "A d"], Float[np.ndarray, " A"], tuple[str, ...]]:
    """Raw-space appraisal directions ``W``, intercepts ``b`` and names at one site and layer.

    Args:
        result: An :class:`~lens_emotion.probing.AppraisalProbeResult`.
        site: Site the probes were fitted at.
        layer: Layer.

    Raises:
        SteeringError: No probe at that site and layer.
    """
    key = (site, int(layer))
    if key not in result.directions:
        raise SteeringError(
            f"no appraisal probe at {site} layer {layer}; probed: "
            f"{sorted(result.directions)[:8]}. Probe that layer with probe_appraisals(...)."
        )
    w = np.asarray(result.directions[key], dtype=np.float64)
    b = np.asarray(result.intercepts[key], dtype=np.float64)
    return w, b, tuple(result.appraisal_names)


def appraisal_readout(
    x: Float[np.ndarray, "n d"], w: Float[np.ndarray, "A d"], b: Float[np.ndarray, " A"]
) -> Float[np.ndarray, "n A"]:
    """The probes' predicted appraisal ratings for raw activations: ``x @ W.T + b``."""
    return np.asarray(x, dtype=np.float64) @ np.asarray(w, dtype=np.float64).T + b


def unique_effect_vector(
    w: Float[np.ndarray, "A d"], index: int, others: Sequence[int] | None = None
) -> Float[np.ndarray, " d"]:
    """``z_a = (I - P_others) w_a``: the part of ``w_a`` orthogonal to the other directions.

    ``P_others w_a`` is the least-squares fit of ``w_a`` by the other directions (``lstsq``;
    rank-deficient sets of directions are handled), so no matrix is inverted.

    Args:
        w: Direction matrix (one row per appraisal).
        index: Row of ``a``.
        others: Rows to project out (default: every other row).

    Returns:
        ``z_a`` (float64). Zero if ``w_a`` lies in the span of the others.
    """
    w = np.asarray(w, dtype=np.float64)
    rows = [i for i in range(len(w)) if i != index] if others is None else list(others)
    if index in rows:
        raise SteeringError(f"row {index} cannot be both the target and one of the others.")
    target = w[index]
    if not rows:
        return target.copy()
    basis = w[rows].T  # (d, k)
    coef, *_ = np.linalg.lstsq(basis, target, rcond=None)
    return target - basis @ coef


def min_norm_readout_vector(
    w: Float[np.ndarray, "k d"], delta: Float[np.ndarray, " k"]
) -> Float[np.ndarray, " d"]:
    """The shortest ``v`` with ``w @ v = delta`` (least squares if no exact solution exists)."""
    v, *_ = np.linalg.lstsq(np.asarray(w, dtype=np.float64), np.asarray(delta, float), rcond=None)
    return v


def _indices(names: Sequence[str], wanted: Sequence[str], what: str) -> list[int]:
    missing = [a for a in wanted if a not in names]
    if missing:
        raise SteeringError(
            f"{what} {missing} are not among the probed appraisals {list(names)}; check the "
            "spelling (crowd-enVENT names such as 'pleasantness', 'other_responsblt')."
        )
    return [list(names).index(a) for a in wanted]


def combo_vector(
    result: Any,
    site: str,
    layer: int,
    combo: AppraisalCombo,
    method: Literal["unique", "raw"] = "unique",
    fixed: Sequence[str] | None = None,
) -> Float[np.ndarray, " d"]:
    """The steering vector of a signed appraisal combination at one layer.

    Args:
        result: An :class:`~lens_emotion.probing.AppraisalProbeResult`.
        site: Probe site.
        layer: Probe layer.
        combo: The signed appraisals.
        method: ``"unique"``: the minimum-norm vector that moves each combo appraisal's
            readout by its sign and every ``fixed`` appraisal's by 0 (see the module
            docstring). ``"raw"``: ``sum_a s_a w_a``, the unprojected probe weights.
        fixed: Appraisals held fixed (default: every probed appraisal not in the combo).

    Raises:
        SteeringError: Unknown appraisals, a fixed appraisal that is also in the combo, or a
            combo that cannot be moved independently of the fixed ones.
    """
    w, _, names = appraisal_matrix(result, site, layer)
    idx = _indices(names, combo.appraisals, "appraisals")
    signs = np.asarray(combo.signs, dtype=np.float64)
    if method == "raw":
        return signs @ w[idx]
    if method != "unique":
        raise SteeringError(f"method must be 'unique' or 'raw', not {method!r}.")
    if fixed is None:
        fixed_idx = [i for i in range(len(names)) if i not in idx]
    else:
        fixed_idx = _indices(names, fixed, "fixed appraisals")
        clash = sorted(set(fixed_idx) & set(idx))
        if clash:
            raise SteeringError(
                f"{[names[i] for i in clash]} are both steered and held fixed; drop them from "
                "the fixed list."
            )
    rows = idx + fixed_idx
    delta = np.concatenate([signs, np.zeros(len(fixed_idx))])
    v = min_norm_readout_vector(w[rows], delta)
    reached = w[idx] @ v
    if not np.allclose(reached, signs, atol=1e-6 * max(1.0, float(np.abs(w).max()))):
        raise SteeringError(
            f"{combo.name} cannot be moved while holding {len(fixed_idx)} other appraisals "
            "fixed at this layer (its directions lie in their span); hold fewer fixed."
        )
    return v


def random_direction(d: int, seed: int, layer: int, norm: float = 1.0) -> Float[np.ndarray, " d"]:
    """A Gaussian random direction of a given norm, reproducible from ``(seed, layer)``."""
    digest = hashlib.sha256(f"random-direction:{seed}:{layer}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    v = rng.standard_normal(d)
    return v / np.linalg.norm(v) * norm


def promotion_vector(emotion_result: Any, site: str, layer: int, emotion: str) -> np.ndarray:
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
        model: Any,
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


def _window(layer: int, span: int) -> list[int]:
    if span < 1 or span % 2 == 0:
        raise SteeringError(
            f"span must be an odd number >= 1 (a window centred on the layer), got {span}."
        )
    half = span // 2
    return list(range(layer - half, layer + half + 1))


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
            window = _window(int(layer), span)
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
        window = _window(int(layer), span)
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


# --------------------------------------------------------------------------- bootstrap


def bootstrap_mean_ci(
    values: Float[np.ndarray, "n ..."], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over the first axis with a percentile bootstrap CI (resampling rows).

    Returns:
        ``(mean, low, high)``, each of shape ``values.shape[1:]``.
    """
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    mean = v.mean(axis=0)
    if n < 2:
        return mean, mean.copy(), mean.copy()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    boots = v[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(boots, [alpha, 1.0 - alpha], axis=0)
    return mean, low, high


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
    """

    outcome: str
    conditions: tuple[SteeringCondition, ...]
    values: np.ndarray = field(repr=False)
    label_names: tuple[str, ...]
    texts: tuple[tuple[str, ...], ...] | None = field(default=None, repr=False)
    ids: tuple[str, ...] = ()
    replies: pd.DataFrame | None = field(default=None, repr=False)

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

    def table(self, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
        """Proportion of each emotion per combo, layer and beta, with bootstrap CIs.

        For generation the proportion is the share of texts the judge labels as that emotion
        after masking every emotion word (``judged_masked``); for the readout it is the mean
        probability the readout gives it. Control rows (``control=True``) pool the random
        directions of the same layer and beta; their CI resamples texts (all seeds of a text
        together). Beta 0 rows are the clean run.

        Returns:
            Columns :data:`STEERING_COLUMNS`; for a generation sweep with replies,
            :data:`GENERATION_COLUMNS` (see :meth:`reply_summary`).
        """
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


def _renormalised_probs(logprobs: np.ndarray) -> np.ndarray:
    shifted = logprobs - logprobs.max(axis=-1, keepdims=True)
    p = np.exp(shifted)
    return p / p.sum(axis=-1, keepdims=True)


def readout_sweep(
    model: Any,
    prompt_set: Any,
    conditions: Sequence[SteeringCondition],
    site: str = "resid_post",
    scale: Literal["none", "rms"] = "none",
    positions: Literal["last", "all"] = "last",
    batch_size: int = 16,
    ids: Sequence[str] = (),
    progress: bool = True,
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

    Returns:
        A :class:`SweepOutcome` with ``outcome="readout"``.
    """
    hook_sets = [c.hooks(model, site, scale, positions) for c in conditions]
    logprobs = readout_many(model, prompt_set, hook_sets, batch_size, progress=progress)
    return SweepOutcome(
        outcome="readout",
        conditions=tuple(conditions),
        values=_renormalised_probs(logprobs.astype(np.float64)),
        label_names=tuple(prompt_set.label_tokens.labels),
        ids=tuple(ids),
    )


GENERATION_INSTRUCTION = "Describe how you felt when this happened: {text}"
"""Default user turn of the generation prompt (``{text}`` = the event description)."""

GENERATION_PREFIX = "I felt"
"""Default start of the assistant's answer; the judge reads it together with the continuation."""


def generation_prompts(
    model: Any,
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
    model: Any,
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
        "condition": np.repeat(np.arange(len(conditions)), n),
        "text_index": np.tile(np.arange(n), len(conditions)),
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
    )


# --------------------------------------------------------------------------- emotion promotion

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


def _normalised_gain(p_clean: np.ndarray, p_new: np.ndarray) -> np.ndarray:
    up = (p_new - p_clean) / np.clip(1.0 - p_clean, 1e-12, None)
    down = (p_new - p_clean) / np.clip(p_clean, 1e-12, None)
    return np.where(p_new >= p_clean, up, down)


def emotion_promotion(
    model: Any,
    prompt_set: Any,
    emotion_result: Any,
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
            window = _window(int(layer), span)
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
    probs = _renormalised_probs(
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
