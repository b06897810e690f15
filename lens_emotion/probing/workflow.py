"""The end-to-end probing run behind ``lens-emotion probe``, the demo and the paper figures.

:func:`run_probing` wires the library together (agreeing filter → prompts → activations →
emotion probes, embedding baseline, appraisal probes and alignment, optional evaluation on a
second dataset and last-k positions → files) and is the only probing code that writes files
and the manifest. Its options are one frozen :class:`ProbingSettings`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from lens_emotion.activations import STORE_DTYPES, ActivationStore, extract_activations
from lens_emotion.data import EmotionDataset
from lens_emotion.manifest import StepTimer, report_step, start_run, write_manifest
from lens_emotion.models import EmotionModel
from lens_emotion.probing.appraisals import (
    AlignmentResult,
    AppraisalProbeResult,
    appraisal_alignment,
    probe_appraisals,
)
from lens_emotion.probing.emotions import (
    EmotionProbeResult,
    PositionProbeResult,
    evaluate_emotion_probes,
    probe_emotions,
    probe_positions,
)
from lens_emotion.probing.store import ProbeError
from lens_emotion.prompts import PromptTemplate, build_prompts
from lens_emotion.viz.export import write_figure

__all__ = ["ProbingOutputs", "ProbingSettings", "run_probing"]


@dataclass(frozen=True)
class ProbingSettings:
    """Options of a probing run (all recorded in the manifest under ``"settings"``).

    The CLI (``lens-emotion probe``), the demo and the ``[probing]`` table of a figures config
    read their defaults from here.

    Attributes:
        template: Prompt template whose last token is probed.
        sites: Sites to probe. ``resid_pre`` of block 0 is always probed too, as the
            embedding baseline.
        layers: Probe only these layers (``None``: all). Activations are still extracted for
            every layer, so a later run over all layers reuses the same cached store.
        last_k: Also probe each of the last ``k`` positions of ``resid_post`` (k > 1).
        agreeing_only: Probe only rows the model classifies correctly (the paper's filter).
        calibrate: Calibration used for the agreeing filter.
        n_folds: Cross-validation folds.
        C: Inverse L2 strength of the emotion probes.
        alpha: Ridge penalty of the appraisal probes, or a grid from which each appraisal's
            penalty is chosen inside every training fold (leave-one-out), the default.
        probe_model: ``"logreg"`` or ``"mlp"``.
        formats: Figure formats (``"html"``, ``"png"``, ``"svg"``, ``"pdf"``).
        store_dir: Where to keep the activation store (``None``: the cache, by request hash).
        store_dtype: ``"float32"`` or ``"float16"`` on disk; float16 halves the store's size.
            Probes read it back as float32 whatever is stored.
        batch_size: Prompts per forward pass.
        seed: Seed for folds, controls and subsets.
        num_threads: Torch threads for the probe fits (``None``: leave torch's setting; the
            BLAS pool gets one thread); 1 is fastest on a busy CPU.
    """

    template: str = "emotion-list"
    sites: Sequence[str] = ("attn_out", "mlp_out", "resid_post")
    layers: Sequence[int] | None = None
    last_k: int = 1
    agreeing_only: bool = False
    calibrate: bool | str = "mean"
    n_folds: int = 5
    C: float = 1.0
    alpha: float | Sequence[float | int] = (1.0, 10.0, 100.0, 1000.0, 10000.0)
    probe_model: str = "logreg"
    formats: Sequence[str] = ("html",)
    store_dir: str | Path | None = None
    store_dtype: str = "float32"
    batch_size: int = 16
    seed: int = 0
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.store_dtype not in STORE_DTYPES:
            raise ProbeError(
                f"store_dtype must be one of {list(STORE_DTYPES)}, not {self.store_dtype!r}."
            )
        # Lists (from a TOML table or a caller) become tuples, so the settings stay immutable.
        object.__setattr__(self, "sites", tuple(self.sites))
        object.__setattr__(self, "formats", tuple(self.formats))
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        if not isinstance(self.alpha, int | float):
            object.__setattr__(self, "alpha", tuple(self.alpha))


@dataclass(frozen=True)
class ProbingOutputs:
    """What :func:`run_probing` produced.

    Attributes:
        emotion: The emotion-probe result.
        embedding: Probe table of the embedding baseline (``resid_pre`` of block 0).
        appraisal: The appraisal-probe result (``None`` if the data has no appraisals).
        alignment: Emotion–appraisal alignment (``None`` without appraisals).
        positions: The last-k-token probe result (``None`` if only the last token was
            stored).
        store: The activation store used.
        files: Every file written, relative to the output folder.
        figures: Named Plotly figures.
        n_rows: Rows probed (after the agreeing filter, if any).
        evaluation: Accuracy of the all-rows probes on the evaluation dataset per (site,
            layer) (:func:`lens_emotion.probing.evaluate_emotion_probes`); ``None`` without
            ``eval_dataset``.
        eval_store: The evaluation dataset's activation store (``None`` without one).
        settings: The settings of the run.
    """

    emotion: EmotionProbeResult
    embedding: pd.DataFrame
    appraisal: AppraisalProbeResult | None
    alignment: AlignmentResult | None
    positions: PositionProbeResult | None
    store: ActivationStore
    files: dict[str, str]
    figures: dict[str, go.Figure]
    n_rows: int
    evaluation: pd.DataFrame | None = None
    eval_store: ActivationStore | None = None
    settings: ProbingSettings = field(default_factory=ProbingSettings)

    def summary(self) -> dict[str, Any]:
        """Headline numbers of the run (what ``lens-emotion probe`` prints).

        Returns:
            ``{"n_rows", "n_files", "best": {site: {...}}, "embedding_accuracy",
            "appraisal" (or ``None``), "alignment" (or ``None``), "positions" (or ``None``),
            "evaluation": {site: best eval accuracy} (or ``None``)}``; ``best`` is
            :meth:`EmotionProbeResult.summary`'s.
        """
        evaluation = None
        if self.evaluation is not None and len(self.evaluation):
            evaluation = {
                str(site): float(rows["eval_accuracy"].max())
                for site, rows in self.evaluation.groupby("site", sort=False)
            }
        return {
            "n_rows": self.n_rows,
            "n_files": len(self.files),
            "best": self.emotion.summary()["best"],
            "embedding_accuracy": float(self.embedding["accuracy_mean"].iloc[0]),
            "appraisal": None if self.appraisal is None else self.appraisal.summary(),
            "alignment": None if self.alignment is None else self.alignment.summary(),
            "positions": None if self.positions is None else self.positions.summary(),
            "evaluation": evaluation,
        }


def run_probing(
    model: EmotionModel,
    data: EmotionDataset,
    out: str | Path,
    settings: ProbingSettings | None = None,
    *,
    progress: bool = True,
    command: str | None = None,
    eval_dataset: EmotionDataset | None = None,
) -> ProbingOutputs:
    """Extract activations, probe emotions and appraisals per layer, and write everything.

    Files in ``out``: ``probe_emotions.csv`` / ``_folds.csv`` / ``.json`` and the direction
    files, ``probe_embedding_baseline.csv``, with appraisals ``probe_appraisals.*`` and
    ``alignment.csv``, with ``eval_dataset`` ``probe_emotions_eval.csv``, with
    ``last_k > 1`` ``probe_positions.*``, the figures under ``figures/`` and
    ``manifest.json``.

    Args:
        model: The model.
        data: A crowd-enVENT-like dataset (labels; appraisals if it has them).
        out: Output folder.
        settings: The run's options (default: :class:`ProbingSettings`'s defaults).
        progress: Show progress bars and one line per finished step.
        command: The command line for the manifest (default: ``sys.argv``).
        eval_dataset: A second dataset to test on: the emotion probes fitted on *all*
            (selected) training rows are scored on its rows, per (site, layer), with the same
            prompt (the training dataset's label list) and sites; written to
            ``probe_emotions_eval.csv``. Its rows whose label is not a training label are
            dropped (with a warning, counted in the manifest). The manifest records both
            datasets' hashes (``data`` and ``eval_data``).

    Returns:
        The :class:`ProbingOutputs`.

    Raises:
        ProbeError: ``eval_dataset`` shares no label with the training data, or
            ``probe_model`` is not ``"logreg"`` (only linear probes have directions to
            evaluate).
    """
    from lens_emotion.inference import infer_emotions

    s = settings if settings is not None else ProbingSettings()
    dataset = data
    sites = list(s.sites)
    layers = None if s.layers is None else list(s.layers)
    if eval_dataset is not None and s.probe_model != "logreg":
        raise ProbeError(
            f"eval_dataset needs probe_model='logreg' (the MLP probe keeps no directions to "
            f"score another dataset with), not {s.probe_model!r}."
        )
    out = start_run(s.seed, out)
    timer = StepTimer("probe", verbose=progress)
    mask = None
    if s.agreeing_only:
        with timer.step("agreeing filter"):
            result = infer_emotions(
                model, dataset, s.template, batch_size=s.batch_size, calibrate=s.calibrate,
                progress=progress,
            )  # fmt: skip
            mask = result.correct
    prompts = build_prompts(model, dataset.texts, dataset.labels, dataset.label_names, s.template)
    with timer.step("extraction"):
        store = extract_activations(
            model,
            prompts,
            sites=sites,
            positions=s.last_k,
            out_dir=s.store_dir,
            dataset=dataset,
            dtype=s.store_dtype,
            batch_size=s.batch_size,
            seed=s.seed,
            progress=progress,
        )

    with timer.step("emotion probes"):
        emotion = probe_emotions(
            store,
            dataset.labels,
            label_names=dataset.label_names,
            sites=sites,
            layers=layers,
            n_folds=s.n_folds,
            seed=s.seed,
            C=s.C,
            mask=mask,
            model=s.probe_model,
            progress=progress,
            num_threads=s.num_threads,
        )
    # Embedding baseline: resid_pre of block 0 (the forward pass stops after layer 0).
    embed_store = extract_activations(
        model,
        prompts,
        sites=["resid_pre"],
        layers=[0],
        dataset=dataset,
        batch_size=s.batch_size,
        seed=s.seed,
        progress=False,
    )
    embedding = probe_emotions(
        embed_store,
        dataset.labels,
        label_names=dataset.label_names,
        n_folds=s.n_folds,
        seed=s.seed,
        C=s.C,
        mask=mask,
        progress=False,
        num_threads=s.num_threads,
        fit_directions=False,
    ).table
    files = _relative(emotion.save(out), out)
    embedding.to_csv(out / "probe_embedding_baseline.csv", index=False)
    files["probe_embedding_baseline.csv"] = "probe_embedding_baseline.csv"
    figures = {"probe_emotions_bars": emotion.figure(), "probe_emotions_heatmap": emotion.heatmap()}

    appraisal = alignment = None
    if dataset.appraisals is not None:
        with timer.step("appraisal probes"):
            appraisal = probe_appraisals(
                store,
                dataset.appraisals,
                dataset.appraisal_names,
                sites=sites,
                layers=layers,
                alpha=_alpha_arg(s.alpha),
                n_folds=s.n_folds,
                seed=s.seed,
                mask=mask,
                progress=progress,
                num_threads=s.num_threads,
            )
            align_site = "resid_post" if "resid_post" in sites else sites[0]
            alignment = appraisal_alignment(emotion, appraisal, site=align_site)
        files.update(_relative(appraisal.save(out), out))
        files.update(_relative(alignment.save(out), out))
        figures["probe_appraisals"] = appraisal.figure()
        # First shown (and the static export's) layer: where the emotion signal stabilises.
        shown = emotion.stable_layer(align_site)
        figures["alignment"] = alignment.figure(layer=shown if shown in alignment.layers else None)

    evaluation = eval_store = None
    eval_info: dict[str, Any] | None = None
    if eval_dataset is not None:
        with timer.step("eval"):
            evaluation, eval_store, eval_info = _evaluate_on(
                model, emotion, eval_dataset, dataset.label_names, prompts.template, sites,
                s.store_dir, s.batch_size, s.seed, progress,
            )  # fmt: skip
        evaluation.to_csv(out / "probe_emotions_eval.csv", index=False)
        files["probe_emotions_eval.csv"] = "probe_emotions_eval.csv"

    positions = None
    if s.last_k > 1:
        positions = probe_positions(
            store,
            dataset.labels,
            label_names=dataset.label_names,
            site="resid_post",
            layers=layers,
            n_folds=s.n_folds,
            seed=s.seed,
            mask=mask,
            progress=progress,
            num_threads=s.num_threads,
        )
        files.update(_relative(positions.save(out), out))
        figures["probe_positions"] = positions.figure()

    for name, fig in figures.items():
        for path in write_figure(fig, out / "figures" / name, formats=s.formats):
            files[f"figures/{path.name}"] = str(path.relative_to(out))
    report_step("probe", "total", timer.total(), progress)
    n_rows = int(mask.sum()) if mask is not None else len(dataset)
    write_manifest(
        out,
        seed=s.seed,
        model=model,
        dataset=dataset,
        template=prompts.template,
        settings=s,
        timer=timer,
        command=command,
        extra={
            "analysis": "probing",
            "sites": sites,
            "layers": layers,
            "last_k": s.last_k,
            "agreeing_only": s.agreeing_only,
            "n_rows_probed": n_rows,
            "n_folds": s.n_folds,
            "C": s.C,
            "alpha": _alpha_arg(s.alpha),
            "probe_model": s.probe_model,
            "activation_store": str(store.root),
            **({"eval_data": eval_info} if eval_info is not None else {}),
        },
    )
    files["manifest.json"] = "manifest.json"
    return ProbingOutputs(
        emotion, embedding, appraisal, alignment, positions, store, files, figures, n_rows,
        evaluation, eval_store, s,
    )  # fmt: skip


def _alpha_arg(alpha: float | Sequence[float | int]) -> float | list[float]:
    """The ridge penalty as the probes take it: one number, or a list to choose from."""
    return float(alpha) if isinstance(alpha, int | float) else [float(a) for a in alpha]


def _evaluate_on(
    model: EmotionModel,
    emotion: EmotionProbeResult,
    eval_dataset: EmotionDataset,
    label_names: Sequence[str],
    template: PromptTemplate,
    sites: Sequence[str],
    store_dir: str | Path | None,
    batch_size: int,
    seed: int,
    progress: bool,
) -> tuple[pd.DataFrame, ActivationStore, dict[str, Any]]:
    """Extract the evaluation rows' activations and score the all-rows probes on them."""
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
