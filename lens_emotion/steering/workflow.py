"""End-to-end appraisal steering run: probes -> directions -> readout and generation sweeps.

:func:`run_steering` wires the library together and writes everything under ``out``:

* ``steering.csv``: outcome 2 (steered free generation, judged by the offline judge) per
  appraisal combo, layer, beta and emotion, with bootstrap CIs, beside the random-direction
  control (columns :data:`lens_emotion.steering.GENERATION_COLUMNS`: ``proportion`` is the
  share the judge gives the emotion with every emotion word masked, the primary metric, then
  the unmasked share ``judged_raw``, ``names_emotion``, ``fluency`` and the second judge's
  ``readout`` share with Cohen's ``kappa`` and a disagreement note); if generation is
  switched off it holds the readout instead (:data:`lens_emotion.steering.STEERING_COLUMNS`);
* ``readout.csv``: outcome 1 (mean readout probability of each emotion), same columns;
* ``theory_checks.csv`` and ``theory_summary.csv``: the appraisal-theory predictions
  (:mod:`lens_emotion.steering.theory`) at every swept layer and beta, with each cell's
  p-value, its Holm-adjusted p-value and the prediction's corrected verdict (or the verdict at
  the cell fixed before the run, ``theory_cell``);
* ``generations.jsonl``: every steered continuation with its masked and raw judged emotion
  (and the second judge's label);
* ``promotion.csv`` (if emotions are promoted), ``directions.json`` (norms, probe R²,
  orthogonality of the unique-effect vectors), ``figures/`` (stacked bars, Sankey diagrams)
  and ``manifest.json`` (with the :class:`SteeringSettings`).

The rows the probes are fitted on and the rows that are steered are disjoint.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lens_emotion.data import EmotionDataset
from lens_emotion.io import write_json_atomic, write_text_atomic
from lens_emotion.manifest import StepTimer, report_step, start_run, write_manifest
from lens_emotion.models import EmotionModel
from lens_emotion.steering.promotion import PromotionResult, emotion_promotion
from lens_emotion.steering.sweeps import (
    SweepOutcome,
    build_conditions,
    generation_sweep,
    readout_sweep,
)
from lens_emotion.steering.vectors import (
    AppraisalCombo,
    SteeringError,
    appraisal_matrix,
    combo_vector,
)

if TYPE_CHECKING:
    from lens_emotion.probing import AppraisalProbeResult

__all__ = [
    "SteeringOutputs",
    "SteeringSettings",
    "check_appraisal_names",
    "run_steering",
    "split_rows",
]

_TUPLE_FIELDS = (
    "combos",
    "layers",
    "betas",
    "gen_betas",
    "gen_layers",
    "methods",
    "fixed",
    "promote",
    "promote_betas",
    "formats",
    "theory_cell",
)


@dataclass(frozen=True)
class SteeringSettings:
    """Everything a steering run is told (all recorded in the manifest).

    Attributes:
        combos: Appraisal combos to steer, as spec strings such as ``+pleasantness`` or
            ``+pleasantness,+other_responsblt`` (:meth:`AppraisalCombo.parse`).
        layers: Centre layers (empty: the model's middle layer).
        betas: Readout steering strengths (0 is the clean run).
        gen_betas: Generation strengths (None: betas).
        gen_layers: Centre layers for generation (None: layers).
        gen_n: Generate for a stratified subset of this many steered texts (None: all).
        gen_controls: Random directions per generation cell (None: n_controls).
        n: Steered texts.
        n_probe: Probe rows (disjoint from the steered ones).
        site: Site of probes and hooks.
        span: Window of layers hooked around each centre layer (odd).
        scale: rms (beta in units of the residual's RMS at each position) or none.
        readout_positions: Where the readout sweep steers (last: last prompt token).
        gen_positions: Where generation is steered (all: every position).
        methods: unique (unique-effect vectors) and/or raw (unprojected probe weights).
        fixed: Appraisals held fixed by unique vectors (None: all others).
        n_controls: Random same-norm directions per layer and beta (the theory checks need
            at least 2).
        theory: Add the combos of the appraisal-theory predictions to the readout sweep and
            write the checks.
        theory_cell: (layer, step) fixed before the run: each prediction's verdict is decided
            at that layer and beta = sign * step alone, uncorrected (None: Holm's correction
            over every swept cell decides).
        theory_generation: Generate for the theory combos too (slow on a CPU).
        generate: Run outcome 2 (judged free generation).
        judge_data_path: crowd-enVENT file the default judge trains on (None: the data root).
        second_judge: Add the second judge (the unsteered model's own label readout of the
            masked reply) to the generations.
        max_new_tokens: Tokens per continuation.
        promote: Emotions for Tak et al.'s emotion promotion (readout outcome).
        promote_betas: Multiples of w_e for promotion.
        promote_controls: Random same-norm directions per promotion cell (None: n_controls).
        template: Inference prompt (probes and readout).
        alpha: Ridge penalty (a float) or grid (a tuple) of the appraisal probes.
        n_folds: CV folds of the probes.
        store_dir: Activation store folder (None: the cache).
        batch_size: Prompts per forward pass.
        n_boot: Bootstrap resamples.
        formats: Figure formats.
        seed: Seed of splits, controls and bootstraps.
    """

    combos: tuple[str, ...] = ("+pleasantness",)
    layers: tuple[int, ...] = ()
    betas: tuple[float, ...] = (-8.0, -4.0, 0.0, 4.0, 8.0)
    gen_betas: tuple[float, ...] | None = None
    gen_layers: tuple[int, ...] | None = None
    gen_n: int | None = None
    gen_controls: int | None = None
    n: int = 60
    n_probe: int = 400
    site: str = "resid_post"
    span: int = 1
    scale: Literal["none", "rms"] = "rms"
    readout_positions: Literal["last", "all"] = "last"
    gen_positions: Literal["last", "all"] = "all"
    methods: tuple[str, ...] = ("unique",)
    fixed: tuple[str, ...] | None = None
    n_controls: int = 10
    theory: bool = True
    theory_cell: tuple[int, float] | None = None
    theory_generation: bool = False
    generate: bool = True
    judge_data_path: str | Path | None = None
    second_judge: bool = True
    max_new_tokens: int = 24
    promote: tuple[str, ...] = ()
    promote_betas: tuple[float, ...] = (1.0,)
    promote_controls: int | None = None
    template: str = "emotion-list"
    alpha: float | tuple[float, ...] = (1.0, 10.0, 100.0, 1e3, 1e4)
    n_folds: int = 5
    store_dir: str | Path | None = None
    batch_size: int = 16
    n_boot: int = 1000
    formats: tuple[str, ...] = ("html",)
    seed: int = 0

    def __post_init__(self) -> None:
        # lists (TOML, notebooks) become tuples; AppraisalCombo objects their spec strings
        for name in _TUPLE_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.alpha, list):
            object.__setattr__(self, "alpha", tuple(self.alpha))
        combos = tuple(c.name if isinstance(c, AppraisalCombo) else str(c) for c in self.combos)
        object.__setattr__(self, "combos", combos)

    def appraisal_combos(self) -> list[AppraisalCombo]:
        """:attr:`combos` parsed (raises :class:`SteeringError` on a bad spec)."""
        return [AppraisalCombo.parse(spec) for spec in self.combos]


@dataclass(frozen=True)
class SteeringOutputs:
    """What :func:`run_steering` produced.

    Attributes:
        readout: Outcome 1 sweep.
        generation: Outcome 2 sweep (``None`` if generation was off).
        steering_table: The ``steering.csv`` table.
        readout_table: The ``readout.csv`` table.
        checks: Theory checks, one row per prediction part and cell.
        theory_summary: Theory-check summary per prediction (``theory_summary.csv``).
        promotion: Emotion promotion result (``None`` if none was asked for).
        judge: The judge's description, with its held-out accuracy (``None`` without).
        directions: Per combo/layer norms and orthogonality of the steering vectors.
        files: Written files, relative to ``out``.
        figures: Named Plotly figures.
        settings: The run's settings.
    """

    readout: SweepOutcome
    generation: SweepOutcome | None
    steering_table: pd.DataFrame
    readout_table: pd.DataFrame
    checks: pd.DataFrame
    theory_summary: pd.DataFrame
    promotion: PromotionResult | None
    judge: dict[str, Any] | None
    directions: dict[str, Any]
    files: dict[str, str]
    figures: dict[str, go.Figure]
    settings: SteeringSettings = dataclasses.field(default_factory=SteeringSettings)

    def summary(self) -> dict[str, Any]:
        """Headline numbers: the judge's held-out accuracy and each theory verdict."""
        accuracy = None
        if self.judge is not None:
            validation = self.judge.get("validation", {})
            accuracy = validation.get("accuracy_masked", validation.get("accuracy"))
        theory = [
            {
                "prediction": row.prediction,
                "outcome": row.outcome,
                "method": row.method,
                "verdict": row.verdict,
                "cells_passed": int(row.cells_passed),
                "cells": int(row.cells),
                "min_p_holm": float(row.min_p_holm),
            }
            for row in self.theory_summary.itertuples()
        ]
        return {
            "combos": list(self.settings.combos),
            "n_steered": int(self.readout.values.shape[1]),
            "judge_accuracy": None if accuracy is None else float(accuracy),
            "theory": theory,
            "readout": self.readout.summary(),
            "generation": None if self.generation is None else self.generation.summary(),
            "promotion": None if self.promotion is None else self.promotion.summary(),
            "files": len(self.files),
        }


def split_rows(
    dataset: EmotionDataset, n: int, n_probe: int, seed: int = 0
) -> tuple[EmotionDataset, EmotionDataset]:
    """Disjoint, stratified probe rows and steering rows.

    Raises:
        SteeringError: Too few rows.
    """
    if n < 2 or n_probe < 10:
        raise SteeringError(f"need n >= 2 steered texts and n_probe >= 10, got {n}, {n_probe}.")
    if n + n_probe > len(dataset):
        raise SteeringError(
            f"the dataset has {len(dataset)} rows but n={n} steered + n_probe={n_probe} probe "
            "rows were asked for; lower --n / --n-probe or use a larger dataset."
        )
    probe = dataset.sample(n_probe, seed=seed)
    rest = dataset.filter(~np.isin(np.asarray(dataset.ids), np.asarray(probe.ids)))
    return probe, rest.sample(n, seed=seed + 1)


def check_appraisal_names(
    dataset: EmotionDataset,
    combos: Sequence[AppraisalCombo],
    fixed: Sequence[str] | None = None,
) -> None:
    """Fail early (before any model work) on appraisal names the dataset does not have.

    Raises:
        SteeringError: An unknown name, with the known ones listed.
    """
    known = list(dataset.appraisal_names or ())
    asked = [a for c in combos for a in c.appraisals] + list(fixed or ())
    unknown = sorted({a for a in asked if a not in known})
    if unknown:
        raise SteeringError(
            f"unknown appraisal(s) {unknown}; {dataset.name} has: {', '.join(known)}."
        )


def _direction_report(
    appraisal: AppraisalProbeResult,
    site: str,
    vectors: dict[str, dict[int, np.ndarray]],
    layers: Sequence[int],
) -> dict[str, Any]:
    """Norms, probe-readout changes per unit step and R² for the swept vectors."""
    report: dict[str, Any] = {}
    r2 = appraisal.table
    for name, per_layer in vectors.items():
        rows = {}
        for layer in layers:
            w, _, names = appraisal_matrix(appraisal, site, layer)
            v = per_layer[layer]
            unit = v / np.linalg.norm(v)
            change = w @ unit  # probe readout change per unit step
            order = np.argsort(-np.abs(change))
            rows[str(layer)] = {
                "norm": float(np.linalg.norm(v)),
                "readout_change_per_unit_step": {names[i]: float(change[i]) for i in order[:4]},
                "max_abs_change_elsewhere": float(np.sort(np.abs(change))[-3])
                if len(change) > 2
                else 0.0,
            }
        report[name] = rows
    sub = r2[r2["site"] == site]
    report["probe_r2"] = {
        f"{row.appraisal}@{row.layer}": round(float(row.r2_mean), 4)
        for row in sub.itertuples()
        if row.appraisal in ("pleasantness", "other_responsblt", "unpleasantness")
    }
    return report


def _generations_jsonl(sweep: SweepOutcome, texts: Sequence[str]) -> str:
    lines = []
    assert sweep.texts is not None and sweep.replies is not None
    scores = sweep.replies.set_index(["condition", "text_index"])
    has_readout = "readout_label" in scores.columns
    for k, cond in enumerate(sweep.conditions):
        for i, gen in enumerate(sweep.texts[k]):
            row = scores.loc[(k, i)]
            lines.append(
                json.dumps(
                    {
                        "condition": k,
                        "combo": cond.combo,
                        "method": cond.method,
                        "layer": cond.layer,
                        "beta": cond.beta,
                        "control": cond.control,
                        "seed": cond.seed,
                        "id": sweep.ids[i] if sweep.ids else str(i),
                        "event": texts[i],
                        "generation": gen,
                        "judged": str(row["judged_masked"]),
                        "judged_raw": str(row["judged_raw"]),
                        "readout_label": str(row["readout_label"]) if has_readout else None,
                        "names_any_emotion": bool(row["names_any_emotion"]),
                        "degenerate": bool(row["degenerate"]),
                    },
                    ensure_ascii=False,
                )
            )
    return "\n".join(lines) + "\n"


def run_steering(
    model: EmotionModel,
    data: EmotionDataset,
    out: str | Path,
    settings: SteeringSettings | None = None,
    *,
    progress: bool = True,
    command: str | None = None,
    judge: Any | None = None,
    second_judge: Any | None = None,
) -> SteeringOutputs:
    """Fit appraisal probes, build steering vectors, sweep them and write the results.

    Args:
        model: The model to steer.
        data: A crowd-enVENT-like dataset with appraisal ratings.
        out: Output folder.
        settings: What to steer and how (default :class:`SteeringSettings`).
        progress: Show progress bars and one line per finished step.
        command: Command line for the manifest.
        judge: An emotion judge; default :func:`lens_emotion.judge.load_judge` (crowd-enVENT,
            trained on ``settings.judge_data_path``).
        second_judge: A second judge of another kind for the generations (``.predict``);
            default (with ``settings.second_judge``): :class:`lens_emotion.judge.ReadoutJudge`,
            the unsteered model's own label readout of the masked reply under the inference
            template. Ignored when ``settings.second_judge`` is off.

    Returns:
        The :class:`SteeringOutputs`.

    Raises:
        SteeringError: No appraisals in the dataset, bad sizes, unknown appraisals.
    """
    from lens_emotion.activations import extract_activations
    from lens_emotion.probing import probe_appraisals, probe_emotions
    from lens_emotion.prompts import build_prompts, get_template
    from lens_emotion.steering.figures import sankey_figure, stacked_bars_figure
    from lens_emotion.steering.theory import (
        THEORY_PREDICTIONS,
        annotate_checks,
        check_predictions,
        required_combos,
        summarize_checks,
        validate_theory_cell,
    )
    from lens_emotion.viz.export import write_figure

    s = SteeringSettings() if settings is None else settings
    dataset = data
    if dataset.appraisals is None:
        raise SteeringError(
            f"dataset {dataset.name!r} has no appraisal ratings; steering needs crowd-enVENT "
            "(--dataset crowd-envent)."
        )
    if not s.combos:
        raise SteeringError("no appraisal combo given; pass e.g. --appraisal pleasantness.")
    combos = s.appraisal_combos()
    fixed = None if s.fixed is None else list(s.fixed)
    check_appraisal_names(dataset, combos, fixed)
    layers = [int(x) for x in s.layers] if s.layers else [model.n_layers // 2]
    betas = [float(b) for b in s.betas]
    gen_betas = betas if s.gen_betas is None else [float(b) for b in s.gen_betas]
    gen_layers = layers if s.gen_layers is None else [int(x) for x in s.gen_layers]
    n_controls = s.n_controls
    gen_controls = n_controls if s.gen_controls is None else s.gen_controls
    promote_controls = n_controls if s.promote_controls is None else s.promote_controls
    theory_cell = s.theory_cell
    if s.theory:
        if n_controls < 2 or (s.theory_generation and s.generate and (s.gen_controls or 2) < 2):
            raise SteeringError(
                "the theory checks need at least 2 random directions per cell (10 "
                "recommended); raise --controls / --gen-controls or pass --no-theory."
            )
        theory_cell = validate_theory_cell(theory_cell, layers, betas)
        if theory_cell is not None and s.theory_generation and s.generate:
            validate_theory_cell(theory_cell, gen_layers, gen_betas)
    methods = list(s.methods)
    bad_methods = [m for m in methods if m not in ("unique", "raw")]
    if bad_methods or not methods:
        raise SteeringError(f"methods must be 'unique' and/or 'raw', got {methods}.")
    seed = s.seed
    site, span = s.site, s.span
    out = start_run(seed, out)
    timer = StepTimer("steer", verbose=progress)
    started = time.perf_counter()
    half = span // 2
    needed = sorted({x for c in layers for x in range(c - half, c + half + 1)})
    if needed[0] < 0 or needed[-1] >= model.n_layers:
        raise SteeringError(
            f"layers {layers} with span {span} reach outside 0..{model.n_layers - 1}."
        )

    probe_rows, steer_rows = split_rows(dataset, s.n, s.n_probe, seed)
    tmpl = get_template(s.template)
    probe_prompts = build_prompts(
        model, probe_rows.texts, probe_rows.labels, probe_rows.label_names, tmpl
    )
    with timer.step("extraction"):
        store = extract_activations(
            model,
            probe_prompts,
            sites=[site],
            layers=needed,
            out_dir=s.store_dir,
            dataset=probe_rows,
            batch_size=s.batch_size,
            seed=seed,
            progress=progress,
        )
    folds = min(s.n_folds, max(2, len(probe_rows) // 5))
    with timer.step("appraisal probes"):
        appraisal = probe_appraisals(
            store,
            probe_rows.appraisals,
            probe_rows.appraisal_names,
            sites=[site],
            layers=needed,
            alpha=s.alpha,
            n_folds=folds,
            seed=seed,
            progress=progress,
            num_threads=1,
        )

    user = list(dict.fromkeys(c.name for c in combos))
    all_combos = {c.name: c for c in combos}
    if s.theory:
        for name in required_combos(THEORY_PREDICTIONS):
            all_combos.setdefault(name, AppraisalCombo.parse(name))
    vectors: dict[str, dict[int, np.ndarray]] = {}
    method_of: dict[str, str] = {}
    for method in methods:
        for name, combo in all_combos.items():
            key = name if method == "unique" else f"raw:{name}"
            vectors[key] = {
                x: combo_vector(appraisal, site, x, combo, method, fixed) for x in needed
            }
            method_of[key] = method
    conditions = build_conditions(vectors, layers, betas, n_controls, seed, span, method_of)
    steer_prompts = build_prompts(
        model, steer_rows.texts, steer_rows.labels, steer_rows.label_names, tmpl
    )
    with timer.step("readout sweep"):
        readout = readout_sweep(
            model,
            steer_prompts,
            conditions,
            site,
            s.scale,
            s.readout_positions,
            s.batch_size,
            ids=steer_rows.ids,
            progress=progress,
            n_boot=s.n_boot,
            boot_seed=seed,
        )
    readout_table = readout.table

    generation = None
    judge_info = None
    if s.generate:
        if judge is None:
            from lens_emotion.judge import load_judge

            judge = load_judge(
                "crowd-envent", data_path=s.judge_data_path, seed=seed, progress=progress
            )
        judge_info = judge.describe()
        readout_judge = None
        if s.second_judge and second_judge is None:
            from lens_emotion.judge import ReadoutJudge

            readout_judge = ReadoutJudge(
                model, labels=tuple(judge.labels), template=tmpl, batch_size=s.batch_size
            )
        elif s.second_judge:
            readout_judge = second_judge
        if readout_judge is not None:
            describe = getattr(readout_judge, "describe", None)
            judge_info = {
                **judge_info,
                "second_judge": describe() if callable(describe) else type(readout_judge).__name__,
            }
        gen_names = list(all_combos) if s.theory_generation else user
        gen_vectors = {k: vectors[k] for k in gen_names}
        gen_conditions = build_conditions(
            gen_vectors,
            gen_layers,
            gen_betas,
            gen_controls,
            seed,
            span,
            {k: "unique" for k in gen_names},
        )
        gen_rows = (
            steer_rows if s.gen_n is None else steer_rows.sample(min(s.gen_n, s.n), seed=seed)
        )
        with timer.step("generation sweep"):
            generation = generation_sweep(
                model,
                gen_rows.texts,
                gen_conditions,
                judge,
                site,
                s.scale,
                s.gen_positions,
                s.max_new_tokens,
                s.batch_size,
                seed,
                ids=gen_rows.ids,
                progress=progress,
                readout=readout_judge,
                n_boot=s.n_boot,
                boot_seed=seed,
            )
    steering_table = generation.table if generation is not None else readout_table

    checks_parts: list[pd.DataFrame] = []
    if s.theory:
        for sweep in [readout] + ([generation] if generation is not None else []):
            for method in methods:
                prefix = "" if method == "unique" else "raw:"
                part = check_predictions(
                    sweep,
                    THEORY_PREDICTIONS,
                    method,
                    prefix,
                    n_boot=max(s.n_boot, 1000),
                    seed=seed,
                )
                checks_parts.append(part)
    checks = pd.concat(checks_parts, ignore_index=True) if checks_parts else pd.DataFrame()
    if s.theory:
        checks = annotate_checks(checks, theory_cell=theory_cell)
        theory_summary = summarize_checks(checks)
    else:
        theory_summary = pd.DataFrame()

    promotion = None
    if s.promote:
        with timer.step("promotion"):
            emotion = probe_emotions(
                store,
                probe_rows.labels,
                label_names=probe_rows.label_names,
                sites=[site],
                layers=needed,
                n_folds=min(folds, min(probe_rows.label_counts().values())),
                seed=seed,
                progress=progress,
                num_threads=1,
            )
            promotion = emotion_promotion(
                model,
                steer_prompts,
                emotion,
                list(s.promote),
                layers,
                list(s.promote_betas),
                site,
                span,
                promote_controls,
                seed,
                s.readout_positions,
                s.batch_size,
                s.n_boot,
                progress,
            )

    files: dict[str, str] = {}

    def put(name: str, text: str) -> None:
        write_text_atomic(out / name, text)
        files[name] = name

    put("steering.csv", steering_table.to_csv(index=False))
    put("readout.csv", readout_table.to_csv(index=False))
    if s.theory:
        put("theory_checks.csv", checks.to_csv(index=False))
        put("theory_summary.csv", theory_summary.to_csv(index=False))
    if generation is not None:
        put("generations.jsonl", _generations_jsonl(generation, gen_rows.texts))
    if promotion is not None:
        put("promotion.csv", promotion.table.to_csv(index=False))
    directions = _direction_report(appraisal, site, vectors, layers)
    write_json_atomic(out / "directions.json", directions)
    files["directions.json"] = "directions.json"

    figures: dict[str, go.Figure] = {}
    shown_gen_layers = [] if generation is None else generation.layers()
    for name in user:
        slug = name.replace("+", "plus_").replace("-", "minus_").replace(",", "__")
        for layer in layers:
            figures[f"readout_bars_{slug}_L{layer}"] = stacked_bars_figure(
                readout_table, name, layer, "readout"
            )
            figures[f"readout_sankey_{slug}_L{layer}"] = sankey_figure(readout, name, layer)
            if generation is not None and layer in shown_gen_layers:
                figures[f"generation_bars_{slug}_L{layer}"] = stacked_bars_figure(
                    steering_table, name, layer, "generation"
                )
                figures[f"generation_sankey_{slug}_L{layer}"] = sankey_figure(
                    generation, name, layer
                )
    for fig_name, fig in figures.items():
        for path in write_figure(fig, out / "figures" / fig_name, formats=s.formats):
            files[f"figures/{path.name}"] = str(path.relative_to(out))

    # the manifest keeps its historical timing keys (extraction_s, ..., total_s)
    timings = {f"{k.replace(' ', '_')}_s": v for k, v in timer.timings.items()}
    timings["total_s"] = report_step("steer", "total", time.perf_counter() - started, progress)
    write_manifest(
        out,
        seed=seed,
        model=model,
        dataset=dataset,
        template=tmpl,
        settings=s,
        command=command,
        extra={
            "analysis": "steering",
            "combos": user,
            "theory_combos": list(all_combos) if s.theory else [],
            "methods": methods,
            "fixed": fixed if fixed is not None else "all other appraisals",
            "layers": layers,
            "span": span,
            "site": site,
            "scale": s.scale,
            "betas": betas,
            "gen_betas": gen_betas,
            "gen_layers": gen_layers,
            "gen_n": len(steer_rows) if s.gen_n is None else min(s.gen_n, s.n),
            "gen_controls": gen_controls,
            "readout_positions": s.readout_positions,
            "gen_positions": s.gen_positions,
            "n_controls": n_controls,
            "theory_rule": None
            if not s.theory
            else (
                "Holm over each prediction's cells"
                if theory_cell is None
                else f"fixed cell (layer {theory_cell[0]}, step {theory_cell[1]:g})"
            ),
            "theory_cell": None if theory_cell is None else list(theory_cell),
            "n_steered": len(steer_rows),
            "n_probe": len(probe_rows),
            "steered_ids": list(steer_rows.ids),
            "probe_data_sha256": probe_rows.fingerprint(),
            "steered_data_sha256": steer_rows.fingerprint(),
            "max_new_tokens": s.max_new_tokens,
            "generation": "greedy" if s.generate else None,
            "judge": judge_info,
            "promote": list(s.promote),
            "promote_controls": promote_controls,
            "activation_store": str(store.root),
            "n_boot": s.n_boot,
            "timings_s": timings,
        },
    )
    files["manifest.json"] = "manifest.json"
    return SteeringOutputs(
        readout=readout,
        generation=generation,
        steering_table=steering_table,
        readout_table=readout_table,
        checks=checks,
        theory_summary=theory_summary,
        promotion=promotion,
        judge=judge_info,
        directions=directions,
        files=files,
        figures=figures,
        settings=s,
    )
