"""The end-to-end emotion-circuit run behind ``lens-emotion circuits`` and notebook 06.

Steps (every one seeded; the held-out scenarios are never used for discovery or tuning):

1. split the SEV scenarios by ``skeleton_id`` into discovery and held-out parts;
2. one hooked pass over the discovery prompts (6 emotions x 3 valences per scenario, plus the
   neutral prompts) keeping every layer's last-token activations;
3. context-agnostic directions, their consistency across themes/valences and on held-out
   prompts;
4. head and neuron scores by exact decomposition, checked against explicit per-head
   zero-ablation on a few prompts; top-k overlap across emotions;
5. ablation / enhancement sweeps with random controls (final emotion score) on held-out
   prompts, and the judged emotion of replies with top-k vs random-k ablated;
6. sublayer influence, per-emotion circuits;
7. circuit modulation vs prompting vs direction steering on held-out neutral prompts, judged
   by the offline judge, strengths tuned on discovery scenarios.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lens_emotion.circuits.ablation import ComponentMeans, ablation_sweep, default_ks
from lens_emotion.circuits.capture import capture_last_token
from lens_emotion.circuits.circuit import EmotionCircuit, assemble_circuit
from lens_emotion.circuits.components import (
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
    steering_baseline_hooks,
    tune_strength,
)
from lens_emotion.circuits.scoring import LastTokenScorer
from lens_emotion.circuits.sev_prompts import (
    EMOTION_SYSTEM,
    NEUTRAL_SYSTEM,
    build_sev_prompts,
    one_valence_per_scenario,
    split_scenarios,
)
from lens_emotion.io import write_json_atomic, write_text_atomic
from lens_emotion.manifest import run_manifest, seed_everything

__all__ = ["CircuitSettings", "CircuitsOutputs", "parse_windows", "run_circuits"]


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


@dataclass(frozen=True)
class CircuitSettings:
    """Sizes and strengths of a run (all recorded in the manifest).

    Attributes:
        n_scenarios: Discovery scenarios (each: 3 valences x 6 emotions + 3 neutral prompts).
        n_eval_scenarios: Held-out scenarios.
        eval_fraction: Share of the 160 scenarios held out before subsetting.
        n_ablation_prompts: Held-out prompts per emotion for the ablation sweeps/influence.
        max_k_heads: Largest k of the head sweep (powers of two up to it).
        max_k_neurons: Largest k of the neuron sweep.
        interventions: Interventions of the sweep.
        scale_factor: Factor of the ``scale`` intervention.
        n_random: Random draws per control.
        check_prompts: Prompts for the decomposition-vs-ablation check.
        check_layers: Layers of that check (``None``: all).
        alpha: Injection size of the sublayer influence, in RMS units.
        circuit_heads: Heads per circuit.
        circuit_neurons: Neurons per circuit.
        circuit_sublayers: Most influential sublayers listed per circuit.
        generate: Run the generation parts (judged ablation, tuning, comparison).
        gen_ablation_prompts: Prompts per emotion for the judged ablation.
        gen_ablation_k: ``{kind: k}`` of the judged ablation.
        gen_ablation_intervention: Its intervention.
        n_tune_scenarios: Discovery scenarios (one valence each) for strength tuning.
        gamma_grid: Circuit-modulation strengths tried.
        beta_grid: Steering strengths tried (per layer, RMS units).
        steer_windows: Steering layer windows tried.
        positions: ``"last"`` (last prompt token) or ``"all"`` for steering and modulation.
        min_words: Replies with fewer words are degenerate (not counted as fluent successes).
        min_distinct: Replies with a lower distinct-bigram ratio are degenerate (loops).
        max_new_tokens: Tokens per reply.
        batch_size: Prompts per batch.
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
    check_layers: tuple[int, ...] | None = (0, 14, 29)
    alpha: float = 1.0
    circuit_heads: int = 16
    circuit_neurons: int = 128
    circuit_sublayers: int = 6
    generate: bool = True
    gen_ablation_prompts: int = 6
    gen_ablation_k: dict[str, int] = field(default_factory=lambda: {"head": 16, "neuron": 256})
    gen_ablation_intervention: str = "mean"
    n_tune_scenarios: int = 6
    gamma_grid: tuple[float, ...] = (8.0, 16.0, 32.0, 64.0)
    beta_grid: tuple[float, ...] = (8.0, 32.0)
    steer_windows: tuple[tuple[int, ...], ...] = (tuple(range(10, 20)), tuple(range(20, 30)))
    positions: str = "last"
    min_words: int = 5
    min_distinct: float = 0.5
    max_new_tokens: int = 30
    batch_size: int = 16

    def describe(self) -> dict[str, Any]:
        """JSON-ready settings."""
        out = dict(self.__dict__)
        out["steer_windows"] = [f"{w[0]}-{w[-1]}" for w in self.steer_windows]
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


def _pick_strength(table: pd.DataFrame) -> pd.Series:
    """The strength with the best fluent accuracy (ties: the earlier row)."""
    return table.loc[table.fluent_accuracy.idxmax()]


