"""Sweep jobs: one (model, template, analysis, seed) run through the analysis's own workflow.

Output layout under the sweep's folder ``OUT``::

    jobs/<job_id>/            the workflow's own files and manifest.json, plus job.json
    stores/<job_id>/          the job's activation store (analyses with one), kept apart so
                              a retried job resumes from its finished shards

``job_id`` is ``<model>__<template>__<analysis>__s<seed>``. ``job.json`` is written last, so
a job folder without it is unfinished. It records the job's **key**: a hash of the model's
weight hash, the data hash, the settings and the package versions. A job is *finished* when
its ``job.json`` says ``done`` with the current key and its workflow manifest agrees (same
weight hash, versions and settings); any changed field changes the key of exactly the jobs it
affects, and only those are recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lens_emotion.io import write_json_atomic
from lens_emotion.manifest import package_versions, settings_dict
from lens_emotion.sweep.config import ANALYSES, SweepConfig, build_settings

__all__ = [
    "FAULT_ENV",
    "Job",
    "ModelInfo",
    "describe_model",
    "expand_jobs",
    "is_finished",
    "job_key",
    "read_record",
    "run_job",
]

#: Test hook: ``"<marker file>:<job id part>"`` makes the process running the first job whose
#: id contains the part exit abruptly (``os._exit``) once, after the workflow wrote its files
#: and before ``job.json``; the marker file records that the fault happened.
FAULT_ENV = "LENS_EMOTION_SWEEP_FAULT"

_STATUS = ("done", "failed")


@dataclass(frozen=True)
class Job:
    """One job of a sweep.

    Attributes:
        model: The model entry's name.
        spec: The model spec.
        template: The prompt template (``"sev"`` for circuits).
        analysis: A key of :data:`~lens_emotion.sweep.config.ANALYSES`.
        seed: The seed.
        fields: The config's settings fields for this analysis and model.
    """

    model: str
    spec: str
    template: str
    analysis: str
    seed: int
    fields: Mapping[str, Any]

    @property
    def job_id(self) -> str:
        """``<model>__<template>__<analysis>__s<seed>`` (a folder name)."""
        return f"{self.model}__{self.template}__{self.analysis}__s{self.seed}"

    def folder(self, out: str | Path) -> Path:
        """The job's output folder under the sweep's ``out``."""
        return Path(out) / "jobs" / self.job_id

    def store_dir(self, out: str | Path) -> Path:
        """The job's activation-store folder (deterministic, so a retry resumes there)."""
        return Path(out) / "stores" / self.job_id

    def settings(self, out: str | Path) -> Any:
        """The analysis's settings for this job, the store pointed under ``out``."""
        return build_settings(
            self.analysis,
            self.fields,
            template=self.template,
            seed=self.seed,
            store_dir=self.store_dir(out),
        )

    def settings_record(self) -> dict[str, Any]:
        """The settings as JSON fields, without the store folder (not part of the key)."""
        fields = settings_dict(self.settings("."))
        fields.pop("store_dir", None)
        return json.loads(json.dumps(fields))


