"""``lens-emotion attribute``: attribution patching (AtP) and its check against real patching."""

from __future__ import annotations

import argparse
from typing import Any

from lens_emotion.cli.common import (
    add_calibrate_arg,
    add_data_args,
    add_model_args,
    add_progress_args,
    choice_list,
    command_string,
    formats_arg,
    load_data_from_args,
    load_model_from_args,
    positive_int,
)

HELP = "attribution patching (AtP) and its check against real patching"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``attribute``."""
    from lens_emotion.attribution import ATP_SITES
    from lens_emotion.prompts import TEMPLATES

    p = sub.add_parser("attribute", help=HELP, description=HELP)
    add_model_args(p)
    add_data_args(p, limit=800)
    p.add_argument("--pairs", type=positive_int, default=100, help="pairs (default 100)")
    p.add_argument("--template", default="emotion-list", choices=sorted(TEMPLATES))
    p.add_argument(
        "--all-rows",
        action="store_true",
        help="draw pairs among all rows, not only agreeing rows",
    )
    add_calibrate_arg(p, "the clean predictions (the control task is never calibrated)")
    p.add_argument(
        "--sites",
        type=choice_list(ATP_SITES, "attn_out,mlp_out"),
        default=tuple(ATP_SITES),
        help=f"comma-separated AtP sites, any of {','.join(ATP_SITES)} (default: all)",
    )
    p.add_argument("--no-heads", action="store_true", help="skip per-head (hook_z) AtP")
    p.add_argument(
        "--no-compare", action="store_true", help="skip the real span-1 patching comparison"
    )
    p.add_argument(
        "--method",
        default="auto",
        choices=["auto", "fast", "bridge", "reference"],
        help="engine of the real patching used for the comparison",
    )
    formats_arg(p)
    p.add_argument("--batch-size", type=positive_int, default=8, help="pairs per AtP pass")
    add_progress_args(p)
    p.add_argument("--out", required=True, help="output folder")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``attribute``; prints its cost and its agreement with real patching."""
    from lens_emotion.attribution import run_attribution
    from lens_emotion.inference import resolve_calibration

    calibration = resolve_calibration(args.template, args.calibrate)
    dataset = load_data_from_args(args)
    model = load_model_from_args(args)
    outputs = run_attribution(
        model,
        dataset,
        args.out,
        n_pairs=args.pairs,
        seed=args.seed,
        template=args.template,
        agreeing_only=not args.all_rows,
        calibrate="auto" if args.calibrate == "auto" else calibration,
        sites=list(args.sites),
        heads=not args.no_heads,
        compare=not args.no_compare,
        method=args.method,
        formats=list(args.formats),
        batch_size=args.batch_size,
        progress=not args.quiet,
        command=command_string(),
    )
    cost = outputs.atp.cost()
    print(
        f"AtP on {outputs.atp.n_pairs} pairs: {outputs.atp.seconds:.1f} s, "
        f"{cost['atp_fpe']:.0f} forward-pass equivalents "
        f"(one-forward-per-patch patching: {cost['patching_fpe']:.0f})"
    )
    if outputs.comparison is not None:
        for key, corr in outputs.comparison.correlations.items():
            print(
                f"{key:<11} vs real span-1 patching: Pearson {corr['pearson']:.3f}, "
                f"Spearman {corr['spearman']:.3f} (n={corr['n']})"
            )
    print(f"wrote {len(outputs.files)} files to {args.out}")
    return 0
