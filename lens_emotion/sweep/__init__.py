"""Sweeps: many models x templates x analyses x seeds, one long table, cross-model figures.

``lens-emotion sweep --config configs/sweep-zoo.toml --out OUT`` (:func:`run_sweep`) runs
every job through its analysis's own workflow, in-process by default or on Ray
(``--ray`` / ``--ray-address``; one actor per model), skips jobs that already finished under
the same weights, data, settings and versions, and rebuilds ``OUT/results.parquet`` from the
job folders. Ray is optional and imported only by the Ray runner.
"""

from lens_emotion.sweep.config import (
    ANALYSES,
    AnalysisSpec,
    DataSpec,
    ModelEntry,
    SweepConfig,
    build_settings,
    check_model_spec,
    load_config,
    parse_config,
)
from lens_emotion.sweep.errors import SweepConfigError, SweepError
from lens_emotion.sweep.figures import (
    geometry_depth_figure,
    patching_depth_figure,
    peak_vs_stabilisation_figure,
    probe_depth_figure,
    sweep_figures,
    template_robustness_figure,
)
from lens_emotion.sweep.jobs import Job, ModelInfo, expand_jobs, is_finished, job_key
from lens_emotion.sweep.summary import localisation, model_summary, write_summary
from lens_emotion.sweep.tables import RESHAPERS, TABLE_COLUMNS, build_table, write_table
from lens_emotion.sweep.workflow import SweepOutputs, check_models, run_sweep

__all__ = [
    "ANALYSES",
    "RESHAPERS",
    "TABLE_COLUMNS",
    "AnalysisSpec",
    "DataSpec",
    "Job",
    "ModelEntry",
    "ModelInfo",
    "SweepConfig",
    "SweepConfigError",
    "SweepError",
    "SweepOutputs",
    "build_settings",
    "build_table",
    "check_model_spec",
    "check_models",
    "expand_jobs",
    "geometry_depth_figure",
    "is_finished",
    "job_key",
    "load_config",
    "localisation",
    "model_summary",
    "parse_config",
    "patching_depth_figure",
    "peak_vs_stabilisation_figure",
    "probe_depth_figure",
    "run_sweep",
    "sweep_figures",
    "template_robustness_figure",
    "write_summary",
    "write_table",
]
