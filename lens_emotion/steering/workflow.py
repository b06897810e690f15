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
  (:mod:`lens_emotion.theory`) at every swept layer and beta, with each cell's p-value, its
  Holm-adjusted p-value and the prediction's corrected verdict (or the verdict at the cell
  fixed before the run, ``theory_cell``);
* ``generations.jsonl``: every steered continuation with its masked and raw judged emotion
  (and the second judge's label);
* ``promotion.csv`` (if emotions are promoted), ``directions.json`` (norms, probe R²,
  orthogonality of the unique-effect vectors), ``figures/`` (stacked bars, Sankey diagrams)
  and ``manifest.json``.

The rows the probes are fitted on and the rows that are steered are disjoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from lens_emotion.io import write_json_atomic, write_text_atomic
from lens_emotion.manifest import report_step, run_manifest, seed_everything
from lens_emotion.steering import (
    AppraisalCombo,
    PromotionResult,
    SteeringError,
    SweepOutcome,
    appraisal_matrix,
    build_conditions,
    combo_vector,
    emotion_promotion,
    generation_sweep,
    readout_sweep,
)

__all__ = ["SteeringOutputs", "check_appraisal_names", "run_steering", "split_rows"]


@dataclass(frozen=True)
class SteeringOutputs:
    """What :func:`run_steering` produced.

    Attributes:
        readout: Outcome 1 sweep.
        generation: Outcome 2 sweep (``None`` if generation was off).
        steering_table: The ``steering.csv`` table.
        readout_table: The ``readout.csv`` table.
        checks: Theory checks, one row per prediction part and cell.
        summary: Theory-check summary per prediction.
        promotion: Emotion promotion result (``None`` if none was asked for).
        judge: The judge's description, with its held-out accuracy (``None`` without).
        directions: Per combo/layer norms and orthogonality of the steering vectors.
        files: Written files, relative to ``out``.
        figures: Named Plotly figures.
    """

    readout: SweepOutcome
    generation: SweepOutcome | None
    steering_table: pd.DataFrame
    readout_table: pd.DataFrame
    checks: pd.DataFrame
    summary: pd.DataFrame
    promotion: PromotionResult | None
    judge: dict[str, Any] | None
    directions: dict[str, Any]
    files: dict[str, str]
    figures: dict[str, Any]


def split_rows(dataset: Any, n: int, n_probe: int, seed: int = 0) -> tuple[Any, Any]:
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
    dataset: Any, combos: Sequence[AppraisalCombo], fixed: Sequence[str] | None = None
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
    appraisal: Any, site: str, vectors: dict[str, dict[int, np.ndarray]], layers: Sequence[int]
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
    model: Any,
    dataset: Any,
    out: str | Path,
    combos: Sequence[AppraisalCombo],
    layers: Sequence[int],
    betas: Sequence[float] = (-8.0, -4.0, 0.0, 4.0, 8.0),
    *,
    gen_betas: Sequence[float] | None = None,
    gen_layers: Sequence[int] | None = None,
    gen_n: int | None = None,
    gen_controls: int | None = None,
    n: int = 60,
    n_probe: int = 400,
    site: str = "resid_post",
    span: int = 1,
    scale: Literal["none", "rms"] = "rms",
    readout_positions: Literal["last", "all"] = "last",
    gen_positions: Literal["last", "all"] = "all",
    methods: Sequence[str] = ("unique",),
    fixed: Sequence[str] | None = None,
    n_controls: int = 10,
    theory: bool = True,
    theory_cell: tuple[int, float] | None = None,
    theory_generation: bool = False,
    generate: bool = True,
    judge: Any | None = None,
    judge_data_path: str | Path | None = None,
    second_judge: Any | bool = True,
    max_new_tokens: int = 24,
    promote: Sequence[str] = (),
    promote_betas: Sequence[float] = (1.0,),
    promote_controls: int | None = None,
    template: str = "emotion-list",
    alpha: float | Sequence[float] = (1.0, 10.0, 100.0, 1e3, 1e4),
    n_folds: int = 5,
    store_dir: str | Path | None = None,
    batch_size: int = 16,
    n_boot: int = 1000,
    formats: Sequence[str] = ("html",),
    seed: int = 0,
    progress: bool = True,
    command: str | None = None,
) -> SteeringOutputs:
    """Fit appraisal probes, build steering vectors, sweep them and write the results.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        dataset: A crowd-enVENT-like :class:`~lens_emotion.data.EmotionDataset` with appraisals.
        out: Output folder.
        combos: Appraisal combos to steer (the CLI's ``--appraisal/--signs``).
        layers: Centre layers.
        betas: Readout betas (0 is the clean run).
        gen_betas: Generation betas (default: ``betas``).
        gen_layers: Centre layers for generation (default: ``layers``).
        gen_n: Generate for a stratified subset of ``gen_n`` steered texts (default: all).
        gen_controls: Random directions per generation cell (default: ``n_controls``).
        n: Steered texts.
        n_probe: Probe rows (disjoint from the steered ones).
        site: Site of probes and hooks.
        span: Window of layers hooked around each centre layer (odd).
        scale: ``"rms"`` (beta in units of the residual's RMS at each position) or ``"none"``.
        readout_positions: Where the readout sweep steers (``"last"``: last prompt token).
        gen_positions: Where generation is steered (``"all"``: every position).
        methods: ``"unique"`` (unique-effect vectors) and/or ``"raw"`` (unprojected sums).
        fixed: Appraisals held fixed by unique vectors (default: all others).
        n_controls: Random same-norm directions per layer and beta (the theory checks need
            at least 2; 10 by default).
        theory: Add the combos of :data:`lens_emotion.theory.THEORY_PREDICTIONS` to the
            readout sweep and write the checks.
        theory_cell: ``(layer, step)`` fixed before the run: each prediction's verdict is
            decided at that layer and ``beta = sign * step`` alone, uncorrected. ``None``
            (default): Holm's correction over every swept cell decides.
        theory_generation: Generate for the theory combos too (slow on a CPU).
        generate: Run outcome 2.
        judge: An emotion judge; default :func:`lens_emotion.judge.load_judge` (crowd-enVENT).
        judge_data_path: crowd-enVENT file the default judge trains on.
        second_judge: A second judge of another kind for the generations (``.predict``);
            ``True`` (default): :class:`lens_emotion.judge.ReadoutJudge`, the unsteered
            model's own label readout of the masked reply under the inference template;
            ``False``: none (no ``readout``/``kappa`` columns).
        max_new_tokens: Tokens per continuation.
        promote: Emotions for Tak et al.'s emotion promotion (readout outcome).
        promote_betas: Multiples of ``w_e`` for promotion.
        promote_controls: Random same-norm directions per promotion cell (default:
            ``n_controls``).
        template: Inference prompt (probes and readout).
        alpha: Ridge penalty grid of the appraisal probes.
        n_folds: CV folds of the probes.
        store_dir: Activation store folder (default: the cache).
        batch_size: Prompts per forward pass.
        n_boot: Bootstrap resamples.
        formats: Figure formats.
        seed: Seed of splits, controls and bootstraps.
        progress: Show progress bars.
        command: Command line for the manifest.

    Returns:
        The :class:`SteeringOutputs`.

    Raises:
        SteeringError: No appraisals in the dataset, bad sizes, unknown appraisals.
    """
    from lens_emotion.activations import extract_activations
    from lens_emotion.viz import write_figure
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

    if dataset.appraisals is None:
        raise SteeringError(
            f"dataset {dataset.name!r} has no appraisal ratings; steering needs crowd-enVENT "
            "(--dataset crowd-envent)."
        )
    if not combos:
        raise SteeringError("no appraisal combo given; pass e.g. --appraisal pleasantness.")
    check_appraisal_names(dataset, combos, fixed)
    if theory:
        if n_controls < 2 or (theory_generation and generate and (gen_controls or 2) < 2):
            raise SteeringError(
                "the theory checks need at least 2 random directions per cell (10 "
                "recommended); raise --controls / --gen-controls or pass --no-theory."
            )
        theory_cell = validate_theory_cell(theory_cell, layers, betas)
        if theory_cell is not None and theory_generation and generate:
            validate_theory_cell(
                theory_cell,
                layers if gen_layers is None else gen_layers,
                betas if gen_betas is None else gen_betas,
            )
    bad_methods = [m for m in methods if m not in ("unique", "raw")]
    if bad_methods or not methods:
        raise SteeringError(f"methods must be 'unique' and/or 'raw', got {list(methods)}.")
    seed_everything(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    layers = [int(x) for x in layers]
    half = span // 2
    needed = sorted({x for c in layers for x in range(c - half, c + half + 1)})
    if needed[0] < 0 or needed[-1] >= model.n_layers:
        raise SteeringError(
            f"layers {layers} with span {span} reach outside 0..{model.n_layers - 1}."
        )

    probe_rows, steer_rows = split_rows(dataset, n, n_probe, seed)
    tmpl = get_template(template)
    probe_prompts = build_prompts(
        model, probe_rows.texts, probe_rows.labels, probe_rows.label_names, tmpl
    )
    t0 = time.perf_counter()
    store = extract_activations(
        model,
        probe_prompts,
        sites=[site],
        layers=needed,
        out_dir=store_dir,
        dataset=probe_rows,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
    )
    timings["extraction_s"] = report_step("steer", "extraction", time.perf_counter() - t0, progress)
    t0 = time.perf_counter()
    folds = min(n_folds, max(2, len(probe_rows) // 5))
    appraisal = probe_appraisals(
        store,
        probe_rows.appraisals,
        probe_rows.appraisal_names,
        sites=[site],
        layers=needed,
        alpha=alpha,
        n_folds=folds,
        seed=seed,
        progress=progress,
        num_threads=1,
    )
    timings["appraisal_probes_s"] = report_step(
        "steer", "appraisal probes", time.perf_counter() - t0, progress
    )

    user = list(dict.fromkeys(c.name for c in combos))
    all_combos = {c.name: c for c in combos}
    if theory:
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
    t0 = time.perf_counter()
    readout = readout_sweep(
        model,
        steer_prompts,
        conditions,
        site,
        scale,
        readout_positions,
        batch_size,
        ids=steer_rows.ids,
        progress=progress,
    )
    timings["readout_sweep_s"] = report_step(
        "steer", "readout sweep", time.perf_counter() - t0, progress
    )
    readout_table = readout.table(n_boot, seed)

    generation = None
    judge_info = None
    if generate:
        if judge is None:
            from lens_emotion.judge import load_judge

            judge = load_judge(
                "crowd-envent", data_path=judge_data_path, seed=seed, progress=progress
            )
        judge_info = judge.describe()
        readout_judge = None
        if second_judge is True:
            from lens_emotion.judge import ReadoutJudge

            readout_judge = ReadoutJudge(
                model, labels=tuple(judge.labels), template=tmpl, batch_size=batch_size
            )
        elif second_judge is not False and second_judge is not None:
            readout_judge = second_judge
        if readout_judge is not None:
            describe = getattr(readout_judge, "describe", None)
            judge_info = {
                **judge_info,
                "second_judge": describe() if callable(describe) else type(readout_judge).__name__,
            }
        gen_names = list(all_combos) if theory_generation else user
        gen_vectors = {k: vectors[k] for k in gen_names}
        gen_conditions = build_conditions(
            gen_vectors,
            layers if gen_layers is None else [int(x) for x in gen_layers],
            betas if gen_betas is None else gen_betas,
            n_controls if gen_controls is None else gen_controls,
            seed,
            span,
            {k: "unique" for k in gen_names},
        )
        gen_rows = steer_rows if gen_n is None else steer_rows.sample(min(gen_n, n), seed=seed)
        t0 = time.perf_counter()
        generation = generation_sweep(
            model,
            gen_rows.texts,
            gen_conditions,
            judge,
            site,
            scale,
            gen_positions,
            max_new_tokens,
            batch_size,
            seed,
            ids=gen_rows.ids,
            progress=progress,
            readout=readout_judge,
        )
        timings["generation_sweep_s"] = report_step(
            "steer", "generation sweep", time.perf_counter() - t0, progress
        )
    steering_table = generation.table(n_boot, seed) if generation is not None else readout_table

    checks_parts: list[pd.DataFrame] = []
    if theory:
        for sweep in [readout] + ([generation] if generation is not None else []):
            for method in methods:
                prefix = "" if method == "unique" else "raw:"
                part = check_predictions(
                    sweep, THEORY_PREDICTIONS, method, prefix, n_boot=max(n_boot, 1000), seed=seed
                )
                checks_parts.append(part)
    checks = pd.concat(checks_parts, ignore_index=True) if checks_parts else pd.DataFrame()
    if theory:
        checks = annotate_checks(checks, theory_cell=theory_cell)
        summary = summarize_checks(checks)
    else:
        summary = pd.DataFrame()

    promotion = None
    if promote:
        t0 = time.perf_counter()
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
            list(promote),
            layers,
            promote_betas,
            site,
            span,
            n_controls if promote_controls is None else promote_controls,
            seed,
            readout_positions,
            batch_size,
            n_boot,
            progress,
        )
        timings["promotion_s"] = report_step(
            "steer", "promotion", time.perf_counter() - t0, progress
        )

    files: dict[str, str] = {}

    def put(name: str, text: str) -> None:
        write_text_atomic(out / name, text)
        files[name] = name

    put("steering.csv", steering_table.to_csv(index=False))
    put("readout.csv", readout_table.to_csv(index=False))
    if theory:
        put("theory_checks.csv", checks.to_csv(index=False))
        put("theory_summary.csv", summary.to_csv(index=False))
    if generation is not None:
        put("generations.jsonl", _generations_jsonl(generation, gen_rows.texts))
    if promotion is not None:
        put("promotion.csv", promotion.table.to_csv(index=False))
    directions = _direction_report(appraisal, site, vectors, layers)
    write_json_atomic(out / "directions.json", directions)
    files["directions.json"] = "directions.json"

    figures: dict[str, Any] = {}
    shown_gen_layers = [] if generation is None else generation.layers()
    for name in user:
        slug = name.replace("+", "plus_").replace("-", "minus_").replace(",", "__")
        for layer in layers:
            figures[f"readout_bars_{slug}_L{layer}"] = stacked_bars_figure(
                readout_table, name, layer, "readout"
            )
            figures[f"readout_sankey_{slug}_L{layer}"] = sankey_figure(readout, name, layer)
            if layer in shown_gen_layers:
                figures[f"generation_bars_{slug}_L{layer}"] = stacked_bars_figure(
                    steering_table, name, layer, "generation"
                )
                figures[f"generation_sankey_{slug}_L{layer}"] = sankey_figure(
                    generation, name, layer
                )
    for fig_name, fig in figures.items():
        for path in write_figure(fig, out / "figures" / fig_name, formats=formats):
            files[f"figures/{path.name}"] = str(path.relative_to(out))

    timings["total_s"] = report_step("steer", "total", time.perf_counter() - started, progress)
    manifest = run_manifest(
        seed=seed,
        model=model,
        dataset=dataset,
        template=tmpl,
        command=command,
        extra={
            "analysis": "steering",
            "combos": user,
            "theory_combos": list(all_combos) if theory else [],
            "methods": list(methods),
            "fixed": list(fixed) if fixed is not None else "all other appraisals",
            "layers": layers,
            "span": span,
            "site": site,
            "scale": scale,
            "betas": [float(b) for b in betas],
            "gen_betas": [float(b) for b in (betas if gen_betas is None else gen_betas)],
            "gen_layers": [int(x) for x in (layers if gen_layers is None else gen_layers)],
            "gen_n": len(steer_rows) if gen_n is None else min(gen_n, n),
            "gen_controls": n_controls if gen_controls is None else gen_controls,
            "readout_positions": readout_positions,
            "gen_positions": gen_positions,
            "n_controls": n_controls,
            "theory_rule": None
            if not theory
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
            "max_new_tokens": max_new_tokens,
            "generation": "greedy" if generate else None,
            "judge": judge_info,
            "promote": list(promote),
            "promote_controls": n_controls if promote_controls is None else promote_controls,
            "activation_store": str(store.root),
            "n_boot": n_boot,
            "timings_s": timings,
        },
    )
    write_json_atomic(out / "manifest.json", manifest)
    files["manifest.json"] = "manifest.json"
    return SteeringOutputs(
        readout=readout,
        generation=generation,
        steering_table=steering_table,
        readout_table=readout_table,
        checks=checks,
        summary=summary,
        promotion=promotion,
        judge=judge_info,
        directions=directions,
        files=files,
        figures=figures,
    )
