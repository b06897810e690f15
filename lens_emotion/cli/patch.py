"""``lens-emotion patch``: activation patching, ablations, control task (Tak et al. 2)."""

from __future__ import annotations

import argparse
from typing import Any

from lens_emotion.cli.common import (
    add_data_args,
    add_model_args,
    add_pairs_args,
    add_progress_args,
    check_layers,
    choice_list,
    formats_arg,
    layer_list,
    load_data_from_args,
    load_model_from_args,
    pairs_run_kwargs,
    positive_int,
)

HELP = "activation patching, head patching, ablations, control (Tak et al. 2)"
PATCH_SITES = ("attn_out", "mlp_out", "resid_post")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``patch``."""
    p = sub.add_parser("patch", help=HELP, description=HELP)
    add_model_args(p)
    add_data_args(p, limit=800)
    add_pairs_args(p, 200, "patching engine (auto: the fast last-position path where it applies)")
    p.add_argument("--span", type=int, default=3, choices=[1, 3, 5], help="window size")
    p.add_argument(
        "--sites",
        type=choice_list(PATCH_SITES, "attn_out,mlp_out"),
        default=PATCH_SITES,
        help=f"comma-separated sites, any of {','.join(PATCH_SITES)} (default: all three)",
    )
    p.add_argument(
        "--layers", type=layer_list, default=None, help="centre layers, e.g. 10,20 (default: all)"
    )
    p.add_argument("--no-heads", action="store_true", help="skip head (hook_z) patching")
    p.add_argument("--no-ablations", action="store_true", help="skip the ablations")
    p.add_argument("--no-control", action="store_true", help="skip the control task")
    formats_arg(p, "html,png")
    p.add_argument("--batch-size", type=positive_int, default=16)
    add_progress_args(p)
    p.add_argument("--out", required=True, help="output folder")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``patch``; prints the pairs kept and the peak transfer per site."""
    from lens_emotion.patching_workflow import run_patching

    kwargs = pairs_run_kwargs(args)
    dataset = load_data_from_args(args)
    model = load_model_from_args(args)
    check_layers(args.layers, model.n_layers, "--layers")
    outputs = run_patching(
        model,
        dataset,
        args.out,
        span=args.span,
        layers=list(args.layers) if args.layers else None,
        ablations=not args.no_ablations,
        control=not args.no_control,
        **kwargs,
    )
    pairs = outputs.sites.pairs
    print(
        f"{len(pairs)} pairs kept of {pairs.n_candidates} examined ({pairs.n_eligible_rows} "
        f"eligible of {pairs.n_rows} rows); calibration {pairs.calibration or 'none'} "
        f"(--calibrate {args.calibrate}); engine {outputs.sites.method}"
    )
    for row in outputs.sites.peaks().itertuples():
        print(
            f"{row.site:<11} peak transfer {row.peak_transfer:.2f} at layer {row.peak_layer} "
            f"(depth {row.relative_depth:.2f})"
        )
    print(f"wrote {len(outputs.files)} files to {args.out}")
    return 0
