"""Golden outputs: run every analysis command at small sizes on SmolLM2 and compare two runs.

Used to show that a refactor changes no behaviour (issue: one shape for every analysis)::

    python benchmarks/golden_outputs.py record /tmp/golden-before
    ... move code ...
    python benchmarks/golden_outputs.py record /tmp/golden-after
    python benchmarks/golden_outputs.py compare /tmp/golden-before /tmp/golden-after \
        --json benchmarks/results/golden_compare.json

``record`` runs ``infer``, ``probe``, ``patch``, ``attribute``, ``steer`` (readout only) and
``circuits`` (no generation) through the CLI with fixed seeds on real crowd-enVENT / SEV rows
(``$LENS_EMOTION_DATA``). ``compare`` checks every CSV: identical bytes, or equal numbers to
1e-6 (absolute, and relative for large values) where floating-point order may change.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

RUNS: dict[str, list[str]] = {
    "infer": ["infer", "--limit", "65", "--seed", "0"],
    "probe": ["probe", "--limit", "130", "--seed", "0", "--folds", "3"],
    "patch": ["patch", "--limit", "130", "--pairs", "4", "--seed", "0", "--formats", "html"],
    "attribute": ["attribute", "--limit", "130", "--pairs", "4", "--seed", "0"],
    "steer": [
        "steer", "--appraisal", "pleasantness", "--layer", "15", "--betas", "-8,0,8",
        "--n", "6", "--n-probe", "130", "--no-generate", "--no-theory", "--seed", "0",
    ],
    "circuits": [
        "circuits", "--n-scenarios", "3", "--n-eval-scenarios", "2", "--n-ablation-prompts", "2",
        "--max-k-heads", "4", "--max-k-neurons", "8", "--n-random", "1", "--check-prompts", "1",
        "--no-generate", "--seed", "0",
    ],
}  # fmt: skip

#: Columns that hold wall-clock times or paths, not results.
VOLATILE = ("seconds", "_s", "time", "path", "created")


def record(out: Path, only: list[str] | None) -> dict[str, float]:
    """Run each command into ``out/<name>``; returns seconds per command."""
    from lens_emotion.cli import main

    timings = {}
    for name, argv in RUNS.items():
        if only and name not in only:
            continue
        started = time.perf_counter()
        code = main([*argv, "--quiet", "--out", str(out / name)])
        timings[name] = round(time.perf_counter() - started, 1)
        print(f"{name}: exit {code} in {timings[name]} s", file=sys.stderr)
        if code != 0:
            raise SystemExit(f"{name} failed (exit {code})")
    return timings


def _compare_frames(a: pd.DataFrame, b: pd.DataFrame, tol: float) -> str | None:
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return f"shape/columns differ: {a.shape} {list(a.columns)[:6]} vs {b.shape}"
    for col in a.columns:
        if any(v in col for v in VOLATILE):
            continue
        x, y = a[col], b[col]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            xv, yv = x.to_numpy(float), y.to_numpy(float)
            both_nan = np.isnan(xv) & np.isnan(yv)
            diff = np.abs(xv - yv)
            bad = ~both_nan & ~(diff <= tol * np.maximum(1.0, np.abs(xv)))
            if bad.any():
                return f"column {col}: max |diff| {np.nanmax(diff[bad]):.3g}"
        elif not x.astype(str).equals(y.astype(str)):
            return f"column {col}: text differs"
    return None


def compare(before: Path, after: Path, tol: float) -> dict[str, object]:
    """Compare every CSV under ``before`` with its twin under ``after``."""
    report: dict[str, object] = {
        "identical": [],
        "within_tolerance": [],
        "differ": {},
        "missing": [],
    }
    for path in sorted(before.rglob("*.csv")):
        rel = path.relative_to(before)
        twin = after / rel
        if not twin.is_file():
            report["missing"].append(str(rel))
            continue
        if path.read_bytes() == twin.read_bytes():
            report["identical"].append(str(rel))
            continue
        problem = _compare_frames(pd.read_csv(path), pd.read_csv(twin), tol)
        if problem is None:
            report["within_tolerance"].append(str(rel))
        else:
            report["differ"][str(rel)] = problem
    report["n_files"] = len(list(before.rglob("*.csv")))
    report["tolerance"] = tol
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("out", type=Path)
    rec.add_argument("--only", default=None, help="comma-separated subset of " + ",".join(RUNS))
    cmp_ = sub.add_parser("compare")
    cmp_.add_argument("before", type=Path)
    cmp_.add_argument("after", type=Path)
    cmp_.add_argument("--tol", type=float, default=1e-6)
    cmp_.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.cmd == "record":
        only = args.only.split(",") if args.only else None
        timings = record(args.out, only)
        (args.out / "timings.json").write_text(json.dumps(timings, indent=2))
        return
    report = compare(args.before, args.after, args.tol)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if report["differ"] or report["missing"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
