"""The sweep's one long table, rebuilt from the finished jobs' own output files.

Columns (:data:`TABLE_COLUMNS`): ``model, family, n_layers, template, analysis, seed, site,
layer, relative_depth, metric, value, ci_low, ci_high, status, error``, with
``relative_depth = layer / (n_layers - 1)``. Each analysis has one function here reshaping
its files into rows (the documented mapping, :data:`RESHAPERS`); nothing is appended: the
table is rebuilt from every job folder each time, so a job's rows appear once. A failed job
appears as one row with ``status = "failed"`` and its ``error``.

Mapping, per analysis:

- **infer** (``metrics.json``, ``predictions.csv``): site ``readout``, no layer; metrics
  ``accuracy`` (95% percentile bootstrap CI over scored texts), ``macro_f1`` and
  ``accuracy_<calibration>`` for every calibration compared.
- **probe** (``probe_emotions.csv`` / ``_folds.csv``, ``probe_embedding_baseline.csv``,
  ``probe_appraisals.csv``): per (site, layer) ``accuracy`` (fold mean, 95% t-interval over
  folds, clipped to [0, 1]), ``macro_f1``, ``selectivity``, ``shuffled_control``,
  ``majority_baseline``; ``appraisal_r2`` (mean over appraisals of the CV R²); the embedding
  baseline as site ``embedding``, layer 0, ``accuracy``.
- **patch** (``patching.csv``): per (site, center layer) ``transfer`` (with its bootstrap CI
  over pairs), ``remained``, ``neither``, ``mean_logit_diff_change``.
- **geometry** (the run's ``summary()`` and ``geometry.csv``): ``peak_valence_r`` at its
  layer (with CI), ``peak_arousal_r``, ``peak_text_pleasantness_rho``, ``peak_rsa_rho`` and the
  other numeric headline numbers, at the peak layer where the summary names one; and per
  (site, layer) the curves of the headline vector kind (:data:`GEOMETRY_CURVES`:
  ``pc1_valence_r``, ``pc2_arousal_r``, ``text_pc1_pleasantness_rho``, ``rsa_rho``,
  ``diag_cos``), with their CIs.
- **attribute** (``attribution.csv``, whole sites only): per (site, layer) ``atp_effect``
  (95% normal interval from its sd over pairs) and, where patched too, ``patch_effect``.
- **attention** (``attention_mass_layers.csv``): site ``attention``, per layer
  ``mass_<group>_<normalise>`` (the share of the final token's attention on that token group,
  with its bootstrap CI).
- **steer** (``readout.csv``, steered rows; controls left out): site ``resid_post`` (the
  steering site), per layer ``proportion[<combo>, beta=<b>, <emotion>]`` with its CI.
- **circuits** (the run's ``summary()``): every numeric scalar of the summary as a metric
  named by its key path (``a.b.c``); a ``layer`` key beside the numbers gives their layer,
  and ``ci_low``/``ci_high`` (or ``*_ci_low``/``*_ci_high``) their interval.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lens_emotion.sweep.jobs import Job, read_record

__all__ = [
    "GEOMETRY_CURVES",
    "RESHAPERS",
    "TABLE_COLUMNS",
    "attention_rows",
    "attribute_rows",
    "build_table",
    "circuits_rows",
    "geometry_rows",
    "infer_rows",
    "patch_rows",
    "probe_rows",
    "steer_rows",
    "write_table",
]

TABLE_COLUMNS: tuple[str, ...] = (
    "model",
    "family",
    "n_layers",
    "template",
    "analysis",
    "seed",
    "site",
    "layer",
    "relative_depth",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "status",
    "error",
)
"""Columns of ``results.parquet`` / ``results.csv``."""

_ROW = ("site", "layer", "metric", "value", "ci_low", "ci_high")


def _row(
    site: str | None,
    layer: Any,
    metric: str,
    value: Any,
    ci_low: Any = None,
    ci_high: Any = None,
) -> dict[str, Any]:
    def num(x: Any) -> float:
        return float("nan") if x is None else float(x)

    return {
        "site": site,
        "layer": None if layer is None or pd.isna(layer) else int(layer),
        "metric": metric,
        "value": num(value),
        "ci_low": num(ci_low),
        "ci_high": num(ci_high),
    }


def infer_rows(folder: Path, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of an inference job: accuracy (bootstrap CI), macro-F1, accuracy per calibration."""
    from lens_emotion.stats import bootstrap_mean_ci

    metrics = json.loads((folder / "metrics.json").read_text())
    predictions = pd.read_csv(folder / "predictions.csv")
    scored = predictions[predictions["scored"].astype(bool)]
    seed = int(record.get("seed", 0))
    mean, low, high = bootstrap_mean_ci(scored["correct"].astype(float).to_numpy(), seed=seed)
    rows = [
        _row("readout", None, "accuracy", metrics["accuracy"], low, high),
        _row("readout", None, "macro_f1", metrics["macro_f1"]),
    ]
    for name, value in (metrics.get("accuracy_by_calibration") or {}).items():
        if value is not None:
            rows.append(_row("readout", None, f"accuracy_{name}", value))
    return rows


