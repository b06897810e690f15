"""The one-command demo: every analysis that exists, on the offline default model.

``lens-emotion demo`` (what ``./run demo`` calls) loads SmolLM2-135M-Instruct from the zoo,
runs the available analyses on the built-in sample set (or, with ``--data-path``, on real
crowd-enVENT rows), and writes ``OUT/index.html``: one offline report page with the key
numbers, interactive figures, links to every CSV/JSON output and the run manifest.

Analyses: emotion inference under the paper's prompt and the emotion-list prompt, uncalibrated
and with both calibration modes; the non-emotional control task; per-layer emotion and
appraisal probes with their alignment (Tak et al. step 1); activation patching, ablations and
attribution patching (step 2); the attention analysis with CircuitsVis views; appraisal
steering with theory checks (step 3); emotion circuits on SEV scenarios (Wang et al.); and the
emotion geometry (PC1 ~ valence, RSA, crowd-enVENT vs SEV directions).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lens_emotion.demo.attention_step import attention_step
from lens_emotion.demo.circuits_step import circuits_step
from lens_emotion.demo.config import DemoConfig
from lens_emotion.demo.context import StepContext
from lens_emotion.demo.geometry_step import geometry_step
from lens_emotion.demo.inference_step import control_step, inference_step
from lens_emotion.demo.patching_step import attribution_step, patching_step
from lens_emotion.demo.probing_step import probing_step
from lens_emotion.demo.steering_step import steering_step
from lens_emotion.errors import LensEmotionError
from lens_emotion.io import write_json_atomic
from lens_emotion.manifest import run_manifest, seed_everything


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


#: The analyses the demo runs, in order (names used in the manifest, summary and page).
STEPS: tuple[str, ...] = (
    "inference",
    "control task",
    "probing",
    "patching",
    "attribution",
    "attention",
    "steering",
    "circuits",
    "geometry",
)


def _data_files(data_root: Path | None) -> tuple[Path | None, Path | None]:
    """crowd-enVENT and SEV files under ``data_root`` (``None``: the built-in samples)."""
    if data_root is None:
        return None, None
    if data_root.is_file():
        return data_root, None
    folder = data_root / "crowd-envent"
    tsv = folder / "crowd-enVent_generation.tsv"
    crowd = tsv if tsv.is_file() else folder / "enVent_gen_Data.csv"
    return crowd, data_root / "sev" / "sev.jsonl"


def _load_demo_data(crowd_path: Path | None, config: DemoConfig, seed: int) -> Any:
    """The built-in sample set, or a stratified crowd-enVENT subset (``config.n_rows`` rows)."""
    from lens_emotion.data import load_crowd_envent, load_sample

    data = load_sample() if crowd_path is None else load_crowd_envent(crowd_path)
    return data.sample(config.n_rows, seed=seed) if config.n_rows < len(data) else data


def _load_sev(sev_path: Path | None) -> Any:
    """The built-in SEV-format sample, or the real SEV file."""
    from lens_emotion.data import load_sev, load_sev_sample

    if sev_path is None:
        return load_sev_sample()
    return load_sev(sev_path)


def _judge_training_file(crowd_path: Path | None) -> Path:
    """What the offline judge trains on: the real corpus, or the packaged sample set."""
    if crowd_path is not None:
        return crowd_path
    from importlib import resources

    from lens_emotion.data.sample import SAMPLE_FILE

    return Path(str(resources.files("lens_emotion.data").joinpath(SAMPLE_FILE)))


def run_demo(
    out: str | Path = "demo_out",
    model_spec: str | None = None,
    data_root: str | Path | None = None,
    quick: bool = False,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
    config: DemoConfig | None = None,
) -> Path:
    """Run the demo and write ``OUT/index.html``.

    Args:
        out: Output folder.
        model_spec: Model to load (default: the offline zoo model).
        data_root: Folder holding ``crowd-envent/enVent_gen_Data.csv`` and
            ``sev/sev.jsonl``; ``None`` uses the built-in sample sets.
        quick: Use :meth:`DemoConfig.quick` sizes.
        seed: Seed for subsets and any randomness.
        device: Torch device (default: auto).
        progress: Show progress bars.
        config: Explicit sizes (overrides ``quick``).

    Returns:
        Path of the written ``index.html``.

    Raises:
        LensEmotionError: Missing data files or a model that cannot be loaded. A step that
            cannot run on the chosen model (e.g. no chat template for the SEV prompts) is
            reported as skipped, with the reason, in the page and the summary.
    """
    from lens_emotion.models import DEFAULT_MODEL, load_model
    from lens_emotion.viz.report import Report

    started = time.perf_counter()
    seed_everything(seed)
    config = config or (DemoConfig.quick() if quick else DemoConfig())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    crowd_path, sev_path = _data_files(Path(data_root) if data_root else None)
    timer = _Timer()
    with timer.step("load model"):
        model = load_model(model_spec or DEFAULT_MODEL, device=device)
    with timer.step("load data"):
        dataset = _load_demo_data(crowd_path, config, seed)
        sev = _load_sev(sev_path)
    judge_file = _judge_training_file(crowd_path)
    report = Report(f"lens-emotion demo: {model.model_id} on {dataset.name}")
    summary: dict[str, Any] = {}
    skipped: dict[str, str] = {}

    def step(name: str, fn: Any, *args: Any) -> None:
        with timer.step(name):
            try:
                summary[name] = fn(*args)
            except LensEmotionError as exc:
                skipped[name] = str(exc)
                print(f"[demo] {name} skipped: {exc}", file=sys.stderr, flush=True)
                report.add_section(f"{name} (skipped)", text=f"This step could not run: {exc}")

    ctx = StepContext(model, dataset, config, out, report, progress, seed)
    scores: dict[str, Any] = {}  # uncalibrated inference results by template, computed once
    step("inference", inference_step, ctx, scores)
    step("control task", control_step, ctx, scores)
    step("probing", probing_step, ctx)
    step("patching", patching_step, ctx, scores)
    step("attribution", attribution_step, ctx, scores)
    step("attention", attention_step, ctx)
    step("steering", steering_step, ctx, judge_file)
    step("circuits", _circuits, ctx._replace(dataset=sev), judge_file)
    step("geometry", geometry_step, ctx)
    timer.timings["total"] = round(time.perf_counter() - started, 2)
    manifest = run_manifest(
        seed=seed,
        model=model,
        dataset=dataset,
        extra={
            "quick": quick,
            "sev": {"name": sev.name, "n": len(sev), "sha256": sev.fingerprint()},
            "judge_training_file": str(judge_file),
            "timings_s": timer.timings,
            "skipped": skipped,
            "summary": summary,
        },
    )
    write_json_atomic(out / "manifest.json", manifest)
    report.set_manifest(manifest)
    index = report.write(out / "index.html")
    _print_summary(summary, skipped, timer.timings, index)
    return index


def _circuits(ctx: StepContext, judge_file: Path) -> dict[str, Any]:
    judge = None
    if ctx.config.circuit_settings.get("generate", True):
        from lens_emotion.judge import load_judge

        judge = load_judge(
            label_set="sev", data_path=judge_file, seed=ctx.seed, progress=ctx.progress
        )
    return circuits_step(ctx, judge)


def _print_summary(
    summary: dict[str, Any], skipped: dict[str, str], timings: dict[str, float], index: Path
) -> None:
    """The end-of-run summary on stderr: key numbers, skipped steps and timings."""
    err = sys.stderr
    print("\n[demo] summary", file=err)
    for name, values in summary.get("inference", {}).items():
        print(
            f"  inference {name:<28} accuracy {values['accuracy']:.3f}  "
            f"macro-F1 {values['macro_f1']:.3f}",
            file=err,
        )
    if "control task" in summary:
        print(f"  control task accuracy {summary['control task']['accuracy']:.3f}", file=err)
    for key, value in summary.get("probing", {}).get("best", {}).items():
        print(f"  probing {key}: {value}", file=err)
    for peak in summary.get("patching", {}).get("peaks", []):
        print(
            f"  patching {peak['site']:<10} peak transfer {peak['peak_transfer']:.2f} at layer "
            f"{peak['peak_layer']} (depth {peak['relative_depth']:.2f})",
            file=err,
        )
    for key, corr in summary.get("attribution", {}).get("correlations", {}).items():
        print(f"  AtP vs patching {key:<10} Pearson {corr['pearson']:.3f}", file=err)
    for check in summary.get("steering", {}).get("theory_checks", []):
        print(f"  theory {check['outcome']}: {check['prediction']}: {check['verdict']}", file=err)
    for row in summary.get("circuits", {}).get("control", []):
        print(
            f"  circuits {row['method']:<10} judged (emotion words masked) "
            f"{row['judged_masked']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}], "
            f"raw {row['judged_raw']:.3f}, names the emotion {row['names_emotion']:.2f}",
            file=err,
        )
    geometry = summary.get("geometry", {})
    if "peak_valence_r" in geometry:
        print(
            f"  geometry PC1 ~ valence r {geometry['peak_valence_r']:.3f} at layer "
            f"{geometry['peak_valence_layer']}; RSA rho {geometry['peak_rsa_rho']:.3f}",
            file=err,
        )
    for name, reason in skipped.items():
        print(f"  SKIPPED {name}: {reason}", file=err)
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in timings.items() if k != "total")
    print(f"  timings: {steps}", file=err)
    print(f"  total {timings['total']:.0f} s; report: {index}", file=err)
