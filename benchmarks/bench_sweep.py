"""Scheduling overhead of the Ray runner against the in-process runner, same sweep, one run.

The sweep: tiny random Llama folders (``lens_emotion.testing.make_tiny_model``) on the built-in
sample rows, ``--templates`` x (infer, probe, patch), one seed; every run starts from an empty
output folder, so every job is computed. Interleaved over ``--repeats``:

* **in-process**: ``run_sweep(config, out)``;
* **Ray, cold**: ``run_sweep(config, out, ray=True)`` with no Ray session up, so it includes
  ``ray.init`` (2 CPUs, no dashboard) and the shutdown;
* **Ray, warm**: the same on a Ray session started beforehand (what a cluster user sees).

With ``--models 1`` a single actor runs the jobs one after another, exactly as the in-process
runner does, so the ratio is the scheduling overhead; with ``--models 2`` the two actors also
run side by side (both CPUs). Wall times include planning, the table, figures and summary.

    OMP_NUM_THREADS=1 python benchmarks/bench_sweep.py --models 1 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from lens_emotion.io import write_json_atomic
from lens_emotion.manifest import package_versions

SMALL = """
[settings.probe]
sites = ["attn_out", "mlp_out", "resid_post"]
n_folds = 2
alpha = 1.0

[settings.patch]
n_pairs = 8
heads = false
ablations = false
control = false
agreeing_only = false
"""


def _config(root: Path, models: list[Path], templates: list[str], rows: int) -> Path:
    lines = [
        'name = "bench"',
        "templates = [" + ", ".join(f'"{t}"' for t in templates) + "]",
        'analyses = ["infer", "probe", "patch"]',
        "seeds = [0]",
        'device = "cpu"',
        "[data]",
        'name = "sample"',
        f"limit = {rows}",
        SMALL,
    ]
    for i, folder in enumerate(models):
        lines += ["[[models]]", f'spec = "{folder}"', f'name = "tiny{i}"', ""]
    path = root / "sweep.toml"
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    """Run the comparison and write ``benchmarks/results/sweep_overhead.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1, help="tiny models (actors)")
    parser.add_argument("--templates", default="paper,emotion-list")
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/sweep_overhead.json")
    args = parser.parse_args()

    import ray

    from lens_emotion.sweep import run_sweep
    from lens_emotion.sweep.ray_runner import init_ray
    from lens_emotion.testing import make_tiny_model

    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    models = [
        make_tiny_model(root / f"tiny{i}", arch="llama", seed=i, n_layers=args.layers)
        for i in range(args.models)
    ]
    config = _config(root, models, args.templates.split(","), args.rows)
    runs: dict[str, list[dict[str, float]]] = {"in_process": [], "ray_cold": [], "ray_warm": []}
    tables = []
    load = [os.getloadavg()[0]]

    def one(kind: str, out: Path, use_ray: bool) -> None:
        started = time.perf_counter()
        outputs = run_sweep(config, out, ray=use_ray, progress=False)
        seconds = time.perf_counter() - started
        job_s = sum(
            float(json.loads((out / "jobs" / j.job_id / "job.json").read_text())["seconds"])
            for j in outputs.jobs
        )
        runs[kind].append({"wall_s": round(seconds, 2), "job_s": round(job_s, 2)})
        runs[kind][-1]["n_jobs"] = len(outputs.jobs)
        tables.append(outputs.table)
        print(f"{kind}: {seconds:.1f} s wall, {job_s:.1f} s in jobs", flush=True)

    for rep in range(args.repeats):
        one("in_process", root / f"inproc{rep}", False)
        one("ray_cold", root / f"cold{rep}", True)
        started = time.perf_counter()
        init_ray(num_cpus=2)
        init_s = time.perf_counter() - started
        one("ray_warm", root / f"warm{rep}", True)
        runs["ray_warm"][-1]["ray_init_s"] = round(init_s, 2)
        ray.shutdown()
    load.append(os.getloadavg()[0])

    identical = all(t.equals(tables[0]) for t in tables[1:])
    med = {k: statistics.median(r["wall_s"] for r in v) for k, v in runs.items()}
    jobs = {k: statistics.median(r["job_s"] for r in v) for k, v in runs.items()}
    result = {
        "what": "lens-emotion sweep: Ray-local vs in-process, same sweep, interleaved repeats",
        "command": "OMP_NUM_THREADS=1 python benchmarks/bench_sweep.py "
        f"--models {args.models} --templates {args.templates} --rows {args.rows} "
        f"--layers {args.layers} --repeats {args.repeats}",
        "sweep": {
            "models": args.models,
            "templates": args.templates.split(","),
            "analyses": ["infer", "probe", "patch"],
            "rows": args.rows,
            "n_layers": args.layers,
            "n_jobs": runs["in_process"][0]["n_jobs"],
        },
        "machine": {"cpus": os.cpu_count(), "load_average_1min": load},
        "runs": runs,
        "median_wall_s": med,
        "median_job_s": jobs,
        "ratio_ray_cold_to_in_process": round(med["ray_cold"] / med["in_process"], 3),
        "ratio_ray_warm_to_in_process": round(med["ray_warm"] / med["in_process"], 3),
        "overhead_ray_warm_pct": round(100 * (med["ray_warm"] / med["in_process"] - 1), 1),
        "tables_identical": identical,
        "versions": package_versions() | {"ray": ray.__version__},
    }
    write_json_atomic(Path(args.out), result)
    print(
        {
            k: result[k]
            for k in (
                "median_wall_s",
                "ratio_ray_cold_to_in_process",
                "ratio_ray_warm_to_in_process",
                "tables_identical",
            )
        }
    )


if __name__ == "__main__":
    main()