def probe_rows(folder: Path, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of a probing job: accuracy per (site, layer) with a t-interval over folds, and more."""
    from scipy import stats

    table = pd.read_csv(folder / "probe_emotions.csv")
    folds = pd.read_csv(folder / "probe_emotions_folds.csv")
    rows: list[dict[str, Any]] = []
    spread = folds.groupby(["site", "layer"])["accuracy"].agg(["std", "count"])
    for item in table.itertuples(index=False):
        sd, k = spread.loc[(item.site, item.layer)]
        half = float(stats.t.ppf(0.975, k - 1) * sd / np.sqrt(k)) if k > 1 else 0.0
        acc = float(item.accuracy_mean)
        low, high = max(0.0, acc - half), min(1.0, acc + half)  # accuracies lie in [0, 1]
        rows.append(_row(item.site, item.layer, "accuracy", acc, low, high))
        for metric in ("macro_f1", "selectivity", "shuffled_control", "majority_baseline"):
            rows.append(_row(item.site, item.layer, metric, getattr(item, metric)))
    baseline = folder / "probe_embedding_baseline.csv"
    if baseline.is_file():
        emb = pd.read_csv(baseline).iloc[0]
        rows.append(_row("embedding", 0, "accuracy", emb["accuracy_mean"]))
    appraisals = folder / "probe_appraisals.csv"
    if appraisals.is_file():
        frame = pd.read_csv(appraisals)
        for (site, layer), group in frame.groupby(["site", "layer"], sort=False):
            rows.append(_row(site, layer, "appraisal_r2", group["r2_mean"].mean()))
    return rows


def patch_rows(folder: Path, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of a patching job: transfer (bootstrap CI over pairs) and the other outcomes."""
    table = pd.read_csv(folder / "patching.csv")
    rows: list[dict[str, Any]] = []
    for item in table.itertuples(index=False):
        layer = item.center_layer
        rows.append(
            _row(
                item.site,
                layer,
                "transfer",
                item.transfer,
                item.transfer_ci_low,
                item.transfer_ci_high,
            )  # fmt: skip
        )
        for metric in ("remained", "neither", "mean_logit_diff_change"):
            rows.append(_row(item.site, layer, metric, getattr(item, metric)))
    return rows


def _summary_rows(
    summary: Mapping[str, Any], site: str | None = None, prefix: str = ""
) -> list[dict[str, Any]]:
    """Every numeric scalar of a summary as a row (see the module docstring)."""
    rows: list[dict[str, Any]] = []
    layer = summary.get("layer") if isinstance(summary.get("layer"), int) else None
    own_site = summary.get("site") if isinstance(summary.get("site"), str) else site
    low, high = summary.get("ci_low"), summary.get("ci_high")
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if key in ("layer", "ci_low", "ci_high", "seed") or key.endswith(("_ci_low", "_ci_high")):
            continue
        if isinstance(value, Mapping):
            rows += _summary_rows(value, own_site, f"{name}.")
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value):
                label = item.get("site", i) if isinstance(item, Mapping) else i
                rows += _summary_rows(item, own_site, f"{name}.{label}.")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            continue
        else:
            lo = summary.get(f"{key}_ci_low", low if key in ("value", "mean") else None)
            hi = summary.get(f"{key}_ci_high", high if key in ("value", "mean") else None)
            rows.append(_row(own_site, layer, name, value, lo, hi))
    return rows


