"""The ``lens-emotion attribute`` run: draw pairs, AtP, real patching next to it, write it all.

:func:`run_attribution` is the only code of the analysis that writes files and the manifest.
Its knobs are one frozen :class:`AttributionSettings`; the CLI options and the ``[attribution]``
table of a figures config read their defaults from it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lens_emotion.attribution.atp import (
    ATP_SITES,
    AttributionError,
    AttributionResult,
    _check_sites,
    attribute,
)
from lens_emotion.attribution.compare import PatchingComparison, compare_with_patching
from lens_emotion.io import write_text_atomic
from lens_emotion.manifest import StepTimer, start_run, write_manifest
from lens_emotion.viz.export import write_figure_or_html

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from lens_emotion.data import EmotionDataset
    from lens_emotion.inference import InferenceResult
    from lens_emotion.models import EmotionModel
    from lens_emotion.patching import PatchPairs

__all__ = ["AttributionOutputs", "AttributionSettings", "run_attribution"]


@dataclass(frozen=True)
class AttributionSettings:
    """What :func:`run_attribution` draws, scores and writes (recorded in the manifest).

    Attributes:
        n_pairs: Source/target pairs to draw (see :func:`lens_emotion.patching.draw_pairs`).
        seed: Seed of the pair draw (and of everything else).
        template: Prompt template.
        agreeing_only: Draw pairs among agreeing rows only (the paper's setting).
        calibrate: Calibration of the clean predictions (see ``draw_pairs``; ``"auto"``: the
            template's best method).
        sites: AtP sites (from :data:`~lens_emotion.attribution.atp.ATP_SITES`); the comparison
            covers those real patching has. Any sequence; kept as a tuple.
        heads: Score (and compare) every query head too.
        compare: Also run real span-1 patching (``patch_sites``/``patch_heads``) and correlate.
        method: Engine of the real patching (see ``patch_sites``).
        formats: Figure formats; static ones fall back to HTML when kaleido/Chromium is missing.
            Any sequence; kept as a tuple.
        batch_size: Pairs per AtP forward/backward pass.

    Raises:
        AttributionError: Unknown or repeated sites, ``n_pairs`` or ``batch_size`` below 1, or
            no format.
    """

    n_pairs: int = 100
    seed: int = 0
    template: str = "emotion-list"
    agreeing_only: bool = True
    calibrate: bool | str | None = "auto"
    sites: Sequence[str] = ATP_SITES
    heads: bool = True
    compare: bool = True
    method: str = "auto"
    formats: Sequence[str] = ("html",)
    batch_size: int = 8

    def __post_init__(self) -> None:
        # Lists from TOML or the CLI become tuples (frozen and hashable).
        object.__setattr__(self, "sites", _check_sites(self.sites))
        object.__setattr__(self, "formats", tuple(self.formats))
        if int(self.n_pairs) < 1:
            raise AttributionError(f"n_pairs must be at least 1, got {self.n_pairs}.")
        if int(self.batch_size) < 1:
            raise AttributionError(f"batch_size must be at least 1, got {self.batch_size}.")
        if not self.formats:
            raise AttributionError("formats is empty; pass at least one, e.g. ('html',).")


@dataclass(frozen=True)
class AttributionOutputs:
    """What :func:`run_attribution` computed and wrote.

    Attributes:
        atp: The AtP estimates.
        comparison: AtP next to real single-layer patching (``None`` with ``compare=False``).
        pairs: The pairs (a :class:`~lens_emotion.patching.PatchPairs`).
        settings: The settings of the run.
        figures: ``{"estimates": ..., "vs_patching": ...}`` (the second only when compared).
        files: Every file written.
    """

    atp: AttributionResult
    comparison: PatchingComparison | None
    pairs: PatchPairs = field(repr=False)
    settings: AttributionSettings = field(default_factory=AttributionSettings)
    figures: dict[str, go.Figure] = field(default_factory=dict, repr=False)
    files: list[Path] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Headline numbers: the AtP summary and, when compared, the comparison's."""
        out: dict[str, Any] = {"atp": self.atp.summary()}
        if self.comparison is not None:
            out["comparison"] = self.comparison.summary()
        return out


def run_attribution(
    model: EmotionModel,
    data: EmotionDataset,
    out: str | Path,
    settings: AttributionSettings | None = None,
    *,
    progress: bool = True,
    command: str | None = None,
    inference: InferenceResult | None = None,
) -> AttributionOutputs:
    """Draw pairs, run AtP, check it against real single-layer patching and write it all.

    Writes to ``out``: ``attribution.csv`` (site, layer, head, atp_effect, atp_std,
    atp_abs_mean, n_pairs, and patch_effect when compared), ``attribution_per_pair.csv``,
    ``pairs.csv``, ``attribution.html`` (mean estimate per layer and site),
    ``attribution_vs_patching.json`` / ``.csv`` and the scatter
    ``attribution_vs_patching.html`` (with ``compare``), and ``manifest.json``.

    Args:
        model: The model.
        data: The dataset; every row is scored once to find the clean predictions.
        out: Output folder.
        settings: Pairs, sites, comparison and formats (default: :class:`AttributionSettings`).
        progress: Show progress bars and one line per finished step.
        command: The command line, for the manifest.
        inference: Uncalibrated ``infer_emotions(model, data, template)`` result, if already
            computed (saves scoring every row again; see ``draw_pairs``).

    Returns:
        The :class:`AttributionOutputs`.
    """
    from lens_emotion.patching import SITES, draw_pairs, patch_heads, patch_sites

    settings = settings if settings is not None else AttributionSettings()
    s = settings
    out = start_run(s.seed, out)
    timer = StepTimer("attribute", verbose=progress)
    with timer.step("pairs"):
        pairs = draw_pairs(
            model,
            data,
            n_pairs=s.n_pairs,
            seed=s.seed,
            template=s.template,
            agreeing_only=s.agreeing_only,
            calibrate=s.calibrate,
            progress=progress,
            inference=inference,
        )
    with timer.step("attribution patching"):
        atp = attribute(
            model, pairs, sites=s.sites, heads=s.heads, batch_size=s.batch_size, progress=progress
        )
    comparison = None
    table = atp.table
    if s.compare:
        with timer.step("real patching"):
            patch_site_list = [site for site in SITES if site in atp.sites]
            site_patching = patch_sites(
                model, pairs, sites=patch_site_list, span=1, method=s.method, progress=progress
            )
            seconds = site_patching.seconds
            head_patching = None
            if s.heads:
                head_patching = patch_heads(model, pairs, method=s.method, progress=progress)
                seconds += head_patching.seconds
        comparison = compare_with_patching(
            atp, site_patching, head_patching, patching_seconds=seconds
        )
        comparison.cost["patching_method"] = site_patching.method
        table = table.merge(
            comparison.points[["site", "layer", "head", "patch_effect"]],
            on=["site", "layer", "head"],
            how="left",
        )
    figures = {"estimates": atp.figure()}
    if comparison is not None:
        figures["vs_patching"] = comparison.figure()
    files: list[Path] = []
    notes: list[str] = []
    with timer.step("write"):
        files.append(write_text_atomic(out / "attribution.csv", table.to_csv(index=False)))
        files.append(
            write_text_atomic(out / "attribution_per_pair.csv", atp.per_pair().to_csv(index=False))
        )
        files.append(write_text_atomic(out / "pairs.csv", pairs.to_frame().to_csv(index=False)))
        notes += _write_figure(figures["estimates"], out / "attribution", s.formats, files)
        comparison_figures: list[Path] = []
        if comparison is not None:
            stem = out / "attribution_vs_patching"
            notes += _write_figure(figures["vs_patching"], stem, s.formats, comparison_figures)
    extra: dict[str, Any] = {
        "analysis": "attribution patching (AtP), last token",
        "pairs": pairs.describe(),
        "parameters": {
            "sites": list(atp.sites),
            "heads": s.heads,
            "compare": s.compare,
            "method": s.method,
            "batch_size": s.batch_size,
        },
        "cost": comparison.cost if comparison is not None else atp.cost(),
    }
    if notes:
        extra["notes"] = sorted(set(notes))
    manifest_path = write_manifest(
        out,
        seed=s.seed,
        model=model,
        dataset=data,
        template=pairs.template,
        settings=s,
        timer=timer,
        command=command,
        extra=extra,
    )
    if comparison is not None:
        # The comparison's JSON carries the run's manifest, so it is written after it.
        manifest = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
        files += comparison.save(out, manifest=manifest)
        files += comparison_figures
    files.append(Path(manifest_path))
    return AttributionOutputs(
        atp=atp,
        comparison=comparison,
        pairs=pairs,
        settings=s,
        figures=figures,
        files=files,
    )


def _write_figure(
    fig: go.Figure, stem: Path, formats: Sequence[str], files: list[Path]
) -> list[str]:
    """Write ``fig`` in ``formats`` (HTML fallback), add the paths to ``files``; the notes."""
    written, note = write_figure_or_html(fig, stem, formats)
    files += written
    return [note] if note else []
