"""A sweep's results summary: per model, where the emotion signal settles and where patching peaks.

:func:`localisation` reads the long table into one row per (model, template):

- **probe plateau**: the first ``resid_post`` layer whose probe accuracy (mean over seeds)
  reaches 95% of that site's best; its interval runs from the first layer whose accuracy CI
  *reaches* 95% of the best (``ci_high``) to the first whose CI lies wholly above it
  (``ci_low``).
- **MHSA / FFN patching peak**: the center layer with the highest transfer rate at
  ``attn_out`` / ``mlp_out``; its interval spans every layer whose transfer CI overlaps the
  peak's (layers the pairs cannot tell apart from the peak); the transfer at the peak carries
  its bootstrap CI.
- **FFN later**: whether the FFN peak lies deeper than the MHSA peak.

:func:`model_summary` condenses that per model over templates (median depths, their range,
and in how many templates the FFN peak comes later); :func:`write_summary` writes
``summary.md`` and ``summary.html``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lens_emotion.io import write_text_atomic

#: One summary section: (title, text, header, rows).
Section = tuple[str, str, list[str], list[list[str]]]

__all__ = ["PLATEAU_FRACTION", "localisation", "model_summary", "write_summary"]

#: Share of the best probe accuracy the plateau layer reaches.
PLATEAU_FRACTION = 0.95

_LOC_COLUMNS = (
    "model", "family", "n_layers", "template",
    "probe_best_accuracy", "probe_best_ci_low", "probe_best_ci_high",
    "probe_plateau_layer", "probe_plateau_depth", "probe_plateau_depth_low",
    "probe_plateau_depth_high",
    "attn_peak_layer", "attn_peak_depth", "attn_peak_depth_low", "attn_peak_depth_high",
    "attn_peak_transfer", "attn_peak_ci_low", "attn_peak_ci_high",
    "mlp_peak_layer", "mlp_peak_depth", "mlp_peak_depth_low", "mlp_peak_depth_high",
    "mlp_peak_transfer", "mlp_peak_ci_low", "mlp_peak_ci_high",
    "ffn_later",
)  # fmt: skip


def _mean_curve(rows: pd.DataFrame) -> pd.DataFrame:
    return (
        rows.groupby("layer", sort=True)[["value", "ci_low", "ci_high"]]
        .mean()
        .reset_index()
        .sort_values("layer")
    )


def _plateau(curve: pd.DataFrame, depth: float) -> dict[str, Any]:
    if curve.empty:
        return {}
    best = curve.loc[curve["value"].idxmax()]
    target = PLATEAU_FRACTION * float(best["value"])

    def first(mask: pd.Series) -> float:
        hit = curve.loc[mask, "layer"]
        return float(hit.iloc[0]) if len(hit) else float("nan")

    layer = first(curve["value"] >= target)
    low = first(curve["ci_high"].fillna(curve["value"]) >= target)
    high = first(curve["ci_low"].fillna(curve["value"]) >= target)
    if np.isnan(high):
        high = layer
    return {
        "probe_best_accuracy": float(best["value"]),
        "probe_best_ci_low": float(best["ci_low"]),
        "probe_best_ci_high": float(best["ci_high"]),
        "probe_plateau_layer": int(layer),
        "probe_plateau_depth": layer * depth,
        "probe_plateau_depth_low": min(low, layer) * depth,
        "probe_plateau_depth_high": max(high, layer) * depth,
    }


def _peak(curve: pd.DataFrame, depth: float, prefix: str) -> dict[str, Any]:
    if curve.empty:
        return {}
    best = curve.loc[curve["value"].idxmax()]
    floor = best["ci_low"] if pd.notna(best["ci_low"]) else best["value"]
    near = curve.loc[curve["ci_high"].fillna(curve["value"]) >= floor, "layer"]
    return {
        f"{prefix}_peak_layer": int(best["layer"]),
        f"{prefix}_peak_depth": float(best["layer"]) * depth,
        f"{prefix}_peak_depth_low": float(near.min()) * depth,
        f"{prefix}_peak_depth_high": float(near.max()) * depth,
        f"{prefix}_peak_transfer": float(best["value"]),
        f"{prefix}_peak_ci_low": float(best["ci_low"]),
        f"{prefix}_peak_ci_high": float(best["ci_high"]),
    }


def localisation(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, template): probe plateau, MHSA and FFN patching peaks (module doc).

    Args:
        table: A sweep's long table.

    Returns:
        Columns ``model, family, n_layers, template``, the probe plateau (layer, depth and
        its interval, best accuracy with CI), the ``attn``/``mlp`` peaks (layer, depth and
        interval, transfer with CI) and ``ffn_later``; missing parts are NaN.
    """
    done = table[(table["status"] == "done") & table["layer"].notna()]
    rows = []
    for (model, template), group in done.groupby(["model", "template"], sort=False):
        n_layers = int(group["n_layers"].iloc[0])
        depth = 1.0 / max(1, n_layers - 1)
        row: dict[str, Any] = {
            "model": model,
            "family": group["family"].iloc[0],
            "n_layers": n_layers,
            "template": template,
        }
        probe = group[
            (group["analysis"] == "probe")
            & (group["metric"] == "accuracy")
            & (group["site"] == "resid_post")
        ]
        row |= _plateau(_mean_curve(probe), depth)
        patch = group[(group["analysis"] == "patch") & (group["metric"] == "transfer")]
        for site, prefix in (("attn_out", "attn"), ("mlp_out", "mlp")):
            row |= _peak(_mean_curve(patch[patch["site"] == site]), depth, prefix)
        if "attn_peak_layer" in row and "mlp_peak_layer" in row:
            row["ffn_later"] = bool(row["mlp_peak_layer"] > row["attn_peak_layer"])
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in _LOC_COLUMNS:
        if column not in frame:
            frame[column] = np.nan
    return frame[list(_LOC_COLUMNS)]


