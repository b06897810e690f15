"""The end-to-end emotion-circuit run behind ``lens-emotion circuits`` and notebook 06.

Steps (every one seeded). **Everything that chooses components, strengths or windows sees
discovery scenarios only**; held-out scenarios (or a separate evaluation file, ``eval_sev``)
are used only to measure:

1. split the SEV scenarios by ``skeleton_id`` into discovery and held-out parts (or take
   discovery scenarios from one file and evaluation scenarios from another);
2. one hooked pass over the discovery prompts (6 emotions x 3 valences per scenario, plus the
   neutral prompts) keeping every layer's last-token activations (and all-position means of
   heads and neurons, for the judged ablation);
3. *discovery*: context-agnostic directions; *evaluation*: their consistency across
   themes/valences and their accuracy on held-out prompts that name the emotion and on
   held-out prompts that only describe it;
4. *discovery*: head and neuron scores by exact decomposition, with a **consistency check**
   against explicit per-head zero-ablation of the same layer (an identity by algebra: it
   checks the code, not causal importance); top-k overlap across emotions;
5. *discovery*: sublayer influence (on discovery prompts) and per-emotion circuits;
6. *evaluation*: ablation / enhancement sweeps with random controls (final emotion score,
   last-token edits with last-token means) and the **total effect** of single heads and
   neurons through every later layer, compared with their direct scores (Spearman, top-16
   overlap), on held-out prompts;
7. *evaluation*: judged replies with top-k vs random-k components ablated at every position
   (position-matched all-position means), on held-out prompts;
8. *discovery*: every method's strength (and window) tuned on discovery neutral prompts with
   grids of the same size, chosen by the rule fixed in :class:`CircuitSettings`;
9. *evaluation*: circuit modulation vs prompting vs direction steering on held-out neutral
   prompts.

Generation tables report the masked judge first (``judged_masked``), then ``judged_raw``,
``names_emotion``, ``fluency``, the second judge's accuracy (``readout``), Cohen's kappa and
a disagreement note (:func:`~.modulation.summarise_generations`).
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from lens_emotion.circuits.ablation import ComponentMeans, ablation_sweep, default_ks
from lens_emotion.circuits.capture import capture_last_token
from lens_emotion.circuits.circuit import EmotionCircuit, assemble_circuit
from lens_emotion.circuits.components import (
    decomposition_reason,
    head_ablation_effects,
    head_contributions,
    head_output_weights,
    mlp_output_weights,
    score_components,
    topk_overlap,
)
from lens_emotion.circuits.directions import (
    complete_groups,
    compute_directions,
    direction_consistency,
)
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.circuits.generation import judged_ablation
from lens_emotion.circuits.influence import residual_rms, sublayer_influence
from lens_emotion.circuits.modulation import (
    control_comparison,
    emotion_means,
    modulation_hooks,
    select_setting,
    steering_baseline_hooks,
    tune_strength,
)
from lens_emotion.circuits.scoring import LastTokenScorer
from lens_emotion.circuits.sev_prompts import (
    DESCRIBED_EMOTIONS,
    DESCRIBED_SYSTEM,
    EMOTION_SYSTEM,
    NEUTRAL_SYSTEM,
    SevPrompts,
    build_sev_prompts,
    one_valence_per_scenario,
    split_files,
    split_scenarios,
)
from lens_emotion.circuits.total_effect import total_effect_summary, total_effects
from lens_emotion.io import write_json_atomic, write_text_atomic
from lens_emotion.manifest import override_seed_formats, run_manifest, start_run

if TYPE_CHECKING:
    from lens_emotion.models import EmotionModel

__all__ = [
    "CircuitSettings",
    "CircuitsOutputs",
    "auto_check_layers",
    "auto_steer_windows",
    "gamma_meaning",
    "parse_windows",
    "run_circuits",
]


def parse_windows(text: str) -> list[tuple[int, ...]]:
    """``"10-19,20-29"`` -> ``[(10, ..., 19), (20, ..., 29)]`` (a single number is one layer).

    Raises:
        CircuitError: Malformed text.
    """
    windows = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
            else:
                lo = hi = int(part)
        except ValueError as exc:
            raise CircuitError(
                f"bad layer window {part!r}; write windows like '10-19,20-29'."
            ) from exc
        if hi < lo:
            raise CircuitError(f"layer window {part!r} ends before it starts.")
        windows.append(tuple(range(lo, hi + 1)))
    if not windows:
        raise CircuitError("no layer window given; write windows like '10-19,20-29'.")
    return windows


def auto_check_layers(n_layers: int) -> tuple[int, ...]:
    """The decomposition check's default layers: first, middle and last (0, 14, 29 of 30)."""
    return tuple(sorted({0, (n_layers - 1) // 2, n_layers - 1}))


def auto_steer_windows(n_layers: int) -> tuple[tuple[int, ...], ...]:
    """The steering baseline's default windows: the middle and last third of the layers.

    10-19 and 20-29 on a 30-layer model, 6-11 and 12-17 on 18 layers.
    """
    middle = tuple(range(n_layers // 3, max(n_layers // 3 + 1, 2 * n_layers // 3)))
    late = tuple(range(2 * n_layers // 3, n_layers))
    return tuple(w for w in (middle, late) if w)


@dataclass(frozen=True)
class CircuitSettings:
    """Sizes, strengths and the tuning rule of a run (all recorded in the manifest).

    Attributes:
        n_scenarios: Discovery scenarios (each: 3 valences x 6 emotions + 3 neutral prompts).
        n_eval_scenarios: Held-out scenarios.
        eval_fraction: Share of the scenarios held out before subsetting (ignored with a
            separate evaluation file).
        n_ablation_prompts: Prompts per emotion for the ablation sweeps and total effects
            (held-out) and for the sublayer influence (discovery).
        max_k_heads: Largest k of the head sweep (powers of two up to it).
        max_k_neurons: Largest k of the neuron sweep.
        interventions: Interventions of the sweep.
        scale_factor: Factor of the ``scale`` intervention.
        n_random: Random draws per control.
        check_prompts: Prompts for the decomposition-vs-ablation consistency check.
        check_layers: Layers of that check (``None``/all: every layer; ``"auto"``: the
            first, middle and last layer, 0,14,29 on 30 layers).
        total_effect_heads: Heads per emotion whose total effect is measured (the direct
            top-k; ``0``: every head).
        total_effect_neurons: Neurons per emotion whose total effect is measured (direct
            top-k).
        alpha: Injection size of the sublayer influence, in RMS units.
        circuit_heads: Heads per circuit.
        circuit_neurons: Neurons per circuit.
        circuit_sublayers: Most influential sublayers listed per circuit.
        described_consistency: Also measure direction accuracy on held-out prompts that
            describe the emotion without naming it.
        generate: Run the generation parts (judged ablation, tuning, comparison).
        readout_judge: Add the second judge (the unsteered model's label readout on masked
            replies) to every generation table.
        gen_ablation_prompts: Prompts per emotion for the judged ablation.
        gen_ablation_k: ``{kind: k}`` of the judged ablation.
        gen_ablation_intervention: Its intervention (at every position, with all-position
            means).
        n_tune_scenarios: Discovery scenarios (one valence each) for strength tuning.
        gamma_grid: Circuit-modulation strengths tried. ``gamma = 1`` moves the circuit to
            its emotion-conditioned state (on average); ``gamma = g`` moves it ``g`` times as
            far.
        beta_grid: Steering strengths tried (per layer, RMS units), in every window.
        steer_windows: Steering layer windows tried (``"auto"``: the middle and last third of
            the layers, 10-19,20-29 on 30 layers).
        selection_metric: What the tuning rule maximises (``"judged_masked"``,
            ``"fluent_judged_masked"`` or ``"judged_raw"``).
        max_degenerate: The rule admits only settings whose degenerate share is at most this.
        positions: ``"last"`` (last prompt token) or ``"all"`` for steering and modulation.
        min_words: Replies with fewer words are degenerate.
        min_distinct: Replies with a lower distinct-bigram ratio are degenerate (loops).
        max_new_tokens: Tokens per reply.
        n_boot: Bootstrap resamples of every interval.
        batch_size: Prompts per batch.
        seed: Seed of the split, subsets, random controls and bootstrap.
        formats: Figure formats (``html``, and ``png``/``svg``/``pdf`` with kaleido).

    Every method gets a strength grid of the same size (``len(gamma_grid) ==
    len(beta_grid)``, both starting at small strengths), all evaluated on the same discovery
    tuning prompts; steering tries each strength in every window, so it gets
    ``len(steer_windows)`` times as many settings, which favours the baseline. Prompting has
    no knob and is not tuned.

    Raises:
        CircuitError: Unequal tuning budgets, an unknown selection metric or a bad share.
    """

    n_scenarios: int = 40
    n_eval_scenarios: int = 20
    eval_fraction: float = 0.25
    n_ablation_prompts: int = 12
    max_k_heads: int = 64
    max_k_neurons: int = 1024
    interventions: tuple[str, ...] = ("zero", "mean", "scale")
    scale_factor: float = 2.0
    n_random: int = 3
    check_prompts: int = 2
    check_layers: tuple[int, ...] | None | str = "auto"
    total_effect_heads: int = 64
    total_effect_neurons: int = 64
    alpha: float = 1.0
    circuit_heads: int = 16
    circuit_neurons: int = 128
    circuit_sublayers: int = 6
    described_consistency: bool = True
    generate: bool = True
    readout_judge: bool = True
    gen_ablation_prompts: int = 6
    gen_ablation_k: dict[str, int] = field(default_factory=lambda: {"head": 16, "neuron": 256})
    gen_ablation_intervention: str = "mean"
    n_tune_scenarios: int = 6
    gamma_grid: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    beta_grid: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    steer_windows: tuple[tuple[int, ...], ...] | str = "auto"
    selection_metric: str = "judged_masked"
    max_degenerate: float = 0.2
    positions: str = "last"
    min_words: int = 5
    min_distinct: float = 0.5
    max_new_tokens: int = 30
    n_boot: int = 2000
    batch_size: int = 16
    seed: int = 0
    formats: tuple[str, ...] = ("html",)

    def __post_init__(self) -> None:
        from lens_emotion.circuits.modulation import SELECTION_METRICS

        for name in ("check_layers", "steer_windows"):
            value = getattr(self, name)
            if isinstance(value, str) and value != "auto":
                raise CircuitError(f"{name} must be layers or 'auto', not {value!r}.")
        if self.generate and len(self.gamma_grid) != len(self.beta_grid):
            raise CircuitError(
                f"unequal tuning budgets: {len(self.gamma_grid)} gammas vs "
                f"{len(self.beta_grid)} betas; give both methods strength grids of the same "
                "size (e.g. 1,2,4,8,16,32)."
            )
        if self.selection_metric not in SELECTION_METRICS:
            raise CircuitError(
                f"unknown selection_metric {self.selection_metric!r}; choose from "
                f"{SELECTION_METRICS}."
            )
        if not 0.0 <= self.max_degenerate <= 1.0:
            raise CircuitError(f"max_degenerate must lie in [0, 1], got {self.max_degenerate}.")

    @property
    def selection_rule(self) -> str:
        """The tuning rule in words (fixed before the run; recorded in the manifest)."""
        from lens_emotion.circuits.modulation import selection_rule_text

        return selection_rule_text(self.selection_metric, self.max_degenerate)

    def for_model(self, n_layers: int) -> CircuitSettings:
        """These settings with every ``"auto"`` layer choice made for an ``n_layers`` model.

        Raises:
            CircuitError: Given check layers or steering windows past the model's last layer.
        """
        check = self.check_layers
        check = auto_check_layers(n_layers) if check == "auto" else check
        windows = self.steer_windows
        windows = auto_steer_windows(n_layers) if windows == "auto" else windows
        if check and max(check) >= n_layers:
            raise CircuitError(
                f"check_layers {max(check)} is past the model's last layer {n_layers - 1}; "
                f"use layers in 0-{n_layers - 1}, all or auto."
            )
        too_far = [w for w in windows if w[-1] >= n_layers]
        if too_far:
            raise CircuitError(
                f"steering window {too_far[0][0]}-{too_far[0][-1]} reaches past the model's "
                f"{n_layers} layers; pass windows within 0-{n_layers - 1} (e.g. "
                f"{n_layers // 3}-{2 * n_layers // 3 - 1}) or auto."
            )
        return dataclasses.replace(self, check_layers=check, steer_windows=windows)

    def describe(self) -> dict[str, Any]:
        """JSON-ready settings."""
        out = dict(self.__dict__)
        if not isinstance(self.steer_windows, str):
            out["steer_windows"] = [f"{w[0]}-{w[-1]}" for w in self.steer_windows]
        out["selection_rule"] = self.selection_rule
        return out


@dataclass
class CircuitsOutputs:
    """Everything :func:`run_circuits` computed (also written to files).

    Attributes:
        directions: The :class:`~.directions.EmotionDirections`.
        consistency: Consistency table.
        scores: ``{"head", "neuron"}`` component scores.
        head_check: Decomposition vs explicit ablation (max abs difference etc.).
        ablation: Ablation sweep table.
        influence: Sublayer influence table.
        circuits: ``{emotion: EmotionCircuit}``.
        control: Comparison table (``None`` without generation).
        tables: Further tables by name (overlap, tuning, judged ablation, ...).
        figures: Plotly figures by name.
        files: Written files, relative to the output folder.
        timings: Seconds per step.
        chosen: The tuned strengths and windows (``circuit_gamma`` with its meaning in
            words, ``steering_beta``, ``steering_window``, the rule's notes); empty without
            generation.
    """

    directions: Any
    consistency: pd.DataFrame
    scores: dict[str, Any]
    head_check: dict[str, Any]
    ablation: pd.DataFrame
    influence: pd.DataFrame
    circuits: dict[str, EmotionCircuit]
    control: pd.DataFrame | None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    chosen: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Headline numbers of the run, JSON-ready (the sweep's circuits rows read them).

        ``directions``: the best held-out projection accuracy over sites and layers (with its
        chance rate and prompt count) and the same on prompts that describe the emotion
        without naming it; ``head_check``: the decomposition-vs-ablation consistency check;
        ``ablation``: per component type and k, the mean over emotions of the score drop
        as a share of the unablated score (first intervention), against k random
        components;
        ``total_effect``: per type, the mean Spearman between direct and total effects and
        the mean top overlap; ``control`` (with generation): the pooled masked-judge share
        per method with its CI.
        """
        out: dict[str, Any] = {}
        table = self.consistency
        if "heldout_accuracy" in table and table["heldout_accuracy"].notna().any():
            best = table.loc[table["heldout_accuracy"].idxmax()]
            out["directions"] = {
                "site": str(best["site"]),
                "layer": int(best["layer"]),
                "heldout_accuracy": float(best["heldout_accuracy"]),
                "chance": float(best["chance"]),
                "n_heldout": int(best["n_heldout"]),
            }
        described = table.get("heldout_accuracy_described")
        if described is not None and described.notna().any():
            best = table.loc[described.idxmax()]
            out["directions_described"] = {
                "site": str(best["site"]),
                "layer": int(best["layer"]),
                "heldout_accuracy": float(best["heldout_accuracy_described"]),
                "n_heldout": int(best["n_described"]),
            }
        out["head_check"] = {
            k: v for k, v in self.head_check.items() if isinstance(v, int | float | str)
        }
        ablation = self.ablation
        if len(ablation):
            first = ablation[ablation["intervention"] == ablation["intervention"].iloc[0]]
            out["ablation"] = {"intervention": str(first["intervention"].iloc[0])}
            scale = first["baseline"].abs().where(first["baseline"] != 0)
            first = first.assign(
                rel_drop=(first["baseline"] - first["score"]) / scale,
                random_rel_drop=(first["baseline"] - first["control_score"]) / scale,
            )
            for kind, rows in first.groupby("component_type", sort=False):
                means = rows.groupby("k")[["rel_drop", "random_rel_drop"]].mean()
                out["ablation"][str(kind)] = {
                    f"k{int(k)}": {key: float(value) for key, value in row.items()}
                    for k, row in means.iterrows()
                }
        effect = self.tables.get("total_effect_summary")
        if effect is not None and len(effect):
            out["total_effect"] = {
                str(kind): {
                    "spearman": float(rows["spearman"].mean()),
                    "top_overlap": float((rows["top_overlap"] / rows["top"]).mean()),
                    "share_positive": float(rows["share_positive"].mean()),
                }
                for kind, rows in effect.groupby("component_type", sort=False)
            }
        if self.control is not None:
            pooled = self.control[self.control["emotion"] == "all"]
            out["control"] = {
                str(row["method"]): {
                    "judged_masked": float(row["judged_masked"]),
                    "judged_masked_ci_low": float(row["ci_low"]),
                    "judged_masked_ci_high": float(row["ci_high"]),
                }
                for row in pooled.to_dict("records")
            }
        return out


def _load_items(sev: Any) -> Any:
    """An SEV dataset, or a path to an SEV-format file to load."""
    if isinstance(sev, str | Path):
        from lens_emotion.data import load_sev

        return load_sev(sev)
    return sev


def _pick_prompts(
    prompts: SevPrompts, emotions: Sequence[str], n: int, rng: np.random.Generator
) -> dict[str, SevPrompts]:
    """Up to ``n`` prompts per emotion, drawn without replacement (seeded)."""
    out = {}
    for emotion in emotions:
        rows = [i for i, e in enumerate(prompts.emotion) if e == emotion]
        if not rows:
            raise CircuitError(f"no prompts ask for {emotion!r}.")
        chosen = sorted(rng.choice(rows, size=min(n, len(rows)), replace=False).tolist())
        out[emotion] = prompts.subset(chosen)
    return out


def _scorers(
    model: Any, chosen: dict[str, SevPrompts], batch_size: int, progress: bool
) -> dict[str, LastTokenScorer]:
    return {
        emotion: LastTokenScorer(
            model, list(items.token_ids), batch_size=batch_size, progress=progress
        )
        for emotion, items in chosen.items()
    }


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows (NaN -> None)."""
    clean = table.astype(object).where(table.notna(), None)
    return clean.to_dict(orient="records")


def gamma_meaning(gamma: float) -> str:
    """What a circuit-modulation strength means, in words."""
    if gamma == 1:
        where = "exactly to their emotion-conditioned state (on average)"
    elif gamma < 1:
        where = f"{gamma:g} of the way to their emotion-conditioned state"
    else:
        where = f"{gamma:g} times as far as their emotion-conditioned state (an overshoot)"
    return (
        f"gamma = {gamma:g}: each circuit head and neuron is shifted by {gamma:g} x (its mean "
        f"under the emotion instruction - its mean on neutral prompts), i.e. {where}; "
        "gamma = 1 is the emotion-conditioned state"
    )


def run_circuits(
    model: EmotionModel,
    sev: Any,
    out: str | Path,
    settings: CircuitSettings | None = None,
    *,
    progress: bool = True,
    command: str | None = None,
    judge: Any | None = None,
    eval_sev: Any | None = None,
    readout: Any | None = None,
    seed: int | None = None,
    formats: Sequence[str] | None = None,
) -> CircuitsOutputs:
    """Run the whole emotion-circuit analysis and write its files to ``out``.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel` (an instruct model with a chat
            template; Llama family for the generation parts).
        sev: SEV items (:func:`lens_emotion.data.load_sev`, not crossed) or the path of an
            SEV-format file.
        out: Output folder.
        settings: Sizes, strengths, seed and formats (defaults: :class:`CircuitSettings`).
        progress: Show progress bars and one line per finished step.
        command: Command line for the manifest.
        judge: The offline judge with SEV labels (``None``: :func:`lens_emotion.judge.load_judge`
            is called when generation is on).
        eval_sev: A second SEV-format dataset (or its path) to evaluate on: discovery then
            uses every scenario of ``sev`` (``n_scenarios`` of them) and evaluation
            ``n_eval_scenarios`` of ``eval_sev``'s (``eval_fraction`` is ignored). ``None``:
            split ``sev``.
        readout: The second judge (``None`` with ``settings.readout_judge``: a
            :class:`~lens_emotion.judge.ReadoutJudge` on ``model``, unsteered).
        seed: Overrides ``settings.seed`` (kept for older calls).
        formats: Overrides ``settings.formats`` (kept for older calls).

    Returns:
        The :class:`CircuitsOutputs`.

    Raises:
        CircuitError: A judge with other labels, or overlapping discovery/evaluation files.
    """
    from lens_emotion.circuits import figures as figs
    from lens_emotion.viz import write_figure_or_html

    settings = settings or CircuitSettings()
    settings = override_seed_formats(settings, seed, formats).for_model(model.n_layers)
    seed, formats = settings.seed, settings.formats
    out = start_run(seed, out)
    timings: dict[str, float] = {}
    files: list[str] = []
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        if progress:  # one line per finished step, as the demo prints them
            step = name.removesuffix("_s").replace("_", " ")
            print(f"[circuits] {step}: {now - clock:.1f} s", file=sys.stderr, flush=True)
        clock = now

    def save_csv(frame: pd.DataFrame, name: str) -> None:
        write_text_atomic(out / name, frame.to_csv(index=False))
        files.append(name)

    # 1. split and prompts
    sev = _load_items(sev)
    if eval_sev is None:
        discovery, heldout = split_scenarios(
            sev, settings.eval_fraction, seed, settings.n_scenarios, settings.n_eval_scenarios
        )
    else:
        eval_sev = _load_items(eval_sev)
        discovery, heldout = split_files(
            sev, eval_sev, seed, settings.n_scenarios, settings.n_eval_scenarios
        )
    disc = build_sev_prompts(model, discovery)
    disc_neutral = build_sev_prompts(model, discovery, [None])
    held = build_sev_prompts(model, heldout)
    described = (
        build_sev_prompts(model, heldout, instruction="described")
        if settings.described_consistency
        else None
    )
    lap("prompts_s")

    # 2. one cached pass per prompt set
    acts = capture_last_token(
        model,
        disc.token_ids,
        batch_size=settings.batch_size,
        progress=progress,
        position_means=("z", "mlp_post") if settings.generate else (),
    )
    neutral_acts = capture_last_token(
        model, disc_neutral.token_ids, ("z", "mlp_post"), settings.batch_size, progress
    )
    held_acts = capture_last_token(
        model, held.token_ids, ("resid_mid", "resid_post"), settings.batch_size, progress
    )
    described_acts = (
        capture_last_token(
            model, described.token_ids, ("resid_mid", "resid_post"), settings.batch_size, progress
        )
        if described is not None
        else None
    )
    lap("capture_s")

    # 3. directions (discovery) and their consistency (held-out)
    directions = compute_directions(acts, disc.emotion, disc.group)
    directions.save(out / "directions.safetensors")
    files.append("directions.safetensors")
    consistency = direction_consistency(
        acts,
        disc.emotion,
        disc.group,
        disc.theme,
        disc.valence,
        directions,
        held_acts,
        held.emotion,
        described_acts,
        described.emotion if described is not None else None,
    )
    save_csv(consistency, "consistency.csv")
    lap("directions_s")

    # 4. components (discovery) and the decomposition consistency check
    W_O, W_out = head_output_weights(model), mlp_output_weights(model)  # noqa: N806
    scores = score_components(acts, disc.emotion, disc.group, directions, W_O, W_out)
    heads_table = scores["head"].table()[
        ["layer", "head", "emotion", "score", "rank", "mean_contribution"]
    ]
    save_csv(heads_table, "heads.csv")
    save_csv(scores["neuron"].table(top=100), "neurons.csv")
    overlap_rows = []
    for kind, k in (("head", 8), ("neuron", 100)):
        frame = topk_overlap(scores[kind], k)
        for a in frame.index:
            for b in frame.columns:
                overlap_rows.append(
                    {"component_type": kind, "k": k, "a": a, "b": b, "jaccard": frame.loc[a, b]}
                )
    overlap = pd.DataFrame(overlap_rows)
    save_csv(overlap, "overlap.csv")
    lap("components_s")

    check_rows = list(range(min(settings.check_prompts, len(disc))))
    t0 = time.perf_counter()
    decomposition = head_contributions(acts.z[check_rows], W_O, directions.get("resid_mid"))
    t_dec = time.perf_counter() - t0
    t0 = time.perf_counter()
    ablated = head_ablation_effects(
        model, [disc.token_ids[i] for i in check_rows], directions, layers=settings.check_layers
    )["local"]
    t_abl = time.perf_counter() - t0
    layers_checked = (
        list(settings.check_layers) if settings.check_layers else list(range(model.n_layers))
    )
    diff = (decomposition[:, layers_checked] - ablated).abs()
    inexact = decomposition_reason(model)
    head_check = {
        "label": "consistency check, not a causal test",
        "what": (
            "direct decomposition (z_h W_O[h]) . v_e vs explicit zero-ablation of z_h read at "
            "the same layer's attention output projected on v_e; these are equal by algebra, "
            "so agreement verifies the code, not the components' causal importance (see "
            "total_effect.csv for that)"
        ),
        "n_prompts": len(check_rows),
        "layers": layers_checked,
        "n_heads": len(layers_checked) * model.n_heads,
        "max_abs_difference": float(diff.max()),
        "max_abs_contribution": float(decomposition[:, layers_checked].abs().max()),
        "ablation_forward_passes": len(layers_checked) * model.n_heads,
        "decomposition_einsum_s": round(t_dec, 4),
        "ablation_s": round(t_abl, 2),
        "exact_by_algebra": inexact is None,
        "note": inexact or "",
    }
    if inexact is not None:
        warnings.warn(f"head scores are approximate: {inexact}", stacklevel=2)
    lap("head_check_s")

    rng = np.random.default_rng([seed, 5])
    emotions = directions.emotions

    # 5. influence (discovery prompts) and circuits
    disc_scorers = _scorers(
        model,
        _pick_prompts(disc, emotions, settings.n_ablation_prompts, rng),
        settings.batch_size,
        progress,
    )
    influence = sublayer_influence(disc_scorers, directions, residual_rms(acts), settings.alpha)
    save_csv(influence, "sublayer_influence.csv")
    del disc_scorers
    circuits = {}
    for emotion in emotions:
        circuits[emotion] = assemble_circuit(
            emotion,
            scores,
            influence,
            settings.circuit_heads,
            settings.circuit_neurons,
            settings.circuit_sublayers,
            meta={"model": model.model_id, "seed": seed, "chosen_on": "discovery scenarios"},
        )
        circuits[emotion].save(out / f"circuit_{emotion}.json")
        files.append(f"circuit_{emotion}.json")
    lap("influence_circuits_s")

    # 6. ablation sweep and total effects on held-out prompts
    held_scorers = _scorers(
        model,
        _pick_prompts(held, emotions, settings.n_ablation_prompts, rng),
        settings.batch_size,
        progress,
    )
    index = torch.from_numpy(complete_groups(disc.emotion, disc.group, emotions)).reshape(-1)
    center = acts.resid_post[index, -1].double().mean(0).float()
    means = ComponentMeans.from_activations(acts, disc.emotion, disc.group, emotions)
    ks = {
        "head": default_ks(scores["head"].n_layers * scores["head"].n_units, settings.max_k_heads),
        "neuron": default_ks(
            scores["neuron"].n_layers * scores["neuron"].n_units, settings.max_k_neurons
        ),
    }
    ablation = ablation_sweep(
        held_scorers,
        scores,
        directions,
        means,
        ks,
        settings.interventions,
        settings.scale_factor,
        settings.n_random,
        seed,
        center,
    )
    save_csv(ablation, "ablation.csv")
    lap("ablation_s")
    total = total_effects(
        held_scorers,
        scores,
        directions,
        means,
        {"head": settings.total_effect_heads or None, "neuron": settings.total_effect_neurons},
        center,
    )
    total_summary = total_effect_summary(total, top=16)
    save_csv(total, "total_effect.csv")
    save_csv(total_summary, "total_effect_summary.csv")
    del held_scorers
    lap("total_effect_s")

    tables: dict[str, pd.DataFrame] = {"overlap": overlap, "total_effect_summary": total_summary}
    control = None
    extra: dict[str, Any] = {}
    if settings.generate:
        if judge is None:
            from lens_emotion.judge import load_judge

            judge = load_judge(label_set="sev", seed=seed, progress=progress)
        if tuple(judge.labels) != tuple(emotions):
            raise CircuitError(
                f"the judge's labels {judge.labels} differ from the SEV emotions "
                f"{emotions}; load it with load_judge(label_set='sev')."
            )
        if readout is None and settings.readout_judge:
            from lens_emotion.judge import ReadoutJudge

            readout = ReadoutJudge(model, labels=list(emotions), batch_size=settings.batch_size)
        gen_kw = {
            "readout": readout,
            "min_words": settings.min_words,
            "min_distinct": settings.min_distinct,
            "n_boot": settings.n_boot,
        }

        # 7. judged ablation on held-out prompts, position-matched means
        judged_table, judged_gen = judged_ablation(
            model,
            judge,
            _pick_prompts(held, emotions, settings.gen_ablation_prompts, rng),
            scores,
            ComponentMeans.from_position_means(acts),
            settings.gen_ablation_k,
            settings.gen_ablation_intervention,
            seed,
            settings.max_new_tokens,
            settings.batch_size,
            progress,
            **gen_kw,
        )
        save_csv(judged_table, "ablation_generation.csv")
        save_csv(judged_gen, "ablation_generations.csv")
        tables["ablation_generation"] = judged_table
        lap("judged_ablation_s")

        # 8. tuning on discovery neutral prompts, one grid size for every method
        tune_items = one_valence_per_scenario(discovery, seed + 3)
        ids = sorted(set(tune_items.metadata["skeleton_id"]))[: settings.n_tune_scenarios]
        tune_items = tune_items.filter(tune_items.metadata["skeleton_id"].isin(ids).to_numpy())
        tune_prompts = build_sev_prompts(model, tune_items, [None])
        target = emotion_means(acts, disc.emotion, emotions)
        reference = ComponentMeans.from_activations(neutral_acts)

        def circuit_hooks(emotion: str, gamma: float) -> list:
            return modulation_hooks(
                model,
                circuits[emotion],
                target[emotion],
                reference,
                W_O,
                W_out,
                gamma,
                settings.positions,
            )

        tune_kw = {
            "max_new_tokens": settings.max_new_tokens,
            "batch_size": settings.batch_size,
            "seed": seed,
            "min_words": settings.min_words,
            "min_distinct": settings.min_distinct,
            "readout": readout,
            "n_boot": settings.n_boot,
        }
        results = [
            (
                "circuit",
                "",
                tune_strength(
                    model,
                    judge,
                    tune_prompts,
                    emotions,
                    circuit_hooks,
                    settings.gamma_grid,
                    **tune_kw,
                ),
            )
        ]
        for window in settings.steer_windows:

            def steer_hooks(emotion: str, beta: float, window: tuple[int, ...] = window) -> list:
                return steering_baseline_hooks(
                    model, directions, emotion, beta, window, settings.positions
                )

            results.append(
                (
                    "steering",
                    f"{window[0]}-{window[-1]}",
                    tune_strength(
                        model,
                        judge,
                        tune_prompts,
                        emotions,
                        steer_hooks,
                        settings.beta_grid,
                        **tune_kw,
                    ),
                )
            )
        tuning_table = pd.concat(
            [r.table.assign(method=m, window=w) for m, w, r in results], ignore_index=True
        )
        tuning_gen = pd.concat(
            [r.generations.assign(method=m, window=w) for m, w, r in results], ignore_index=True
        )
        first = ["method", "window", "strength"]
        tuning_table = tuning_table[first + [c for c in tuning_table if c not in first]]
        best_circuit, circuit_note = select_setting(
            tuning_table[tuning_table.method == "circuit"],
            settings.selection_metric,
            settings.max_degenerate,
        )
        best_steer, steer_note = select_setting(
            tuning_table[tuning_table.method == "steering"],
            settings.selection_metric,
            settings.max_degenerate,
        )
        tuning_table["chosen"] = False
        for best in (best_circuit, best_steer):
            tuning_table.loc[
                (tuning_table.method == best.method)
                & (tuning_table.window == best.window)
                & (tuning_table.strength == best.strength),
                "chosen",
            ] = True
        save_csv(tuning_table, "tuning.csv")
        save_csv(tuning_gen, "tuning_generations.csv")
        tables["tuning"] = tuning_table
        gamma = float(best_circuit.strength)
        beta = float(best_steer.strength)
        lo, hi = (int(x) for x in str(best_steer.window).split("-"))
        window = tuple(range(lo, hi + 1))
        lap("tuning_s")

        # 9. comparison on held-out neutral prompts
        eval_items = one_valence_per_scenario(heldout, seed + 4)
        neutral_eval = build_sev_prompts(model, eval_items, [None])
        conditioned_eval = build_sev_prompts(model, eval_items)
        method_hooks = {
            "steering": {
                e: steering_baseline_hooks(model, directions, e, beta, window, settings.positions)
                for e in emotions
            },
            "circuit": {e: circuit_hooks(e, gamma) for e in emotions},
        }
        result = control_comparison(
            model,
            judge,
            neutral_eval,
            conditioned_eval,
            method_hooks,
            emotions,
            settings.max_new_tokens,
            settings.batch_size,
            seed,
            settings.n_boot,
            settings.min_words,
            settings.min_distinct,
            readout,
        )
        control = result.table
        save_csv(control, "control.csv")
        save_csv(result.differences, "control_differences.csv")
        save_csv(result.generations, "generations.csv")
        tables["control_differences"] = result.differences
        tables["generations"] = result.generations
        extra["tuning"] = {
            "rule": settings.selection_rule,
            "fixed_before_run": True,
            "tuned_on": "discovery scenarios " + ", ".join(sorted(set(tune_prompts.skeleton_id))),
            "budget": {
                "circuit": {"strengths": len(settings.gamma_grid), "windows": 1},
                "steering": {
                    "strengths": len(settings.beta_grid),
                    "windows": len(settings.steer_windows),
                },
                "prompting": "no knob (not tuned)",
                "prompts_per_setting": len(tune_prompts) * len(emotions),
            },
            "table": _records(tuning_table),
        }
        extra["chosen"] = {
            "circuit_gamma": gamma,
            "circuit_gamma_meaning": gamma_meaning(gamma),
            "circuit_note": circuit_note,
            "steering_beta": beta,
            "steering_window": f"{window[0]}-{window[-1]}",
            "steering_note": steer_note,
            "positions": settings.positions,
        }
        extra["judge"] = judge.describe()
        extra["second_judge"] = readout.describe() if readout is not None else None
        extra["primary_metric"] = (
            "judged_masked: share of replies the offline judge labels as the target after "
            "every emotion word form is masked"
        )
        extra["judged_ablation"] = {
            "edit_positions": "all",
            "ablation_means": "all positions (position-matched)",
            "n_positions_averaged": acts.n_positions,
        }
        lap("control_s")

    # figures
    figures = {
        "ablation": figs.ablation_figure(ablation),
        "heads": figs.head_heatmap(scores["head"]),
        "influence": figs.influence_figure(influence),
        "consistency": figs.consistency_figure(consistency),
    }
    for emotion, circuit in circuits.items():
        figures[f"circuit_{emotion}"] = figs.circuit_figure(circuit, model.n_layers)
    if control is not None:
        figures["control"] = figs.control_figure(control)
    for name, fig in figures.items():
        paths, note = write_figure_or_html(fig, out / "figures" / name, formats=formats)
        files.extend(str(path.relative_to(out)) for path in paths)
        if note:
            extra["figures_note"] = note
    lap("figures_s")

    manifest = run_manifest(
        seed=seed,
        model=model,
        dataset=sev,
        command=command,
        extra={
            "settings": settings.describe(),
            "split": {
                "discovery_source": getattr(sev, "source", None),
                "evaluation_source": getattr(
                    eval_sev if eval_sev is not None else sev, "source", None
                ),
                "discovery_scenarios": sorted(set(disc.skeleton_id)),
                "heldout_scenarios": sorted(set(held.skeleton_id)),
                "n_discovery_prompts": len(disc),
                "n_heldout_prompts": len(held),
                "n_described_prompts": len(described) if described is not None else 0,
                "discovery_only": (
                    "directions, component scores, sublayer influence, circuits, means, "
                    "strength/window tuning"
                ),
                "heldout_only": (
                    "consistency accuracy, ablation sweeps, total effects, judged ablation, "
                    "control comparison"
                ),
            },
            "prompts": {
                "emotion_system": EMOTION_SYSTEM,
                "neutral_system": NEUTRAL_SYSTEM,
                "described_system": DESCRIBED_SYSTEM,
                "described_emotions": DESCRIBED_EMOTIONS,
            },
            "head_check": head_check,
            "total_effect": {
                "what": (
                    "each of the direct top-k heads and neurons mean-ablated alone at the last "
                    "prompt token (last-token means); change of the final-layer emotion score "
                    "through every later layer, on held-out prompts"
                ),
                "summary": _records(total_summary),
            },
            "timings_s": timings,
            "files": files,
            **extra,
        },
    )
    write_json_atomic(out / "manifest.json", manifest)
    files.append("manifest.json")
    return CircuitsOutputs(
        directions=directions,
        consistency=consistency,
        scores=scores,
        head_check=head_check,
        ablation=ablation,
        influence=influence,
        circuits=circuits,
        control=control,
        tables=tables,
        figures=figures,
        files=files,
        timings=timings,
        chosen=dict(extra.get("chosen", {})),
    )
