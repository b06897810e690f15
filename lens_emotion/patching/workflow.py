"""End-to-end patching run (``lens-emotion patch``): pairs, grid, heads, ablations, control.

:func:`run_patching` wires :mod:`.pairs`, :mod:`.sites`, :mod:`.heads` and :mod:`.ablation`
together under one frozen :class:`PatchingSettings` (whose defaults are the CLI's, so each
default is stated once) and writes every table, figure and a manifest to one folder::

    patching.csv              transfer / remained / neither per site and center layer (+ CI)
    patching_per_pair.csv     outcome and logit-difference change per pair
    pairs.csv                 the pairs (ids, human labels, clean predictions)
    heads.csv                 head patching (hook_z) per layer and query head
    ablations.csv             zero / mean / random same-norm ablation: share of predictions kept
    control_patching.csv      the same grid on the control task (first word of the context)
    control_comparison.csv    do the emotion layers matter for the control task?
    control_heads.csv         head patching on the control task (with heads and control)
    figures/                  transfer, heads, ablations, control, control_heads (.html + static)
    manifest.json             model, data, template, seed, settings, pairs, timings, peaks,
                              versions
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from lens_emotion.io import write_csv_atomic
from lens_emotion.manifest import StepTimer, start_run, write_manifest
from lens_emotion.patching.ablation import (
    AblationResult,
    ablate_sites,
    compare_control,
    compare_heads,
)
from lens_emotion.patching.figures import transfer_figure
from lens_emotion.patching.heads import HeadPatchingResult, patch_heads
from lens_emotion.patching.pairs import draw_pairs
from lens_emotion.patching.sites import SITES, PatchingResult, patch_sites

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from lens_emotion.data import EmotionDataset
    from lens_emotion.inference import InferenceResult
    from lens_emotion.models import EmotionModel

__all__ = ["CONTROL_TEMPLATE", "PatchingOutputs", "PatchingSettings", "run_patching"]

CONTROL_TEMPLATE = "control-first-word"
"""Template of the non-emotional control task (the first word of the context)."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class PatchingSettings:
    """Every choice of a patching run; the defaults are those of ``lens-emotion patch``.

    Attributes:
        n_pairs: Source/target pairs per task.
        span: Window size (odd: 1, 3, 5 ...).
        seed: Seed of the pair draws, random ablation directions and bootstraps.
        template: Emotion prompt template.
        agreeing_only: Draw pairs among agreeing rows only (the paper).
        calibrate: Calibration of the clean predictions (``auto``, ``mean``, ...; see
            draw_pairs); the control task is never calibrated.
        sites: Sites to patch.
        layers: Center layers (None: all).
        heads: Also patch every query head's hook_z.
        ablations: Also run zero / mean / random ablations.
        control: Also patch the control task (control-first-word).
        method: Patching engine (auto, fast, bridge or reference; see patch_sites).
        formats: Figure formats (html; png/svg/pdf when kaleido + Chromium are set up, else
            skipped with a warning).
        batch_size: Prompts per clean forward pass.
    """

    n_pairs: int = 200
    span: int = 3
    seed: int = 0
    template: str = "emotion-list"
    agreeing_only: bool = True
    calibrate: bool | str = "auto"
    sites: tuple[str, ...] = SITES
    layers: tuple[int, ...] | None = None
    heads: bool = True
    ablations: bool = True
    control: bool = True
    method: str = "auto"
    formats: tuple[str, ...] = ("html", "png")
    batch_size: int = 16

    def __post_init__(self) -> None:
        # Lists (from a TOML config or a caller) are kept as tuples, so settings stay hashable.
        for name in ("sites", "formats"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(c) for c in self.layers))

    def parameters(self) -> dict[str, Any]:
        """The manifest's ``parameters`` entry (as before settings existed)."""
        return {
            "n_pairs": self.n_pairs,
            "span": self.span,
            "sites": list(self.sites),
            "layers": None if self.layers is None else list(self.layers),
            "agreeing_only": self.agreeing_only,
            "calibrate": self.calibrate,
        }


