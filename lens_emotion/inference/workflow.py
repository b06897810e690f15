"""The inference run behind ``lens-emotion infer``: score, write the files and the manifest.

:func:`run_inference` scores every text once (:func:`~.scoring.infer_emotions`), under the
calibration the settings name (``"auto"``: :func:`~.scoring.resolve_calibration`'s choice for
the template), and writes to the output folder:

* ``predictions.csv``: one row per text (id, label, prediction, correct, scored, a
  ``logprob_<label>`` column per label);
* ``metrics.json``: accuracy, macro-F1, per-label counts, the confusion matrix,
  ``accuracy_by_calibration`` (every calibration from the same forward pass) and, under
  ``"manifest"``, the run's manifest;
* ``confusion.<format>``: the confusion-matrix figure, one file per format;
* ``manifest.json``: the same manifest (model and data hashes, template, settings, timings).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lens_emotion.inference.scoring import (
    InferenceError,
    InferenceResult,
    infer_emotions,
    resolve_calibration,
)
from lens_emotion.manifest import StepTimer, settings_dict, start_run, write_manifest

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from lens_emotion.data import EmotionDataset
    from lens_emotion.models import EmotionModel

__all__ = ["ENGINES", "InferenceOutputs", "InferenceSettings", "run_inference"]

#: Forward-pass engines of :func:`~.scoring.label_logprobs`.
ENGINES: tuple[str, ...] = ("plain", "bridge")


@dataclass(frozen=True)
class InferenceSettings:
    """What an inference run does (recorded in the manifest under ``"settings"``).

    Attributes:
        template: Prompt template (see lens_emotion.prompts.TEMPLATES)
        calibrate: Calibration of the label scores: auto, none, mean, content-free or
            mean-heldout (True means content-free, False none)
        heldout_fraction: With calibrate mean-heldout: share of rows the offset is fitted on
            (the rest are scored; split by the seed)
        batch_size: Prompts per forward pass (length-bucketed)
        engine: Forward pass: plain (transformers weights, faster) or bridge (hooked)
        compare_calibrations: Also score the content-free prompts, so that metrics.json gives
            every calibration's accuracy from the same pass
        label_names: Candidate labels (empty: the dataset's labels)
        seed: Seed of the run and of the mean-heldout split
        formats: Formats of the confusion figure (html, png, svg, pdf)

    Raises:
        TemplateError: An unknown template.
        CalibrationError: An unknown calibration.
        InferenceError: A ``heldout_fraction`` outside (0, 1), a ``batch_size`` below 1, or
            an unknown engine or figure format.
    """

    template: str = "emotion-list"
    calibrate: bool | str = "auto"
    heldout_fraction: float = 0.5
    batch_size: int = 16
    engine: str = "plain"
    compare_calibrations: bool = True
    label_names: Sequence[str] = ()
    seed: int = 0
    formats: Sequence[str] = ("html",)

    def __post_init__(self) -> None:
        from lens_emotion.prompts import get_template
        from lens_emotion.viz.export import STATIC_FORMATS

        # TOML arrays arrive as lists, a lone format as a string: store tuples (as the defaults)
        for name in ("label_names", "formats"):
            value = getattr(self, name) or ()
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        get_template(self.template)  # TemplateError naming the known templates
        resolve_calibration(self.template, self.calibrate)  # CalibrationError if unknown
        if not 0.0 < self.heldout_fraction < 1.0:
            raise InferenceError(
                f"heldout_fraction must lie between 0 and 1 (e.g. 0.5), got "
                f"{self.heldout_fraction}."
            )
        if self.batch_size < 1:
            raise InferenceError(f"batch_size must be at least 1 (e.g. 16), not {self.batch_size}.")
        if self.engine not in ENGINES:
            raise InferenceError(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        allowed = ("html", *STATIC_FORMATS)
        if not self.formats or any(f not in allowed for f in self.formats):
            raise InferenceError(
                f"formats must be a non-empty list of {', '.join(allowed)} (e.g. html), got "
                f"{list(self.formats)}."
            )

    @property
    def calibration(self) -> str:
        """The calibration ``calibrate`` means for ``template`` (``"auto"`` resolved)."""
        return resolve_calibration(self.template, self.calibrate)


@dataclass(frozen=True)
class InferenceOutputs:
    """What :func:`run_inference` computed and wrote.

    Attributes:
        result: The :class:`~.scoring.InferenceResult`.
        settings: The settings of the run.
        calibration: The calibration used (``"auto"`` resolved; ``"none"`` for none).
        figures: Plotly figures by name (``"confusion"``).
        files: Written files: ``predictions.csv``, ``metrics.json``, the figure files, then
            ``manifest.json``.
        manifest: The manifest (also in ``metrics.json`` and ``manifest.json``).
        timings: Seconds per step.
        notes: What was skipped and why (e.g. static figure export unavailable).
    """

    result: InferenceResult
    settings: InferenceSettings
    calibration: str
    figures: dict[str, go.Figure] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Headline numbers for the CLI printout, the demo and the paper figures.

        :meth:`InferenceResult.summary` plus the calibration asked for (``calibrate``) and
        used (``calibration``), and the result files (``files``; the manifest under
        ``manifest``).
        """
        manifest = [p for p in self.files if p.name == "manifest.json"]
        return {
            **self.result.summary(),
            "calibrate": self.settings.calibrate,
            "calibration": self.calibration,
            "files": [str(p) for p in self.files if p not in manifest],
            "manifest": str(manifest[0]) if manifest else None,
        }


def run_inference(
    model: EmotionModel,
    data: EmotionDataset,
    out: str | Path,
    settings: InferenceSettings | None = None,
    *,
    progress: bool = True,
    command: str | None = None,
) -> InferenceOutputs:
    """Ask the model which emotion each text shows, and write the predictions and metrics.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        data: The texts, an :class:`~lens_emotion.data.EmotionDataset`.
        out: Output folder (created).
        settings: What to run (defaults: :class:`InferenceSettings`).
        progress: Show the progress bar and one line per finished step (stderr).
        command: Command line for the manifest (default: ``sys.argv``).

    Returns:
        The :class:`InferenceOutputs` (see the module docstring for the files).

    Raises:
        ValueError: An empty dataset (LensEmotionError subclasses, also ValueErrors, for
            unscorable rows; see :func:`~.scoring.infer_emotions`).
    """
    from lens_emotion.prompts import get_template
    from lens_emotion.viz.export import write_figure_or_html

    settings = settings or InferenceSettings()
    template = get_template(settings.template)
    calibration = settings.calibration
    out = start_run(settings.seed, out)
    timer = StepTimer("infer", verbose=progress)
    with timer.step("inference"):
        result = infer_emotions(
            model,
            data,
            template,
            batch_size=settings.batch_size,
            calibrate=calibration,
            label_names=settings.label_names or None,
            progress=progress,
            engine=settings.engine,
            seed=settings.seed,
            heldout_fraction=settings.heldout_fraction,
            compare_calibrations=settings.compare_calibrations,
        )
    notes: list[str] = []
    with timer.step("figures"):
        figures = {"confusion": result.figure()}
        figure_files: list[Path] = []
        for name, fig in figures.items():
            paths, note = write_figure_or_html(fig, out / name, formats=settings.formats)
            figure_files += paths
            if note:
                notes.append(note)
    manifest_path = write_manifest(
        out,
        seed=settings.seed,
        model=model,
        dataset=data,
        template=template,
        timer=timer,
        command=command,
        extra={"settings": {**settings_dict(settings), "calibration": calibration}},
    )
    manifest = json.loads(Path(manifest_path).read_text())
    files = [*result.save(out, manifest), *figure_files, Path(manifest_path)]
    return InferenceOutputs(
        result=result,
        settings=settings,
        calibration=calibration,
        figures=figures,
        files=files,
        manifest=manifest,
        timings=dict(timer.timings),
        notes=notes,
    )
