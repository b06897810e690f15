"""``lens-emotion sweep``: many models x templates x analyses x seeds, one table, one summary.

The config (``--config``, TOML; see :mod:`lens_emotion.sweep.config`) is validated and every
model checked before any model loads or any job starts. Jobs run in-process by default,
``--ray`` runs them on a local Ray and ``--ray-address ADDR`` on an existing cluster.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lens_emotion.cli.common import add_progress_args

HELP = (
    "run a sweep of analyses over models, templates and seeds from a TOML config; writes one "
    "long results table, cross-model figures and a summary"
)


def _config_path(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(
            f"no config file at {path}; pass a TOML file such as configs/sweep-zoo.toml"
        )
    return path


def _out_dir(text: str) -> Path:
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file; pass a folder for the results")
    return path


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``sweep``."""
    p = sub.add_parser("sweep", help=HELP, description=HELP)
    p.add_argument("--config", required=True, type=_config_path, help="the sweep's TOML file")
    p.add_argument(
        "--out",
        required=True,
        type=_out_dir,
        help="output folder; rerunning into it skips the jobs that already finished",
    )
    p.add_argument(
        "--ray",
        action="store_true",
        help="run the jobs on a local Ray (one actor per model); needs "
        "pip install 'lens-emotion[distributed]'",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="run the jobs on the Ray cluster at ADDR (e.g. auto or host:6379 from a cluster "
        "node; ray://host:10001 needs pip install 'ray[client]'); implies --ray",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the config, check the models and list the jobs (finished or to run), "
        "without running any",
    )
    add_progress_args(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``sweep``; prints the job counts and, per model, the localisation summary."""
    from lens_emotion.sweep import load_config, run_sweep

    config = load_config(args.config)  # SweepConfigError: exit 2 before any work
    if args.dry_run:
        return _dry_run(config, args.out)
    outputs = run_sweep(
        config,
        args.out,
        ray=args.ray,
        ray_address=args.ray_address,
        progress=not args.quiet,
    )
    summary = outputs.summary()
    print(
        f"sweep {config.name}: {summary['n_jobs']} jobs ({summary['computed']} run, "
        f"{summary['skipped']} already finished, {len(summary['failed'])} failed) on "
        f"{summary['runner']}; {summary['n_rows']} rows in {args.out / 'results.parquet'}"
    )
    localised = {"probe", "patch"} & set(outputs.table.get("analysis", ()))
    for row in summary["models"] if localised else ():
        print(
            f"  {row['model']}: probe plateau depth {_fmt(row['probe_plateau_depth'])}, "
            f"MHSA peak {_fmt(row['attn_peak_depth'])}, FFN peak {_fmt(row['mlp_peak_depth'])}"
            f", FFN later in {row['ffn_later'] or 'n/a'} templates"
        )
    for job_id in summary["failed"]:
        print(f"  failed: {job_id} (see {args.out / 'summary.md'})")
    print(f"summary: {args.out / 'summary.md'}")
    return 0


def _fmt(value: Any) -> str:
    return "n/a" if value is None or value != value else f"{value:.2f}"


def _dry_run(config: Any, out: Path) -> int:
    from lens_emotion.sweep import check_models
    from lens_emotion.sweep.jobs import is_finished
    from lens_emotion.sweep.workflow import plan_sweep

    check_models(config)
    jobs, infos, keys, _, errors = plan_sweep(config, out)
    for job in jobs:
        if job.model in errors:
            state = "model error"
        elif is_finished(job, out, keys[job.job_id], infos[job.model]):
            state = "finished"
        else:
            state = "to run"
        print(f"{job.job_id}: {state}")
    for name, error in errors.items():
        print(f"  {name}: {error}")
    return 0
