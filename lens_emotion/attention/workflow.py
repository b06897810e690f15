"""The attention workflow: sample rows, measure attention mass, save tables, figures, manifest.

:func:`run_attention` is what ``lens-emotion figures`` runs for an ``[attention]`` table and
what the demo's attention step runs: a stratified sample of the dataset, then
:func:`~lens_emotion.attention.mass.attention_mass` on it (token groups, occlusion saliency and
the final token's attention per layer and head), then the result's CSV/JSON files, its two
figures and ``manifest.json``, all in one folder::

    outputs = run_attention(model, data, "out/attention", AttentionSettings(rows=48))
    outputs.summary()["bands"]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from lens_emotion.attention.mass import AttentionMassResult, attention_mass
from lens_emotion.attention.tokens import AttentionError
from lens_emotion.data import EmotionDataset
from lens_emotion.manifest import StepTimer, write_manifest
from lens_emotion.models import EmotionModel
from lens_emotion.prompts import get_template

__all__ = ["FIGURE_FORMATS", "AttentionOutputs", "AttentionSettings", "run_attention"]

FIGURE_FORMATS: tuple[str, ...] = ("html", "png", "svg", "pdf")
"""Figure formats :class:`AttentionSettings` accepts."""


@dataclass(frozen=True)
class AttentionSettings:
    """Sizes and options of an attention run (all recorded in the manifest).

    Attributes:
        rows: Texts to analyse: a stratified sample of the dataset drawn with ``seed`` (all
            rows if the dataset is smaller). Occlusion saliency is the costly part.
        template: Prompt template name.
        layers: Layers to analyse (``None``: all); stored as a tuple.
        top_frac: Fraction of event-text tokens called emotion-bearing (by saliency).
        min_tokens: At least this many emotion-bearing tokens per prompt.
        n_boot: Bootstrap resamples of every interval.
        ci: Interval coverage.
        batch_size: Prompts per hooked forward pass.
        keep_patterns: Keep the final-token patterns in the result (memory grows with
            prompts x layers x heads x tokens; not written to files).
        share_prefix: Run the template prefix shared by all prompts only once (``False``:
            every prompt and occlusion variant in full; same numbers, slower).
        seed: Seed of the row sample and of the bootstrap.
        formats: Figure formats (``html``, and ``png``/``svg``/``pdf`` with kaleido; ``()``
            for no figure files); stored as a tuple.

    Raises:
        AttentionError: ``rows`` below 1 or an unknown figure format.
    """

    rows: int = 48
    template: str = "emotion-list"
    layers: Sequence[int] | None = None
    top_frac: float = 0.2
    min_tokens: int = 1
    n_boot: int = 1000
    ci: float = 0.95
    batch_size: int = 8
    keep_patterns: bool = False
    share_prefix: bool = True
    seed: int = 0
    formats: Sequence[str] = ("html",)

    def __post_init__(self) -> None:
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(layer) for layer in self.layers))
        object.__setattr__(self, "formats", tuple(self.formats))
        if int(self.rows) < 1:
            raise AttentionError(f"rows must be at least 1, got {self.rows}.")
        bad = [f for f in self.formats if f not in FIGURE_FORMATS]
        if bad:
            raise AttentionError(
                f"Unknown figure format(s) {bad}; use any of {', '.join(FIGURE_FORMATS)}."
            )


@dataclass
class AttentionOutputs:
    """What :func:`run_attention` computed and wrote.

    Attributes:
        result: The :class:`~lens_emotion.attention.mass.AttentionMassResult`.
        figures: ``{"mass", "emotion_heatmap"}`` Plotly figures.
        files: Every file written (tables, figures, manifest).
        timings: Seconds per step.
        notes: Warnings worth showing (e.g. static export unavailable, HTML written).
    """

    result: AttentionMassResult
    figures: dict[str, go.Figure] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The result's headline numbers (:meth:`AttentionMassResult.summary`) and the files."""
        return {**self.result.summary(), "files": [p.name for p in self.files]}


_FIGURE_STEMS = {"mass": "attention_mass_by_layer", "emotion_heatmap": "attention_emotion_heatmap"}


def run_attention(
    model: EmotionModel,
    data: EmotionDataset,
    out: str | Path,
    settings: AttentionSettings | None = None,
    *,
    progress: bool = True,
    command: str | None = None,
) -> AttentionOutputs:
    """Sample rows, measure the final token's attention by token group, write everything.

    Files in ``out``: the tables and saliency of
    :meth:`~lens_emotion.attention.mass.AttentionMassResult.save`, the figures
    ``attention_mass_by_layer`` and ``attention_emotion_heatmap`` in ``settings.formats``,
    and ``manifest.json`` (model, data, template, settings, timings).

    Args:
        model: The model.
        data: The dataset to sample from.
        out: Output folder (created).
        settings: Sizes and options (default :class:`AttentionSettings`).
        progress: Progress bars and one line per finished step.
        command: Command line for the manifest.

    Returns:
        The :class:`AttentionOutputs`.

    Raises:
        AttentionError: Bad settings, layers or template (see
            :func:`~lens_emotion.attention.mass.attention_mass`).
    """
    from lens_emotion.viz.export import write_figure_or_html

    settings = settings or AttentionSettings()
    folder = Path(out)
    timer = StepTimer("attention", verbose=progress)
    rows = data.sample(min(int(settings.rows), len(data)), seed=settings.seed)
    with timer.step("attention mass"):
        result = attention_mass(
            model,
            rows,
            settings.template,
            layers=settings.layers,
            top_frac=settings.top_frac,
            min_tokens=settings.min_tokens,
            n_boot=settings.n_boot,
            seed=settings.seed,
            ci=settings.ci,
            batch_size=settings.batch_size,
            keep_patterns=settings.keep_patterns,
            share_prefix=settings.share_prefix,
            progress=progress,
        )
    outputs = AttentionOutputs(result=result)
    with timer.step("tables"):
        outputs.files += result.save(folder)
    outputs.figures = {"mass": result.figure(), "emotion_heatmap": result.heatmap(group="emotion")}
    if settings.formats:
        with timer.step("figures"):
            for name, fig in outputs.figures.items():
                written, note = write_figure_or_html(
                    fig, folder / _FIGURE_STEMS[name], settings.formats
                )
                outputs.files += written
                if note is not None and note not in outputs.notes:
                    outputs.notes.append(note)
    outputs.timings = timer.timings
    outputs.files.append(
        write_manifest(
            folder,
            seed=settings.seed,
            model=model,
            dataset=rows,
            template=get_template(settings.template),
            settings=settings,
            timer=timer,
            command=command,
            extra={
                "attention": {
                    "n_rows": len(rows),
                    "emotion_tokens": result.saliency.describe() if result.saliency else None,
                    "notes": list(outputs.notes),
                }
            },
        )
    )
    return outputs
