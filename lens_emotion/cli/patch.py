"""``lens-emotion patch``: activation patching, ablations, control task (Tak et al. 2)."""

from __future__ import annotations

import argparse
from typing import Any

from lens_emotion.cli.common import (
    add_data_args,
    add_model_args,
    add_pairs_args,
    add_progress_and_out_args,
    check_layers,
    choice_list,
    formats_arg,
    layer_list,
    load_data_from_args,
    load_model_from_args,
    pairs_run_kwargs,
    positive_int,
    run_workflow,
)

HELP = "activation patching, head patching, ablations, control (Tak et al. 2)"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``patch`` (defaults: :class:`~lens_emotion.patching.PatchingSettings`)."""
    from lens_emotion.patching import SITES, PatchingSettings

    defaults = PatchingSettings()
    p = sub.add_parser("patch", help=HELP, description=HELP)
    add_model_args(p)
    add_data_args(p, limit=800)
    add_pairs_args(
        p, defaults.n_pairs, "patching engine (auto: the fast last-position path where it applies)"
    )
    p.add_argument("--span", type=int, default=defaults.span, choices=[1, 3, 5], help="window size")
    p.add_argument(
        "--sites",
        type=choice_list(SITES, "attn_out,mlp_out"),
        default=defaults.sites,
        help=f"comma-separated sites, any of {','.join(SITES)} (default: all three)",
    )
    p.add_argument(
        "--layers", type=layer_list, default=None, help="centre layers, e.g. 10,20 (default: all)"
    )
    p.add_argument("--no-heads", action="store_true", help="skip head (hook_z) patching")
    p.add_argument("--no-ablations", action="store_true", help="skip the ablations")
    p.add_argument("--no-control", action="store_true", help="skip the control task")
    formats_arg(p, ",".join(defaults.formats))
    p.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    add_progress_and_out_args(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``patch``; prints the pairs kept and the peak transfer per site."""
    from lens_emotion.patching import PatchingSettings, run_patching

    kwargs = pairs_run_kwargs(args)
    kwargs["sites"], kwargs["formats"] = tuple(kwargs["sites"]), tuple(kwargs["formats"])
    settings = PatchingSettings(
        span=args.span,
        layers=tuple(args.layers) if args.layers else None,
        ablations=not args.no_ablations,
        control=not args.no_control,
        **kwargs,
    )
    dataset = load_data_from_args(args)
    model = load_model_from_args(args)
    check_layers(args.layers, model.n_layers, "--layers")
    outputs = run_workflow(run_patching, model, dataset, args, settings)
    summary = outputs.summary()
    print(
        f"{summary['pairs']} pairs kept of {summary['n_candidates']} examined "
        f"({summary['n_eligible_rows']} eligible of {summary['n_rows']} rows); calibration "
        f"{summary['calibration'] or 'none'} (--calibrate {args.calibrate}); engine "
        f"{summary['method']}"
    )
    for peak in summary["peaks"]:
        print(
            f"{peak['site']:<11} peak transfer {peak['peak_transfer']:.2f} at layer "
            f"{peak['peak_layer']} (depth {peak['relative_depth']:.2f})"
        )
    print(f"wrote {len(outputs.files)} files to {args.out}")
    return 0