def model_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per model, over templates: median depths with their range, FFN-later count, failures.

    Returns:
        One row per model: ``model, family, n_layers, n_templates``, for each of
        ``probe_plateau``, ``attn_peak``, ``mlp_peak`` the median depth and the lowest
        interval end / highest interval end over templates (``_low`` / ``_high``), the best
        probe accuracy and peak transfers (medians), ``ffn_later`` as ``"k/n"``, and
        ``n_failed`` jobs.
    """
    loc = localisation(table)
    rows = []
    for model in dict.fromkeys(table["model"]):
        group = loc[loc["model"] == model]
        jobs = table[table["model"] == model]
        failed = jobs[jobs["status"] != "done"][["template", "analysis", "seed"]]
        row: dict[str, Any] = {
            "model": model,
            "family": next(iter(jobs["family"].dropna()), None),
            "n_layers": next(iter(jobs["n_layers"].dropna()), None),
            "n_templates": int(group["template"].nunique()),
        }
        for key in ("probe_plateau", "attn_peak", "mlp_peak"):
            row[f"{key}_depth"] = group[f"{key}_depth"].median()
            row[f"{key}_depth_low"] = group[f"{key}_depth_low"].min()
            row[f"{key}_depth_high"] = group[f"{key}_depth_high"].max()
        row["probe_best_accuracy"] = group["probe_best_accuracy"].median()
        row["attn_peak_transfer"] = group["attn_peak_transfer"].median()
        row["mlp_peak_transfer"] = group["mlp_peak_transfer"].median()
        known = group["ffn_later"].dropna()
        row["ffn_later"] = f"{int(known.astype(bool).sum())}/{len(known)}" if len(known) else ""
        row["n_failed"] = int(len(failed.drop_duplicates()))
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _span(row: Mapping[str, Any], key: str) -> str:
    main = _fmt(row.get(f"{key}_depth"))
    if main == "–":
        return main
    return f"{main} [{_fmt(row.get(f'{key}_depth_low'))}, {_fmt(row.get(f'{key}_depth_high'))}]"


def _ci(row: Mapping[str, Any], value: str, low: str, high: str) -> str:
    main = _fmt(row.get(value), 3)
    if main == "–":
        return main
    return f"{main} [{_fmt(row.get(low), 3)}, {_fmt(row.get(high), 3)}]"


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _sections(table: pd.DataFrame, name: str) -> list[Section]:
    """(title, text, header, rows) of each summary section."""
    sections: list[Section] = []
    if {"probe", "patch"} & set(table["analysis"]):
        sections += _localisation_sections(table)
    sections += _analysis_sections(table)
    return sections


def _localisation_sections(
    table: pd.DataFrame,
) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """The per-model and per-template probe plateau and patching peaks."""
    per_model = model_summary(table)
    loc = localisation(table)
    sections = []
    rows = [
        [
            str(r["model"]), _fmt(r["family"]), _fmt(r["n_layers"]), _span(r, "probe_plateau"),
            _span(r, "attn_peak"), _span(r, "mlp_peak"), r["ffn_later"] or "–",
            str(r["n_failed"]),
        ]
        for r in per_model.to_dict(orient="records")
    ]  # fmt: skip
    sections.append(
        (
            "Per model",
            "Relative depths (layer / (n_layers − 1)): the median over templates, in brackets "
            "the widest interval over templates (probe plateau: first layer whose accuracy "
            f"reaches {PLATEAU_FRACTION:.0%} of the best, interval from the accuracy CIs; "
            "patching peak: layer of the highest transfer, interval over the layers whose "
            "transfer CI overlaps the peak's). *FFN later*: templates where the FFN (mlp_out) "
            "patching peak lies deeper than the MHSA (attn_out) peak.",
            ["model", "family", "layers", "probe plateau", "MHSA peak", "FFN peak",
             "FFN later", "failed jobs"],
            rows,
        )
    )  # fmt: skip
    rows = [
        [
            str(r["model"]), str(r["template"]),
            _fmt(r["probe_plateau_layer"]) + " / " + _fmt(r["probe_plateau_depth"]),
            _ci(r, "probe_best_accuracy", "probe_best_ci_low", "probe_best_ci_high"),
            _fmt(r["attn_peak_layer"]) + " / " + _fmt(r["attn_peak_depth"]),
            _ci(r, "attn_peak_transfer", "attn_peak_ci_low", "attn_peak_ci_high"),
            _fmt(r["mlp_peak_layer"]) + " / " + _fmt(r["mlp_peak_depth"]),
            _ci(r, "mlp_peak_transfer", "mlp_peak_ci_low", "mlp_peak_ci_high"),
            _fmt(r["ffn_later"]),
        ]
        for r in loc.to_dict(orient="records")
    ]  # fmt: skip
    sections.append(
        (
            "Per model and template",
            "Layer / relative depth; accuracies and transfer rates with 95% CIs (probe: "
            "t-interval over folds; patching: bootstrap over pairs).",
            ["model", "template", "probe plateau", "best probe acc.", "MHSA peak",
             "MHSA transfer", "FFN peak", "FFN transfer", "FFN later"],
            rows,
        )
    )  # fmt: skip
    return sections


def _metric(rows: pd.DataFrame, metric: str) -> dict[str, Any]:
    """The first row of ``metric`` in one job's rows, as a dict (empty if it has none)."""
    found = rows[rows["metric"] == metric]
    return found.iloc[0].to_dict() if len(found) else {}


