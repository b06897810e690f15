"""The one-command demo: every analysis that exists, on the offline default model.

``lens-emotion demo`` (what ``./run demo`` calls) loads SmolLM2-135M-Instruct from the zoo,
runs the available analyses on the built-in sample set (or, with ``--data-path``, on real
crowd-enVENT rows), and writes ``OUT/index.html``: one offline report page with the key
numbers, interactive figures, links to every CSV/JSON output and the run manifest.

Analyses so far: emotion inference under the paper's prompt and the emotion-list prompt,
uncalibrated and with both calibration modes; the non-emotional control task; per-layer
emotion and appraisal probes with their alignment; and the attention analysis (token-group
masses, emotion-bearing tokens, CircuitsVis views).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lens_emotion.io import write_json_atomic
from lens_emotion.manifest import run_manifest, seed_everything


@dataclass
class DemoConfig:
    """Sizes and choices of a demo run.

    Attributes:
        n_rows: crowd-enVENT rows (stratified subset) when real data is used.
        runs: ``(template, calibration)`` pairs of the inference step.
        batch_size: Prompts per forward pass.
        probe_sites: Sites of the probing step.
        probe_folds: Cross-validation folds of the probes.
        attention_rows: Texts of the attention step (occlusion saliency is the costly part).
        attention_layers: Layers of the attention step (default: all).
    """

    n_rows: int = 260
    runs: tuple[tuple[str, str | None], ...] = (
        ("paper", None),
        ("emotion-list", None),
        ("emotion-list", "content-free"),
        ("emotion-list", "mean"),
    )
    batch_size: int = 16
    probe_sites: tuple[str, ...] = ("attn_out", "mlp_out", "resid_post")
    probe_folds: int = 5
    attention_rows: int = 48
    attention_layers: tuple[int, ...] | None = None

    @classmethod
    def quick(cls) -> DemoConfig:
        """Smaller sizes for a smoke run (well under 3 minutes on a 2-core CPU)."""
        return cls(
            n_rows=65,
            runs=(("paper", None), ("emotion-list", None), ("emotion-list", "mean")),
            probe_sites=("resid_post",),
            probe_folds=3,
            attention_rows=12,
        )


@dataclass
class _Timer:
    timings: dict[str, float] = field(default_factory=dict)

    def step(self, name: str) -> _Step:
        return _Step(self, name)


@dataclass
class _Step:
    timer: _Timer
    name: str
    started: float = 0.0

    def __enter__(self) -> _Step:
        print(f"[demo] {self.name} ...", file=sys.stderr, flush=True)
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self.started
        self.timer.timings[self.name] = round(elapsed, 2)
        print(f"[demo] {self.name}: {elapsed:.1f} s", file=sys.stderr, flush=True)


def _load_demo_data(data_root: Path | None, config: DemoConfig, seed: int) -> Any:
    """The built-in sample set, or a stratified crowd-enVENT subset under ``data_root``."""
    from lens_emotion.data import load_crowd_envent, load_sample

    if data_root is None:
        return load_sample()
    path = data_root
    if data_root.is_dir():
        folder = data_root / "crowd-envent"
        tsv = folder / "crowd-enVent_generation.tsv"
        path = tsv if tsv.is_file() else folder / "enVent_gen_Data.csv"
    return load_crowd_envent(path).sample(config.n_rows, seed=seed)


def _inference_step(
    model: Any, dataset: Any, config: DemoConfig, out: Path, report: Any, progress: bool
) -> dict[str, Any]:
    from lens_emotion.inference import infer_emotions, recalibrate
    from lens_emotion.plots import label_distribution_figure

    rows, results, raw_by_template = [], {}, {}
    for template, calibration in config.runs:
        name = f"{template}" + (f"_{calibration}" if calibration else "")
        if template not in raw_by_template:  # one forward pass per template
            raw_by_template[template] = infer_emotions(
                model, dataset, template, batch_size=config.batch_size, progress=progress
            )
        result = recalibrate(raw_by_template[template], calibration, model=model)
        result.save(out / "inference" / name)
        results[name] = result
        rows.append((name, result))
    best_name, best = max(results.items(), key=lambda item: item[1].macro_f1)
    metrics = {
        f"{name}: accuracy / macro-F1": f"{r.accuracy:.3f} / {r.macro_f1:.3f}" for name, r in rows
    }
    metrics["chance (uniform over labels)"] = f"{1 / len(dataset.label_names):.3f}"
    metrics["throughput (prompts/s, last run)"] = f"{len(best) / max(best.seconds, 1e-9):.1f}"
    raw = results.get("paper")
    figures = [best.figure()]
    if raw is not None:
        figures.append(
            label_distribution_figure(
                {
                    "human": dict(zip(*_counts(raw.labels), strict=True)),
                    "paper prompt": dict(zip(*_counts(raw.predictions), strict=True)),
                    best_name: dict(zip(*_counts(best.predictions), strict=True)),
                },
                title="How often each label is given: human vs model",
                label_order=list(dataset.label_names),
            )
        )
    links = {}
    for name, _ in rows:
        links[f"{name}/predictions.csv"] = f"inference/{name}/predictions.csv"
        links[f"{name}/metrics.json"] = f"inference/{name}/metrics.json"
    report.add_section(
        "Emotion inference",
        text=(
            "Each text is wrapped in a prompt and every emotion label is scored by the "
            "log-probability of its first token at the answer position (only the last "
            "position is unembedded; batches are length-sorted and left-padded). "
            "'content-free' divides out the label distribution the prompt gives to "
            "content-free inputs (Zhao et al. 2021); 'mean' subtracts each label's mean "
            f"log-prob over these texts. The confusion matrix shows the best run ({best_name})."
        ),
        metrics=metrics,
        figures=figures,
        links=links,
    )
    return {name: {"accuracy": r.accuracy, "macro_f1": r.macro_f1} for name, r in rows}


def _counts(values: Any) -> tuple[list[str], list[int]]:
    import pandas as pd

    counts = pd.Series(list(values)).value_counts()
    return [str(k) for k in counts.index], [int(v) for v in counts.values]


def _control_step(
    model: Any, dataset: Any, config: DemoConfig, out: Path, report: Any, progress: bool
) -> dict[str, Any]:
    from lens_emotion.inference import infer_emotions

    result = infer_emotions(
        model, dataset, "control-first-word", batch_size=config.batch_size, progress=progress
    )
    result.save(out / "inference" / "control-first-word")
    report.add_section(
        "Control task: first word of the context",
        text=(
            "The non-emotional control task used by Tak et al.: the same texts, but the "
            "model must name the context's first word. Patching analyses compare which "
            "layers matter for it and for emotion."
        ),
        metrics={
            "accuracy": f"{result.accuracy:.3f}",
            "distinct first words": len(result.label_names),
        },
        links={
            "predictions.csv": "inference/control-first-word/predictions.csv",
            "metrics.json": "inference/control-first-word/metrics.json",
        },
    )
    return {"accuracy": result.accuracy}


def _probing_step(
    model: Any, dataset: Any, config: DemoConfig, out: Path, report: Any, progress: bool, seed: int
) -> dict[str, Any]:
    from lens_emotion.workflows import run_probing

    folds = min(config.probe_folds, min(dataset.label_counts().values()))
    outputs = run_probing(
        model,
        dataset,
        out / "probing",
        sites=config.probe_sites,
        n_folds=folds,
        seed=seed,
        progress=progress,
        num_threads=1,
        batch_size=config.batch_size,
    )
    table = outputs.emotion.table
    metrics: dict[str, Any] = {}
    for site in config.probe_sites:
        rows = table[table.site == site]
        best = rows.loc[rows.accuracy_mean.idxmax()]
        metrics[f"{site}: best layer (accuracy ± sd)"] = (
            f"{int(best.layer)} ({best.accuracy_mean:.3f} ± {best.accuracy_sd:.3f})"
        )
    embed = outputs.embedding.iloc[0]
    metrics["embedding baseline (resid_pre of block 0)"] = f"{embed.accuracy_mean:.3f}"
    metrics["majority baseline"] = f"{table.majority_baseline.iloc[0]:.3f}"
    figures = [outputs.emotion.figure(), outputs.emotion.heatmap()]
    if outputs.appraisal is not None:
        r2 = outputs.appraisal.table
        plea = r2[(r2.appraisal == "pleasantness") & (r2.site == config.probe_sites[-1])]
        best_r2 = plea.loc[plea.r2_mean.idxmax()]
        metrics["pleasantness R² (best layer)"] = (
            f"{best_r2.r2_mean:.3f} (layer {int(best_r2.layer)})"
        )
        figures += [outputs.appraisal.figure(), outputs.alignment.figure()]
    report.add_section(
        "Probing: where emotion and appraisals are linearly decodable",
        text=(
            f"Linear probes on {', '.join(config.probe_sites)} at the last prompt token of "
            f"every layer ({folds}-fold stratified CV, standardised features, class-balanced "
            "L2 logistic regression; shuffled-label control and majority baseline alongside). "
            "Ridge probes predict the 21 appraisal ratings; the alignment map shows the cosine "
            f"between emotion and appraisal probe directions per layer ({len(dataset)} texts)."
        ),
        metrics=metrics,
        figures=figures,
        links={
            name: f"probing/{rel}"
            for name, rel in sorted(outputs.files.items())
            if rel.endswith((".csv", ".json"))
        },
    )
    return {"best": {k: v for k, v in metrics.items()}, "n_rows": outputs.n_rows}


def _attention_step(
    model: Any, dataset: Any, config: DemoConfig, out: Path, report: Any, progress: bool, seed: int
) -> dict[str, Any]:
    from lens_emotion.attention import attention_mass
    from lens_emotion.circuitsvis_offline import attention_heads_view

    rows = dataset.sample(config.attention_rows, seed=seed)
    result = attention_mass(
        model,
        rows,
        "emotion-list",
        layers=config.attention_layers,
        seed=seed,
        keep_patterns=True,
        progress=progress,
    )
    paths = result.save(out / "attention")
    bands = result.band_frame()
    metrics: dict[str, Any] = {}
    for row in bands.to_dict(orient="records"):
        wanted = row["group"] in {"sink", "template", "context", "final"}
        if (wanted and row["normalise"] == "total") or row["group"] == "emotion_enrichment":
            metrics[f"{row['band']} ({row['layers']}): {row['group']}"] = (
                f"{row['mean']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
            )
    html = []
    if result.saliency is not None:
        html.append(result.saliency.view(0))
    if result.patterns is not None and result.patterns.query == "final":
        layer = result.layers[len(result.layers) * 2 // 3]
        li = result.layers.index(layer)
        pattern = result.patterns.patterns[0][li]  # [head, key]: the final token's query
        html.append(
            attention_heads_view(
                result.patterns.tokens[0], pattern, title=f"Final-token attention, layer {layer}"
            )
        )
    report.add_section(
        "Attention: what the final token looks at, layer by layer",
        text=(
            "Attention mass of the final token on the attention sink (first token), the "
            "template, the event text and itself, per layer; emotion-bearing tokens are the "
            "top 20% of event-text tokens by occlusion saliency (hiding the token lowers the "
            "predicted label's log-prob most). Enrichment = per-token mass on emotion-bearing "
            "tokens / per-token mass on the rest of the event text. Below: the saliency of "
            "one text and the final-token attention of every head at one layer "
            "(CircuitsVis, embedded offline)."
        ),
        metrics=metrics,
        figures=[result.figure(), result.heatmap(group="emotion")],
        html=html,
        links={p.name: f"attention/{p.name}" for p in paths if p.suffix in {".csv", ".json"}},
    )
    return {"bands": bands.to_dict(orient="records"), "n_rows": len(rows)}


def run_demo(
    out: str | Path = "demo_out",
    model_spec: str | None = None,
    data_root: str | Path | None = None,
    quick: bool = False,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Run the demo and write ``OUT/index.html``.

    Args:
        out: Output folder.
        model_spec: Model to load (default: the offline zoo model).
        data_root: Folder holding ``crowd-envent/enVent_gen_Data.csv``; ``None`` uses the
            built-in sample set.
        quick: Use :meth:`DemoConfig.quick` sizes.
        seed: Seed for subsets and any randomness.
        device: Torch device (default: auto).
        progress: Show progress bars.

    Returns:
        Path of the written ``index.html``.
    """
    from lens_emotion.models import DEFAULT_MODEL, load_model
    from lens_emotion.report import Report

    started = time.perf_counter()
    seed_everything(seed)
    config = DemoConfig.quick() if quick else DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timer = _Timer()
    with timer.step("load model"):
        model = load_model(model_spec or DEFAULT_MODEL, device=device)
    with timer.step("load data"):
        dataset = _load_demo_data(Path(data_root) if data_root else None, config, seed)
    report = Report(f"lens-emotion demo: {model.model_id} on {dataset.name}")
    summary: dict[str, Any] = {}
    with timer.step("emotion inference"):
        summary["inference"] = _inference_step(model, dataset, config, out, report, progress)
    with timer.step("control task"):
        summary["control"] = _control_step(model, dataset, config, out, report, progress)
    with timer.step("probing"):
        summary["probing"] = _probing_step(model, dataset, config, out, report, progress, seed)
    with timer.step("attention"):
        summary["attention"] = _attention_step(model, dataset, config, out, report, progress, seed)
    timer.timings["total"] = round(time.perf_counter() - started, 2)
    manifest = run_manifest(
        seed=seed,
        model=model,
        dataset=dataset,
        extra={"quick": quick, "timings_s": timer.timings, "summary": summary},
    )
    write_json_atomic(out / "manifest.json", manifest)
    report.set_manifest(manifest)
    index = report.write(out / "index.html")
    print("\n[demo] summary", file=sys.stderr)
    for name, values in summary["inference"].items():
        print(
            f"  inference {name:<28} accuracy {values['accuracy']:.3f}  "
            f"macro-F1 {values['macro_f1']:.3f}",
            file=sys.stderr,
        )
    print(f"  control task accuracy {summary['control']['accuracy']:.3f}", file=sys.stderr)
    for key, value in summary["probing"]["best"].items():
        print(f"  probing {key}: {value}", file=sys.stderr)
    print(f"  total {timer.timings['total']:.0f} s; report: {index}", file=sys.stderr)
    return index
