"""Wall time of the README's main command, ``lens-emotion demo``, at each size.

Runs the demo as a user would (a fresh ``lens-emotion demo`` process per mode, one after the
other, so they do not share the CPU) and records the process wall time, the per-step timings
the demo writes into its manifest, and whether every step ran:

  * ``quick``: ``--quick`` on the built-in sample sets (target: under 3 minutes);
  * ``default``: default sizes on the built-in sample sets (target: under 15 minutes);
  * ``data``: default sizes on the real crowd-enVENT CSV and SEV (``--data-path``).

    python benchmarks/bench_demo.py                        # all three (~25 min on 2 cores)
    python benchmarks/bench_demo.py --modes quick          # only the smoke run
    python benchmarks/bench_demo.py --data-path ../shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lens_emotion.data import default_data_root
from lens_emotion.io import write_json_atomic
from lens_emotion.manifest import run_manifest

TARGETS_S = {"quick": 180.0, "default": 900.0, "data": 900.0}


def _run_mode(mode: str, data_path: Path | None, seed: int, keep: Path | None) -> dict:
    """Run one demo process and read its manifest."""
    out = Path(tempfile.mkdtemp(prefix=f"bench-demo-{mode}-"))
    args = ["demo", "--out", str(out), "--seed", str(seed)]
    if mode == "quick":
        args.append("--quick")
    if mode == "data":
        if data_path is None:
            raise SystemExit("mode 'data' needs --data-path (the folder with crowd-envent/, sev/)")
        args += ["--data-path", str(data_path)]
    command = [sys.executable, "-m", "lens_emotion.cli", *args]
    print(f"[bench] {mode}: {' '.join(command)}", file=sys.stderr)
    start = time.perf_counter()
    done = subprocess.run(command, env=os.environ.copy(), check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"demo ({mode}) exited with {done.returncode}; output kept in {out}")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    page = out / "index.html"
    result = {
        "process_wall_s": round(wall, 1),
        "demo_total_s": round(manifest["timings_s"]["total"], 1),
        "steps_s": {k: round(v, 1) for k, v in manifest["timings_s"].items()},
        "skipped": manifest["skipped"],
        "target_s": TARGETS_S[mode],
        "within_target": wall < TARGETS_S[mode],
        "index_html_mb": round(page.stat().st_size / 1e6, 1),
        "dataset": manifest["data"],
    }
    if keep is not None:
        shutil.copytree(out, keep / mode, dirs_exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write ``benchmarks/results/demo.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="quick,default,data", help="comma-separated")
    parser.add_argument("--data-path", type=Path, default=None, help="default: the data root")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="copy each demo output here")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "demo.json")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(TARGETS_S))
    if unknown:
        parser.error(f"unknown modes {unknown}; choose from {sorted(TARGETS_S)}")
    data_path = args.data_path
    if data_path is None and "data" in modes:
        data_path = default_data_root()
    results = {mode: _run_mode(mode, data_path, args.seed, args.keep) for mode in modes}
    record = {
        "cpu_count": os.cpu_count(),
        "results": results,
        "manifest": run_manifest(seed=args.seed, command="benchmarks/bench_demo.py"),
    }
    write_json_atomic(args.out, record)
    for mode, r in results.items():
        verdict = "within" if r["within_target"] else "OVER"
        print(f"{mode:8s} {r['process_wall_s']:7.1f} s  ({verdict} {r['target_s']:.0f} s target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