def _at(row: Mapping[str, Any], digits: int = 3, ci: bool = False) -> str:
    """``value [low, high] (layer L)`` of one table row (``–`` if there is none)."""
    if not row:
        return "–"
    text = _ci(row, "value", "ci_low", "ci_high") if ci else _fmt(row.get("value"), digits)
    layer = row.get("layer")
    return text if layer is None or pd.isna(layer) else f"{text} (L{int(layer)})"


def _check(job: pd.DataFrame) -> str:
    """The decomposition check as ``max |diff| of max |contribution|``."""
    diff = _metric(job, "head_check.max_abs_difference").get("value")
    scale = _metric(job, "head_check.max_abs_contribution").get("value")
    if diff is None or pd.isna(diff):
        return "–"
    return f"{diff:.2g}" + ("" if scale is None or pd.isna(scale) else f" of {scale:.2g}")


def _analysis_sections(table: pd.DataFrame) -> list[Section]:
    """Inference, geometry, circuits and failed-job sections (those with rows)."""
    sections = []
    infer = table[(table["analysis"] == "infer") & (table["metric"] == "accuracy")]
    if len(infer):
        rows = [
            [str(r["model"]), str(r["template"]), str(r["seed"]),
             _ci(r, "value", "ci_low", "ci_high")]
            for r in infer.to_dict(orient="records")
        ]  # fmt: skip
        sections.append(
            ("Label-logit inference", "Accuracy with a bootstrap 95% CI over texts.",
             ["model", "template", "seed", "accuracy"], rows)
        )  # fmt: skip
    keys = ["model", "template", "seed"]
    geometry = table[(table["analysis"] == "geometry") & (table["status"] == "done")]
    rows = []
    for (model, template, _), job in geometry.groupby(keys, sort=False):
        peak = _metric(job, "peak_valence_r")
        cross = _metric(job, "crosspaper_peak_diag_cos")
        beating = _metric(job, "crosspaper_layers_beating_permutation")
        n = _metric(job, "crosspaper_n_layers")
        rows.append(
            [str(model), str(template), _at(peak, ci=True), _fmt(peak.get("relative_depth")),
             _at(_metric(job, "peak_valence_r_keyword_free")),
             _at(_metric(job, "peak_arousal_r")), _at(_metric(job, "peak_rsa_rho")),
             _at(cross) + (f"; {int(beating['value'])} of {int(n['value'])} layers beat the"
                           " permutation baseline" if beating and n else "")]
        )  # fmt: skip
    if rows:
        sections.append(
            ("Emotion geometry",
             "Peaks over layers (resid_post, mean vectors): r(PC1, human valence) with its "
             "bootstrap CI and relative depth, the same on keyword-free rows, r(PC2, arousal), "
             "the RSA against the appraisal profiles, and the matched crowd-enVENT/SEV cosine "
             "with the layers where it beats mismatched emotions (p < 0.05). A peak is the "
             "largest of n_layers correlated estimates.",
             ["model", "template", "valence r", "depth", "keyword-free", "arousal r", "RSA rho",
              "cross-paper cosine"], rows)
        )  # fmt: skip
    circuits = table[(table["analysis"] == "circuits") & (table["status"] == "done")]
    rows = []
    for (model, _, seed), job in circuits.groupby(keys, sort=False):
        acc, chance = _metric(job, "directions.heldout_accuracy"), _metric(job, "directions.chance")
        drops = []
        for kind in ("head", "neuron"):
            prefix = f"ablation.{kind}.k"
            ks = sorted(int(m.split(".")[2][1:]) for m in job["metric"] if m.startswith(prefix)
                        and m.endswith(".rel_drop"))  # fmt: skip
            if ks:  # heads at k = 8 (or the nearest below), neurons at the largest k
                k = max([x for x in ks if x <= 8] or ks[:1]) if kind == "head" else ks[-1]
                own = _metric(job, f"{prefix}{k}.rel_drop").get("value")
                rand = _metric(job, f"{prefix}{k}.random_rel_drop").get("value")
                drops.append(f"{kind} k={k}: {_fmt(own, 2)} vs {_fmt(rand, 2)}")
        rows.append(
            [str(model), str(seed), _at(acc) + f" (chance {_fmt(chance.get('value'), 3)})",
             _at(_metric(job, "directions_described.heldout_accuracy")),
             "; ".join(drops) or "–",
             _fmt(_metric(job, "total_effect.head.spearman").get("value")),
             _check(job)]
        )  # fmt: skip
    if rows:
        sections.append(
            ("Emotion circuits (SEV)",
             "Best held-out projection accuracy of the context-agnostic directions (and on "
             "prompts that describe the emotion without naming it); the score drop, as a share "
             "of the unablated score, when the top-k heads / neurons are ablated vs k random "
             "ones; Spearman between direct "
             "and total effects of the top heads; the decomposition-vs-ablation consistency "
             "check (max |diff| of the largest contribution; exact by algebra only without a "
             "post-attention norm).",
             ["model", "seed", "direction accuracy", "described", "ablation drop vs random",
              "direct~total (heads)", "head check"], rows)
        )  # fmt: skip
    failed = table[table["status"] != "done"]
    if len(failed):
        rows = [
            [str(r["model"]), str(r["template"]), str(r["analysis"]), str(r["seed"]),
             str(r["error"])]
            for r in failed.drop_duplicates(["model", "template", "analysis", "seed"]).to_dict(
                orient="records"
            )
        ]  # fmt: skip
        sections.append(
            ("Failed jobs", "These jobs failed for good; the others ran.",
             ["model", "template", "analysis", "seed", "error"], rows)
        )  # fmt: skip
    return sections


