"""``lens-emotion infer``: predict emotions from label-token log-probabilities.

Parses the options into :class:`~lens_emotion.inference.InferenceSettings` (whose fields hold
the defaults) and calls :func:`~lens_emotion.inference.run_inference`.
"""

from __future__ import annotations

import argparse
from typing import Any

from lens_emotion.cli.common import (
    add_calibrate_arg,
    add_data_args,
    add_model_args,
    add_progress_and_out_args,
    add_settings_args,
    load_data_from_args,
    load_model_from_args,
    run_workflow,
    settings_from_args,
)
from lens_emotion.errors import LensEmotionError

HELP = "predict emotions; writes predictions.csv, metrics.json"

#: InferenceSettings fields that are not ``infer`` options (or are added by other groups).
_NOT_OPTIONS = (
    "template",
    "calibrate",
    "engine",
    "compare_calibrations",
    "label_names",
    "seed",
    "formats",
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``infer``."""
    from lens_emotion.inference import InferenceSettings
    from lens_emotion.prompts import TEMPLATES

    p = sub.add_parser("infer", help=HELP, description=HELP)
    add_model_args(p)
    add_data_args(p)
    p.add_argument(
        "--template",
        default=InferenceSettings.template,
        choices=sorted(TEMPLATES),
        help=f"prompt template (default: {InferenceSettings.template})",
    )
    add_calibrate_arg(p, "the label scores")
    add_settings_args(p, InferenceSettings, title="inference", skip=_NOT_OPTIONS)
    add_progress_and_out_args(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``infer``; prints accuracy under the chosen calibration and the others."""
    from lens_emotion.inference import InferenceSettings, resolve_calibration, run_inference
    from lens_emotion.manifest import seed_everything

    seed_everything(args.seed)
    resolve_calibration(args.template, args.calibrate)  # fails before any work if bad
    if not 0.0 < args.heldout_fraction < 1.0:
        raise LensEmotionError(
            f"--heldout-fraction must lie between 0 and 1 (e.g. 0.5), got {args.heldout_fraction}."
        )
    settings = settings_from_args(args, InferenceSettings)
    dataset = load_data_from_args(args)
    model = load_model_from_args(args)
    outputs = run_workflow(run_inference, model, dataset, args, settings)
    summary = outputs.summary()
    others = "  ".join(
        f"{name}={_number(value)}" for name, value in summary["accuracy_by_calibration"].items()
    )
    print(
        f"n={summary['n']}  accuracy={summary['accuracy']:.3f}  "
        f"macro_f1={summary['macro_f1']:.3f}  calibration={summary['calibration']} "
        f"(--calibrate {summary['calibrate']})  ({summary['prompts_per_second']:.1f} prompts/s)"
    )
    print(f"accuracy by calibration, same forward pass: {others}")
    print(f"wrote {', '.join(summary['files'])}")
    return 0


def _number(value: float | None) -> str:
    """An accuracy to 3 decimals; ``n/a`` where a calibration does not apply."""
    return "n/a" if value is None else f"{value:.3f}"
