"""Regenerate a paper's worth of figures from one TOML config (``lens-emotion figures``).

A config names the model, the data, the seed, the output formats and the analyses to run,
each with the keyword arguments of its workflow::

    title = "Tak et al. (ACL 2025) figure set"
    model = "smollm2-135m-instruct"
    seed = 0
    formats = ["html", "png", "svg", "pdf"]

    [data]
    n_rows = 600            # stratified crowd-enVENT subset (omit for all rows)
    # crowd_envent = "path/to/enVent_gen_Data.csv"   (default: the data root)
    # sev = "path/to/sev.jsonl"

    [probing]               # fields of lens_emotion.probing.ProbingSettings
    sites = ["attn_out", "mlp_out", "resid_post"]

    [patching]              # fields of lens_emotion.patching.PatchingSettings
    n_pairs = 100

Every analysis writes its own results (CSV/JSON, manifest) under ``OUT/runs/<analysis>/``;
the chosen figures are written to ``OUT/<analysis>_<figure>.<format>`` with the shared
style and the same colour per emotion everywhere, and ``OUT/manifest.json`` records the
config, its hash, the model and data hashes and the timings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lens_emotion.errors import LensEmotionError
from lens_emotion.io import write_json_atomic

FORMATS = ("html", "png", "svg", "pdf")


class FiguresConfigError(LensEmotionError, ValueError):
    """A figures config that cannot be used (missing file, bad TOML, unknown keys)."""


@dataclass(frozen=True)
class FiguresConfig:
    """A parsed figures config.

    Attributes:
        title: Title of the figure set.
        model: Model spec for :func:`lens_emotion.models.load_model`.
        seed: Seed of every analysis.
        formats: Figure formats to write.
        data: The ``[data]`` table (``crowd_envent``, ``sev``, ``n_rows``).
        analyses: ``{analysis: keyword arguments}`` in config order.
        device: Torch device (``None``: automatic).
        dtype: Torch dtype name (``None``: float32).
        source: The config file.
        sha256: Hash of the config file's bytes.
    """

    title: str
    model: str
    seed: int
    formats: tuple[str, ...]
    data: dict[str, Any]
    analyses: dict[str, dict[str, Any]]
    device: str | None = None
    dtype: str | None = None
    source: Path | None = None
    sha256: str = ""

    def describe(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (for manifests)."""
        return {
            "title": self.title,
            "model": self.model,
            "seed": self.seed,
            "formats": list(self.formats),
            "data": self.data,
            "analyses": self.analyses,
            "device": self.device,
            "dtype": self.dtype,
            "source": str(self.source) if self.source else None,
            "sha256": self.sha256,
        }


@dataclass
class FiguresOutputs:
    """What :func:`make_figures` wrote.

    Attributes:
        files: Figure files, by analysis.
        notes: Warnings worth showing (e.g. static export unavailable).
        timings: Seconds per analysis.
        failed: Analyses that stopped with a lens-emotion error, with its message; the other
            analyses still ran.
        manifest: The manifest written to ``OUT/manifest.json``.
    """

    files: dict[str, list[Path]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Analyses: each runs its workflow into a folder and returns {figure name: Plotly figure}.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Analysis:
    """Where an analysis' workflow lives: ``lens_emotion.<package>.<settings>`` and ``.<run>``.

    ``data`` names the dataset it runs on: ``"crowd_envent"`` or ``"sev"``.
    """

    name: str
    settings: str
    run: str
    data: str = "crowd_envent"

    @property
    def package(self) -> str:
        return f"lens_emotion.{self.name}"

    def settings_class(self) -> type:
        return getattr(importlib.import_module(self.package), self.settings)

    def workflow(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.package), self.run)

    def fields(self) -> set[str]:
        """Options a config table may set: the settings' fields (the seed is the config's)."""
        return {f.name for f in dataclasses.fields(self.settings_class())} - {"seed"}


_ANALYSES: dict[str, _Analysis] = {
    "inference": _Analysis("inference", "InferenceSettings", "run_inference"),
    "probing": _Analysis("probing", "ProbingSettings", "run_probing"),
    "patching": _Analysis("patching", "PatchingSettings", "run_patching"),
    "attribution": _Analysis("attribution", "AttributionSettings", "run_attribution"),
    "attention": _Analysis("attention", "AttentionSettings", "run_attention"),
    "steering": _Analysis("steering", "SteeringSettings", "run_steering"),
    "circuits": _Analysis("circuits", "CircuitSettings", "run_circuits", data="sev"),
}


