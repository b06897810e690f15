"""Run manifests, seeding and atomic JSON writes: what makes a result reproducible."""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import random
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

_PACKAGES = (
    "torch",
    "transformers",
    "transformer-lens",
    "numpy",
    "scikit-learn",
    "plotly",
    "circuitsvis",
    "lens-emotion",
)


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages results depend on."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) random generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def start_run(seed: int, out: str | Path) -> Path:
    """Seed every generator (:func:`seed_everything`) and create the output folder.

    The first step of every ``run_<x>`` workflow.

    Args:
        seed: The run's seed.
        out: The output folder (created with its parents if missing).

    Returns:
        ``out`` as a :class:`~pathlib.Path`.
    """
    seed_everything(seed)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


_Settings = TypeVar("_Settings")


def override_seed_formats(
    settings: _Settings, seed: int | None, formats: Sequence[str] | None
) -> _Settings:
    """``settings`` with ``seed`` and ``formats`` replaced where given (not ``None``).

    Args:
        settings: A frozen ``…Settings`` dataclass with ``seed`` and ``formats`` fields.
        seed: A seed overriding ``settings.seed``, or ``None``.
        formats: Figure formats overriding ``settings.formats``, or ``None``.

    Returns:
        ``settings`` itself when both are ``None``, else a replaced copy.
    """
    if seed is None and formats is None:
        return settings
    return dataclasses.replace(
        settings,  # type: ignore[type-var]
        seed=settings.seed if seed is None else int(seed),  # type: ignore[attr-defined]
        formats=settings.formats if formats is None else tuple(formats),  # type: ignore[attr-defined]
    )


def run_manifest(
    *,
    seed: int,
    model: Any | None = None,
    dataset: Any | None = None,
    template: Any | None = None,
    command: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Describe a run: model id and weight hash, data hash, template, versions and seed.

    Args:
        seed: The run's seed.
        model: An :class:`~lens_emotion.models.EmotionModel` (uses its ``describe()``).
        dataset: An :class:`~lens_emotion.data.EmotionDataset`.
        template: A :class:`~lens_emotion.prompts.PromptTemplate`.
        command: The command line, if run from the CLI.
        extra: Further fields (parameters, timings).
    """
    manifest: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": seed,
        "command": command if command is not None else " ".join(sys.argv),
        "versions": package_versions(),
    }
    if model is not None:
        manifest["model"] = model.describe()
    if dataset is not None:
        manifest["data"] = {
            "name": dataset.name,
            "source": dataset.source,
            "n": len(dataset),
            "sha256": dataset.fingerprint(),
            "text_column": dataset.text_column,
        }
    if template is not None:
        manifest["template"] = template.describe()
    if extra:
        manifest.update(extra)
    return manifest


def report_step(prefix: str, name: str, seconds: float, verbose: bool = True) -> float:
    """Say that a workflow step finished (``[probe] extraction: 12.3 s`` on stderr).

    Returns:
        The seconds, rounded to 0.01, for the manifest's timings.
    """
    if verbose:
        print(f"[{prefix}] {name}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return round(seconds, 2)


class StepTimer:
    """Time a workflow's steps, keep the seconds for the manifest, and say when each ends.

    Each finished step prints one line (``[circuits] directions: 12.3 s``) to stderr when
    ``verbose``; the seconds are kept in :attr:`timings` either way::

        timer = StepTimer("probe", verbose=progress)
        with timer.step("extraction"):
            ...
        manifest["timings_s"] = timer.timings
    """

    def __init__(self, prefix: str, verbose: bool = True) -> None:
        self.prefix = prefix
        self.verbose = verbose
        self.timings: dict[str, float] = {}
        self._started = time.perf_counter()

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as step ``name``."""
        started = time.perf_counter()
        yield
        self.timings[name] = report_step(
            self.prefix, name, time.perf_counter() - started, self.verbose
        )

    def total(self) -> float:
        """Seconds since the timer was made (also stored as ``timings["total"]``)."""
        self.timings["total"] = round(time.perf_counter() - self._started, 2)
        return self.timings["total"]


def settings_dict(settings: Any) -> dict[str, Any]:
    """A settings dataclass as JSON-ready fields (tuples as lists, paths as strings)."""
    import dataclasses
    from pathlib import PurePath

    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, PurePath):
            return str(value)
        return value

    if settings is None:
        return {}
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        return {f.name: plain(getattr(settings, f.name)) for f in dataclasses.fields(settings)}
    return {str(k): plain(v) for k, v in dict(settings).items()}


def write_manifest(
    out: Any,
    *,
    seed: int,
    model: Any | None = None,
    dataset: Any | None = None,
    template: Any | None = None,
    settings: Any | None = None,
    timer: StepTimer | None = None,
    command: str | None = None,
    extra: Mapping[str, Any] | None = None,
    name: str = "manifest.json",
) -> Any:
    """Write a workflow's manifest beside its results: the one manifest-and-timing helper.

    Builds :func:`run_manifest` and adds the workflow's settings (``"settings"``) and the step
    timings of ``timer`` (``"timings_s"``, with its total), then writes ``out/name``
    atomically.

    Args:
        out: The output folder.
        seed: The run's seed.
        model: The model (its id and weight hash are recorded).
        dataset: The dataset (its hash is recorded).
        template: The prompt template.
        settings: The workflow's frozen settings dataclass (or a mapping).
        timer: The workflow's :class:`StepTimer`.
        command: The command line (defaults to ``sys.argv``).
        extra: Further fields, merged last.
        name: File name inside ``out``.

    Returns:
        The path written.
    """
    from pathlib import Path

    from lens_emotion.io import write_json_atomic

    fields: dict[str, Any] = {}
    if settings is not None:
        fields["settings"] = settings_dict(settings)
    if timer is not None:
        timer.total()
        fields["timings_s"] = dict(timer.timings)
    if extra:
        fields.update(extra)
    manifest = run_manifest(
        seed=seed, model=model, dataset=dataset, template=template, command=command, extra=fields
    )
    return write_json_atomic(Path(out) / name, manifest)