def write_summary(
    table: pd.DataFrame, out: str | Path, name: str, figures: Mapping[str, str] | None = None
) -> list[Path]:
    """Write ``summary.md`` and ``summary.html`` for a sweep's table.

    Args:
        table: The long table.
        out: The sweep's output folder.
        name: The sweep's name (the title).
        figures: Figure title -> path relative to ``out`` (linked from both files).

    Returns:
        The two paths.
    """
    out = Path(out)
    sections = _sections(table, name)
    md = [f"# Sweep `{name}`: results summary", ""]
    page = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Sweep {html.escape(name)}</title>",
        "<style>body{font-family:Arial,Helvetica,sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:.3em .6em;text-align:left}</style></head><body>",
        f"<h1>Sweep {html.escape(name)}: results summary</h1>",
    ]
    for title, text, header, rows in sections:
        md += [f"## {title}", "", text, "", _markdown_table(header, rows), ""]
        page += [f"<h2>{html.escape(title)}</h2>", f"<p>{html.escape(text)}</p>", "<table>"]
        page.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        for r in rows:
            page.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
        page.append("</table>")
    if figures:
        md += ["## Figures", ""] + [f"- [{t}]({p})" for t, p in figures.items()] + [""]
        page.append("<h2>Figures</h2><ul>")
        page += [
            f"<li><a href='{html.escape(p)}'>{html.escape(t)}</a></li>" for t, p in figures.items()
        ]
        page.append("</ul>")
    page.append("</body></html>")
    return [
        write_text_atomic(out / "summary.md", "\n".join(md)),
        write_text_atomic(out / "summary.html", "\n".join(page)),
    ]