def _tuples(value: Any) -> Any:
    """TOML arrays as tuples (the settings dataclasses are frozen and hold tuples)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _run_analysis(
    name: str, model: Any, data: _Data, options: Mapping[str, Any], out: Path, seed: int
) -> dict[str, Any]:
    """Run one analysis' workflow into ``out``; returns ``{figure name: Plotly figure}``.

    The same for every analysis: the config table's options become the analysis' settings
    dataclass (with the config's seed), and its ``run_<x>(model, data, out, settings)`` runs.
    The run folder keeps HTML figures unless the table sets ``formats``; the config's own
    ``formats`` governs the figures written beside the manifest.
    """
    spec = _ANALYSES[name]
    options = dict(options)
    progress = bool(options.pop("progress", True))
    fields = {k: _tuples(v) for k, v in options.items()}
    fields.setdefault("formats", ("html",))
    settings = spec.settings_class()(**{**fields, "seed": seed})
    outputs = spec.workflow()(model, getattr(data, spec.data)(), out, settings, progress=progress)
    return dict(outputs.figures)


#: Analyses a config may name, in the order they run.
ANALYSES: tuple[str, ...] = tuple(_ANALYSES)

_TOP_KEYS = {"title", "model", "seed", "formats", "data", "device", "dtype", *ANALYSES}
_DATA_KEYS = {"crowd_envent", "sev", "n_rows"}


@dataclass
class _Data:
    """Lazily loaded data named by the config."""

    options: dict[str, Any]
    seed: int
    _crowd: Any = None
    _sev: Any = None

    def crowd_envent(self) -> Any:
        if self._crowd is None:
            from lens_emotion.data import default_crowd_envent_path, load_crowd_envent

            path = self.options.get("crowd_envent") or default_crowd_envent_path()
            dataset = load_crowd_envent(path)
            n_rows = self.options.get("n_rows")
            if n_rows is not None and int(n_rows) < len(dataset):
                dataset = dataset.sample(int(n_rows), seed=self.seed)
            self._crowd = dataset
        return self._crowd

    def sev(self) -> Any:
        if self._sev is None:
            from lens_emotion.data import default_sev_path, load_sev

            self._sev = load_sev(self.options.get("sev") or default_sev_path())
        return self._sev


def _check_options(name: str, options: Mapping[str, Any]) -> None:
    """Refuse options that are not fields of the analysis' settings dataclass."""
    spec = _ANALYSES[name]
    allowed = spec.fields() | {"progress"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise FiguresConfigError(
            f"[{name}] has unknown option(s) {unknown}; {spec.package}.{spec.settings} "
            f"accepts: {', '.join(sorted(allowed))}."
        )


def load_figures_config(path: str | Path) -> FiguresConfig:
    """Read and validate a figures config (TOML).

    Args:
        path: The ``.toml`` file.

    Returns:
        The :class:`FiguresConfig`.

    Raises:
        FiguresConfigError: Missing file, invalid TOML, unknown keys or analyses, bad formats,
            or no analysis at all. The message names the key and what is allowed.
    """
    path = Path(path)
    if not path.is_file():
        raise FiguresConfigError(
            f"figures config not found: {path}. Pass --config configs/<name>.toml (see "
            "configs/ in the repository for ready-made ones)."
        )
    raw_bytes = path.read_bytes()
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FiguresConfigError(f"{path} is not valid UTF-8 TOML: {exc}.") from exc
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise FiguresConfigError(
            f"{path}: unknown key(s) {unknown}; allowed: {sorted(_TOP_KEYS)} (analyses: "
            f"{list(ANALYSES)})."
        )
    data = dict(raw.get("data", {}))
    bad_data = sorted(set(data) - _DATA_KEYS)
    if bad_data:
        raise FiguresConfigError(
            f"{path}: [data] has unknown key(s) {bad_data}; allowed: {sorted(_DATA_KEYS)}."
        )
    formats = tuple(raw.get("formats", ["html"]))
    bad_formats = [f for f in formats if f not in FORMATS]
    if bad_formats or not formats:
        raise FiguresConfigError(
            f"{path}: formats must be a non-empty subset of {list(FORMATS)}, got {list(formats)}."
        )
    analyses = {name: dict(raw[name]) for name in raw if name in _ANALYSES}
    if not analyses:
        raise FiguresConfigError(
            f"{path}: name at least one analysis table, e.g. [probing]; known: {list(ANALYSES)}."
        )
    for name, options in analyses.items():
        _check_options(name, options)
    from lens_emotion.models import DEFAULT_MODEL

    return FiguresConfig(
        title=str(raw.get("title", path.stem)),
        model=str(raw.get("model", DEFAULT_MODEL)),
        seed=int(raw.get("seed", 0)),
        formats=formats,
        data=data,
        analyses=analyses,
        device=raw.get("device"),
        dtype=raw.get("dtype"),
        source=path,
        sha256=hashlib.sha256(raw_bytes).hexdigest(),
    )


def _write(fig: Any, stem: Path, formats: Sequence[str], notes: list[str]) -> list[Path]:
    from lens_emotion.viz import write_figure_or_html

    written, note = write_figure_or_html(fig, stem, formats)
    if note is not None and note not in notes:
        notes.append(note)
        print(f"[figures] {note}", file=sys.stderr)
    return written


def make_figures(
    config: FiguresConfig | str | Path,
    out: str | Path = "figures",
    model: Any | None = None,
    only: Sequence[str] | None = None,
    progress: bool = True,
) -> FiguresOutputs:
    """Run the config's analyses and write their figures.

    Args:
        config: A :class:`FiguresConfig` or the path of a TOML config.
        out: Output folder for the figures (results go under ``OUT/runs/``).
        model: An already loaded model (default: load ``config.model``).
        only: Run just these analyses of the config.
        progress: Show progress bars.

    Returns:
        The :class:`FiguresOutputs`.

    Raises:
        FiguresConfigError: A bad config, or ``only`` naming analyses the config lacks.
    """
    from lens_emotion.manifest import run_manifest, seed_everything
    from lens_emotion.models import load_model

    if not isinstance(config, FiguresConfig):
        config = load_figures_config(config)
    names = list(config.analyses) if only is None else list(only)
    missing = [n for n in names if n not in config.analyses]
    if missing:
        raise FiguresConfigError(
            f"--only {missing}: not in the config (it has {list(config.analyses)})."
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    outputs = FiguresOutputs()
    started = time.perf_counter()
    if model is None:
        model = load_model(config.model, device=config.device, dtype=config.dtype)
    data = _Data(config.data, config.seed)
    for name in names:
        t0 = time.perf_counter()
        print(f"[figures] {name} ...", file=sys.stderr, flush=True)
        options = dict(config.analyses[name])
        options.setdefault("progress", progress)
        try:
            figures = _run_analysis(name, model, data, options, out / "runs" / name, config.seed)
        except LensEmotionError as exc:
            # One analysis' bad input must not throw away the others' (long) work.
            outputs.failed[name] = f"{type(exc).__name__}: {exc}"
            outputs.timings[name] = round(time.perf_counter() - t0, 2)
            print(f"[figures] {name} FAILED: {outputs.failed[name]}", file=sys.stderr)
            continue
        written: list[Path] = []
        for fig_name, fig in figures.items():
            written += _write(fig, out / f"{name}_{fig_name}", config.formats, outputs.notes)
        outputs.files[name] = written
        outputs.timings[name] = round(time.perf_counter() - t0, 2)
        print(
            f"[figures] {name}: {len(figures)} figure(s), {outputs.timings[name]:.0f} s",
            file=sys.stderr,
        )
    outputs.timings["total"] = round(time.perf_counter() - started, 2)
    manifest = run_manifest(
        seed=config.seed,
        model=model,
        dataset=data._crowd,
        extra={
            "config": config.describe(),
            "sev": data._sev.fingerprint() if data._sev is not None else None,
            "timings_s": outputs.timings,
            "figures": {k: [p.name for p in v] for k, v in outputs.files.items()},
            "notes": outputs.notes,
            "failed": outputs.failed,
        },
    )
    outputs.manifest = manifest
    write_json_atomic(out / "manifest.json", manifest)
    return outputs