#: Per-layer measures of ``geometry.csv`` (of the summary's vector kind) kept as sweep curves.
GEOMETRY_CURVES = (
    "pc1_valence_r",
    "pc2_arousal_r",
    "text_pc1_pleasantness_rho",
    "rsa_rho",
    "diag_cos",
)


def geometry_rows(folder: Path, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of a geometry job: the headline numbers, and the per-layer curves behind them.

    ``peak_valence_r`` carries its bootstrap CI and sits at ``peak_valence_layer``; the
    other top-level numbers are rows without a layer unless a ``<name>_layer`` key gives one.
    Where the job folder has ``geometry.csv``, the :data:`GEOMETRY_CURVES` measures of the
    summary's vector kind (``kind``, default ``mean``) follow as one row per (site, layer), so
    the sweep can draw them against relative depth.
    """
    summary = record.get("summary") or {}
    curves = folder / "geometry.csv"
    curve_rows: list[dict[str, Any]] = []
    if curves.exists():
        kind = summary.get("kind", "mean")
        wanted = {f"{kind}.{name}": name for name in GEOMETRY_CURVES}
        table = pd.read_csv(curves)
        table = table[table["measure"].isin(list(wanted))]
        curve_rows = [
            _row(item.site, item.layer, wanted[item.measure], item.value, item.ci_low,
                 item.ci_high)
            for item in table.itertuples(index=False)
        ]  # fmt: skip
    site = "resid_post"
    rows: list[dict[str, Any]] = []
    ci = summary.get("peak_valence_ci") or [None, None]
    for key, value in summary.items():
        if key == "by_kind" or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if key.endswith(("_layer", "_relative_depth", "_ci", "_p")) or "_layer_" in key:
            continue
        layer = _summary_layer(summary, key)
        low, high = (ci[0], ci[1]) if key == "peak_valence_r" else (None, None)
        rows.append(_row(site, layer, key, value, low, high))
    return rows + curve_rows


def _summary_layer(summary: Mapping[str, Any], key: str) -> int | None:
    """The layer a geometry summary names for ``key`` (``None``: it names none).

    ``peak_valence_layer_keyword_free`` for ``peak_valence_r_keyword_free``, else the longest
    ``<prefix>_layer`` of the key (``crosspaper_peak_layer`` for ``crosspaper_peak_diag_cos``).
    """
    parts = key.split("_")
    candidates = [key.replace("_r_", "_layer_")] if "_r_" in key else []
    candidates += ["_".join(parts[:i]) + "_layer" for i in range(len(parts) - 1, 0, -1)]
    for name in candidates:
        if isinstance(summary.get(name), int) and not isinstance(summary.get(name), bool):
            return summary[name]
    return None


def attribute_rows(folder: Path, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of an attribution job: AtP effect per whole site and layer (and patching's)."""
    table = pd.read_csv(folder / "attribution.csv")
    table = table[table["head"].isna()] if "head" in table else table
    rows: list[dict[str, Any]] = []
    for item in table.itertuples(index=False):
        half = 1.96 * float(item.atp_std) / np.sqrt(max(1, int(item.n_pairs)))
        effect = float(item.atp_effect)
        rows.append(_row(item.site, item.layer, "atp_effect", effect, effect - half, effect + half))
        if pd.notna(item.patch_effect):
            rows.append(_row(item.site, item.layer, "patch_effect", item.patch_effect))
    return rows


def attention_rows(folder: Path, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of an attention job: attention mass per layer and token group (bootstrap CI)."""
    table = pd.read_csv(folder / "attention_mass_layers.csv")
    return [
        _row("attention", item.layer, f"mass_{item.group}_{item.normalise}", item.mean,
             item.ci_low, item.ci_high)
        for item in table.itertuples(index=False)
    ]  # fmt: skip


def steer_rows(folder: Path, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of a steering (readout) job: emotion shares per layer, combo and beta (CI)."""
    table = pd.read_csv(folder / "readout.csv")
    table = table[~table["control"].astype(bool)]
    site = (record.get("settings") or {}).get("site", "resid_post")
    return [
        _row(site, item.layer,
             f"proportion[{item.appraisal_combo}, beta={item.beta:+g}, {item.emotion}]",
             item.proportion, item.ci_low, item.ci_high)
        for item in table.itertuples(index=False)
    ]  # fmt: skip


def circuits_rows(folder: Path, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of a circuits job: the numeric scalars of its summary (module docstring)."""
    return _summary_rows(record.get("summary") or {})


#: Analysis -> the function reshaping a finished job's files into table rows.
RESHAPERS: dict[str, Callable[[Path, Mapping[str, Any]], list[dict[str, Any]]]] = {
    "infer": infer_rows,
    "probe": probe_rows,
    "patch": patch_rows,
    "attribute": attribute_rows,
    "attention": attention_rows,
    "steer": steer_rows,
    "circuits": circuits_rows,
    "geometry": geometry_rows,
}


def build_table(
    out: str | Path, jobs: Sequence[Job], infos: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Rebuild the long table from the job folders under ``out`` (never appended).

    Args:
        out: The sweep's output folder.
        jobs: The sweep's jobs (their order fixes the rows' order).
        infos: Model name -> :class:`~lens_emotion.sweep.jobs.ModelInfo` (for the model
            columns of jobs that never ran).

    Returns:
        The table (:data:`TABLE_COLUMNS`): done jobs' rows, one row per failed job; jobs
        without a record (never run) are left out.
    """
    frames: list[pd.DataFrame] = []
    for job in jobs:
        folder = job.folder(out)
        record = read_record(folder)
        if record is None:
            continue
        model = record.get("model") or (
            infos[job.model].describe() if infos and job.model in infos else {}
        )
        head = {
            "model": job.model,
            "family": model.get("family"),
            "n_layers": model.get("n_layers"),
            "template": job.template,
            "analysis": job.analysis,
            "seed": job.seed,
        }
        status, error = record["status"], record.get("error")
        if status == "done":
            try:
                rows = RESHAPERS[job.analysis](folder, record)
            except (OSError, KeyError, ValueError) as exc:
                status, error, rows = "failed", f"unreadable outputs: {exc}", []
        else:
            rows = []
        if status != "done" or not rows:
            rows = [_row(None, None, "status", None)]
        frame = pd.DataFrame(rows, columns=list(_ROW))
        for name, value in head.items():
            frame[name] = value
        frame["status"], frame["error"] = status, error
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(TABLE_COLUMNS))
    table = pd.concat(frames, ignore_index=True)
    n_layers = pd.to_numeric(table["n_layers"], errors="coerce")
    layer = pd.to_numeric(table["layer"], errors="coerce")
    table["layer"] = layer.astype("Int64")
    table["n_layers"] = n_layers.astype("Int64")
    table["seed"] = table["seed"].astype("int64")
    table["relative_depth"] = (layer / (n_layers - 1).where(n_layers > 1)).round(6)
    return table[list(TABLE_COLUMNS)]


def write_table(table: pd.DataFrame, out: str | Path) -> list[Path]:
    """Write ``results.csv`` and, with pyarrow, ``results.parquet`` (each replaced whole).

    Returns:
        The written paths.
    """
    from lens_emotion.io import write_csv_atomic

    out = Path(out)
    paths = [write_csv_atomic(out / "results.csv", table)]
    try:
        import pyarrow  # noqa: F401
    except ImportError:  # pragma: no cover - pyarrow comes with transformer-lens' datasets
        return paths
    tmp = out / ".results.parquet.tmp"
    table.to_parquet(tmp, index=False)
    tmp.replace(out / "results.parquet")
    paths.append(out / "results.parquet")
    return paths
