"""End-to-end workflows shared by the CLI, the demo and the notebooks.

Each workflow wires library functions together (load → prompts → activations → analysis →
files) and holds no analysis logic of its own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lens_emotion.io import write_json_atomic
from lens_emotion.manifest import report_step, run_manifest, seed_everything


@dataclass(frozen=True)
class ProbingOutputs:
    """What :func:`run_probing` produced.

    Attributes:
        emotion: The emotion-probe result.
        embedding: Probe table of the embedding baseline (``resid_pre`` of block 0).
        appraisal: The appraisal-probe result (``None`` if the data has no appraisals).
        alignment: Emotion–appraisal alignment (``None`` without appraisals).
        positions: Last-k-token probe table (``None`` if only the last token was stored).
        store: The activation store used.
        files: Every file written, relative to the output folder.
        figures: Named Plotly figures.
        n_rows: Rows probed (after the agreeing filter, if any).
        evaluation: Accuracy of the all-rows probes on the evaluation dataset per (site,
            layer) (:func:`lens_emotion.probing.evaluate_emotion_probes`); ``None`` without
            ``eval_dataset``.
        eval_store: The evaluation dataset's activation store (``None`` without one).
    """

    emotion: Any
    embedding: Any
    appraisal: Any | None
    alignment: Any | None
    positions: Any | None
    store: Any
    files: dict[str, str]
    figures: dict[str, Any]
    n_rows: int
    evaluation: Any | None = None
    eval_store: Any | None = None


def run_probing(
    model: Any,
    dataset: Any,
    out: str | Path,
    template: str = "emotion-list",
    sites: Sequence[str] = ("attn_out", "mlp_out", "resid_post"),
    last_k: int = 1,
    agreeing_only: bool = False,
    calibrate: bool | str = "mean",
    n_folds: int = 5,
    C: float = 1.0,
    alpha: float | Sequence[float] = (1.0, 10.0, 100.0, 1e3, 1e4),
    probe_model: str = "logreg",
    formats: Sequence[str] = ("html",),
    store_dir: str | Path | None = None,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
    num_threads: int | None = None,
    eval_dataset: Any | None = None,
    layers: Sequence[int] | None = None,
) -> ProbingOutputs:
    """Extract activations, probe emotions and appraisals per layer, and write everything.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        dataset: An :class:`~lens_emotion.data.EmotionDataset` (crowd-enVENT-like).
        out: Output folder.
        template: Prompt template whose last token is probed.
        sites: Sites to probe. ``resid_pre`` of block 0 is always probed too, as the
            embedding baseline.
        last_k: Also probe each of the last ``k`` positions of ``resid_post`` (k > 1).
        agreeing_only: Probe only rows the model classifies correctly (the paper's filter).
        calibrate: Calibration used for the agreeing filter.
        n_folds: Cross-validation folds.
        C: Inverse L2 strength of the emotion probes.
        alpha: Ridge penalty of the appraisal probes, or a grid from which each appraisal's
            penalty is chosen inside every training fold (leave-one-out), the default.
        probe_model: ``"logreg"`` or ``"mlp"``.
        formats: Figure formats (``"html"``, ``"png"``, ``"svg"``, ``"pdf"``).
        store_dir: Where to keep the activation store (default: the cache, by request hash).
        batch_size: Prompts per forward pass.
        seed: Seed for folds, controls and subsets.
        progress: Show progress bars.
        num_threads: Torch threads for the probe fits (1 is fastest on a busy CPU).
        eval_dataset: A second :class:`~lens_emotion.data.EmotionDataset` to test on: the
            emotion probes fitted on *all* (selected) training rows are scored on its rows,
            per (site, layer), with the same prompt (the training dataset's label list) and
            sites; written to ``probe_emotions_eval.csv``. Its rows whose label is not a
            training label are dropped (with a warning, counted in the manifest). The
            manifest records both datasets' hashes (``data`` and ``eval_data``).
        layers: Probe only these layers (default: all). Activations are still extracted for
            every layer, so a later run over all layers reuses the same cached store.

    Returns:
        The :class:`ProbingOutputs`.

    Raises:
        ProbeError: ``eval_dataset`` shares no label with the training data, or
            ``probe_model`` is not ``"logreg"`` (only linear probes have directions to
            evaluate).
    """
    from lens_emotion.activations import extract_activations
    from lens_emotion.inference import infer_emotions
    from lens_emotion.viz import write_figure
    from lens_emotion.probing import (
        ProbeError,
        appraisal_alignment,
        probe_appraisals,
        probe_emotions,
        probe_positions,
    )
    from lens_emotion.prompts import build_prompts

    if eval_dataset is not None and probe_model != "logreg":
        raise ProbeError(
            f"eval_dataset needs probe_model='logreg' (the MLP probe keeps no directions to "
            f"score another dataset with), not {probe_model!r}."
        )
    seed_everything(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    mask = None
    if agreeing_only:
        result = infer_emotions(
            model, dataset, template, batch_size=batch_size, calibrate=calibrate, progress=progress
        )
        mask = result.correct
        timings["agreeing_filter_s"] = report_step(
            "probe", "agreeing filter", time.perf_counter() - started, progress
        )
    prompts = build_prompts(model, dataset.texts, dataset.labels, dataset.label_names, template)
    t0 = time.perf_counter()
    store = extract_activations(
        model,
        prompts,
        sites=list(sites),
        positions=last_k,
        out_dir=store_dir,
        dataset=dataset,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
    )
    timings["extraction_s"] = report_step("probe", "extraction", time.perf_counter() - t0, progress)

    t0 = time.perf_counter()
    emotion = probe_emotions(
        store,
        dataset.labels,
        label_names=dataset.label_names,
        sites=list(sites),
        layers=None if layers is None else list(layers),
        n_folds=n_folds,
        seed=seed,
        C=C,
        mask=mask,
        model=probe_model,
        progress=progress,
        num_threads=num_threads,
    )
    timings["emotion_probes_s"] = report_step(
        "probe", "emotion probes", time.perf_counter() - t0, progress
    )
    # Embedding baseline: resid_pre of block 0 (the forward pass stops after layer 0).
    embed_store = extract_activations(
        model,
        prompts,
        sites=["resid_pre"],
        layers=[0],
        dataset=dataset,
        batch_size=batch_size,
        seed=seed,
        progress=False,
    )
    embedding = probe_emotions(
        embed_store,
        dataset.labels,
        label_names=dataset.label_names,
        n_folds=n_folds,
        seed=seed,
        C=C,
        mask=mask,
        progress=False,
        num_threads=num_threads,
        fit_directions=False,
    ).table
    files = _relative(emotion.save(out), out)
    embedding.to_csv(out / "probe_embedding_baseline.csv", index=False)
    files["probe_embedding_baseline.csv"] = "probe_embedding_baseline.csv"
    figures = {"probe_emotions_bars": emotion.figure(), "probe_emotions_heatmap": emotion.heatmap()}

    appraisal = alignment = None
    if dataset.appraisals is not None:
        t0 = time.perf_counter()
        appraisal = probe_appraisals(
            store,
            dataset.appraisals,
            dataset.appraisal_names,
            sites=list(sites),
            layers=None if layers is None else list(layers),
            alpha=alpha,
            n_folds=n_folds,
            seed=seed,
            mask=mask,
            progress=progress,
            num_threads=num_threads,
        )
        align_site = "resid_post" if "resid_post" in sites else sites[0]
        alignment = appraisal_alignment(emotion, appraisal, site=align_site)
        timings["appraisal_probes_s"] = report_step(
            "probe", "appraisal probes", time.perf_counter() - t0, progress
        )
        files.update(_relative(appraisal.save(out), out))
        files.update(_relative(alignment.save(out), out))
        figures["probe_appraisals"] = appraisal.figure()
        # First shown (and the static export's) layer: where the emotion signal stabilises.
        shown = emotion.stable_layer(align_site)
        figures["alignment"] = alignment.figure(layer=shown if shown in alignment.layers else None)

    evaluation = eval_store = None
    eval_info: dict[str, Any] | None = None
    if eval_dataset is not None:
        t0 = time.perf_counter()
        evaluation, eval_store, eval_info = _evaluate_on(
            model, emotion, eval_dataset, dataset.label_names, prompts.template, sites,
            store_dir, batch_size, seed, progress,
        )  # fmt: skip
        evaluation.to_csv(out / "probe_emotions_eval.csv", index=False)
        files["probe_emotions_eval.csv"] = "probe_emotions_eval.csv"
        timings["eval_s"] = report_step("probe", "eval", time.perf_counter() - t0, progress)

    positions = None
    if last_k > 1:
        positions = probe_positions(
            store,
            dataset.labels,
            label_names=dataset.label_names,
            site="resid_post",
            layers=None if layers is None else list(layers),
            n_folds=n_folds,
            seed=seed,
            mask=mask,
            progress=progress,
            num_threads=num_threads,
        )
        files.update(_relative(positions.save(out), out))
        figures["probe_positions"] = positions.figure()

    for name, fig in figures.items():
        for path in write_figure(fig, out / "figures" / name, formats=formats):
            files[f"figures/{path.name}"] = str(path.relative_to(out))
    timings["total_s"] = report_step("probe", "total", time.perf_counter() - started, progress)
    n_rows = int(mask.sum()) if mask is not None else len(dataset)
    manifest = run_manifest(
        seed=seed,
        model=model,
        dataset=dataset,
        template=prompts.template,
        extra={
            "analysis": "probing",
            "sites": list(sites),
            "layers": None if layers is None else [int(x) for x in layers],
            "last_k": last_k,
            "agreeing_only": agreeing_only,
            "n_rows_probed": n_rows,
            "n_folds": n_folds,
            "C": C,
            "alpha": alpha,
            "probe_model": probe_model,
            "activation_store": str(store.root),
            "timings_s": timings,
            **({"eval_data": eval_info} if eval_info is not None else {}),
        },
    )
    write_json_atomic(out / "manifest.json", manifest)
    files["manifest.json"] = "manifest.json"
    return ProbingOutputs(
        emotion, embedding, appraisal, alignment, positions, store, files, figures, n_rows,
        evaluation, eval_store,
    )  # fmt: skip


def _evaluate_on(
    model: Any,
    emotion: Any,
    eval_dataset: Any,
    label_names: Sequence[str],
    template: Any,
    sites: Sequence[str],
    store_dir: str | Path | None,
    batch_size: int,
    seed: int,
    progress: bool,
) -> tuple[Any, Any, dict[str, Any]]:
    """Extract the evaluation rows' activations and score the all-rows probes on them."""
    import warnings

    from lens_emotion.activations import extract_activations
    from lens_emotion.probing import ProbeError, evaluate_emotion_probes
    from lens_emotion.prompts import build_prompts

    known = set(emotion.label_names)
    keep = [i for i, lab in enumerate(eval_dataset.labels) if lab in known]
    dropped = len(eval_dataset) - len(keep)
    if not keep:
        raise ProbeError(
            f"the evaluation data shares no label with the probes' classes "
            f"{list(emotion.label_names)}; evaluate on data labelled with those emotions."
        )
    if dropped:
        unknown = sorted(set(eval_dataset.labels) - known)
        warnings.warn(
            f"dropped {dropped} of {len(eval_dataset)} evaluation rows whose label "
            f"({', '.join(unknown[:6])}) the probes were not trained on.",
            UserWarning,
            stacklevel=3,
        )
        eval_dataset = eval_dataset.subset(keep)
    prompts = build_prompts(model, eval_dataset.texts, eval_dataset.labels, label_names, template)
    eval_store = extract_activations(
        model,
        prompts,
        sites=list(sites),
        positions=1,
        out_dir=None
        if store_dir is None
        else Path(store_dir).with_name(Path(store_dir).name + "_eval"),
        dataset=eval_dataset,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
    )
    table = evaluate_emotion_probes(emotion, eval_store, eval_dataset.labels, sites=list(sites))
    info = {
        "name": eval_dataset.name,
        "source": eval_dataset.source,
        "n": len(eval_dataset),
        "sha256": eval_dataset.fingerprint(),
        "text_column": eval_dataset.text_column,
        "n_dropped_unknown_label": dropped,
        "activation_store": str(eval_store.root),
    }
    return table, eval_store, info


def _relative(paths: Sequence[Path], out: Path) -> dict[str, str]:
    """Map written files to their paths relative to the output folder."""
    return {Path(p).name: str(Path(p).relative_to(out)) for p in paths}
