"""End-to-end patching run (``lens-emotion patch``): pairs, grid, heads, ablations, control.

Wires :mod:`lens_emotion.pairs` and :mod:`lens_emotion.patching` together and writes every
table, figure and a manifest to one folder::

    patching.csv              transfer / remained / neither per site and center layer (+ CI)
    patching_per_pair.csv     outcome and logit-difference change per pair
    pairs.csv                 the pairs (ids, human labels, clean predictions)
    heads.csv                 head patching (hook_z) per layer and query head
    ablations.csv             zero / mean / random same-norm ablation: share of predictions kept
    control_patching.csv      the same grid on the control task (first word of the context)
    control_comparison.csv    do the emotion layers matter for the control task?
    control_heads.csv         head patching on the control task (with heads and control)
    figures/                  transfer, heads, ablations, control, control_heads (.html + static)
    manifest.json             model, data, template, seed, pairs, timings, peaks, versions
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lens_emotion.io import write_json_atomic, write_text_atomic
from lens_emotion.manifest import StepTimer, run_manifest, seed_everything
from lens_emotion.pairs import draw_pairs
from lens_emotion.patching import (
    SITES,
    ablate_sites,
    compare_control,
    compare_heads,
    patch_heads,
    patch_sites,
)
from lens_emotion.patching_plots import transfer_figure

CONTROL_TEMPLATE = "control-first-word"


@dataclass(frozen=True)
class PatchingOutputs:
    """What :func:`run_patching` produced.

    Attributes:
        sites: The windowed site-patching result (emotion task).
        heads: Head-patching result (``None`` if skipped).
        ablations: Ablation result (``None`` if skipped).
        control: Site patching on the control task (``None`` if skipped).
        control_comparison: :func:`~lens_emotion.patching.compare_control` table.
        files: Written files, relative to the output folder.
        figures: Named Plotly figures.
        manifest: The run manifest.
    """

    sites: Any
    heads: Any | None
    ablations: Any | None
    control: Any | None
    control_comparison: pd.DataFrame | None
    files: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


def _write_figures(
    figures: dict[str, Any], folder: Path, formats: Sequence[str]
) -> tuple[list[Path], str | None]:
    """Write figures; static formats are skipped (with a note) when no exporter is set up."""
    from lens_emotion.viz import write_figure_or_html

    written: list[Path] = []
    note = None
    for name, fig in figures.items():
        paths, problem = write_figure_or_html(fig, folder / name, formats)
        written += paths
        if problem is not None:
            note = problem
            warnings.warn(note, stacklevel=2)
            formats = ["html"]
    return written, note


def run_patching(
    model: Any,
    dataset: Any,
    out: str | Path,
    n_pairs: int = 200,
    span: int = 3,
    seed: int = 0,
    template: str = "emotion-list",
    agreeing_only: bool = True,
    calibrate: bool | str = "auto",
    sites: Sequence[str] = SITES,
    layers: Sequence[int] | None = None,
    heads: bool = True,
    ablations: bool = True,
    control: bool = True,
    method: str = "auto",
    formats: Sequence[str] = ("html",),
    batch_size: int = 16,
    command: str | None = None,
    progress: bool = True,
    inference: Any | None = None,
    control_inference: Any | None = None,
) -> PatchingOutputs:
    """Draw pairs and run windowed patching, head patching, ablations and the control task.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        dataset: Rows to draw pairs from (all are scored once per task).
        out: Output folder.
        n_pairs: Pairs per task.
        span: Window size.
        seed: Seed of the pair draws, random ablation directions and bootstraps.
        template: Emotion prompt template.
        agreeing_only: Draw pairs among agreeing rows only (the paper).
        calibrate: Calibration of the clean predictions (see :func:`draw_pairs`).
        sites: Sites to patch.
        layers: Center layers (default: all).
        heads: Also patch every query head's ``hook_z``.
        ablations: Also run zero / mean / random ablations.
        control: Also patch the control task (``control-first-word``).
        method: Patching engine (see :func:`~lens_emotion.patching.patch_sites`).
        formats: Figure formats (``html``; ``png``/``svg``/``pdf`` when kaleido + Chromium are
            set up, else skipped with a warning).
        batch_size: Prompts per clean forward pass.
        command: The command line, for the manifest.
        progress: Show progress bars.
        inference: Uncalibrated ``infer_emotions(model, dataset, template)`` result, if
            already computed (saves scoring every row again; see :func:`draw_pairs`).
        control_inference: The same for the control template.

    Returns:
        The :class:`PatchingOutputs`.
    """
    seed_everything(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []

    timer = StepTimer("patch", verbose=progress)
    timings = timer.timings

    def timed(name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with timer.step(name):
            return fn(*args, **kwargs)

    common = {"method": method, "batch_size": batch_size, "progress": progress}
    pairs = timed(
        "pairs_s",
        draw_pairs,
        model,
        dataset,
        n_pairs=n_pairs,
        seed=seed,
        template=template,
        agreeing_only=agreeing_only,
        calibrate=calibrate,
        batch_size=batch_size,
        progress=progress,
        inference=inference,
    )
    result = timed(
        "patching_s", patch_sites, model, pairs, sites=sites, layers=layers, span=span, **common
    )
    files.append(write_text_atomic(out / "patching.csv", result.table.to_csv(index=False)))
    files.append(
        write_text_atomic(out / "patching_per_pair.csv", result.per_pair.to_csv(index=False))
    )
    files.append(write_text_atomic(out / "pairs.csv", pairs.to_frame().to_csv(index=False)))
    figures: dict[str, Any] = {"transfer": result.figure()}

    head_result = None
    if heads:
        head_result = timed("heads_s", patch_heads, model, pairs, layers=layers, **common)
        files.append(
            write_text_atomic(out / "heads.csv", head_result.to_frame().to_csv(index=False))
        )
        figures["heads"] = head_result.figure()

    ablation = None
    if ablations:
        ablation = timed(
            "ablations_s",
            ablate_sites,
            model,
            pairs,
            sites=sites,
            layers=layers,
            span=span,
            **common,
        )
        files.append(write_text_atomic(out / "ablations.csv", ablation.table.to_csv(index=False)))
        figures["ablations"] = ablation.figure()

    control_result = comparison = control_pairs = head_comparison = None
    if control:
        control_pairs = timed(
            "control_pairs_s",
            draw_pairs,
            model,
            dataset,
            n_pairs=n_pairs,
            seed=seed,
            template=CONTROL_TEMPLATE,
            agreeing_only=agreeing_only,
            calibrate="auto",
            batch_size=batch_size,
            progress=progress,
            inference=control_inference,
        )
        control_result = timed(
            "control_s",
            patch_sites,
            model,
            control_pairs,
            sites=sites,
            layers=layers,
            span=span,
            **common,
        )
        comparison = compare_control(result, control_result)
        files.append(
            write_text_atomic(
                out / "control_patching.csv", control_result.table.to_csv(index=False)
            )
        )
        files.append(
            write_text_atomic(out / "control_comparison.csv", comparison.to_csv(index=False))
        )
        figures["control"] = transfer_figure(
            result.table,
            title=f"Emotion task (solid) vs control task (dashed), span {span}",
            control=control_result.table,
        )
        if head_result is not None:
            control_heads = timed(
                "control_heads_s", patch_heads, model, control_pairs, layers=layers, **common
            )
            head_comparison = compare_heads(head_result, control_heads)
            files.append(
                write_text_atomic(
                    out / "control_heads.csv", control_heads.to_frame().to_csv(index=False)
                )
            )
            figures["control_heads"] = control_heads.figure(
                title="Control task (first word): head patching, mean change in logit difference"
            )

    figure_files, static_note = _write_figures(figures, out / "figures", formats)
    files += figure_files
    manifest = run_manifest(
        seed=seed,
        model=model,
        dataset=dataset,
        template=pairs.template,
        command=command,
        extra={
            "parameters": {
                "n_pairs": n_pairs,
                "span": span,
                "sites": list(sites),
                "layers": None if layers is None else list(layers),
                "agreeing_only": agreeing_only,
                "calibrate": calibrate,
                "method": result.method,
            },
            "pairs": pairs.describe(),
            "patching": result.describe(),
            "heads": None
            if head_result is None
            else {"top": head_result.top(10).to_dict(orient="records")},
            "ablations": None
            if ablation is None
            else {"n_prompts": ablation.n_prompts, "mean_over": ablation.mean_over},
            "control": None
            if control_result is None
            else {
                "pairs": control_pairs.describe(),
                "patching": control_result.describe(),
                "comparison": comparison.to_dict(orient="records"),
                "heads": head_comparison,
            },
            "timings": timings,
            "static_export": static_note or "as requested",
            "files": sorted(str(p.relative_to(out)) for p in files) + ["manifest.json"],
        },
    )
    files.append(write_json_atomic(out / "manifest.json", manifest))
    return PatchingOutputs(
        sites=result,
        heads=head_result,
        ablations=ablation,
        control=control_result,
        control_comparison=comparison,
        files=sorted(str(p.relative_to(out)) for p in files),
        figures=figures,
        manifest=manifest,
    )
