"""The sweep behind ``lens-emotion sweep``: every job of a config, one table, cross-model figures.

:func:`run_sweep` validates the config and checks every model (nothing downloaded) before any
work, skips the jobs that already finished under their current key, runs the others
in-process (default) or on Ray (one actor per model), and then rebuilds ``results.parquet`` /
``results.csv`` from all job folders, draws the cross-model figures and writes the summary::

    OUT/jobs/<job_id>/          each job's workflow files, manifest.json and job.json
    OUT/stores/<job_id>/        activation stores (resumable)
    OUT/results.parquet, .csv   the long table (lens_emotion.sweep.tables)
    OUT/figures/                probe accuracy and patching transfer by relative depth,
                                MHSA peak vs probe plateau, template robustness (.html)
    OUT/summary.md, .html       per model: probe plateau, MHSA and FFN peaks, with CIs
    OUT/sweep.json              config, jobs and their status, what ran this time, timings
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lens_emotion.io import write_json_atomic
from lens_emotion.manifest import package_versions
from lens_emotion.sweep.config import ANALYSES, SweepConfig, check_model_spec, load_config
from lens_emotion.sweep.errors import SweepConfigError, SweepError
from lens_emotion.sweep.jobs import (
    FAULT_ENV,
    Job,
    ModelInfo,
    describe_model,
    expand_jobs,
    failed_record,
    is_finished,
    job_key,
)

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

__all__ = ["SweepOutputs", "check_models", "plan_sweep", "run_sweep"]


@dataclass(frozen=True)
class SweepOutputs:
    """What :func:`run_sweep` did.

    Attributes:
        table: The long table (also ``results.parquet`` / ``results.csv``).
        jobs: Every job of the config.
        computed: Ids of the jobs run this time.
        skipped: Ids of the jobs found finished (not rerun).
        failed: Ids of the jobs that failed for good.
        files: Written files, relative to the output folder.
        figures: The cross-model figures by name.
        runner: ``"in-process"`` or ``"ray"``.
        seconds: Wall time.
    """

    table: pd.DataFrame
    jobs: tuple[Job, ...]
    computed: tuple[str, ...]
    skipped: tuple[str, ...]
    failed: tuple[str, ...]
    files: list[str] = field(default_factory=list)
    figures: dict[str, go.Figure] = field(default_factory=dict)
    runner: str = "in-process"
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Headline numbers: job counts, the runner and the per-model localisation."""
        from lens_emotion.sweep.summary import model_summary

        per_model = model_summary(self.table) if len(self.table) else None
        return {
            "n_jobs": len(self.jobs),
            "computed": len(self.computed),
            "skipped": len(self.skipped),
            "failed": list(self.failed),
            "runner": self.runner,
            "seconds": self.seconds,
            "n_rows": len(self.table),
            "models": [] if per_model is None else per_model.to_dict(orient="records"),
        }


def check_models(config: SweepConfig) -> None:
    """Check that every model of the config can be loaded, without downloading anything.

    Raises:
        SweepConfigError: One line per unreachable model.
    """
    problems = []
    for entry in config.models:
        reason = check_model_spec(entry.spec)
        if reason:
            problems.append(f"models[{entry.name}].spec = {entry.spec!r}: {reason}")
    if problems:
        raise SweepConfigError("unreachable model(s):\n  " + "\n  ".join(problems))


def _load_data(config: SweepConfig) -> tuple[Any, Any]:
    from lens_emotion.errors import LensEmotionError

    needs_sev = any(
        ANALYSES[a].data == "sev" or a == "geometry" for e in config.models for a in e.analyses
    )
    try:
        data = config.data.load()
        sev = config.sev.load() if config.sev is not None and needs_sev else None
    except LensEmotionError as exc:
        raise SweepError(f"the sweep's data could not be read: {exc}") from exc
    return data, sev


def plan_sweep(
    config: SweepConfig, out: str | Path
) -> tuple[list[Job], dict[str, ModelInfo], dict[str, str], dict[str, str], dict[str, str]]:
    """Resolve the models and hash the data: the jobs, model infos, keys, data hashes, errors.

    Returns:
        ``(jobs, infos, keys, data_hashes, model_errors)``; a model that cannot be resolved
        (e.g. a zoo pull that fails) is in ``model_errors`` and its jobs have no key.
    """
    from lens_emotion.errors import LensEmotionError

    data, sev = _load_data(config)
    emotion_hash = data.fingerprint()
    sev_hash = None if sev is None else sev.fingerprint()
    versions = package_versions()
    jobs = expand_jobs(config)
    infos: dict[str, ModelInfo] = {}
    errors: dict[str, str] = {}
    for entry in config.models:
        try:
            infos[entry.name] = describe_model(entry.name, entry.spec)
        except (LensEmotionError, OSError, ValueError) as exc:
            errors[entry.name] = f"model {entry.spec!r} could not be resolved: {exc}"
    keys: dict[str, str] = {}
    hashes: dict[str, str] = {}
    for job in jobs:
        if ANALYSES[job.analysis].data == "sev":
            hashes[job.job_id] = str(sev_hash)
        elif job.analysis == "geometry" and sev_hash is not None:
            hashes[job.job_id] = f"{emotion_hash}+{sev_hash}"
        else:
            hashes[job.job_id] = emotion_hash
        if job.model in infos:
            keys[job.job_id] = job_key(job, infos[job.model], hashes[job.job_id], versions)
    return jobs, infos, keys, hashes, errors


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"[sweep] {text}", file=sys.stderr, flush=True)


