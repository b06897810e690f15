"""``lens-emotion infer``: predict emotions from label-token log-probabilities."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lens_emotion.cli.common import (
    add_calibrate_arg,
    add_data_args,
    add_model_args,
    add_progress_args,
    command_string,
    load_data_from_args,
    load_model_from_args,
    positive_float,
    positive_int,
)
from lens_emotion.errors import LensEmotionError

HELP = "predict emotions; writes predictions.csv, metrics.json"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``infer``."""
    from lens_emotion.prompts import TEMPLATES

    p = sub.add_parser("infer", help=HELP, description=HELP)
    add_model_args(p)
    add_data_args(p)
    p.add_argument(
        "--template",
        default="emotion-list",
        choices=sorted(TEMPLATES),
        help="prompt template (default: emotion-list)",
    )
    add_calibrate_arg(p, "the label scores")
    p.add_argument(
        "--heldout-fraction",
        type=positive_float,
        default=0.5,
        help="with --calibrate mean-heldout: share of rows the offset is fitted on (the rest "
        "are scored; split by --seed) (default 0.5)",
    )
    p.add_argument("--batch-size", type=positive_int, default=16)
    add_progress_args(p)
    p.add_argument("--out", required=True, help="output folder")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``infer``; prints accuracy under the chosen calibration and the others."""
    from lens_emotion.inference import infer_emotions, resolve_calibration
    from lens_emotion.manifest import run_manifest, seed_everything
    from lens_emotion.viz import write_figure
    from lens_emotion.prompts import get_template

    seed_everything(args.seed)
    template = get_template(args.template)
    calibration = resolve_calibration(template.name, args.calibrate)
    if not 0.0 < args.heldout_fraction < 1.0:
        raise LensEmotionError(
            f"--heldout-fraction must lie between 0 and 1 (e.g. 0.5), got {args.heldout_fraction}."
        )
    dataset = load_data_from_args(args)
    model = load_model_from_args(args)
    result = infer_emotions(
        model,
        dataset,
        template,
        batch_size=args.batch_size,
        calibrate=calibration,
        progress=not args.quiet,
        seed=args.seed,
        heldout_fraction=args.heldout_fraction,
    )
    manifest = run_manifest(
        seed=args.seed,
        model=model,
        dataset=dataset,
        template=template,
        command=command_string(),
        extra={"settings": {"calibrate": args.calibrate, "calibration": calibration}},
    )
    out = Path(args.out)
    result.save(out, manifest)
    write_figure(result.figure(), out / "confusion", formats=("html",))
    others = "  ".join(
        f"{name}={value:.3f}" for name, value in result.metrics()["accuracy_by_calibration"].items()
    )
    print(
        f"n={len(result)}  accuracy={result.accuracy:.3f}  macro_f1={result.macro_f1:.3f}  "
        f"calibration={calibration} (--calibrate {args.calibrate})  "
        f"({len(result) / result.seconds:.1f} prompts/s)"
    )
    print(f"accuracy by calibration, same forward pass: {others}")
    print(f"wrote {out / 'predictions.csv'}, {out / 'metrics.json'}, {out / 'confusion.html'}")
    return 0
