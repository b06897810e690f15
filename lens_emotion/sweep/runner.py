"""The in-process runner: one model at a time, its jobs one after another (the default).

:class:`ModelWorker` holds one model and runs its jobs; the in-process runner makes one per
model in turn, and the Ray runner (:mod:`.ray_runner`) makes the same class a Ray actor, so
both run exactly the same code per job.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lens_emotion.sweep.config import ANALYSES, SweepConfig
from lens_emotion.sweep.jobs import Job, ModelInfo, failed_record, run_job

__all__ = ["ModelWorker", "run_in_process"]


class ModelWorker:
    """Loads one model (once, on its first job) and runs that model's jobs.

    Args:
        config: The sweep config (data specs, device and dtype).
        out: The sweep's output folder.
        info: The model's :class:`~lens_emotion.sweep.jobs.ModelInfo`.
        device: Device to load the model on (``None``: the config's).
        num_threads: Torch threads for the jobs (``None``: leave torch's setting).
        progress: Show the workflows' progress bars.
    """

    def __init__(
        self,
        config: SweepConfig,
        out: str | Path,
        info: ModelInfo,
        device: str | None = None,
        num_threads: int | None = None,
        progress: bool = False,
    ) -> None:
        self.config = config
        self.out = Path(out)
        self.info = info
        self.device = device or config.device
        self.num_threads = num_threads
        self.progress = progress
        self._model: Any = None
        self._data: dict[str, Any] = {}
        self._load_error: str | None = None

    def _ensure_loaded(self) -> None:
        import torch

        from lens_emotion.models import load_model

        if self.num_threads is not None and torch.get_num_threads() != self.num_threads:
            torch.set_num_threads(self.num_threads)
        if self._model is not None or self._load_error is not None:
            return
        try:
            self._model = load_model(self.info.folder, device=self.device, dtype=self.config.dtype)
        except Exception as exc:  # noqa: BLE001 - every job of this model fails, others go on
            self._load_error = f"model {self.info.spec!r} failed to load: {exc}"

    def _dataset(self, kind: str) -> Any:
        if kind not in self._data:
            spec = self.config.data if kind == "emotion" else self.config.sev
            self._data[kind] = None if spec is None else spec.load()
        return self._data[kind]

    def run(self, plan: Mapping[str, Any], fault: str | None = None) -> dict[str, Any]:
        """Run one planned job; returns its ``job.json`` record (``done`` or ``failed``)."""
        job: Job = plan["job"]
        self._ensure_loaded()
        if self._load_error is not None:
            return failed_record(job, self.out, plan["key"], self.info, self._load_error)
        data = self._dataset("emotion")
        sev = (
            self._dataset("sev")
            if ANALYSES[job.analysis].data == "sev" or (job.analysis == "geometry")
            else None
        )
        return run_job(
            self._model,
            data,
            sev,
            job,
            self.out,
            plan["key"],
            self.info,
            plan["data_sha256"],
            progress=self.progress,
            fault=fault,
        )

    def close(self) -> None:
        """Drop the model (frees its memory before the next model loads)."""
        from lens_emotion.models import release_freed_memory

        self._model = None
        release_freed_memory()


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"[sweep] {text}", file=sys.stderr, flush=True)


def run_in_process(
    config: SweepConfig,
    out: str | Path,
    plans: Sequence[Mapping[str, Any]],
    infos: Mapping[str, ModelInfo],
    *,
    progress: bool = True,
    fault: str | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the planned jobs here, model by model (each model loaded once).

    Returns:
        The jobs' records, in plan order.
    """
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for plan in plans:
        by_model.setdefault(plan["job"].model, []).append(plan)
    records: dict[str, dict[str, Any]] = {}
    for name, model_plans in by_model.items():
        worker = ModelWorker(config, out, infos[name], progress=progress)
        for plan in model_plans:
            _say(progress, f"{plan['job'].job_id}: running")
            record = worker.run(plan, fault=fault)
            _say(progress, f"{plan['job'].job_id}: {record['status']} ({record['seconds']} s)")
            records[plan["job"].job_id] = record
            if on_record is not None:
                on_record(record)
        worker.close()
    return [records[p["job"].job_id] for p in plans]