def run_sweep(
    config: SweepConfig | str | Path,
    out: str | Path,
    *,
    ray: bool = False,
    ray_address: str | None = None,
    progress: bool = True,
) -> SweepOutputs:
    """Run a sweep: every (model, template, analysis, seed) job, then one table and figures.

    Args:
        config: A :class:`~lens_emotion.sweep.config.SweepConfig` or a TOML file.
        out: Output folder (reused: finished jobs are skipped).
        ray: Run the jobs on Ray (a local ``ray.init()`` unless a session is up).
        ray_address: Run on the Ray cluster at this address (implies ``ray``).
        progress: One line per job on stderr.

    Returns:
        The :class:`SweepOutputs`.

    Raises:
        SweepConfigError: A bad config field or an unreachable model (before any work).
        SweepError: The data cannot be read, or Ray cannot be started.
    """
    from lens_emotion.sweep.figures import sweep_figures
    from lens_emotion.sweep.summary import write_summary
    from lens_emotion.sweep.tables import build_table, write_table
    from lens_emotion.viz.export import write_figure

    started = time.perf_counter()
    if not isinstance(config, SweepConfig):
        config = load_config(config)
    check_models(config)
    use_ray = bool(ray or ray_address)
    if use_ray:  # a missing Ray fails before any work, too
        from lens_emotion.sweep.ray_runner import init_ray, require_ray

        require_ray()

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs, infos, keys, hashes, errors = plan_sweep(config, out)
    for job in jobs:
        if job.model in errors:
            failed_record(job, out, None, None, errors[job.model])
    todo = [
        j
        for j in jobs
        if j.model in infos and not is_finished(j, out, keys[j.job_id], infos[j.model])
    ]
    skipped = [j.job_id for j in jobs if j.model in infos and j not in todo]
    _say(progress, f"{len(jobs)} jobs: {len(skipped)} finished, {len(todo)} to run")
    plans = [{"job": j, "key": keys[j.job_id], "data_sha256": hashes[j.job_id]} for j in todo]
    fault = os.environ.get(FAULT_ENV)
    records: list[dict[str, Any]] = []
    if plans and use_ray:
        from lens_emotion.sweep.ray_runner import run_on_ray

        started_ray = init_ray(ray_address)
        try:
            records = run_on_ray(config, out, plans, infos, progress=progress, fault=fault)
        finally:
            if started_ray:
                import ray as ray_module

                ray_module.shutdown()
    elif plans:
        from lens_emotion.sweep.runner import run_in_process

        records = run_in_process(config, out, plans, infos, progress=progress, fault=fault)

    table = build_table(out, jobs, infos)
    files = [str(p.relative_to(out)) for p in write_table(table, out)]
    figures = sweep_figures(table)
    links: dict[str, str] = {}
    for name, fig in figures.items():
        for path in write_figure(fig, out / "figures" / name, formats=("html",)):
            links[name.replace("_", " ")] = str(path.relative_to(out))
            files.append(str(path.relative_to(out)))
    files += [str(p.relative_to(out)) for p in write_summary(table, out, config.name, links)]
    failed = tuple(j.job_id for j in jobs if _status(out, j) == "failed")
    seconds = round(time.perf_counter() - started, 2)
    write_json_atomic(
        out / "sweep.json",
        {
            "name": config.name,
            "config": dict(config.raw),
            "source": config.source,
            "runner": "ray" if use_ray else "in-process",
            "ray_address": ray_address,
            "models": {n: i.describe() for n, i in infos.items()},
            "model_errors": errors,
            "jobs": {j.job_id: _status(out, j) for j in jobs},
            "computed": [r["job_id"] for r in records],
            "skipped": skipped,
            "failed": list(failed),
            "versions": package_versions(),
            "seconds": seconds,
        },
    )
    files.append("sweep.json")
    _say(progress, f"table: {len(table)} rows from {len(jobs) - len(failed)} jobs ({seconds} s)")
    return SweepOutputs(
        table=table,
        jobs=tuple(jobs),
        computed=tuple(r["job_id"] for r in records),
        skipped=tuple(skipped),
        failed=failed,
        files=files,
        figures=figures,
        runner="ray" if use_ray else "in-process",
        seconds=seconds,
    )


def _status(out: Path, job: Job) -> str:
    from lens_emotion.sweep.jobs import read_record

    record = read_record(job.folder(out))
    return "missing" if record is None else str(record["status"])
