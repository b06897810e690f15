"""The Ray runner: one actor per model, so each model loads once and runs its jobs.

Imported only when a sweep asks for Ray (``--ray`` / ``--ray-address``); ``import
lens_emotion`` never imports Ray. Ray is the optional extra ``lens-emotion[distributed]``.

- **Start.** ``--ray`` starts a local Ray with the machine's CPUs, no dashboard, the workers'
  logs kept out of the terminal, workers at normal priority (Ray nices them to 15 by default)
  and a small object store (the jobs pass only file paths and
  small records). ``--ray-address ADDR`` joins an existing cluster. A Ray session the caller
  already started is used as it is.
- **Resources.** On a cluster with GPUs an actor asks for the share of one GPU that
  :func:`lens_emotion.models.estimate_memory` says the model and its largest batch need
  (rounded up to a twentieth, at most one GPU), so small models share a GPU; without GPUs
  it asks for one CPU.
- **Faults.** An actor whose process dies is restarted (its model reloaded) and the job it
  was running is retried, up to :data:`MAX_RETRIES` times; the job resumes from its
  activation-store shards, which live in a folder fixed by the job. A job that still fails
  gets a ``failed`` record; the other jobs go on.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lens_emotion.sweep.config import SweepConfig
from lens_emotion.sweep.errors import SweepError
from lens_emotion.sweep.jobs import ModelInfo, failed_record
from lens_emotion.sweep.runner import ModelWorker

__all__ = ["MAX_RETRIES", "actor_resources", "init_ray", "require_ray", "run_on_ray"]

#: Restarts of a dead actor, and retries of the job it was running.
MAX_RETRIES = 3

#: Environment variable of Ray's worker niceness (Ray's default: 15), set to 0 for a local Ray.
WORKER_NICENESS_ENV = "RAY_worker_niceness"

#: Object store of a local Ray (bytes): records and paths only pass through it.
LOCAL_OBJECT_STORE = 100 * 1024 * 1024


def require_ray() -> Any:
    """The ``ray`` module.

    Raises:
        SweepError: Ray is not installed (the message names the extra to install).
    """
    try:
        import ray
    except ImportError as exc:
        raise SweepError(
            "--ray needs Ray: pip install 'lens-emotion[distributed]' (or pip install ray)."
        ) from exc
    return ray


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Start or join Ray unless a session is already up.

    Args:
        address: A cluster address (``ray://host:10001`` or ``host:6379``); ``None`` starts a
            local Ray.
        num_cpus: CPUs of a local Ray (default: this machine's).

    Returns:
        Whether this call started the session (and so should shut it down).

    Raises:
        SweepError: Ray is not installed, or the cluster cannot be reached.
    """
    ray = require_ray()
    if ray.is_initialized():
        return False
    try:
        if address is not None:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        else:
            # Ray starts its workers at niceness 15; on a shared machine they would then get
            # a fraction of the CPU the in-process runner gets. Run them at normal priority.
            os.environ.setdefault(WORKER_NICENESS_ENV, "0")
            ray.init(
                num_cpus=num_cpus or os.cpu_count() or 1,
                include_dashboard=False,
                log_to_driver=False,
                object_store_memory=LOCAL_OBJECT_STORE,
                configure_logging=False,
            )
    except Exception as exc:  # noqa: BLE001 - one line naming the fix
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise SweepError(f"could not start {where} ({type(exc).__name__}: {exc}).") from exc
    return True


def actor_resources(info: ModelInfo, config: SweepConfig, cluster_gpus: float) -> dict[str, Any]:
    """The resources one model's actor asks for (see the module docstring)."""
    if cluster_gpus <= 0 or config.device == "cpu":
        return {"num_cpus": 1, "num_gpus": 0}
    from lens_emotion.models import estimate_memory

    try:
        import torch

        total = torch.cuda.get_device_properties(0).total_memory
        needed = estimate_memory(info.folder, dtype=config.dtype, device="cuda").needed_bytes
        share = min(1.0, math.ceil(20 * needed / total) / 20)
    except Exception:  # noqa: BLE001 - no GPU here to measure against: a whole GPU
        share = 1.0
    return {"num_cpus": 1, "num_gpus": share}


def run_on_ray(
    config: SweepConfig,
    out: str | Path,
    plans: Sequence[Mapping[str, Any]],
    infos: Mapping[str, ModelInfo],
    *,
    progress: bool = True,
    fault: str | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the planned jobs on the current Ray session, one actor per model.

    Returns:
        The jobs' records, in plan order.
    """
    import torch

    ray = require_ray()
    cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
    actor_cls = ray.remote(max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES)(ModelWorker)
    threads = torch.get_num_threads()
    actors: dict[str, Any] = {}
    pending: dict[Any, Mapping[str, Any]] = {}
    for plan in plans:
        name = plan["job"].model
        if name not in actors:
            resources = actor_resources(infos[name], config, cluster_gpus)
            device = "cuda" if resources["num_gpus"] > 0 else None
            actors[name] = actor_cls.options(**resources).remote(
                config, str(out), infos[name], device, threads, False
            )
        pending[actors[name].run.remote(plan, fault)] = plan
    records: dict[str, dict[str, Any]] = {}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        plan = pending.pop(done[0])
        job = plan["job"]
        try:
            record = ray.get(done[0])
        except Exception as exc:  # noqa: BLE001 - retries spent: the job fails for good
            error = f"worker died {MAX_RETRIES + 1} times ({type(exc).__name__})"
            record = failed_record(job, out, plan["key"], infos[job.model], error)
        if progress:
            print(
                f"[sweep] {job.job_id}: {record['status']} ({record['seconds']} s, ray)",
                file=sys.stderr,
                flush=True,
            )
        records[job.job_id] = record
        if on_record is not None:
            on_record(record)
    for actor in actors.values():
        ray.kill(actor)
    return [records[p["job"].job_id] for p in plans]