@dataclass(frozen=True)
class ModelInfo:
    """What the sweep knows of a model before running it.

    Attributes:
        name: The entry's name.
        spec: The spec.
        folder: The resolved local folder.
        weight_sha256: Hash of the weight files.
        family: The config's ``model_type`` (``llama``, ``gemma3_text`` ...).
        n_layers: Number of blocks.
    """

    name: str
    spec: str
    folder: str
    weight_sha256: str
    family: str
    n_layers: int

    def describe(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def describe_model(name: str, spec: str) -> ModelInfo:
    """Resolve a spec to its folder (pulling a zoo model once) and read its hash and shape.

    Raises:
        ModelLoadError: The spec cannot be resolved.
    """
    from lens_emotion.models import MODEL_MANIFEST, hash_weights, resolve_spec

    folder, _ = resolve_spec(spec)
    weight = None
    manifest = folder / MODEL_MANIFEST
    if manifest.is_file():
        weight = json.loads(manifest.read_text()).get("weight_sha256")
    config = json.loads((folder / "config.json").read_text())
    text = config.get("text_config") or config
    n_layers = int(text.get("num_hidden_layers") or text.get("n_layer") or 0)
    family = str(text.get("model_type") or config.get("model_type") or "unknown")
    return ModelInfo(name, str(spec), str(folder), weight or hash_weights(folder), family, n_layers)


def expand_jobs(config: SweepConfig) -> list[Job]:
    """The sweep's jobs: per model entry, analyses x templates x seeds (config order).

    An analysis without a template (circuits) gets one job per seed, template ``"sev"``.
    """
    jobs: list[Job] = []
    for entry in config.models:
        for analysis in entry.analyses:
            templates = entry.templates if ANALYSES[analysis].templated else ("sev",)
            for template in templates:
                for seed in entry.seeds:
                    fields = dict(entry.settings.get(analysis, {}))
                    jobs.append(Job(entry.name, entry.spec, template, analysis, seed, fields))
    return jobs


def job_key(job: Job, model: ModelInfo, data_sha256: str, versions: Mapping[str, str]) -> str:
    """The hash a finished job's record must carry: weights, data, settings, versions."""
    payload = {
        "analysis": job.analysis,
        "template": job.template,
        "seed": job.seed,
        "weight_sha256": model.weight_sha256,
        "data_sha256": data_sha256,
        "settings": job.settings_record(),
        "versions": dict(versions),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def read_record(folder: str | Path) -> dict[str, Any] | None:
    """A job folder's ``job.json`` (``None`` if missing or unreadable)."""
    try:
        record = json.loads((Path(folder) / "job.json").read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("status") in _STATUS else None


def is_finished(job: Job, out: str | Path, key: str, model: ModelInfo) -> bool:
    """Whether ``job`` finished under ``key``: its record and its workflow manifest agree.

    The record must say ``done`` with ``key``; the workflow's ``manifest.json`` must name the
    same weight hash, the same package versions and the same settings (every sweep-set field
    equal; the store folder aside).
    """
    folder = job.folder(out)
    record = read_record(folder)
    if record is None or record.get("status") != "done" or record.get("key") != key:
        return False
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("model", {}).get("weight_sha256") != model.weight_sha256:
        return False
    if manifest.get("versions") != package_versions():
        return False
    recorded = manifest.get("settings") or {}
    expected = job.settings_record()
    return all(recorded.get(k) == v for k, v in expected.items() if k in recorded)


def _plain(value: Any) -> Any:
    """A summary value as plain JSON (NumPy scalars, paths, tuples, NaN -> None)."""
    import math

    import numpy as np

    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _inject_fault(job: Job, fault: str | None) -> None:
    if not fault or ":" not in fault:
        return
    marker, part = fault.rsplit(":", 1)
    if part in job.job_id and not Path(marker).exists():
        Path(marker).write_text(f"{job.job_id} pid {os.getpid()}\n")
        os._exit(17)


def run_job(
    model: Any,
    data: Any,
    sev: Any,
    job: Job,
    out: str | Path,
    key: str,
    info: ModelInfo,
    data_sha256: str,
    *,
    progress: bool = False,
    fault: str | None = None,
) -> dict[str, Any]:
    """Run one job through its analysis's workflow and write its ``job.json``.

    The job folder is emptied first (a half-written attempt is never mixed in); the store
    folder is kept, so an extraction resumes from its finished shards. An exception in the
    workflow makes a ``failed`` record (error and traceback tail) instead of stopping the
    sweep.

    Args:
        model: The loaded :class:`~lens_emotion.models.EmotionModel`.
        data: The emotion-labelled rows.
        sev: The SEV items (``None`` if the config has none).
        job: The job.
        out: The sweep's output folder.
        key: The job's key (:func:`job_key`).
        info: The model's :class:`ModelInfo`.
        data_sha256: Hash of the rows the job reads.
        progress: Show the workflow's progress bars.
        fault: The :data:`FAULT_ENV` test hook's value.

    Returns:
        The record written to ``job.json``.
    """
    spec = ANALYSES[job.analysis]
    folder = job.folder(out)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    record: dict[str, Any] = {
        "job_id": job.job_id,
        "key": key,
        "model": info.describe(),
        "template": job.template,
        "analysis": job.analysis,
        "seed": job.seed,
        "data_sha256": data_sha256,
        "settings": job.settings_record(),
    }
    started = time.perf_counter()
    command = f"lens-emotion sweep (job {job.job_id})"
    try:
        settings = job.settings(out)
        run = spec.run_function()
        if spec.data == "sev":
            outputs = run(model, sev, folder, settings, progress=progress, command=command)
        elif job.analysis == "geometry":
            outputs = run(model, data, folder, settings, sev, progress=progress, command=command)
        else:
            outputs = run(model, data, folder, settings, progress=progress, command=command)
        summary = _plain(outputs.summary())
    except Exception as exc:  # noqa: BLE001 - a failed job is recorded, the sweep goes on
        record.update(
            status="failed",
            error=f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
            traceback=traceback.format_exc()[-2000:],
        )
    else:
        _inject_fault(job, fault)
        record.update(status="done", error=None, summary=summary)
    record["seconds"] = round(time.perf_counter() - started, 2)
    write_json_atomic(folder / "job.json", record)
    return record


def failed_record(
    job: Job, out: str | Path, key: str | None, info: ModelInfo | None, error: str
) -> dict[str, Any]:
    """Write (and return) a ``failed`` record for a job that could not run at all."""
    folder = job.folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "job_id": job.job_id,
        "key": key,
        "model": None if info is None else info.describe(),
        "template": job.template,
        "analysis": job.analysis,
        "seed": job.seed,
        "status": "failed",
        "error": error.splitlines()[0][:500] if error else "failed",
        "seconds": 0.0,
    }
    write_json_atomic(folder / "job.json", record)
    return record
