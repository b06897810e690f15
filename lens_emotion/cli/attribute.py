"""``lens-emotion attribute``: attribution patching (AtP) and its check against real patching."""

from __future__ import annotations

import argparse
from typing import Any

from lens_emotion.cli.common import (
    add_data_args,
    add_model_args,
    add_pairs_args,
    add_progress_args,
    choice_list,
    formats_arg,
    load_data_from_args,
    load_model_from_args,
    pairs_run_kwargs,
    positive_int,
)

HELP = "attribution patching (AtP) and its check against real patching"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``attribute``."""
    from lens_emotion.attribution import ATP_SITES

    p = sub.add_parser("attribute", help=HELP, description=HELP)
    add_model_args(p)
    add_data_args(p, limit=800)
    add_pairs_args(p, 100, "engine of the real patching used for the comparison")
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
    formats_arg(p)
    p.add_argument("--batch-size", type=positive_int, default=8, help="pairs per AtP pass")
    add_progress_args(p)
    p.add_argument("--out", required=True, help="output folder")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``attribute``; prints its cost and its agreement with real patching."""
    from lens_emotion.attribution import run_attribution

    kwargs = pairs_run_kwargs(args)
    dataset = load_data_from_args(args)
    model = load_model_from_args(args)
    outputs = run_attribution(model, dataset, args.out, compare=not args.no_compare, **kwargs)
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