def run_circuits(
    model: Any,
    sev: Any,
    out: str | Path,
    seed: int = 0,
    settings: CircuitSettings | None = None,
    judge: Any | None = None,
    formats: Sequence[str] = ("html",),
    progress: bool = False,
    command: str | None = None,
) -> CircuitsOutputs:
    """Run the whole emotion-circuit analysis and write its files to ``out``.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel` (an instruct model with a chat
            template; Llama family for the generation parts).
        sev: SEV items (:func:`lens_emotion.data.load_sev`, not crossed).
        out: Output folder.
        seed: Seed of the split, subsets, random controls and bootstrap.
        settings: Sizes and strengths (defaults: :class:`CircuitSettings`).
        judge: The offline judge with SEV labels (``None``: :func:`lens_emotion.judge.load_judge`
            is called when generation is on).
        formats: Figure formats.
        progress: Show progress bars.
        command: Command line for the manifest.

    Returns:
        The :class:`CircuitsOutputs`.
    """
    from lens_emotion.circuits import figures as figs
    from lens_emotion.plots import write_figure

    settings = settings or CircuitSettings()
    seed_everything(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    files: list[str] = []
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now

    def save_csv(frame: pd.DataFrame, name: str) -> None:
        write_text_atomic(out / name, frame.to_csv(index=False))
        files.append(name)

    # 1. split and prompts
    discovery, heldout = split_scenarios(
        sev, settings.eval_fraction, seed, settings.n_scenarios, settings.n_eval_scenarios
    )
    disc = build_sev_prompts(model, discovery)
    disc_neutral = build_sev_prompts(model, discovery, [None])
    held = build_sev_prompts(model, heldout)
    lap("prompts_s")

    # 2. one cached pass
    acts = capture_last_token(
        model, disc.token_ids, batch_size=settings.batch_size, progress=progress
    )
    neutral_acts = capture_last_token(
        model, disc_neutral.token_ids, ("z", "mlp_post"), settings.batch_size, progress
    )
    held_acts = capture_last_token(
        model, held.token_ids, ("resid_mid", "resid_post"), settings.batch_size, progress
    )
    lap("capture_s")

    # 3. directions and consistency
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
        held.group,
    )
    save_csv(consistency, "consistency.csv")
    lap("directions_s")

    # 4. components
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
    head_check = {
        "n_prompts": len(check_rows),
        "layers": layers_checked,
        "n_heads": len(layers_checked) * model.n_heads,
        "max_abs_difference": float(diff.max()),
        "max_abs_contribution": float(decomposition[:, layers_checked].abs().max()),
        "ablation_forward_passes": len(layers_checked) * model.n_heads,
        "decomposition_einsum_s": round(t_dec, 4),
        "ablation_s": round(t_abl, 2),
    }
    lap("head_check_s")

    # 5. ablation sweep on held-out prompts
    rng = np.random.default_rng([seed, 5])
    scorers = {}
    for emotion in directions.emotions:
        rows = [i for i, e in enumerate(held.emotion) if e == emotion]
        chosen = sorted(
            rng.choice(rows, size=min(settings.n_ablation_prompts, len(rows)), replace=False)
        )
        scorers[emotion] = LastTokenScorer(
            model,
            [held.token_ids[i] for i in chosen],
            batch_size=settings.batch_size,
            progress=progress,
        )
    index = torch.from_numpy(
        complete_groups(disc.emotion, disc.group, directions.emotions)
    ).reshape(-1)
    center = acts.resid_post[index, -1].double().mean(0).float()
    means = ComponentMeans.from_activations(acts, disc.emotion, disc.group, directions.emotions)
    ks = {
        "head": default_ks(scores["head"].n_layers * scores["head"].n_units, settings.max_k_heads),
        "neuron": default_ks(
            scores["neuron"].n_layers * scores["neuron"].n_units, settings.max_k_neurons
        ),
    }
    ablation = ablation_sweep(
        scorers,
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

    # 6. influence and circuits
    influence = sublayer_influence(scorers, directions, residual_rms(acts), settings.alpha)
    save_csv(influence, "sublayer_influence.csv")
    circuits = {}
    for emotion in directions.emotions:
        circuits[emotion] = assemble_circuit(
            emotion,
            scores,
            influence,
            settings.circuit_heads,
            settings.circuit_neurons,
            settings.circuit_sublayers,
            meta={"model": model.model_id, "seed": seed},
        )
        circuits[emotion].save(out / f"circuit_{emotion}.json")
        files.append(f"circuit_{emotion}.json")
    lap("influence_circuits_s")

    tables: dict[str, pd.DataFrame] = {"overlap": overlap}
    control = None
    extra: dict[str, Any] = {}
    if settings.generate:
        if judge is None:
            from lens_emotion.judge import load_judge

            judge = load_judge(label_set="sev", seed=seed, progress=progress)
        if tuple(judge.labels) != tuple(directions.emotions):
            raise CircuitError(
                f"the judge's labels {judge.labels} differ from the SEV emotions "
                f"{directions.emotions}; load it with load_judge(label_set='sev')."
            )
        # judged ablation
        gen_prompts = {}
        for emotion in directions.emotions:
            rows = [i for i, e in enumerate(held.emotion) if e == emotion]
            chosen = sorted(
                rng.choice(rows, size=min(settings.gen_ablation_prompts, len(rows)), replace=False)
            )
            gen_prompts[emotion] = [held.prompts[i] for i in chosen]
        judged_table, judged_gen = judged_ablation(
            model,
            judge,
            gen_prompts,
            scores,
            means,
            settings.gen_ablation_k,
            settings.gen_ablation_intervention,
            seed,
            settings.max_new_tokens,
            settings.batch_size,
            progress,
        )
        save_csv(judged_table, "ablation_generation.csv")
        save_csv(judged_gen, "ablation_generations.csv")
        tables["ablation_generation"] = judged_table
        lap("judged_ablation_s")

        # tuning on discovery neutral prompts
        tune_items = one_valence_per_scenario(discovery, seed + 3)
        ids = sorted(set(tune_items.metadata["skeleton_id"]))[: settings.n_tune_scenarios]
        tune_items = tune_items.filter(tune_items.metadata["skeleton_id"].isin(ids).to_numpy())
        tune_prompts = build_sev_prompts(model, tune_items, [None])
        target = emotion_means(acts, disc.emotion, directions.emotions)
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

        tuning = []
        table = tune_strength(
            model,
            judge,
            tune_prompts,
            directions.emotions,
            circuit_hooks,
            settings.gamma_grid,
            settings.max_new_tokens,
            settings.batch_size,
            seed,
            min_words=settings.min_words,
            min_distinct=settings.min_distinct,
        )
        tuning.append(table.assign(method="circuit", window=""))
        for window in settings.steer_windows:

            def steer_hooks(emotion: str, beta: float, window: tuple[int, ...] = window) -> list:
                return steering_baseline_hooks(
                    model, directions, emotion, beta, window, settings.positions
                )

            table = tune_strength(
                model,
                judge,
                tune_prompts,
                directions.emotions,
                steer_hooks,
                settings.beta_grid,
                settings.max_new_tokens,
                settings.batch_size,
                seed,
                min_words=settings.min_words,
                min_distinct=settings.min_distinct,
            )
            tuning.append(table.assign(method="steering", window=f"{window[0]}-{window[-1]}"))
        tuning_table = pd.concat(tuning, ignore_index=True)
        save_csv(tuning_table, "tuning.csv")
        tables["tuning"] = tuning_table
        best_circuit = _pick_strength(tuning_table[tuning_table.method == "circuit"])
        best_steer = _pick_strength(tuning_table[tuning_table.method == "steering"])
        gamma = float(best_circuit.strength)
        beta = float(best_steer.strength)
        lo, hi = (int(x) for x in str(best_steer.window).split("-"))
        window = tuple(range(lo, hi + 1))
        lap("tuning_s")

        # comparison on held-out neutral prompts
        eval_items = one_valence_per_scenario(heldout, seed + 4)
        neutral_eval = build_sev_prompts(model, eval_items, [None])
        conditioned_eval = build_sev_prompts(model, eval_items)
        method_hooks = {
            "steering": {
                e: steering_baseline_hooks(model, directions, e, beta, window, settings.positions)
                for e in directions.emotions
            },
            "circuit": {e: circuit_hooks(e, gamma) for e in directions.emotions},
        }
        result = control_comparison(
            model,
            judge,
            neutral_eval,
            conditioned_eval,
            method_hooks,
            directions.emotions,
            settings.max_new_tokens,
            settings.batch_size,
            seed,
            min_words=settings.min_words,
            min_distinct=settings.min_distinct,
        )
        control = result.table
        save_csv(control, "control.csv")
        save_csv(result.differences, "control_differences.csv")
        save_csv(result.generations, "generations.csv")
        tables["control_differences"] = result.differences
        tables["generations"] = result.generations
        extra["chosen"] = {
            "circuit_gamma": gamma,
            "steering_beta": beta,
            "steering_window": f"{window[0]}-{window[-1]}",
            "positions": settings.positions,
        }
        extra["judge"] = judge.describe()
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
        for path in write_figure(fig, out / "figures" / name, formats=formats):
            files.append(str(path.relative_to(out)))
    lap("figures_s")

    manifest = run_manifest(
        seed=seed,
        model=model,
        dataset=sev,
        command=command,
        extra={
            "settings": settings.describe(),
            "split": {
                "discovery_scenarios": sorted(set(disc.skeleton_id)),
                "heldout_scenarios": sorted(set(held.skeleton_id)),
                "n_discovery_prompts": len(disc),
                "n_heldout_prompts": len(held),
            },
            "prompts": {"emotion_system": EMOTION_SYSTEM, "neutral_system": NEUTRAL_SYSTEM},
            "head_check": head_check,
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
    )
