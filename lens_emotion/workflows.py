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
from lens_emotion.manifest import run_manifest, seed_everything


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

    Returns:
        The :class:`ProbingOutputs`.
    """
    from lens_emotion.activations import extract_activations
    from lens_emotion.inference import infer_emotions
    from lens_emotion.plots import write_figure
    from lens_emotion.probing import (
        appraisal_alignment,
        probe_appraisals,
        probe_emotions,
        probe_positions,
    )
    from lens_emotion.prompts import build_prompts

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
        timings["agreeing_filter_s"] = round(time.perf_counter() - started, 2)
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
    timings["extraction_s"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    emotion = probe_emotions(
        store,
        dataset.labels,
        label_names=dataset.label_names,
        sites=list(sites),
        n_folds=n_folds,
        seed=seed,
        C=C,
        mask=mask,
        model=probe_model,
        progress=progress,
        num_threads=num_threads,
    )
    timings["emotion_probes_s"] = round(time.perf_counter() - t0, 2)
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
            alpha=alpha,
            n_folds=n_folds,
            seed=seed,
            mask=mask,
            progress=progress,
            num_threads=num_threads,
        )
        align_site = "resid_post" if "resid_post" in sites else sites[0]
        alignment = appraisal_alignment(emotion, appraisal, site=align_site)
        timings["appraisal_probes_s"] = round(time.perf_counter() - t0, 2)
        files.update(_relative(appraisal.save(out), out))
        files.update(_relative(alignment.save(out), out))
        figures["probe_appraisals"] = appraisal.figure()
        # First shown (and the static export's) layer: where the emotion signal stabilises.
        shown = emotion.stable_layer(align_site)
        figures["alignment"] = alignment.figure(layer=shown if shown in alignment.layers else None)

    positions = None
    if last_k > 1:
        positions = probe_positions(
            store,
            dataset.labels,
            label_names=dataset.label_names,
            site="resid_post",
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
    timings["total_s"] = round(time.perf_counter() - started, 2)
    n_rows = int(mask.sum()) if mask is not None else len(dataset)
    manifest = run_manifest(
        seed=seed,
        model=model,
        dataset=dataset,
        template=prompts.template,
        extra={
            "analysis": "probing",
            "sites": list(sites),
            "last_k": last_k,
            "agreeing_only": agreeing_only,
            "n_rows_probed": n_rows,
            "n_folds": n_folds,
            "C": C,
            "alpha": alpha,
            "probe_model": probe_model,
            "activation_store": str(store.root),
            "timings_s": timings,
        },
    )
    write_json_atomic(out / "manifest.json", manifest)
    files["manifest.json"] = "manifest.json"
    return ProbingOutputs(
        emotion, embedding, appraisal, alignment, positions, store, files, figures, n_rows
    )


def _relative(paths: Sequence[Path], out: Path) -> dict[str, str]:
    """Map written files to their paths relative to the output folder."""
    return {Path(p).name: str(Path(p).relative_to(out)) for p in paths}