@dataclass(frozen=True)
class PatchingOutputs:
    """What :func:`run_patching` produced.

    Attributes:
        sites: The windowed site-patching result (emotion task).
        heads: Head-patching result (``None`` if skipped).
        ablations: Ablation result (``None`` if skipped).
        control: Site patching on the control task (``None`` if skipped).
        control_comparison: :func:`~lens_emotion.patching.ablation.compare_control` table.
        control_heads: Head patching on the control task (``None`` if skipped).
        head_comparison: :func:`~lens_emotion.patching.ablation.compare_heads` of the two
            head maps (``None`` if skipped).
        settings: The settings of the run.
        files: Written files, relative to the output folder.
        figures: Named Plotly figures.
        manifest: The run manifest.
    """

    sites: PatchingResult
    heads: HeadPatchingResult | None
    ablations: AblationResult | None
    control: PatchingResult | None
    control_comparison: pd.DataFrame | None
    control_heads: HeadPatchingResult | None = None
    head_comparison: dict[str, Any] | None = None
    settings: PatchingSettings = field(default_factory=PatchingSettings)
    files: list[str] = field(default_factory=list)
    figures: dict[str, go.Figure] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Headline numbers, JSON-ready: pairs, engine, peaks per site, control and heads."""
        pairs = self.sites.pairs
        summary: dict[str, Any] = {
            "pairs": len(pairs),
            "n_candidates": pairs.n_candidates,
            "n_eligible_rows": pairs.n_eligible_rows,
            "n_rows": pairs.n_rows,
            "calibration": pairs.calibration,
            "method": self.sites.method,
            "peaks": self.sites.peaks().to_dict(orient="records"),
        }
        if self.heads is not None:
            summary["heads"] = self.heads.summary()
        if self.ablations is not None:
            summary["ablations"] = self.ablations.summary()
        if self.control_comparison is not None:
            summary["control"] = self.control_comparison.to_dict(orient="records")
        if self.head_comparison is not None:
            summary["control_heads"] = self.head_comparison
        return summary


def _write_figures(
    figures: dict[str, go.Figure], folder: Path, formats: Sequence[str]
) -> tuple[list[Path], str | None]:
    """Write figures; static formats are skipped (with a note) when no exporter is set up."""
    from lens_emotion.viz.export import write_figure_or_html

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
    model: EmotionModel,
    data: EmotionDataset,
    out: str | Path,
    settings: PatchingSettings | None = None,
    *,
    progress: bool = True,
    command: str | None = None,
    inference: InferenceResult | None = None,
    control_inference: InferenceResult | None = None,
) -> PatchingOutputs:
    """Draw pairs and run windowed patching, head patching, ablations and the control task.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        data: Rows to draw pairs from (all are scored once per task).
        out: Output folder.
        settings: What to run (default: :class:`PatchingSettings()`, the CLI's defaults).
        progress: Show progress bars and one line per finished step.
        command: The command line, for the manifest.
        inference: Uncalibrated ``infer_emotions(model, data, settings.template)`` result, if
            already computed (saves scoring every row again; see
            :func:`~lens_emotion.patching.pairs.draw_pairs`).
        control_inference: The same for the control template.

    Returns:
        The :class:`PatchingOutputs`.
    """
    s = PatchingSettings() if settings is None else settings
    out = start_run(s.seed, out)
    files: list[Path] = []
    layers = None if s.layers is None else list(s.layers)
    timer = StepTimer("patch", verbose=progress)

    def timed(name: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        with timer.step(name):
            return fn(*args, **kwargs)

    common = {"method": s.method, "batch_size": s.batch_size, "progress": progress}
    draw = {"n_pairs": s.n_pairs, "seed": s.seed, "agreeing_only": s.agreeing_only}
    draw |= {"batch_size": s.batch_size, "progress": progress}
    grid = {"sites": s.sites, "layers": layers, "span": s.span}
    pairs = timed(
        "pairs_s",
        draw_pairs,
        model,
        data,
        template=s.template,
        calibrate=s.calibrate,
        inference=inference,
        **draw,
    )
    result = timed("patching_s", patch_sites, model, pairs, **grid, **common)
    files += result.save(out)
    figures: dict[str, go.Figure] = {"transfer": result.figure()}

    head_result = None
    if s.heads:
        head_result = timed("heads_s", patch_heads, model, pairs, layers=layers, **common)
        files += head_result.save(out)
        figures["heads"] = head_result.figure()

    ablation = None
    if s.ablations:
        ablation = timed("ablations_s", ablate_sites, model, pairs, **grid, **common)
        files += ablation.save(out)
        figures["ablations"] = ablation.figure()

    control_result = comparison = control_pairs = control_heads = head_comparison = None
    if s.control:
        control_pairs = timed(
            "control_pairs_s",
            draw_pairs,
            model,
            data,
            template=CONTROL_TEMPLATE,
            calibrate="auto",
            inference=control_inference,
            **draw,
        )
        control_result = timed("control_s", patch_sites, model, control_pairs, **grid, **common)
        comparison = compare_control(result, control_result)
        files.append(write_csv_atomic(out / "control_patching.csv", control_result.table))
        files.append(write_csv_atomic(out / "control_comparison.csv", comparison))
        figures["control"] = transfer_figure(
            result.table,
            title=f"Emotion task (solid) vs control task (dashed), span {s.span}",
            control=control_result.table,
        )
        if head_result is not None:
            control_heads = timed(
                "control_heads_s", patch_heads, model, control_pairs, layers=layers, **common
            )
            head_comparison = compare_heads(head_result, control_heads)
            files.append(write_csv_atomic(out / "control_heads.csv", control_heads.table))
            figures["control_heads"] = control_heads.figure(
                title="Control task (first word): head patching, mean change in logit difference"
            )

    figure_files, static_note = _write_figures(figures, out / "figures", s.formats)
    files += figure_files
    path = write_manifest(
        out,
        seed=s.seed,
        model=model,
        dataset=data,
        template=pairs.template,
        settings=s,
        command=command,
        extra={
            "parameters": {**s.parameters(), "method": result.method},
            "pairs": pairs.describe(),
            "patching": result.describe(),
            "heads": None
            if head_result is None
            else {"top": head_result.top(10).to_dict(orient="records")},
            "ablations": None
            if ablation is None
            else {"n_prompts": ablation.n_prompts, "mean_over": ablation.mean_over},
            "control": None
            if control_result is None or control_pairs is None or comparison is None
            else {
                "pairs": control_pairs.describe(),
                "patching": control_result.describe(),
                "comparison": comparison.to_dict(orient="records"),
                "heads": head_comparison,
            },
            "timings": dict(timer.timings),
            "static_export": static_note or "as requested",
            "files": sorted(str(p.relative_to(out)) for p in files) + ["manifest.json"],
        },
        timer=timer,
    )
    files.append(path)
    return PatchingOutputs(
        sites=result,
        heads=head_result,
        ablations=ablation,
        control=control_result,
        control_comparison=comparison,
        control_heads=control_heads,
        head_comparison=head_comparison,
        settings=s,
        files=sorted(str(p.relative_to(out)) for p in files),
        figures=figures,
        manifest=json.loads(path.read_text()),
    )
