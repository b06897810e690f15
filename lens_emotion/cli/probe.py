"""``lens-emotion probe``: per-layer emotion and appraisal probes (Tak et al., step 1)."""

from __future__ import annotations

import argparse
from typing import Any

from lens_emotion.cli.common import (
    add_data_args,
    add_model_args,
    add_progress_and_out_args,
    check_layers,
    choice_list,
    float_list,
    formats_arg,
    layer_list,
    load_data_from_args,
    load_model_from_args,
    positive_float,
    positive_int,
    run_workflow,
)
from lens_emotion.errors import LensEmotionError

HELP = "per-layer emotion and appraisal probes (Tak et al. 1)"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``probe``."""
    from lens_emotion.activations import STORE_SITES
    from lens_emotion.probing.workflow import ProbingSettings
    from lens_emotion.prompts import TEMPLATES

    defaults = ProbingSettings()  # every default below is read from the settings class
    alphas = defaults.alpha if isinstance(defaults.alpha, tuple) else (defaults.alpha,)
    default_alpha = ",".join(f"{a:g}" for a in alphas)

    p = sub.add_parser("probe", help=HELP, description=HELP)
    add_model_args(p)
    add_data_args(p)
    p.add_argument(
        "--eval-data-path",
        default=None,
        help="a second dataset file (same --dataset format): fit on --data-path, also report "
        "accuracy on this one (external validation)",
    )
    p.add_argument("--template", default=defaults.template, choices=sorted(TEMPLATES))
    default_sites = ",".join(defaults.sites)
    p.add_argument(
        "--sites",
        type=choice_list(STORE_SITES, default_sites),
        default=defaults.sites,
        help=f"comma-separated sites, any of {','.join(STORE_SITES)} (default: {default_sites})",
    )
    p.add_argument(
        "--layers",
        type=layer_list,
        default=defaults.layers,
        help="probe only these layers, e.g. 0,12,20-29 (default: all; the store keeps all)",
    )
    p.add_argument(
        "--agreeing-only",
        action="store_true",
        help="probe only texts the model classifies correctly (mean-calibrated)",
    )
    p.add_argument(
        "--last-k",
        type=positive_int,
        default=defaults.last_k,
        help="also probe each of the last k positions of resid_post",
    )
    p.add_argument(
        "--folds", type=positive_int, default=defaults.n_folds, help="cross-validation folds"
    )
    p.add_argument(
        "--C", type=positive_float, default=defaults.C, help="inverse L2 strength (logreg)"
    )
    p.add_argument(
        "--alpha",
        type=float_list("1000 or 1,10,100", positive=True),
        default=tuple(float(a) for a in alphas),
        help="ridge penalty of the appraisal probes, or a comma-separated grid chosen per "
        f"appraisal inside each training fold (default: {default_alpha})",
    )
    p.add_argument("--probe", default=defaults.probe_model, choices=["logreg", "mlp"])
    formats_arg(p, default=",".join(defaults.formats))
    p.add_argument(
        "--store", default=defaults.store_dir, help="activation store folder (default: cache)"
    )
    p.add_argument(
        "--store-dtype",
        default=defaults.store_dtype,
        choices=["float32", "float16"],
        help="activation store dtype on disk (float16 halves its size; probes read float32)",
    )
    p.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    p.add_argument(
        "--threads",
        type=positive_int,
        default=defaults.num_threads,
        help="torch threads for probe fits (1 is fastest on a busy CPU)",
    )
    add_progress_and_out_args(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``probe``; prints the best layer per site."""
    from lens_emotion.data import load_dataset
    from lens_emotion.probing import workflow
    from lens_emotion.probing.workflow import ProbingSettings

    if args.folds < 2:
        raise LensEmotionError(f"--folds must be at least 2, got {args.folds}.")
    dataset = load_data_from_args(args)
    eval_dataset = None
    if args.eval_data_path is not None:
        kwargs = {"text_column": args.text_column} if args.dataset == "crowd-envent" else {}
        eval_dataset = load_dataset(args.dataset, path=args.eval_data_path, **kwargs)
    model = load_model_from_args(args)
    check_layers(args.layers, model.n_layers, "--layers")
    settings = ProbingSettings(
        template=args.template,
        sites=tuple(args.sites),
        layers=tuple(args.layers) if args.layers else None,
        last_k=args.last_k,
        agreeing_only=args.agreeing_only,
        n_folds=args.folds,
        C=args.C,
        alpha=tuple(args.alpha) if len(args.alpha) > 1 else args.alpha[0],
        probe_model=args.probe,
        formats=tuple(args.formats),
        store_dir=args.store,
        store_dtype=args.store_dtype,
        batch_size=args.batch_size,
        seed=args.seed,
        num_threads=args.threads,
    )
    outputs = run_workflow(
        workflow.run_probing,
        model,
        dataset,
        args,
        settings,
        store=args.store,
        eval_dataset=eval_dataset,
    )
    summary = outputs.summary()
    for site in settings.sites:
        best = summary["best"][site]
        print(
            f"{site:<11} best layer {best['layer']:>2}: accuracy {best['accuracy_mean']:.3f} "
            f"(majority {best['majority_baseline']:.3f}, shuffled {best['shuffled_control']:.3f})"
        )
    print(f"embedding (resid_pre 0): accuracy {summary['embedding_accuracy']:.3f}")
    print(f"probed {summary['n_rows']} rows; wrote {summary['n_files']} files to {args.out}")
    return 0
